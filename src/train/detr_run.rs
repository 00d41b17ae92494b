//! `tessera train-detr`: a DETR trained on a COCO-format set — the generated shape scenes by
//! default, or the user's `annotations.json` + images — from scratch (a small DETR sized by
//! [`small_detr`]) or from a DETR checkpoint (a fresh class head when the labels differ, the
//! stem and first stage frozen as transformers freezes them). Writes a directory `tessera
//! detect` and transformers' `from_pretrained` both load, with checkpoints, metrics, curves and
//! the held-out COCO numbers.
use super::backbone_pretrain::{pretrain_backbone, PretrainConfig, PretrainLog};
use super::coco_eval::CocoStats;
use super::detr_train::{train_detr, CocoDir, DetrFitOptions, DetrTrainConfig, EpochLog};
use crate::data::coco::CocoDataset;
use crate::data::detection_scenes::write_coco;
use crate::image::ProcessorConfig;
use crate::models::detr::{Detr, DetrConfig};
use crate::models::{LoadOptions, Pretrained};
use crate::progress::Progress;
use crate::{Error, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `tessera train-detr`'s arguments (the field docs are its help).
#[derive(Clone, Debug, PartialEq, clap::Args)]
pub struct DetrSpec {
    /// `shapes` (generated scenes, written under the output directory) or a COCO set: a
    /// directory holding `annotations.json` and `images/`, or an `instances_*.json` file whose
    /// images are under `--images`.
    #[arg(long, default_value = "shapes")]
    pub dataset: String,
    /// The images of a COCO JSON file given as `--dataset` (default: the file's directory).
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// Held-out COCO set in the same forms (default for `shapes`: a second generated set).
    #[arg(long)]
    pub val: Option<String>,
    /// Images of a `--val` JSON file.
    #[arg(long)]
    pub val_images: Option<PathBuf>,
    /// Start from this DETR (directory or hub id, e.g. facebook/detr-resnet-50) instead of a
    /// small one from scratch.
    #[arg(long)]
    pub model: Option<String>,
    /// Generated scenes: training and held-out counts, and their side in pixels (also the
    /// processor's size for a model from scratch).
    #[arg(long, default_value_t = 8000)]
    pub train_images: usize,
    #[arg(long, default_value_t = 200)]
    pub val_scenes: usize,
    #[arg(long, default_value_t = 128)]
    pub image_size: usize,
    /// Keep a model from scratch's batch norms frozen (identities), as DETR keeps its
    /// pretrained backbone's. By default a backbone trained from scratch learns them: batch
    /// statistics in training, running averages saved for inference (the frozen norms of
    /// the saved checkpoint). Without them the random backbone is unnormalised and the
    /// classes barely train (held-out AP50 0.017 after 36 epochs).
    #[arg(long)]
    pub frozen_batch_norm: bool,
    /// Epochs of backbone pretraining for a model from scratch, before DETR's own training:
    /// every cell of the backbone's map classified by the boxes over it (a 1×1-convolution
    /// head, then discarded), which teaches the random ResNet what DETR's decoder cannot
    /// teach it quickly. Default 3 over the 8,000 default scenes (0 with
    /// `--frozen-batch-norm`, which it needs unfrozen); 0: none.
    #[arg(long)]
    pub pretrain_epochs: Option<usize>,
    /// Object queries of a model from scratch.
    #[arg(long, default_value_t = 16)]
    pub num_queries: usize,
    /// Width of a model from scratch's transformer (heads: width / 16, feed-forward: 4 × width).
    /// At 64 it learns 2.2 times as many images per second but needs far more of them (see
    /// the README).
    #[arg(long, default_value_t = 128)]
    pub d_model: usize,
    /// The stride of a model from scratch's map: 8 (two ResNet stages, a 16×16 map of a
    /// 128-pixel scene: cells the size of the scenes' small objects) or 16 (three stages, an
    /// 8×8 map). After 20 epochs: held-out AP50 0.36 at stride 8 and lr 2e-4, 0.14 at 16
    /// and 1e-4.
    #[arg(long, default_value_t = 8)]
    pub stride: usize,
    /// (24 epochs of the 8,000 default scenes: ~1.6 h on two Zen 4 cores, after ~26 min of
    /// backbone pretraining; see the README.)
    #[arg(long, default_value_t = 24)]
    pub epochs: usize,
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Twice DETR's 1e-4, for the small DETR (a 10-epoch probe at width 64: 3e-4 ended at
    /// about the same loss, 1e-3 higher; width 128 kept it).
    #[arg(long, default_value_t = 2e-4)]
    pub lr: f64,
    /// The backbone's rate as a fraction of `--lr` (DETR fine-tuning: 0.1; from scratch: 1,
    /// or 0 after backbone pretraining). 0 freezes the backbone: no backward through it.
    #[arg(long)]
    pub backbone_lr_scale: Option<f64>,
    #[arg(long, default_value_t = 1e-4)]
    pub weight_decay: f64,
    /// Global gradient-norm clip (0: off).
    #[arg(long, default_value_t = 0.1)]
    pub clip: f64,
    /// Epochs after which the rates drop tenfold (default: after four fifths; with `--resume`,
    /// the run's own, unless given: a run planned longer can be cut short with its drop).
    #[arg(long)]
    pub lr_drop: Option<usize>,
    /// Score the held-out set every this many epochs (and after the last).
    #[arg(long, default_value_t = 4)]
    pub eval_every: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output directory. Default: `runs/detr-<dataset>`.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Continue from the latest checkpoint in the output directory.
    #[arg(long)]
    pub resume: bool,
    /// Stop after this many epochs (checkpointed; `--resume` continues the same schedule).
    #[arg(long)]
    pub stop_after: Option<usize>,
    /// Where to train: auto (the first GPU in a CUDA build when one is present, else the CPU),
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
}

impl Default for DetrSpec {
    fn default() -> Self {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct P {
            #[command(flatten)]
            s: DetrSpec,
        }
        P::parse_from(["p"]).s
    }
}

/// What [`train_detr_run`] did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DetrReport {
    pub model_dir: PathBuf,
    pub epochs: usize,
    pub train_seconds: f64,
    pub parameters: usize,
    pub train_images: usize,
    /// The held-out COCO numbers after the last epoch (`None` without a held-out set).
    pub eval: Option<CocoStats>,
    pub metrics: PathBuf,
    pub curves: PathBuf,
    /// Backbone pretraining, per epoch (empty when there was none, or on resume).
    pub pretrain: Vec<PretrainLog>,
}

/// A small DETR for `id2label` trained from scratch: a bottleneck ResNet of two stages at
/// `stride` 8 (a 128-pixel scene gives a 16×16 map) or three at 16 (8×8), a transformer of
/// width `d_model` (heads of 16, feed-forward 4 × width), two encoder and three
/// decoder layers, auxiliary losses; everything else transformers' defaults.
pub fn small_detr(
    id2label: BTreeMap<String, String>,
    num_queries: usize,
    stride: usize,
    d_model: usize,
) -> Result<DetrConfig> {
    check_width(d_model)?;
    let backbone = small_backbone(stride)?;
    let heads = d_model / 16;
    let c: DetrConfig = serde_json::from_value(serde_json::json!({
        "d_model": d_model, "encoder_layers": 2, "decoder_layers": 3,
        "encoder_attention_heads": heads, "decoder_attention_heads": heads,
        "encoder_ffn_dim": 4 * d_model, "decoder_ffn_dim": 4 * d_model, "num_queries": num_queries,
        "auxiliary_loss": true, "use_timm_backbone": false, "dropout": 0.0,
        "backbone_config": backbone,
        "id2label": id2label,
    }))
    .map_err(|e| Error::Config(e.to_string()))?;
    c.validate()?;
    Ok(c)
}

/// The small DETR's width: heads of 16 channels.
fn check_width(d_model: usize) -> Result<()> {
    if !(16..=1024).contains(&d_model) || !d_model.is_multiple_of(16) {
        return Err(Error::Config(format!(
            "d_model {d_model}: the small DETR's width is a multiple of 16 from 16 to 1024"
        )));
    }
    Ok(())
}

/// The small DETR's ResNet config at `stride` 8 or 16.
fn small_backbone(stride: usize) -> Result<serde_json::Value> {
    Ok(match stride {
        16 => serde_json::json!({
            "model_type": "resnet", "embedding_size": 16, "hidden_sizes": [64, 128, 256],
            "depths": [1, 2, 2], "layer_type": "bottleneck", "out_features": ["stage3"]
        }),
        8 => serde_json::json!({
            "model_type": "resnet", "embedding_size": 16, "hidden_sizes": [64, 256],
            "depths": [1, 3], "layer_type": "bottleneck", "out_features": ["stage2"]
        }),
        s => {
            return Err(Error::Config(format!(
                "stride {s}: the small DETR has stride 8 or 16"
            )))
        }
    })
}

/// DETR's labels for a COCO set: class `k` is category id `k` (DETR's convention), so there
/// are `max id + 1` labels; ids no category has are `N/A`, as in DETR's COCO head.
pub fn coco_labels(ds: &CocoDataset) -> Result<BTreeMap<String, String>> {
    let max = ds.categories.iter().map(|c| c.id).max().ok_or_else(|| {
        Error::Config("the annotations list no categories: nothing to detect".into())
    })?;
    if max > 10_000 {
        return Err(Error::Config(format!(
            "category id {max}: DETR needs one output per id up to the largest; renumber the categories"
        )));
    }
    let mut m: BTreeMap<String, String> =
        (0..=max).map(|i| (i.to_string(), "N/A".into())).collect();
    for c in &ds.categories {
        m.insert(c.id.to_string(), c.name.clone());
    }
    Ok(m)
}

/// A COCO set given as a directory (`annotations.json`, `images/`) or as a JSON file with its
/// images' directory.
fn open_coco(path: &str, images: Option<&Path>) -> Result<CocoDir> {
    let p = Path::new(path);
    if p.is_dir() {
        return CocoDir::open(p);
    }
    if !p.is_file() {
        return Err(Error::Config(format!(
            "dataset {path:?}: not `shapes`, a directory or a COCO JSON file"
        )));
    }
    let images = match images {
        Some(d) => d.to_path_buf(),
        None => p.parent().unwrap_or(Path::new(".")).to_path_buf(),
    };
    CocoDir::from_json(p, &images)
}

/// Generated scenes at `dir`, written unless the same ones are there.
fn shapes(dir: &Path, n: usize, side: usize, seed: u64) -> Result<CocoDir> {
    let same = CocoDir::open(dir).ok().filter(|d| {
        let a = &d.annotations;
        a.images.len() == n
            && a.images
                .iter()
                .all(|i| i.width as usize == side && i.height as usize == side)
            && a.info
                .as_ref()
                .and_then(|i| i.get("seed"))
                .and_then(|s| s.as_u64())
                == Some(seed)
    });
    match same {
        Some(d) => Ok(d),
        None => {
            write_coco(dir, n, side, side, seed)?;
            CocoDir::open(dir)
        }
    }
}

/// Trains as `spec` says; see the module docs.
pub fn train_detr_run(spec: &DetrSpec, progress: &dyn Progress) -> Result<DetrReport> {
    let out = spec
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(format!("detr-{}", dataset_name(spec))));
    std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
    if spec.image_size < 32 || spec.image_size > 4096 {
        return Err(Error::Config(format!(
            "image size {} must be between 32 and 4096",
            spec.image_size
        )));
    }
    if spec.model.is_none() {
        small_backbone(spec.stride)?;
        check_width(spec.d_model)?;
    }
    let pretrain_epochs = match (spec.pretrain_epochs, spec.frozen_batch_norm) {
        _ if spec.model.is_some() => 0,
        (Some(n), true) if n > 0 => {
            return Err(Error::Config(
                "backbone pretraining needs learned batch norms: drop --frozen-batch-norm or --pretrain-epochs".into(),
            ))
        }
        (Some(n), _) => n,
        (None, true) => 0,
        (None, false) => PretrainConfig::default().epochs,
    };
    let cfg = DetrTrainConfig {
        epochs: spec.epochs,
        batch_size: spec.batch_size,
        lr: spec.lr,
        backbone_lr_scale: spec.backbone_lr_scale.unwrap_or(if spec.model.is_some() {
            0.1
        } else if pretrain_epochs > 0 {
            0.0
        } else {
            1.0
        }),
        weight_decay: spec.weight_decay,
        clip: spec.clip,
        lr_drop: Some(match spec.lr_drop {
            Some(d) => d,
            // Resuming with more epochs keeps the schedule the run started with.
            None => {
                resumed_lr_drop(&out, spec.resume).unwrap_or((spec.epochs * 4).div_ceil(5).max(1))
            }
        }),
        seed: spec.seed,
    };
    cfg.validate()?;
    let val = match &spec.val {
        Some(v) => Some(open_coco(v, spec.val_images.as_deref())?),
        None => None,
    };
    let (train, val) = if spec.dataset == "shapes" {
        let data = out.join("data");
        progress.note(&format!("shape scenes under {}", data.display()));
        let side = spec.image_size;
        let train = shapes(
            &data.join("train"),
            spec.train_images,
            side,
            spec.seed.wrapping_add(1),
        )?;
        let val = match val {
            Some(v) => v,
            None => shapes(
                &data.join("val"),
                spec.val_scenes,
                side,
                spec.seed.wrapping_add(1_000_001),
            )?,
        };
        (train, Some(val))
    } else {
        (open_coco(&spec.dataset, spec.images.as_deref())?, val)
    };
    let labels = coco_labels(&train.annotations)?;
    let device = crate::device::open(&spec.device)?;
    let opts = LoadOptions::default()
        .device(&device)
        .trainable()
        .seed(spec.seed);
    let (mut loaded, processor) = match &spec.model {
        None => {
            let cfg = small_detr(labels, spec.num_queries, spec.stride, spec.d_model)?;
            let side = spec.image_size as u32;
            let p = ProcessorConfig::detr_sized(side, side);
            let mut loaded = Detr::from_config(&cfg, &opts)?;
            if !spec.frozen_batch_norm {
                loaded.model.learn_backbone_statistics()?;
            }
            (loaded, p)
        }
        Some(m) => {
            // transformers freezes the stem and the first stage of a DETR ResNet.
            let opts = FROZEN_STEM
                .iter()
                .fold(opts.num_labels(labels.len()), |o, p| o.freeze(p));
            let mut loaded = Detr::load(m, &opts)?;
            loaded.model.config.id2label = labels;
            let p = ProcessorConfig::in_dir_or(loaded.dir.as_deref(), ProcessorConfig::detr)?;
            (loaded, p)
        }
    };
    let files = vec![
        ("config.json".to_string(), loaded.model.config_json()?),
        (
            "preprocessor_config.json".to_string(),
            serde_json::to_value(&processor).map_err(|e| Error::Msg(e.to_string()))?,
        ),
    ];
    let fit = DetrFitOptions {
        out: Some(&out),
        resume: spec.resume,
        stop_after: spec.stop_after,
        val: val.as_ref(),
        eval_every: spec.eval_every,
        files: files.clone(),
        recompute_backbone: false,
    };
    let mut pretrain = vec![];
    let fresh_start = !(spec.resume && crate::train::fit::latest_checkpoint(&out).is_some());
    if pretrain_epochs > 0 && fresh_start {
        let pc = PretrainConfig {
            epochs: pretrain_epochs,
            seed: spec.seed,
            ..PretrainConfig::default()
        };
        pretrain = pretrain_backbone(&loaded, &processor, &train, val.as_ref(), &pc, |l| {
            progress.note(&format!(
                "backbone pretraining {}/{}: loss {:.3}, object cells right {:.1}% (held-out {}), {:.0} s",
                l.epoch,
                pc.epochs,
                l.loss,
                100.0 * l.train_object_accuracy,
                l.val_object_accuracy
                    .map_or("-".into(), |a| format!("{:.1}%", 100.0 * a)),
                l.seconds
            ))
        })?;
        crate::util::write_json(&out.join("pretrain.json"), &pretrain)?;
    }
    if cfg.backbone_lr_scale == 0.0 {
        loaded.model.freeze_backbone();
    }
    let curves = out.join("curves.png");
    let history = train_detr(&loaded, &processor, &train, &cfg, &fit, |log| {
        progress.note(&describe(log, cfg.epochs));
    })?;
    plot_detr(&history, &curves)?;
    crate::train::fit::save_model(&out, &loaded.store, &files)?;
    let eval = history.last().and_then(|l| l.eval.clone());
    if let Some(e) = &eval {
        crate::util::write_json(&out.join("eval.json"), e)?;
    }
    Ok(DetrReport {
        model_dir: out.clone(),
        epochs: history.len(),
        train_seconds: history.iter().map(|l| l.seconds).sum(),
        parameters: loaded.trainable_parameters(),
        train_images: train.annotations.images.len(),
        eval,
        metrics: out.join("metrics.jsonl"),
        curves,
        pretrain,
    })
}

/// The `lr_drop` the run being resumed was started with.
fn resumed_lr_drop(out: &Path, resume: bool) -> Option<usize> {
    if !resume {
        return None;
    }
    let (_, s): (PathBuf, super::detr_train::DetrTrainerState) =
        crate::train::fit::latest_state(out).ok()?;
    s.config.lr_drop
}

/// Stem and first stage of both layouts (`DetrConvEncoder` leaves them untrainable).
const FROZEN_STEM: [&str; 5] = [
    "model.backbone.conv_encoder.model.embedder.",
    "model.backbone.conv_encoder.model.encoder.stages.0.",
    "model.backbone.conv_encoder.model.conv1.",
    "model.backbone.conv_encoder.model.bn1.",
    "model.backbone.conv_encoder.model.layer1.",
];

fn dataset_name(spec: &DetrSpec) -> String {
    Path::new(&spec.dataset)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "coco".into())
}

/// `epoch 3/40: loss 12.3 (ce 1.20, L1 0.150, GIoU 0.600), 71 s; held-out mAP 0.412, AP50 0.801`
pub fn describe(l: &EpochLog, epochs: usize) -> String {
    let mut s = format!(
        "epoch {}/{epochs}: loss {:.3} (ce {:.3}, L1 {:.3}, GIoU {:.3}), lr {:.0e}, {:.0} s",
        l.epoch, l.loss, l.loss_ce, l.loss_bbox, l.loss_giou, l.lr, l.seconds
    );
    if let Some(e) = &l.eval {
        s += &format!(
            "; held-out mAP {:.3}, AP50 {:.3}, AP75 {:.3}",
            e.ap, e.ap50, e.ap75
        );
    }
    s
}

/// Loss terms (left) and held-out mAP / AP50 (right) per epoch.
pub fn plot_detr(history: &[EpochLog], path: &Path) -> Result<()> {
    use plotters::prelude::*;
    if history.is_empty() {
        return Ok(());
    }
    let pts = |f: &dyn Fn(&EpochLog) -> Option<f64>| -> Vec<(f64, f64)> {
        history
            .iter()
            .filter_map(|l| f(l).map(|v| (l.epoch as f64, v)))
            .collect()
    };
    let last = history.last().map(|l| l.epoch).unwrap_or(1);
    let max_loss = history.iter().map(|l| l.loss).fold(0f64, f64::max) * 1.05;
    super::plot::two_panels(path, |left, right| {
        super::plot::chart(
            left,
            "training loss (with auxiliary layers)",
            last,
            0.0..max_loss.max(1e-3),
            vec![
                ("total", pts(&|l| Some(l.loss)), BLACK),
                ("last layer: ce", pts(&|l| Some(l.loss_ce)), RED),
                ("5·L1", pts(&|l| Some(5.0 * l.loss_bbox)), BLUE),
                ("2·(1 − GIoU)", pts(&|l| Some(2.0 * l.loss_giou)), GREEN),
            ],
            SeriesLabelPosition::UpperRight,
        )?;
        super::plot::chart(
            right,
            "held-out COCO AP",
            last,
            0.0..1.0,
            vec![
                (
                    "AP50",
                    pts(&|l| l.eval.as_ref().map(|e| e.ap50.max(0.0))),
                    RED,
                ),
                (
                    "mAP@[.5:.95]",
                    pts(&|l| l.eval.as_ref().map(|e| e.ap.max(0.0))),
                    BLUE,
                ),
            ],
            SeriesLabelPosition::LowerRight,
        )
    })
}
