//! Hand-written CPU kernels.
//!
//! - [`bf16`]: a bf16 GEMM for linear layers (AVX512_BF16 `vdpbf16ps` with a portable fallback).
//! - [`f32`]: an f32 GEMM for linear layers with a prepacked weight (AVX-512F with a portable
//!   fallback).

pub mod bf16;
pub mod f32;

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
