//! `tessera clip-demo`: a tiny CLIP composing colour–shape pairs it never saw together.
use anyhow::{Context, Result};
use clap::Parser;
use serde_json::json;
use std::path::PathBuf;
use tessera::data::shape_scenes::{Style, COLORS, SHAPES};
use tessera::models::clip::ClipTokenizer;
use tessera::train::shapes_demo::{self, Accuracies, DemoConfig};

#[derive(Parser)]
#[command(allow_negative_numbers = true)]
pub struct Args {
    #[command(flatten)]
    device: super::common::Device,
    #[arg(long, default_value_t = DemoConfig::default().epochs)]
    epochs: usize,
    /// Training scenes per epoch.
    #[arg(long, default_value_t = DemoConfig::default().train_size)]
    train_size: usize,
    #[arg(long, default_value_t = DemoConfig::default().test_size)]
    test_size: usize,
    #[arg(long, default_value_t = DemoConfig::default().batch_size)]
    batch_size: usize,
    #[arg(long, allow_hyphen_values = true, default_value_t = DemoConfig::default().lr)]
    lr: f64,
    #[arg(long, default_value_t = DemoConfig::default().seed)]
    seed: u64,
    /// Vision patch size on the 32×32 scenes.
    #[arg(long, default_value_t = DemoConfig::default().patch)]
    patch: usize,
    /// Fraction of training objects in colours no caption names (pink, brown, teal, …),
    /// captioned by shape and position only; 0 reproduces the non-compositional model.
    #[arg(long, allow_hyphen_values = true, default_value_t = DemoConfig::default().style.unnamed)]
    unnamed: f64,
    /// Per-object colour variation (0–1): a colour name covers a region of RGB.
    #[arg(long, allow_hyphen_values = true, default_value_t = DemoConfig::default().style.color_jitter)]
    color_jitter: f32,
    /// Random grey level and tint of the background per scene.
    #[arg(long)]
    random_background: bool,
    /// Train on the same scenes every epoch instead of fresh ones.
    #[arg(long)]
    same_scenes: bool,
    /// Fraction of scenes batched by a shared attribute (one colour, or one shape, per batch):
    /// in-batch hard negatives; 0 = plain shuffled batches.
    #[arg(long, allow_hyphen_values = true, default_value_t = DemoConfig::default().pure)]
    pure: f64,
    /// Fraction of training scenes with two objects (test scenes always have one).
    #[arg(long, allow_hyphen_values = true, default_value_t = DemoConfig::default().two_objects)]
    two_objects: f64,
    #[arg(long, default_value = "runs/clip_shapes")]
    output: PathBuf,
    #[command(flatten)]
    bpe: super::common::Bpe,
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<()> {
    let cfg = DemoConfig {
        epochs: a.epochs,
        train_size: a.train_size,
        test_size: a.test_size,
        batch_size: a.batch_size,
        lr: a.lr,
        seed: a.seed,
        patch: a.patch,
        pure: a.pure,
        two_objects: a.two_objects,
        style: Style {
            color_jitter: a.color_jitter,
            random_background: a.random_background,
            unnamed: a.unnamed,
        },
        fresh_each_epoch: !a.same_scenes,
        ..DemoConfig::default()
    };
    // Settings first: a bad one fails before the merges are read.
    cfg.validate()?;
    let tok = ClipTokenizer::from_bpe_gz(&a.bpe.bpe)
        .with_context(|| "the demo needs OpenAI's BPE merges: run tools/fetch_clip_bpe.sh")?;
    eprintln!(
        "training a tiny CLIP on {} generated scenes per epoch; held out: {}",
        cfg.train_size,
        cfg.held_out
            .iter()
            .map(|(c, s)| format!("{} {}", COLORS[*c].0, SHAPES[*s]))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let bars = super::common::bars();
    let r = shapes_demo::run(&cfg, &tok, &a.output, &a.device.open()?, &*bars)?;
    let show = |x: &Accuracies| {
        format!(
            "joint {:.3}, factored {:.3} (colour {:.3}, shape {:.3})",
            x.joint, x.factored, x.color, x.shape
        )
    };
    eprintln!(
        "held-out colour–shape pairs (never seen together): {}; chance {:.3}, colour known {:.3}",
        show(&r.held_out),
        r.chance,
        r.color_known_baseline
    );
    eprintln!(
        "per held-out pair (joint): {}",
        r.held_out
            .per_pair
            .iter()
            .map(|(p, v)| format!("{p} {v:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    eprintln!(
        "seen pairs: {}; seen scenes called a held-out pair {:.3}; {:.0}s training",
        show(&r.seen),
        r.seen.called_held_out,
        r.train_seconds
    );
    if a.json {
        let mut v = serde_json::to_value(&r)?;
        v["model_dir"] = json!(a.output.display().to_string());
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    Ok(())
}
