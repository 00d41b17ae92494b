//! `tessera train-captioner`: a BLIP-style captioner from scratch on generated shape scenes,
//! scored on held-out scenes (exact captions, attributes, the pointing game of per-word
//! attention), seen and unseen colour–shape pairs apart.
use anyhow::Result;
use clap::Parser;
use std::path::PathBuf;
use tessera::train::captioner::{run as train, CaptionerConfig, Score};

#[derive(Parser)]
pub struct Args {
    #[command(flatten)]
    device: super::common::Device,
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
    /// Held-out scenes (of each set: seen and unseen pairs) drawn with each word's map into
    /// the output directory as `words_{seen,unseen}_<i>.png`.
    #[arg(long, default_value_t = 3)]
    examples: usize,
    /// Only draw the examples of a finished run in --output (no training).
    #[arg(long)]
    draw_only: bool,
    /// Also draw each word's gradient-weighted map (`words_*_relevance.png`).
    #[arg(long)]
    relevance: bool,
    /// End with the report as one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

/// The first `n` scenes of each held-out set, captioned by the saved checkpoint with each word's
/// map, as strips.
fn strips(out: &std::path::Path, cfg: &CaptionerConfig, n: usize, relevance: bool) -> Result<()> {
    use tessera::data::caption_scenes::scenes;
    use tessera::data::shape_scenes::HELD_OUT;
    let pipe = tessera::pipelines::Captioning::from_pretrained(
        out,
        &tessera::models::LoadOptions::default(),
    )?;
    let dir = out.join("examples");
    std::fs::create_dir_all(&dir)?;
    for (name, unseen, seed) in [("seen", false, 1_000_001), ("unseen", true, 2_000_003)] {
        // The evaluation's own scenes (same seeds), so the pictures are of scored scenes.
        for (i, s) in scenes(n, cfg.image_size, &HELD_OUT, unseen, cfg.seed + seed)
            .iter()
            .enumerate()
        {
            let side = cfg.image_size as u32;
            let img = image::RgbImage::from_raw(side, side, s.rgb.clone())
                .ok_or_else(|| anyhow::anyhow!("scene pixels"))?;
            let png = dir.join(format!("{name}_{i}.png"));
            img.save(&png)?;
            let src = tessera::pipelines::ImageSource::parse(&png);
            let mut caps =
                pipe.caption(std::slice::from_ref(&src), None, &pipe.defaults(), true)?;
            let strip = tessera::explain::render_word_maps(&img, &caps[0][0], pipe.grid(), 8)?;
            let target = out.join(format!("words_{name}_{i}.png"));
            tessera::explain::render::save_png(&strip, &target)?;
            if relevance {
                pipe.add_relevance(std::slice::from_ref(&src), &mut caps)?;
                let mut shown = caps[0][0].clone();
                for w in &mut shown.words {
                    w.attention = w.relevance.clone();
                }
                let strip = tessera::explain::render_word_maps(&img, &shown, pipe.grid(), 8)?;
                let t = out.join(format!("words_{name}_{i}_relevance.png"));
                tessera::explain::render::save_png(&strip, &t)?;
            }
            eprintln!(
                "{}: \"{}\" (truth: \"{}\")",
                target.display(),
                caps[0][0].text,
                s.caption
            );
        }
    }
    Ok(())
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
    if a.draw_only {
        return strips(&a.output, &cfg, a.examples.max(1), a.relevance);
    }
    let r = train(&cfg, &a.output, &a.device.open()?, &*super::common::bars())?;
    eprintln!(
        "{} epochs, {:.0} s training, {} parameters",
        r.epochs.len(),
        r.train_seconds,
        r.parameters
    );
    eprintln!("{}", line("seen pairs", &r.seen));
    eprintln!("{}", line("unseen pairs", &r.unseen));
    eprintln!("model in {}", a.output.display());
    if a.examples > 0 {
        strips(&a.output, &cfg, a.examples, a.relevance)?;
    }
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    }
    Ok(())
}
