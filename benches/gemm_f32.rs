//! f32 GEMM throughput (GFLOP/s, best of several runs) for the linear-layer shapes of ViT-B/16
//! at batch 1 (M = 197) and 8 (M = 1576), with 1 and 2 threads: tessera's prepacked-weight
//! kernel (`gemm_f32_packed`) against `gemm::gemm` called as candle calls it (rhs = Wᵀ through
//! strides, rhs_cs = K, rhs_rs = 1; the weight is re-packed on every call), and the fp32 FMA
//! peak of a tight loop of independent FMAs (`common::peak`).
//!
//! All columns are wall time. Run pinned (`taskset -c 0 cargo bench --bench gemm_f32`) for
//! single-core numbers without interference from the second thread, unpinned for the 2-thread
//! numbers. `GEMM_BENCH_SECS` sets the time per measurement (default 0.4 s).
mod common;

use common::{best_time, random, secs_per_measurement, VIT_SHAPES};
use gemm::Parallelism;
use std::hint::black_box;
use tessera::kernels::f32::{gemm_f32_packed, has_avx512f, PackedF32};

fn peak_gflops(threads: usize, secs: f64) -> Option<f64> {
    let (fma, flop, _) = common::peak::f32_loop()?;
    let iters = 200_000;
    // SAFETY: `f32_loop` returns only a loop whose features this CPU has.
    let run = || black_box(unsafe { fma(iters, black_box(1e-3)) });
    let t = best_time(secs, || {
        if threads == 1 {
            run();
        } else {
            rayon::scope(|s| {
                for _ in 0..threads {
                    s.spawn(|_| {
                        run();
                    });
                }
            })
        }
    });
    Some(threads as f64 * iters as f64 * flop / t / 1e9)
}

/// `C = A · Wᵀ` with the gemm crate, as candle's CPU matmul calls it for `x.matmul(&w.t())`.
#[allow(clippy::too_many_arguments)]
fn gemm_crate(a: &[f32], w: &[f32], c: &mut [f32], m: usize, k: usize, n: usize, threads: usize) {
    assert!(a.len() >= m * k && w.len() >= n * k && c.len() >= m * n);
    let par = if threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    // SAFETY: dst is m × n (row stride n), lhs m × k (row stride k), rhs k × n read from W
    // [n, k] with column stride k and row stride 1; all lengths were checked above.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            k as isize,
            w.as_ptr(),
            k as isize,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            par,
        )
    }
}

fn main() {
    let secs = secs_per_measurement();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "avx512f: {}, cores available: {cores} (rayon threads: {})",
        has_avx512f(),
        rayon::current_num_threads()
    );
    let mut peak = [0f64; 2];
    for (i, t) in [1, 2].into_iter().enumerate() {
        match peak_gflops(t, secs) {
            Some(g) => {
                peak[i] = g;
                println!("peak fp32 FMA loop, {t} thread(s): {g:.1} GFLOP/s")
            }
            None => println!("peak: no AVX-512F or AVX2 + FMA"),
        }
    }
    println!(
        "{:<12} {:>5} {:>5} {:>5} | {:>8} {:>8} | {:>8} {:>8} | {:>6} {:>6}",
        "shape", "M", "K", "N", "ours t1", "gemm t1", "ours t2", "gemm t2", "%pk t1", "%pk t2"
    );
    let mut seed = 1u64;
    for &(name, m, k, n) in VIT_SHAPES {
        let a = random(m * k, &mut seed);
        let w = random(n * k, &mut seed);
        let bias = random(n, &mut seed);
        let packed = PackedF32::pack(&w, n, k).expect("shapes agree");
        let mut c = vec![0f32; m * n];
        let flops = 2.0 * (m * n * k) as f64;
        let mut ours = [0f64; 2];
        let mut theirs = [0f64; 2];
        for (i, t) in [1, 2].into_iter().enumerate() {
            let s = best_time(secs, || {
                gemm_f32_packed(&a, m, k, &packed, Some(&bias), &mut c, None, t)
                    .expect("shapes agree")
            });
            ours[i] = flops / s / 1e9;
            let s = best_time(secs, || {
                gemm_crate(&a, &w, &mut c, m, k, n, t);
                black_box(&c);
            });
            theirs[i] = flops / s / 1e9;
        }
        let pct = |g: f64, p: f64| if p > 0.0 { 100.0 * g / p } else { 0.0 };
        println!(
            "{name:<12} {m:>5} {k:>5} {n:>5} | {:>8.1} {:>8.1} | {:>8.1} {:>8.1} | {:>5.0}% {:>5.0}%",
            ours[0],
            theirs[0],
            ours[1],
            theirs[1],
            pct(ours[0], peak[0]),
            pct(ours[1], peak[1]),
        );
    }
}
