//! f32 GEMM for linear layers with a prepacked weight: `C[M, N] = A[M, K] · Wᵀ + bias`.
//!
//! The fp32 sibling of [`super::bf16`]: a linear layer's weight never changes during
//! inference, so it is packed once ([`PackedF32::pack`]) into panels of [`NR`] = 32 output
//! columns, `[K][32]` each (64-byte aligned), instead of being re-packed on every call as the
//! `gemm` crate does. A is copied per `MC × KC` block into `[k][MR]` strips so the
//! microkernel's broadcasts are contiguous (the loops are the blocked driver both GEMMs share,
//! here with equal-sized row and K blocks and a thread-local A buffer). The AVX-512F
//! microkernel holds a 14 × 32 tile of C in 28 zmm accumulators; per k it loads two zmm of
//! weights and broadcasts one `a[m, k]` per row into 28 FMAs.
//!
//! Numerics. Every element of C is a sequential sum over k in f32 (K blocks reload the partial
//! sums), then the bias is added. The AVX-512 path fuses each multiply-add (FMA, one rounding);
//! the portable fallback rounds the product and the sum separately, so the two agree up to
//! rounding, not bit for bit. Thread counts never change the result of a given path.
use super::{ABlock, Epilogue, Tile};
use crate::error::Result;

use super::MR;
/// Output columns per packed weight panel (two zmm registers of f32).
pub use super::NR;
/// Most k per K block (K is split into equal blocks). Measured on Zen 4: whole K up to 1536
/// beats L1-sized blocks (192: 10% slower at M = 1576, N ≥ 2304), as C tiles are then read
/// and written once; the 14 × 32 tile spends 28 FMA cycles per k, so weights and A stream
/// from L2 in time.
const KC: usize = 1536;
/// Most rows of A per packed block (row blocks are made equal, in whole strips).
const MC: usize = 224;

thread_local! {
    /// Each thread's packed-A buffer, kept between calls (at most `MC · KC` f32, 1.4 MB).
    static A_BUF: std::cell::RefCell<Vec<Line>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// 64 bytes of f32, so that packed buffers start on a cache line.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
struct Line([f32; 16]);

const ZERO_LINE: Line = Line([0.0; 16]);

/// A zeroed, 64-byte aligned buffer of at least `len` f32.
fn aligned(len: usize) -> Vec<Line> {
    vec![ZERO_LINE; len.div_ceil(16)]
}

/// A linear layer's weight `W [N, K]` (row-major, PyTorch `nn.Linear` layout: out × in),
/// packed once into the layout the microkernel streams: panels of [`NR`] columns, each
/// `[K][NR]` f32 (`panel[k][j] = w[p·NR + j, k]`), 64-byte aligned. Columns past N are zero.
#[derive(Clone, Debug)]
pub struct PackedF32 {
    n: usize,
    k: usize,
    data: Vec<Line>,
}

impl PackedF32 {
    /// Packs `w` (`n × k`, row-major). Errors if `w.len() != n * k`.
    pub fn pack(w: &[f32], n: usize, k: usize) -> Result<PackedF32> {
        let mut data = aligned(super::panels_len("PackedF32::pack", w, n, k, k)?);
        super::pack_panels(w, n, k, k, flat_mut(&mut data), |row, kk| row[kk]);
        Ok(PackedF32 { n, k, data })
    }

    /// Output features (rows of W).
    pub fn n(&self) -> usize {
        self.n
    }

    /// Input features (columns of W).
    pub fn k(&self) -> usize {
        self.k
    }

    /// The weight element `w[n, k]` (for references and tests).
    pub fn get(&self, n: usize, k: usize) -> f32 {
        flat(&self.data)[(n / NR) * self.k * NR + k * NR + n % NR]
    }
}

fn flat(v: &[Line]) -> &[f32] {
    // SAFETY: `Line` is `repr(C)` around `[f32; 16]` (size 64, no padding), so `v` is
    // `16 · v.len()` contiguous, initialised f32.
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const f32, v.len() * 16) }
}

fn flat_mut(v: &mut [Line]) -> &mut [f32] {
    // SAFETY: as in `flat`, and `v` is borrowed mutably.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut f32, v.len() * 16) }
}

/// Whether this CPU runs the AVX-512F path.
pub fn has_avx512f() -> bool {
    super::x86_features!("avx512f")
}

/// Which microkernel runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Isa {
    Portable,
    /// AVX2 + FMA (CPUs without AVX-512: Zen 3, Intel before Skylake-SP / Ice Lake).
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

/// Whether this CPU runs the AVX2 + FMA path (the fallback where AVX-512F is missing).
pub fn has_avx2_fma() -> bool {
    super::x86_features!("avx2", "fma")
}

fn best_isa() -> Isa {
    #[cfg(target_arch = "x86_64")]
    if has_avx512f() {
        return Isa::Avx512;
    }
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        return Isa::Avx2;
    }
    Isa::Portable
}

/// `C[M, N] = A[M, K] · Wᵀ + bias[N]` (bias optional), all f32. `a` is row-major with row
/// stride `lda ≥ K`; `c` is row-major contiguous `[M, N]` and is overwritten.
///
/// `epilogue`, if given, is applied to each finished block of C rows (a slice of whole rows,
/// after all of K and the bias), e.g. GELU in place, so the output is written while hot in
/// cache. It may be called several times, concurrently, on disjoint blocks.
///
/// `threads` (clamped to ≥ 1) splits the work over rayon's global pool: over rows when every
/// thread gets at least two 14-row strips, otherwise over the 32-column weight panels.
///
/// Errors on inconsistent shapes (`lda < K`, `a`, `c` or `bias` too short or long).
#[allow(clippy::too_many_arguments)]
pub fn gemm_f32_packed(
    a: &[f32],
    m: usize,
    lda: usize,
    w: &PackedF32,
    bias: Option<&[f32]>,
    c: &mut [f32],
    epilogue: Option<Epilogue>,
    threads: usize,
) -> Result<()> {
    super::gemm(best_isa(), a, m, lda, w, bias, c, epilogue, threads)
}

// SAFETY: `data` holds `n.div_ceil(NR) · k · NR` f32 (see `pack`), 64-byte aligned, so every
// k of a panel slice is (the AVX-512 kernel's aligned loads); `with_a_buf` grows the buffer
// to `len`; both microkernels touch only their tile.
unsafe impl super::GemmWeight for PackedF32 {
    type Isa = Isa;
    type Elem = f32;
    const NAME: &'static str = "gemm_f32_packed";
    const PREFETCH: bool = false;

    fn n(&self) -> usize {
        self.n
    }

    fn k(&self) -> usize {
        self.k
    }

    fn depth(&self) -> usize {
        self.k
    }

    fn panels(&self) -> &[f32] {
        flat(&self.data)
    }

    /// Blocks of equal size, rows in whole strips, so that no thin last block streams all of
    /// W (or a K slice of it) for little work.
    fn blocks(&self, rows: usize) -> (usize, usize) {
        let mc_blk = rows.div_ceil(rows.div_ceil(MC)).div_ceil(MR) * MR;
        (mc_blk, self.k.div_ceil(self.k.div_ceil(KC)))
    }

    /// This thread's buffer, kept between calls (64-byte aligned).
    fn with_a_buf<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
        A_BUF.with(|cell| {
            // Re-entered from an epilogue on this thread: a buffer of its own.
            let mut own = Vec::new();
            let mut shared = cell.try_borrow_mut();
            let lines = match shared.as_deref_mut() {
                Ok(lines) => lines,
                Err(_) => &mut own,
            };
            if lines.len() * 16 < len {
                *lines = aligned(len);
            }
            f(flat_mut(lines))
        })
    }

    /// Copies the block into `[kc][MR]` strips.
    fn pack_a(_: Isa, b: &ABlock, buf: &mut [f32]) {
        for s in 0..b.mc.div_ceil(MR) {
            let strip = &mut buf[s * b.kc * MR..(s + 1) * b.kc * MR];
            let rows = MR.min(b.mc - s * MR);
            if rows < MR {
                strip.fill(0.0);
            }
            for i in 0..rows {
                let r = b.ic + s * MR + i;
                let row = &b.a[r * b.lda + b.kb..r * b.lda + b.kb + b.kc];
                for (dst, &v) in strip.chunks_exact_mut(MR).zip(row) {
                    dst[i] = v;
                }
            }
        }
    }

    #[inline]
    unsafe fn microtile(isa: Isa, t: &Tile<f32>) {
        match isa {
            // SAFETY: forwarded contract.
            Isa::Portable => unsafe { kernel_portable(t) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: forwarded contract; the Avx2 isa is only chosen when detected.
            Isa::Avx2 => unsafe { avx2::kernel(t) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: forwarded contract; the Avx512 isa is only chosen when detected.
            Isa::Avx512 => unsafe { super::dispatch_rows!(avx512::kernel, t.mr, t) },
        }
    }
}

/// The portable microkernel: the same tile, product and sum rounded separately.
///
/// # Safety
/// As [`super::GemmWeight::microtile`].
unsafe fn kernel_portable(t: &Tile<f32>) {
    // SAFETY: forwarded contract.
    unsafe {
        super::portable_tile(t, |acc, a, w| {
            for (ak, wk) in a.chunks_exact(MR).zip(w.chunks_exact(NR)) {
                for (row, &av) in acc.iter_mut().zip(ak).take(t.mr) {
                    for (v, &wv) in row.iter_mut().zip(wk) {
                        *v += av * wv;
                    }
                }
            }
        })
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::super::{load_tile, store_tile, AccTile, Tile};
    use super::{MR, NR};
    use std::arch::x86_64::*;

    /// The microkernel: the tile's rows three at a time, each triple's 3 × 32 columns in 12 ymm
    /// accumulators across all of `kc` (four weight loads and three broadcasts feed 12 FMAs;
    /// with the broadcasts and one weight vector live that is AVX2's 16 registers).
    ///
    /// # Safety
    /// The CPU has avx2 and fma; `t` is valid (see [`Tile`]).
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn kernel(t: &Tile<f32>) {
        // SAFETY: the Tile contract: C's tile is mr × nr with row stride ldc.
        let mut acc = unsafe { load_tile(t.first, t.c, t.ldc, t.mr, t.nr) };
        let mut i = 0;
        while i < t.mr {
            // SAFETY: rows i..i + step ≤ mr ≤ MR; the Tile contract covers A and W.
            let step = (t.mr - i).min(3);
            unsafe {
                match step {
                    3 => rows::<3>(&mut acc, t, i),
                    2 => rows::<2>(&mut acc, t, i),
                    _ => rows::<1>(&mut acc, t, i),
                }
            }
            i += step;
        }
        // SAFETY: as above; the bias, when set, has nr values.
        unsafe { store_tile(&acc, t.bias, t.c, t.ldc, t.mr, t.nr) };
    }

    /// Rows `i..i + R` of the tile over all of `kc`.
    ///
    /// # Safety
    /// As [`kernel`], with `i + R ≤ t.mr`.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn rows<const R: usize>(acc: &mut AccTile, t: &Tile<f32>, i: usize) {
        // SAFETY: acc rows i..i+R exist (R ≤ 3, i + R ≤ mr ≤ MR), 32 floats each; the weight
        // slice has kc · NR floats, 64-byte aligned; the A strip kc · MR.
        unsafe {
            let mut c = [[_mm256_setzero_ps(); 4]; R];
            for (r, row) in c.iter_mut().enumerate() {
                for (j, v) in row.iter_mut().enumerate() {
                    *v = _mm256_loadu_ps(acc[i + r].as_ptr().add(8 * j));
                }
            }
            for kk in 0..t.kc {
                let wk = t.w.add(kk * NR);
                let w = [0, 1, 2, 3].map(|j| _mm256_load_ps(wk.add(8 * j)));
                let ak = t.a.add(kk * MR + i);
                let b: [__m256; R] = std::array::from_fn(|r| _mm256_set1_ps(*ak.add(r)));
                for (j, wj) in w.into_iter().enumerate() {
                    for (row, br) in c.iter_mut().zip(b) {
                        row[j] = _mm256_fmadd_ps(br, wj, row[j]);
                    }
                }
            }
            for (r, row) in c.iter().enumerate() {
                for (j, v) in row.iter().enumerate() {
                    _mm256_storeu_ps(acc[i + r].as_mut_ptr().add(8 * j), *v);
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::super::Tile;
    use super::super::{load_acc, store_acc};
    use super::{MR, NR};
    use std::arch::x86_64::*;

    /// The microkernel: an R × 32 tile of C in 2·R zmm accumulators; per k, two weight loads
    /// and R broadcasts of A feed 2·R FMAs.
    ///
    /// # Safety
    /// The CPU has avx512f; `t` is valid (see [`Tile`]) with `t.mr == R`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn kernel<const R: usize>(t: &Tile<f32>) {
        // SAFETY: the Tile contract: C's tile is R × nr with row stride ldc.
        let mut acc = unsafe { load_acc!(R, t.first, t.c, t.ldc, t.nr) };
        for kk in 0..t.kc {
            // SAFETY: k = kk < kc of the weight slice and the A strip (Tile contract); the
            // weight slice is 64-byte aligned (aligned panels, NR = 32 floats per k).
            unsafe {
                let wk = t.w.add(kk * NR);
                let w0 = _mm512_load_ps(wk);
                let w1 = _mm512_load_ps(wk.add(16));
                let ak = t.a.add(kk * MR);
                for i in 0..R {
                    let b = _mm512_set1_ps(*ak.add(i));
                    acc.0[i] = _mm512_fmadd_ps(b, w0, acc.0[i]);
                    acc.1[i] = _mm512_fmadd_ps(b, w1, acc.1[i]);
                }
            }
        }
        // SAFETY: as above; the bias, when set, has nr values.
        unsafe { store_acc!(R, acc, t.bias, t.c, t.ldc, t.nr) };
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_close, epilogue, reference, rvec};
    use super::*;

    /// Every path this CPU runs.
    fn isas() -> Vec<Isa> {
        let mut v = vec![Isa::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if has_avx2_fma() {
                v.push(Isa::Avx2);
            }
            if has_avx512f() {
                v.push(Isa::Avx512);
            }
        }
        v
    }

    fn check(m: usize, k: usize, n: usize, lda: usize, with_bias: bool, with_epi: bool) {
        let a = rvec(m * lda, 1 + (m * 31 + k * 7 + n) as u64);
        let w = rvec(n * k, 2 + (m + k * 13 + n * 3) as u64);
        let bias = rvec(n, 3);
        let bias = with_bias.then_some(&bias[..]);
        let packed = PackedF32::pack(&w, n, k).unwrap();
        let (r, mag) = reference(&a, m, lda, &w, n, k, bias, |x| x as f64);
        let epi_ref: Epilogue = &epilogue;
        let mut outs: Vec<(Isa, Vec<f32>)> = Vec::new();
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
                // Relative to the magnitude of the summands (~1e-5 for K = 768).
                let what = format!(
                    "{isa:?} t{threads} m{m} k{k} n{n} lda{lda} bias{with_bias} epi{with_epi}"
                );
                assert_close(&c, (&r, &mag), n, k, with_epi, (1e-6, 4e-7), &what);
                outs.push((isa, c));
            }
        }
        // Thread counts never change a path's result.
        for (isa, o) in &outs {
            let (_, first) = outs.iter().find(|(i, _)| i == isa).unwrap();
            let same = o.iter().zip(first).all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same, "{isa:?}: thread counts differ: m{m} k{k} n{n}");
        }
    }

    #[test]
    fn matches_reference_edge_shapes() {
        for m in [1, 3, 13] {
            for k in [1, 7, 64, 770] {
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
            (197, 1, 16),
            (200, 7, 15),
            (3, 768, 768),
            (13, 770, 768),
        ] {
            check(m, k, n, k, true, false);
        }
        check(197, 256, 100, 256, false, true);
        check(1, 768, 768, 768, true, true);
        check(197, 768, 768, 770, true, true);
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

    /// The AVX-512 path and the fallback agree closely on a ViT-sized shape.
    #[test]
    fn avx_matches_portable() {
        if best_isa() == Isa::Portable {
            return;
        }
        let (m, k, n) = (197, 768, 100);
        let a = rvec(m * k, 5);
        let w = rvec(n * k, 6);
        let bias = rvec(n, 7);
        let packed = PackedF32::pack(&w, n, k).unwrap();
        let mut c0 = vec![0f32; m * n];
        let mut c1 = vec![0f32; m * n];
        super::super::gemm(
            Isa::Portable,
            &a,
            m,
            k,
            &packed,
            Some(&bias),
            &mut c0,
            None,
            1,
        )
        .unwrap();
        for isa in isas().into_iter().skip(1) {
            super::super::gemm(isa, &a, m, k, &packed, Some(&bias), &mut c1, None, 2).unwrap();
            for (x, y) in c0.iter().zip(&c1) {
                assert!(
                    (x - y).abs() <= 1e-4 * (1.0 + x.abs()),
                    "{isa:?}: {x} vs {y}"
                );
            }
        }
    }

    #[test]
    fn zero_k_and_empty() {
        let w = PackedF32::pack(&[], 3, 0).unwrap();
        let mut c = vec![f32::NAN; 6];
        gemm_f32_packed(&[], 2, 0, &w, Some(&[1.0, 2.0, 3.0]), &mut c, None, 2).unwrap();
        assert_eq!(c, [1.0, 2.0, 3.0, 1.0, 2.0, 3.0]);
        let w = PackedF32::pack(&[1.0; 6], 3, 2).unwrap();
        gemm_f32_packed(&[], 0, 2, &w, None, &mut [], None, 2).unwrap();
    }

    #[test]
    fn shape_errors() {
        assert!(PackedF32::pack(&[0.0; 5], 2, 3).is_err());
        let w = PackedF32::pack(&[0.5, 0.5, 0.5, 0.5, 0.5, 0.25], 2, 3).unwrap();
        assert_eq!((w.n(), w.k()), (2, 3));
        assert_eq!(w.get(1, 2), 0.25);
        let a = [1.0; 6];
        let mut c = [0.0; 4];
        assert!(gemm_f32_packed(&a, 2, 2, &w, None, &mut c, None, 1).is_err()); // lda < k
        assert!(gemm_f32_packed(&a, 3, 3, &w, None, &mut c, None, 1).is_err()); // A short
        assert!(gemm_f32_packed(&a, 2, 3, &w, None, &mut c[..3], None, 1).is_err()); // C size
        assert!(gemm_f32_packed(&a, 2, 3, &w, Some(&[1.0]), &mut c, None, 1).is_err()); // bias
        gemm_f32_packed(&a, 2, 3, &w, None, &mut c, None, 1).unwrap();
        assert_eq!(c, [1.5, 1.25, 1.5, 1.25]);
    }
}
