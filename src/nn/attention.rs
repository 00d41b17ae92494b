//! The one multi-head attention of the project (self and cross), for every model.
use super::fused;
use super::layers::{Ctx, Linear};
use super::ops;
use candle_core::{DType, Device, Result, Tensor};
use candle_nn::{Init, VarBuilder};
use std::sync::Arc;

/// How a checkpoint names the q/k/v projections. Only names differ between layouts;
/// the computation is the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QkvNames {
    /// PyTorch `nn.MultiheadAttention`: `in_proj_weight` [3D, D] and `in_proj_bias` [3D].
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

#[derive(Clone, Debug)]
pub struct Attention {
    proj: Proj,
    out: Linear,
    num_heads: usize,
    head_dim: usize,
    attn_dropout: f64,
    /// Separate q/k/v weights packed side by side as one [3D, D] weight, with the
    /// concatenated bias (set by [`Attention::prepare`]).
    qkv_packed: Option<(Arc<fused::Packed>, Option<Tensor>)>,
}

impl Attention {
    /// `dim` model width, `heads` heads; `bias` for the q/k/v projections.
    pub fn new(
        vb: VarBuilder,
        names: AttnNames,
        dim: usize,
        heads: usize,
        bias: bool,
        attn_dropout: f64,
    ) -> Result<Self> {
        if heads == 0 || !dim.is_multiple_of(heads) {
            candle_core::bail!("hidden size {dim} is not divisible by {heads} attention heads")
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
            QkvNames::Separate { q, k, v } => Proj::Separate {
                q: Linear::new(vb.pp(q), dim, dim, bias)?,
                k: Linear::new(vb.pp(k), dim, dim, bias)?,
                v: Linear::new(vb.pp(v), dim, dim, bias)?,
            },
        };
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
            _ => Linear::new(vb.pp(names.out), dim, dim, true)?,
        };
        Ok(Attention {
            proj,
            out,
            num_heads: heads,
            head_dim: dim / heads,
            attn_dropout,
            qkv_packed: None,
        })
    }

    pub fn num_heads(&self) -> usize {
        self.num_heads
    }

    /// [B, N, D] -> [B, H, N, Dh]
    fn split_heads(&self, t: &Tensor) -> Result<Tensor> {
        let (b, n, _) = t.dims3()?;
        t.reshape((b, n, self.num_heads, self.head_dim))?
            .transpose(1, 2)?
            .contiguous()
    }

    /// q from `x` [B, N, D]; k and v from `context` [B, M, D] (cross-attention) or from `x`
    /// (self-attention). `mask` is additive, broadcastable to [B, H, N, M] (0 keeps, -inf drops).
    /// Returns [B, N, D]; the attention probabilities [B, H, N, M] go to the trace if one is on.
    pub fn forward(
        &self,
        x: &Tensor,
        context: Option<&Tensor>,
        mask: Option<&Tensor>,
        ctx: &mut Ctx,
    ) -> Result<Tensor> {
        if context.is_none() && ctx.trace.is_none() && fused::applies(x) {
            return self.forward_fused_trainable(x, mask, ctx);
        }
        let (b, n, d) = x.dims3()?;
        let (q, k, v) = match (&self.proj, context) {
            (Proj::Fused(lin), None) => {
                // [B, N, 3D] -> [B, N, 3, H, Dh] -> [3, B, H, N, Dh]
                let qkv = lin
                    .forward(x)?
                    .reshape((b, n, 3, self.num_heads, self.head_dim))?
                    .permute((2, 0, 3, 1, 4))?;
                (
                    qkv.get(0)?.contiguous()?,
                    qkv.get(1)?.contiguous()?,
                    qkv.get(2)?.contiguous()?,
                )
            }
            (Proj::Fused(lin), Some(c)) => {
                // Cross-attention with a fused weight: rows [0, D) project q, [D, 3D) project k, v.
                let wq = Linear::from_parts(
                    lin.weight.narrow(0, 0, d)?,
                    lin.bias.as_ref().map(|b| b.narrow(0, 0, d)).transpose()?,
                );
                let wk = Linear::from_parts(
                    lin.weight.narrow(0, d, d)?,
                    lin.bias.as_ref().map(|b| b.narrow(0, d, d)).transpose()?,
                );
                let wv = Linear::from_parts(
                    lin.weight.narrow(0, 2 * d, d)?,
                    lin.bias
                        .as_ref()
                        .map(|b| b.narrow(0, 2 * d, d))
                        .transpose()?,
                );
                (
                    self.split_heads(&wq.forward(x)?)?,
                    self.split_heads(&wk.forward(c)?)?,
                    self.split_heads(&wv.forward(c)?)?,
                )
            }
            (Proj::Separate { q, k, v }, c) => {
                let c = c.unwrap_or(x);
                (
                    self.split_heads(&q.forward(x)?)?,
                    self.split_heads(&k.forward(c)?)?,
                    self.split_heads(&v.forward(c)?)?,
                )
            }
        };
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        // [B, H, N, Dh] @ [B, H, Dh, M] -> [B, H, N, M]
        let mut scores = (q * scale)?.matmul(&k.t()?)?;
        if let Some(m) = mask {
            scores = scores.broadcast_add(&m.to_dtype(scores.dtype())?)?;
        }
        let probs = ops::softmax_last_dim(&scores)?;
        let mut probs = probs;
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
        let probs = ctx.dropout(&probs, self.attn_dropout)?;
        // [B, H, N, M] @ [B, H, M, Dh] -> [B, H, N, Dh] -> [B, N, H, Dh] -> [B, N, D]
        let y = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, n, d))?;
        self.out.forward(&y)
    }
}

/// An additive mask broadcastable to [B, 1, N, N] as [Bm, N, N] f32 (Bm = 1 or B).
fn mask_3d(mask: &Tensor, b: usize, n: usize) -> Result<(Tensor, usize)> {
    let m = mask.to_dtype(DType::F32)?;
    let m = match m.rank() {
        2 => m.unsqueeze(0)?,
        4 if m.dim(1)? == 1 => m.squeeze(1)?,
        3 => m,
        _ => candle_core::bail!(
            "attention mask of shape {:?} is not broadcastable to [B, 1, N, N]",
            m.dims()
        ),
    };
    let bm = if m.dim(0)? == 1 { 1 } else { b };
    Ok((m.broadcast_as((bm, n, n))?.contiguous()?, bm))
}

impl Attention {
    /// Every parameter tensor (weights and biases of the projections).
    pub(crate) fn parameters(&self) -> Vec<&Tensor> {
        let lins: Vec<&Linear> = match &self.proj {
            Proj::Fused(l) => vec![l, &self.out],
            Proj::Separate { q, k, v } => vec![q, k, v, &self.out],
        };
        lins.into_iter()
            .flat_map(|l| std::iter::once(&l.weight).chain(l.bias.as_ref()))
            .collect()
    }

    /// Self-attention through the fused attention op (CPU f32, differentiable): one q|k|v
    /// linear, then per (image, head) scores, softmax, dropout and the weighted sum without a
    /// [B, H, N, N] tensor or head split/merge copies; backward recomputes the probabilities.
    fn forward_fused_trainable(
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
                let bias = match (&q.bias, &k.bias, &v.bias) {
                    (Some(bq), Some(bk), Some(bv)) => Some(Tensor::cat(&[bq, bk, bv], 0)?),
                    (None, None, None) => None,
                    _ => {
                        let z = |l: &Linear| match &l.bias {
                            Some(b) => Ok(b.clone()),
                            None => Tensor::zeros(l.out_dim(), x.dtype(), x.device()),
                        };
                        Some(Tensor::cat(&[z(q)?, z(k)?, z(v)?], 0)?)
                    }
                };
                ops::linear(&x2, &w, bias.as_ref())?
            }
        };
        let drop = if ctx.train && self.attn_dropout > 0.0 {
            ctx.rng
                .as_deref_mut()
                .map(|rng| fused::Dropout::new(self.attn_dropout, rand::Rng::random(rng)))
        } else {
            None
        };
        let op = fused::AttentionOp {
            heads: self.num_heads,
            dh: self.head_dim,
            mask: mask.map(|m| mask_3d(m, b, n)).transpose()?,
            drop,
        };
        // [B, N, 3D] -> [B, N, D]
        let y = qkv.reshape((b, n, 3 * d))?.contiguous()?.apply_op1(op)?;
        self.out.forward(&y)
    }

    /// Sets the inference dtype of the projections (see [`Linear::prepare`]).
    pub fn prepare(&mut self, dtype: DType) -> Result<()> {
        self.out.prepare(dtype)?;
        self.qkv_packed = None;
        match &mut self.proj {
            Proj::Fused(lin) => lin.prepare(dtype)?,
            Proj::Separate { q, k, v } => {
                // [3D, D]: one kernel call gives q|k|v side by side.
                let w = Tensor::cat(&[&q.weight, &k.weight, &v.weight], 0)?;
                let packed = fused::Packed::new(&w, dtype)?;
                let bias = match (&q.bias, &k.bias, &v.bias) {
                    (None, None, None) => None,
                    _ => {
                        let b = |l: &Linear| match &l.bias {
                            Some(b) => b.to_dtype(DType::F32),
                            None => Tensor::zeros(l.out_dim(), DType::F32, l.weight.device()),
                        };
                        Some(Tensor::cat(&[b(q)?, b(k)?, b(v)?], 0)?)
                    }
                };
                self.qkv_packed = Some((Arc::new(packed), bias));
            }
        }
        Ok(())
    }

    /// Inference self-attention (see [`super::fused`]): q|k|v into one [B*N, 3D] buffer,
    /// attention per (image, head) into the merged-head layout, then the out projection with
    /// `residual` added in the same pass. `mask` is additive, broadcastable to [B, 1, N, N].
    pub fn forward_fused(
        &self,
        x: &Tensor,
        mask: Option<&Tensor>,
        residual: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (b, n, d) = x.dims3()?;
        let qkv = match (&self.proj, &self.qkv_packed) {
            (_, Some((p, bias))) => fused::linear(
                x,
                &fused::Weight::Packed(p),
                p.n(),
                bias.as_ref(),
                None,
                None,
            )?,
            (Proj::Fused(lin), None) => lin.forward_fused(x, None, None)?,
            (Proj::Separate { q, k, v }, None) => fused::qkv_separate(x, [q, k, v])?,
        };
        let mask = mask.map(|m| mask_3d(m, b, n)).transpose()?;
        let y = fused::with_f32(&qkv, |qkv| match &mask {
            Some((m, bm)) => fused::with_f32(m, |m| {
                fused::attention(qkv, b, n, self.num_heads, self.head_dim, Some((m, *bm)))
            }),
            None => fused::attention(qkv, b, n, self.num_heads, self.head_dim, None),
        })?;
        let y = Tensor::from_vec(y, (b, n, d), x.device())?;
        self.out.forward_fused(&y, None, residual)
    }
}

/// Additive causal mask [N, N]: 0 on and below the diagonal, -inf above.
pub fn causal_mask(n: usize, dtype: DType, device: &Device) -> Result<Tensor> {
    let data: Vec<f32> = (0..n)
        .flat_map(|i| (0..n).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Tensor::from_vec(data, (n, n), device)?.to_dtype(dtype)
}

/// Additive padding mask [B, 1, 1, M] from a 0/1 keep mask [B, M].
pub fn padding_mask(keep: &Tensor, dtype: DType) -> Result<Tensor> {
    let (b, m) = keep.dims2()?;
    let keep = keep.to_dtype(DType::F32)?;
    // 1 -> 0, 0 -> -inf
    let neg = ((keep - 1.0)? * -1.0)?
        .affine(f32::MAX as f64, 0.0)?
        .neg()?;
    neg.reshape((b, 1, 1, m))?.to_dtype(dtype)
}
