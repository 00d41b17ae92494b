//! `tessera finetune`: a Hugging Face ViT (directory or hub id) fine-tuned on an image
//! dataset as `Trainer` does it (AdamW with Trainer's decay rule, linear schedule, evaluation
//! every epoch), writing an HF checkpoint.
use super::recipes::threads_or_cores;
use super::{fit, AdamWConfig, DecayRule, FitOptions, Schedule, TrainConfig, TrainSummary};
use crate::data::{self, Augment, Loader, Normalize};
use crate::image::ProcessorConfig;
use crate::models::vit::hf::{HfVit, HfVitConfig};
use crate::models::{Checkpoint, LoadOptions, Pretrained};
use crate::progress::Progress;
use crate::{Error, Result};
use std::ffi::OsString;
use std::path::PathBuf;

/// A fine-tuning run's settings; `Default` holds HF `TrainingArguments`' values where they
/// apply (lr 5e-5, no weight decay, no warm-up, linear decay, seed 42). Also `tessera
/// finetune`'s arguments (the field docs are its help).
#[derive(Clone, Debug, PartialEq, clap::Args)]
pub struct FinetuneSpec {
    /// HF ViT checkpoint: a directory (config.json, model.safetensors or pytorch_model.bin,
    /// preprocessor_config.json) or a hub id such as google/vit-base-patch16-224-in21k.
    #[arg(long)]
    pub model: OsString,
    /// An HF parquet dataset directory (`train-*.parquet`, `test-*.parquet`, e.g. a download of
    /// timm/oxford-iiit-pet) or an ImageFolder directory (class sub-folders, with train/ and
    /// test/, else an 80/20 stratified split).
    #[arg(long)]
    pub dataset: PathBuf,
    /// Class names, one per line, for parquet files without `huggingface` metadata.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Size of the new classification head (default: the number of classes; must equal it).
    #[arg(long)]
    pub num_labels: Option<usize>,
    #[arg(long, default_value_t = FinetuneSpec::default().epochs)]
    pub epochs: usize,
    #[arg(long, default_value_t = FinetuneSpec::default().batch_size)]
    pub batch_size: usize,
    /// Peak learning rate (HF Trainer's default).
    #[arg(long, allow_hyphen_values = true, default_value_t = FinetuneSpec::default().lr)]
    pub lr: f64,
    /// Weight decay (HF Trainer's rule: not on biases and LayerNorm weights).
    #[arg(long, allow_hyphen_values = true, default_value_t = FinetuneSpec::default().weight_decay)]
    pub weight_decay: f64,
    /// Warm-up as a fraction of all steps.
    #[arg(long, allow_hyphen_values = true, default_value_t = FinetuneSpec::default().warmup)]
    pub warmup: f64,
    #[arg(long, value_enum, default_value_t = FinetuneSpec::default().schedule)]
    pub schedule: Schedule,
    /// Start from random weights with the checkpoint's config (the from-scratch baseline).
    #[arg(long)]
    pub from_scratch: bool,
    /// Train only the new head (linear probe).
    #[arg(long)]
    pub freeze_backbone: bool,
    /// Learning-rate multiplier for the pretrained backbone (the head gets the full rate).
    #[arg(long, allow_hyphen_values = true, default_value_t = FinetuneSpec::default().backbone_lr_scale)]
    pub backbone_lr_scale: f64,
    /// Gradient accumulation: one optimizer step every N batches.
    #[arg(long, default_value_t = FinetuneSpec::default().grad_accum)]
    pub grad_accum: usize,
    /// Data-parallel training threads (0: one per core).
    #[arg(long, default_value_t = FinetuneSpec::default().threads)]
    pub threads: usize,
    #[arg(long, default_value_t = FinetuneSpec::default().seed)]
    pub seed: u64,
    #[arg(long)]
    pub output: PathBuf,
    /// Continue from the latest checkpoint in the output directory.
    #[arg(long)]
    pub resume: bool,
    /// Stop after this many epochs (checkpointed; resuming continues the same schedule).
    #[arg(long)]
    pub stop_after: Option<usize>,
    /// Also checkpoint every this many optimizer steps within an epoch (0: at epoch ends only);
    /// resuming continues mid-epoch, bit for bit.
    #[arg(long, default_value_t = 0)]
    pub save_steps: usize,
    /// Image processor backend: torchvision (transformers' default) or pil; default: what the
    /// checkpoint's processor config chooses.
    #[arg(long)]
    pub processor_backend: Option<crate::image::Backend>,
    /// Where to train: auto (the first GPU in a CUDA build when one is present, else the CPU),
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Data parallelism: one process per listed device (`0,1,2,3`: CUDA ordinals, NCCL
    /// between them; `cpu,cpu`: CPU processes over TCP), each training on its shard with
    /// `--batch-size` items per step, gradients averaged. Also runs under torchrun
    /// (`RANK`, `WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`).
    #[arg(long)]
    pub devices: Option<String>,
}

impl Default for FinetuneSpec {
    fn default() -> Self {
        FinetuneSpec {
            device: "auto".into(),
            devices: None,
            model: OsString::new(),
            dataset: PathBuf::new(),
            labels: None,
            num_labels: None,
            epochs: 3,
            batch_size: 16,
            lr: 5e-5,
            weight_decay: 0.0,
            warmup: 0.0,
            schedule: Schedule::Linear,
            from_scratch: false,
            freeze_backbone: false,
            backbone_lr_scale: 1.0,
            grad_accum: 1,
            threads: 0,
            seed: 42,
            output: PathBuf::new(),
            resume: false,
            stop_after: None,
            save_steps: 0,
            processor_backend: None,
        }
    }
}

/// What [`finetune`] did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FinetuneReport {
    #[serde(flatten)]
    pub summary: TrainSummary,
    pub trainable_parameters: usize,
    pub classes: Vec<String>,
    pub model_dir: PathBuf,
}

/// Fine-tunes as `spec` says; the output directory is an HF checkpoint (`config.json` with
/// `id2label`, `model.safetensors`, `preprocessor_config.json`) plus the trainer's files.
pub fn finetune(spec: &FinetuneSpec, progress: &dyn Progress) -> Result<FinetuneReport> {
    let threads = threads_or_cores(spec.threads);
    super::single_threaded_ops();
    let (device, dist) = super::dist::setup_rank(&spec.device, spec.devices.as_deref())?;
    // Settings first: a bad one fails before anything is read or loaded.
    let tc = TrainConfig {
        epochs: spec.epochs,
        batch_size: spec.batch_size,
        optim: AdamWConfig {
            lr: spec.lr,
            weight_decay: spec.weight_decay,
            decay: DecayRule::HfTrainer,
            ..AdamWConfig::default()
        },
        schedule: spec.schedule,
        warmup_fraction: spec.warmup,
        clip_grad_norm: 1.0,
        label_smoothing: 0.0,
        augment: Augment::default(),
        seed: spec.seed,
        grad_accum: spec.grad_accum,
        lr_scales: if spec.backbone_lr_scale != 1.0 {
            vec![("vit.".into(), spec.backbone_lr_scale)]
        } else {
            vec![]
        },
    };
    if !(spec.backbone_lr_scale.is_finite() && spec.backbone_lr_scale >= 0.0) {
        return Err(Error::Config(format!(
            "backbone learning-rate scale {} must be a finite number >= 0",
            spec.backbone_lr_scale
        )));
    }
    tc.validate()?;
    let opts = LoadOptions::default()
        .device(&device)
        .trainable()
        .seed(spec.seed);
    let src = Checkpoint::read(&spec.model, HfVit::EXTRA_FILES, &device, progress)?;
    src.expect(crate::models::Family::Vit)?;
    let src_cfg: HfVitConfig = src.config()?;
    src_cfg.validate()?;
    let pp = src.dir.join("preprocessor_config.json");
    let mut proc = if pp.exists() {
        ProcessorConfig::load(&pp)?
    } else {
        ProcessorConfig::vit(src_cfg.image_size as u32)
    };
    proc.set_backend(spec.processor_backend);
    let size = (src_cfg.image_size as u32, src_cfg.image_size as u32);
    let label_names: Option<Vec<String>> = match &spec.labels {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .map_err(|e| Error::io(p, e))?
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect(),
        ),
        None => None,
    };
    let (train_ds, test_ds) =
        data::processed_splits(&spec.dataset, &proc, size, label_names.as_deref())?;
    let classes = train_ds.classes.clone();
    let n = spec.num_labels.unwrap_or(classes.len());
    if n != classes.len() {
        return Err(Error::Config(format!(
            "num_labels {n} but the dataset has {} classes ({})",
            classes.len(),
            classes.join(", ")
        )));
    }
    // A fresh head of n labels named after the classes (HF: from_pretrained(num_labels=n)).
    let mut opts = opts.num_labels(n);
    if spec.freeze_backbone {
        opts = opts.freeze("vit.");
    }
    let loaded = if spec.resume {
        let dir = super::latest_checkpoint(&spec.output).ok_or_else(|| {
            Error::Config(format!(
                "cannot resume: no checkpoint in {}",
                spec.output.display()
            ))
        })?;
        HfVit::load(&dir, &opts)?
    } else if spec.from_scratch {
        HfVit::from_checkpoint(src, &opts.random_init())?
    } else {
        HfVit::from_checkpoint(src, &opts)?
    };
    let mut model = loaded.model;
    model.set_labels(&classes);
    if !loaded.ignored.is_empty() {
        progress.note(&format!(
            "unused checkpoint tensors (expected for a classifier): {}",
            loaded.ignored.join(", ")
        ));
    }
    if !loaded.report.missing.is_empty() {
        progress.note(&format!(
            "newly initialised: {}",
            loaded.report.missing.join(", ")
        ));
    }
    let norm = Normalize {
        mean: proc.image_mean.clone(),
        std: proc.image_std.clone(),
    };
    let train_loader = Loader {
        dataset: &train_ds,
        batch_size: spec.batch_size,
        normalize: norm.clone(),
        augment: Augment::default(),
        seed: spec.seed,
    };
    let test_loader = Loader {
        dataset: &test_ds,
        batch_size: 64,
        normalize: norm,
        augment: Augment::default(),
        seed: spec.seed,
    };
    let files = vec![
        ("config.json".to_string(), model.config_json()?),
        (
            "preprocessor_config.json".to_string(),
            serde_json::to_value(&proc).map_err(|e| Error::Msg(e.to_string()))?,
        ),
    ];
    let trainable_parameters = loaded
        .store
        .vars()
        .iter()
        .map(|(_, v)| v.elem_count())
        .sum();
    progress.note(&format!(
        "fine-tuning {} ({trainable_parameters} trainable parameters{}) on {} ({} train / {} test, {n} classes), {} epochs",
        spec.model.to_string_lossy(),
        if spec.freeze_backbone { ", backbone frozen" } else { "" },
        spec.dataset.display(),
        train_ds.labels.len(),
        test_ds.labels.len(),
        spec.epochs
    ));
    let summary = fit(
        &model,
        &loaded.store,
        &files,
        &train_loader,
        &test_loader,
        &tc,
        &spec.output,
        &FitOptions {
            resume: spec.resume,
            stop_after: spec.stop_after,
            threads,
            save_every_steps: spec.save_steps,
            progress,
            dist: dist.as_deref(),
        },
        &device,
    )?;
    Ok(FinetuneReport {
        summary,
        trainable_parameters,
        classes,
        model_dir: spec.output.clone(),
    })
}
