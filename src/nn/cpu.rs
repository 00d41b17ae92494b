//! The bottom of `nn`: where tessera's CPU kernels apply, reading CPU f32 tensors as slices, and
//! the `gemm` crate as the one matmul for weights that are not packed.
//!
//! Nothing here knows about layers or autograd; every kernel above reads its operands through
//! `with_f32` / `slice` and decides applicability with [`kernels_apply`].
use candle_core::{CpuStorage, DType, Layout, Result, Storage, Tensor};

/// True when tessera's CPU kernels can run on `t` (CPU, f32). The one device/dtype predicate:
/// the differentiable ops fall back to composite candle ops elsewhere, and [`super::Ctx::path`]
/// builds on it.
pub fn kernels_apply(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == DType::F32 && kernels_enabled()
}

static KERNELS_OFF: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether tessera's CPU kernels may run at all: on unless [`set_kernels_enabled`]`(false)` or
/// `TESSERA_KERNELS=off` in the environment. Off, every CPU forward and backward takes the
/// composite candle ops — exactly the path a GPU runs — so that path is checked on machines
/// without one (`tests/device_paths.rs`).
pub fn kernels_enabled() -> bool {
    static ENV_OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let env_off = *ENV_OFF.get_or_init(|| {
        std::env::var("TESSERA_KERNELS")
            .map(|v| {
                matches!(
                    v.to_ascii_lowercase().as_str(),
                    "0" | "off" | "false" | "no"
                )
            })
            .unwrap_or(false)
    });
    !(env_off || KERNELS_OFF.load(std::sync::atomic::Ordering::Relaxed))
}

/// Turns tessera's CPU kernels off (or back on) for the whole process (see [`kernels_enabled`]).
pub fn set_kernels_enabled(on: bool) {
    KERNELS_OFF.store(!on, std::sync::atomic::Ordering::Relaxed);
}

/// Reads a CPU f32 tensor as a contiguous slice for the duration of `f`.
pub(crate) fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let t = if t.is_contiguous() {
        t.clone()
    } else {
        t.contiguous()?
    };
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(CpuStorage::F32(data)) = &*storage else {
        candle_core::bail!(
            "tessera's CPU kernels take CPU f32 tensors, got {:?}",
            t.dtype()
        )
    };
    let (a, b) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("tensor is not contiguous".into()))?;
    f(&data[a..b])
}

/// The f32 elements of a custom op's contiguous input (`op` names it in the error).
pub(crate) fn slice<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [f32]> {
    let data = s.as_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("{op}: input must be contiguous"),
    }
}

/// candle's CPU thread count (what its own ops use; the kernels follow it).
pub(crate) fn threads() -> usize {
    candle_core::utils::get_num_threads().max(1)
}

/// `out[rows, col0..col0+n] (row stride ldo) = a[rows, k] · wᵀ` (+ `out` when `accumulate`),
/// `w` [n, k] in PyTorch layout, on the `gemm` crate's AVX-512 kernels over candle's threads.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul_into(
    a: &[f32],
    rows: usize,
    k: usize,
    w: &[f32],
    n: usize,
    out: &mut [f32],
    ldo: usize,
    col0: usize,
    accumulate: bool,
) -> Result<()> {
    if rows == 0 || n == 0 {
        return Ok(());
    }
    if a.len() < rows * k || out.len() < (rows - 1) * ldo + col0 + n || ldo < col0 + n {
        candle_core::bail!("matmul: buffers too small")
    }
    if w.len() != n * k {
        candle_core::bail!("matmul: weight has {} values, want {n}x{k}", w.len())
    }
    let parallelism = match threads() {
        1 => gemm::Parallelism::None,
        t => gemm::Parallelism::Rayon(t),
    };
    // SAFETY: the bounds of a [rows, k], w [n, k] and the [rows, n] window of out at column col0
    // with row stride ldo are checked above; gemm reads and writes only there.
    unsafe {
        gemm_call(
            (rows, n, k),
            (out.as_mut_ptr().add(col0), ldo, accumulate),
            // rhs[k][n] = W[n][k]: row stride 1, column stride k.
            (a.as_ptr(), k, 1),
            (w.as_ptr(), 1, k),
            1.0,
            parallelism,
        )
    }
    Ok(())
}

/// `out [rows, n] = a [rows, k] · wᵀ` with `w` [n, k].
pub(crate) fn matmul(
    a: &[f32],
    rows: usize,
    k: usize,
    w: &[f32],
    n: usize,
    out: &mut [f32],
) -> Result<()> {
    matmul_into(a, rows, k, w, n, out, n, 0, false)
}

/// `dst[m, n] (row stride ldd) (+)= beta · lhs[m, k] · rhs[k, n]` on the calling thread (the
/// attention kernels parallelise over heads), any row/column strides for lhs and rhs.
///
/// # Safety
/// Every pointer must be valid for the elements its strides and sizes address.
#[allow(clippy::too_many_arguments)]
#[inline]
pub(crate) unsafe fn matmul_strided(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    ldd: usize,
    lhs: *const f32,
    lhs_rs: usize,
    lhs_cs: usize,
    rhs: *const f32,
    rhs_rs: usize,
    rhs_cs: usize,
    beta: f32,
) {
    // SAFETY: forwarded contract.
    unsafe {
        gemm_call(
            (m, n, k),
            (dst, ldd, false),
            (lhs, lhs_rs, lhs_cs),
            (rhs, rhs_rs, rhs_cs),
            beta,
            gemm::Parallelism::None,
        )
    }
}

/// The `gemm` crate's call: `dst (+)= beta · lhs · rhs` with `(pointer, row stride, column
/// stride)` operands and `dst` as `(pointer, row stride, accumulate)`.
///
/// # Safety
/// As [`matmul_strided`].
#[inline]
unsafe fn gemm_call(
    (m, n, k): (usize, usize, usize),
    (dst, ldd, accumulate): (*mut f32, usize, bool),
    (lhs, lhs_rs, lhs_cs): (*const f32, usize, usize),
    (rhs, rhs_rs, rhs_cs): (*const f32, usize, usize),
    beta: f32,
    parallelism: gemm::Parallelism,
) {
    // SAFETY: forwarded contract.
    unsafe {
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
            parallelism,
        )
    }
}
