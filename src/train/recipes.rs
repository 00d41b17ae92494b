//! `tessera train`: the seed ViT from scratch on a named dataset, with the per-dataset recipe
//! that reaches the accuracy the README reports.
use super::{fit, AdamWConfig, FitOptions, Schedule, TrainConfig, TrainSummary};
use crate::data::{self, Augment, Loader, Normalize};
use crate::models::perceiver::{PerceiverClassifier, PerceiverConfig};
use crate::models::vit::{VisionTransformer, VitConfig};
use crate::models::{ImageClassifier, LoadOptions, Loaded, Pretrained};
use crate::progress::Progress;
use crate::{Error, Result};
use std::path::PathBuf;

/// Per-dataset preset and hyper-parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct Recipe {
    pub preset: &'static str,
    pub epochs: usize,
    pub batch: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub dropout: f64,
    pub shift: usize,
    pub hflip: bool,
    pub warmup: f64,
    pub label_smoothing: f64,
}

/// The recipe of `dataset` (`digits`, `fashion-mnist`, else an ImageFolder's: the classic small
/// ViT with augmentation).
pub fn recipe(dataset: &str) -> Recipe {
    match dataset {
        "digits" => Recipe {
            preset: "digits",
            epochs: 30,
            batch: 16,
            lr: 2e-3,
            weight_decay: 0.05,
            dropout: 0.0,
            // Shifting an 8x8 digit by a pixel destroys too much of it (measured: 95.0% vs
            // 99.2% test accuracy at 40 epochs).
            shift: 0,
            hflip: false,
            warmup: 0.05,
            label_smoothing: 0.0,
        },
        "fashion-mnist" | "fashion_mnist" | "fmnist" => Recipe {
            preset: "mnist-p7",
            epochs: 13,
            batch: 128,
            lr: 2e-3,
            weight_decay: 0.05,
            dropout: 0.0,
            shift: 0,
            hflip: true,
            warmup: 0.05,
            label_smoothing: 0.0,
        },
        _ => Recipe {
            preset: "cifar",
            epochs: 20,
            batch: 64,
            lr: 1e-3,
            weight_decay: 0.05,
            dropout: 0.1,
            shift: 4,
            hflip: true,
            warmup: 0.05,
            label_smoothing: 0.1,
        },
    }
}

/// A training run's settings; `None` takes the dataset's [`recipe`]. Also `tessera train`'s
/// arguments (the field docs are its help).
#[derive(Clone, Debug, PartialEq, clap::Args)]
pub struct TrainSpec {
    /// `digits` (embedded), `fashion-mnist` (Debian package dataset-fashion-mnist), or an
    /// ImageFolder directory (class sub-folders; optional train/ and test/ splits).
    #[arg(long, default_value_t = TrainSpec::default().dataset)]
    pub dataset: String,
    /// Model size: a preset (`digits`, `mnist`, `mnist-p7`, `cifar`, `Ti/16`, `S/16`, `B/16`,
    /// `L/16`, any `<size>/<patch>`). Default: the dataset's own preset.
    #[arg(long)]
    pub preset: Option<String>,
    /// Input size for `<size>/<patch>` presets on an ImageFolder.
    #[arg(long)]
    pub image_size: Option<usize>,
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    #[arg(long, allow_hyphen_values = true)]
    pub lr: Option<f64>,
    #[arg(long, allow_hyphen_values = true)]
    pub weight_decay: Option<f64>,
    /// Warm-up as a fraction of all steps.
    #[arg(long, allow_hyphen_values = true)]
    pub warmup: Option<f64>,
    #[arg(long, value_enum)]
    pub schedule: Option<Schedule>,
    #[arg(long, allow_hyphen_values = true)]
    pub dropout: Option<f64>,
    /// Random translation augmentation, in pixels.
    #[arg(long)]
    pub shift: Option<usize>,
    /// Random horizontal flips.
    #[arg(long)]
    pub hflip: Option<bool>,
    #[arg(long, allow_hyphen_values = true)]
    pub label_smoothing: Option<f64>,
    /// Pre-norm blocks (timm/HF layout) instead of the seed's post-norm.
    #[arg(long)]
    pub pre_norm: bool,
    /// The architecture: the seed ViT (patches), or a Perceiver reading raw pixels with
    /// Fourier position features (`PerceiverForImageClassificationFourier`'s layout; see
    /// [`PerceiverConfig::fourier_from_scratch`]).
    #[arg(long, value_enum, default_value = "vit")]
    pub arch: Arch,
    /// Perceiver only: the resolution its Fourier features are made for (the top band at that
    /// size's Nyquist frequency; the Perceiver paper uses the input's size). Default: 224,
    /// transformers' fixed layout, which loads there with identical outputs; any other value is
    /// saved as tessera's `fourier_max_resolution`, which transformers ignores.
    #[arg(long)]
    pub fourier_resolution: Option<usize>,
    /// Input channels (e.g. 3 to train on grey data for RGB fine-tuning later).
    #[arg(long)]
    pub channels: Option<usize>,
    /// Global gradient-norm clipping (0 = off).
    #[arg(long, allow_hyphen_values = true, default_value_t = TrainSpec::default().clip)]
    pub clip: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output directory (checkpoints, metrics.jsonl, curves.png). Default: `runs/<dataset>`.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Continue from the latest checkpoint in the output directory.
    #[arg(long)]
    pub resume: bool,
    /// Data-parallel training threads (0: one per core). Each batch is split across them.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Stop after this many epochs (checkpointed; resuming continues the same schedule).
    #[arg(long)]
    pub stop_after: Option<usize>,
    /// Also checkpoint every this many optimizer steps within an epoch (0: at epoch ends only);
    /// resuming continues mid-epoch, bit for bit.
    #[arg(long, default_value_t = 0)]
    pub save_steps: usize,
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

impl Default for TrainSpec {
    fn default() -> Self {
        TrainSpec {
            device: "auto".into(),
            devices: None,
            dataset: "digits".into(),
            preset: None,
            image_size: None,
            epochs: None,
            batch_size: None,
            lr: None,
            weight_decay: None,
            warmup: None,
            schedule: None,
            dropout: None,
            shift: None,
            hflip: None,
            label_smoothing: None,
            pre_norm: false,
            arch: Arch::Vit,
            fourier_resolution: None,
            channels: None,
            clip: 1.0,
            seed: 0,
            output: None,
            resume: false,
            threads: 0,
            stop_after: None,
            save_steps: 0,
        }
    }
}

/// What `tessera train` builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    Vit,
    Perceiver,
}

/// The model a run trains.
enum Trained {
    Vit(Box<Loaded<VisionTransformer>>),
    Perceiver(Box<Loaded<PerceiverClassifier>>),
}

/// What [`train_vit`] did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TrainReport {
    #[serde(flatten)]
    pub summary: TrainSummary,
    pub preset: String,
    pub dataset: String,
    pub parameters: usize,
    pub model_dir: PathBuf,
}

/// One data-parallel shard per core when `threads` is 0.
pub fn threads_or_cores(threads: usize) -> usize {
    if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads
    }
}

/// With `--resume` the architecture comes from the checkpoint; an architecture option given on
/// the command line that contradicts it is an error naming the field (building the asked-for
/// model and loading the saved weights into it would fail on a shape, or silently train
/// something else).
fn check_resumed_architecture(
    spec: &TrainSpec,
    asked: &VitConfig,
    saved: &VitConfig,
    out: &std::path::Path,
) -> Result<()> {
    // The fields each option decides; the options left out keep the checkpoint's.
    let mut names: Vec<&str> = vec![];
    if spec.preset.is_some() {
        names.extend([
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
            "patch_size",
        ]);
    }
    if spec.preset.is_some() || spec.image_size.is_some() {
        names.push("image_size");
    }
    if spec.channels.is_some() {
        names.push("num_channels");
    }
    if spec.pre_norm {
        names.push("pre_norm");
    }
    if spec.dropout.is_some() {
        names.push("dropout");
    }
    let (a, s) = (serde_json::to_value(asked), serde_json::to_value(saved));
    let (a, s) = (
        a.map_err(|e| Error::Msg(e.to_string()))?,
        s.map_err(|e| Error::Msg(e.to_string()))?,
    );
    if let Some(n) = names.iter().find(|n| a.get(**n).is_none()) {
        return Err(Error::Msg(format!("VitConfig has no field {n}")));
    }
    let fields: Vec<(&str, String, String)> = names
        .into_iter()
        .filter(|n| a[n] != s[n])
        .map(|n| (n, a[n].to_string(), s[n].to_string()))
        .collect();
    match fields.first() {
        None => Ok(()),
        Some((name, a, s)) => Err(Error::Config(format!(
            "cannot resume {} with a different architecture: {name} is {s} in the checkpoint, \
             {a} asked{}; drop the architecture options to continue it, or train into another \
             --output",
            out.display(),
            if fields.len() > 1 {
                format!(" (and {} more fields differ)", fields.len() - 1)
            } else {
                String::new()
            }
        ))),
    }
}

/// Trains the seed ViT as `spec` says (resuming the architecture of the checkpoint being
/// resumed), evaluating every epoch; writes the run directory (see [`fit`]).
pub fn train_vit(spec: &TrainSpec, progress: &dyn Progress) -> Result<TrainReport> {
    let threads = threads_or_cores(spec.threads);
    // Small models: one thread per batch shard beats candle's per-op threading (measured 2x).
    super::single_threaded_ops();
    let (device, dist) = super::dist::setup_rank(&spec.device, spec.devices.as_deref())?;
    let r = recipe(&spec.dataset);
    let preset = spec.preset.clone().unwrap_or_else(|| r.preset.to_string());
    let mut cfg = VitConfig::preset(&preset)?;
    if let Some(s) = spec.image_size {
        cfg.image_size = s;
    }
    cfg.dropout = spec.dropout.unwrap_or(r.dropout);
    cfg.pre_norm = spec.pre_norm;
    if let Some(c) = spec.channels {
        cfg.num_channels = c;
        cfg.image_mean = vec![0.5; c];
        cfg.image_std = vec![0.5; c];
    }
    // The architecture must be buildable before any data is read.
    cfg.validate()?;
    let out = spec
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(spec.dataset.replace(['/', '.'], "_")));
    let model_cfg = if spec.resume && spec.arch == Arch::Vit {
        // The architecture comes from the checkpoint being resumed.
        let dir = super::latest_checkpoint(&out).ok_or_else(|| {
            Error::Config(format!("cannot resume: no checkpoint in {}", out.display()))
        })?;
        let saved = crate::util::read_json::<VitConfig>(&dir.join("config.json"))?;
        check_resumed_architecture(spec, &cfg, &saved, &out)?;
        saved
    } else {
        cfg.clone()
    };
    let (train_ds, test_ds) =
        data::by_name(&spec.dataset, model_cfg.num_channels, model_cfg.image_size)?;
    let mut model_cfg = model_cfg;
    // A resumed ViT reads its classes from the checkpoint's config; a Perceiver's architecture
    // follows from the spec and the data, so its classes come from the data again.
    if !spec.resume || spec.arch == Arch::Perceiver {
        model_cfg.num_classes = train_ds.classes.len();
        model_cfg.id2label = train_ds
            .classes
            .iter()
            .enumerate()
            .map(|(i, c)| (i.to_string(), c.clone()))
            .collect();
    }
    model_cfg.validate()?;
    let tc = TrainConfig {
        epochs: spec.epochs.unwrap_or(r.epochs),
        batch_size: spec.batch_size.unwrap_or(r.batch),
        optim: AdamWConfig {
            // The Perceiver diverges at the ViT recipes' rates (digits: chance at 1e-3 and
            // 2e-3, learning at 5e-4).
            lr: spec.lr.unwrap_or(match spec.arch {
                Arch::Vit => r.lr,
                Arch::Perceiver => 5e-4,
            }),
            weight_decay: spec.weight_decay.unwrap_or(r.weight_decay),
            ..AdamWConfig::default()
        },
        schedule: spec.schedule.unwrap_or(Schedule::Cosine),
        warmup_fraction: spec.warmup.unwrap_or(match spec.arch {
            Arch::Vit => r.warmup,
            Arch::Perceiver => r.warmup.max(0.1),
        }),
        clip_grad_norm: spec.clip,
        label_smoothing: spec.label_smoothing.unwrap_or(r.label_smoothing),
        augment: Augment {
            max_shift: spec.shift.unwrap_or(r.shift),
            hflip: spec.hflip.unwrap_or(r.hflip),
        },
        seed: spec.seed,
        grad_accum: 1,
        lr_scales: vec![],
    };
    tc.validate()?;
    let opts = LoadOptions::default()
        .device(&device)
        .trainable()
        .seed(spec.seed);
    let trained = match spec.arch {
        Arch::Vit => Trained::Vit(Box::new(VisionTransformer::from_config(&model_cfg, &opts)?)),
        Arch::Perceiver => {
            let pc = PerceiverConfig::fourier_from_scratch(
                model_cfg.num_channels,
                model_cfg.id2label.clone(),
                spec.fourier_resolution
                    .unwrap_or(crate::models::perceiver::TRANSFORMERS_FOURIER_RESOLUTION),
            );
            if spec.resume {
                // The position features are not weights: a resumed run must make the same ones
                // or it would continue on different inputs without any shape error.
                if let Some(dir) = super::latest_checkpoint(&out) {
                    let saved =
                        crate::util::read_json::<PerceiverConfig>(&dir.join("config.json"))?;
                    let res = PerceiverConfig::fourier_resolution;
                    if res(&saved) != res(&pc) {
                        return Err(Error::Config(format!(
                            "cannot resume {}: its Perceiver was trained with Fourier features \
                             for {}-pixel inputs, this run makes them for {} (pass \
                             --fourier-resolution {})",
                            out.display(),
                            res(&saved),
                            res(&pc),
                            res(&saved)
                        )));
                    }
                }
            }
            Trained::Perceiver(Box::new(PerceiverClassifier::from_config(&pc, &opts)?))
        }
    };
    let (model, store, parameters): (&dyn ImageClassifier, _, _) = match &trained {
        Trained::Vit(l) => (&l.model, &l.store, l.trainable_parameters()),
        Trained::Perceiver(l) => (&l.model, &l.store, l.trainable_parameters()),
    };
    let norm = Normalize {
        mean: model_cfg.image_mean.clone(),
        std: model_cfg.image_std.clone(),
    };
    let train_loader = Loader {
        dataset: &train_ds,
        batch_size: tc.batch_size,
        normalize: norm.clone(),
        augment: tc.augment,
        seed: tc.seed,
    };
    let test_loader = Loader {
        dataset: &test_ds,
        batch_size: 256,
        normalize: norm,
        augment: Augment::default(),
        seed: tc.seed,
    };
    let what = match &trained {
        Trained::Vit(_) => format!(
            "ViT {preset} ({parameters} parameters, {} layers, dim {}, patch {})",
            model_cfg.num_hidden_layers, model_cfg.hidden_size, model_cfg.patch_size,
        ),
        Trained::Perceiver(l) => {
            let c = l.model.config();
            format!(
                "a Perceiver on raw pixels ({parameters} parameters, {} latents × {}, {} self-attention layers)",
                c.num_latents,
                c.d_latents,
                c.num_self_attends_per_block * c.num_blocks
            )
        }
    };
    progress.note(&format!(
        "training {what} on {} ({} train / {} test), {} epochs",
        spec.dataset,
        train_ds.labels.len(),
        test_ds.labels.len(),
        tc.epochs
    ));
    let config_json = match &trained {
        Trained::Vit(_) => {
            serde_json::to_value(&model_cfg).map_err(|e| Error::Msg(e.to_string()))?
        }
        Trained::Perceiver(l) => l.model.config_json()?,
    };
    let files = vec![("config.json".to_string(), config_json)];
    let summary = fit(
        model,
        store,
        &files,
        &train_loader,
        &test_loader,
        &tc,
        &out,
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
    Ok(TrainReport {
        summary,
        preset,
        dataset: spec.dataset.clone(),
        parameters,
        model_dir: out,
    })
}
