//! Differentiable ops on tessera's CPU kernels: softmax, LayerNorm, linear + bias and the
//! activations, each one pass over its rows forward *and* a `bwd` (candle-nn's fused
//! `layer_norm` and `softmax_last_dim` have none: gradients through them silently go missing).
//! Each op dispatches inside: the custom op where [`kernels_apply`] (CPU f32), composite candle
//! ops (which autograd differentiates) on other devices and dtypes.
use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor, D,
};
use rayon::prelude::*;

use super::activation::{act_bwd, bias_act, Activation};
use super::cpu::{kernels_apply, matmul, slice};
use super::math::{lane_dot, lane_sq_dev, lane_sum, multiversion, softmax_rows};

/// Rows per rayon task: enough work that thread hand-off is not the cost.
fn rows_per_task(dim: usize, rows: usize) -> usize {
    let per = (16384 / dim.max(1)).max(1);
    per.min(rows.max(1))
}

/// The elements per rayon task over `len` values in rows of `dim`: whole rows, see
/// [`rows_per_task`].
fn chunk_len(dim: usize, len: usize) -> usize {
    rows_per_task(dim, len / dim.max(1)) * dim.max(1)
}

// ---------------------------------------------------------------------------------------------
// softmax over the last dimension

struct SoftmaxLastDim;

impl CustomOp1 for SoftmaxLastDim {
    fn name(&self) -> &'static str {
        "tessera-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = slice(s, l, "softmax")?;
        let dim = l.dims().last().copied().unwrap_or(1);
        let mut out = vec![0f32; x.len()];
        let chunk = chunk_len(dim, x.len());
        out.par_chunks_mut(chunk)
            .zip(x.par_chunks(chunk))
            .for_each(|(o, x)| {
                o.copy_from_slice(x);
                softmax_rows(o, None, dim);
            });
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        // dx = y * (g - sum(g * y))
        let g = grad_res.contiguous()?;
        Ok(Some(res.apply_op2_no_bwd(&g, &SoftmaxBwd)?))
    }
}

struct SoftmaxBwd;

impl CustomOp2 for SoftmaxBwd {
    fn name(&self) -> &'static str {
        "tessera-softmax-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let y = slice(s1, l1, "softmax-bwd")?;
        let g = slice(s2, l2, "softmax-bwd")?;
        let dim = l1.dims().last().copied().unwrap_or(1);
        let chunk = chunk_len(dim, y.len());
        let mut out = vec![0f32; y.len()];
        out.par_chunks_mut(chunk)
            .zip(y.par_chunks(chunk).zip(g.par_chunks(chunk)))
            .for_each(|(o, (y, g))| softmax_bwd_rows(o, y, g, dim));
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// Softmax over the last dimension, fused on CPU f32, differentiable everywhere.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if kernels_apply(x) {
        x.contiguous()?.apply_op1(SoftmaxLastDim)
    } else {
        let max = x.max_keepdim(D::Minus1)?.detach();
        let e = x.broadcast_sub(&max)?.exp()?;
        e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
    }
}

// ---------------------------------------------------------------------------------------------
// layer norm: y = (x - mean) / sqrt(var + eps) * w + b over the last dimension

struct LayerNormOp {
    eps: f32,
}

#[inline(always)]
fn row_stats(x: &[f32], eps: f32) -> (f32, f32) {
    // Two passes (mean, then centred variance) as PyTorch: one-pass E[x²]-E[x]² loses digits.
    let n = x.len() as f32;
    let mean = lane_sum(x) / n;
    let var = lane_sq_dev(x, mean) / n;
    (mean, 1.0 / (var + eps).sqrt())
}

impl CustomOp3 for LayerNormOp {
    fn name(&self) -> &'static str {
        "tessera-layer-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = slice(s1, l1, "layer-norm")?;
        let w = slice(s2, l2, "layer-norm")?;
        let b = slice(s3, l3, "layer-norm")?;
        let (dim, eps) = (w.len(), self.eps);
        let chunk = chunk_len(dim, x.len());
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(chunk)
            .zip(x.par_chunks(chunk))
            .for_each(|(o, x)| ln_rows(o, x, w, b, dim, eps));
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dim = w.elem_count();
        let rows = x.elem_count() / dim;
        // One fused pass returns [dx (rows*dim) | dw (dim) | db (dim)].
        let packed = x.apply_op3_no_bwd(
            &w.contiguous()?,
            &g.contiguous()?,
            &LayerNormBwd { eps: self.eps },
        )?;
        let dx = packed.narrow(0, 0, rows * dim)?.reshape(x.shape())?;
        let dw = packed.narrow(0, rows * dim, dim)?.reshape(w.shape())?;
        let db = packed
            .narrow(0, rows * dim + dim, dim)?
            .reshape(w.shape())?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

struct LayerNormBwd {
    eps: f32,
}

impl CustomOp3 for LayerNormBwd {
    fn name(&self) -> &'static str {
        "tessera-layer-norm-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = slice(s1, l1, "layer-norm-bwd")?;
        let w = slice(s2, l2, "layer-norm-bwd")?;
        let g = slice(s3, l3, "layer-norm-bwd")?;
        let (dim, eps) = (w.len(), self.eps);
        let chunk = chunk_len(dim, x.len());
        let mut dx = vec![0f32; x.len() + 2 * dim];
        let (dxs, _) = dx.split_at_mut(x.len());
        // Each task accumulates its own dw/db; summed afterwards in task order (deterministic).
        let partial: Vec<(Vec<f32>, Vec<f32>)> = dxs
            .par_chunks_mut(chunk)
            .zip(x.par_chunks(chunk).zip(g.par_chunks(chunk)))
            .map(|(dx, (x, g))| ln_bwd_rows(dx, x, g, w, dim, eps))
            .collect();
        let (dws, dbs) = dx.split_at_mut(x.len()).1.split_at_mut(dim);
        for (pw, pb) in partial {
            dws.iter_mut().zip(&pw).for_each(|(a, b)| *a += b);
            dbs.iter_mut().zip(&pb).for_each(|(a, b)| *a += b);
        }
        let n = dx.len();
        Ok((CpuStorage::F32(dx), Shape::from(n)))
    }
}

multiversion! {
    /// dx = y · (g - Σ g·y) over rows.
    fn softmax_bwd_rows(o: &mut [f32], y: &[f32], g: &[f32], dim: usize) {
        for ((o, y), g) in o
            .chunks_exact_mut(dim)
            .zip(y.chunks_exact(dim))
            .zip(g.chunks_exact(dim))
        {
            let dot = lane_dot(y, g);
            for ((o, &y), &g) in o.iter_mut().zip(y).zip(g) {
                *o = y * (g - dot);
            }
        }
    }
}

multiversion! {
    /// LayerNorm forward over rows.
    fn ln_rows(o: &mut [f32], x: &[f32], w: &[f32], b: &[f32], dim: usize, eps: f32) {
        for (o, x) in o.chunks_exact_mut(dim).zip(x.chunks_exact(dim)) {
            let (mean, rstd) = row_stats(x, eps);
            for (((o, &x), &w), &b) in o.iter_mut().zip(x).zip(w).zip(b) {
                *o = (x - mean) * rstd * w + b;
            }
        }
    }
}

multiversion! {
/// LayerNorm backward over rows of one task: writes dx, returns this task's (dw, db).
fn ln_bwd_rows(
    dx: &mut [f32],
    x: &[f32],
    g: &[f32],
    w: &[f32],
    dim: usize,
    eps: f32,
) -> (Vec<f32>, Vec<f32>) {
    let mut dw = vec![0f32; dim];
    let mut db = vec![0f32; dim];
    let mut xhat = vec![0f32; dim];
    let mut gw = vec![0f32; dim];
    for ((dx, x), g) in dx
        .chunks_exact_mut(dim)
        .zip(x.chunks_exact(dim))
        .zip(g.chunks_exact(dim))
    {
        let (mean, rstd) = row_stats(x, eps);
        for i in 0..dim {
            let xh = (x[i] - mean) * rstd;
            xhat[i] = xh;
            gw[i] = g[i] * w[i];
            dw[i] += g[i] * xh;
            db[i] += g[i];
        }
        let n = dim as f32;
        let (mg, mgx) = (lane_sum(&gw) / n, lane_dot(&gw, &xhat) / n);
        for i in 0..dim {
            dx[i] = rstd * (gw[i] - mg - xhat[i] * mgx);
        }
    }
    (dw, db)
}
}

/// LayerNorm over the last dimension, fused on CPU f32, differentiable everywhere.
pub fn layer_norm(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
    if kernels_apply(x) && w.dtype() == DType::F32 {
        x.contiguous()?
            .apply_op3(w, b, LayerNormOp { eps: eps as f32 })
    } else {
        let mean = x.mean_keepdim(D::Minus1)?;
        let xc = x.broadcast_sub(&mean)?;
        let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
        let xhat = xc.broadcast_div(&(var + eps)?.sqrt()?)?;
        xhat.broadcast_mul(w)?.broadcast_add(b)
    }
}

// ---------------------------------------------------------------------------------------------
// linear with bias: y = x Wᵀ + b, the bias added while the output is hot; backward
// dx = g W, dW = gᵀ x, db = Σ_rows g (no broadcast-add op and its reduction in the graph)

struct LinearBias;

impl CustomOp3 for LinearBias {
    fn name(&self) -> &'static str {
        "tessera-linear"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = slice(s1, l1, "linear")?;
        let w = slice(s2, l2, "linear")?;
        let b = slice(s3, l3, "linear")?;
        let (rows, k) = l1.shape().dims2()?;
        let (n, k2) = l2.shape().dims2()?;
        if k != k2 || b.len() != n {
            candle_core::bail!(
                "linear: x {:?}, weight {:?}, bias {}",
                l1.dims(),
                l2.dims(),
                b.len()
            )
        }
        let mut out = vec![0f32; rows * n];
        matmul(x, rows, k, w, n, &mut out)?;
        bias_act(&mut out, Some(b), None, n);
        Ok((CpuStorage::F32(out), Shape::from((rows, n))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        // Detached: a product with the tracked `x` or `w` would be a tracked tensor that keeps
        // `g` and the forward graph behind `x` alive as long as the gradient lives.
        let (x, w, g) = (x.detach(), w.detach(), g.detach());
        // [M, N] @ [N, K] -> [M, K];  [N, M] @ [M, K] -> [N, K];  Σ over M -> [N]
        let dx = g.matmul(&w)?;
        let dw = g.t()?.matmul(&x)?;
        let db = g.contiguous()?.apply_op1_no_bwd(&ColumnSum)?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

/// Σ over rows of a [M, N] matrix -> [N] (candle's strided `sum(0)` measured ~10% of a
/// small-ViT training step; this is one vectorised pass, rows split over threads).
struct ColumnSum;

multiversion! {
    fn add_rows_into(acc: &mut [f32], rows: &[f32], n: usize) {
        for r in rows.chunks_exact(n) {
            for (a, v) in acc.iter_mut().zip(r) {
                *a += v;
            }
        }
    }
}

impl CustomOp1 for ColumnSum {
    fn name(&self) -> &'static str {
        "tessera-column-sum"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = slice(s, l, "column-sum")?;
        let (m, n) = l.shape().dims2()?;
        let per = rows_per_task(n, m).max(64);
        // Partial sums per task, added in task order: deterministic.
        let parts: Vec<Vec<f32>> = g
            .par_chunks(per * n.max(1))
            .map(|rows| {
                let mut acc = vec![0f32; n];
                add_rows_into(&mut acc, rows, n);
                acc
            })
            .collect();
        let mut out = vec![0f32; n];
        for p in parts {
            out.iter_mut().zip(&p).for_each(|(o, v)| *o += v);
        }
        Ok((CpuStorage::F32(out), Shape::from(n)))
    }
}

/// `x [M, K] · wᵀ + b` with `w` [N, K]: fused on CPU f32 (differentiable), composite elsewhere.
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    match b {
        Some(b) if kernels_apply(x) && w.dtype() == DType::F32 && b.dtype() == DType::F32 => x
            .contiguous()?
            .apply_op3(&w.contiguous()?, &b.contiguous()?, LinearBias),
        Some(b) => x.matmul(&w.t()?)?.broadcast_add(b),
        None => x.matmul(&w.t()?),
    }
}

// ---------------------------------------------------------------------------------------------
// activation then linear: y = act(h) Wᵀ + b, holding only `h` for the backward. act(h) is a
// temporary of the forward and recomputed in the backward (for dW = gᵀ act(h)), so an MLP's
// graph keeps its hidden layer once instead of twice (before and after the activation): 4 of
// a ViT block's ~19 saved values per token. The recomputation is the same vectorised pass, so
// the gradients are bit-identical to `linear(activation(h))`'s.

struct ActLinearBias(Activation);

impl CustomOp3 for ActLinearBias {
    fn name(&self) -> &'static str {
        "tessera-act-linear"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let h = slice(s1, l1, "act-linear")?;
        let (rows, k) = l1.shape().dims2()?;
        let mut a = h.to_vec();
        bias_act(&mut a, None, Some(self.0), k.max(1));
        LinearBias.cpu_fwd(
            &CpuStorage::F32(a),
            &Layout::contiguous((rows, k)),
            s2,
            l2,
            s3,
            l3,
        )
    }

    fn bwd(
        &self,
        h: &Tensor,
        w: &Tensor,
        b: &Tensor,
        res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        // The linear's backward on act(h), recomputed; then dh = act'(h) ⊙ d act(h).
        let h = h.detach();
        let a = h.apply_op1_no_bwd(&ActOp(self.0))?;
        let (da, dw, db) = LinearBias.bwd(&a, w, b, res, g)?;
        drop(a);
        let dh = match da {
            Some(da) => Some(h.apply_op2_no_bwd(&da.contiguous()?, &ActBwd(self.0))?),
            None => None,
        };
        Ok((dh, dw, db))
    }
}

/// `act(h) [M, K] · wᵀ + b` with `w` [N, K]: on CPU f32 one differentiable op that keeps only
/// `h` for its backward (`ActLinearBias`); elsewhere `linear(activation(h))`.
pub fn act_linear(h: &Tensor, act: Activation, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    match b {
        Some(b) if kernels_apply(h) && w.dtype() == DType::F32 && b.dtype() == DType::F32 => h
            .contiguous()?
            .apply_op3(&w.contiguous()?, &b.contiguous()?, ActLinearBias(act)),
        _ => linear(&activation(h, act)?, w, b),
    }
}

// ---------------------------------------------------------------------------------------------
// activations, vectorised, with backward

struct ActOp(Activation);

impl CustomOp1 for ActOp {
    fn name(&self) -> &'static str {
        "tessera-activation"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = slice(s, l, "activation")?;
        let mut out = x.to_vec();
        let n = *l.dims().last().unwrap_or(&1);
        bias_act(&mut out, None, Some(self.0), n.max(1));
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(arg.apply_op2_no_bwd(
            &grad_res.contiguous()?,
            &ActBwd(self.0),
        )?))
    }
}

struct ActBwd(Activation);

impl CustomOp2 for ActBwd {
    fn name(&self) -> &'static str {
        "tessera-activation-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = slice(s1, l1, "activation-bwd")?;
        let g = slice(s2, l2, "activation-bwd")?;
        let mut dx = vec![0f32; x.len()];
        let chunk = 16384;
        dx.par_chunks_mut(chunk)
            .zip(x.par_chunks(chunk).zip(g.par_chunks(chunk)))
            .for_each(|(d, (x, g))| act_bwd(d, x, g, self.0));
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

/// An activation, fused and vectorised on CPU f32 (with backward), composite elsewhere.
pub fn activation(x: &Tensor, act: Activation) -> Result<Tensor> {
    if kernels_apply(x) {
        x.contiguous()?.apply_op1(ActOp(act))
    } else {
        match act {
            Activation::Gelu => x.gelu_erf(),
            Activation::GeluTanh => x.gelu(),
            Activation::QuickGelu => x * candle_nn::ops::sigmoid(&(x * 1.702)?)?,
            Activation::Relu => x.relu(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn close(a: &Tensor, b: &Tensor, tol: f32) {
        let d = (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap();
        let d = d.to_scalar::<f32>().unwrap();
        assert!(d <= tol, "max diff {d} > {tol}");
    }

    /// The fused ops must give the same values and gradients as the composite reference.
    #[test]
    fn fused_ops_match_composite_forward_and_backward() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 2.0, (3, 5, 17), &dev).unwrap()).unwrap();
        let w = Var::from_tensor(&Tensor::randn(1f32, 0.5, 17, &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::randn(0f32, 0.5, 17, &dev).unwrap()).unwrap();
        let mix = Tensor::randn(0f32, 1.0, (3, 5, 17), &dev).unwrap();
        let run = |fused: bool| {
            let x64 = |t: &Tensor| {
                if fused {
                    t.clone()
                } else {
                    t.to_dtype(DType::F64).unwrap()
                }
            };
            let ln = layer_norm(&x64(&x), &x64(&w), &x64(&b), 1e-5).unwrap();
            let sm = softmax_last_dim(&(ln.clone() * 3.0).unwrap()).unwrap();
            let loss = (sm + ln)
                .unwrap()
                .broadcast_mul(&x64(&mix))
                .unwrap()
                .sum_all()
                .unwrap();
            let grads = loss.backward().unwrap();
            let g = |v: &Var| grads.get(v).unwrap().to_dtype(DType::F32).unwrap();
            (loss.to_dtype(DType::F32).unwrap(), g(&x), g(&w), g(&b))
        };
        let (l1, gx1, gw1, gb1) = run(true);
        let (l2, gx2, gw2, gb2) = run(false);
        close(&l1, &l2, 1e-3);
        close(&gx1, &gx2, 1e-4);
        close(&gw1, &gw2, 1e-4);
        close(&gb1, &gb2, 1e-4);
    }

    /// Linear with bias and every activation: values and gradients (x, W, b) as the composite
    /// ops in f64.
    #[test]
    fn fused_linear_and_activations_match_composite() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.5, (37, 19), &dev).unwrap()).unwrap();
        let w = Var::from_tensor(&Tensor::randn(0f32, 0.5, (23, 19), &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::randn(0f32, 0.5, 23, &dev).unwrap()).unwrap();
        let mix = Tensor::randn(0f32, 1.0, (37, 23), &dev).unwrap();
        for act in [
            Activation::Gelu,
            Activation::GeluTanh,
            Activation::QuickGelu,
            Activation::Relu,
        ] {
            let run = |fused: bool| {
                let t = |v: &Tensor| {
                    if fused {
                        v.clone()
                    } else {
                        v.to_dtype(DType::F64).unwrap()
                    }
                };
                let y = linear(&t(&x), &t(&w), Some(&t(&b))).unwrap();
                let y = activation(&y, act).unwrap();
                let loss = y.broadcast_mul(&t(&mix)).unwrap().sum_all().unwrap();
                let grads = loss.backward().unwrap();
                let g = |v: &Var| grads.get(v).unwrap().to_dtype(DType::F32).unwrap();
                (y.to_dtype(DType::F32).unwrap(), g(&x), g(&w), g(&b))
            };
            let (y1, gx1, gw1, gb1) = run(true);
            let (y2, gx2, gw2, gb2) = run(false);
            close(&y1, &y2, 2e-5);
            close(&gx1, &gx2, 1e-4);
            close(&gw1, &gw2, 1e-4);
            close(&gb1, &gb2, 1e-4);
        }
    }

    /// `act_linear(h)` keeps only `h` and recomputes the activation in its backward: the same
    /// output and gradients as `linear(activation(h))`, bit for bit.
    #[test]
    fn act_linear_equals_linear_of_activation_bitwise() {
        let dev = Device::Cpu;
        let h = Var::from_tensor(&Tensor::randn(0f32, 1.5, (41, 29), &dev).unwrap()).unwrap();
        let w = Var::from_tensor(&Tensor::randn(0f32, 0.5, (17, 29), &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::randn(0f32, 0.5, 17, &dev).unwrap()).unwrap();
        let mix = Tensor::randn(0f32, 1.0, (41, 17), &dev).unwrap();
        let bits = |t: &Tensor| -> Vec<u32> {
            let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            v.into_iter().map(f32::to_bits).collect()
        };
        for act in [
            Activation::Gelu,
            Activation::GeluTanh,
            Activation::QuickGelu,
            Activation::Relu,
        ] {
            let run = |fused: bool| {
                let y = if fused {
                    act_linear(&h, act, &w, Some(&b)).unwrap()
                } else {
                    linear(&activation(&h, act).unwrap(), &w, Some(&b)).unwrap()
                };
                let grads = (&y * &mix).unwrap().sum_all().unwrap().backward().unwrap();
                let g = |v: &Var| bits(grads.get(v).unwrap());
                (bits(&y), g(&h), g(&w), g(&b))
            };
            assert_eq!(run(true), run(false), "{act:?}");
        }
    }
}
