//! Pretraining a DETR's backbone from scratch on the detection set itself, before the set
//! loss: DETR assumes an ImageNet-trained backbone, and through the decoder alone a random
//! ResNet learns which shape is where far too slowly (held-out AP50 0.017 after 36 epochs).
//! A 1×1-convolution head on the map DETR reads classifies every cell by the boxes over it —
//! the smallest box containing the cell's centre, or the box's own centre cell for a box too
//! small to contain one, else background — a coarse segmentation learned from the COCO boxes
//! alone. The head is discarded; the backbone (with its learned batch statistics) is DETR's.
use super::detr_train::{load_batch, CocoDir};
use super::optim::{AdamW, AdamWConfig};
use crate::data::coco::CocoImage;
use crate::image::ProcessorConfig;
use crate::models::detr::Detr;
use crate::models::Loaded;
use crate::nn::layers::{Linear, Then};
use crate::nn::store::ParamStore;
use crate::nn::Ctx;
use crate::{Error, Result};
use candle_core::{DType, Tensor, D};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// How the backbone is pretrained.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PretrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    /// Weight of a background cell's loss (objects: 1); most cells are background.
    pub background_weight: f64,
    pub seed: u64,
}

impl Default for PretrainConfig {
    /// Three epochs: over `train-detr`'s 8,000 default scenes, about the steps of the ten over
    /// 2,000 it ran before, and a held-out cell accuracy of 88.9% (ten over 2,000: 86.5%).
    fn default() -> Self {
        PretrainConfig {
            epochs: 3,
            batch_size: 16,
            lr: 1e-3,
            background_weight: 0.2,
            seed: 0,
        }
    }
}

/// One pretraining epoch: mean loss, and the accuracy on cells an object covers (training
/// cells while training; held-out ones after the epoch when a held-out set is given).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct PretrainLog {
    pub epoch: usize,
    pub loss: f64,
    pub train_object_accuracy: f64,
    pub val_object_accuracy: Option<f64>,
    /// Share of background cells classified as background (held-out).
    pub val_background_accuracy: Option<f64>,
    pub seconds: f64,
}

/// Cell labels of one image's `h`×`w` map: class `k` of the box over each cell, or
/// `background` (see the module docs). Boxes are DETR targets: `(cx, cy, w, h)` relative to
/// the padded input, which the map covers.
pub fn cell_labels(t: &super::detr_loss::Target, h: usize, w: usize, background: u32) -> Vec<u32> {
    let mut labels = vec![background; h * w];
    let mut owner_area = vec![f32::INFINITY; h * w];
    for (&k, b) in t.class_labels.iter().zip(&t.boxes) {
        let [cx, cy, bw, bh] = *b;
        let area = bw * bh;
        let mut any = false;
        for y in 0..h {
            let yc = (y as f32 + 0.5) / h as f32;
            if (yc - cy).abs() > bh / 2.0 {
                continue;
            }
            for x in 0..w {
                let xc = (x as f32 + 0.5) / w as f32;
                if (xc - cx).abs() <= bw / 2.0 {
                    any = true;
                    let i = y * w + x;
                    if area < owner_area[i] {
                        owner_area[i] = area;
                        labels[i] = k;
                    }
                }
            }
        }
        if !any {
            let x = ((cx * w as f32) as usize).min(w - 1);
            let y = ((cy * h as f32) as usize).min(h - 1);
            let i = y * w + x;
            if area < owner_area[i] {
                owner_area[i] = area;
                labels[i] = k;
            }
        }
    }
    labels
}

/// Pretrains `loaded`'s backbone (built trainable, its batch norms learning their statistics)
/// on `train`; `on_epoch` sees each epoch's log.
pub fn pretrain_backbone(
    loaded: &Loaded<Detr>,
    processor: &ProcessorConfig,
    train: &CocoDir,
    val: Option<&CocoDir>,
    cfg: &PretrainConfig,
    mut on_epoch: impl FnMut(&PretrainLog),
) -> Result<Vec<PretrainLog>> {
    if cfg.epochs == 0 || cfg.batch_size == 0 || !(cfg.lr > 0.0 && cfg.lr.is_finite()) {
        return Err(Error::Config(format!(
            "backbone pretraining: epochs {}, batch size {} and lr {} must be positive",
            cfg.epochs, cfg.batch_size, cfg.lr
        )));
    }
    let model = &loaded.model;
    let num_labels = model.config.num_labels();
    let background = num_labels as u32;
    let channels = model.backbone_channels()?;
    let device = loaded.store.device().clone();
    let head_store = ParamStore::fresh(cfg.seed ^ 0x5eed, true, &device);
    let head = Linear::new(
        head_store.var_builder(DType::F32),
        channels,
        num_labels + 1,
        true,
    )?;
    let mut params: Vec<_> = loaded
        .store
        .vars()
        .into_iter()
        .filter(|(n, _)| n.starts_with("model.backbone."))
        .collect();
    if params.is_empty() {
        return Err(Error::Config(
            "the backbone has no trainable parameters to pretrain".into(),
        ));
    }
    params.extend(head_store.vars());
    let mut opt = AdamW::new(
        params,
        AdamWConfig {
            lr: cfg.lr,
            weight_decay: 1e-4,
            ..AdamWConfig::default()
        },
    );
    // Cell logits [B·h·w, K+1] of a batch and their labels.
    let cells = |d: &CocoDir, infos: &[&CocoImage], ctx: &mut Ctx| -> Result<(Tensor, Vec<u32>)> {
        let (batch, tgts) = load_batch(d, infos, processor, num_labels, &device)?;
        let map = model.backbone_map(&batch.pixel_values, ctx)?; // [B, C, h, w]
        let (b, c, h, w) = map.dims4()?;
        // [B, C, h, w] → [B·h·w, C] → [B·h·w, K+1]
        let flat = map.permute((0, 2, 3, 1))?.reshape((b * h * w, c))?;
        let logits = head.forward(&flat, Then::none(), ctx)?;
        let labels = tgts
            .iter()
            .flat_map(|t| cell_labels(t, h, w, background))
            .collect();
        Ok((logits, labels))
    };
    let mut history = vec![];
    for epoch in 0..cfg.epochs {
        let t0 = std::time::Instant::now();
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed.wrapping_mul(7_919) ^ epoch as u64);
        let mut order: Vec<usize> = (0..train.annotations.images.len()).collect();
        order.shuffle(&mut rng);
        let (mut loss_sum, mut steps, mut hit, mut objects) = (0f64, 0usize, 0usize, 0usize);
        for chunk in order.chunks(cfg.batch_size) {
            let infos: Vec<_> = chunk
                .iter()
                .map(|&i| &train.annotations.images[i])
                .collect();
            let (logits, labels) = cells(train, &infos, &mut Ctx::train(&mut rng))?;
            let weights: Vec<f32> = labels
                .iter()
                .map(|&l| {
                    if l == background {
                        cfg.background_weight as f32
                    } else {
                        1.0
                    }
                })
                .collect();
            let n = labels.len();
            let wsum: f32 = weights.iter().sum();
            let target = Tensor::from_vec(labels.clone(), (n, 1), &device)?;
            let weight = Tensor::from_vec(weights, n, &device)?;
            let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
            let nll = logp.gather(&target, 1)?.squeeze(1)?.neg()?;
            let loss = ((nll * weight)?.sum_all()? / wsum as f64)?;
            let value = loss.to_scalar::<f32>()? as f64;
            if !value.is_finite() {
                return Err(Error::Msg(format!(
                    "backbone pretraining: the loss became {value} at epoch {} (lower the learning rate)",
                    epoch + 1
                )));
            }
            opt.step(&super::backward(&loss)?, cfg.lr)?;
            let pred = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
            for (p, l) in pred.iter().zip(&labels) {
                if *l != background {
                    objects += 1;
                    hit += (p == l) as usize;
                }
            }
            loss_sum += value;
            steps += 1;
        }
        let (val_object_accuracy, val_background_accuracy) = match val {
            Some(v) => {
                let (o, b) = cell_accuracy(v, &cells, background)?;
                (Some(o), Some(b))
            }
            None => (None, None),
        };
        let log = PretrainLog {
            epoch: epoch + 1,
            loss: loss_sum / steps.max(1) as f64,
            train_object_accuracy: hit as f64 / objects.max(1) as f64,
            val_object_accuracy,
            val_background_accuracy,
            seconds: t0.elapsed().as_secs_f64(),
        };
        on_epoch(&log);
        history.push(log);
    }
    Ok(history)
}

/// Held-out accuracy on object cells and on background cells.
type Cells<'a> = dyn Fn(&CocoDir, &[&CocoImage], &mut Ctx) -> Result<(Tensor, Vec<u32>)> + 'a;

fn cell_accuracy(v: &CocoDir, cells: &Cells, background: u32) -> Result<(f64, f64)> {
    let (mut oh, mut on, mut bh, mut bn) = (0usize, 0usize, 0usize, 0usize);
    for chunk in v.annotations.images.chunks(16) {
        let infos: Vec<_> = chunk.iter().collect();
        let (logits, labels) = cells(v, &infos, &mut Ctx::eval())?;
        let pred = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
        for (p, l) in pred.iter().zip(&labels) {
            if *l == background {
                bn += 1;
                bh += (p == l) as usize;
            } else {
                on += 1;
                oh += (p == l) as usize;
            }
        }
    }
    Ok((oh as f64 / on.max(1) as f64, bh as f64 / bn.max(1) as f64))
}

#[cfg(test)]
mod tests {
    use super::cell_labels;
    use crate::train::detr_loss::Target;

    #[test]
    fn cells_take_the_smallest_box_over_them_and_tiny_boxes_their_centre() {
        let t = Target {
            // A big box over the left half, a smaller one inside it, a tiny one at the right.
            class_labels: vec![1, 2, 3],
            boxes: vec![
                [0.25, 0.5, 0.5, 1.0],
                [0.125, 0.125, 0.25, 0.25],
                [0.9, 0.9, 0.01, 0.01],
            ],
        };
        let l = cell_labels(&t, 4, 4, 9);
        assert_eq!(
            l,
            vec![
                2, 1, 9, 9, //
                1, 1, 9, 9, //
                1, 1, 9, 9, //
                1, 1, 9, 3,
            ]
        );
    }
}
