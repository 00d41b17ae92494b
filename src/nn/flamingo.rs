//! Flamingo's two pieces between a frozen vision encoder and a frozen language model, in
//! IDEFICS's layout:
//!
//! - [`Resampler`]: a fixed set of learned latents cross-attends into the vision states (keys and
//!   values from `[context; latents]`), `depth` times with a ReLU MLP, then a LayerNorm: any
//!   number of patches in, `n_latents` vectors out.
//! - [`GatedCrossAttention`]: text states attend to the resampled image states through
//!   `tanh(α)`-gated residuals: `h = x + tanh(α_xattn)·gate·attn(RMS(x))`, `h + tanh(α_dense)·
//!   mlp(RMS(h))`. With α = 0 (the initialisation) the layer is the identity, so inserting it
//!   leaves the language model's outputs exactly as they were. `gate` zeroes the attention for
//!   tokens that see no image.
//!
//! Names as transformers' `IdeficsPerceiverResampler` (`latents`, `blocks.{j}.0.{context_layer_norm,
//! latents_layer_norm, q_proj, k_proj, v_proj, output_proj, q_layer_norm, k_layer_norm}`,
//! `blocks.{j}.1.{ln, fc, c_proj}`, `layer_norm`) and `IdeficsGatedCrossAttentionLayer`
//! (`input_layernorm`, `cross_attn.{q,k,v,o}_proj`, `cross_attn.{q,k}_layer_norm`,
//! `post_attention_layernorm`, `mlp.*`, `alpha_cross_attn`, `alpha_dense`).
use super::ctx::Ctx;
use super::infer::Precision;
use super::layers::{LayerNorm, Linear, Then};
use super::llama::{HeadNorm, LlamaAttention, LlamaAttnConfig, RmsNorm, SwiGlu};
use candle_core::{Result, Tensor};
use candle_nn::{Init, VarBuilder};

/// The shape of a gate parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GateShape {
    /// One scalar `[1]` ("float").
    Scalar,
    /// One per channel `[1, 1, D]` ("vector").
    Vector,
}

/// Sizes of one [`GatedCrossAttention`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GatedConfig {
    /// The text stream's width.
    pub dim: usize,
    /// The image states' width.
    pub kv_dim: usize,
    pub heads: usize,
    pub intermediate: usize,
    pub eps: f64,
    /// RMSNorms on each head's queries and keys.
    pub qk_norms: bool,
    pub gate: GateShape,
    /// The gates' initial value (Flamingo: 0, an identity layer).
    pub alpha_init: f64,
}

/// IDEFICS's gated cross-attention layer (see the module doc).
#[derive(Clone, Debug)]
pub struct GatedCrossAttention {
    input_layernorm: RmsNorm,
    cross_attn: LlamaAttention,
    post_attention_layernorm: RmsNorm,
    mlp: SwiGlu,
    pub alpha_cross_attn: Tensor,
    pub alpha_dense: Tensor,
}

impl GatedCrossAttention {
    pub fn new(vb: VarBuilder, c: &GatedConfig) -> Result<Self> {
        if c.heads == 0 || !c.dim.is_multiple_of(c.heads) {
            candle_core::bail!("{} heads must divide width {}", c.heads, c.dim);
        }
        let head_dim = c.dim / c.heads;
        let a = vb.pp("cross_attn");
        let norms = if c.qk_norms {
            Some((
                HeadNorm::Rms(RmsNorm::new(a.pp("q_layer_norm"), head_dim, c.eps)?),
                HeadNorm::Rms(RmsNorm::new(a.pp("k_layer_norm"), head_dim, c.eps)?),
            ))
        } else {
            None
        };
        let cfg = LlamaAttnConfig {
            dim: c.dim,
            kv_dim: Some(c.kv_dim),
            heads: c.heads,
            head_dim,
            attn_dropout: 0.0,
        };
        let shape: Vec<usize> = match c.gate {
            GateShape::Scalar => vec![1],
            GateShape::Vector => vec![1, 1, c.dim],
        };
        let init = Init::Const(c.alpha_init);
        Ok(GatedCrossAttention {
            input_layernorm: RmsNorm::new(vb.pp("input_layernorm"), c.dim, c.eps)?,
            cross_attn: LlamaAttention::new(a, &cfg, "o_proj", norms)?,
            post_attention_layernorm: RmsNorm::new(
                vb.pp("post_attention_layernorm"),
                c.dim,
                c.eps,
            )?,
            mlp: SwiGlu::new(vb.pp("mlp"), c.dim, c.intermediate)?,
            alpha_cross_attn: vb.get_with_hints(shape.as_slice(), "alpha_cross_attn", init)?,
            alpha_dense: vb.get_with_hints(shape.as_slice(), "alpha_dense", init)?,
        })
    }

    /// Text states `x` [B, T, D], image states [B, M, E], `image_mask` additive [B, 1, T, M],
    /// `gate` [B, T] (1: the token sees an image, 0: its attention output is zeroed) ->
    /// [B, T, D]. The attention probabilities go to the trace.
    pub fn forward(
        &self,
        x: &Tensor,
        images: &Tensor,
        image_mask: Option<&Tensor>,
        gate: &Tensor,
        ctx: &mut Ctx,
    ) -> Result<Tensor> {
        let a = self.cross_attn.forward(
            &self.input_layernorm.forward(x)?,
            Some(images),
            None,
            image_mask,
            ctx,
        )?;
        // Zero, not scale: a token that sees no image gets exactly nothing from the images.
        let zero = a.zeros_like()?;
        let seen = gate.unsqueeze(2)?.broadcast_as(a.shape())?.ne(0.0)?;
        let a = seen.where_cond(&a, &zero)?;
        let h = (x + a.broadcast_mul(&self.alpha_cross_attn.tanh()?)?)?;
        let m = self
            .mlp
            .forward(&self.post_attention_layernorm.forward(&h)?, ctx)?;
        &h + m.broadcast_mul(&self.alpha_dense.tanh()?)?
    }

    /// tanh of both gates, each averaged over its channels: (attention, MLP).
    pub fn gate_values(&self) -> Result<(f32, f32)> {
        let t = |a: &Tensor| -> Result<f32> { a.tanh()?.mean_all()?.to_scalar::<f32>() };
        Ok((t(&self.alpha_cross_attn)?, t(&self.alpha_dense)?))
    }

    pub fn prepare(&mut self, dtype: Precision) -> Result<()> {
        self.cross_attn.prepare(dtype)?;
        self.mlp.prepare(dtype)
    }
}

/// Sizes of a [`Resampler`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ResamplerConfig {
    /// Width of the vision states (and of the latents).
    pub dim: usize,
    pub depth: usize,
    pub heads: usize,
    pub head_dim: usize,
    pub latents: usize,
    /// The MLP's hidden width (IDEFICS: 4 × the vision width).
    pub intermediate: usize,
    /// LayerNorms on each head's queries and keys.
    pub qk_norms: bool,
}

#[derive(Clone, Debug)]
struct ResamplerBlock {
    context_norm: LayerNorm,
    latents_norm: LayerNorm,
    attn: LlamaAttention,
    mlp_norm: LayerNorm,
    fc: Linear,
    c_proj: Linear,
}

/// IDEFICS's Perceiver resampler (see the module doc).
#[derive(Clone, Debug)]
pub struct Resampler {
    latents: Tensor,
    blocks: Vec<ResamplerBlock>,
    norm: LayerNorm,
    cfg: ResamplerConfig,
}

impl Resampler {
    pub fn new(vb: VarBuilder, c: &ResamplerConfig) -> Result<Self> {
        let blocks = (0..c.depth)
            .map(|j| {
                let b = vb.pp("blocks").pp(j);
                let (a, m) = (b.pp("0"), b.pp("1"));
                let norms = if c.qk_norms {
                    Some((
                        HeadNorm::Layer(LayerNorm::new(a.pp("q_layer_norm"), c.head_dim, 1e-5)?),
                        HeadNorm::Layer(LayerNorm::new(a.pp("k_layer_norm"), c.head_dim, 1e-5)?),
                    ))
                } else {
                    None
                };
                let cfg = LlamaAttnConfig {
                    dim: c.dim,
                    kv_dim: None,
                    heads: c.heads,
                    head_dim: c.head_dim,
                    attn_dropout: 0.0,
                };
                Ok(ResamplerBlock {
                    context_norm: LayerNorm::new(a.pp("context_layer_norm"), c.dim, 1e-5)?,
                    latents_norm: LayerNorm::new(a.pp("latents_layer_norm"), c.dim, 1e-5)?,
                    attn: LlamaAttention::new(a.clone(), &cfg, "output_proj", norms)?,
                    mlp_norm: LayerNorm::new(m.pp("ln"), c.dim, 1e-5)?,
                    fc: Linear::new(m.pp("fc"), c.dim, c.intermediate, false)?,
                    c_proj: Linear::new(m.pp("c_proj"), c.intermediate, c.dim, false)?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Resampler {
            latents: vb.get_with_hints(
                (c.latents, c.dim),
                "latents",
                Init::Randn {
                    mean: 0.0,
                    stdev: 1.0,
                },
            )?,
            blocks,
            norm: LayerNorm::new(vb.pp("layer_norm"), c.dim, 1e-5)?,
            cfg: *c,
        })
    }

    /// Vision states [B, N, E] -> [B, latents, E].
    pub fn forward(&self, context: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let b = context.dim(0)?;
        let mut lat = self
            .latents
            .unsqueeze(0)?
            .broadcast_as((b, self.cfg.latents, self.cfg.dim))?
            .contiguous()?;
        for blk in &self.blocks {
            let c = blk.context_norm.forward(context)?;
            let l = blk.latents_norm.forward(&lat)?;
            // Keys and values over [context; latents]: the latents also see themselves.
            let kv = Tensor::cat(&[&c, &l], 1)?;
            lat = (blk.attn.forward(&l, Some(&kv), None, None, ctx)? + &lat)?;
            let h = blk
                .fc
                .forward(&blk.mlp_norm.forward(&lat)?, Then::none(), ctx)?
                .relu()?;
            lat = (blk.c_proj.forward(&h, Then::none(), ctx)? + &lat)?;
        }
        self.norm.forward(&lat)
    }

    pub fn prepare(&mut self, dtype: Precision) -> Result<()> {
        for b in &mut self.blocks {
            b.attn.prepare(dtype)?;
            b.fc.prepare(dtype)?;
            b.c_proj.prepare(dtype)?;
        }
        Ok(())
    }
}
