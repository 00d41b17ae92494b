//! `tessera train`: the seed ViT from scratch.
use anyhow::Result;
use clap::Parser;
use std::path::PathBuf;
use tessera::train::recipes::{train_vit, TrainSpec};
use tessera::train::Schedule;

#[derive(Parser)]
pub struct Args {
    /// `digits` (embedded), `fashion-mnist` (Debian package dataset-fashion-mnist), or an
    /// ImageFolder directory (class sub-folders; optional train/ and test/ splits).
    #[arg(long, default_value = "digits")]
    dataset: String,
    /// Model size: a preset (`digits`, `mnist`, `mnist-p7`, `cifar`, `Ti/16`, `S/16`, `B/16`,
    /// `L/16`, any `<size>/<patch>`). Default: the dataset's own preset.
    #[arg(long)]
    preset: Option<String>,
    /// Input size for `<size>/<patch>` presets on an ImageFolder.
    #[arg(long)]
    image_size: Option<usize>,
    #[arg(long)]
    epochs: Option<usize>,
    #[arg(long)]
    batch_size: Option<usize>,
    #[arg(long)]
    lr: Option<f64>,
    #[arg(long)]
    weight_decay: Option<f64>,
    /// Warm-up as a fraction of all steps.
    #[arg(long)]
    warmup: Option<f64>,
    #[arg(long, value_enum)]
    schedule: Option<Schedule>,
    #[arg(long)]
    dropout: Option<f64>,
    /// Random translation augmentation, in pixels.
    #[arg(long)]
    shift: Option<usize>,
    /// Random horizontal flips.
    #[arg(long)]
    hflip: Option<bool>,
    #[arg(long)]
    label_smoothing: Option<f64>,
    /// Pre-norm blocks (timm/HF layout) instead of the seed's post-norm.
    #[arg(long)]
    pre_norm: bool,
    /// Input channels (e.g. 3 to train on grey data for RGB fine-tuning later).
    #[arg(long)]
    channels: Option<usize>,
    /// Global gradient-norm clipping (0 = off).
    #[arg(long, default_value_t = TrainSpec::default().clip)]
    clip: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output directory (checkpoints, metrics.jsonl, curves.png). Default: runs/<dataset>.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Continue from the latest checkpoint in --output.
    #[arg(long)]
    resume: bool,
    /// Data-parallel training threads (0: one per core). Each batch is split across them.
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Stop after this many epochs (checkpointed; `--resume` continues the same schedule).
    #[arg(long)]
    stop_after: Option<usize>,
    /// End with one JSON object on stdout (progress stays on stderr).
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<()> {
    let spec = TrainSpec {
        dataset: a.dataset,
        preset: a.preset,
        image_size: a.image_size,
        epochs: a.epochs,
        batch_size: a.batch_size,
        lr: a.lr,
        weight_decay: a.weight_decay,
        warmup: a.warmup,
        schedule: a.schedule,
        dropout: a.dropout,
        shift: a.shift,
        hflip: a.hflip,
        label_smoothing: a.label_smoothing,
        pre_norm: a.pre_norm,
        channels: a.channels,
        clip: a.clip,
        seed: a.seed,
        output: a.output,
        resume: a.resume,
        threads: a.threads,
        stop_after: a.stop_after,
    };
    let r = train_vit(&spec, &*super::common::bars())?;
    let s = &r.summary;
    eprintln!(
        "test accuracy {:.4} (best {:.4}), loss {:.4}, {:.1}s training; model in {}, curves in {}",
        s.test_accuracy,
        s.best_test_accuracy,
        s.test_loss,
        s.train_seconds,
        r.model_dir.display(),
        s.plot.display()
    );
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    }
    Ok(())
}
