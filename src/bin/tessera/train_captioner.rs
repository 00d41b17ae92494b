//! `tessera train-captioner`: a BLIP-style captioner from scratch on generated shape scenes,
//! scored on held-out scenes (exact captions, attributes, the pointing game of per-word
//! attention), seen and unseen colour–shape pairs apart.
use anyhow::Result;
use clap::Parser;
use std::path::PathBuf;
use tessera::train::captioner::{run as train, CaptionerConfig, Score};

#[derive(Parser)]
pub struct Args {
    /// Where the checkpoint (loadable by `tessera caption`), report.json and metrics go.
    #[arg(long, default_value = "runs/captioner")]
    output: PathBuf,
    #[arg(long, default_value_t = CaptionerConfig::default().epochs)]
    epochs: usize,
    #[arg(long, default_value_t = CaptionerConfig::default().train_scenes)]
    train_scenes: usize,
    /// Held-out scenes per set (seen pairs, unseen pairs).
    #[arg(long, default_value_t = CaptionerConfig::default().test_scenes)]
    test_scenes: usize,
    #[arg(long, default_value_t = CaptionerConfig::default().batch_size)]
    batch_size: usize,
    #[arg(long, default_value_t = CaptionerConfig::default().lr)]
    lr: f64,
    #[arg(long, default_value_t = CaptionerConfig::default().hidden)]
    hidden: usize,
    #[arg(long, default_value_t = CaptionerConfig::default().seed)]
    seed: u64,
    /// End with the report as one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

fn line(name: &str, s: &Score) -> String {
    format!(
        "{name}: {} scenes, exact {:.3}, objects counted {:.3}, colour {:.3}, shape {:.3}, relation {:.3}; pointing game {:.3} (chance {:.3}, {} shape words)",
        s.scenes, s.exact, s.count, s.color, s.shape, s.relation, s.pointing, s.pointing_chance, s.pointed_words
    )
}

pub fn run(a: Args) -> Result<()> {
    let cfg = CaptionerConfig {
        epochs: a.epochs,
        train_scenes: a.train_scenes,
        test_scenes: a.test_scenes,
        batch_size: a.batch_size,
        lr: a.lr,
        hidden: a.hidden,
        seed: a.seed,
        ..CaptionerConfig::default()
    };
    let r = train(&cfg, &a.output, &*super::common::bars())?;
    eprintln!(
        "{} epochs, {:.0} s training, {} parameters",
        r.epochs.len(),
        r.train_seconds,
        r.parameters
    );
    eprintln!("{}", line("seen pairs", &r.seen));
    eprintln!("{}", line("unseen pairs", &r.unseen));
    eprintln!("model in {}", a.output.display());
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    }
    Ok(())
}
