//! What the GEMM benches share: timing, inputs, the ViT-B/16 linear shapes.
#![allow(dead_code)] // each bench uses its own subset
use std::time::Instant;

/// Seconds per measurement: `GEMM_BENCH_SECS` (default 0.4).
pub fn secs_per_measurement() -> f64 {
    std::env::var("GEMM_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.4)
}

/// The smallest of `measure()`'s results over about `secs` seconds (at least 3 calls after a
/// warm-up call); `measure` runs the work once and returns its cost.
pub fn best_of(secs: f64, mut measure: impl FnMut() -> f64) -> f64 {
    measure();
    let start = Instant::now();
    let mut best = f64::INFINITY;
    let mut runs = 0;
    while runs < 3 || start.elapsed().as_secs_f64() < secs {
        best = best.min(measure());
        runs += 1;
    }
    best
}

/// Best seconds per call of `f` (see [`best_of`]), read on `clock` (seconds from any origin).
pub fn best_time_by(secs: f64, clock: impl Fn() -> f64, mut f: impl FnMut()) -> f64 {
    best_of(secs, || {
        let t = clock();
        f();
        clock() - t
    })
}

/// [`best_time_by`] in wall time.
pub fn best_time(secs: f64, f: impl FnMut()) -> f64 {
    let origin = Instant::now();
    best_time_by(secs, move || origin.elapsed().as_secs_f64(), f)
}

/// `len` deterministic pseudo-random values in [-0.5, 0.5), continuing from `seed`.
pub fn random(len: usize, seed: &mut u64) -> Vec<f32> {
    (0..len)
        .map(|_| {
            *seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((*seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect()
}

/// ViT-B/16's linear layers at batch 1 (M = 197 tokens) and 8: (name, M, K, N).
pub const VIT_SHAPES: &[(&str, usize, usize, usize)] = &[
    ("vit b1 qkv", 197, 768, 2304),
    ("vit b1 proj", 197, 768, 768),
    ("vit b1 fc1", 197, 768, 3072),
    ("vit b1 fc2", 197, 3072, 768),
    ("vit b8 qkv", 1576, 768, 2304),
    ("vit b8 proj", 1576, 768, 768),
    ("vit b8 fc1", 1576, 768, 3072),
    ("vit b8 fc2", 1576, 3072, 768),
];
