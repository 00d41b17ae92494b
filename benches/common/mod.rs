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

/// Tight loops of independent FMAs (or `vdpbf16ps`): the machine's peak, for every bench that
/// reports a fraction of it. Each returns a sum so nothing is optimised away.
pub mod peak {
    /// A peak loop: `iters` rounds, a value to fold in (kept opaque with `black_box`).
    pub type Loop = unsafe fn(usize, f32) -> f32;

    /// The fp32 FMA loop of the widest ISA this CPU has (AVX-512, else AVX2 + FMA), its FLOP
    /// per round and the ISA's name.
    pub fn f32_loop() -> Option<(Loop, f64, &'static str)> {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") {
                return Some((x86::fma512, 24.0 * 32.0, "AVX-512 FMA"));
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return Some((x86::fma256, 12.0 * 16.0, "AVX2 FMA"));
            }
        }
        None
    }

    /// The `vdpbf16ps` loop where the CPU has AVX512_BF16, its FLOP per round, its name.
    pub fn bf16_loop() -> Option<(Loop, f64, &'static str)> {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx512bf16") && is_x86_feature_detected!("avx512bw") {
            return Some((x86::dpbf16, 24.0 * 64.0, "AVX512_BF16 vdpbf16ps"));
        }
        None
    }

    /// The `vpdpbusd` loop where the CPU has AVX512_VNNI, its integer ops per round (a
    /// multiply and an add per u8·s8 product), its name.
    pub fn int8_loop() -> Option<(Loop, f64, &'static str)> {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512bw") {
            return Some((x86::dpbusd, 24.0 * 128.0, "AVX512_VNNI vpdpbusd"));
        }
        None
    }

    #[cfg(target_arch = "x86_64")]
    mod x86 {
        use std::arch::x86_64::*;

        /// One peak loop: `$n` independent accumulators, each updated by `$step` every round
        /// (`$acc` the accumulator, operands `$a`, `$b` made from the input `x`), then summed
        /// by `$reduce` (`$s`, the lane-wise sum). The empty `asm!` keeps each round a chain
        /// of real instructions.
        macro_rules! peak_loop {
            ($(#[$doc:meta])* $name:ident, $features:literal, $n:literal, $zero:expr,
             |$x:ident| ($a:expr, $b:expr), |$acc:ident, $va:ident, $vb:ident| $step:expr,
             $add:path, |$s:ident| $reduce:expr) => {
                $(#[$doc])*
                #[target_feature(enable = $features)]
                pub unsafe fn $name(iters: usize, $x: f32) -> f32 {
                    let ($va, $vb) = ($a, $b);
                    let mut accs = [$zero; $n];
                    for _ in 0..iters {
                        for $acc in accs.iter_mut() {
                            *$acc = $step;
                        }
                        std::arch::asm!("", options(nomem, nostack, preserves_flags));
                    }
                    let $s = accs.iter().fold($zero, |s, &v| $add(s, v));
                    $reduce
                }
            };
        }

        peak_loop!(
            /// 24 independent 16-lane FMAs a round (32 registers hold them and the operands).
            ///
            /// # Safety
            /// The CPU has avx512f.
            fma512, "avx512f", 24, _mm512_setzero_ps(),
            |x| (_mm512_set1_ps(x), _mm512_set1_ps(0.999)),
            |v, a, b| _mm512_fmadd_ps(*v, b, a),
            _mm512_add_ps, |s| _mm512_reduce_add_ps(s)
        );

        peak_loop!(
            /// 12 independent 8-lane FMAs a round: AVX2 has 16 ymm registers, and 16
            /// accumulators spilled (measured half the peak on Zen 3).
            ///
            /// # Safety
            /// The CPU has avx2 and fma.
            fma256, "avx2,fma", 12, _mm256_setzero_ps(),
            |x| (_mm256_set1_ps(x), _mm256_set1_ps(0.999)),
            |v, a, b| _mm256_fmadd_ps(*v, b, a),
            _mm256_add_ps, |s| {
                let mut out = [0f32; 8];
                _mm256_storeu_ps(out.as_mut_ptr(), s);
                out.iter().sum()
            }
        );

        peak_loop!(
            /// 24 independent `vdpbf16ps` a round (64 flops each).
            ///
            /// # Safety
            /// The CPU has avx512f, avx512bw, avx512bf16.
            dpbf16, "avx512f,avx512bw,avx512bf16", 24, _mm512_setzero_ps(),
            |x| (
                std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(x.to_bits() as i32)),
                std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(0x3f80_3f80))
            ),
            |v, a, b| _mm512_dpbf16_ps(*v, a, b),
            _mm512_add_ps, |s| _mm512_reduce_add_ps(s)
        );

        peak_loop!(
            /// 24 independent `vpdpbusd` a round (64 u8·s8 products, 128 ops each).
            ///
            /// # Safety
            /// The CPU has avx512f, avx512bw, avx512vnni.
            dpbusd, "avx512f,avx512bw,avx512vnni", 24, _mm512_setzero_si512(),
            |x| (_mm512_set1_epi32(x.to_bits() as i32), _mm512_set1_epi32(0x0101_0101)),
            |v, a, b| _mm512_dpbusd_epi32(*v, a, b),
            _mm512_add_epi32, |s| _mm512_reduce_add_epi32(s) as f32
        );
    }
}
