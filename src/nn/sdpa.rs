//! Scaled dot-product attention on CPU f32, straight from a packed q|k|v buffer: per (image,
//! head) one [N, N] score block (scores, mask, softmax, dropout, weighted sum) into the
//! merged-head output, without a [B, H, N, N] tensor or head split/merge copies. The forward
//! serves inference and training through one op (`attention`), whose backward
//! recomputes the probabilities per head as flash attention does.
use super::cpu::{matmul_strided, slice, with_f32};
use super::dropout::DropoutMask;
use super::math::{lane_dot, multiversion, softmax_rows};
use crate::kernels::SendPtr;
use candle_core::{CpuStorage, Result, Tensor};
use rayon::prelude::*;

struct AttnShape {
    b: usize,
    n: usize,
    heads: usize,
    dh: usize,
}

impl AttnShape {
    /// Checks the buffers against the shape; returns (B, N, heads, dh, D).
    fn check(
        &self,
        qkv: &[f32],
        mask: Option<(&[f32], usize)>,
    ) -> Result<(usize, usize, usize, usize, usize)> {
        let (b, n) = (self.b, self.n);
        if qkv.len() != b * n * 3 * self.heads * self.dh {
            candle_core::bail!("attention: qkv buffer has {} values", qkv.len())
        }
        if let Some((m, bm)) = mask {
            if (bm != 1 && bm != b) || m.len() != bm * n * n {
                candle_core::bail!("attention: mask does not match [{b} or 1, {n}, {n}]")
            }
        }
        Ok((b, n, self.heads, self.dh, self.heads * self.dh))
    }

    /// Task `task` = (image, head): the image index, the offset of its head's q columns in
    /// the packed [B*N, 3D] buffer, and its [N, N] mask block (shared or per image).
    fn task<'m>(
        &self,
        task: usize,
        mask: Option<(&'m [f32], usize)>,
    ) -> (usize, usize, Option<&'m [f32]>) {
        let (n, d) = (self.n, self.heads * self.dh);
        let (bi, h) = (task / self.heads, task % self.heads);
        let m = mask.map(|(m, bm)| &m[if bm == 1 { 0 } else { bi * n * n }..][..n * n]);
        (bi, bi * n * 3 * d + h * self.dh, m)
    }
}

/// Row-softmaxed `scale · q kᵀ + mask` of one (image, head) into `s` [n, n].
///
/// # Safety
/// `q`, `k` must address [n, dh] windows with row stride `ld`.
#[allow(clippy::too_many_arguments)]
unsafe fn probs(
    s: &mut [f32],
    q: *const f32,
    k: *const f32,
    n: usize,
    dh: usize,
    ld: usize,
    scale: f32,
    mask: Option<&[f32]>,
) {
    // s = scale · q kᵀ: rhs[c][j] = k[j][c] (row stride 1, column stride ld).
    matmul_strided(n, n, dh, s.as_mut_ptr(), n, q, ld, 1, k, 1, ld, scale);
    softmax_rows(s, mask, n);
}

/// Multi-head self-attention from a packed q|k|v tensor `qkv` [B, N, 3D] (q in columns [0, D),
/// k in [D, 2D), v in [2D, 3D); head h in columns h·dh.. of each) to the merged-head output
/// [B, N, D] (heads side by side, as the out projection expects). `mask` is additive,
/// broadcastable to [B, 1, N, N]; `drop` drops attention probabilities. Differentiable when
/// `qkv` tracks a gradient (backward recomputes the probabilities); CPU f32 only.
pub(crate) fn attention(
    qkv: &Tensor,
    heads: usize,
    mask: Option<&Tensor>,
    drop: Option<DropoutMask>,
) -> Result<Tensor> {
    let (b, n, d3) = qkv.dims3()?;
    if heads == 0 || d3 % (3 * heads) != 0 {
        candle_core::bail!("attention: q|k|v width {d3} does not split into 3 x {heads} heads")
    }
    let op = AttentionOp {
        heads,
        dh: d3 / (3 * heads),
        mask: mask.map(|m| mask_3d(m, b, n)).transpose()?,
        drop,
    };
    qkv.contiguous()?.apply_op1(op)
}

/// An additive mask broadcastable to [B, 1, N, N] as [Bm, N, N] f32 (Bm = 1 or B).
fn mask_3d(mask: &Tensor, b: usize, n: usize) -> Result<(Tensor, usize)> {
    let m = mask.to_dtype(candle_core::DType::F32)?;
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

fn attention_dropout(
    qkv: &[f32],
    sh: AttnShape,
    mask: Option<(&[f32], usize)>,
    drop: Option<DropoutMask>,
) -> Result<Vec<f32>> {
    let (b, n, heads, dh, d) = sh.check(qkv, mask)?;
    let mut out = vec![0f32; b * n * d];
    let out_ptr = SendPtr(out.as_mut_ptr());
    let scale = 1.0 / (dh as f32).sqrt();
    let ld = 3 * d;
    (0..b * heads).into_par_iter().for_each_init(
        || vec![0f32; n * n],
        |s, task| {
            let (bi, base, m) = sh.task(task, mask);
            let h = task % heads;
            let o = out_ptr;
            // SAFETY: q/k/v are [n, dh] windows of qkv with row stride 3D, in bounds (checked
            // by `check`); each task writes only its own [n, dh] window of out (rows bi*n..,
            // columns h*dh..), disjoint across tasks.
            unsafe {
                probs(
                    s,
                    qkv[base..].as_ptr(),
                    qkv[base + d..].as_ptr(),
                    n,
                    dh,
                    ld,
                    scale,
                    m,
                );
                if let Some(dr) = drop {
                    dr.apply_block(task, s);
                }
                let v = qkv[base + 2 * d..].as_ptr();
                matmul_strided(
                    n,
                    dh,
                    n,
                    o.0.add(bi * n * d + h * dh),
                    d,
                    s.as_ptr(),
                    n,
                    1,
                    v,
                    ld,
                    1,
                    1.0,
                );
            }
        },
    );
    Ok(out)
}

/// Gradient of [`attention_dropout`] with respect to the packed q|k|v buffer, given the
/// output gradient `g` [B*N, D]: probabilities are recomputed per (image, head) (as flash
/// attention does) instead of kept from the forward.
fn attention_bwd(
    qkv: &[f32],
    g: &[f32],
    sh: AttnShape,
    mask: Option<(&[f32], usize)>,
    drop: Option<DropoutMask>,
) -> Result<Vec<f32>> {
    let (b, n, heads, dh, d) = sh.check(qkv, mask)?;
    if g.len() != b * n * d {
        candle_core::bail!("attention backward: gradient has {} values", g.len())
    }
    let ld = 3 * d;
    let mut dqkv = vec![0f32; b * n * ld];
    let dptr = SendPtr(dqkv.as_mut_ptr());
    let scale = 1.0 / (dh as f32).sqrt();
    (0..b * heads).into_par_iter().for_each_init(
        || (vec![0f32; n * n], vec![0f32; n * n], vec![0f32; n * n]),
        |(p, pd, dp), task| {
            let (bi, base, m) = sh.task(task, mask);
            let h = task % heads;
            let (q, k, v) = (
                qkv[base..].as_ptr(),
                qkv[base + d..].as_ptr(),
                qkv[base + 2 * d..].as_ptr(),
            );
            let go = g[bi * n * d + h * dh..].as_ptr();
            let dq = dptr;
            // SAFETY: q/k/v and the output-gradient window are in bounds (checked above); each
            // task writes only its own q/k/v column windows of dqkv (rows bi*n.., columns
            // h*dh.. of each third), disjoint across tasks.
            unsafe {
                probs(p, q, k, n, dh, ld, scale, m);
                // pd = dropped probabilities (what multiplied v in the forward)
                pd.copy_from_slice(p);
                if let Some(dr) = drop {
                    dr.apply_block(task, pd);
                }
                // dV = pdᵀ · dO: lhs[j][i] = pd[i][j] (row stride 1, column stride n)
                matmul_strided(
                    n,
                    dh,
                    n,
                    dq.0.add(base + 2 * d),
                    ld,
                    pd.as_ptr(),
                    1,
                    n,
                    go,
                    d,
                    1,
                    1.0,
                );
                // dPd = dO · vᵀ: rhs[c][j] = v[j][c]
                matmul_strided(n, n, dh, dp.as_mut_ptr(), n, go, d, 1, v, 1, ld, 1.0);
                if let Some(dr) = drop {
                    // d(p ∘ m/(1-p)) / dp = m/(1-p): the same mask on the gradient
                    dr.apply_block(task, dp);
                }
                softmax_bwd_inplace(dp, p, n);
                // dQ = scale · dS · k;  dK = scale · dSᵀ · q
                matmul_strided(
                    n,
                    dh,
                    n,
                    dq.0.add(base),
                    ld,
                    dp.as_ptr(),
                    n,
                    1,
                    k,
                    ld,
                    1,
                    scale,
                );
                matmul_strided(
                    n,
                    dh,
                    n,
                    dq.0.add(base + d),
                    ld,
                    dp.as_ptr(),
                    1,
                    n,
                    q,
                    ld,
                    1,
                    scale,
                );
            }
        },
    );
    Ok(dqkv)
}

multiversion! {
    /// dS = P ∘ (dP - rowsum(dP ∘ P)), in place in `dp`.
    fn softmax_bwd_inplace(dp: &mut [f32], p: &[f32], n: usize) {
        for (d, p) in dp.chunks_exact_mut(n).zip(p.chunks_exact(n)) {
            let dot = lane_dot(d, p);
            for (d, &p) in d.iter_mut().zip(p) {
                *d = p * (*d - dot);
            }
        }
    }
}

/// The op behind [`attention`]: `qkv` [B, N, 3D] -> [B, N, D].
#[derive(Clone)]
struct AttentionOp {
    heads: usize,
    dh: usize,
    /// Additive mask [Bm, N, N], Bm = 1 or B.
    mask: Option<(Tensor, usize)>,
    drop: Option<DropoutMask>,
}

impl AttentionOp {
    fn shape(&self, l: &candle_core::Layout) -> Result<AttnShape> {
        let (b, n, _) = l.shape().dims3()?;
        Ok(AttnShape {
            b,
            n,
            heads: self.heads,
            dh: self.dh,
        })
    }

    fn with_mask<R>(&self, f: impl FnOnce(Option<(&[f32], usize)>) -> Result<R>) -> Result<R> {
        match &self.mask {
            Some((m, bm)) => with_f32(m, |m| f(Some((m, *bm)))),
            None => f(None),
        }
    }
}

impl candle_core::CustomOp1 for AttentionOp {
    fn name(&self) -> &'static str {
        "tessera-attention"
    }

    fn cpu_fwd(
        &self,
        s: &CpuStorage,
        l: &candle_core::Layout,
    ) -> Result<(CpuStorage, candle_core::Shape)> {
        let qkv = slice(s, l, "attention")?;
        let sh = self.shape(l)?;
        let (b, n) = (sh.b, sh.n);
        let out = self.with_mask(|m| attention_dropout(qkv, sh, m, self.drop))?;
        Ok((
            CpuStorage::F32(out),
            candle_core::Shape::from((b, n, self.heads * self.dh)),
        ))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(arg.apply_op2_no_bwd(
            &grad_res.contiguous()?,
            &AttentionBwdOp(self.clone()),
        )?))
    }
}

struct AttentionBwdOp(AttentionOp);

impl candle_core::CustomOp2 for AttentionBwdOp {
    fn name(&self) -> &'static str {
        "tessera-attention-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &candle_core::Layout,
        s2: &CpuStorage,
        l2: &candle_core::Layout,
    ) -> Result<(CpuStorage, candle_core::Shape)> {
        let qkv = slice(s1, l1, "attention-bwd")?;
        let g = slice(s2, l2, "attention-bwd")?;
        let sh = self.0.shape(l1)?;
        let d = self
            .0
            .with_mask(|m| attention_bwd(qkv, g, sh, m, self.0.drop))?;
        Ok((CpuStorage::F32(d), l1.shape().clone()))
    }
}
