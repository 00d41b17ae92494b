//! Flamingo's recipe in miniature: do tanh-gated cross-attention layers open when only they
//! (and the resampler) train on top of a frozen language model?
//!
//! 1. A small IDEFICS ([`Idefics`], fresh, gates at 0) first trains its language model alone on
//!    the captions of generated shape scenes ([`crate::data::caption_scenes`]), text only
//!    ([`Idefics::forward_text`]): it learns the captions' grammar but cannot know which colour
//!    or shape a scene holds.
//! 2. Then the language model and the vision tower are frozen, and only the Perceiver resampler
//!    and the gated cross-attention layers train, with the scene as `<image>` before the
//!    caption. The gates start at exactly 0, so at step 0 the model *is* the language model; the
//!    run records `tanh(α)` of every gate (attention and MLP, per layer) as training moves them.
//!
//! The frozen weights are checked unchanged at the end; the report holds both loss curves and
//! the gate trajectories.
use crate::data::caption_scenes::{self, words, CaptionScene};
use crate::data::shape_scenes::HELD_OUT;
use crate::models::idefics::{
    Idefics, IdeficsConfig, IdeficsInputs, IdeficsPerceiverConfig, IdeficsVisionConfig,
};
use crate::models::{LoadOptions, Pretrained};
use crate::nn::{Activation, Ctx};
use crate::progress::Progress;
use crate::train::{descend, AdamW, AdamWConfig, DecayRule};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor, D};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Tokens before [`words`].
pub const SPECIALS: [&str; 4] = ["[PAD]", "[BOS]", "[EOS]", "<image>"];
const BOS: u32 = 1;
const EOS: u32 = 2;
const IMAGE: u32 = 3;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GateRunConfig {
    pub image_size: usize,
    pub hidden: usize,
    pub layers: usize,
    pub cross_layer_interval: usize,
    pub scenes: usize,
    /// Steps of language-model training (stage 1).
    pub lm_steps: usize,
    /// Steps of gated training (stage 2).
    pub steps: usize,
    pub batch_size: usize,
    pub lr: f64,
    /// Record the gates every this many steps.
    pub record_every: usize,
    pub seed: u64,
}

impl Default for GateRunConfig {
    fn default() -> Self {
        GateRunConfig {
            image_size: 48,
            hidden: 64,
            layers: 4,
            cross_layer_interval: 1,
            scenes: 4000,
            lm_steps: 400,
            steps: 400,
            batch_size: 32,
            lr: 2e-3,
            record_every: 10,
            seed: 0,
        }
    }
}

impl GateRunConfig {
    /// The IDEFICS these runs build.
    pub fn idefics(&self) -> IdeficsConfig {
        let h = self.hidden;
        IdeficsConfig {
            vocab_size: SPECIALS.len() + words().len(),
            hidden_size: h,
            intermediate_size: 2 * h,
            num_hidden_layers: self.layers,
            num_attention_heads: 4,
            cross_layer_interval: self.cross_layer_interval,
            use_resampler: true,
            max_position_embeddings: 32,
            vision_config: IdeficsVisionConfig {
                embed_dim: h,
                image_size: self.image_size,
                intermediate_size: 2 * h,
                patch_size: 8,
                num_hidden_layers: 2,
                num_attention_heads: 4,
                hidden_act: Activation::Gelu,
                ..IdeficsVisionConfig::default()
            },
            perceiver_config: IdeficsPerceiverConfig {
                use_resampler: true,
                resampler_n_latents: 8,
                resampler_depth: 1,
                resampler_n_heads: 4,
                resampler_head_dim: h / 4,
                ..IdeficsPerceiverConfig::default()
            },
            ..IdeficsConfig::default()
        }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::Config(format!("gated captioning: {m}")));
        if self.lm_steps == 0 || self.steps == 0 || self.batch_size == 0 || self.scenes == 0 {
            return bad("steps, batch size and scenes must be positive");
        }
        if self.record_every == 0 {
            return bad("record_every must be positive");
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("the learning rate must be positive");
        }
        if self.hidden == 0 || !self.hidden.is_multiple_of(4) {
            return bad("the width must be a positive multiple of 4 (4 heads)");
        }
        if !self.image_size.is_multiple_of(8) || self.image_size == 0 {
            return bad("the image size must be a positive multiple of the patch size 8");
        }
        Ok(())
    }
}

/// The gates at one step: `tanh(α)` of each gated layer's attention and MLP gate.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GatePoint {
    pub step: usize,
    pub attention: Vec<f32>,
    pub mlp: Vec<f32>,
    pub loss: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GateReport {
    pub config: GateRunConfig,
    /// Language-model loss per step (stage 1, text only).
    pub lm_losses: Vec<f64>,
    /// Captioning loss per step with the image (stage 2).
    pub losses: Vec<f64>,
    pub gates: Vec<GatePoint>,
    pub trainable_parameters: usize,
    pub frozen_parameters: usize,
    /// Every frozen weight equal, bit for bit, before and after stage 2.
    pub frozen_unchanged: bool,
    pub seconds: f64,
}

/// Token rows `[BOS] <image> caption [EOS] [PAD]…` [B, T], the mask, and each row's
/// image_attention_mask [B, T, 1] (every token from `<image>` on sees the image; `[BOS]` none).
fn tokens(batch: &[&CaptionScene], device: &Device) -> Result<(Tensor, Tensor, Tensor)> {
    let vocab = words();
    let rows: Vec<Vec<u32>> = batch
        .iter()
        .map(|s| {
            let mut r = vec![BOS, IMAGE];
            for w in s.caption.split(' ') {
                let i = vocab
                    .iter()
                    .position(|v| *v == w)
                    .ok_or_else(|| Error::Config(format!("{w:?} is not a caption word")))?;
                r.push((i + SPECIALS.len()) as u32);
            }
            r.push(EOS);
            Ok(r)
        })
        .collect::<Result<_>>()?;
    let t = rows.iter().map(Vec::len).max().unwrap_or(2);
    let b = rows.len();
    let mut ids = vec![0u32; b * t];
    let mut mask = vec![0f32; b * t];
    let mut seen = vec![0f32; b * t];
    for (i, r) in rows.iter().enumerate() {
        ids[i * t..i * t + r.len()].copy_from_slice(r);
        mask[i * t..i * t + r.len()].fill(1.0);
        seen[i * t + 1..i * t + r.len()].fill(1.0);
    }
    Ok((
        Tensor::from_vec(ids, (b, t), device)?,
        Tensor::from_vec(mask, (b, t), device)?,
        Tensor::from_vec(seen, (b, t, 1), device)?,
    ))
}

/// Pixels [B, 1, 3, S, S] in [-1, 1].
fn pixels(batch: &[&CaptionScene], device: &Device) -> Result<Tensor> {
    let s = batch.first().map(|x| x.size).unwrap_or(0);
    let mut v = Vec::with_capacity(batch.len() * 3 * s * s);
    for x in batch {
        for c in 0..3 {
            v.extend((0..s * s).map(|p| x.rgb[p * 3 + c] as f32 / 127.5 - 1.0));
        }
    }
    Ok(Tensor::from_vec(v, (batch.len(), 1, 3, s, s), device)?)
}

/// Next-token cross-entropy over the caption tokens after `<image>` (mean over real targets).
pub fn lm_loss(logits: &Tensor, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let (b, t, v) = logits.dims3()?;
    // predict ids[:, 2..] from positions 1..t-1 (the caption and [EOS] after <image>)
    let pred = logits.narrow(1, 1, t - 2)?.reshape((b * (t - 2), v))?;
    let target = ids.narrow(1, 2, t - 2)?.flatten_all()?;
    let weight = mask.narrow(1, 2, t - 2)?.flatten_all()?;
    let logp = candle_nn::ops::log_softmax(&pred, D::Minus1)?;
    let nll = logp.gather(&target.unsqueeze(1)?, 1)?.squeeze(1)?.neg()?;
    Ok(((nll * &weight)?.sum_all()? / weight.sum_all()?.to_scalar::<f32>()? as f64)?)
}

/// Runs both stages (see the module doc).
pub fn run(cfg: &GateRunConfig, device: &Device, progress: &dyn Progress) -> Result<GateReport> {
    cfg.validate()?;
    let t0 = std::time::Instant::now();
    let opts = LoadOptions::default()
        .device(device)
        .trainable()
        .seed(cfg.seed);
    let loaded = Idefics::from_config(&cfg.idefics(), &opts)?;
    let (model, store) = (loaded.model, loaded.store);
    let vars = store.vars();
    let is_lm = |n: &str| {
        n.starts_with("model.embed_tokens")
            || n.starts_with("model.layers")
            || n.starts_with("model.norm")
            || n.starts_with("lm_head")
    };
    let is_gated = |n: &str| {
        n.starts_with("model.perceiver_resampler") || n.starts_with("model.gated_cross_attn_layers")
    };
    let pick = |f: &dyn Fn(&str) -> bool| -> Vec<(String, candle_core::Var)> {
        vars.iter().filter(|(n, _)| f(n)).cloned().collect()
    };
    let scenes = caption_scenes::scenes(cfg.scenes, cfg.image_size, &HELD_OUT, false, cfg.seed);
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut order: Vec<usize> = (0..scenes.len()).collect();
    let mut cursor = scenes.len();
    let mut next_batch = |rng: &mut ChaCha8Rng| -> Vec<&CaptionScene> {
        if cursor + cfg.batch_size > order.len() {
            order.shuffle(rng);
            cursor = 0;
        }
        let b = order[cursor..cursor + cfg.batch_size.min(order.len())]
            .iter()
            .map(|&i| &scenes[i])
            .collect();
        cursor += cfg.batch_size;
        b
    };
    let adamw = |lr: f64| AdamWConfig {
        lr,
        weight_decay: 0.0,
        decay: DecayRule::HfTrainer,
        ..AdamWConfig::default()
    };
    // Stage 1: the language model alone, text only.
    let lm_vars = pick(&is_lm);
    let lm_list: Vec<_> = lm_vars.iter().map(|(_, v)| v.clone()).collect();
    let mut opt = AdamW::new(lm_vars.clone(), adamw(cfg.lr));
    let mut lm_losses = vec![];
    progress.start("language model (text only)", Some(cfg.lm_steps as u64));
    for _ in 0..cfg.lm_steps {
        let batch = next_batch(&mut rng);
        let (ids, mask, _) = tokens(&batch, device)?;
        let logits = model.forward_text(&ids, Some(&mask), &mut Ctx::train(&mut rng))?;
        let loss = lm_loss(&logits, &ids, &mask)?;
        let l = descend(&loss, &mut opt, &lm_list, 1.0, cfg.lr, lm_losses.len())?;
        lm_losses.push(l);
        progress.advance(1, &format!("loss {l:.4}"));
    }
    progress.finish();
    // Stage 2: freeze everything but the resampler and the gated layers.
    let frozen: Vec<(String, Tensor)> = vars
        .iter()
        .filter(|(n, _)| !is_gated(n))
        .map(|(n, v)| Ok((n.clone(), v.as_tensor().copy()?)))
        .collect::<Result<_>>()?;
    let trainable = pick(&is_gated);
    let train_list: Vec<_> = trainable.iter().map(|(_, v)| v.clone()).collect();
    let trainable_parameters = train_list.iter().map(|v| v.elem_count()).sum();
    let frozen_parameters = frozen.iter().map(|(_, t)| t.elem_count()).sum();
    let mut opt = AdamW::new(trainable, adamw(cfg.lr));
    let mut losses = vec![];
    let mut gates = vec![];
    let record = |step: usize, loss: f64, gates: &mut Vec<GatePoint>| -> Result<()> {
        let (a, m): (Vec<f32>, Vec<f32>) = model
            .gated_layers()
            .iter()
            .map(|g| g.gate_values())
            .collect::<candle_core::Result<Vec<_>>>()?
            .into_iter()
            .unzip();
        gates.push(GatePoint {
            step,
            attention: a,
            mlp: m,
            loss,
        });
        Ok(())
    };
    progress.start("gated layers + resampler", Some(cfg.steps as u64));
    for step in 0..cfg.steps {
        let batch = next_batch(&mut rng);
        let (ids, mask, seen) = tokens(&batch, device)?;
        let px = pixels(&batch, device)?;
        let x = IdeficsInputs {
            input_ids: &ids,
            attention_mask: Some(&mask),
            pixel_values: &px,
            image_attention_mask: &seen,
        };
        let out = model.forward(&x, &mut Ctx::train(&mut rng))?;
        let loss = lm_loss(&out.logits, &ids, &mask)?;
        if step % cfg.record_every == 0 {
            record(step, loss.to_scalar::<f32>()? as f64, &mut gates)?;
        }
        let l = descend(&loss, &mut opt, &train_list, 1.0, cfg.lr, step)?;
        losses.push(l);
        progress.advance(1, &format!("loss {l:.4}"));
    }
    record(
        cfg.steps,
        losses.last().copied().unwrap_or(f64::NAN),
        &mut gates,
    )?;
    progress.finish();
    let now: std::collections::HashMap<String, Tensor> =
        store.named_tensors().into_iter().collect();
    let mut frozen_unchanged = true;
    for (n, before) in &frozen {
        let after = now
            .get(n)
            .ok_or_else(|| Error::Msg(format!("{n} vanished from the store")))?;
        let diff = (before - after)?
            .abs()?
            .max_all()?
            .to_dtype(DType::F32)?
            .to_scalar::<f32>()?;
        frozen_unchanged &= diff == 0.0;
    }
    Ok(GateReport {
        config: cfg.clone(),
        lm_losses,
        losses,
        gates,
        trainable_parameters,
        frozen_parameters,
        frozen_unchanged,
        seconds: t0.elapsed().as_secs_f64(),
    })
}
