//! `tessera finetune`: an HF ViT fine-tuned on an image dataset.
use anyhow::Result;
use clap::Parser;
use std::ffi::OsString;
use std::path::PathBuf;
use tessera::train::finetune::{finetune, FinetuneSpec};
use tessera::train::Schedule;

#[derive(Parser)]
pub struct Args {
    /// HF ViT checkpoint: a directory (config.json, model.safetensors or pytorch_model.bin,
    /// preprocessor_config.json) or a hub id such as google/vit-base-patch16-224-in21k.
    #[arg(long)]
    model: OsString,
    /// An HF parquet dataset directory (`train-*.parquet`, `test-*.parquet`, e.g. a download of
    /// timm/oxford-iiit-pet) or an ImageFolder directory (class sub-folders, with train/ and
    /// test/, else an 80/20 stratified split).
    #[arg(long)]
    dataset: PathBuf,
    /// Class names, one per line, for parquet files without `huggingface` metadata.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Size of the new classification head (default: the number of classes).
    #[arg(long)]
    num_labels: Option<usize>,
    #[arg(long, default_value_t = FinetuneSpec::default().epochs)]
    epochs: usize,
    #[arg(long, default_value_t = FinetuneSpec::default().batch_size)]
    batch_size: usize,
    /// Peak learning rate (HF Trainer's default).
    #[arg(long, default_value_t = FinetuneSpec::default().lr)]
    lr: f64,
    /// Weight decay (HF Trainer's rule: not on biases and LayerNorm weights).
    #[arg(long, default_value_t = FinetuneSpec::default().weight_decay)]
    weight_decay: f64,
    #[arg(long, default_value_t = FinetuneSpec::default().warmup)]
    warmup: f64,
    #[arg(long, value_enum, default_value = "linear")]
    schedule: Schedule,
    /// Evaluation strategy; `each-epoch` (HF `eval_strategy="epoch"`) is the only one.
    #[arg(long, default_value = "each-epoch", value_parser = ["each-epoch", "epoch"])]
    eval: String,
    /// Start from random weights with the checkpoint's config (the from-scratch baseline).
    #[arg(long)]
    from_scratch: bool,
    /// Train only the new head (linear probe).
    #[arg(long)]
    freeze_backbone: bool,
    /// Learning-rate multiplier for the pretrained backbone (the head gets --lr).
    #[arg(long, default_value_t = FinetuneSpec::default().backbone_lr_scale)]
    backbone_lr_scale: f64,
    /// Gradient accumulation: one optimizer step every N batches.
    #[arg(long, default_value_t = FinetuneSpec::default().grad_accum)]
    grad_accum: usize,
    #[arg(long, default_value_t = 0)]
    threads: usize,
    #[arg(long, default_value_t = FinetuneSpec::default().seed)]
    seed: u64,
    #[arg(long)]
    output: PathBuf,
    #[arg(long)]
    resume: bool,
    #[arg(long)]
    stop_after: Option<usize>,
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<()> {
    let spec = FinetuneSpec {
        model: a.model,
        dataset: a.dataset,
        labels: a.labels,
        num_labels: a.num_labels,
        epochs: a.epochs,
        batch_size: a.batch_size,
        lr: a.lr,
        weight_decay: a.weight_decay,
        warmup: a.warmup,
        schedule: a.schedule,
        from_scratch: a.from_scratch,
        freeze_backbone: a.freeze_backbone,
        backbone_lr_scale: a.backbone_lr_scale,
        grad_accum: a.grad_accum,
        threads: a.threads,
        seed: a.seed,
        output: a.output,
        resume: a.resume,
        stop_after: a.stop_after,
    };
    let r = finetune(&spec, &*super::common::bars())?;
    let s = &r.summary;
    eprintln!(
        "test accuracy {:.4} (best {:.4}), {:.1}s; HF checkpoint in {}",
        s.test_accuracy,
        s.best_test_accuracy,
        s.train_seconds,
        r.model_dir.display()
    );
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    }
    Ok(())
}
