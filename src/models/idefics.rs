//! IDEFICS (`IdeficsForVisionText2Text`), Hugging Face's reproduction of Flamingo: a CLIP-style
//! vision tower ([`ClipVision`]: the same module tree, `gelu`), IDEFICS's Perceiver resampler
//! ([`Resampler`]) and a LLaMA language model into which tanh-gated cross-attention layers
//! ([`GatedCrossAttention`]) are inserted before every `cross_layer_interval`-th decoder layer.
//!
//! Images come as `pixel_values` [B, N, 3, S, S] (N image slots per row) with an
//! `image_attention_mask` [B, T, N] saying which image each token sees (IDEFICS's processor:
//! the latest preceding `<image>`); tokens that see none get nothing from the cross-attention
//! (the gate). The vocabulary is decoupled: `embed_tokens.weight` [V, H] plus
//! `additional_embedding` [A, H], and `lm_head.weight` plus `additional_fc` for the extra ids.
//! Positions are `cumsum(attention_mask) - 1` (1 at padding), as transformers computes them.
//!
//! On-disk names are transformers': everything under `model.` (`embed_tokens`, `vision_model`,
//! `perceiver_resampler`, `gated_cross_attn_layers`, `layers`, `norm`) and `lm_head`.
use crate::models::clip::{ClipVision, ClipVisionConfig};
use crate::models::load::{fresh, strict, Checkpoint, LoadOptions, Loaded, Pretrained};
use crate::models::Family;
use crate::nn::flamingo::{
    GateShape, GatedConfig, GatedCrossAttention, Resampler, ResamplerConfig,
};
use crate::nn::generate::causal_padding_mask;
use crate::nn::llama::{LlamaLayer, RmsNorm, Rope};
use crate::nn::Precision;
use crate::nn::{check_heads, Activation, Ctx, Linear, Then};
use crate::{Error, Result};
use candle_core::{DType, Tensor, D};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

/// `IdeficsVisionConfig` (a CLIP vision tower; `embed_dim` is its width).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct IdeficsVisionConfig {
    pub embed_dim: usize,
    pub image_size: usize,
    pub intermediate_size: usize,
    pub patch_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_channels: usize,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Default for IdeficsVisionConfig {
    fn default() -> Self {
        IdeficsVisionConfig {
            embed_dim: 768,
            image_size: 224,
            intermediate_size: 5120,
            patch_size: 14,
            num_hidden_layers: 32,
            num_attention_heads: 16,
            num_channels: 3,
            hidden_act: Activation::Gelu,
            layer_norm_eps: 1e-5,
            extra: Default::default(),
        }
    }
}

/// `IdeficsPerceiverConfig`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct IdeficsPerceiverConfig {
    pub use_resampler: bool,
    pub resampler_n_latents: usize,
    pub resampler_depth: usize,
    pub resampler_n_heads: usize,
    pub resampler_head_dim: usize,
    pub qk_layer_norms_perceiver: bool,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Default for IdeficsPerceiverConfig {
    fn default() -> Self {
        IdeficsPerceiverConfig {
            use_resampler: false,
            resampler_n_latents: 64,
            resampler_depth: 6,
            resampler_n_heads: 16,
            resampler_head_dim: 96,
            qk_layer_norms_perceiver: false,
            extra: Default::default(),
        }
    }
}

/// `transformers.IdeficsConfig` (defaults equal; unread fields kept as they are).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct IdeficsConfig {
    pub vocab_size: usize,
    pub additional_vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub dropout: f64,
    /// Only `silu` (LLaMA's SwiGLU) is supported.
    pub hidden_act: String,
    pub initializer_range: f64,
    /// "zeros", "ones" or "normal": how fresh gates start.
    pub alpha_initializer: String,
    pub alphas_initializer_range: f64,
    /// "float" (one scalar per gate) or "vector" (one per channel).
    pub alpha_type: String,
    pub rms_norm_eps: f64,
    pub cross_layer_interval: usize,
    pub qk_layer_norms: bool,
    pub use_resampler: bool,
    pub max_position_embeddings: usize,
    pub rope_parameters: Option<serde_json::Value>,
    pub vision_config: IdeficsVisionConfig,
    pub perceiver_config: IdeficsPerceiverConfig,
    pub architectures: Vec<String>,
    pub model_type: String,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Default for IdeficsConfig {
    fn default() -> Self {
        IdeficsConfig {
            vocab_size: 32000,
            additional_vocab_size: 0,
            hidden_size: 4096,
            intermediate_size: 11008,
            num_hidden_layers: 32,
            num_attention_heads: 32,
            dropout: 0.0,
            hidden_act: "silu".into(),
            initializer_range: 0.02,
            alpha_initializer: "zeros".into(),
            alphas_initializer_range: 0.0,
            alpha_type: "float".into(),
            rms_norm_eps: 1e-6,
            cross_layer_interval: 1,
            qk_layer_norms: false,
            use_resampler: false,
            max_position_embeddings: 2048,
            rope_parameters: None,
            vision_config: IdeficsVisionConfig::default(),
            perceiver_config: IdeficsPerceiverConfig::default(),
            architectures: vec!["IdeficsForVisionText2Text".into()],
            model_type: "idefics".into(),
            extra: Default::default(),
        }
    }
}

impl IdeficsConfig {
    fn check(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(format!("IDEFICS config: {m}")));
        check_heads(self.hidden_size, self.num_attention_heads)?;
        if self.hidden_act != "silu" {
            return bad(format!(
                "hidden_act {:?}: only silu (SwiGLU) is supported",
                self.hidden_act
            ));
        }
        if self.cross_layer_interval == 0
            || !self
                .num_hidden_layers
                .is_multiple_of(self.cross_layer_interval)
        {
            return bad(format!(
                "cross_layer_interval {} must divide num_hidden_layers {}",
                self.cross_layer_interval, self.num_hidden_layers
            ));
        }
        if !matches!(self.alpha_type.as_str(), "float" | "vector") {
            return bad(format!(
                "alpha_type {:?} is neither float nor vector",
                self.alpha_type
            ));
        }
        if !matches!(
            self.alpha_initializer.as_str(),
            "zeros" | "ones" | "normal" | "gaussian" | "random"
        ) {
            return bad(format!(
                "alpha_initializer {:?} is unknown",
                self.alpha_initializer
            ));
        }
        if self.vocab_size == 0 || self.max_position_embeddings == 0 {
            return bad("vocab_size and max_position_embeddings must be positive".into());
        }
        let p = &self.perceiver_config;
        if self.use_resampler
            && (p.resampler_n_heads == 0 || p.resampler_head_dim == 0 || p.resampler_n_latents == 0)
        {
            return bad("the resampler needs latents, heads and a head width".into());
        }
        Ok(())
    }

    fn rope_theta(&self) -> f64 {
        self.rope_parameters
            .as_ref()
            .and_then(|r| r.get("rope_theta"))
            .and_then(|t| t.as_f64())
            .unwrap_or(10_000.0)
    }

    fn vision(&self) -> ClipVisionConfig {
        let v = &self.vision_config;
        ClipVisionConfig {
            hidden_size: v.embed_dim,
            intermediate_size: v.intermediate_size,
            num_hidden_layers: v.num_hidden_layers,
            num_attention_heads: v.num_attention_heads,
            num_channels: v.num_channels,
            image_size: v.image_size,
            patch_size: v.patch_size,
            hidden_act: v.hidden_act,
            layer_norm_eps: v.layer_norm_eps,
            extra: Default::default(),
        }
    }
}

/// The inputs of one forward.
#[derive(Clone, Copy, Debug)]
pub struct IdeficsInputs<'a> {
    /// [B, T] u32.
    pub input_ids: &'a Tensor,
    /// [B, T], 1 for tokens; `None`: all tokens.
    pub attention_mask: Option<&'a Tensor>,
    /// [B, N, 3, S, S].
    pub pixel_values: &'a Tensor,
    /// [B, T, N]: 1 where token t sees image n.
    pub image_attention_mask: &'a Tensor,
}

/// What a forward returns.
#[derive(Clone, Debug)]
pub struct IdeficsOutput {
    /// [B, T, V + A]
    pub logits: Tensor,
    /// The final norm's output [B, T, H].
    pub hidden: Tensor,
    /// The states the text cross-attends to [B, N·L, E] (resampled, or the vision tower's).
    pub image_states: Tensor,
}

/// `IdeficsForVisionText2Text`.
#[derive(Clone, Debug)]
pub struct Idefics {
    pub config: IdeficsConfig,
    embed_tokens: Tensor,
    additional_embedding: Option<Tensor>,
    vision: ClipVision,
    resampler: Option<Resampler>,
    gated: Vec<GatedCrossAttention>,
    layers: Vec<LlamaLayer>,
    norm: RmsNorm,
    lm_head: Linear,
    additional_fc: Option<Linear>,
    rope: Rope,
}

impl Idefics {
    pub fn new(vb: VarBuilder, c: &IdeficsConfig) -> Result<Self> {
        c.check()?;
        let m = vb.pp("model");
        let h = c.hidden_size;
        let std = Init::Randn {
            mean: 0.0,
            stdev: c.initializer_range,
        };
        let e = c.vision_config.embed_dim;
        let p = &c.perceiver_config;
        let alpha_init = match c.alpha_initializer.as_str() {
            "zeros" => 0.0,
            "ones" => 1.0,
            // "normal": fresh gates drawn elsewhere would not be reproducible here; a fresh
            // model starts at 0, like Flamingo, and checkpoints carry their values.
            _ => 0.0,
        };
        let extra = |vb: VarBuilder, name: &str| -> Result<Option<Tensor>> {
            Ok(if c.additional_vocab_size > 0 {
                Some(vb.get_with_hints((c.additional_vocab_size, h), name, std)?)
            } else {
                None
            })
        };
        let gated = GatedConfig {
            dim: h,
            kv_dim: e,
            heads: c.num_attention_heads,
            intermediate: c.intermediate_size,
            eps: c.rms_norm_eps,
            qk_norms: c.qk_layer_norms,
            gate: if c.alpha_type == "vector" {
                GateShape::Vector
            } else {
                GateShape::Scalar
            },
            alpha_init,
        };
        Ok(Idefics {
            embed_tokens: m
                .pp("embed_tokens")
                .get_with_hints((c.vocab_size, h), "weight", std)?,
            additional_embedding: extra(m.pp("embed_tokens").pp("additional_embedding"), "weight")?,
            vision: ClipVision::new(m.pp("vision_model"), &c.vision())?,
            resampler: if c.use_resampler {
                Some(Resampler::new(
                    m.pp("perceiver_resampler"),
                    &ResamplerConfig {
                        dim: e,
                        depth: p.resampler_depth,
                        heads: p.resampler_n_heads,
                        head_dim: p.resampler_head_dim,
                        latents: p.resampler_n_latents,
                        intermediate: 4 * e,
                        qk_norms: p.qk_layer_norms_perceiver,
                    },
                )?)
            } else {
                None
            },
            gated: (0..c.num_hidden_layers / c.cross_layer_interval)
                .map(|i| GatedCrossAttention::new(m.pp("gated_cross_attn_layers").pp(i), &gated))
                .collect::<candle_core::Result<_>>()?,
            layers: (0..c.num_hidden_layers)
                .map(|i| {
                    LlamaLayer::new(
                        m.pp("layers").pp(i),
                        h,
                        c.num_attention_heads,
                        c.intermediate_size,
                        c.rms_norm_eps,
                    )
                })
                .collect::<candle_core::Result<_>>()?,
            norm: RmsNorm::new(m.pp("norm"), h, c.rms_norm_eps)?,
            lm_head: Linear::from_parts(
                vb.pp("lm_head")
                    .get_with_hints((c.vocab_size, h), "weight", std)?,
                None,
            ),
            additional_fc: extra(vb.pp("lm_head").pp("additional_fc"), "weight")?
                .map(|w| Linear::from_parts(w, None)),
            rope: Rope::new(h / c.num_attention_heads, c.rope_theta()),
            config: c.clone(),
        })
    }

    /// The gated cross-attention layers, in order.
    pub fn gated_layers(&self) -> &[GatedCrossAttention] {
        &self.gated
    }

    /// Token embeddings [B, T, H], the rotary angles of their positions and the additive
    /// causal + padding mask [B, 1, T, T].
    fn embed(
        &self,
        ids: &Tensor,
        mask: Option<&Tensor>,
    ) -> Result<(Tensor, (Tensor, Tensor), Tensor)> {
        let c = &self.config;
        let (b, t) = ids.dims2()?;
        let dev = ids.device();
        let v = c.vocab_size;
        let vocab = v + c.additional_vocab_size;
        let flat: Vec<u32> = ids.flatten_all()?.to_dtype(DType::U32)?.to_vec1()?;
        if let Some(bad) = flat.iter().find(|&&i| i as usize >= vocab) {
            return Err(Error::Shape(format!(
                "token id {bad} is outside 0..{vocab}"
            )));
        }
        // The decoupled table: ids ≥ V read `additional_embedding` (no copy of the tables).
        let main: Vec<u32> = flat
            .iter()
            .map(|&i| if (i as usize) < v { i } else { 0 })
            .collect();
        let mut x = self
            .embed_tokens
            .index_select(&Tensor::new(main, dev)?, 0)?;
        if let Some(extra) = &self.additional_embedding {
            if flat.iter().any(|&i| i as usize >= v) {
                let shifted: Vec<u32> = flat.iter().map(|&i| i.saturating_sub(v as u32)).collect();
                let is_extra: Vec<u8> = flat.iter().map(|&i| (i as usize >= v) as u8).collect();
                let e = extra.index_select(&Tensor::new(shifted, dev)?, 0)?;
                let pick = Tensor::from_vec(is_extra, (b * t, 1), dev)?.broadcast_as(x.shape())?;
                x = pick.where_cond(&e, &x)?;
            }
        }
        let x = x.reshape((b, t, c.hidden_size))?;
        let keep: Vec<Vec<u8>> = match mask {
            Some(m) => {
                if m.dims() != [b, t] {
                    return Err(Error::Shape(format!(
                        "attention_mask {:?} must be [{b}, {t}]",
                        m.dims()
                    )));
                }
                m.to_dtype(DType::F32)?
                    .to_vec2::<f32>()?
                    .into_iter()
                    .map(|row| row.into_iter().map(|k| (k != 0.0) as u8).collect())
                    .collect()
            }
            None => vec![vec![1; t]; b],
        };
        // cumsum(mask) - 1, and 1 where the mask is 0
        let positions: Vec<f32> = keep
            .iter()
            .flat_map(|row| {
                let mut seen = 0f32;
                row.iter()
                    .map(|&k| {
                        seen += k as f32;
                        if k == 0 {
                            1.0
                        } else {
                            seen - 1.0
                        }
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        if let Some(p) = positions
            .iter()
            .find(|&&p| p as usize >= c.max_position_embeddings)
        {
            return Err(Error::Shape(format!(
                "position {p} exceeds max_position_embeddings {}",
                c.max_position_embeddings
            )));
        }
        let pos = Tensor::from_vec(positions, (b, t), dev)?;
        let mask = causal_padding_mask(&keep, t, dev)?;
        Ok((x, self.rope.cos_sin(&pos)?, mask))
    }

    /// [B, T, H] -> logits [B, T, V + A]: `lm_head`, then `additional_fc` for the extra ids.
    fn head(&self, h: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let logits = self.lm_head.forward(h, Then::none(), ctx)?;
        Ok(match &self.additional_fc {
            Some(a) => Tensor::cat(&[&logits, &a.forward(h, Then::none(), ctx)?], D::Minus1)?,
            None => logits,
        })
    }

    /// Images [B, N, 3, S, S] -> the states the text attends to [B, N·L, E].
    pub fn image_states(&self, pixels: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let (b, n, ch, s1, s2) = pixels.dims5()?;
        let flat = pixels.reshape((b * n, ch, s1, s2))?;
        let (states, _) = self.vision.forward(&flat, ctx)?;
        let states = match &self.resampler {
            Some(r) => r.forward(&states, ctx)?,
            None => states,
        };
        let (_, l, e) = states.dims3()?;
        Ok(states.reshape((b, n * l, e))?)
    }

    /// Logits with images (see the module doc). The trace gets, per gated layer, its
    /// cross-attention before the decoder layer's self-attention.
    pub fn forward(&self, x: &IdeficsInputs, ctx: &mut Ctx) -> Result<IdeficsOutput> {
        let (b, t) = x.input_ids.dims2()?;
        let n = x.pixel_values.dim(1)?;
        if x.pixel_values.dim(0)? != b || x.image_attention_mask.dims() != [b, t, n] {
            return Err(Error::Shape(format!(
                "pixel_values {:?} and image_attention_mask {:?} must be [{b}, N, 3, S, S] and \
                 [{b}, {t}, N]",
                x.pixel_values.dims(),
                x.image_attention_mask.dims()
            )));
        }
        let (mut h, rope, mask) = self.embed(x.input_ids, x.attention_mask)?;
        let images = self.image_states(x.pixel_values, ctx)?;
        let l = images.dim(1)? / n;
        // [B, T, N] -> [B, T, N·L] (each image's mask repeated over its latents) -> additive
        let seen = x
            .image_attention_mask
            .to_dtype(DType::F32)?
            .unsqueeze(3)?
            .broadcast_as((b, t, n, l))?
            .reshape((b, t, n * l))?;
        let keep = seen.ne(0.0)?;
        let image_mask = keep
            .where_cond(&seen.zeros_like()?, &(seen.ones_like()? * f32::MIN as f64)?)?
            .unsqueeze(1)?;
        // [B, T]: 1 where the token sees at least one image
        let gate = keep.to_dtype(DType::F32)?.max(D::Minus1)?;
        let interval = self.config.cross_layer_interval;
        for (i, layer) in self.layers.iter().enumerate() {
            if i % interval == 0 {
                h = self.gated[i / interval].forward(&h, &images, Some(&image_mask), &gate, ctx)?;
            }
            h = layer.forward(&h, (&rope.0, &rope.1), Some(&mask), ctx)?;
        }
        let hidden = self.norm.forward(&h)?;
        Ok(IdeficsOutput {
            logits: self.head(&hidden, ctx)?,
            hidden,
            image_states: images,
        })
    }

    /// The bare language model: the same embeddings, decoder layers, norm and head with no
    /// image and no gated layer. With every gate at 0 the full model's logits equal these.
    pub fn forward_text(
        &self,
        ids: &Tensor,
        mask: Option<&Tensor>,
        ctx: &mut Ctx,
    ) -> Result<Tensor> {
        let (mut h, rope, m) = self.embed(ids, mask)?;
        for layer in &self.layers {
            h = layer.forward(&h, (&rope.0, &rope.1), Some(&m), ctx)?;
        }
        self.head(&self.norm.forward(&h)?, ctx)
    }

    /// The model computing its linears in `dtype` on the inference path.
    pub fn prepare(&mut self, dtype: Precision) -> Result<()> {
        self.vision.prepare(dtype)?;
        if let Some(r) = &mut self.resampler {
            r.prepare(dtype)?;
        }
        for g in &mut self.gated {
            g.prepare(dtype)?;
        }
        for l in &mut self.layers {
            l.prepare(dtype)?;
        }
        self.lm_head.prepare(dtype)?;
        if let Some(a) = &mut self.additional_fc {
            a.prepare(dtype)?;
        }
        Ok(())
    }
}

impl Pretrained for Idefics {
    type Config = IdeficsConfig;

    fn from_config(config: &IdeficsConfig, opts: &LoadOptions) -> Result<Loaded<Self>> {
        fresh(opts, |vb| Idefics::new(vb, config))
    }

    fn from_checkpoint(ckpt: Checkpoint, opts: &LoadOptions) -> Result<Loaded<Self>> {
        ckpt.expect(Family::Idefics)?;
        let config: IdeficsConfig = ckpt.config()?;
        strict(ckpt, opts, |_| true, |vb| Idefics::new(vb, &config))
    }

    fn with_precision(&self, dtype: Precision) -> Result<Self> {
        let mut m = self.clone();
        m.prepare(dtype)?;
        Ok(m)
    }

    fn config(&self) -> &IdeficsConfig {
        &self.config
    }
}
