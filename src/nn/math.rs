//! Vector math the kernels share: `exp` and `erf` as plain arithmetic (so loops over them
//! vectorise), explicit-lane reductions, row softmax, and the `multiversion!` macro that compiles
//! a hot loop a second time with AVX-512 enabled and picks the variant at run time.
//!
//! Leaf module: no tensors, no layers.

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
            if $crate::nn::math::has_avx512() {
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
    /// `out += r`, elementwise.
    pub(crate) fn add_into(out: &mut [f32], r: &[f32]) {
        for (o, r) in out.iter_mut().zip(r) {
            *o += r;
        }
    }
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
