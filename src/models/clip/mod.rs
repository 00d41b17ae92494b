//! CLIP (`openai/clip-vit-base-patch32` and friends) with HF tensor names, built from the
//! shared blocks (`BlockNames::CLIP`, pre-norm) and driven by HF's `config.json`.
//!
//! Vision tower: patch conv (no bias) + class embedding + positions, `pre_layrnorm` (sic),
//! encoder, `post_layernorm` on the class token, `visual_projection`. Text tower: token +
//! position embeddings, causal encoder, `final_layer_norm`, pooled at the end-of-text token
//! (first `eos_token_id`, or the arg-max id for legacy configs with `eos_token_id` 2, as
//! transformers does), `text_projection`. `logits_per_image = exp(logit_scale) · îᵀt̂`.
pub mod tokenizer;
pub use tokenizer::ClipTokenizer;

use crate::models::checks;
use crate::models::load::{fresh, strict, Checkpoint, LoadOptions, Loaded, Pretrained};
use crate::nn::Precision;
use crate::nn::{
    causal_mask, check_heads, check_patch_grid, padding_mask, Activation, BlockConfig, BlockNames,
    Ctx, Encoder, LayerNorm, Linear, PatchEmbed, Then, Trace,
};
use crate::{Error, Result};
use candle_core::{DType, IndexOp, Tensor, D};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

/// `transformers.CLIPTextConfig` (defaults equal).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClipTextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub max_position_embeddings: usize,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
    pub bos_token_id: i64,
    pub eos_token_id: i64,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Default for ClipTextConfig {
    fn default() -> Self {
        ClipTextConfig {
            vocab_size: 49408,
            hidden_size: 512,
            intermediate_size: 2048,
            num_hidden_layers: 12,
            num_attention_heads: 8,
            max_position_embeddings: 77,
            hidden_act: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
            bos_token_id: 49406,
            eos_token_id: 49407,
            extra: serde_json::Map::new(),
        }
    }
}

/// `transformers.CLIPVisionConfig` (defaults equal).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClipVisionConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_channels: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Default for ClipVisionConfig {
    fn default() -> Self {
        ClipVisionConfig {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            num_channels: 3,
            image_size: 224,
            patch_size: 32,
            hidden_act: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
            extra: serde_json::Map::new(),
        }
    }
}

/// `transformers.CLIPConfig`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClipConfig {
    pub text_config: ClipTextConfig,
    pub vision_config: ClipVisionConfig,
    pub projection_dim: usize,
    pub logit_scale_init_value: f64,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl ClipConfig {
    /// Checks what the model cannot be built with, naming the field.
    pub fn validate(&self) -> Result<()> {
        let (t, v) = (&self.text_config, &self.vision_config);
        checks::sizes(&[
            ("text_config.vocab_size", t.vocab_size),
            ("text_config.hidden_size", t.hidden_size),
            ("text_config.intermediate_size", t.intermediate_size),
            ("text_config.num_hidden_layers", t.num_hidden_layers),
            ("text_config.num_attention_heads", t.num_attention_heads),
            (
                "text_config.max_position_embeddings",
                t.max_position_embeddings,
            ),
            ("vision_config.hidden_size", v.hidden_size),
            ("vision_config.intermediate_size", v.intermediate_size),
            ("vision_config.num_hidden_layers", v.num_hidden_layers),
            ("vision_config.num_attention_heads", v.num_attention_heads),
            ("vision_config.num_channels", v.num_channels),
            ("vision_config.image_size", v.image_size),
            ("vision_config.patch_size", v.patch_size),
            ("projection_dim", self.projection_dim),
        ])?;
        checks::non_negative(&[
            ("text_config.layer_norm_eps", t.layer_norm_eps),
            ("vision_config.layer_norm_eps", v.layer_norm_eps),
        ])?;
        if !self.logit_scale_init_value.is_finite() {
            return Err(Error::Config(format!(
                "logit_scale_init_value {} must be finite",
                self.logit_scale_init_value
            )));
        }
        Ok(())
    }
}

impl Default for ClipConfig {
    fn default() -> Self {
        ClipConfig {
            text_config: ClipTextConfig::default(),
            vision_config: ClipVisionConfig::default(),
            projection_dim: 512,
            logit_scale_init_value: 2.6592,
            extra: serde_json::Map::new(),
        }
    }
}

/// A CLIP tower's encoder: pre-norm blocks under CLIP's names, no dropout (CLIP trains
/// without).
fn encoder(
    vb: VarBuilder,
    dim: usize,
    heads: usize,
    mlp: usize,
    act: Activation,
    eps: f64,
    depth: usize,
) -> Result<Encoder> {
    check_heads(dim, heads)?;
    let cfg = BlockConfig {
        dim,
        heads,
        mlp_dim: mlp,
        act,
        pre_norm: true,
        eps,
        qkv_bias: true,
        dropout: 0.0,
        mlp_dropout: 0.0,
        attn_dropout: 0.0,
    };
    Ok(Encoder::new(vb, &BlockNames::CLIP, &cfg, depth)?)
}

/// The vision tower up to the pooled (post-LayerNorm) class token.
#[derive(Clone, Debug)]
pub struct ClipVision {
    pub config: ClipVisionConfig,
    class_embedding: Tensor,
    patch: PatchEmbed,
    position_embedding: Tensor,
    pre_layrnorm: LayerNorm,
    encoder: Encoder,
    post_layernorm: LayerNorm,
}

impl ClipVision {
    pub fn new(vb: VarBuilder, c: &ClipVisionConfig) -> Result<Self> {
        check_patch_grid(c.image_size, c.patch_size)?;
        let d = c.hidden_size;
        let n = (c.image_size / c.patch_size).pow(2) + 1;
        let emb = vb.pp("embeddings");
        let std = Init::Randn {
            mean: 0.0,
            stdev: (d as f64).powf(-0.5),
        };
        Ok(ClipVision {
            class_embedding: emb.get_with_hints(d, "class_embedding", std)?,
            patch: PatchEmbed::new(
                emb.pp("patch_embedding"),
                c.num_channels,
                d,
                c.patch_size,
                false,
            )?,
            position_embedding: emb.get_with_hints(
                (n, d),
                "position_embedding.weight",
                Init::Randn {
                    mean: 0.0,
                    stdev: 0.02,
                },
            )?,
            pre_layrnorm: LayerNorm::new(vb.pp("pre_layrnorm"), d, c.layer_norm_eps)?,
            encoder: encoder(
                vb.pp("encoder.layers"),
                d,
                c.num_attention_heads,
                c.intermediate_size,
                c.hidden_act,
                c.layer_norm_eps,
                c.num_hidden_layers,
            )?,
            post_layernorm: LayerNorm::new(vb.pp("post_layernorm"), d, c.layer_norm_eps)?,
            config: c.clone(),
        })
    }

    /// Packs the encoder's linears for inference in `dtype`.
    pub fn prepare(&mut self, dtype: Precision) -> Result<()> {
        Ok(self.encoder.prepare(dtype)?)
    }

    /// Pixel values [B, 3, H, W] -> (last hidden state [B, 1+Np, D], pooled [B, D]).
    pub fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Result<(Tensor, Tensor)> {
        let (b, _, h, w) = x.dims4()?;
        if h != self.config.image_size || w != self.config.image_size {
            return Err(Error::Shape(format!(
                "input {h}x{w} does not match the model's image_size {}",
                self.config.image_size
            )));
        }
        let d = self.config.hidden_size;
        let patches = self.patch.forward(x)?; // [B, Np, D]
        let cls = self.class_embedding.reshape((1, 1, d))?.expand((b, 1, d))?;
        let x = Tensor::cat(&[&cls, &patches], 1)?
            .broadcast_add(&self.position_embedding.unsqueeze(0)?)?;
        let x = self.pre_layrnorm.forward(&x)?;
        let h = self.encoder.forward(&x, None, ctx)?;
        let pooled = self.post_layernorm.forward(&h.i((.., 0))?)?;
        Ok((h, pooled))
    }
}

/// The text tower up to the pooled end-of-text state.
#[derive(Clone, Debug)]
pub struct ClipText {
    pub config: ClipTextConfig,
    token_embedding: Tensor,
    position_embedding: Tensor,
    encoder: Encoder,
    final_layer_norm: LayerNorm,
}

impl ClipText {
    pub fn new(vb: VarBuilder, c: &ClipTextConfig) -> Result<Self> {
        let d = c.hidden_size;
        let emb = vb.pp("embeddings");
        Ok(ClipText {
            token_embedding: emb.get_with_hints(
                (c.vocab_size, d),
                "token_embedding.weight",
                Init::Randn {
                    mean: 0.0,
                    stdev: 0.02,
                },
            )?,
            position_embedding: emb.get_with_hints(
                (c.max_position_embeddings, d),
                "position_embedding.weight",
                Init::Randn {
                    mean: 0.0,
                    stdev: 0.01,
                },
            )?,
            encoder: encoder(
                vb.pp("encoder.layers"),
                d,
                c.num_attention_heads,
                c.intermediate_size,
                c.hidden_act,
                c.layer_norm_eps,
                c.num_hidden_layers,
            )?,
            final_layer_norm: LayerNorm::new(vb.pp("final_layer_norm"), d, c.layer_norm_eps)?,
            config: c.clone(),
        })
    }

    /// Token ids [B, T] (u32) and an optional 0/1 attention mask [B, T] -> (last hidden state
    /// [B, T, D], pooled [B, D] at the end-of-text token).
    pub fn forward(
        &self,
        ids: &Tensor,
        attention_mask: Option<&Tensor>,
        ctx: &mut Ctx,
    ) -> Result<(Tensor, Tensor)> {
        let (b, t) = ids.dims2()?;
        if t > self.config.max_position_embeddings {
            return Err(Error::Shape(format!(
                "{t} tokens exceed max_position_embeddings {}",
                self.config.max_position_embeddings
            )));
        }
        let ids = ids.to_dtype(DType::U32)?;
        let ids_v: Vec<Vec<u32>> = ids.to_vec2()?;
        if let Some(bad) = ids_v
            .iter()
            .flatten()
            .find(|&&i| i as usize >= self.config.vocab_size)
        {
            return Err(Error::Shape(format!(
                "token id {bad} is outside the vocabulary ({})",
                self.config.vocab_size
            )));
        }
        let flat = ids.flatten_all()?;
        let x = self.token_embedding.index_select(&flat, 0)?.reshape((
            b,
            t,
            self.config.hidden_size,
        ))?;
        let x = x.broadcast_add(&self.position_embedding.narrow(0, 0, t)?.unsqueeze(0)?)?;
        // Causal, plus padding when a mask is given: [B or 1, 1, T, T]
        let mut mask = causal_mask(t, x.dtype(), x.device())?.reshape((1, 1, t, t))?;
        if let Some(m) = attention_mask {
            mask = mask.broadcast_add(&padding_mask(m, x.dtype())?)?;
        }
        let h = self.encoder.forward(&x, Some(&mask), ctx)?;
        let h = self.final_layer_norm.forward(&h)?;
        // The pooled position per row: first eos (current transformers), or arg-max id (legacy
        // configs with eos_token_id == 2).
        let pos: Vec<u32> = ids_v
            .iter()
            .map(|row| {
                let p = if self.config.eos_token_id == 2 {
                    row.iter()
                        .enumerate()
                        .max_by_key(|(i, v)| (**v, std::cmp::Reverse(*i)))
                        .map(|(i, _)| i)
                } else {
                    row.iter()
                        .position(|&v| v as i64 == self.config.eos_token_id)
                };
                p.unwrap_or(0) as u32
            })
            .collect();
        let idx: Vec<u32> = pos
            .iter()
            .enumerate()
            .map(|(bi, p)| bi as u32 * t as u32 + p)
            .collect();
        let idx = Tensor::new(idx, h.device())?;
        let pooled = h
            .reshape((b * t, self.config.hidden_size))?
            .index_select(&idx, 0)?;
        Ok((h, pooled))
    }
}

/// `CLIPModel`.
#[derive(Clone, Debug)]
pub struct Clip {
    pub config: ClipConfig,
    pub vision: ClipVision,
    pub text: ClipText,
    visual_projection: Linear,
    text_projection: Linear,
    pub logit_scale: Tensor,
}

/// Outputs as `CLIPOutput`.
#[derive(Debug, Clone)]
pub struct ClipOutput {
    pub image_embeds: Tensor,
    pub text_embeds: Tensor,
    pub logits_per_image: Tensor,
    pub logits_per_text: Tensor,
}

fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    Ok(x.broadcast_div(&x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?)?)
}

impl Clip {
    pub fn new(vb: VarBuilder, c: &ClipConfig) -> Result<Self> {
        c.validate()?;
        let p = c.projection_dim;
        let no_bias = |vb: VarBuilder, i: usize| -> Result<Linear> {
            let w = vb.get_with_hints(
                (p, i),
                "weight",
                Init::Randn {
                    mean: 0.0,
                    stdev: (i as f64).powf(-0.5),
                },
            )?;
            Ok(Linear::from_parts(w, None))
        };
        Ok(Clip {
            vision: ClipVision::new(vb.pp("vision_model"), &c.vision_config)?,
            text: ClipText::new(vb.pp("text_model"), &c.text_config)?,
            visual_projection: no_bias(vb.pp("visual_projection"), c.vision_config.hidden_size)?,
            text_projection: no_bias(vb.pp("text_projection"), c.text_config.hidden_size)?,
            logit_scale: vb.get_with_hints(
                (),
                "logit_scale",
                Init::Const(c.logit_scale_init_value),
            )?,
            config: c.clone(),
        })
    }

    /// Projected, L2-normalised image embeddings [B, P].
    pub fn image_embeds(&self, pixels: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let (_, pooled) = self.vision.forward(pixels, ctx)?;
        l2_normalize(&self.visual_projection.forward(&pooled, Then::none(), ctx)?)
    }

    /// Projected, L2-normalised text embeddings [B, P].
    pub fn text_embeds(
        &self,
        ids: &Tensor,
        attention_mask: Option<&Tensor>,
        ctx: &mut Ctx,
    ) -> Result<Tensor> {
        let (_, pooled) = self.text.forward(ids, attention_mask, ctx)?;
        l2_normalize(&self.text_projection.forward(&pooled, Then::none(), ctx)?)
    }

    /// `exp(logit_scale) · image_embeds @ text_embeds^T`: [B_img, B_txt].
    pub fn logits(&self, image_embeds: &Tensor, text_embeds: &Tensor) -> Result<Tensor> {
        Ok(image_embeds
            .matmul(&text_embeds.t()?)?
            .broadcast_mul(&self.logit_scale.exp()?)?)
    }

    pub fn forward(
        &self,
        pixels: &Tensor,
        ids: &Tensor,
        attention_mask: Option<&Tensor>,
        ctx: &mut Ctx,
    ) -> Result<ClipOutput> {
        let image_embeds = self.image_embeds(pixels, ctx)?;
        let text_embeds = self.text_embeds(ids, attention_mask, ctx)?;
        let logits_per_image = self.logits(&image_embeds, &text_embeds)?;
        Ok(ClipOutput {
            logits_per_text: logits_per_image.t()?,
            image_embeds,
            text_embeds,
            logits_per_image,
        })
    }

    /// Every LayerNorm of both towers (what HF Trainer's decay rule exempts by type).
    pub fn layer_norms(&self) -> Vec<&LayerNorm> {
        let (v, t) = (&self.vision, &self.text);
        let mut out = vec![&v.pre_layrnorm, &v.post_layernorm, &t.final_layer_norm];
        out.extend(v.encoder.layer_norms());
        out.extend(t.encoder.layer_norms());
        out
    }

    /// Vision forward with every layer's attention probabilities (for explainability).
    pub fn image_embeds_traced(&self, pixels: &Tensor) -> Result<(Tensor, Trace)> {
        let mut trace = Trace::default();
        let e = self.image_embeds(pixels, &mut Ctx::eval().with_trace(&mut trace))?;
        Ok((e, trace))
    }
}

impl Pretrained for Clip {
    type Config = ClipConfig;
    const EXTRA_FILES: &'static [&'static str] =
        &["preprocessor_config.json", "vocab.json", "merges.txt"];

    fn from_config(config: &ClipConfig, opts: &LoadOptions) -> Result<Loaded<Self>> {
        fresh(opts, |vb| Clip::new(vb, config))
    }

    /// Any missing, unexpected or mis-shaped tensor is an error naming them.
    fn from_checkpoint(ckpt: Checkpoint, opts: &LoadOptions) -> Result<Loaded<Self>> {
        ckpt.expect(crate::models::Family::Clip)?;
        let config: ClipConfig = ckpt.config()?;
        // `position_ids`: a buffer some checkpoints carry, not a parameter.
        let keep = |k: &str| !k.ends_with("position_ids");
        strict(ckpt, opts, keep, |vb| Clip::new(vb, &config))
    }

    /// Both towers' encoder linears packed for `dtype` (see [`Pretrained::with_dtype`]).
    fn with_precision(&self, dtype: Precision) -> Result<Self> {
        let mut m = self.clone();
        m.vision.encoder.prepare(dtype)?;
        m.text.encoder.prepare(dtype)?;
        Ok(m)
    }

    fn config(&self) -> &ClipConfig {
        &self.config
    }

    fn config_json(&self) -> Result<serde_json::Value> {
        let mut v = serde_json::to_value(&self.config).map_err(|e| Error::Msg(e.to_string()))?;
        v["model_type"] = "clip".into();
        v["architectures"] = serde_json::json!(["CLIPModel"]);
        Ok(v)
    }
}
