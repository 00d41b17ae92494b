//! The one multi-head attention of the project (self and cross, additive masks), for every
//! model, and the masks it takes.
use super::cpu::kernels_apply;
use super::ctx::{Ctx, Path};
use super::dropout::DropoutMask;
use super::infer::Precision;
use super::infer::{self, PackedWeight, Weight};
use super::layers::{Linear, Then};
use super::{ops, sdpa};
use candle_core::{DType, Device, Result, Tensor};
use candle_nn::{Init, VarBuilder};
use std::sync::Arc;

/// The one head-count check: `dim` splits into `heads` equal heads.
pub fn check_heads(dim: usize, heads: usize) -> crate::Result<()> {
    if heads == 0 || !dim.is_multiple_of(heads) {
        return Err(crate::Error::Config(format!(
            "hidden_size {dim} is not divisible by num_attention_heads {heads}"
        )));
    }
    Ok(())
}

/// Position embeddings added to an attention's query and key inputs (not the values).
#[derive(Clone, Copy, Debug, Default)]
pub struct Positions<'a> {
    /// Added to the queries' input ([B, N, D] or broadcastable).
    pub query: Option<&'a Tensor>,
    /// Added to the keys' input ([B, M, D]); in self-attention, `query` when `None`.
    pub key: Option<&'a Tensor>,
}

impl Positions<'_> {
    pub const NONE: Positions<'static> = Positions {
        query: None,
        key: None,
    };

    fn is_none(&self) -> bool {
        self.query.is_none() && self.key.is_none()
    }
}

/// How a checkpoint names the q/k/v projections. Only names differ between layouts;
/// the computation is the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QkvNames {
    /// PyTorch `nn.MultiheadAttention`: `in_proj_weight` `[3D, D]` and `in_proj_bias` `[3D]`.
    TorchInProj,
    /// One fused linear, e.g. timm's `qkv.weight` [3D, D].
    FusedLinear(&'static str),
    /// Three linears, e.g. HF ViT's `attention.query` or CLIP's `q_proj`.
    Separate {
        q: &'static str,
        k: &'static str,
        v: &'static str,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttnNames {
    pub qkv: QkvNames,
    pub out: &'static str,
}

#[derive(Clone, Debug)]
enum Proj {
    /// [3D, D] weight: one matmul gives q, k and v.
    Fused(Linear),
    Separate {
        q: Linear,
        k: Linear,
        v: Linear,
    },
}

/// Sizes and dropout rates of one attention layer.
#[derive(Clone, Copy, Debug)]
pub struct AttnConfig {
    pub dim: usize,
    pub heads: usize,
    /// Bias on the q/k/v projections.
    pub qkv_bias: bool,
    /// Dropout on the attention probabilities.
    pub attn_dropout: f64,
    /// Dropout on the output projection (before the residual add): timm's `proj_drop`,
    /// PyTorch's `dropout1`, HF's `ViTSelfOutput.dropout`.
    pub proj_dropout: f64,
    /// Width of the key/value input when it differs from `dim` (a cross-attention over another
    /// model's states: BLIP's text decoder over the vision tower). Separate projections only.
    pub kv_dim: Option<usize>,
    /// Width of the queries, keys and values (split over the heads) when it differs from `dim`;
    /// the output projection maps it back to `dim` (ViLBERT's co-attention projects both
    /// streams into `bi_hidden_size`). Separate projections only; such a layer always runs the
    /// composite path.
    pub inner: Option<usize>,
}

#[derive(Clone, Debug)]
pub struct Attention {
    proj: Proj,
    out: Linear,
    /// The query input's (and output's) width.
    dim: usize,
    num_heads: usize,
    head_dim: usize,
    attn_dropout: f64,
    proj_dropout: f64,
    /// Separate q/k/v weights packed side by side as one [3D, D] weight, with the
    /// concatenated bias (set by [`Attention::prepare`]).
    qkv_packed: Option<(Arc<PackedWeight>, Option<Tensor>)>,
}

impl Attention {
    pub fn new(vb: VarBuilder, names: AttnNames, cfg: &AttnConfig) -> Result<Self> {
        let (dim, bias) = (cfg.dim, cfg.qkv_bias);
        let inner = cfg.inner.unwrap_or(dim);
        check_heads(inner, cfg.heads).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        if inner != dim && !matches!(names.qkv, QkvNames::Separate { .. }) {
            candle_core::bail!(
                "an attention width other than the input's needs separate projections"
            );
        }
        let proj = match names.qkv {
            QkvNames::TorchInProj => {
                // PyTorch: xavier_uniform_ on in_proj_weight, zeros on in_proj_bias.
                let bound = (6.0 / (dim + 3 * dim) as f64).sqrt();
                let w = vb.get_with_hints(
                    (3 * dim, dim),
                    "in_proj_weight",
                    Init::Uniform {
                        lo: -bound,
                        up: bound,
                    },
                )?;
                let b = if bias {
                    Some(vb.get_with_hints(3 * dim, "in_proj_bias", Init::Const(0.0))?)
                } else {
                    None
                };
                Proj::Fused(Linear::from_parts(w, b))
            }
            QkvNames::FusedLinear(name) => {
                Proj::Fused(Linear::new(vb.pp(name), dim, 3 * dim, bias)?)
            }
            QkvNames::Separate { q, k, v } => {
                let kv = cfg.kv_dim.unwrap_or(dim);
                Proj::Separate {
                    q: Linear::new(vb.pp(q), dim, inner, bias)?,
                    k: Linear::new(vb.pp(k), kv, inner, bias)?,
                    v: Linear::new(vb.pp(v), kv, inner, bias)?,
                }
            }
        };
        if cfg.kv_dim.is_some_and(|kv| kv != dim) && !matches!(proj, Proj::Separate { .. }) {
            candle_core::bail!(
                "a key/value width other than the query's needs separate projections"
            );
        }
        let out = match names.qkv {
            // PyTorch zeroes out_proj.bias at init.
            QkvNames::TorchInProj => {
                let bound = 1.0 / (dim as f64).sqrt();
                let o = vb.pp(names.out);
                Linear::from_parts(
                    o.get_with_hints(
                        (dim, dim),
                        "weight",
                        Init::Uniform {
                            lo: -bound,
                            up: bound,
                        },
                    )?,
                    Some(o.get_with_hints(dim, "bias", Init::Const(0.0))?),
                )
            }
            _ => Linear::new(vb.pp(names.out), inner, dim, true)?,
        };
        Ok(Attention {
            proj,
            out,
            dim,
            num_heads: cfg.heads,
            head_dim: inner / cfg.heads,
            attn_dropout: cfg.attn_dropout,
            proj_dropout: cfg.proj_dropout,
            qkv_packed: None,
        })
    }

    /// Whether q, k and v are as wide as the input: what the fused self-attention paths (one
    /// q|k|v buffer, the packed [3D, D] weight) assume.
    fn full_width(&self) -> bool {
        self.num_heads * self.head_dim == self.dim
    }

    pub fn num_heads(&self) -> usize {
        self.num_heads
    }

    /// Every parameter tensor (weights and biases of the projections).
    pub(crate) fn parameters(&self) -> Vec<&Tensor> {
        let lins: Vec<&Linear> = match &self.proj {
            Proj::Fused(l) => vec![l, &self.out],
            Proj::Separate { q, k, v } => vec![q, k, v, &self.out],
        };
        lins.into_iter().flat_map(Linear::parameters).collect()
    }

    /// Sets the inference dtype of the projections (see [`Linear::prepare`]).
    pub fn prepare(&mut self, dtype: Precision) -> Result<()> {
        self.out.prepare(dtype)?;
        self.qkv_packed = None;
        let fused = self.full_width();
        match &mut self.proj {
            Proj::Fused(lin) => lin.prepare(dtype)?,
            Proj::Separate { q, k, v } if !kernels_apply(&q.weight) || !fused => {
                for lin in [q, k, v] {
                    lin.prepare(dtype)?;
                }
            }
            Proj::Separate { q, k, v } => {
                // [3D, D]: one kernel call gives q|k|v side by side.
                let w = Tensor::cat(&[&q.weight, &k.weight, &v.weight], 0)?;
                self.qkv_packed = Some((
                    Arc::new(PackedWeight::new(&w, dtype)?),
                    concat_bias([q, k, v], DType::F32)?,
                ));
            }
        }
        Ok(())
    }

    /// `residual + dropout(out_proj(attention))`: q from `x` [B, N, D]; k and v from `context`
    /// [B, M, D] (cross-attention) or from `x` (self-attention). `mask` is additive,
    /// broadcastable to [B, H, N, M] (0 keeps, -inf drops). Returns [B, N, D]; the attention
    /// probabilities [B, H, N, M] go to the trace if one is on.
    ///
    /// Self-attention runs on the path [`Ctx::path`] picks: the inference kernels from one
    /// q|k|v buffer, the differentiable fused kernel, or composite ops (the one that
    /// materialises probabilities for the trace, and cross-attention's).
    pub fn forward(
        &self,
        x: &Tensor,
        context: Option<&Tensor>,
        mask: Option<&Tensor>,
        residual: Option<&Tensor>,
        ctx: &mut Ctx,
    ) -> Result<Tensor> {
        self.forward_with_positions(x, context, Positions::NONE, mask, residual, ctx)
    }

    /// [`Attention::forward`] with position embeddings added to the query and key inputs only
    /// (DETR's attention: `q = (x + pos.query)·Wq`, `k = (context + pos.key)·Wk`, `v =
    /// context·Wv`; `pos.key` defaults to `pos.query` in self-attention).
    pub fn forward_with_positions(
        &self,
        x: &Tensor,
        context: Option<&Tensor>,
        pos: Positions,
        mask: Option<&Tensor>,
        residual: Option<&Tensor>,
        ctx: &mut Ctx,
    ) -> Result<Tensor> {
        let fused = self.full_width();
        let y = match (ctx.path(x, || self.parameters()), context, pos.is_none()) {
            (Path::Inference, None, true) if fused => self.self_attention_inference(x, mask)?,
            (Path::Kernels, None, true) if fused => self.self_attention_kernels(x, mask, ctx)?,
            (_, _, true) => self.attention_composite(x, context, mask, ctx)?,
            (_, c, false) => {
                let kv = c.unwrap_or(x);
                let add = |t: &Tensor, p: Option<&Tensor>| match p {
                    Some(p) => t.broadcast_add(p),
                    None => Ok(t.clone()),
                };
                let key_pos = match c {
                    Some(_) => pos.key,
                    None => pos.key.or(pos.query),
                };
                let q_in = add(x, pos.query)?;
                let k_in = add(kv, key_pos)?;
                self.attention_inputs(&q_in, &k_in, kv, mask, ctx)?
            }
        };
        let then = Then::none().dropout(self.proj_dropout).residual(residual);
        self.out.forward(&y, then, ctx)
    }

    /// q|k|v into one [B, N, 3D] buffer (packed weights when prepared), then attention per
    /// (image, head) into the merged-head layout.
    fn self_attention_inference(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let qkv = match (&self.proj, &self.qkv_packed) {
            (_, Some((p, bias))) => infer::linear(x, Weight::Packed(p), bias.as_ref(), None, None)?,
            (Proj::Fused(lin), None) => {
                let w = match &lin.packed {
                    Some(p) => Weight::Packed(p),
                    None => Weight::Unpacked(&lin.weight),
                };
                infer::linear(x, w, lin.bias.as_ref(), None, None)?
            }
            (Proj::Separate { q, k, v }, None) => {
                infer::qkv_separate(x, [q, k, v].map(|l| (&l.weight, l.bias.as_ref())))?
            }
        };
        sdpa::attention(&qkv, self.num_heads, mask, None)
    }

    /// The differentiable fused kernel (CPU f32): one q|k|v linear, then per (image, head)
    /// scores, softmax, dropout and the weighted sum; backward recomputes the probabilities.
    fn self_attention_kernels(
        &self,
        x: &Tensor,
        mask: Option<&Tensor>,
        ctx: &mut Ctx,
    ) -> Result<Tensor> {
        let (b, n, d) = x.dims3()?;
        let x2 = x.reshape((b * n, d))?;
        // [B*N, D] -> [B*N, 3D]
        let qkv = match &self.proj {
            Proj::Fused(lin) => ops::linear(&x2, &lin.weight, lin.bias.as_ref())?,
            Proj::Separate { q, k, v } => {
                let w = Tensor::cat(&[&q.weight, &k.weight, &v.weight], 0)?;
                ops::linear(&x2, &w, concat_bias([q, k, v], x.dtype())?.as_ref())?
            }
        };
        let drop = ctx
            .dropout_seed(self.attn_dropout)
            .map(|seed| DropoutMask::new(self.attn_dropout, seed));
        // [B, N, 3D] -> [B, N, D]
        sdpa::attention(&qkv.reshape((b, n, 3 * d))?, self.num_heads, mask, drop)
    }

    /// Composite ops: any device or dtype, cross-attention, and the probabilities for the trace.
    fn attention_composite(
        &self,
        x: &Tensor,
        context: Option<&Tensor>,
        mask: Option<&Tensor>,
        ctx: &mut Ctx,
    ) -> Result<Tensor> {
        let (b, n, d) = x.dims3()?;
        let (q, k, v) = match (&self.proj, context) {
            (Proj::Fused(lin), None) => {
                // [B, N, 3D] -> [B, N, 3, H, Dh] -> [3, B, H, N, Dh]
                let qkv = lin
                    .forward(x, Then::none(), ctx)?
                    .reshape((b, n, 3, self.num_heads, self.head_dim))?
                    .permute((2, 0, 3, 1, 4))?;
                (
                    qkv.get(0)?.contiguous()?,
                    qkv.get(1)?.contiguous()?,
                    qkv.get(2)?.contiguous()?,
                )
            }
            (_, c) => {
                // Cross-attention, or separate projections: one input per projection.
                let c = c.unwrap_or(x);
                return self.attention_inputs(x, c, c, mask, ctx);
            }
        };
        self.attend(q, k, v, (b, n, d), mask, ctx)
    }

    /// Scores, mask, softmax (traced), dropout and the weighted sum of heads already split.
    fn attend(
        &self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        (b, n, _): (usize, usize, usize),
        mask: Option<&Tensor>,
        ctx: &mut Ctx,
    ) -> Result<Tensor> {
        // [B, H, N, Dh] -> [B, N, H, Dh] -> [B, N, H·Dh]
        attend_heads(&q, &k, &v, mask, self.attn_dropout, ctx)?
            .transpose(1, 2)?
            .reshape((b, n, self.num_heads * self.head_dim))
    }

    /// Attention with separate query, key and value inputs ([B, N, D], [B, M, D'], [B, M, D']),
    /// composite ops.
    fn attention_inputs(
        &self,
        q_in: &Tensor,
        k_in: &Tensor,
        v_in: &Tensor,
        mask: Option<&Tensor>,
        ctx: &mut Ctx,
    ) -> Result<Tensor> {
        let dims = q_in.dims3()?;
        let q = self.project(0, q_in, ctx)?;
        let k = self.project(1, k_in, ctx)?;
        let v = self.project(2, v_in, ctx)?;
        self.attend(q, k, v, dims, mask, ctx)
    }

    /// Projection `which` (0 = query, 1 = key, 2 = value) of `x` [B, N, D'], split into heads
    /// [B, H, N, Dh].
    fn project(&self, which: usize, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let d = self.num_heads * self.head_dim;
        let y = match &self.proj {
            Proj::Fused(lin) => Linear::from_parts(
                lin.weight.narrow(0, which * d, d)?,
                lin.bias
                    .as_ref()
                    .map(|b| b.narrow(0, which * d, d))
                    .transpose()?,
            )
            .forward(x, Then::none(), ctx)?,
            Proj::Separate { q, k, v } => [q, k, v][which].forward(x, Then::none(), ctx)?,
        };
        self.split_heads(&y)
    }

    /// Incremental decoding: `residual + out_proj(attention)` for the new positions `x`
    /// [B, N, D] only. Self-attention (`context` `None`) appends this call's keys and values to
    /// `cache` and attends over everything cached; cross-attention projects `context` [B, M, D']
    /// on the first call and reuses it afterwards. `mask` is additive over the cached keys
    /// ([B or 1, 1, N, T]). The probabilities go to the trace when one is on.
    pub fn forward_cached(
        &self,
        x: &Tensor,
        context: Option<&Tensor>,
        cache: &mut KvCache,
        mask: Option<&Tensor>,
        residual: Option<&Tensor>,
        ctx: &mut Ctx,
    ) -> Result<Tensor> {
        let dims = x.dims3()?;
        let q = self.project(0, x, ctx)?;
        let (k, v) = match (context, &cache.kv) {
            (Some(_), Some((k, v))) => (k.clone(), v.clone()),
            (Some(c), None) => (self.project(1, c, ctx)?, self.project(2, c, ctx)?),
            (None, past) => {
                let (k, v) = (self.project(1, x, ctx)?, self.project(2, x, ctx)?);
                match past {
                    // [B, H, T, Dh] ++ [B, H, N, Dh] along the positions
                    Some((pk, pv)) => (Tensor::cat(&[pk, &k], 2)?, Tensor::cat(&[pv, &v], 2)?),
                    None => (k, v),
                }
            }
        };
        cache.kv = Some((k.clone(), v.clone()));
        let y = self.attend(q, k, v, dims, mask, ctx)?;
        let then = Then::none().dropout(self.proj_dropout).residual(residual);
        self.out.forward(&y, then, ctx)
    }

    /// [B, N, D] -> [B, H, N, Dh]
    fn split_heads(&self, t: &Tensor) -> Result<Tensor> {
        let (b, n, _) = t.dims3()?;
        t.reshape((b, n, self.num_heads, self.head_dim))?
            .transpose(1, 2)?
            .contiguous()
    }
}

/// The keys and values one attention layer has seen, [B, H, T, Dh] each, for incremental
/// decoding (see [`Attention::forward_cached`]).
#[derive(Clone, Debug, Default)]
pub struct KvCache {
    kv: Option<(Tensor, Tensor)>,
}

impl KvCache {
    /// Positions cached (0 when empty).
    pub fn len(&self) -> usize {
        self.kv.as_ref().map_or(0, |(k, _)| k.dims()[2])
    }

    pub fn is_empty(&self) -> bool {
        self.kv.is_none()
    }

    /// Keeps batch rows `rows` (u32, one per new row; repeats allowed): beam search's reorder.
    pub fn select_rows(&mut self, rows: &Tensor) -> Result<()> {
        if let Some((k, v)) = &self.kv {
            self.kv = Some((k.index_select(rows, 0)?, v.index_select(rows, 0)?));
        }
        Ok(())
    }
}

/// The q|k|v biases side by side in `dtype` (zeros for a projection without one), or `None`
/// when no projection has a bias.
fn concat_bias(lins: [&Linear; 3], dtype: DType) -> Result<Option<Tensor>> {
    if lins.iter().all(|l| l.bias.is_none()) {
        return Ok(None);
    }
    let parts = lins
        .iter()
        .map(|l| match &l.bias {
            Some(b) => b.to_dtype(dtype),
            None => Tensor::zeros(l.out_dim(), dtype, l.weight.device()),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(Tensor::cat(&parts, 0)?))
}

/// Additive causal mask [N, N]: 0 on and below the diagonal, -inf above.
pub fn causal_mask(n: usize, dtype: DType, device: &Device) -> Result<Tensor> {
    let data: Vec<f32> = (0..n)
        .flat_map(|i| (0..n).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Tensor::from_vec(data, (n, n), device)?.to_dtype(dtype)
}

/// Additive padding mask [B, 1, 1, M] from a 0/1 keep mask [B, M]: 0 where kept, `-f32::MAX`
/// where padded (finite, as transformers' `torch.finfo(dtype).min`: a row whose keys are all
/// padding gets uniform weights instead of NaN).
pub fn padding_mask(keep: &Tensor, dtype: DType) -> Result<Tensor> {
    let (b, m) = keep.dims2()?;
    let keep = keep.to_dtype(DType::F32)?;
    // 1 -> 0, 0 -> -f32::MAX
    let neg = ((keep - 1.0)? * -1.0)?
        .affine(f32::MAX as f64, 0.0)?
        .neg()?;
    neg.reshape((b, 1, 1, m))?.to_dtype(dtype)
}

/// Scaled dot-product attention over split heads, in composite ops: `q` [B, H, N, Dk], `k`
/// [B, H, M, Dk], `v` [B, H, M, Dv] → [B, H, N, Dv]. Scores are scaled by 1/√Dk, `mask` is
/// additive (broadcastable to [B, H, N, M]); the probabilities go to the trace (with a gradient
/// probe when asked) and are dropped at rate `dropout` in training. Every attention's core,
/// whatever its projections (see also [`super::latent`]).
pub(crate) fn attend_heads(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    dropout: f64,
    ctx: &mut Ctx,
) -> Result<Tensor> {
    let scale = 1.0 / (q.dim(candle_core::D::Minus1)? as f64).sqrt();
    // [B, H, N, Dk] @ [B, H, Dk, M] -> [B, H, N, M]
    let mut scores = (q * scale)?.matmul(&k.t()?)?;
    if let Some(m) = mask {
        scores = scores.broadcast_add(&m.to_dtype(scores.dtype())?)?;
    }
    let mut probs = ops::softmax_last_dim(&scores)?;
    if let Some(trace) = ctx.trace.as_deref_mut() {
        trace.attentions.push(probs.detach());
        if let Some(probes) = trace.probes.as_mut() {
            // A zero variable added to the probabilities: its gradient is dy/dA for this
            // layer, with the full graph intact (candle keeps gradients of variables only).
            let z = candle_core::Var::zeros(probs.shape(), probs.dtype(), probs.device())?;
            probs = (probs + z.as_tensor())?;
            probes.push(z);
        }
    }
    let probs = ctx.dropout(&probs, dropout)?;
    // [B, H, N, M] @ [B, H, M, Dv] -> [B, H, N, Dv]
    probs.matmul(v)
}
