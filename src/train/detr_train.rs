//! Training DETR on a COCO-format detection set: padded batches from the model's
//! `DetrImageProcessor`, targets as transformers makes them (class = COCO category id, boxes
//! `(cx, cy, w, h)` normalised to the padded image), the set loss with auxiliary layers when the
//! config asks, AdamW with a lower backbone learning rate, gradient clipping; COCO mAP on a
//! held-out set.
use super::coco_eval::{evaluate, CocoStats};
use super::detr_loss::{detr_loss, DetrLossConfig, Target};
use super::fit::{
    append_metrics, latest_state, restore_checkpoint, save_checkpoint_as, write_metrics,
};
use super::optim::{clip_grad_norm, AdamW, AdamWConfig};
use crate::data::coco::{CocoDataset, CocoImage, Detection};
use crate::image::boxes::{post_process_object_detection, DetectedBox};
use crate::image::ProcessorConfig;
use crate::models::detr::Detr;
use crate::models::Loaded;
use crate::nn::Ctx;
use crate::{Error, Result};
use candle_core::Tensor;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};

/// A COCO set: its annotations and the directory of the images they name.
pub struct CocoDir {
    pub images: PathBuf,
    pub annotations: CocoDataset,
}

impl CocoDir {
    /// A directory holding `annotations.json` and `images/`.
    pub fn open(root: &Path) -> Result<CocoDir> {
        Self::from_json(&root.join("annotations.json"), &root.join("images"))
    }

    /// A COCO JSON file (`instances_val2017.json`, …) and the directory of its images.
    pub fn from_json(annotations: &Path, images: &Path) -> Result<CocoDir> {
        let annotations_set = CocoDataset::load(annotations)?;
        if annotations_set.images.is_empty() {
            return Err(Error::data(annotations, "the annotations list no images"));
        }
        if !images.is_dir() {
            return Err(Error::data(images, "no such image directory"));
        }
        Ok(CocoDir {
            images: images.to_path_buf(),
            annotations: annotations_set,
        })
    }

    pub(crate) fn image_path(&self, file_name: &str) -> PathBuf {
        self.images.join(file_name)
    }
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DetrTrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    /// The transformer's and heads' learning rate (DETR's recipe: 1e-4).
    pub lr: f64,
    /// The backbone's rate as a fraction of `lr` (DETR: 0.1).
    pub backbone_lr_scale: f64,
    pub weight_decay: f64,
    /// Global gradient-norm clip (DETR: 0.1; 0: off).
    pub clip: f64,
    /// Epochs after which every rate drops tenfold (DETR's `StepLR`: 200 of 300); `None` keeps
    /// them.
    pub lr_drop: Option<usize>,
    pub seed: u64,
}

impl Default for DetrTrainConfig {
    fn default() -> Self {
        DetrTrainConfig {
            epochs: 10,
            batch_size: 4,
            lr: 1e-4,
            backbone_lr_scale: 0.1,
            weight_decay: 1e-4,
            clip: 0.1,
            lr_drop: None,
            seed: 0,
        }
    }
}

impl DetrTrainConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.epochs == 0 || self.batch_size == 0 {
            return bad(format!(
                "epochs {} and batch size {} must be at least 1",
                self.epochs, self.batch_size
            ));
        }
        for (n, v) in [
            ("lr", self.lr),
            ("backbone lr scale", self.backbone_lr_scale),
            ("weight decay", self.weight_decay),
            ("clip", self.clip),
        ] {
            if !v.is_finite() || v < 0.0 {
                return bad(format!("{n} {v} must be finite and non-negative"));
            }
        }
        if self.lr == 0.0 {
            return bad("lr must be positive".into());
        }
        if self.lr_drop == Some(0) {
            return bad("lr drop after 0 epochs: use a lower lr instead".into());
        }
        Ok(())
    }
}

/// Targets of one image: classes are COCO category ids (DETR's convention: `num_labels`
/// above the largest id); crowd boxes are left out, as transformers' `prepare_annotation` does.
fn targets(
    d: &CocoDir,
    image_id: u64,
    (oh, ow): (u32, u32),
    (rh, rw): (u32, u32),
    (ph, pw): (usize, usize),
    num_labels: usize,
) -> Result<Target> {
    let mut t = Target::default();
    let (sx, sy) = (rw as f32 / ow as f32, rh as f32 / oh as f32);
    for a in d
        .annotations
        .annotations
        .iter()
        .filter(|a| a.image_id == image_id && a.iscrowd == 0)
    {
        if a.category_id as usize >= num_labels {
            return Err(Error::Config(format!(
                "annotation {} has category {}: the model has {num_labels} labels (DETR needs num_labels above every category id)",
                a.id, a.category_id
            )));
        }
        let [x, y, w, h] = a.bbox.map(|v| v as f32);
        if w <= 0.0 || h <= 0.0 {
            continue;
        }
        let (x0, y0, x1, y1) = (
            (x * sx).max(0.0),
            (y * sy).max(0.0),
            ((x + w) * sx).min(rw as f32),
            ((y + h) * sy).min(rh as f32),
        );
        t.class_labels.push(a.category_id as u32);
        t.boxes.push([
            (x0 + x1) / 2.0 / pw as f32,
            (y0 + y1) / 2.0 / ph as f32,
            (x1 - x0) / pw as f32,
            (y1 - y0) / ph as f32,
        ]);
    }
    Ok(t)
}

/// A batch of `d`'s images as the model's processor pads them, and their targets.
pub(crate) fn load_batch(
    d: &CocoDir,
    infos: &[&CocoImage],
    processor: &ProcessorConfig,
    num_labels: usize,
    device: &candle_core::Device,
) -> Result<(crate::image::PaddedBatch, Vec<Target>)> {
    let imgs = infos
        .iter()
        .map(|im| crate::image::open(&d.image_path(&im.file_name)))
        .collect::<Result<Vec<_>>>()?;
    let batch = processor.batch_padded(&imgs, device)?;
    let (_, _, ph, pw) = batch.pixel_values.dims4()?;
    let tgts = infos
        .iter()
        .zip(&imgs)
        .zip(&batch.sizes)
        .map(|((im, img), &rs)| {
            targets(
                d,
                im.id,
                (img.height(), img.width()),
                rs,
                (ph, pw),
                num_labels,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((batch, tgts))
}

/// One epoch's mean loss terms, and the held-out COCO numbers when it was evaluated.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub loss: f64,
    pub loss_ce: f64,
    pub loss_bbox: f64,
    pub loss_giou: f64,
    pub lr: f64,
    pub seconds: f64,
    /// Training images whose frozen-backbone map was kept from an earlier epoch rather than
    /// recomputed (see [`DetrFitOptions::recompute_backbone`]).
    #[serde(default)]
    pub backbone_maps_reused: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval: Option<CocoStats>,
}

/// Where and how [`train_detr`] keeps its state.
#[derive(Default)]
pub struct DetrFitOptions<'a> {
    /// Output directory: `checkpoint-N/` after every epoch (weights, `files`, optimizer
    /// moments, `trainer_state.json`; `latest` names it) and `metrics.jsonl`. `None` keeps
    /// nothing on disk.
    pub out: Option<&'a Path>,
    /// Continue from `out`'s latest checkpoint: weights, moments and the epoch count; the
    /// shuffles are seeded per (seed, epoch), so the run continues as if never stopped.
    pub resume: bool,
    /// Stop after this many epochs are complete (a later `resume` continues).
    pub stop_after: Option<usize>,
    /// Held-out set scored every `eval_every` epochs and after the last.
    pub val: Option<&'a CocoDir>,
    pub eval_every: usize,
    /// `config.json`, `preprocessor_config.json`… written with every checkpoint.
    pub files: Vec<(String, serde_json::Value)>,
    /// Run a frozen backbone on every batch instead of keeping each training image's map
    /// from its first epoch (the same numbers, slower). Maps are kept only when every
    /// training image has the same size (no batch pads one for another) and they fit in
    /// 4 GiB.
    pub recompute_backbone: bool,
}

/// What a checkpoint remembers besides weights and moments.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct DetrTrainerState {
    /// Epochs completed.
    pub epoch: usize,
    pub global_step: usize,
    pub history: Vec<EpochLog>,
    pub config: DetrTrainConfig,
}

/// The learning rate of `epoch` (0-based) under DETR's step schedule.
fn lr_of(cfg: &DetrTrainConfig, epoch: usize) -> f64 {
    match cfg.lr_drop {
        Some(d) if epoch >= d => cfg.lr * 0.1,
        _ => cfg.lr,
    }
}

/// Trains `loaded` (built trainable; frozen prefixes stay out) on `train`; `on_epoch` sees
/// each epoch's log. Returns the whole history (with a resumed run's earlier epochs).
pub fn train_detr(
    loaded: &Loaded<Detr>,
    processor: &ProcessorConfig,
    train: &CocoDir,
    cfg: &DetrTrainConfig,
    opts: &DetrFitOptions,
    mut on_epoch: impl FnMut(&EpochLog),
) -> Result<Vec<EpochLog>> {
    cfg.validate()?;
    let model = &loaded.model;
    let loss_cfg = DetrLossConfig::from_config(&model.config)?;
    let vars = loaded.store.vars();
    if vars.is_empty() {
        return Err(Error::Config(
            "the model has no trainable parameters (load it trainable)".into(),
        ));
    }
    let mut opt = AdamW::new(
        vars.clone(),
        AdamWConfig {
            lr: cfg.lr,
            weight_decay: cfg.weight_decay,
            ..AdamWConfig::default()
        },
    );
    opt.set_lr_scale("model.backbone.", cfg.backbone_lr_scale);
    let var_list: Vec<_> = vars.iter().map(|(_, v)| v.clone()).collect();
    let mut state = DetrTrainerState {
        epoch: 0,
        global_step: 0,
        history: vec![],
        config: cfg.clone(),
    };
    // Training runs where the model was built (`LoadOptions::device`).
    let device = loaded.store.device().clone();
    if let Some(out) = opts.out {
        std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
        if opts.resume {
            let (dir, saved): (PathBuf, DetrTrainerState) = latest_state(out)?;
            // The schedule's length and its drop may change (a run planned longer can be
            // cut short and still get its drop); nothing else may.
            let mut same = saved.config.clone();
            same.epochs = cfg.epochs;
            same.lr_drop = cfg.lr_drop;
            if same != *cfg {
                return Err(Error::Config(format!(
                    "cannot resume {}: it was trained with {:?}, this run asks {:?} (only the epoch count and the rate drop may change)",
                    dir.display(),
                    saved.config,
                    cfg
                )));
            }
            restore_checkpoint(&dir, &loaded.store, &mut opt, saved.global_step, &device)?;
            state = saved;
            state.config.epochs = cfg.epochs;
            state.config.lr_drop = cfg.lr_drop;
        }
        write_metrics(&out.join("metrics.jsonl"), &state.history)?;
    }
    let n_images = train.annotations.images.len();
    let mut cache = FeatureCache::new(model, train, !opts.recompute_backbone);
    let last_epoch = opts.stop_after.unwrap_or(cfg.epochs).min(cfg.epochs);
    while state.epoch < last_epoch {
        let epoch = state.epoch;
        let t0 = std::time::Instant::now();
        // Seeded per (seed, epoch): a resumed run shuffles as an uninterrupted one.
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed.wrapping_mul(1_000_003) ^ epoch as u64);
        let mut order: Vec<usize> = (0..n_images).collect();
        order.shuffle(&mut rng);
        let lr = lr_of(cfg, epoch);
        let (mut sums, mut n) = ([0f64; 4], 0usize);
        for chunk in order.chunks(cfg.batch_size) {
            let infos: Vec<_> = chunk
                .iter()
                .map(|&i| &train.annotations.images[i])
                .collect();
            let (batch, tgts) = load_batch(train, &infos, processor, loss_cfg.num_labels, &device)?;
            let mut ctx = Ctx::train(&mut rng);
            let out = match cache.features(model, chunk, &batch.pixel_values)? {
                Some(feat) => model.forward_features(&feat, &batch.pixel_mask, &mut ctx)?,
                None => model.forward(&batch.pixel_values, &batch.pixel_mask, &mut ctx)?,
            };
            let loss = detr_loss(
                &out.logits,
                &out.pred_boxes,
                &out.auxiliary,
                &tgts,
                &loss_cfg,
            )?;
            let total = loss.total.to_scalar::<f32>()? as f64;
            if !total.is_finite() {
                return Err(Error::Msg(format!(
                    "the loss became {total} at epoch {}, step {} (lower the learning rate)",
                    epoch + 1,
                    state.global_step + 1
                )));
            }
            let mut grads = super::backward(&loss.total)?;
            if cfg.clip > 0.0 {
                clip_grad_norm(&mut grads, &var_list, cfg.clip)?;
            }
            opt.step(&grads, lr)?;
            state.global_step += 1;
            for (s, v) in sums.iter_mut().zip([
                total,
                loss.terms["loss_ce"] as f64,
                loss.terms["loss_bbox"] as f64,
                loss.terms["loss_giou"] as f64,
            ]) {
                *s += v;
            }
            n += 1;
        }
        let m = |i: usize| sums[i] / n.max(1) as f64;
        state.epoch += 1;
        let seconds = t0.elapsed().as_secs_f64();
        let evaluate_now = state.epoch == last_epoch
            || (opts.eval_every > 0 && state.epoch.is_multiple_of(opts.eval_every));
        let eval = match opts.val {
            Some(val) if evaluate_now => Some(evaluate_detr(model, processor, val)?),
            _ => None,
        };
        let log = EpochLog {
            epoch: state.epoch,
            loss: m(0),
            loss_ce: m(1),
            loss_bbox: m(2),
            loss_giou: m(3),
            lr,
            seconds,
            backbone_maps_reused: std::mem::take(&mut cache.reused),
            eval,
        };
        state.history.push(log.clone());
        if let Some(out) = opts.out {
            save_checkpoint_as(
                out,
                &format!("checkpoint-{}", state.epoch),
                &loaded.store,
                &opt,
                &state,
                &opts.files,
            )?;
            append_metrics(&out.join("metrics.jsonl"), &log)?;
        }
        on_epoch(&log);
    }
    Ok(state.history)
}

/// The frozen backbone's maps of the training images, kept from their first epoch on: once
/// the backbone is frozen its map depends on the pixels alone, and it was two thirds of a
/// training step on the generated scenes. Kept only when no image is padded for a
/// neighbour's sake (every image the same size, so a map does not depend on its batch) and
/// the maps fit in [`FeatureCache::BUDGET`].
struct FeatureCache {
    maps: Option<Vec<Option<Tensor>>>,
    /// Maps read from `maps` so far.
    reused: usize,
}

impl FeatureCache {
    /// Bytes of maps kept at most.
    const BUDGET: usize = 4 << 30;

    fn new(model: &Detr, train: &CocoDir, wanted: bool) -> Self {
        let images = &train.annotations.images;
        let one_size = images
            .iter()
            .all(|i| (i.width, i.height) == (images[0].width, images[0].height));
        let keep = wanted && model.backbone_is_frozen() && one_size;
        FeatureCache {
            maps: keep.then(|| vec![None; images.len()]),
            reused: 0,
        }
    }

    /// The frozen backbone's maps of the training images `idx` (whose pixels are
    /// `pixel_values`), or `None` when maps are not kept: the model's own forward then runs.
    fn features(
        &mut self,
        model: &Detr,
        idx: &[usize],
        pixel_values: &Tensor,
    ) -> Result<Option<Tensor>> {
        let Some(maps) = &mut self.maps else {
            return Ok(None);
        };
        if idx.iter().all(|&i| maps[i].is_some()) {
            let kept: Vec<Tensor> = idx.iter().filter_map(|&i| maps[i].clone()).collect();
            self.reused += idx.len();
            return Ok(Some(Tensor::stack(&kept, 0)?));
        }
        let feat = model.features(pixel_values, &Ctx::inference())?; // [B, C, h, w]
        if feat.elem_count() / idx.len().max(1) * feat.dtype().size_in_bytes() * maps.len()
            > Self::BUDGET
        {
            self.maps = None;
            return Ok(Some(feat));
        }
        for (j, &i) in idx.iter().enumerate() {
            maps[i] = Some(own_map(&feat, j)?);
        }
        Ok(Some(feat))
    }
}

/// Image `j`'s map out of a batch's, holding nothing else: a compact copy (candle's `copy`
/// clones the whole storage under a view, so each kept map held its batch's eight: 2 MB instead
/// of 256 KB per 128-pixel scene, out of memory at 12,000 scenes), detached (the frozen
/// backbone's weights are still tracked variables, so the map would keep its batch's whole
/// backbone graph alive).
fn own_map(feat: &Tensor, j: usize) -> Result<Tensor> {
    Ok(feat.get(j)?.detach().force_contiguous()?)
}

/// Each image's padded input size in that image's own pixels: DETR's boxes are relative to the
/// padded input, so these are the target sizes that put them in the image's pixels.
pub fn padded_sizes(
    images: &[image::DynamicImage],
    batch: &crate::image::PaddedBatch,
) -> Result<Vec<(u32, u32)>> {
    let (_, _, ph, pw) = batch.pixel_values.dims4()?;
    Ok(images
        .iter()
        .zip(&batch.sizes)
        .map(|(img, &(rh, rw))| {
            let (oh, ow) = (img.height() as f32, img.width() as f32);
            (
                (oh * ph as f32 / rh as f32).round() as u32,
                (ow * pw as f32 / rw as f32).round() as u32,
            )
        })
        .collect())
}

/// Processor, model and post-processing of a batch of decoded images: per image, boxes above
/// `threshold` in that image's own pixels (boxes are relative to the padded input, so they are
/// scaled by the padded size expressed in the image's pixels).
pub fn predict(
    model: &Detr,
    processor: &ProcessorConfig,
    images: &[image::DynamicImage],
    threshold: f32,
    device: &candle_core::Device,
) -> Result<Vec<Vec<DetectedBox>>> {
    let batch = processor.batch_padded(images, device)?;
    let out = model.forward(
        &batch.pixel_values,
        &batch.pixel_mask,
        &mut Ctx::inference(),
    )?;
    let targets = padded_sizes(images, &batch)?;
    post_process_object_detection(&out.logits, &out.pred_boxes, threshold, Some(&targets))
}

/// Detections of `model` on every image of `data` in COCO's results format (threshold 0:
/// COCO scoring ranks them all; label `k` is category id `k`).
pub fn detections(
    model: &Detr,
    processor: &ProcessorConfig,
    data: &CocoDir,
    batch_size: usize,
) -> Result<Vec<Detection>> {
    let mut out = vec![];
    for chunk in data.annotations.images.chunks(batch_size.max(1)) {
        let imgs = chunk
            .iter()
            .map(|im| crate::image::open(&data.image_path(&im.file_name)))
            .collect::<Result<Vec<_>>>()?;
        for (im, dets) in chunk
            .iter()
            .zip(predict(model, processor, &imgs, 0.0, model.device())?)
        {
            for d in dets {
                let [x0, y0, x1, y1] = d.bbox.map(|v| v as f64);
                out.push(Detection {
                    image_id: im.id,
                    category_id: d.label as u64,
                    bbox: [x0, y0, x1 - x0, y1 - y0],
                    score: d.score as f64,
                });
            }
        }
    }
    Ok(out)
}

/// COCO box mAP of `model` on `data`, as pycocotools computes it.
pub fn evaluate_detr(
    model: &Detr,
    processor: &ProcessorConfig,
    data: &CocoDir,
) -> Result<CocoStats> {
    let dets = detections(model, processor, data, 4)?;
    // Boxes may extend past the image (as DETR's do); COCO scores them as they are.
    evaluate(&data.annotations, &dets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Storage, Var};

    #[test]
    fn a_kept_map_holds_only_its_own_values() {
        let w = Var::ones((1, 2, 3, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        let feat = (w.as_tensor().broadcast_as((4, 2, 3, 3)).unwrap() * 2.0).unwrap();
        let m = own_map(&feat, 2).unwrap();
        assert!(!m.track_op(), "a kept map carries the graph");
        assert_eq!(m.dims(), [2, 3, 3]);
        let (storage, layout) = m.storage_and_layout();
        assert_eq!(layout.start_offset(), 0);
        match &*storage {
            Storage::Cpu(c) => assert_eq!(c.as_slice::<f32>().unwrap().len(), 18),
            _ => unreachable!("a CPU tensor"),
        }
    }
}
