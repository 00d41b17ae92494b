//! LLaMA's building blocks, as IDEFICS's language model uses them: RMSNorm, rotary position
//! embeddings (RoPE, the rotate-half layout), the SwiGLU feed-forward, an attention without
//! biases (self-attention with RoPE, or cross-attention to another model's states, optionally
//! with per-head q/k norms) and the pre-norm decoder layer.
//!
//! On-disk names as transformers' `LlamaDecoderLayer` / `IdeficsDecoderLayer`:
//! `input_layernorm`, `self_attn.{q,k,v,o}_proj`, `post_attention_layernorm`,
//! `mlp.{gate,up,down}_proj`.
use super::attention::attend_heads;
use super::ctx::Ctx;
use super::infer::Precision;
use super::layers::{LayerNorm, Linear, Then};
use candle_core::{DType, Result, Tensor, D};
use candle_nn::{Init, VarBuilder};

/// `x / sqrt(mean(x²) + eps) · weight` over the last dimension (computed in f32).
#[derive(Clone, Debug)]
pub struct RmsNorm {
    pub weight: Tensor,
    pub eps: f64,
}

impl RmsNorm {
    pub fn new(vb: VarBuilder, dim: usize, eps: f64) -> Result<Self> {
        Ok(RmsNorm {
            weight: vb.get_with_hints(dim, "weight", Init::Const(1.0))?,
            eps,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dtype = x.dtype();
        let x = x.to_dtype(DType::F32)?;
        let var = x.sqr()?.mean_keepdim(D::Minus1)?;
        let y = x.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        y.to_dtype(dtype)?.broadcast_mul(&self.weight)
    }
}

/// A norm applied to each head's queries or keys [B, H, N, Dh]: RMSNorm (IDEFICS's
/// cross-attention) or LayerNorm (its resampler).
#[derive(Clone, Debug)]
pub enum HeadNorm {
    Rms(RmsNorm),
    Layer(LayerNorm),
}

impl HeadNorm {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            HeadNorm::Rms(n) => n.forward(x),
            HeadNorm::Layer(n) => n.forward(x),
        }
    }
}

/// Rotary position embeddings with transformers' default parameters: `inv_freq[i] =
/// theta^(-2i/d)`; a position's angles are `pos · inv_freq` repeated twice (rotate-half layout).
#[derive(Clone, Debug)]
pub struct Rope {
    inv_freq: Vec<f32>,
}

impl Rope {
    pub fn new(head_dim: usize, theta: f64) -> Self {
        Rope {
            inv_freq: (0..head_dim)
                .step_by(2)
                .map(|i| (1.0 / theta.powf(i as f64 / head_dim as f64)) as f32)
                .collect(),
        }
    }

    /// Positions [B, T] (f32 values) -> (cos, sin), each [B, 1, T, Dh].
    pub fn cos_sin(&self, positions: &Tensor) -> Result<(Tensor, Tensor)> {
        let (b, t) = positions.dims2()?;
        let half = self.inv_freq.len();
        let inv =
            Tensor::new(self.inv_freq.as_slice(), positions.device())?.reshape((1, 1, half))?;
        // [B, T, 1] · [1, 1, Dh/2] -> [B, T, Dh/2] -> [B, T, Dh]
        let freqs = positions
            .to_dtype(DType::F32)?
            .reshape((b, t, 1))?
            .broadcast_mul(&inv)?;
        let emb = Tensor::cat(&[&freqs, &freqs], D::Minus1)?.unsqueeze(1)?;
        Ok((emb.cos()?, emb.sin()?))
    }

    /// `x·cos + rotate_half(x)·sin` for x [B, H, T, Dh].
    pub fn apply(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        let d = x.dim(D::Minus1)?;
        let (x1, x2) = (
            x.narrow(D::Minus1, 0, d / 2)?,
            x.narrow(D::Minus1, d / 2, d / 2)?,
        );
        let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
        x.broadcast_mul(cos)? + rotated.broadcast_mul(sin)?
    }
}

/// `down(silu(gate(x)) · up(x))`, no biases.
#[derive(Clone, Debug)]
pub struct SwiGlu {
    gate: Linear,
    up: Linear,
    down: Linear,
}

impl SwiGlu {
    pub fn new(vb: VarBuilder, dim: usize, hidden: usize) -> Result<Self> {
        Ok(SwiGlu {
            gate: Linear::new(vb.pp("gate_proj"), dim, hidden, false)?,
            up: Linear::new(vb.pp("up_proj"), dim, hidden, false)?,
            down: Linear::new(vb.pp("down_proj"), hidden, dim, false)?,
        })
    }

    /// [.., D] -> [.., D]
    pub fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let g = self.gate.forward(x, Then::none(), ctx)?.silu()?;
        let u = self.up.forward(x, Then::none(), ctx)?;
        self.down.forward(&(g * u)?, Then::none(), ctx)
    }

    pub fn prepare(&mut self, dtype: Precision) -> Result<()> {
        for l in [&mut self.gate, &mut self.up, &mut self.down] {
            l.prepare(dtype)?;
        }
        Ok(())
    }
}

/// Sizes of one [`LlamaAttention`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LlamaAttnConfig {
    /// Width of the queries' input and the output.
    pub dim: usize,
    /// Width of the keys'/values' input for cross-attention (`None`: self-attention).
    pub kv_dim: Option<usize>,
    pub heads: usize,
    /// Per-head width (`dim / heads` in the language model; its own in a resampler).
    pub head_dim: usize,
    pub attn_dropout: f64,
}

/// Attention without biases: `q_proj`, `k_proj`, `v_proj`, `o_proj`; RoPE on q and k when the
/// caller passes angles (self-attention), optional per-head norms on q and k (after RoPE).
#[derive(Clone, Debug)]
pub struct LlamaAttention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    norms: Option<(HeadNorm, HeadNorm)>,
    cfg: LlamaAttnConfig,
}

impl LlamaAttention {
    /// `norms` builds the (q, k) head norms from `vb` when the layer has them.
    pub fn new(
        vb: VarBuilder,
        cfg: &LlamaAttnConfig,
        out_name: &str,
        norms: Option<(HeadNorm, HeadNorm)>,
    ) -> Result<Self> {
        let inner = cfg.heads * cfg.head_dim;
        let kv = cfg.kv_dim.unwrap_or(cfg.dim);
        if cfg.heads == 0 || cfg.head_dim == 0 {
            candle_core::bail!(
                "attention needs heads and a head width, got {} × {}",
                cfg.heads,
                cfg.head_dim
            );
        }
        Ok(LlamaAttention {
            q: Linear::new(vb.pp("q_proj"), cfg.dim, inner, false)?,
            k: Linear::new(vb.pp("k_proj"), kv, inner, false)?,
            v: Linear::new(vb.pp("v_proj"), kv, inner, false)?,
            o: Linear::new(vb.pp(out_name), inner, cfg.dim, false)?,
            norms,
            cfg: *cfg,
        })
    }

    /// [B, L, C] -> [B, H, L, Dh]
    fn heads(&self, t: Tensor) -> Result<Tensor> {
        let (b, l, _) = t.dims3()?;
        t.reshape((b, l, self.cfg.heads, self.cfg.head_dim))?
            .transpose(1, 2)?
            .contiguous()
    }

    /// Queries from `x` [B, N, D]; keys and values from `kv` [B, M, D'] (or `x`); `rope` the
    /// (cos, sin) of [`Rope::cos_sin`]; `mask` additive, broadcastable to [B, H, N, M].
    /// Returns `o_proj(attention)` [B, N, D]; the probabilities go to the trace.
    pub fn forward(
        &self,
        x: &Tensor,
        kv: Option<&Tensor>,
        rope: Option<(&Tensor, &Tensor)>,
        mask: Option<&Tensor>,
        ctx: &mut Ctx,
    ) -> Result<Tensor> {
        let (b, n, _) = x.dims3()?;
        let src = kv.unwrap_or(x);
        let mut q = self.heads(self.q.forward(x, Then::none(), ctx)?)?;
        let mut k = self.heads(self.k.forward(src, Then::none(), ctx)?)?;
        let v = self.heads(self.v.forward(src, Then::none(), ctx)?)?;
        if let Some((cos, sin)) = rope {
            q = Rope::apply(&q, cos, sin)?;
            k = Rope::apply(&k, cos, sin)?;
        }
        if let Some((nq, nk)) = &self.norms {
            q = nq.forward(&q)?;
            k = nk.forward(&k)?;
        }
        // [B, H, N, Dh] -> [B, N, H·Dh]
        let o = attend_heads(&q, &k, &v, mask, self.cfg.attn_dropout, ctx)?
            .transpose(1, 2)?
            .reshape((b, n, self.cfg.heads * self.cfg.head_dim))?;
        self.o.forward(&o, Then::none(), ctx)
    }

    pub fn prepare(&mut self, dtype: Precision) -> Result<()> {
        for l in [&mut self.q, &mut self.k, &mut self.v, &mut self.o] {
            l.prepare(dtype)?;
        }
        Ok(())
    }
}

/// A pre-norm LLaMA decoder layer: `h = x + attn(RMS(x))`, `h + mlp(RMS(h))`.
#[derive(Clone, Debug)]
pub struct LlamaLayer {
    input_layernorm: RmsNorm,
    self_attn: LlamaAttention,
    post_attention_layernorm: RmsNorm,
    mlp: SwiGlu,
}

impl LlamaLayer {
    pub fn new(vb: VarBuilder, dim: usize, heads: usize, hidden: usize, eps: f64) -> Result<Self> {
        if heads == 0 || !dim.is_multiple_of(heads) {
            candle_core::bail!("{heads} heads must divide width {dim}");
        }
        let cfg = LlamaAttnConfig {
            dim,
            kv_dim: None,
            heads,
            head_dim: dim / heads,
            attn_dropout: 0.0,
        };
        Ok(LlamaLayer {
            input_layernorm: RmsNorm::new(vb.pp("input_layernorm"), dim, eps)?,
            self_attn: LlamaAttention::new(vb.pp("self_attn"), &cfg, "o_proj", None)?,
            post_attention_layernorm: RmsNorm::new(vb.pp("post_attention_layernorm"), dim, eps)?,
            mlp: SwiGlu::new(vb.pp("mlp"), dim, hidden)?,
        })
    }

    /// [B, T, D] -> [B, T, D]; `rope` from the token positions, `mask` additive (causal and
    /// padding) [B, 1, T, T].
    pub fn forward(
        &self,
        x: &Tensor,
        rope: (&Tensor, &Tensor),
        mask: Option<&Tensor>,
        ctx: &mut Ctx,
    ) -> Result<Tensor> {
        let h = (x + self.self_attn.forward(
            &self.input_layernorm.forward(x)?,
            None,
            Some(rope),
            mask,
            ctx,
        )?)?;
        &h + self
            .mlp
            .forward(&self.post_attention_layernorm.forward(&h)?, ctx)?
    }

    pub fn prepare(&mut self, dtype: Precision) -> Result<()> {
        self.self_attn.prepare(dtype)?;
        self.mlp.prepare(dtype)
    }
}
