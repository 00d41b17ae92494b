//! Fused CPU inference kernels: no autograd, no trace.
//!
//! Used by the shared blocks when a forward needs neither gradients nor a trace
//! ([`Ctx::inference`](super::Ctx::inference)) and runs on CPU in f32. Everything around the
//! matmuls is where candle's composite ops lose time (measured: bias adds, erf-GELU, head
//! split/merge copies, the materialised attention tensor); here each linear writes its output
//! once with bias, activation or residual applied while the rows are hot, and attention runs per
//! (image, head) straight out of the packed q/k/v buffer into the merged-head output, with one
//! [N, M] score block per thread instead of a [B, H, N, M] tensor.
//!
//! The math helpers (`exp`, `erf`) are written as plain arithmetic so the compiler vectorises
//! them; the hot loops are compiled a second time with AVX-512 enabled and picked at run time.
use super::block::Activation;
use candle_core::{CpuStorage, DType, Device, Result, Storage, Tensor};
use rayon::prelude::*;

/// Reads a CPU f32 tensor as a contiguous slice for the duration of `f`.
pub(crate) fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let t = if t.is_contiguous() {
        t.clone()
    } else {
        t.contiguous()?
    };
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(CpuStorage::F32(data)) = &*storage else {
        candle_core::bail!("fused kernels take CPU f32 tensors, got {:?}", t.dtype())
    };
    let (a, b) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("tensor is not contiguous".into()))?;
    f(&data[a..b])
}

/// True when the fused kernels can run on `t`.
pub(crate) fn applies(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == DType::F32
}

fn threads() -> usize {
    candle_core::utils::get_num_threads().max(1)
}

fn parallelism() -> gemm::Parallelism {
    match threads() {
        1 => gemm::Parallelism::None,
        n => gemm::Parallelism::Rayon(n),
    }
}

/// A raw pointer that may cross threads: every task writes a disjoint region.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: used only to hand disjoint output regions to rayon tasks (see each use).
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

// ---------------------------------------------------------------------------------------------
// vectorisable math

/// e^x, |rel. error| < 2e-7 on the range that does not overflow (Cephes' polynomial after
/// reducing by ln 2); plain arithmetic so loops over it vectorise.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.3, 88.7);
    // n = round(x / ln 2) by the 1.5·2²³ trick: plain adds, no libm `floorf` outside AVX-512.
    const SHIFT: f32 = 12_582_912.0;
    let n = (x * std::f32::consts::LOG2_E + SHIFT) - SHIFT;
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let r2 = r * r;
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 5e-1;
    let y = p * r2 + r + 1.0;
    // 2^n through the exponent bits (n in [-126, 128] after the clamp).
    y * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// erf(x) as Eigen's rational approximation (|abs. error| ~1e-7 in f32), vectorisable.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let p = -2.726_142_3e-10_f32;
    let p = p * x2 + 2.770_681_4e-8;
    let p = p * x2 - 2.101_024_1e-6;
    let p = p * x2 - 5.692_506_3e-5;
    let p = p * x2 - 7.349_906_3e-4;
    let p = p * x2 - 2.954_600_1e-3;
    let p = p * x2 - 1.609_603_3e-2;
    let q = -1.456_607_1e-5_f32;
    let q = q * x2 - 2.133_740_5e-4;
    let q = q * x2 - 1.682_827e-3;
    let q = q * x2 - 7.373_329_2e-3;
    let q = q * x2 - 1.426_474e-2;
    x * p / q
}

#[inline(always)]
fn act_scalar(act: Activation, v: f32) -> f32 {
    match act {
        Activation::Gelu => 0.5 * v * (1.0 + erf(v * std::f32::consts::FRAC_1_SQRT_2)),
        Activation::GeluTanh => {
            // 0.5 v (1 + tanh(u)) = v * sigmoid(2u), u = √(2/π) (v + 0.044715 v³)
            let u = 0.797_884_6 * (v + 0.044_715 * v * v * v);
            v / (1.0 + exp(-2.0 * u))
        }
        Activation::QuickGelu => v / (1.0 + exp(-1.702 * v)),
        Activation::Relu => v.max(0.0),
    }
}

/// d act(x) / dx.
#[inline(always)]
pub(crate) fn act_grad(act: Activation, x: f32) -> f32 {
    match act {
        Activation::Gelu => {
            // Φ(x) + x φ(x)
            let cdf = 0.5 * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
            let pdf = 0.398_942_3 * exp(-0.5 * x * x);
            cdf + x * pdf
        }
        Activation::GeluTanh => {
            // y = x s(2u), s = sigmoid: y' = s + x s (1 - s) 2u'
            let u = 0.797_884_6 * (x + 0.044_715 * x * x * x);
            let du = 0.797_884_6 * (1.0 + 3.0 * 0.044_715 * x * x);
            let s = 1.0 / (1.0 + exp(-2.0 * u));
            s + x * s * (1.0 - s) * 2.0 * du
        }
        Activation::QuickGelu => {
            let s = 1.0 / (1.0 + exp(-1.702 * x));
            s + x * 1.702 * s * (1.0 - s)
        }
        Activation::Relu => {
            if x > 0.0 {
                1.0
            } else {
                0.0
            }
        }
    }
}

/// `row += bias` then the activation, for every row of `out` ([rows, n]).
#[inline(always)]
fn bias_act_body(out: &mut [f32], bias: Option<&[f32]>, act: Option<Activation>, n: usize) {
    // Plain `for` loops: a closure passed to a library `for_each` can stay outlined, compiled
    // without the caller's AVX-512 (measured: the GELU epilogue ran scalar).
    for row in out.chunks_exact_mut(n) {
        match (bias, act) {
            (Some(b), Some(a)) => {
                for (v, b) in row.iter_mut().zip(b) {
                    *v = act_scalar(a, *v + b);
                }
            }
            (Some(b), None) => {
                for (v, b) in row.iter_mut().zip(b) {
                    *v += b;
                }
            }
            (None, Some(a)) => {
                for v in row.iter_mut() {
                    *v = act_scalar(a, *v);
                }
            }
            (None, None) => {}
        }
    }
}

pub(crate) fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *HAS.get_or_init(|| {
            is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512dq")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("fma")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Defines `fn $name` twice: once for any CPU, once compiled with AVX-512 (its loops then
/// vectorise 16 lanes wide), and dispatches at run time. The body is `#[inline(always)]` so it
/// is compiled inside each variant (a closure passed to a feature-enabled function stays
/// outlined and scalar: measured, libm `floorf` calls in the softmax).
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            if $crate::nn::fused::has_avx512() {
                #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                // SAFETY: the CPU has the features `avx512` is compiled for (checked above).
                return unsafe { avx512($($arg),*) };
            }
            body($($arg),*)
        }
    };
}
pub(crate) use multiversion;

multiversion! {
    fn bias_act_rows(out: &mut [f32], bias: Option<&[f32]>, act: Option<Activation>, n: usize) {
        bias_act_body(out, bias, act, n)
    }
}

multiversion! {
    fn add_chunk(out: &mut [f32], r: &[f32]) {
        for (o, r) in out.iter_mut().zip(r) {
            *o += r;
        }
    }
}

/// Applies bias and activation over [rows, n] on all threads.
pub(crate) fn bias_act(out: &mut [f32], bias: Option<&[f32]>, act: Option<Activation>, n: usize) {
    if bias.is_none() && act.is_none() {
        return;
    }
    let rows = out.len() / n.max(1);
    let per = (32768 / n.max(1)).clamp(1, rows.max(1));
    out.par_chunks_mut(per * n)
        .for_each(|c| bias_act_rows(c, bias, act, n));
}

/// Lanes of the explicit accumulators below: float reductions are not reassociated by the
/// compiler, so a plain `sum += e` loop stays scalar; 16 independent partial sums vectorise.
const LANES: usize = 16;

#[inline(always)]
pub(crate) fn row_max(row: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = row.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..LANES {
            acc[i] = if c[i] > acc[i] { c[i] } else { acc[i] };
        }
    }
    let mut m = f32::NEG_INFINITY;
    for &v in acc.iter().chain(rest) {
        m = if v > m { v } else { m };
    }
    m
}

/// `row = exp(row - max)`, returning the sum.
#[inline(always)]
fn exp_shift_sum(row: &mut [f32], max: f32) -> f32 {
    let mut acc = [0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for i in 0..LANES {
            let e = exp(c[i] - max);
            c[i] = e;
            acc[i] += e;
        }
    }
    let mut sum = 0f32;
    for v in chunks.into_remainder() {
        let e = exp(*v - max);
        *v = e;
        sum += e;
    }
    sum + acc.iter().sum::<f32>()
}

/// Softmax of each row of `s` ([rows, m]) in place, after adding `mask` row-wise if given.
#[inline(always)]
fn softmax_rows_body(s: &mut [f32], mask: Option<&[f32]>, m: usize) {
    for (i, row) in s.chunks_exact_mut(m).enumerate() {
        if let Some(mk) = mask {
            for (v, a) in row.iter_mut().zip(&mk[i * m..(i + 1) * m]) {
                *v += a;
            }
        }
        let max = row_max(row);
        if max == f32::NEG_INFINITY {
            // A fully masked row: zeros (PyTorch gives NaN), as the composite softmax.
            for v in row.iter_mut() {
                *v = 0.0;
            }
            continue;
        }
        let inv = 1.0 / exp_shift_sum(row, max);
        for v in row.iter_mut() {
            *v *= inv;
        }
    }
}

multiversion! {
    /// Softmax of each row of `s` ([rows, m]) in place, after adding `mask` row-wise if given;
    /// a fully masked row becomes zeros.
    pub(crate) fn softmax_rows(s: &mut [f32], mask: Option<&[f32]>, m: usize) {
        softmax_rows_body(s, mask, m)
    }
}

/// Sum with 16 partial sums (vectorises; see [`LANES`]).
#[inline(always)]
pub(crate) fn lane_sum(x: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let rest: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for i in 0..LANES {
            acc[i] += c[i];
        }
    }
    rest + acc.iter().sum::<f32>()
}

/// Σ (x - mean)² with 16 partial sums.
#[inline(always)]
pub(crate) fn lane_sq_dev(x: &[f32], mean: f32) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let rest: f32 = chunks
        .remainder()
        .iter()
        .map(|v| (v - mean) * (v - mean))
        .sum();
    for c in chunks {
        for i in 0..LANES {
            let d = c[i] - mean;
            acc[i] += d * d;
        }
    }
    rest + acc.iter().sum::<f32>()
}

/// Σ a·b with 16 partial sums.
#[inline(always)]
pub(crate) fn lane_dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let ca = a.chunks_exact(LANES);
    let cb = b.chunks_exact(LANES);
    let rest: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    rest + acc.iter().sum::<f32>()
}

// ---------------------------------------------------------------------------------------------
// linear layers

/// A linear layer's weight packed once for tessera's inference GEMMs.
#[derive(Debug)]
pub enum Packed {
    /// fp32 panels for the AVX-512 FMA kernel (`kernels::f32`): no per-call weight packing.
    F32(crate::kernels::f32::PackedF32),
    /// bf16 panels for the AVX512_BF16 kernel (`kernels::bf16`), fp32 accumulation.
    Bf16(crate::kernels::bf16::PackedBf16),
}

impl Packed {
    /// Packs `w` [N, K] for `dtype` (F32 or BF16).
    pub fn new(w: &Tensor, dtype: DType) -> Result<Packed> {
        let (n, k) = w.dims2()?;
        let w = w.to_dtype(DType::F32)?;
        let err = |e: crate::Error| candle_core::Error::Msg(e.to_string());
        with_f32(&w, |w| match dtype {
            DType::F32 => Ok(Packed::F32(
                crate::kernels::f32::PackedF32::pack(w, n, k).map_err(err)?,
            )),
            DType::BF16 => Ok(Packed::Bf16(
                crate::kernels::bf16::PackedBf16::pack(w, n, k).map_err(err)?,
            )),
            other => candle_core::bail!("inference dtype {other:?} is not supported (f32, bf16)"),
        })
    }

    pub fn n(&self) -> usize {
        match self {
            Packed::F32(p) => p.n(),
            Packed::Bf16(p) => p.n(),
        }
    }

    pub fn k(&self) -> usize {
        match self {
            Packed::F32(p) => p.k(),
            Packed::Bf16(p) => p.k(),
        }
    }

    /// `c [m, n] = a [m, k] · Wᵀ + bias`, then `epilogue` on finished blocks of rows.
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        &self,
        a: &[f32],
        m: usize,
        bias: Option<&[f32]>,
        c: &mut [f32],
        epilogue: Option<crate::kernels::bf16::Epilogue>,
    ) -> Result<()> {
        let k = self.k();
        let r = match self {
            Packed::F32(p) => {
                crate::kernels::f32::gemm_f32_packed(a, m, k, p, bias, c, epilogue, threads())
            }
            Packed::Bf16(p) => {
                crate::kernels::bf16::gemm_bf16(a, m, k, p, bias, c, epilogue, threads())
            }
        };
        r.map_err(|e| candle_core::Error::Msg(e.to_string()))
    }
}

/// The weight of a linear layer as the fused kernels use it.
pub(crate) enum Weight<'a> {
    /// [N, K] f32, PyTorch layout (the `gemm` crate, which packs it on every call).
    F32(&'a [f32]),
    /// Packed once ([`Packed`]).
    Packed(&'a Packed),
}

/// `out[m, col0..col0+n] (row stride ldo) = a[m, K] · Wᵀ` (+ `out` when `accumulate`).
/// f32 through `gemm` (its AVX-512 kernels).
#[allow(clippy::too_many_arguments)]
fn matmul_into(
    a: &[f32],
    rows: usize,
    k: usize,
    w: &Weight,
    n: usize,
    out: &mut [f32],
    ldo: usize,
    col0: usize,
    accumulate: bool,
) -> Result<()> {
    if rows == 0 || n == 0 {
        return Ok(());
    }
    if a.len() < rows * k || out.len() < (rows - 1) * ldo + col0 + n {
        candle_core::bail!("fused matmul: buffers too small")
    }
    match w {
        Weight::F32(w) => {
            if w.len() != n * k {
                candle_core::bail!("fused matmul: weight has {} values, want {n}x{k}", w.len())
            }
            // SAFETY: the bounds of a [rows, k], w [n, k] and the [rows, n] window of out at
            // column col0 with row stride ldo are checked above; gemm reads and writes only there.
            unsafe {
                gemm::gemm(
                    rows,
                    n,
                    k,
                    out.as_mut_ptr().add(col0),
                    1,
                    ldo as isize,
                    accumulate,
                    a.as_ptr(),
                    1,
                    k as isize,
                    // rhs[k][n] = W[n][k]: column stride k, row stride 1.
                    w.as_ptr(),
                    k as isize,
                    1,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    parallelism(),
                )
            }
        }
        Weight::Packed(p) => {
            if p.n() != n || p.k() != k {
                candle_core::bail!(
                    "fused matmul: packed weight is {}x{}, want {n}x{k}",
                    p.n(),
                    p.k()
                )
            }
            if accumulate || col0 != 0 || ldo != n {
                candle_core::bail!("fused matmul: the packed kernels write whole [rows, n] outputs")
            }
            p.gemm(a, rows, None, &mut out[..rows * n], None)?;
        }
    }
    Ok(())
}

/// `out [rows, n] = a [rows, k] · wᵀ` with `w` [n, k] (f32, candle's thread setting).
pub(crate) fn matmul_f32(
    a: &[f32],
    rows: usize,
    k: usize,
    w: &[f32],
    n: usize,
    out: &mut [f32],
) -> Result<()> {
    matmul_into(a, rows, k, &Weight::F32(w), n, out, n, 0, false)
}

/// `act(x · Wᵀ + b) (+ residual)` over the last dimension of `x`, written once.
/// `residual` (same shape as the output) is added after the activation; it is only used with
/// `act == None` by the blocks (the residual stream).
pub(crate) fn linear(
    x: &Tensor,
    w: &Weight,
    n: usize,
    bias: Option<&Tensor>,
    act: Option<Activation>,
    residual: Option<&Tensor>,
) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let k = *dims.last().unwrap_or(&0);
    let rows = x.elem_count() / k.max(1);
    let mut out_dims = dims;
    if let Some(l) = out_dims.last_mut() {
        *l = n;
    }
    let bias_v = bias
        .map(|b| b.flatten_all()?.to_vec1::<f32>())
        .transpose()?;
    if let Some(b) = &bias_v {
        if b.len() != n {
            candle_core::bail!("bias has {} values, the layer has {n} outputs", b.len())
        }
    }
    if let Weight::Packed(p) = w {
        // Bias inside the kernel; the activation and the residual add in the epilogue, on each
        // finished block of rows while it is hot in cache (the kernel overwrites its output).
        if let Some(r) = residual {
            if r.elem_count() != rows * n {
                candle_core::bail!("residual shape {:?} does not match the output", r.dims())
            }
        }
        let mut out = vec![0f32; rows * n];
        // The epilogue sees a sub-slice of `out`; its offset locates the matching residual rows.
        let base = out.as_ptr() as usize;
        let mut run = |res: Option<&[f32]>| -> Result<()> {
            let epi = |block: &mut [f32]| {
                bias_act_rows(block, None, act, n);
                if let Some(r) = res {
                    let off = (block.as_ptr() as usize - base) / std::mem::size_of::<f32>();
                    add_chunk(block, &r[off..off + block.len()]);
                }
            };
            let use_epi = act.is_some() || res.is_some();
            with_f32(x, |a| {
                p.gemm(
                    a,
                    rows,
                    bias_v.as_deref(),
                    &mut out,
                    use_epi.then_some(&epi as &(dyn Fn(&mut [f32]) + Sync)),
                )
            })
        };
        match residual {
            Some(r) => with_f32(r, |r| run(Some(r)))?,
            None => run(None)?,
        }
        return Tensor::from_vec(out, out_dims, &Device::Cpu);
    }
    let mut out = match residual {
        Some(r) => {
            if r.elem_count() != rows * n {
                candle_core::bail!("residual shape {:?} does not match the output", r.dims())
            }
            let mut o = r.flatten_all()?.to_vec1::<f32>()?;
            if let Some(b) = &bias_v {
                bias_act(&mut o, Some(b), None, n);
            }
            o
        }
        None => vec![0f32; rows * n],
    };
    with_f32(x, |a| {
        matmul_into(a, rows, k, w, n, &mut out, n, 0, residual.is_some())
    })?;
    if residual.is_none() {
        bias_act(&mut out, bias_v.as_deref(), act, n);
    } else if act.is_some() {
        candle_core::bail!("fused linear: an activation with a residual is not supported")
    }
    Tensor::from_vec(out, out_dims, &Device::Cpu)
}

/// Separate q, k, v projections of `x` [.., K] side by side in one buffer [.., Dq+Dk+Dv]:
/// each matmul writes its own column block, so no concatenation or head-split copies.
pub(crate) fn qkv_separate(x: &Tensor, lins: [&super::Linear; 3]) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let k = *dims.last().unwrap_or(&0);
    let rows = x.elem_count() / k.max(1);
    let total: usize = lins.iter().map(|l| l.out_dim()).sum();
    let mut out = vec![0f32; rows * total];
    let mut bias = Vec::with_capacity(total);
    with_f32(x, |a| {
        let mut col = 0;
        for lin in lins {
            let n = lin.out_dim();
            with_f32(&lin.weight, |w| {
                matmul_into(a, rows, k, &Weight::F32(w), n, &mut out, total, col, false)
            })?;
            match &lin.bias {
                Some(b) => bias.extend(b.flatten_all()?.to_vec1::<f32>()?),
                None => bias.extend(std::iter::repeat_n(0f32, n)),
            }
            col += n;
        }
        Ok(())
    })?;
    if bias.len() != total {
        candle_core::bail!("q/k/v biases do not match their weights")
    }
    bias_act(&mut out, Some(&bias), None, total);
    let mut out_dims = dims;
    if let Some(l) = out_dims.last_mut() {
        *l = total;
    }
    Tensor::from_vec(out, out_dims, &Device::Cpu)
}

// ---------------------------------------------------------------------------------------------
// attention

/// `dst[m, n] (row stride ldd) (+)= beta · lhs[m, k] · rhs[k, n]`, single-threaded (the
/// callers parallelise over heads), any row/column strides for lhs and rhs.
///
/// # Safety
/// Every pointer must be valid for the elements its strides and sizes address.
#[allow(clippy::too_many_arguments)]
#[inline]
unsafe fn gemm_st(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    ldd: usize,
    accumulate: bool,
    lhs: *const f32,
    lhs_rs: usize,
    lhs_cs: usize,
    rhs: *const f32,
    rhs_rs: usize,
    rhs_cs: usize,
    beta: f32,
) {
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        ldd as isize,
        accumulate,
        lhs,
        lhs_cs as isize,
        lhs_rs as isize,
        rhs,
        rhs_cs as isize,
        rhs_rs as isize,
        1.0,
        beta,
        false,
        false,
        false,
        gemm::Parallelism::None,
    )
}

/// Counter-based dropout, shared by `Ctx::dropout` and attention: element `i` of a tensor is
/// dropped when (half of) the SplitMix64 finaliser of `seed + (i/2 + 1)·γ` is below
/// `threshold`; kept elements are scaled by `keep`. Nothing is stored: a backward pass
/// regenerates the same decisions from the seed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dropout {
    seed: u64,
    threshold: u64,
    keep: f32,
}

multiversion! {
    /// `v[j] = v[j] · mask(offset + j)`.
    fn dropout_inplace(v: &mut [f32], offset: usize, seed: u64, threshold: u64, keep: f32) {
        for (j, x) in v.iter_mut().enumerate() {
            let i = offset + j;
            let mut z =
                seed.wrapping_add(((i as u64 >> 1) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let half = if i & 1 == 0 { z & 0xFFFF_FFFF } else { z >> 32 };
            *x = if half < threshold { 0.0 } else { *x * keep };
        }
    }
}

impl Dropout {
    /// Drop probability `p` in [0, 1).
    pub(crate) fn new(p: f64, seed: u64) -> Self {
        Dropout {
            seed,
            threshold: (p * 4294967296.0) as u64,
            keep: (1.0 / (1.0 - p)) as f32,
        }
    }

    /// Applies the mask of elements `offset..offset + v.len()` in place.
    pub(crate) fn apply_at(&self, v: &mut [f32], offset: usize) {
        dropout_inplace(v, offset, self.seed, self.threshold, self.keep)
    }

    /// `x` with the mask applied, on all threads.
    pub(crate) fn apply(&self, x: &[f32]) -> Vec<f32> {
        let mut out = x.to_vec();
        const CHUNK: usize = 1 << 15;
        out.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(c, o)| self.apply_at(o, c * CHUNK));
        out
    }

    /// Attention probabilities of (image, head) `task`, an [n, n] block: element offsets as if
    /// the [B·H, n, n] tensor existed.
    fn apply_block(&self, task: usize, s: &mut [f32]) {
        self.apply_at(s, task * s.len())
    }
}

struct AttnShape {
    b: usize,
    n: usize,
    heads: usize,
    dh: usize,
}

impl AttnShape {
    fn check(&self, qkv: &[f32], mask: Option<(&[f32], usize)>) -> Result<()> {
        let (b, n) = (self.b, self.n);
        if qkv.len() != b * n * 3 * self.heads * self.dh {
            candle_core::bail!("attention: qkv buffer has {} values", qkv.len())
        }
        if let Some((m, bm)) = mask {
            if (bm != 1 && bm != b) || m.len() != bm * n * n {
                candle_core::bail!("attention: mask does not match [{b} or 1, {n}, {n}]")
            }
        }
        Ok(())
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
    gemm_st(
        n,
        n,
        dh,
        s.as_mut_ptr(),
        n,
        false,
        q,
        ld,
        1,
        k,
        1,
        ld,
        scale,
    );
    softmax_rows(s, mask, n);
}

/// Multi-head attention core from a packed q|k|v buffer.
///
/// `qkv` is [B*N, 3D] (q in columns [0, D), k in [D, 2D), v in [2D, 3D); head h in columns
/// h*dh.. of each). `mask`, if given, is additive [Bm, N, N] with Bm = 1 or B (shared over
/// heads). Returns the merged-head output [B*N, D] (heads side by side, as the out projection
/// expects), without materialising [B, H, N, N]: one [N, N] block per thread.
pub(crate) fn attention(
    qkv: &[f32],
    b: usize,
    n: usize,
    heads: usize,
    dh: usize,
    mask: Option<(&[f32], usize)>,
) -> Result<Vec<f32>> {
    attention_dropout(qkv, AttnShape { b, n, heads, dh }, mask, None)
}

fn attention_dropout(
    qkv: &[f32],
    sh: AttnShape,
    mask: Option<(&[f32], usize)>,
    drop: Option<Dropout>,
) -> Result<Vec<f32>> {
    sh.check(qkv, mask)?;
    let AttnShape { b, n, heads, dh } = sh;
    let d = heads * dh;
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
                gemm_st(
                    n,
                    dh,
                    n,
                    o.0.add(bi * n * d + h * dh),
                    d,
                    false,
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
    drop: Option<Dropout>,
) -> Result<Vec<f32>> {
    sh.check(qkv, mask)?;
    let AttnShape { b, n, heads, dh } = sh;
    let d = heads * dh;
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
                gemm_st(
                    n,
                    dh,
                    n,
                    dq.0.add(base + 2 * d),
                    ld,
                    false,
                    pd.as_ptr(),
                    1,
                    n,
                    go,
                    d,
                    1,
                    1.0,
                );
                // dPd = dO · vᵀ: rhs[c][j] = v[j][c]
                gemm_st(n, n, dh, dp.as_mut_ptr(), n, false, go, d, 1, v, 1, ld, 1.0);
                if let Some(dr) = drop {
                    // d(p ∘ m/(1-p)) / dp = m/(1-p): the same mask on the gradient
                    dr.apply_block(task, dp);
                }
                softmax_bwd_inplace(dp, p, n);
                // dQ = scale · dS · k;  dK = scale · dSᵀ · q
                gemm_st(
                    n,
                    dh,
                    n,
                    dq.0.add(base),
                    ld,
                    false,
                    dp.as_ptr(),
                    n,
                    1,
                    k,
                    ld,
                    1,
                    scale,
                );
                gemm_st(
                    n,
                    dh,
                    n,
                    dq.0.add(base + d),
                    ld,
                    false,
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

/// Trainable fused self-attention core: `qkv` [B, N, 3D] -> [B, N, D], with an optional additive
/// mask and attention dropout; backward recomputes the probabilities.
#[derive(Clone)]
pub(crate) struct AttentionOp {
    pub heads: usize,
    pub dh: usize,
    /// Additive mask [Bm, N, N], Bm = 1 or B.
    pub mask: Option<(Tensor, usize)>,
    pub drop: Option<Dropout>,
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

fn cpu_slice<'a>(s: &'a CpuStorage, l: &candle_core::Layout) -> Result<&'a [f32]> {
    let data = s.as_slice::<f32>()?;
    let (a, b) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("attention: input must be contiguous".into()))?;
    Ok(&data[a..b])
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
        let qkv = cpu_slice(s, l)?;
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
        let qkv = cpu_slice(s1, l1)?;
        let g = cpu_slice(s2, l2)?;
        let sh = self.0.shape(l1)?;
        let d = self
            .0
            .with_mask(|m| attention_bwd(qkv, g, sh, m, self.0.drop))?;
        Ok((CpuStorage::F32(d), l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_and_erf_are_accurate() {
        let mut worst_exp = 0f64;
        let mut worst_erf = 0f64;
        for i in -20000..20000 {
            let x = i as f32 * 0.004; // [-80, 80]
            let e = exp(x) as f64;
            let r = (x as f64).exp();
            worst_exp = worst_exp.max(((e - r) / r).abs());
            let xe = i as f32 * 0.00025; // [-5, 5]
            let libm_erf = erf_f64(xe as f64);
            worst_erf = worst_erf.max((erf(xe) as f64 - libm_erf).abs());
        }
        assert!(worst_exp < 3e-7, "exp rel. error {worst_exp}");
        assert!(worst_erf < 5e-7, "erf abs. error {worst_erf}");
        assert_eq!(exp(-1000.0), exp(-87.3));
        assert!(exp(-1000.0) < 1e-37);
    }

    /// erf in f64 by its Taylor series (|x| <= 5 converges with enough terms).
    fn erf_f64(x: f64) -> f64 {
        if x.abs() > 4.5 {
            return x.signum();
        }
        let mut sum = 0f64;
        let mut term = x;
        let mut n = 0f64;
        while term.abs() > 1e-18 || n < 10.0 {
            sum += term / (2.0 * n + 1.0);
            n += 1.0;
            term *= -x * x / n;
            if n > 400.0 {
                break;
            }
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }
}
