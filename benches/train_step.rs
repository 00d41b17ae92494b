//! Training-step throughput of the seed ViT (img 32, patch 4, dim 192, depth 6, heads 3,
//! ff 768, 10 classes, batch 64), and the fp32 matmul ceiling measured in the same process.
//!
//! `cargo bench --bench train_step` prints a table and, last, one JSON line that
//! `tools/bench.sh` pairs with PyTorch's numbers from the same run.
use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use std::time::Instant;
use tessera::data::{Augment, InMemory, Loader, Normalize};
use tessera::models::vit::{VisionTransformer, VitConfig};
use tessera::nn::ParamStore;
use tessera::train::{grads_data_parallel, single_threaded_ops, AdamW, AdamWConfig};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn matmul_gflops(n: usize) -> f64 {
    let dev = Device::Cpu;
    let a = Tensor::randn(0f32, 1.0, (n, n), &dev).unwrap();
    let b = Tensor::randn(0f32, 1.0, (n, n), &dev).unwrap();
    let _ = a.matmul(&b).unwrap();
    let times: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            let _ = a.matmul(&b).unwrap();
            t.elapsed().as_secs_f64()
        })
        .collect();
    2.0 * (n as f64).powi(3) / median(times) / 1e9
}

/// The 2048³ fp32 matmul ceiling with candle's default (all-core) threading, measured in a
/// child process: the training step below makes this process's ops single-threaded.
fn ceiling_gflops() -> f64 {
    let out = std::process::Command::new(std::env::current_exe().expect("bench executable"))
        .env("TESSERA_BENCH_CEILING", "1")
        .output()
        .expect("run ceiling child");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("ceiling number")
}

fn main() {
    if std::env::var("TESSERA_BENCH_CEILING").is_ok() {
        println!("{}", matmul_gflops(2048));
        return;
    }
    let ceiling = ceiling_gflops();
    // As `tessera train`: single-threaded ops, one data-parallel shard per core.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    single_threaded_ops();
    let steps: usize = std::env::var("BENCH_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let dev = Device::Cpu;
    let cfg = VitConfig::preset("cifar").unwrap(); // dropout 0.1, as the seed
    let batch = 64;
    let store = ParamStore::fresh(0, true, &dev);
    let model = VisionTransformer::new(store.var_builder(DType::F32), &cfg).unwrap();
    let mut opt = AdamW::new(store.vars(), AdamWConfig::default());
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let pixels: Vec<f32> = (0..batch * 3 * 32 * 32)
        .map(|_| rand::Rng::random::<f32>(&mut rng))
        .collect();
    let ds = InMemory {
        name: "random".into(),
        pixels,
        labels: (0..batch as u32).map(|i| i % 10).collect(),
        dims: (3, 32, 32),
        classes: (0..10).map(|i| i.to_string()).collect(),
    };
    let loader = Loader {
        dataset: &ds,
        batch_size: batch,
        normalize: Normalize {
            mean: vec![0.5; 3],
            std: vec![0.5; 3],
        },
        augment: Augment::default(),
        seed: 0,
    };
    let idx: Vec<usize> = (0..batch).collect();
    let mut n = 0u64;
    let mut step = || {
        let out = grads_data_parallel(&model, &loader, &idx, 0, n, 0.0, threads, &dev).unwrap();
        opt.step(&out.grads, 1e-4).unwrap();
        n += 1;
    };
    for _ in 0..2 {
        step();
    }
    let times: Vec<f64> = (0..steps)
        .map(|_| {
            let t = Instant::now();
            step();
            t.elapsed().as_secs_f64()
        })
        .collect();
    let t = median(times);
    let ips = batch as f64 / t;
    let flops = 3.0 * cfg.flops_per_image() * batch as f64; // forward + backward (2x)
    let achieved = flops / t / 1e9;
    println!("workload                       median      img/s   GFLOP/s  matmul-ceiling");
    println!(
        "seed ViT train step (b64)  {:>8.1} ms  {:>8.1}  {:>8.1}  {:>6.1}% of {:.0} GFLOP/s",
        t * 1e3,
        ips,
        achieved,
        100.0 * achieved / ceiling,
        ceiling
    );
    println!(
        "{}",
        serde_json::json!({"workload": "seed_vit_train_b64", "median_s": t, "images_per_s": ips,
            "gflops_per_step": flops / 1e9, "achieved_gflops": achieved, "matmul_2048_gflops": ceiling,
            "threads": threads})
    );
}
