//! int8 GEMM for linear layers with dynamic quantisation: `C[M, N] ≈ A[M, K] · Wᵀ + bias`, as
//! ONNX Runtime's `quantize_dynamic` model computes it, on AVX512_VNNI's `vpdpbusd`.
//!
//! - The weight is quantised once ([`PackedI8::pack`]), symmetrically per output channel:
//!   `w[n, k] ≈ s_w[n] · q_w[n, k]`, `q_w ∈ [-127, 127]`, `s_w[n] = max_k |w[n, k]| / 127`.
//! - A is quantised on every call, asymmetrically per row (ONNX Runtime: per tensor):
//!   `a[m, k] ≈ s_a[m] · (q_a[m, k] − z[m])`, `q_a ∈ [0, 255]`, over the row's range widened to
//!   hold 0 (so 0 and the ReLU/padding zeros are exact).
//! - `C[m, n] = s_a[m] · s_w[n] · (Σ_k q_a·q_w − z[m] · Σ_k q_w[n, k]) + bias[n]`: the sum is
//!   exact in i32 (|Σ| ≤ 255 · 127 · K < 2³¹ for K < 66,000), the column sums are packed with
//!   the weight.
//!
//! `vpdpbusd` multiplies four u8 of A by four s8 of W per 32-bit lane and adds the four
//! products into an i32 accumulator, without the saturation of `vpmaddubsw`. The weight panels
//! are [`NR`] = 32 columns × `ceil(K/4)` groups of four k (`[K/4][32]` u32, one column's four
//! bytes per lane); a microkernel step loads two zmm of weights and, per row of A, broadcasts
//! four bytes into two `vpdpbusd`. The tile is 14 × 32 (28 i32 accumulators) over all of K, so
//! no partial sums are stored: quantised rows are read in place (a 14-row strip of K = 3072 is
//! 42 KiB, from L2) and each tile is converted to f32, scaled and biased once.
//!
//! Numerics. The integer sums are exact; the conversion (`(acc − z·colsum)` to f32, times
//! `s_a · s_w`, plus the bias in one fused multiply-add) is the same on every path, so the
//! AVX512_VNNI kernel and the portable fallback give bit-identical results for any thread
//! count. A row holding NaN or ±inf gives a NaN output row (its scale is NaN), as fp32 would.
use super::{split_parts, Epilogue, SendPtr, MR, NR};
use crate::error::{Error, Result};
use rayon::prelude::*;

/// Rows of A per block: each block streams every weight panel once (measured on Zen 4, 2
/// threads, ViT-B/16 b8 shapes: 448 rows 750–810 GOP/s, 112 rows 735–805).
const MC: usize = 32 * MR;

/// A linear layer's weight `W [N, K]` (PyTorch `nn.Linear` layout: out × in) quantised to
/// int8 per output channel and packed into panels of [`NR`] columns, `[ceil(K/4)][NR]` u32 of
/// four s8 each (k = 4g .. 4g + 3, lowest byte first). Columns past N and the k past K are
/// zero.
#[derive(Clone, Debug)]
pub struct PackedI8 {
    n: usize,
    k: usize,
    /// Groups of four k: `ceil(k / 4)`.
    k4: usize,
    data: Vec<u32>,
    /// `s_w`, padded with zeros to whole panels.
    scale: Vec<f32>,
    /// `Σ_k q_w[n, k]`, padded with zeros to whole panels.
    colsum: Vec<i32>,
}

/// The symmetric int8 quantisation of one weight row: `(s_w, q_w)`. An all-zero row has scale
/// 0; a row holding NaN or ±inf has scale NaN (its outputs are NaN).
fn quantize_weight_row(row: &[f32]) -> (f32, Vec<i8>) {
    if row.iter().any(|v| !v.is_finite()) {
        return (f32::NAN, vec![0; row.len()]);
    }
    let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
    if max == 0.0 {
        return (0.0, vec![0; row.len()]);
    }
    let s = max / 127.0;
    let q = row
        .iter()
        .map(|&v| (v / s).round_ties_even().clamp(-127.0, 127.0) as i8)
        .collect();
    (s, q)
}

impl PackedI8 {
    /// Quantises and packs `w` (`n × k`, row-major). Errors if `w.len() != n * k`.
    pub fn pack(w: &[f32], n: usize, k: usize) -> Result<PackedI8> {
        let k4 = k.div_ceil(4);
        let len = super::panels_len("PackedI8::pack", w, n, k, k4)?;
        let mut data = vec![0u32; len];
        let padded = n.div_ceil(NR) * NR;
        let (mut scale, mut colsum) = (vec![0f32; padded], vec![0i32; padded]);
        for col in 0..n {
            let (s, q) = quantize_weight_row(&w[col * k..(col + 1) * k]);
            scale[col] = s;
            colsum[col] = q.iter().map(|&v| v as i32).sum();
            let panel = &mut data[(col / NR) * k4 * NR..];
            for (g, quad) in q.chunks(4).enumerate() {
                let mut bytes = [0u8; 4];
                for (b, &v) in bytes.iter_mut().zip(quad) {
                    *b = v as u8;
                }
                panel[g * NR + col % NR] = u32::from_le_bytes(bytes);
            }
        }
        Ok(PackedI8 {
            n,
            k,
            k4,
            data,
            scale,
            colsum,
        })
    }

    /// Output features (rows of W).
    pub fn n(&self) -> usize {
        self.n
    }

    /// Input features (columns of W).
    pub fn k(&self) -> usize {
        self.k
    }
}

/// Whether this CPU runs the AVX512_VNNI path (`avx512f`, `avx512bw`, `avx512vnni`).
pub fn has_avx512_vnni() -> bool {
    super::x86_features!("avx512f", "avx512bw", "avx512vnni")
}

/// Which microkernel runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Isa {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx512Vnni,
}

fn best_isa() -> Isa {
    #[cfg(target_arch = "x86_64")]
    if has_avx512_vnni() {
        return Isa::Avx512Vnni;
    }
    Isa::Portable
}

/// A, quantised: `m` rows of `lda` bytes (`4 · ceil(K/4)`; the bytes past K are zero) and each
/// row's scale and zero point.
pub(crate) struct QuantRows {
    pub data: Vec<u8>,
    pub lda: usize,
    pub scale: Vec<f32>,
    pub zero: Vec<i32>,
}

/// `(min(0, row), max(0, row))`, or `None` when the row holds NaN or ±inf.
fn row_range(row: &[f32]) -> Option<(f32, f32)> {
    #[cfg(target_arch = "x86_64")]
    if super::x86_features!("avx512f") {
        // SAFETY: the CPU has avx512f (checked).
        return unsafe { avx512::row_range(row) };
    }
    row_range_portable(row)
}

fn row_range_portable(row: &[f32]) -> Option<(f32, f32)> {
    let (mut lo, mut hi) = (0f32, 0f32);
    for &v in row {
        if !v.is_finite() {
            return None;
        }
        lo = lo.min(v);
        hi = hi.max(v);
    }
    Some((lo, hi))
}

/// `q[i] = clamp(round(row[i] · inv + z), 0, 255)`, rounding to nearest even.
fn quantize_into(row: &[f32], q: &mut [u8], inv: f32, z: f32) {
    #[cfg(target_arch = "x86_64")]
    if super::x86_features!("avx512f") {
        // SAFETY: the CPU has avx512f (checked).
        return unsafe { avx512::quantize_into(row, q, inv, z) };
    }
    quantize_into_portable(row, q, inv, z)
}

fn quantize_into_portable(row: &[f32], q: &mut [u8], inv: f32, z: f32) {
    // Round to nearest even by adding and subtracting 1.5 · 2²³ (exact on [0, 255]).
    const MAGIC: f32 = 12_582_912.0;
    for (o, &v) in q.iter_mut().zip(row) {
        *o = ((v * inv + z).clamp(0.0, 255.0) + MAGIC - MAGIC) as u8;
    }
}

/// One row's asymmetric u8 quantisation into `q` (`row.len()` bytes; the rest stays zero):
/// returns `(s_a, z)`. The AVX-512 and portable paths give the same bytes.
fn quantize_row(row: &[f32], q: &mut [u8]) -> (f32, i32) {
    let Some((lo, hi)) = row_range(row) else {
        return (f32::NAN, 0);
    };
    let s = (hi - lo) / 255.0;
    if !(s > 0.0 && s.is_finite()) {
        // An all-zero row (or a range past f32): zeros, exact for the former.
        return (if s == 0.0 { 1.0 } else { f32::NAN }, 0);
    }
    let inv = 1.0 / s;
    let z = (-lo * inv).round_ties_even().clamp(0.0, 255.0);
    quantize_into(row, q, inv, z);
    (s, z as i32)
}

/// Quantises `scale.len()` rows of `a` (row stride `lda_a`, width `k`) into `q` (row stride
/// `lda`), their scales and zero points.
fn quantize_block(
    a: &[f32],
    lda_a: usize,
    k: usize,
    q: &mut [u8],
    lda: usize,
    scale: &mut [f32],
    zero: &mut [i32],
) {
    for (i, (s, z)) in scale.iter_mut().zip(zero.iter_mut()).enumerate() {
        (*s, *z) = quantize_row(&a[i * lda_a..i * lda_a + k], &mut q[i * lda..i * lda + k]);
    }
}

/// Quantises A (`m` rows of stride `lda ≥ k`), in parallel over blocks of rows.
pub(crate) fn quantize_rows(
    a: &[f32],
    m: usize,
    lda: usize,
    k: usize,
    threads: usize,
) -> QuantRows {
    let lq = k.div_ceil(4) * 4;
    let mut q = QuantRows {
        data: vec![0u8; m * lq],
        lda: lq,
        scale: vec![0f32; m],
        zero: vec![0i32; m],
    };
    // Blocks of rows: ≥ 64 KiB of A each, so small calls stay on this thread.
    let rows = (16384 / k.max(1))
        .max(1)
        .max(m.div_ceil(threads.max(1) * 4));
    if m <= rows || threads <= 1 {
        quantize_block(a, lda, k, &mut q.data, lq, &mut q.scale, &mut q.zero);
    } else {
        q.data
            .par_chunks_mut(rows * lq)
            .zip(q.scale.par_chunks_mut(rows))
            .zip(q.zero.par_chunks_mut(rows))
            .enumerate()
            .for_each(|(b, ((d, s), z))| {
                quantize_block(&a[b * rows * lda..], lda, k, d, lq, s, z);
            });
    }
    q
}

/// `C[M, N] ≈ A[M, K] · Wᵀ + bias[N]` (bias optional) with A quantised per row and W per
/// channel (see the module docs). `a` is f32 row-major with row stride `lda ≥ K`; `c` is f32
/// row-major contiguous `[M, N]` and is overwritten.
///
/// `epilogue`, if given, is applied to each finished block of C rows (after the bias), e.g.
/// GELU in place; it may be called several times, concurrently, on disjoint blocks.
/// `threads` (clamped to ≥ 1) splits the work over rayon's global pool as the other GEMMs do.
///
/// Errors on inconsistent shapes (`lda < K`, `a`, `c` or `bias` too short or long).
#[allow(clippy::too_many_arguments)]
pub fn gemm_i8(
    a: &[f32],
    m: usize,
    lda: usize,
    w: &PackedI8,
    bias: Option<&[f32]>,
    c: &mut [f32],
    epilogue: Option<Epilogue>,
    threads: usize,
) -> Result<()> {
    gemm_isa(best_isa(), a, m, lda, w, bias, c, epilogue, threads)
}

#[allow(clippy::too_many_arguments)]
fn gemm_isa(
    isa: Isa,
    a: &[f32],
    m: usize,
    lda: usize,
    w: &PackedI8,
    bias: Option<&[f32]>,
    c: &mut [f32],
    epilogue: Option<Epilogue>,
    threads: usize,
) -> Result<()> {
    let (n, k) = (w.n, w.k);
    super::check_shapes("gemm_i8", a, m, lda, n, k, bias, c)?;
    if k >= 66_000 {
        return Err(Error::Shape(format!(
            "gemm_i8: K = {k} could overflow the i32 sums (K < 66,000)"
        )));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    let q = quantize_rows(a, m, lda, k, threads);
    let c_ptr = SendPtr(c.as_mut_ptr());
    split_parts(m, n, c, threads, epilogue, |r0, r1, p0, p1, epi| {
        let cp = c_ptr;
        let mut ic = r0;
        while ic < r1 {
            let mc = MC.min(r1 - ic);
            for p in p0..p1 {
                let nr = NR.min(n - p * NR);
                let mut s = 0;
                while s < mc {
                    let mr = MR.min(mc - s);
                    let r = ic + s;
                    let t = Tile {
                        groups: w.k4,
                        a: q.data[r * q.lda..].as_ptr(),
                        lda: q.lda,
                        w: w.data[p * w.k4 * NR..].as_ptr(),
                        sa: &q.scale[r..r + mr],
                        za: &q.zero[r..r + mr],
                        sw: &w.scale[p * NR..p * NR + NR],
                        colsum: &w.colsum[p * NR..p * NR + NR],
                        bias: bias.map(|b| &b[p * NR..p * NR + nr]),
                        // SAFETY: row r, column p·NR of C (m × n), inside it (r < m, p < panels).
                        c: unsafe { cp.0.add(r * n + p * NR) },
                        ldc: n,
                        nr,
                    };
                    // SAFETY: the tile's rows r .. r + mr of q (each `lda` bytes, `4 · groups`
                    // of them) and of C are this part's; its panel holds `groups · NR` u32;
                    // `isa` was detected.
                    unsafe { microtile(isa, &t, mr) };
                    s += mr;
                }
            }
            if let Some(e) = epi {
                // SAFETY: rows ic .. ic + mc are this part's (split_parts), finished, and no
                // other pointer into them is used while the slice lives.
                e(unsafe { std::slice::from_raw_parts_mut(cp.0.add(ic * n), mc * n) });
            }
            ic += mc;
        }
    });
    Ok(())
}

/// One microkernel call: C[mr, nr] = the tile's rows of quantised A times the panel, converted.
struct Tile<'a> {
    /// Groups of four k.
    groups: usize,
    /// Quantised A at the tile's first row; row stride `lda` bytes.
    a: *const u8,
    lda: usize,
    /// The panel: `[groups][NR]` u32.
    w: *const u32,
    /// Row scales and zero points (`mr` each).
    sa: &'a [f32],
    za: &'a [i32],
    /// Column scales and sums (`NR` each; zero past N).
    sw: &'a [f32],
    colsum: &'a [i32],
    /// `nr` bias values.
    bias: Option<&'a [f32]>,
    /// C at the tile's top-left element; row stride `ldc`; `nr` valid columns.
    c: *mut f32,
    ldc: usize,
    nr: usize,
}

/// # Safety
/// `t`'s pointers address what [`Tile`] documents for `mr` (1..=MR) rows; `isa` is supported.
unsafe fn microtile(isa: Isa, t: &Tile, mr: usize) {
    match isa {
        // SAFETY: forwarded contract.
        Isa::Portable => unsafe { portable(t, mr) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: forwarded contract; the isa was detected.
        Isa::Avx512Vnni => unsafe { super::dispatch_rows!(avx512::kernel, mr, t) },
    }
}

/// The conversion every path shares: `(acc − z · colsum) · (s_a · s_w) + bias`.
#[inline(always)]
fn convert(acc: i32, z: i32, colsum: i32, sa: f32, sw: f32, bias: f32) -> f32 {
    ((acc - z * colsum) as f32).mul_add(sa * sw, bias)
}

/// The portable microkernel: the same integer sums and conversion.
///
/// # Safety
/// As [`microtile`].
unsafe fn portable(t: &Tile, mr: usize) {
    for i in 0..mr {
        let mut acc = [0i32; NR];
        for g in 0..t.groups {
            // SAFETY: row i < mr has 4 · groups bytes; the panel groups · NR u32.
            let (a4, wg) = unsafe {
                (
                    std::slice::from_raw_parts(t.a.add(i * t.lda + 4 * g), 4),
                    std::slice::from_raw_parts(t.w.add(g * NR), NR),
                )
            };
            for (v, &wq) in acc.iter_mut().zip(wg) {
                let wb = wq.to_le_bytes();
                for (&x, &y) in a4.iter().zip(&wb) {
                    *v += x as i32 * (y as i8) as i32;
                }
            }
        }
        for (j, &v) in acc.iter().enumerate().take(t.nr) {
            let b = t.bias.map_or(0.0, |b| b[j]);
            let out = convert(v, t.za[i], t.colsum[j], t.sa[i], t.sw[j], b);
            // SAFETY: (i, j) is inside C's tile.
            unsafe { *t.c.add(i * t.ldc + j) = out };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::super::{mask16, NR};
    use super::Tile;
    use std::arch::x86_64::*;

    /// [`super::row_range`] on 16 lanes (`v − v` is NaN exactly for NaN and ±inf).
    ///
    /// # Safety
    /// The CPU has avx512f.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn row_range(row: &[f32]) -> Option<(f32, f32)> {
        let (mut lo, mut hi, mut bad) = (
            _mm512_setzero_ps(),
            _mm512_setzero_ps(),
            _mm512_setzero_ps(),
        );
        let mut i = 0;
        while i < row.len() {
            let m = mask16(row.len() - i);
            // SAFETY: the masked load reads only the row's remaining elements.
            let v = unsafe { _mm512_maskz_loadu_ps(m, row.as_ptr().add(i)) };
            lo = _mm512_min_ps(lo, v);
            hi = _mm512_max_ps(hi, v);
            bad = _mm512_add_ps(bad, _mm512_sub_ps(v, v));
            i += 16;
        }
        if _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(bad, bad) != 0 {
            return None;
        }
        Some((_mm512_reduce_min_ps(lo), _mm512_reduce_max_ps(hi)))
    }

    /// [`super::quantize_into`] on 16 lanes (`vcvtps2dq` rounds to nearest even).
    ///
    /// # Safety
    /// The CPU has avx512f.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn quantize_into(row: &[f32], q: &mut [u8], inv: f32, z: f32) {
        let (vi, vz) = (_mm512_set1_ps(inv), _mm512_set1_ps(z));
        let (zero, top) = (_mm512_setzero_ps(), _mm512_set1_ps(255.0));
        let n = row.len().min(q.len());
        let mut i = 0;
        while i < n {
            let m = mask16(n - i);
            // SAFETY: masked loads and stores touch only elements i .. n of both slices.
            unsafe {
                let v = _mm512_maskz_loadu_ps(m, row.as_ptr().add(i));
                let v = _mm512_add_ps(_mm512_mul_ps(v, vi), vz);
                let v = _mm512_min_ps(_mm512_max_ps(v, zero), top);
                let r = _mm512_cvtps_epi32(v);
                _mm512_mask_cvtepi32_storeu_epi8(q.as_mut_ptr().add(i) as *mut i8, m, r);
            }
            i += 16;
        }
    }

    /// An R × 32 tile in 2·R i32 accumulators; per group of four k, two weight loads and R
    /// four-byte broadcasts of A feed 2·R `vpdpbusd`. Then each row is converted as
    /// [`super::convert`] does, lane by lane, and stored (masked at `nr`).
    ///
    /// # Safety
    /// The CPU has avx512f, avx512bw and avx512vnni; `t` is valid for `R` rows.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn kernel<const R: usize>(t: &Tile) {
        let mut acc0 = [_mm512_setzero_si512(); R];
        let mut acc1 = [_mm512_setzero_si512(); R];
        for g in 0..t.groups {
            // SAFETY: group g < groups of the panel (NR u32) and of each row (4 bytes at 4g).
            unsafe {
                let wg = t.w.add(g * NR);
                let w0 = _mm512_loadu_si512(wg as *const __m512i);
                let w1 = _mm512_loadu_si512(wg.add(16) as *const __m512i);
                for i in 0..R {
                    let a4 = (t.a.add(i * t.lda + 4 * g) as *const i32).read_unaligned();
                    let b = _mm512_set1_epi32(a4);
                    acc0[i] = _mm512_dpbusd_epi32(acc0[i], b, w0);
                    acc1[i] = _mm512_dpbusd_epi32(acc1[i], b, w1);
                }
            }
        }
        let (m0, m1) = (mask16(t.nr), mask16(t.nr.saturating_sub(16)));
        // SAFETY: sw, colsum have NR values; the bias nr (masked loads).
        let (sw0, sw1, cs0, cs1, b0, b1) = unsafe {
            let (b0, b1) = match t.bias {
                Some(b) => (
                    _mm512_maskz_loadu_ps(m0, b.as_ptr()),
                    _mm512_maskz_loadu_ps(m1, b.as_ptr().wrapping_add(16)),
                ),
                None => (_mm512_setzero_ps(), _mm512_setzero_ps()),
            };
            (
                _mm512_loadu_ps(t.sw.as_ptr()),
                _mm512_loadu_ps(t.sw.as_ptr().add(16)),
                _mm512_loadu_si512(t.colsum.as_ptr() as *const __m512i),
                _mm512_loadu_si512(t.colsum.as_ptr().add(16) as *const __m512i),
                b0,
                b1,
            )
        };
        for i in 0..R {
            let z = _mm512_set1_epi32(t.za[i]);
            let sa = _mm512_set1_ps(t.sa[i]);
            let v0 = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc0[i], _mm512_mullo_epi32(z, cs0)));
            let v1 = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc1[i], _mm512_mullo_epi32(z, cs1)));
            let o0 = _mm512_fmadd_ps(v0, _mm512_mul_ps(sa, sw0), b0);
            let o1 = _mm512_fmadd_ps(v1, _mm512_mul_ps(sa, sw1), b1);
            let cr = t.c.wrapping_add(i * t.ldc);
            // SAFETY: masked stores touch only the tile's nr columns of row i < R.
            unsafe {
                _mm512_mask_storeu_ps(cr, m0, o0);
                _mm512_mask_storeu_ps(cr.wrapping_add(16), m1, o1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{epilogue, rvec};
    use super::*;

    fn isas() -> Vec<Isa> {
        let mut v = vec![Isa::Portable];
        #[cfg(target_arch = "x86_64")]
        if has_avx512_vnni() {
            v.push(Isa::Avx512Vnni);
        }
        v
    }

    /// The exact reference: the quantised operands' product in f64, then scaled.
    fn reference(a: &[f32], m: usize, lda: usize, w: &PackedI8, bias: Option<&[f32]>) -> Vec<f64> {
        let (n, k) = (w.n, w.k);
        let q = quantize_rows(a, m, lda, k, 1);
        let mut c = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0f64;
                for p in 0..k {
                    let qa = q.data[i * q.lda + p] as i64 - q.zero[i] as i64;
                    let quad = w.data[(j / NR) * w.k4 * NR + (p / 4) * NR + j % NR];
                    s += (qa * (quad.to_le_bytes()[p % 4] as i8) as i64) as f64;
                }
                let scale = q.scale[i] as f64 * w.scale[j] as f64;
                c[i * n + j] = s * scale + bias.map_or(0.0, |b| b[j] as f64);
            }
        }
        c
    }

    fn check(m: usize, k: usize, n: usize, lda: usize, with_bias: bool, with_epi: bool) {
        let a = rvec(m * lda, 11 + (m * 31 + k * 7 + n) as u64);
        let w = rvec(n * k, 12 + (m + k * 13 + n * 3) as u64);
        let bias = rvec(n, 13);
        let bias = with_bias.then_some(&bias[..]);
        let packed = PackedI8::pack(&w, n, k).unwrap();
        let r = reference(&a, m, lda, &packed, bias);
        let epi: Epilogue = &epilogue;
        let mut first: Option<Vec<f32>> = None;
        for isa in isas() {
            for threads in [1, 2, 3] {
                let mut c = vec![f32::NAN; m * n];
                gemm_isa(
                    isa,
                    &a,
                    m,
                    lda,
                    &packed,
                    bias,
                    &mut c,
                    with_epi.then_some(epi),
                    threads,
                )
                .unwrap();
                let what = format!("{isa:?} t{threads} m{m} k{k} n{n} lda{lda}");
                for (idx, (&g, &want)) in c.iter().zip(&r).enumerate() {
                    let want = if with_epi { 2.0 * want + 1.0 } else { want };
                    // Exact integer sums, then one f32 conversion, scale product and fma.
                    let tol = 1e-6 * (1.0 + want.abs());
                    assert!(
                        (g as f64 - want).abs() <= tol,
                        "{what} at {idx}: {g} vs {want}"
                    );
                }
                // Every path and thread count gives the same bits.
                match &first {
                    None => first = Some(c),
                    Some(f) => assert!(
                        f.iter().zip(&c).all(|(x, y)| x.to_bits() == y.to_bits()),
                        "{what}: differs from the first path"
                    ),
                }
            }
        }
    }

    #[test]
    fn matches_exact_reference_edge_shapes() {
        for m in [1, 3, 15, 29] {
            for k in [1, 3, 4, 7, 64, 130] {
                for n in [1, 15, 16, 17, 33] {
                    check(m, k, n, k + 2 * (m % 2), m % 2 == 1, n % 2 == 1);
                }
            }
        }
        // Row split with full row blocks and a partial one, and the K = 3072 of an MLP's fc2.
        check(2 * MC + 5, 768, 64, 768, true, true);
        check(20, 3072, 40, 3072, true, false);
    }

    /// Quantisation error against the fp32 product: what per-row/per-channel int8 costs.
    #[test]
    fn close_to_fp32_product() {
        let (m, k, n) = (16, 768, 48);
        let a = rvec(m * k, 5);
        let w = rvec(n * k, 6);
        let packed = PackedI8::pack(&w, n, k).unwrap();
        let mut c = vec![0f32; m * n];
        gemm_i8(&a, m, k, &packed, None, &mut c, None, 2).unwrap();
        let (mut err2, mut val2) = (0f64, 0f64);
        for i in 0..m {
            for j in 0..n {
                let exact: f64 = (0..k)
                    .map(|p| a[i * k + p] as f64 * w[j * k + p] as f64)
                    .sum();
                err2 += (c[i * n + j] as f64 - exact).powi(2);
                val2 += exact * exact;
            }
        }
        // Uniform inputs in [-1, 1): 8-bit steps of 2/255 (A) and 1/127 (W) leave ~0.55% of
        // the outputs' RMS.
        let rel = (err2 / val2).sqrt();
        assert!(rel < 0.01, "int8 RMS error {rel}");
        assert!(rel > 1e-3, "suspiciously exact: {rel}");
    }

    #[test]
    fn zero_and_nonfinite_rows() {
        let (k, n) = (9, 5);
        let mut a = rvec(3 * k, 7);
        a[..k].fill(0.0);
        a[2 * k + 4] = f32::NAN;
        let w = rvec(n * k, 8);
        let bias = rvec(n, 9);
        let packed = PackedI8::pack(&w, n, k).unwrap();
        let mut c = vec![0f32; 3 * n];
        gemm_i8(&a, 3, k, &packed, Some(&bias), &mut c, None, 1).unwrap();
        assert_eq!(&c[..n], &bias[..], "a zero row gives the bias");
        assert!(c[n..2 * n].iter().all(|v| v.is_finite()));
        assert!(c[2 * n..].iter().all(|v| v.is_nan()), "NaN propagates");
        // A NaN weight row gives NaN outputs in its column only.
        let mut w2 = w.clone();
        w2[k + 1] = f32::INFINITY;
        let packed = PackedI8::pack(&w2, n, k).unwrap();
        gemm_i8(&a[k..2 * k], 1, k, &packed, None, &mut c[..n], None, 1).unwrap();
        assert!(c[1].is_nan() && c[0].is_finite() && c[2].is_finite());
    }

    /// Both quantisations round to the nearest step: every dequantised value is within half a
    /// step of its input, zero is exact, and the extremes reach the ends of the range.
    #[test]
    fn quantisation_is_round_to_nearest() {
        let row = rvec(300, 31);
        let mut q = vec![0u8; 300];
        let (s, z) = quantize_row(&row, &mut q);
        for (&x, &v) in row.iter().zip(&q) {
            let back = s * (v as f32 - z as f32);
            assert!((back - x).abs() <= 0.5 * s * (1.0 + 1e-5), "{x} -> {back}");
        }
        assert!(q.contains(&0) && q.contains(&255));
        let mut zq = [0u8; 3];
        let (s0, z0) = quantize_row(&[0.0, -1.0, 2.0], &mut zq);
        assert_eq!(s0 * (zq[0] as f32 - z0 as f32), 0.0, "zero is exact");
        let (n, k) = (3, 50);
        let w = rvec(n * k, 32);
        let p = PackedI8::pack(&w, n, k).unwrap();
        for j in 0..n {
            // Weight (j, kk) in the packed panel: byte kk % 4 of quad (kk / 4, j).
            let q = |kk: usize| p.data[(kk / 4) * NR + j].to_le_bytes()[kk % 4] as i8;
            let mut sum = 0i32;
            for kk in 0..k {
                let qw = q(kk);
                sum += qw as i32;
                let back = p.scale[j] * qw as f32;
                assert!((back - w[j * k + kk]).abs() <= 0.5 * p.scale[j] * (1.0 + 1e-5));
            }
            assert_eq!(sum, p.colsum[j], "column sums");
            assert!(
                (0..k).any(|kk| q(kk).unsigned_abs() == 127),
                "the largest |w| is ±127"
            );
        }
    }

    /// The AVX-512 quantiser gives the portable one's bytes, ties (x.5) included.
    #[test]
    fn quantiser_paths_agree() {
        #[cfg(target_arch = "x86_64")]
        if super::super::x86_features!("avx512f") {
            let mut row = rvec(1000, 21);
            // Exact ties after scaling by inv = 2: k/4 for odd k lands on x.5.
            for (i, v) in row.iter_mut().enumerate().take(200) {
                *v = (i as f32 - 100.0) / 4.0;
            }
            for len in [1, 15, 16, 17, 200, 1000] {
                let r = &row[..len];
                // SAFETY: avx512f checked above.
                let fast = unsafe { avx512::row_range(r) };
                assert_eq!(fast, row_range_portable(r), "len {len}");
                let (mut a, mut b) = (vec![0u8; len], vec![0u8; len]);
                // SAFETY: avx512f checked above.
                unsafe { avx512::quantize_into(r, &mut a, 2.0, 7.0) };
                quantize_into_portable(r, &mut b, 2.0, 7.0);
                assert_eq!(a, b, "len {len}");
            }
            let mut bad = row.clone();
            bad[17] = f32::NEG_INFINITY;
            // SAFETY: avx512f checked above.
            assert_eq!(unsafe { avx512::row_range(&bad) }, None);
        }
    }

    #[test]
    fn shape_errors() {
        let packed = PackedI8::pack(&[0.0; 6], 2, 3).unwrap();
        let mut c = vec![0f32; 4];
        assert!(gemm_i8(&[0.0; 5], 2, 3, &packed, None, &mut c, None, 1).is_err());
        assert!(gemm_i8(&[0.0; 6], 2, 2, &packed, None, &mut c, None, 1).is_err());
        assert!(gemm_i8(&[0.0; 6], 2, 3, &packed, Some(&[0.0]), &mut c, None, 1).is_err());
        assert!(PackedI8::pack(&[0.0; 5], 2, 3).is_err());
    }
}
