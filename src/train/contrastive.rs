//! CLIP's symmetric contrastive loss with a learnable temperature, and a training loop for
//! image–caption pairs on the trainer's parts (AdamW, schedule, clipping, metrics, checkpoints).
use super::{clip_grad_norm, lr_at, AdamW, TrainConfig};
use crate::data::shape_scenes::Scene;
use crate::image::ProcessorConfig;
use crate::models::clip::{Clip, ClipTokenizer};
use crate::nn::{Ctx, ParamStore};
use crate::progress::Progress;
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::borrow::Cow;
use std::io::Write;
use std::path::Path;

/// `(CE(logits_per_image, arange) + CE(logits_per_text, arange)) / 2`.
pub fn clip_loss(logits_per_image: &Tensor) -> Result<Tensor> {
    let n = logits_per_image.dim(0)?;
    let targets = Tensor::arange(0u32, n as u32, logits_per_image.device())?;
    let a = super::cross_entropy(logits_per_image, &targets, 0.0)?;
    let b = super::cross_entropy(&logits_per_image.t()?.contiguous()?, &targets, 0.0)?;
    Ok(((a + b)? * 0.5)?)
}

/// The symmetric loss with several positives per row: `positives[i][j]` is 1 where caption `j`
/// is true of image `i`. Each direction's target is the positives spread evenly (soft-target
/// cross-entropy), so "a red shape" is not pushed away from the other red images in the batch.
/// With the identity it is [`clip_loss`].
pub fn clip_loss_multi(logits_per_image: &Tensor, positives: &Tensor) -> Result<Tensor> {
    if positives.dims() != logits_per_image.dims() {
        return Err(Error::Shape(format!(
            "positives {:?} do not match logits {:?}",
            positives.dims(),
            logits_per_image.dims()
        )));
    }
    let soft_ce = |logits: &Tensor, targets: &Tensor| -> Result<Tensor> {
        // Every row has at least its own pair, so the row sum is >= 1.
        let t = targets.broadcast_div(&targets.sum_keepdim(1)?)?;
        let logp = candle_nn::ops::log_softmax(logits, candle_core::D::Minus1)?;
        Ok((t * logp)?.sum(1)?.neg()?.mean_all()?)
    };
    let a = soft_ce(logits_per_image, positives)?;
    let b = soft_ce(
        &logits_per_image.t()?.contiguous()?,
        &positives.t()?.contiguous()?,
    )?;
    Ok(((a + b)? * 0.5)?)
}

/// `positives[i][j]`: is scene `j`'s caption true of scene `i`?
pub fn caption_positives(scenes: &[&Scene], device: &Device) -> Result<Tensor> {
    let n = scenes.len();
    let m: Vec<f32> = scenes
        .iter()
        .flat_map(|img| scenes.iter().map(|cap| cap.caption_fits(img) as u8 as f32))
        .collect();
    Ok(Tensor::from_vec(m, (n, n), device)?)
}

/// Pixel batch [B, 3, H, W] of scenes, through the CLIP processor (no resize at model size).
pub fn scene_pixels(
    scenes: &[&Scene],
    size: usize,
    processor: &ProcessorConfig,
    device: &Device,
) -> Result<Tensor> {
    let rgb: Vec<&[u8]> = scenes.iter().map(|s| s.rgb.as_slice()).collect();
    rgb_pixels(&rgb, size, processor, device)
}

/// Pixel batch [B, 3, H, W] of `size`×`size` HWC RGB buffers, through `processor`.
pub fn rgb_pixels(
    rgb: &[&[u8]],
    size: usize,
    processor: &ProcessorConfig,
    device: &Device,
) -> Result<Tensor> {
    let imgs: Vec<image::DynamicImage> = rgb
        .iter()
        .map(|px| {
            image::RgbImage::from_raw(size as u32, size as u32, px.to_vec())
                .map(image::DynamicImage::ImageRgb8)
                .ok_or_else(|| Error::Shape("scene pixels do not match the size".into()))
        })
        .collect::<Result<_>>()?;
    processor.batch(&imgs, device)
}

/// Caption ids and mask.
pub fn caption_batch(
    tok: &ClipTokenizer,
    texts: &[&str],
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let (ids, mask) = tok.encode_batch(texts, crate::models::clip::tokenizer::CONTEXT_LENGTH);
    Ok((
        Tensor::new(ids, device)?,
        Tensor::new(mask, device)?.to_dtype(DType::F32)?,
    ))
}

/// One epoch's batches: every scene once, in `batch_size` batches. A `pure` fraction of the
/// scenes goes into attribute-pure batches, half of them batches whose (first) objects share
/// one colour, half batches sharing one shape; the rest into plain shuffled batches. Why: a
/// logit component that every image of a batch shares cancels in the softmax, so within a
/// one-colour batch the caption "a circle" is trained on shape alone and cannot learn "red
/// images are never circles", the shortcut that sinks held-out pairs; within a one-shape
/// batch colour words are trained free of shape. (In-batch hard negatives.)
pub fn epoch_batches(train: &[Scene], batch_size: usize, pure: f64, seed: u64) -> Vec<Vec<usize>> {
    let bs = batch_size.max(1);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut order: Vec<usize> = (0..train.len()).collect();
    order.shuffle(&mut rng);
    let n_pure = ((pure.clamp(0.0, 1.0) * train.len() as f64).round() as usize).min(train.len());
    let (pure_part, plain) = order.split_at(n_pure);
    let mut batches: Vec<Vec<usize>> = plain.chunks(bs).map(|c| c.to_vec()).collect();
    let (by_color, by_shape) = pure_part.split_at(n_pure / 2);
    let key = |i: usize, color: bool| {
        train[i]
            .objects
            .first()
            .map(|o| if color { o.color } else { o.shape })
    };
    for (part, color) in [(by_color, true), (by_shape, false)] {
        let mut sorted = part.to_vec();
        // Stable: within one attribute value the shuffled order stays.
        sorted.sort_by_key(|&i| key(i, color));
        for run in sorted.chunk_by(|&i, &j| key(i, color) == key(j, color)) {
            batches.extend(run.chunks(bs).map(|c| c.to_vec()));
        }
    }
    batches.shuffle(&mut rng);
    batches
}

/// What [`fit_clip`] calls after each epoch with (epoch from 1, mean loss, model); the JSON
/// object it returns is merged into that epoch's `metrics.jsonl` line (e.g. evaluation).
pub type EpochHook<'a> = dyn FnMut(usize, f64, &Clip) -> Result<serde_json::Value> + 'a;

/// Trains `model` on (scene, caption) pairs with [`clip_loss_multi`] (a caption is a positive
/// for every scene it is true of) and batches from [`epoch_batches`] (`pure` 0: plain
/// shuffling). `train(epoch)` gives each epoch's scenes (the same ones, or fresh ones of the
/// same count: the learning-rate schedule is laid out from epoch 0's); every
/// epoch's mean loss and whatever `on_epoch` returns are appended to `out/metrics.jsonl`; the
/// final weights are saved as an HF CLIP checkpoint in `out`.
#[allow(clippy::too_many_arguments)]
pub fn fit_clip<'s>(
    model: &Clip,
    store: &ParamStore,
    tok: &ClipTokenizer,
    processor: &ProcessorConfig,
    train: &dyn Fn(usize) -> Cow<'s, [Scene]>,
    size: usize,
    cfg: &TrainConfig,
    pure: f64,
    out: &Path,
    device: &Device,
    on_epoch: &mut EpochHook,
    progress: &dyn Progress,
) -> Result<Vec<f64>> {
    cfg.validate()?;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let vars = store.vars();
    let var_list: Vec<_> = vars.iter().map(|(_, v)| v.clone()).collect();
    let logit_scale = vars
        .iter()
        .find(|(n, _)| n == "logit_scale")
        .map(|(_, v)| v.clone());
    let mut opt = AdamW::with_layer_norms(vars, cfg.optim, &model.layer_norms());
    let mut scenes = train(0);
    let steps_per_epoch = scenes.len().div_ceil(cfg.batch_size.max(1));
    let total = steps_per_epoch * cfg.epochs;
    let warmup = (cfg.warmup_fraction * total as f64).round() as usize;
    let metrics = out.join("metrics.jsonl");
    crate::util::atomic_write(&metrics, b"")?;
    let mut losses = vec![];
    let mut step = 0;
    for epoch in 0..cfg.epochs {
        if epoch > 0 {
            scenes = train(epoch);
        }
        let batches = epoch_batches(&scenes, cfg.batch_size, pure, cfg.seed ^ epoch as u64);
        let (mut sum, mut n) = (0f64, 0usize);
        let t0 = std::time::Instant::now();
        progress.start(
            &format!("epoch {}/{}", epoch + 1, cfg.epochs),
            Some(batches.len() as u64),
        );
        for idx in &batches {
            if idx.len() < 2 {
                continue; // a contrastive batch needs negatives
            }
            let batch: Vec<&Scene> = idx.iter().map(|&i| &scenes[i]).collect();
            let px = scene_pixels(&batch, size, processor, device)?;
            let texts: Vec<&str> = batch.iter().map(|s| s.caption.as_str()).collect();
            let (ids, mask) = caption_batch(tok, &texts, device)?;
            let o = model.forward(&px, &ids, Some(&mask), &mut Ctx::eval())?;
            let loss = clip_loss_multi(&o.logits_per_image, &caption_positives(&batch, device)?)?;
            let mut grads = super::backward(&loss)?;
            if cfg.clip_grad_norm > 0.0 {
                clip_grad_norm(&mut grads, &var_list, cfg.clip_grad_norm)?;
            }
            opt.step(
                &grads,
                lr_at(cfg.optim.lr, step, warmup, total, cfg.schedule),
            )?;
            step += 1;
            // OpenAI clamps the temperature: exp(logit_scale) <= 100.
            if let Some(ls) = &logit_scale {
                if ls.as_tensor().to_scalar::<f32>()? > 100f32.ln() {
                    ls.set(&Tensor::new(100f32.ln(), device)?)?;
                }
            }
            sum += loss.to_scalar::<f32>()? as f64 * idx.len() as f64;
            n += idx.len();
            progress.advance(1, &format!("loss {:.4}", sum / n as f64));
        }
        progress.finish();
        let mean = sum / n.max(1) as f64;
        losses.push(mean);
        progress.note(&format!(
            "epoch {}/{}: contrastive loss {mean:.4} ({:.1}s)",
            epoch + 1,
            cfg.epochs,
            t0.elapsed().as_secs_f64()
        ));
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&metrics)
            .map_err(|e| Error::io(&metrics, e))?;
        let mut line = serde_json::json!({"epoch": epoch + 1, "train_loss": mean});
        if let (Some(l), serde_json::Value::Object(extra)) =
            (line.as_object_mut(), on_epoch(epoch + 1, mean, model)?)
        {
            l.extend(extra);
        }
        writeln!(f, "{line}").map_err(|e| Error::io(&metrics, e))?;
    }
    store.save(&out.join("model.safetensors"))?;
    crate::util::write_json(&out.join("config.json"), &model.config)?;
    crate::util::write_json(&out.join("preprocessor_config.json"), processor)?;
    Ok(losses)
}
