//! Test helpers both GEMMs' tests share.

/// Deterministic pseudo-random f32 in [-1, 1).
pub(crate) fn rvec(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// f64 reference of `A · Wᵀ + bias` with the inputs passed through `round` (identity or
/// bf16 rounding); returns (C, Σ|a·w| per element, the scale rounding errors grow with).
#[allow(clippy::too_many_arguments)]
pub(crate) fn reference(
    a: &[f32],
    m: usize,
    lda: usize,
    w: &[f32],
    n: usize,
    k: usize,
    bias: Option<&[f32]>,
    round: fn(f32) -> f64,
) -> (Vec<f64>, Vec<f64>) {
    let mut c = vec![0f64; m * n];
    let mut mag = vec![0f64; m * n];
    for i in 0..m {
        for j in 0..n {
            let (mut s, mut g) = (0f64, 0f64);
            for p in 0..k {
                let v = round(a[i * lda + p]) * round(w[j * k + p]);
                s += v;
                g += v.abs();
            }
            if let Some(b) = bias {
                s += b[j] as f64;
                g += (b[j] as f64).abs();
            }
            c[i * n + j] = s;
            mag[i * n + j] = g;
        }
    }
    (c, mag)
}

/// The test epilogue (`2x + 1`) and its effect on the reference.
pub(crate) fn epilogue(x: &mut [f32]) {
    x.iter_mut().for_each(|v| *v = 2.0 * *v + 1.0);
}

/// Asserts `got` equals the reference within `abs + rel · √k · Σ|a·w|` per element (the
/// epilogue, when applied, doubles values and errors).
#[allow(clippy::too_many_arguments)]
pub(crate) fn assert_close(
    got: &[f32],
    (r, mag): (&[f64], &[f64]),
    n: usize,
    k: usize,
    with_epi: bool,
    (abs, rel): (f64, f64),
    what: &str,
) {
    for idx in 0..got.len() {
        let (want, scale) = if with_epi {
            (2.0 * r[idx] + 1.0, 2.0)
        } else {
            (r[idx], 1.0)
        };
        let tol = abs + rel * (k as f64).sqrt() * mag[idx] * scale;
        let g = got[idx] as f64;
        assert!(
            (g - want).abs() <= tol,
            "{what} at ({}, {}): got {g}, want {want}",
            idx / n,
            idx % n
        );
    }
}
