//! Training DETR on a COCO-format detection set: padded batches from the model's
//! `DetrImageProcessor`, targets as transformers makes them (class = COCO category id, boxes
//! `(cx, cy, w, h)` normalised to the padded image), the set loss with auxiliary layers when the
//! config asks, AdamW with a lower backbone learning rate, gradient clipping; COCO mAP on a
//! held-out set.
use super::coco_eval::{evaluate, CocoStats};
use super::detr_loss::{detr_loss, DetrLossConfig, Target};
use super::optim::{clip_grad_norm, AdamW, AdamWConfig};
use crate::data::coco::{CocoDataset, Detection};
use crate::image::boxes::{post_process_object_detection, DetectedBox};
use crate::image::ProcessorConfig;
use crate::models::detr::Detr;
use crate::models::Loaded;
use crate::nn::Ctx;
use crate::{Error, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};

/// A COCO directory: `annotations.json` and the images it names under `images/`.
pub struct CocoDir {
    pub root: PathBuf,
    pub annotations: CocoDataset,
}

impl CocoDir {
    pub fn open(root: &Path) -> Result<CocoDir> {
        let annotations = CocoDataset::load(&root.join("annotations.json"))?;
        if annotations.images.is_empty() {
            return Err(Error::data(root, "the annotations list no images"));
        }
        Ok(CocoDir {
            root: root.to_path_buf(),
            annotations,
        })
    }

    fn image_path(&self, file_name: &str) -> PathBuf {
        self.root.join("images").join(file_name)
    }
}

#[derive(Clone, Debug)]
pub struct DetrTrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    /// The transformer's and heads' learning rate (DETR's recipe: 1e-4).
    pub lr: f64,
    /// The backbone's rate as a fraction of `lr` (DETR: 0.1).
    pub backbone_lr_scale: f64,
    pub weight_decay: f64,
    /// Global gradient-norm clip (DETR: 0.1).
    pub clip: f64,
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

/// One epoch's mean loss terms.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub loss: f64,
    pub loss_ce: f64,
    pub loss_bbox: f64,
    pub loss_giou: f64,
    pub seconds: f64,
}

/// Trains `loaded` (built trainable) on `train`; `on_epoch` sees each epoch's log.
pub fn train_detr(
    loaded: &Loaded<Detr>,
    processor: &ProcessorConfig,
    train: &CocoDir,
    cfg: &DetrTrainConfig,
    mut on_epoch: impl FnMut(&EpochLog),
) -> Result<Vec<EpochLog>> {
    cfg.validate()?;
    let model = &loaded.model;
    let loss_cfg = DetrLossConfig::new(model.config.num_labels());
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
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut order: Vec<usize> = (0..train.annotations.images.len()).collect();
    let mut logs = vec![];
    for epoch in 0..cfg.epochs {
        let t0 = std::time::Instant::now();
        order.shuffle(&mut rng);
        let (mut sums, mut n) = ([0f64; 4], 0usize);
        for chunk in order.chunks(cfg.batch_size) {
            let infos: Vec<_> = chunk
                .iter()
                .map(|&i| &train.annotations.images[i])
                .collect();
            let imgs = infos
                .iter()
                .map(|im| crate::image::open(&train.image_path(&im.file_name)))
                .collect::<Result<Vec<_>>>()?;
            let batch = processor.batch_padded(&imgs, &candle_core::Device::Cpu)?;
            let (_, _, ph, pw) = batch.pixel_values.dims4()?;
            let tgts = infos
                .iter()
                .zip(&imgs)
                .zip(&batch.sizes)
                .map(|((im, img), &rs)| {
                    targets(
                        train,
                        im.id,
                        (img.height(), img.width()),
                        rs,
                        (ph, pw),
                        loss_cfg.num_labels,
                    )
                })
                .collect::<Result<Vec<_>>>()?;
            let out = model.forward(
                &batch.pixel_values,
                &batch.pixel_mask,
                &mut Ctx::train(&mut rng),
            )?;
            let loss = detr_loss(
                &out.logits,
                &out.pred_boxes,
                &out.auxiliary,
                &tgts,
                &loss_cfg,
            )?;
            let mut grads = loss.total.backward()?;
            clip_grad_norm(&mut grads, &var_list, cfg.clip)?;
            opt.step(&grads, cfg.lr)?;
            let total = loss.total.to_scalar::<f32>()? as f64;
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
        let log = EpochLog {
            epoch: epoch + 1,
            loss: m(0),
            loss_ce: m(1),
            loss_bbox: m(2),
            loss_giou: m(3),
            seconds: t0.elapsed().as_secs_f64(),
        };
        on_epoch(&log);
        logs.push(log);
    }
    Ok(logs)
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
    let (_, _, ph, pw) = batch.pixel_values.dims4()?;
    let targets: Vec<(u32, u32)> = images
        .iter()
        .zip(&batch.sizes)
        .map(|(img, &(rh, rw))| {
            let (oh, ow) = (img.height() as f32, img.width() as f32);
            (
                (oh * ph as f32 / rh as f32).round() as u32,
                (ow * pw as f32 / rw as f32).round() as u32,
            )
        })
        .collect();
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
        for (im, dets) in chunk.iter().zip(predict(
            model,
            processor,
            &imgs,
            0.0,
            &candle_core::Device::Cpu,
        )?) {
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
