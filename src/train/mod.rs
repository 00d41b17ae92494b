//! Training: the loop, evaluation every epoch, metrics, plots, checkpoints and resume; the
//! recipes behind `tessera train` / `finetune` ([`recipes`], [`finetune`]), the seed-to-HF
//! export ([`export`]), CLIP's contrastive training ([`contrastive`]) and its demo
//! ([`shapes_demo`]); DETR's set loss, training, COCO scoring and `train-detr` ([`detr_loss`],
//! [`detr_train`], [`coco_eval`], [`detr_run`]), with its backbone pretrained from scratch
//! ([`backbone_pretrain`]).
pub mod backbone_pretrain;
pub mod captioner;
pub mod coco_eval;
pub mod contrastive;
pub mod detr_loss;
pub mod detr_run;
pub mod detr_train;
pub mod dist;
pub mod export;
pub mod finetune;
mod fit;
pub mod fusion_vqa;
pub mod gated_captioning;
pub mod matching;
pub mod optim;
mod plot;
pub mod recipes;
pub mod shapes_demo;

pub use fit::{
    evaluate, fit, grads_data_parallel, latest_checkpoint, save_model, single_threaded_ops,
    FitOptions, ModelFiles, StepGrads,
};
pub use optim::{
    backward, backward_segmented, clip_grad_norm, cross_entropy, descend, lr_at, AdamW,
    AdamWConfig, DecayRule, Schedule,
};
pub use plot::plot_history;
pub use plot::register_font;
pub(crate) use plot::{chart, two_panels};

use crate::data::Augment;
pub use crate::models::ImageClassifier;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Hyper-parameters of a run (saved in the trainer state; a resumed run uses the saved ones).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub optim: AdamWConfig,
    pub schedule: Schedule,
    /// Warm-up as a fraction of all steps.
    pub warmup_fraction: f64,
    /// Clip the global gradient norm to this (0 = off).
    pub clip_grad_norm: f64,
    pub label_smoothing: f64,
    pub augment: Augment,
    pub seed: u64,
    /// Optimizer steps every this many batches (gradients summed, averaged).
    #[serde(default = "one")]
    pub grad_accum: usize,
    /// Learning-rate multipliers by parameter-name prefix (e.g. `vit.` 0.1 for a pretrained
    /// backbone under a fresh head).
    #[serde(default)]
    pub lr_scales: Vec<(String, f64)>,
}

fn one() -> usize {
    1
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 10,
            batch_size: 64,
            optim: AdamWConfig::default(),
            schedule: Schedule::Cosine,
            warmup_fraction: 0.05,
            clip_grad_norm: 1.0,
            label_smoothing: 0.0,
            augment: Augment::default(),
            seed: 0,
            grad_accum: 1,
            lr_scales: vec![],
        }
    }
}

impl TrainConfig {
    /// Refuses settings no run can use, naming the setting.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        let o = &self.optim;
        if self.epochs == 0 || self.batch_size == 0 || self.grad_accum == 0 {
            return bad("epochs, batch size and gradient accumulation must be positive".into());
        }
        if !(o.lr.is_finite() && o.lr > 0.0) {
            return bad(format!(
                "learning rate {} must be a finite number > 0",
                o.lr
            ));
        }
        if !(o.weight_decay.is_finite() && o.weight_decay >= 0.0) {
            return bad(format!(
                "weight decay {} must be a finite number >= 0",
                o.weight_decay
            ));
        }
        if !(0.0..=1.0).contains(&self.warmup_fraction) {
            return bad(format!(
                "warm-up {} must be a fraction of the steps in [0, 1]",
                self.warmup_fraction
            ));
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return bad(format!(
                "label smoothing {} must be in [0, 1)",
                self.label_smoothing
            ));
        }
        if !(self.clip_grad_norm.is_finite() && self.clip_grad_norm >= 0.0) {
            return bad(format!(
                "gradient clipping {} must be a finite number >= 0 (0 = off)",
                self.clip_grad_norm
            ));
        }
        for (b, name) in [(o.beta1, "beta1"), (o.beta2, "beta2")] {
            if !(0.0..1.0).contains(&b) {
                return bad(format!("AdamW {name} {b} must be in [0, 1)"));
            }
        }
        if !(o.eps.is_finite() && o.eps > 0.0) {
            return bad(format!("AdamW eps {} must be a finite number > 0", o.eps));
        }
        if let Some((p, s)) = self
            .lr_scales
            .iter()
            .find(|(_, s)| !(s.is_finite() && *s >= 0.0))
        {
            return bad(format!(
                "learning-rate scale {s} for {p:?} must be finite and >= 0"
            ));
        }
        Ok(())
    }
}

/// One epoch's numbers, appended to `metrics.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub test_loss: f64,
    pub test_accuracy: f64,
    pub lr: f64,
    pub seconds: f64,
    pub images_per_second: f64,
}

impl std::fmt::Display for EpochMetrics {
    /// `train loss … acc … | test loss … acc … | 1.2s, 950 img/s`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "train loss {:.4} acc {:.4} | test loss {:.4} acc {:.4} | {:.1}s, {:.0} img/s",
            self.train_loss,
            self.train_accuracy,
            self.test_loss,
            self.test_accuracy,
            self.seconds,
            self.images_per_second
        )
    }
}

/// What a checkpoint remembers besides weights and moments.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainerState {
    /// Epochs completed.
    pub epoch: usize,
    pub global_step: usize,
    /// Batches done of the epoch in progress (0 between epochs; a mid-epoch checkpoint).
    #[serde(default)]
    pub batches_done: usize,
    /// The epoch in progress' running sums: loss × images, correct, images, seconds.
    #[serde(default)]
    pub partial: (f64, usize, usize, f64),
    /// `None` until the first epoch is evaluated (JSON has no -inf).
    #[serde(default)]
    pub best_test_accuracy: Option<f64>,
    pub history: Vec<EpochMetrics>,
    pub config: TrainConfig,
    pub train_seconds: f64,
}

/// The result of [`fit`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainSummary {
    pub epochs: usize,
    pub test_accuracy: f64,
    pub test_loss: f64,
    pub best_test_accuracy: f64,
    pub train_seconds: f64,
    pub checkpoint: PathBuf,
    pub metrics: PathBuf,
    pub plot: PathBuf,
}

impl std::fmt::Display for TrainSummary {
    /// `test accuracy … (best …), loss …, 12.3s training; curves in …`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "test accuracy {:.4} (best {:.4}), loss {:.4}, {:.1}s training; curves in {}",
            self.test_accuracy,
            self.best_test_accuracy,
            self.test_loss,
            self.train_seconds,
            self.plot.display()
        )
    }
}
