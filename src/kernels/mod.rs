//! Hand-written CPU kernels.
//!
//! - [`bf16`]: a bf16 GEMM for linear layers (AVX512_BF16 `vdpbf16ps` with a portable fallback).
//! - [`int8`]: an int8 GEMM with dynamic quantisation (AVX512_VNNI `vpdpbusd`, portable fallback).
//! - [`f32`](mod@f32): an f32 GEMM for linear layers with a prepacked weight (AVX-512F with a portable
//!   fallback).

pub mod bf16;
pub mod f32;
#[cfg(test)]
mod golden;
pub mod int8;
#[cfg(test)]
pub(crate) mod testing;

use crate::error::{Error, Result};

/// The epilogue callback of both GEMMs: applied in place to blocks of whole, finished rows of C.
pub type Epilogue<'a> = &'a (dyn Fn(&mut [f32]) + Sync);

/// Rows of a microtile and columns of a weight panel: both kernels use a 14 × 32 tile.
pub(crate) const MR: usize = 14;
pub const NR: usize = 32;

/// Portable microkernels' accumulator tile: the first `mr` × `nr` of it are live.
pub(crate) type AccTile = [[f32; NR]; MR];

/// The live part of C's tile into `acc` (K blocks after the first continue from C's partial
/// sums), or zeros.
///
/// # Safety
/// `c` addresses `mr` rows of stride `ldc` with `nr` valid columns each (`mr ≤ MR`, `nr ≤ NR`).
#[inline(always)]
unsafe fn load_tile(first: bool, c: *const f32, ldc: usize, mr: usize, nr: usize) -> AccTile {
    let mut acc = [[0f32; NR]; MR];
    if !first {
        for (i, row) in acc.iter_mut().enumerate().take(mr) {
            for (j, v) in row.iter_mut().enumerate().take(nr) {
                // SAFETY: (i, j) is inside the tile (caller's contract).
                *v = unsafe { *c.add(i * ldc + j) };
            }
        }
    }
    acc
}

/// Writes the live part of `acc` to C, adding `bias` (nr values) unless it is null.
///
/// # Safety
/// As [`load_tile`], and `bias` is null or addresses `nr` values.
#[inline(always)]
unsafe fn store_tile(
    acc: &AccTile,
    bias: *const f32,
    c: *mut f32,
    ldc: usize,
    mr: usize,
    nr: usize,
) {
    for (i, row) in acc.iter().enumerate().take(mr) {
        for (j, &v) in row.iter().enumerate().take(nr) {
            let v = if bias.is_null() {
                v
            } else {
                // SAFETY: the bias has nr elements (caller's contract).
                v + unsafe { *bias.add(j) }
            };
            // SAFETY: (i, j) is inside the tile.
            unsafe { *c.add(i * ldc + j) = v };
        }
    }
}

/// The portable microkernels' frame: C's tile into an accumulator tile (zeros on the first
/// K block), `k_loop(acc, A strip, weight slice)` over the tile's `kc` packed elements, then
/// the tile back to C plus the bias.
///
/// # Safety
/// The pointers in `t` are valid as documented on [`Tile`].
#[inline(always)]
pub(crate) unsafe fn portable_tile<E>(t: &Tile<E>, k_loop: impl FnOnce(&mut AccTile, &[E], &[E])) {
    // SAFETY: Tile contract (C's tile is mr × nr with row stride ldc).
    let mut acc = unsafe { load_tile(t.first, t.c, t.ldc, t.mr, t.nr) };
    // SAFETY: Tile contract: kc · MR and kc · NR elements.
    let (a, w) = unsafe {
        (
            std::slice::from_raw_parts(t.a, t.kc * MR),
            std::slice::from_raw_parts(t.w, t.kc * NR),
        )
    };
    k_loop(&mut acc, a, w);
    // SAFETY: Tile contract (the bias, when set, has nr values).
    unsafe { store_tile(&acc, t.bias, t.c, t.ldc, t.mr, t.nr) };
}

/// Lane mask for the first `count` (≤ 16, saturating) of 16 f32 lanes: the tile's column edge.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn mask16(count: usize) -> std::arch::x86_64::__mmask16 {
    if count >= 16 {
        0xffff
    } else {
        ((1u32 << count) - 1) as std::arch::x86_64::__mmask16
    }
}

/// Whether the CPU has all of the x86 features named (`false` off x86_64): both GEMMs'
/// `has_*` detection.
macro_rules! x86_features {
    ($($feature:tt),+) => {{
        #[cfg(target_arch = "x86_64")]
        {
            $(is_x86_feature_detected!($feature))&&+
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }};
}
pub(crate) use x86_features;

/// Calls `$($kernel)::+::<R>($tile)` with the const `R` equal to the runtime row count `$mr`
/// (1..=14): both AVX-512 microkernels keep a tile's rows in a const-size register array.
macro_rules! dispatch_rows {
    ($($kernel:ident)::+, $mr:expr, $tile:expr) => {
        match $mr {
            14 => $($kernel)::+::<14>($tile),
            13 => $($kernel)::+::<13>($tile),
            12 => $($kernel)::+::<12>($tile),
            11 => $($kernel)::+::<11>($tile),
            10 => $($kernel)::+::<10>($tile),
            9 => $($kernel)::+::<9>($tile),
            8 => $($kernel)::+::<8>($tile),
            7 => $($kernel)::+::<7>($tile),
            6 => $($kernel)::+::<6>($tile),
            5 => $($kernel)::+::<5>($tile),
            4 => $($kernel)::+::<4>($tile),
            3 => $($kernel)::+::<3>($tile),
            2 => $($kernel)::+::<2>($tile),
            _ => $($kernel)::+::<1>($tile),
        }
    };
}
pub(crate) use dispatch_rows;

/// The AVX-512 parts both microkernels share: C's tile in and out of `2·R` zmm accumulators
/// (the 32 columns as two halves, masked at the tile's `nr` edge). Only the k loop differs.
///
/// Macros, not functions: as `#[target_feature]` functions (which cannot be
/// `#[inline(always)]`) they were inlined or not at LLVM's discretion, and an unrelated
/// change elsewhere in the crate once left `store_acc` out of line. The accumulators then lived
/// on the stack (68 stack accesses in the 14-row kernel) and whole fp32 and bf16 models ran at
/// half speed (ViT-B/16 b8 5.5 → 2.5 img/s, Zen 4).
///
/// `load_acc!(R, first, c, ldc, nr)`: the accumulators for an `R × nr` tile at `c` (row
/// stride `ldc`), zeros on the first K block, else C's partial sums. Unless `first`, `c` must
/// address `R` rows of `nr ≤ 32` readable f32; the caller has avx512f and is `unsafe`.
#[cfg(target_arch = "x86_64")]
macro_rules! load_acc {
    ($r:expr, $first:expr, $c:expr, $ldc:expr, $nr:expr) => {{
        use std::arch::x86_64::*;
        let mut acc = ([_mm512_setzero_ps(); $r], [_mm512_setzero_ps(); $r]);
        if !$first {
            let nr: usize = $nr;
            let (m0, m1) = (
                $crate::kernels::mask16(nr),
                $crate::kernels::mask16(nr.saturating_sub(16)),
            );
            for i in 0..$r {
                let cr: *const f32 = $c.wrapping_add(i * $ldc);
                // Masked loads touch only the tile's nr columns of row i < R.
                acc.0[i] = _mm512_maskz_loadu_ps(m0, cr);
                acc.1[i] = _mm512_maskz_loadu_ps(m1, cr.wrapping_add(16));
            }
        }
        acc
    }};
}
#[cfg(target_arch = "x86_64")]
pub(crate) use load_acc;

/// `store_acc!(R, acc, bias, c, ldc, nr)`: writes the accumulators to the tile at `c`, adding
/// `bias` (`nr` values) unless null. `c` must address `R` rows of `nr ≤ 32` writable f32;
/// the caller has avx512f and is `unsafe`.
#[cfg(target_arch = "x86_64")]
macro_rules! store_acc {
    ($r:expr, $acc:expr, $bias:expr, $c:expr, $ldc:expr, $nr:expr) => {{
        use std::arch::x86_64::*;
        let nr: usize = $nr;
        let bias: *const f32 = $bias;
        let (m0, m1) = (
            $crate::kernels::mask16(nr),
            $crate::kernels::mask16(nr.saturating_sub(16)),
        );
        let (b0, b1) = if bias.is_null() {
            (_mm512_setzero_ps(), _mm512_setzero_ps())
        } else {
            // The bias has nr elements; masked loads touch only those.
            (
                _mm512_maskz_loadu_ps(m0, bias),
                _mm512_maskz_loadu_ps(m1, bias.wrapping_add(16)),
            )
        };
        for i in 0..$r {
            let (mut v0, mut v1) = ($acc.0[i], $acc.1[i]);
            if !bias.is_null() {
                v0 = _mm512_add_ps(v0, b0);
                v1 = _mm512_add_ps(v1, b1);
            }
            let cr: *mut f32 = $c.wrapping_add(i * $ldc);
            // Masked stores touch only the tile's nr columns of row i < R.
            if nr == $crate::kernels::NR {
                _mm512_storeu_ps(cr, v0);
                _mm512_storeu_ps(cr.add(16), v1);
            } else {
                _mm512_mask_storeu_ps(cr, m0, v0);
                _mm512_mask_storeu_ps(cr.wrapping_add(16), m1, v1);
            }
        }
    }};
}
#[cfg(target_arch = "x86_64")]
pub(crate) use store_acc;

/// A weight packed for one of the GEMMs, and what its kernel brings to the blocked loop nest
/// both GEMMs share ([`run_part`]): the packed element type, the block sizes, the A packing
/// and buffer, and the microtile call.
///
/// # Safety
/// [`run_part`] relies on these, unchecked: [`panels`](Self::panels) holds
/// `n.div_ceil(NR) · depth · NR` elements (aligned as the microkernels load them);
/// [`with_a_buf`](Self::with_a_buf) hands `f` at least `len` elements;
/// [`microtile`](Self::microtile), given a valid [`Tile`], reads and writes only what the tile
/// describes.
pub(crate) unsafe trait GemmWeight: Sync + Sized {
    /// Which microkernel runs.
    type Isa: Copy + Sync;
    /// An element of the packed A strips and weight panels: `f32`, or a pair of bf16 in a
    /// `u32`.
    type Elem: Copy;
    /// The GEMM's name in errors.
    const NAME: &'static str;
    /// Whether the microkernel prefetches the next weight panel's slice ([`Tile::pf`]).
    const PREFETCH: bool;
    /// Output features (rows of W).
    fn n(&self) -> usize;
    /// Input features (columns of W).
    fn k(&self) -> usize;
    /// K in packed elements (`k`, or the k pairs).
    fn depth(&self) -> usize;
    /// The weight panels: panel `p` is `[depth][NR]` elements from `p · depth · NR` on.
    fn panels(&self) -> &[Self::Elem];
    /// `(mc_blk, kc_blk)` for a part of `rows` (≥ 1) rows: rows of A per packed block and
    /// packed elements per K block, both ≥ 1.
    fn blocks(&self, rows: usize) -> (usize, usize);
    /// Runs `f` on an A buffer of at least `len` elements (any contents).
    fn with_a_buf<R>(len: usize, f: impl FnOnce(&mut [Self::Elem]) -> R) -> R;
    /// Packs `block` of A into `buf` as `MR`-row strips, `[kc][MR]` elements each (rows past
    /// `mc` and the k past K zero).
    fn pack_a(isa: Self::Isa, block: &ABlock, buf: &mut [Self::Elem]);
    /// One microkernel call.
    ///
    /// # Safety
    /// The pointers in `t` are valid as documented on [`Tile`]; `isa` is supported by this CPU.
    unsafe fn microtile(isa: Self::Isa, t: &Tile<Self::Elem>);
}

/// One GEMM call's operands, shared by its threads.
pub(crate) struct Job<'a, W: GemmWeight> {
    pub isa: W::Isa,
    /// A: rows of stride `lda`.
    pub a: &'a [f32],
    pub lda: usize,
    pub w: &'a W,
    pub bias: Option<&'a [f32]>,
    /// C: `m × n`, row-major.
    pub c: SendPtr<f32>,
}

/// The part of A one K block packs: rows `ic .. ic + mc`, packed elements `kb .. kb + kc`
/// (k, or k pairs) of A's `k` columns (row stride `lda`).
pub(crate) struct ABlock<'a> {
    pub a: &'a [f32],
    pub lda: usize,
    pub k: usize,
    pub ic: usize,
    pub mc: usize,
    pub kb: usize,
    pub kc: usize,
}

/// One microkernel call: C[mr, nr] (+)= A-strip · W-slice over `kc` packed elements.
pub(crate) struct Tile<E> {
    pub kc: usize,
    /// Packed A strip: `[kc][MR]` (rows past `mr` are zero).
    pub a: *const E,
    /// Weight panel slice: `[kc][NR]`.
    pub w: *const E,
    /// C at the tile's top-left element; row stride `ldc`.
    pub c: *mut f32,
    pub ldc: usize,
    pub mr: usize,
    pub nr: usize,
    /// First K block: start from zero instead of the partial sums in C.
    pub first: bool,
    /// Last K block: add these `nr` bias values (null: none or not the last block).
    pub bias: *const f32,
    /// Cache lines to prefetch from `pf`, one per k step (a hint only: never dereferenced;
    /// only kernels with [`GemmWeight::PREFETCH`] get any).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub pf: *const E,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub pf_lines: usize,
}

/// Computes rows `r0..r1` × panels `p0..p1` of C, then (if given) runs the epilogue on each
/// finished block of rows. Loops (BLIS order): row blocks of A → K blocks (pack A) → weight
/// panels (with [`GemmWeight::PREFETCH`], the next panel's slice is prefetched meanwhile) →
/// `MR`-row strips → microtile. Partial sums of C are stored after each K block and
/// reloaded for the next.
///
/// # Safety
/// `job.c` points to `m × n` f32 that no one else reads or writes in rows `r0..r1` ×
/// panels `p0..p1` during the call; the epilogue needs the whole rows (`p0..p1` = all).
unsafe fn run_part<W: GemmWeight>(
    job: &Job<W>,
    r0: usize,
    r1: usize,
    p0: usize,
    p1: usize,
    epilogue: Option<Epilogue>,
) {
    let (n, depth) = (job.w.n(), job.w.depth());
    let (mc_blk, kc_blk) = job.w.blocks(r1 - r0);
    // Packed A for one block, in whole strips: only as large as this part needs.
    let len = mc_blk.min(r1 - r0).div_ceil(MR) * MR * kc_blk.min(depth);
    // Elements per cache line (prefetch addresses).
    let line = 64 / std::mem::size_of::<W::Elem>();
    W::with_a_buf(len, |buf| {
        let wdata = job.w.panels();
        let mut ic = r0;
        while ic < r1 {
            let mc = mc_blk.min(r1 - ic);
            let strips = mc.div_ceil(MR);
            let mut kb = 0;
            while kb < depth {
                let kc = kc_blk.min(depth - kb);
                let block = ABlock {
                    a: job.a,
                    lda: job.lda,
                    k: job.w.k(),
                    ic,
                    mc,
                    kb,
                    kc,
                };
                W::pack_a(job.isa, &block, buf);
                let first = kb == 0;
                let last = kb + kc == depth;
                // The next panel's slice is `lines` cache lines: each strip prefetches its share.
                let lines = kc * NR / line;
                let share = lines.div_ceil(strips);
                for p in p0..p1 {
                    let nr = NR.min(n - p * NR);
                    let wp = wdata[(p * depth + kb) * NR..].as_ptr();
                    let bias = match job.bias {
                        Some(b) if last => b[p * NR..].as_ptr(),
                        _ => std::ptr::null(),
                    };
                    let next = (W::PREFETCH && p + 1 < p1)
                        .then(|| wdata[((p + 1) * depth + kb) * NR..].as_ptr());
                    for s in 0..strips {
                        let mr = MR.min(mc - s * MR);
                        let (pf, pf_lines) = match next {
                            Some(q) => {
                                let done = (s * share).min(lines);
                                (q.wrapping_add(done * line), share.min(lines - done))
                            }
                            None => (std::ptr::null(), 0),
                        };
                        let ap = buf[s * kc * MR..].as_ptr();
                        // SAFETY: rows ic + s·MR .. + mr < r1 ≤ m and columns p·NR .. + nr ≤ n
                        // are inside C; `ap` holds kc · MR elements (the buffer has `len`) and
                        // `wp` kc · NR (the panel slice from kb on); `bias` has nr elements
                        // from p·NR on or is null; `job.isa` was chosen by detection.
                        unsafe {
                            let cp = job.c.0.add((ic + s * MR) * n + p * NR);
                            let tile = Tile {
                                kc,
                                a: ap,
                                w: wp,
                                c: cp,
                                ldc: n,
                                mr,
                                nr,
                                first,
                                bias,
                                pf,
                                pf_lines,
                            };
                            W::microtile(job.isa, &tile);
                        }
                    }
                }
                kb += kc;
            }
            if let Some(e) = epilogue {
                // SAFETY: rows ic .. ic + mc are this thread's (see the contract), finished,
                // and no pointer into them is used while the slice lives.
                let rows = unsafe { std::slice::from_raw_parts_mut(job.c.0.add(ic * n), mc * n) };
                e(rows);
            }
            ic += mc;
        }
    })
}

/// The weight check and size both packers share: errors (as `name`) unless `w` holds
/// `n × k` values; else the length of its `n.div_ceil(NR)` panels of `[depth][NR]` elements.
fn panels_len(name: &str, w: &[f32], n: usize, k: usize, depth: usize) -> Result<usize> {
    if n.checked_mul(k) != Some(w.len()) {
        return Err(Error::Shape(format!(
            "{name}: weight has {} elements, expected {n} x {k}",
            w.len()
        )));
    }
    n.div_ceil(NR)
        .checked_mul(depth)
        .and_then(|x| x.checked_mul(NR))
        .ok_or_else(|| Error::Shape(format!("{name}: size overflows")))
}

/// Packs `w` (`n × k`, row-major, checked by [`panels_len`]) into `panels`: element `kk` of
/// column `j` of panel `p` is `elem(row, kk)` of `row`, W's row `p · NR + j`. Elements of
/// columns past `n` are left as they are (zero).
fn pack_panels<E>(
    w: &[f32],
    n: usize,
    k: usize,
    depth: usize,
    panels: &mut [E],
    elem: impl Fn(&[f32], usize) -> E,
) {
    for col in 0..n {
        let row = &w[col * k..(col + 1) * k];
        let panel = &mut panels[(col / NR) * depth * NR..];
        let j = col % NR;
        for kk in 0..depth {
            panel[kk * NR + j] = elem(row, kk);
        }
    }
}

/// Shape checks shared by both GEMMs: A holds `m` rows of stride `lda ≥ k`, C is `m × n`,
/// the bias has `n` values.
#[allow(clippy::too_many_arguments)]
fn check_shapes(
    name: &str,
    a: &[f32],
    m: usize,
    lda: usize,
    n: usize,
    k: usize,
    bias: Option<&[f32]>,
    c: &[f32],
) -> Result<()> {
    let err = |msg: String| Err(Error::Shape(format!("{name}: {msg}")));
    if lda < k {
        return err(format!("lda {lda} < K {k}"));
    }
    if m > 0 {
        let need = (m - 1)
            .checked_mul(lda)
            .and_then(|x| x.checked_add(k))
            .ok_or_else(|| Error::Shape(format!("{name}: A size overflows")))?;
        if a.len() < need {
            return err(format!(
                "A has {} elements, {m} rows of stride {lda} and width {k} need {need}",
                a.len()
            ));
        }
    }
    if m.checked_mul(n) != Some(c.len()) {
        return err(format!("C has {} elements, expected {m} x {n}", c.len()));
    }
    if let Some(b) = bias {
        if b.len() != n {
            return err(format!("bias has {} elements, expected {n}", b.len()));
        }
    }
    Ok(())
}

/// `C[M, N] = A[M, K] · Wᵀ + bias[N]` on `isa`'s kernel for `W`: checks shapes, handles empty
/// shapes and K = 0, then splits C over `threads` — over rows when every thread gets at least
/// two `MR`-row strips (each thread packs its own A rows and streams all of W), else over the
/// `NR`-column weight panels (each
/// thread streams its share of W; the epilogue then runs once on all of C). Every part runs on
/// rayon's pool: running the first part on the calling thread (`in_place_scope`) measured
/// slower in whole models (ViT-B/16 b1 3.3–4.0 vs 5.4 img/s, b8 4.8 vs 5.4).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm<W: GemmWeight>(
    isa: W::Isa,
    a: &[f32],
    m: usize,
    lda: usize,
    w: &W,
    bias: Option<&[f32]>,
    c: &mut [f32],
    epilogue: Option<Epilogue>,
    threads: usize,
) -> Result<()> {
    let (n, k) = (w.n(), w.k());
    check_shapes(W::NAME, a, m, lda, n, k, bias, c)?;
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        for row in c.chunks_mut(n) {
            match bias {
                Some(b) => row.copy_from_slice(b),
                None => row.fill(0.0),
            }
        }
        if let Some(e) = epilogue {
            e(c);
        }
        return Ok(());
    }
    let job = &Job {
        isa,
        a,
        lda,
        w,
        bias,
        c: SendPtr(c.as_mut_ptr()),
    };
    // SAFETY: `split_parts` hands each part a disjoint block of C (rows × panels), which
    // holds m × n elements (checked) and is exclusively borrowed for this call.
    split_parts(m, n, c, threads, epilogue, |r0, r1, p0, p1, epi| unsafe {
        run_part(job, r0, r1, p0, p1, epi)
    });
    Ok(())
}

/// Runs `part(r0, r1, p0, p1, epilogue)` over `threads` disjoint blocks of C [m, n] (rows
/// `r0..r1` × weight panels `p0..p1`) on rayon's pool: over rows when every thread gets at
/// least two `MR`-row strips (each part then runs the epilogue on its own rows), else over the
/// `NR`-column panels (the epilogue then runs once on all of C, after every part). The
/// packed GEMMs' shared thread split.
pub(crate) fn split_parts<F>(
    m: usize,
    n: usize,
    c: &mut [f32],
    threads: usize,
    epilogue: Option<Epilogue>,
    part: F,
) where
    F: Fn(usize, usize, usize, usize, Option<Epilogue>) + Sync,
{
    let part = &part;
    let panels = n.div_ceil(NR);
    let threads = threads.max(1);
    if threads == 1 {
        part(0, m, 0, panels, epilogue);
    } else if m >= threads * 2 * MR {
        rayon::scope(|s| {
            for t in 0..threads {
                let (r0, r1) = (t * m / threads, (t + 1) * m / threads);
                s.spawn(move |_| part(r0, r1, 0, panels, epilogue));
            }
        });
    } else {
        let t = threads.min(panels);
        rayon::scope(|s| {
            for i in 0..t {
                let (p0, p1) = (i * panels / t, (i + 1) * panels / t);
                s.spawn(move |_| part(0, m, p0, p1, None));
            }
        });
        if let Some(e) = epilogue {
            // Here m < 2 · threads · MR rows: one block.
            e(c);
        }
    }
}

/// f32 → bf16 bits with round-to-nearest-even, as `vcvtne2ps2bf16` does it: NaN stays NaN
/// (quietened, sign kept), subnormal inputs become a signed zero, overflow rounds to ±inf.
#[inline]
pub fn f32_to_bf16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) | 0x0040) as u16;
    }
    if bits & 0x7f80_0000 == 0 {
        // Zero or subnormal: flushed, sign kept.
        return ((bits >> 16) & 0x8000) as u16;
    }
    let round = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(round) >> 16) as u16
}

/// bf16 bits → f32 (exact).
#[inline]
pub fn bf16_bits_to_f32(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

/// Two bf16 values packed the way `vdpbf16ps` pairs them in a 32-bit lane: `lo` (the even k)
/// in bits 0..16, `hi` (the odd k) in bits 16..32.
#[inline]
pub(crate) fn pack_pair(lo: f32, hi: f32) -> u32 {
    f32_to_bf16_bits(lo) as u32 | ((f32_to_bf16_bits(hi) as u32) << 16)
}

/// A raw pointer that may cross threads. Users guarantee that the threads touch disjoint
/// elements and that the pointee outlives them.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr<T>(pub *mut T);
// SAFETY: only a pointer value; every dereference site documents why its accesses are disjoint
// between threads and within the pointee's lifetime.
unsafe impl<T> Send for SendPtr<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for SendPtr<T> {}
