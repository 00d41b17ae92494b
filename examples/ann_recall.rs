//! HNSW (USearch) against exact search on random unit vectors: recall@10, build time, query
//! latency and memory, at each `--n` (default 100k and 1M, width 512 as CLIP B/32's).
//! `--data subspace` draws them instead from a random 32-dimensional subspace plus 10 %
//! isotropic noise, renormalised: low intrinsic dimension, as real embeddings have, where
//! HNSW is meant to work (random unit vectors in 512 dimensions are its worst case: every point
//! is nearly as far as every other).
//!
//!     cargo run --release --example ann_recall -- [--n 100000,1000000] [--dim 512] [--queries 200] [--data random|subspace]
use std::time::Instant;
use tessera::pipelines::ann::{self, AnnOptions, Hnsw, Quantization};

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() -> tessera::Result<()> {
    let ns: Vec<usize> = arg("--n", "100000,1000000")
        .split(',')
        .map(|s| s.trim().parse().expect("--n: counts"))
        .collect();
    let dim: usize = arg("--dim", "512").parse().expect("--dim");
    let nq: usize = arg("--queries", "200").parse().expect("--queries");
    let quant = match arg("--quantization", "f32").as_str() {
        "f16" => Quantization::F16,
        "i8" => Quantization::I8,
        _ => Quantization::F32,
    };
    let subspace = arg("--data", "random") == "subspace";
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let data = |n: usize, seed: u64| {
        if subspace {
            subspace_vectors(n, dim, seed)
        } else {
            ann::random_unit_vectors(n, dim, seed)
        }
    };
    println!("{} unit vectors, width {dim}, {nq} queries, k = 10, {threads} threads, {quant:?} storage, M = 16, efConstruction = 128",
        if subspace { "32-dim subspace + 10 % noise" } else { "random" }
    );
    println!(
        "| n | build s | graph MB | RSS MB | exact ms/query | ef | recall@10 | HNSW ms/query |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for &n in &ns {
        let rows = data(n, 1);
        let queries = data(nq, 2);
        let t0 = Instant::now();
        let exact: Vec<_> = queries
            .iter()
            .map(|q| ann::exact_top_k(&rows, q, 10))
            .collect();
        let exact_ms = t0.elapsed().as_secs_f64() * 1e3 / nq as f64;
        let t0 = Instant::now();
        let h = Hnsw::build(
            &rows,
            &AnnOptions {
                quantization: quant,
                ..AnnOptions::default()
            },
        )?;
        let build = t0.elapsed().as_secs_f64();
        let graph_mb = h.memory_usage() as f64 / (1 << 20) as f64;
        for ef in [64, 128, 256, 512] {
            h.set_expansion_search(ef);
            let t0 = Instant::now();
            let approx: Vec<_> = queries
                .iter()
                .map(|q| h.search(q, 10))
                .collect::<tessera::Result<_>>()?;
            let ms = t0.elapsed().as_secs_f64() * 1e3 / nq as f64;
            println!(
                "| {n} | {build:.1} | {graph_mb:.0} | {:.0} | {exact_ms:.2} | {ef} | {:.3} | {ms:.3} |",
                rss_mb(),
                ann::recall(&exact, &approx)
            );
        }
    }
    Ok(())
}

/// Points of a fixed random 32-dimensional subspace of R^dim (basis from seed 99) plus 10 %
/// isotropic noise, normalised.
fn subspace_vectors(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
    let basis = ann::random_unit_vectors(32, dim, 99);
    let coef = ann::random_unit_vectors(n, 32, seed);
    let noise = ann::random_unit_vectors(n, dim, seed + 1000);
    coef.iter()
        .zip(&noise)
        .map(|(c, e)| {
            let mut v: Vec<f32> = (0..dim)
                .map(|j| c.iter().zip(&basis).map(|(a, b)| a * b[j]).sum::<f32>() + 0.1 * e[j])
                .collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter_mut().for_each(|x| *x /= norm);
            v
        })
        .collect()
}
