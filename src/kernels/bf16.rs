//! bf16 GEMM for linear layers: `C[M, N] = A[M, K] · Wᵀ + bias`, inputs rounded to bf16
//! (round-to-nearest-even), products and sums in f32.
//!
//! The fast path uses AVX512_BF16's `vdpbf16ps`, which multiplies a pair of bf16 values
//! `(k, k+1)` per 32-bit lane and adds both products into an f32 accumulator. The weight is
//! packed once ([`PackedBf16::pack`]) into panels of [`NR`] = 32 output columns, interleaved as
//! `[k/2][column][2]`, so a microkernel step loads two zmm registers of weight pairs and, per
//! row of A, broadcasts one `(a[m,k], a[m,k+1])` pair. A is converted to bf16 and packed per
//! `MC × KC` block (one buffer per thread per call). The microkernel holds a 14 × 32 tile of C
//! in 28 zmm accumulators (2 more for the weight pairs, 1 for the broadcast) and, per k pair,
//! issues 2 weight loads, 14 broadcasts and 28 `vdpbf16ps`.
//!
//! Loops (the blocked driver both GEMMs share, BLIS order): row blocks of `MC` = 168 → K
//! blocks of `KC` = 768 (pack A) → weight panels (the next panel's slice is prefetched
//! meanwhile) → 14-row strips → microkernel. A K block of a panel (48 KiB) is reused by all
//! strips from L2; the packed A block (252 KiB) by all panels. Partial sums of C are stored
//! after each K block and reloaded for the next.
//!
//! Numerics. `vdpbf16ps` (measured on Zen 4, documented by Intel) adds the odd-k product first,
//! then the even-k one, each add rounded to f32 (RNE), with subnormal inputs and results
//! flushed to zero. Accumulation runs sequentially over k for every element of C (K blocks
//! reload the partial sums into the accumulators), then the bias is added. The portable
//! fallback does exactly the same operations in the same order, so both paths give
//! bit-identical results.
use super::{bf16_bits_to_f32, pack_pair, ABlock, GemmWeight, Tile};
use crate::error::Result;

use super::MR;
/// Output columns per packed weight panel (two zmm registers of f32).
pub use super::NR;
/// k pairs per K block (K = 768 in one block; measured faster than 128, 256 or 768 pairs
/// on Zen 4): a 32-column weight slice is `KC2 · 32 · 4` bytes (48 KiB, L2); fewer blocks mean
/// fewer reloads of partial sums of C.
const KC2: usize = 384;
/// Rows of A per packed block (`MC · KC2 · 4` bytes = 252 KiB, L2).
const MC: usize = 168;

/// A linear layer's weight `W [N, K]` (row-major, PyTorch `nn.Linear` layout: out × in),
/// converted once to bf16 (round-to-nearest-even) and packed into the layout the microkernel
/// streams: panels of [`NR`] columns, each `[ceil(K/2)][NR]` u32 pairs `(w[n,2j], w[n,2j+1])`,
/// the low half holding the even k. Columns past N and the k past an odd K are zero.
#[derive(Clone, Debug)]
pub struct PackedBf16 {
    n: usize,
    k: usize,
    /// k pairs: `ceil(k / 2)`.
    k2: usize,
    data: Vec<u32>,
}

impl PackedBf16 {
    /// Packs `w` (`n × k`, row-major). Errors if `w.len() != n * k`.
    pub fn pack(w: &[f32], n: usize, k: usize) -> Result<PackedBf16> {
        let k2 = k.div_ceil(2);
        let mut data = vec![0u32; super::panels_len("PackedBf16::pack", w, n, k, k2)?];
        super::pack_panels(w, n, k, k2, &mut data, |row, kk| {
            pack_pair(row[2 * kk], row.get(2 * kk + 1).copied().unwrap_or(0.0))
        });
        Ok(PackedBf16 { n, k, k2, data })
    }

    /// Output features (rows of W).
    pub fn n(&self) -> usize {
        self.n
    }

    /// Input features (columns of W).
    pub fn k(&self) -> usize {
        self.k
    }

    /// The bf16-rounded weight element `w[n, k]` as f32 (for references and tests); `None`
    /// outside `N × K`.
    pub fn get(&self, n: usize, k: usize) -> Option<f32> {
        if n >= self.n || k >= self.k {
            return None;
        }
        let pair = self.data[(n / NR) * self.k2 * NR + (k / 2) * NR + n % NR];
        Some(bf16_bits_to_f32(if k.is_multiple_of(2) {
            pair as u16
        } else {
            (pair >> 16) as u16
        }))
    }
}

/// Whether this CPU runs the AVX512_BF16 path (`avx512f`, `avx512bw`, `avx512bf16`).
pub fn has_avx512_bf16() -> bool {
    super::x86_features!("avx512f", "avx512bw", "avx512bf16")
}

/// Which microkernel runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Isa {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx512Bf16,
}

pub use super::Epilogue;

/// `C[M, N] = A[M, K] · Wᵀ + bias[N]` (bias optional). `a` is f32 row-major with row stride
/// `lda ≥ K` (its rows are converted to bf16 while packing); `c` is f32 row-major contiguous
/// `[M, N]` and is overwritten. Accumulation is in f32.
///
/// `epilogue`, if given, is applied to each finished block of C rows (a slice of whole rows,
/// after all of K and the bias), e.g. GELU in place, so the output is written while hot in
/// cache. It may be called several times (blocks of up to 168 rows), concurrently, on
/// disjoint blocks.
///
/// `threads` (clamped to ≥ 1) splits the work over rayon's global pool: over rows when every
/// thread gets at least two 14-row strips, otherwise over the 32-column weight panels.
///
/// Errors on inconsistent shapes (`lda < K`, `a`, `c` or `bias` too short or long).
#[allow(clippy::too_many_arguments)]
pub fn gemm_bf16(
    a: &[f32],
    m: usize,
    lda: usize,
    w: &PackedBf16,
    bias: Option<&[f32]>,
    c: &mut [f32],
    epilogue: Option<Epilogue>,
    threads: usize,
) -> Result<()> {
    super::gemm(best_isa(), a, m, lda, w, bias, c, epilogue, threads)
}

fn best_isa() -> Isa {
    #[cfg(target_arch = "x86_64")]
    if has_avx512_bf16() {
        return Isa::Avx512Bf16;
    }
    Isa::Portable
}

// SAFETY: `data` holds `n.div_ceil(NR) · k2 · NR` pairs (see `pack`); the buffer has `len`
// pairs; both microkernels touch only their tile (prefetches are hints, never dereferences).
unsafe impl GemmWeight for PackedBf16 {
    type Isa = Isa;
    type Elem = u32;
    const NAME: &'static str = "gemm_bf16";
    const PREFETCH: bool = true;

    fn n(&self) -> usize {
        self.n
    }

    fn k(&self) -> usize {
        self.k
    }

    fn depth(&self) -> usize {
        self.k2
    }

    fn panels(&self) -> &[u32] {
        &self.data
    }

    /// Fixed `MC`-row blocks and `KC2`-pair K blocks.
    fn blocks(&self, _rows: usize) -> (usize, usize) {
        (MC, KC2)
    }

    /// A buffer of this call's own.
    fn with_a_buf<R>(len: usize, f: impl FnOnce(&mut [u32]) -> R) -> R {
        f(&mut vec![0u32; len])
    }

    fn pack_a(isa: Isa, block: &ABlock, buf: &mut [u32]) {
        match isa {
            Isa::Portable => pack_a_portable(block, buf),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: only chosen when the CPU has the features.
            Isa::Avx512Bf16 => unsafe { avx512::pack_a(block, buf) },
        }
    }

    #[inline]
    unsafe fn microtile(isa: Isa, t: &Tile<u32>) {
        match isa {
            // SAFETY: forwarded contract.
            Isa::Portable => unsafe { kernel_portable(t) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: forwarded contract; the Avx512Bf16 isa is only chosen when detected.
            Isa::Avx512Bf16 => unsafe { super::dispatch_rows!(avx512::kernel, t.mr, t) },
        }
    }
}

/// The portable A packing: pairs converted with [`super::f32_to_bf16_bits`].
fn pack_a_portable(b: &ABlock, buf: &mut [u32]) {
    for s in 0..b.mc.div_ceil(MR) {
        let strip = &mut buf[s * b.kc * MR..(s + 1) * b.kc * MR];
        for i in 0..MR {
            let r = s * MR + i;
            for kk in 0..b.kc {
                strip[kk * MR + i] = if r < b.mc {
                    let row = &b.a[(b.ic + r) * b.lda..(b.ic + r) * b.lda + b.k];
                    let k0 = 2 * (b.kb + kk);
                    pack_pair(row[k0], row.get(k0 + 1).copied().unwrap_or(0.0))
                } else {
                    0
                };
            }
        }
    }
}

/// Flush a subnormal result to a signed zero, as `vdpbf16ps` does.
#[inline(always)]
fn ftz(x: f32) -> f32 {
    if x.abs() < f32::MIN_POSITIVE {
        f32::from_bits(x.to_bits() & 0x8000_0000)
    } else {
        x
    }
}

/// The portable microkernel: `vdpbf16ps`'s operations in its order (odd k, then even k, each
/// add rounded and flushed), so results equal the AVX512_BF16 path bit for bit.
///
/// # Safety
/// As [`super::GemmWeight::microtile`].
unsafe fn kernel_portable(t: &Tile<u32>) {
    // SAFETY: forwarded contract.
    unsafe {
        super::portable_tile(t, |acc, a, w| {
            for kk in 0..t.kc {
                let wk = &w[kk * NR..(kk + 1) * NR];
                for (i, row) in acc.iter_mut().enumerate().take(t.mr) {
                    let ap = a[kk * MR + i];
                    let (alo, ahi) = (f32::from_bits(ap << 16), f32::from_bits(ap & 0xffff_0000));
                    for (v, &wp) in row.iter_mut().zip(wk) {
                        let (wlo, whi) =
                            (f32::from_bits(wp << 16), f32::from_bits(wp & 0xffff_0000));
                        *v = ftz(ftz(*v + ahi * whi) + alo * wlo);
                    }
                }
            }
        })
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::super::{load_acc, store_acc};
    use super::super::{mask16, ABlock, Tile};
    use super::{MR, NR};
    use std::arch::x86_64::*;

    /// The microkernel: an R × 32 tile of C in 2·R zmm accumulators; per k pair, two weight
    /// loads and R broadcasts of A pairs feed 2·R `vdpbf16ps`.
    ///
    /// # Safety
    /// The CPU has avx512f, avx512bw, avx512bf16; `t` is valid (see [`Tile`]) with `t.mr == R`.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub(super) unsafe fn kernel<const R: usize>(t: &Tile<u32>) {
        // SAFETY: the Tile contract: C's tile is R × nr with row stride ldc.
        let mut acc = unsafe { load_acc!(R, t.first, t.c, t.ldc, t.nr) };
        for kk in 0..t.kc {
            // SAFETY: pair kk < kc of the weight slice and the A strip (Tile contract).
            unsafe {
                let wk = t.w.add(kk * NR);
                let w0: __m512bh = std::mem::transmute(_mm512_loadu_si512(wk as *const __m512i));
                let w1: __m512bh =
                    std::mem::transmute(_mm512_loadu_si512(wk.add(16) as *const __m512i));
                if kk < t.pf_lines {
                    // A prefetch is a hint: it never faults, whatever the address.
                    _mm_prefetch::<_MM_HINT_T1>(t.pf.wrapping_add(kk * 16) as *const i8);
                }
                let ak = t.a.add(kk * MR);
                for i in 0..R {
                    let b: __m512bh = std::mem::transmute(_mm512_set1_epi32(*ak.add(i) as i32));
                    acc.0[i] = _mm512_dpbf16_ps(acc.0[i], b, w0);
                    acc.1[i] = _mm512_dpbf16_ps(acc.1[i], b, w1);
                }
            }
        }
        // SAFETY: as above; the bias, when set, has nr values.
        unsafe { store_acc!(R, acc, t.bias, t.c, t.ldc, t.nr) };
    }

    /// AVX512 A packing: 32 floats of a row at a time, converted with `vcvtne2ps2bf16` (RNE,
    /// same as [`super::f32_to_bf16_bits`]) and transposed into the strip layout.
    ///
    /// # Safety
    /// The CPU has avx512f, avx512bw, avx512bf16.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub(super) unsafe fn pack_a(block: &ABlock, buf: &mut [u32]) {
        let &ABlock {
            a,
            lda,
            k,
            ic,
            mc,
            kb,
            kc: kc2,
        } = block;
        // Floats of each row in this K block (2·kc2, or one less at an odd K).
        let nel = (2 * kc2).min(k - 2 * kb);
        let mut tmp = [0u32; 16];
        for s in 0..mc.div_ceil(MR) {
            let strip = &mut buf[s * kc2 * MR..(s + 1) * kc2 * MR];
            for i in 0..MR {
                let r = s * MR + i;
                if r >= mc {
                    for kk in 0..kc2 {
                        strip[kk * MR + i] = 0;
                    }
                    continue;
                }
                let row = &a[(ic + r) * lda + 2 * kb..(ic + r) * lda + 2 * kb + nel];
                let mut c0 = 0;
                while c0 < kc2 {
                    let e0 = 2 * c0;
                    let count = (nel - e0).min(32);
                    let src = row[e0..].as_ptr();
                    // SAFETY: masked loads read only the `count` floats left in `row`.
                    unsafe {
                        let lo = _mm512_maskz_loadu_ps(mask16(count), src);
                        let hi = _mm512_maskz_loadu_ps(
                            mask16(count.saturating_sub(16)),
                            src.wrapping_add(16),
                        );
                        // The second operand fills the low half (the first 16 k).
                        let v: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
                        _mm512_storeu_si512(tmp.as_mut_ptr() as *mut __m512i, v);
                    }
                    let take = (kc2 - c0).min(16);
                    for (j, &v) in tmp.iter().enumerate().take(take) {
                        strip[(c0 + j) * MR + i] = v;
                    }
                    c0 += 16;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_close, epilogue, reference, rvec};
    use super::*;
    use crate::kernels::f32_to_bf16_bits;

    fn bf(x: f32) -> f64 {
        bf16_bits_to_f32(f32_to_bf16_bits(x)) as f64
    }

    fn isas() -> Vec<Isa> {
        let mut v = vec![Isa::Portable];
        if best_isa() != Isa::Portable {
            v.push(best_isa());
        }
        v
    }

    fn check(m: usize, k: usize, n: usize, lda: usize, with_bias: bool, with_epi: bool) {
        let a = rvec(m * lda, 1 + (m * 31 + k * 7 + n) as u64);
        let w = rvec(n * k, 2 + (m + k * 13 + n * 3) as u64);
        let bias = rvec(n, 3);
        let bias = with_bias.then_some(&bias[..]);
        let packed = PackedBf16::pack(&w, n, k).unwrap();
        // The reference multiplies the bf16-rounded inputs exactly.
        let (r, mag) = reference(&a, m, lda, &w, n, k, bias, bf);
        let epi_ref: Epilogue = &epilogue;
        let mut outs = Vec::new();
        for isa in isas() {
            for threads in [1, 2, 3] {
                let mut c = vec![f32::NAN; m * n];
                super::super::gemm(
                    isa,
                    &a,
                    m,
                    lda,
                    &packed,
                    bias,
                    &mut c,
                    with_epi.then_some(epi_ref),
                    threads,
                )
                .unwrap();
                let what = format!(
                    "{isa:?} t{threads} m{m} k{k} n{n} lda{lda} bias{with_bias} epi{with_epi}"
                );
                assert_close(&c, (&r, &mag), n, k, with_epi, (1e-5, 2e-6), &what);
                outs.push(c);
            }
        }
        // Every path and thread count: bit-identical.
        for o in &outs[1..] {
            let same = o
                .iter()
                .zip(&outs[0])
                .all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same, "paths differ: m{m} k{k} n{n}");
        }
    }

    #[test]
    fn bf16_rounding_is_rne() {
        let cases: [(u32, u16); 10] = [
            (0x3f80_0000, 0x3f80), // 1.0
            (0x3f80_8000, 0x3f80), // tie, even stays
            (0x3f81_8000, 0x3f82), // tie, odd rounds up
            (0x3f80_8001, 0x3f81), // above half
            (0x3f80_7fff, 0x3f80), // below half
            (0xbf81_8000, 0xbf82), // negative tie
            (0x7f7f_ffff, 0x7f80), // max f32 → inf
            (0x0000_0001, 0x0000), // subnormal → 0
            (0x8001_0000, 0x8000), // negative subnormal → -0
            (0x7f80_0001, 0x7fc0), // signalling NaN → quiet NaN
        ];
        for (x, want) in cases {
            assert_eq!(f32_to_bf16_bits(f32::from_bits(x)), want, "{x:08x}");
        }
        assert_eq!(f32_to_bf16_bits(f32::INFINITY), 0x7f80);
        assert_eq!(bf16_bits_to_f32(0x4049), 3.140625);
    }

    /// The AVX512 A packing converts exactly as the scalar conversion.
    #[test]
    fn avx_pack_matches_portable() {
        if best_isa() == Isa::Portable {
            return;
        }
        let (m, k, lda) = (20, 77, 80);
        let mut a = rvec(m * lda, 9);
        a[3] = f32::from_bits(0x3f81_8000);
        a[4] = 1e-39;
        a[5] = f32::NAN;
        a[6] = f32::MAX;
        for (kb, kc2) in [(0, 39), (0, 16), (5, 34)] {
            let mut p = vec![7u32; MC * KC2];
            let mut q = vec![9u32; MC * KC2];
            let block = ABlock {
                a: &a,
                lda,
                k,
                ic: 1,
                mc: m - 1,
                kb,
                kc: kc2,
            };
            PackedBf16::pack_a(Isa::Portable, &block, &mut p);
            PackedBf16::pack_a(best_isa(), &block, &mut q);
            let len = (m - 1).div_ceil(MR) * MR * kc2;
            assert_eq!(p[..len], q[..len], "kb {kb} kc2 {kc2}");
        }
    }

    #[test]
    fn matches_reference_edge_shapes() {
        for m in [1, 3, 8, 13] {
            for k in [1, 2, 7, 64, 768, 770] {
                for n in [1, 15, 16, 17, 33] {
                    check(m, k, n, k, m % 2 == 1, false);
                }
            }
        }
    }

    #[test]
    fn matches_reference_large_shapes() {
        for (m, k, n) in [
            (197, 768, 33),
            (200, 770, 17),
            (29, 768, 768),
            (200, 64, 768),
            (197, 7, 1),
            (200, 2, 16),
            (197, 770, 768),
        ] {
            check(m, k, n, k, true, false);
        }
        check(197, 256, 100, 256, false, true);
    }

    #[test]
    fn bias_epilogue_and_stride() {
        for (m, k, n) in [(13, 7, 33), (200, 64, 17), (8, 770, 16), (197, 300, 40)] {
            for lda in [k, k + 3] {
                for (b, e) in [(false, false), (true, false), (false, true), (true, true)] {
                    check(m, k, n, lda, b, e);
                }
            }
        }
    }

    #[test]
    fn zero_k_and_empty() {
        let w = PackedBf16::pack(&[], 3, 0).unwrap();
        let mut c = vec![f32::NAN; 6];
        gemm_bf16(&[], 2, 0, &w, Some(&[1.0, 2.0, 3.0]), &mut c, None, 2).unwrap();
        assert_eq!(c, [1.0, 2.0, 3.0, 1.0, 2.0, 3.0]);
        let w = PackedBf16::pack(&[1.0; 6], 3, 2).unwrap();
        gemm_bf16(&[], 0, 2, &w, None, &mut [], None, 2).unwrap();
    }

    #[test]
    fn shape_errors() {
        assert!(PackedBf16::pack(&[0.0; 5], 2, 3).is_err());
        let w = PackedBf16::pack(&[0.5; 6], 2, 3).unwrap();
        assert_eq!((w.n(), w.k()), (2, 3));
        assert_eq!(w.get(1, 2), Some(0.5));
        assert_eq!(w.get(2, 0), None);
        let a = [1.0; 6];
        let mut c = [0.0; 4];
        assert!(gemm_bf16(&a, 2, 2, &w, None, &mut c, None, 1).is_err()); // lda < k
        assert!(gemm_bf16(&a, 3, 3, &w, None, &mut c, None, 1).is_err()); // A short
        assert!(gemm_bf16(&a, 2, 3, &w, None, &mut c[..3], None, 1).is_err()); // C size
        assert!(gemm_bf16(&a, 2, 3, &w, Some(&[1.0]), &mut c, None, 1).is_err()); // bias
        gemm_bf16(&a, 2, 3, &w, None, &mut c, None, 1).unwrap();
        assert_eq!(c, [1.5; 4]);
    }
}
