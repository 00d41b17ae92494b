//! bf16 and int8 GEMM throughput (GFLOP/s or GOP/s, best of several runs) for the linear-layer
//! shapes of ViT-B/16 and the CLIP text tower, with 1 and 2 threads, against candle's f32
//! matmul, plus the `vdpbf16ps` and `vpdpbusd` peaks of tight loops of independent
//! accumulators. The int8 columns include the per-call quantisation of A.
//!
//! The 1-thread column is this thread's CPU time (Linux), so time lost to other processes on a
//! shared machine does not count; the 2-thread column and candle are wall time; "t2 (cpu)" is
//! the 2-thread critical path in CPU time (the busiest thread per call). Run pinned
//! (`taskset -c 0 cargo bench --bench gemm_bf16`: rayon and candle then see one core) for
//! single-core candle numbers, unpinned for the 2-thread numbers. `GEMM_BENCH_SECS` sets the time
//! per measurement (default 0.4 s).
mod common;

use candle_core::{Device, Tensor};
use common::{best_of, best_time, best_time_by, random, secs_per_measurement, VIT_SHAPES};
use std::hint::black_box;
use tessera::kernels::bf16::{gemm_bf16, has_avx512_bf16, PackedBf16};
use tessera::kernels::int8::{gemm_i8, PackedI8};

/// This thread's CPU time in seconds (Linux), which leaves out time lost to other processes
/// on a shared machine.
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
fn thread_cpu_secs() -> Option<f64> {
    #[repr(C)]
    struct Timespec {
        sec: i64,
        nsec: i64,
    }
    extern "C" {
        fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
    }
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    let mut ts = Timespec { sec: 0, nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec (two 64-bit fields on 64-bit Linux).
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0).then_some(ts.sec as f64 + ts.nsec as f64 * 1e-9)
}

#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
fn thread_cpu_secs() -> Option<f64> {
    None
}

/// Best seconds per call of `f`: wall time, or with `cpu` this thread's CPU time where
/// available (for single-threaded work that runs on the calling thread).
fn best_time_with(secs: f64, cpu: bool, f: impl FnMut()) -> f64 {
    match thread_cpu_secs() {
        Some(_) if cpu => best_time_by(secs, || thread_cpu_secs().unwrap_or(0.0), f),
        _ => best_time(secs, f),
    }
}

/// Best critical path of `f` run on this thread and rayon's pool: per call, the largest CPU
/// time this thread or any pool thread spent (read before and after with `rayon::broadcast`). It leaves out time lost to
/// other processes, and includes the pool threads' spinning while they wait for work.
fn best_pool_cpu_time(secs: f64, mut f: impl FnMut()) -> Option<f64> {
    let read = || {
        let mut v = rayon::broadcast(|_| thread_cpu_secs());
        v.push(thread_cpu_secs());
        v
    };
    read().iter().all(Option::is_some).then(|| {
        best_of(secs, || {
            let before = read();
            f();
            let after = read();
            before
                .iter()
                .zip(&after)
                .map(|(b, a)| a.unwrap_or(0.0) - b.unwrap_or(0.0))
                .fold(0f64, f64::max)
        })
    })
}

fn peak_gflops(threads: usize, secs: f64, int8: bool) -> Option<f64> {
    let (dp, flop, _) = if int8 {
        common::peak::int8_loop()?
    } else {
        common::peak::bf16_loop()?
    };
    let iters = 200_000;
    // SAFETY: `bf16_loop` returns only a loop whose features this CPU has.
    let run = || {
        black_box(unsafe { dp(iters, black_box(1e-3)) });
    };
    let work = || {
        rayon::in_place_scope(|s| {
            for _ in 1..threads {
                s.spawn(|_| run());
            }
            run();
        })
    };
    let t = if threads == 1 {
        best_time_with(secs, true, work)
    } else {
        best_pool_cpu_time(secs, work)?
    };
    Some(threads as f64 * iters as f64 * flop / t / 1e9)
}

fn main() {
    let secs = secs_per_measurement();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "avx512_bf16: {}, cores available: {cores} (rayon threads: {})",
        has_avx512_bf16(),
        rayon::current_num_threads()
    );
    for t in [1, 2].into_iter().take(if cores > 1 { 2 } else { 1 }) {
        match peak_gflops(t, secs, false) {
            Some(g) => println!("peak vdpbf16ps loop, {t} thread(s) (cpu time): {g:.1} GFLOP/s"),
            None => println!("peak: no AVX512_BF16"),
        }
        match peak_gflops(t, secs, true) {
            Some(g) => println!("peak vpdpbusd loop, {t} thread(s) (cpu time): {g:.1} GOP/s"),
            None => println!("peak: no AVX512_VNNI"),
        }
    }
    let more: &[(&str, usize, usize, usize)] = &[
        ("clip 8x16 qkv", 128, 512, 1536),
        ("clip 8x16 fc1", 128, 512, 2048),
        ("clip 8x77 proj", 616, 512, 512),
        ("clip 8x77 qkv", 616, 512, 1536),
        ("clip 8x77 fc1", 616, 512, 2048),
        ("clip 8x77 fc2", 616, 2048, 512),
        ("tiny m8", 8, 768, 768),
        ("attn qk 197", 197, 64, 197),
        ("attn pv 197", 197, 197, 64),
        ("tiny m8 fc1", 8, 768, 3072),
    ];
    println!(
        "{:<16} {:>5} {:>5} {:>5} | {:>9} {:>9} {:>11} | {:>9} {:>9} | {:>11}",
        "shape",
        "M",
        "K",
        "N",
        "bf16 t1",
        "bf16 t2",
        "t2 (cpu)",
        "int8 t1",
        "int8 t2",
        "candle f32"
    );
    let dev = Device::Cpu;
    let mut seed = 1u64;
    let filter = std::env::var("GEMM_BENCH_FILTER").unwrap_or_default();
    let with_candle = std::env::var("GEMM_BENCH_CANDLE").map_or(true, |v| v != "0");
    for &(name, m, k, n) in VIT_SHAPES.iter().chain(more) {
        if !name.contains(&filter) {
            continue;
        }
        let a = random(m * k, &mut seed);
        let w = random(n * k, &mut seed);
        let bias = random(n, &mut seed);
        let packed = PackedBf16::pack(&w, n, k).expect("shapes agree");
        let mut c = vec![0f32; m * n];
        let flops = 2.0 * (m * n * k) as f64;
        // GFLOP/s (GOP/s) of `run(threads)` on 1 and 2 threads. Two threads need two cores
        // (pinned to one, the CPU-time column would halve the work); one thread runs on this
        // thread, so its CPU time counts.
        let t1_t2 = |run: &mut dyn FnMut(usize)| {
            let mut g = [f64::NAN; 2];
            for (i, t) in [1, 2]
                .into_iter()
                .enumerate()
                .take(if cores > 1 { 2 } else { 1 })
            {
                g[i] = flops / best_time_with(secs, t == 1, || run(t)) / 1e9;
            }
            g
        };
        let [b1, b2] = t1_t2(&mut |t| {
            gemm_bf16(&a, m, k, &packed, Some(&bias), &mut c, None, t).expect("shapes agree")
        });
        let packed8 = PackedI8::pack(&w, n, k).expect("shapes agree");
        let g8 = t1_t2(&mut |t| {
            gemm_i8(&a, m, k, &packed8, Some(&bias), &mut c, None, t).expect("shapes agree")
        });
        let mut g = [b1, b2, f64::NAN];
        if cores > 1 {
            g[2] = best_pool_cpu_time(secs, || {
                gemm_bf16(&a, m, k, &packed, Some(&bias), &mut c, None, 2).expect("shapes agree")
            })
            .map_or(f64::NAN, |s| flops / s / 1e9);
        }
        let candle = if with_candle {
            let x = Tensor::from_vec(a.clone(), (m, k), &dev).expect("tensor");
            let wt = Tensor::from_vec(w.clone(), (n, k), &dev).expect("tensor");
            let wtt = wt.t().expect("transpose");
            let s = best_time(secs, || {
                black_box(x.matmul(&wtt).expect("matmul"));
            });
            flops / s / 1e9
        } else {
            f64::NAN
        };
        println!(
            "{name:<16} {m:>5} {k:>5} {n:>5} | {:>9.1} {:>9.1} {:>11.1} | {:>9.1} {:>9.1} | {:>11.1}",
            g[0], g[1], g[2], g8[0], g8[1], candle
        );
    }
}
