//! The side-by-side benchmark suite, tessera's half. One workload per process, so each one's
//! peak RSS is its own: `cargo bench --bench suite -- WORKLOAD [--dtype f32|bf16|int8]`.
//! `tools/bench.sh` runs every workload here and in `tools/bench_suite.py` (PyTorch, same
//! random-init models, same shapes, same thread count) in the same run and prints one table.
//!
//! Prints one JSON line: workload, median seconds per call, items per call, unit, analytic
//! GFLOP per call (as nanoGPT's `estimate_mfu`: 2 FLOP per multiply-add, matmuls only,
//! backward counted as 2x forward), peak RSS (VmHWM) and peak heap (the most bytes held at once
//! in allocations of 64 KiB or more: [`tessera::alloc`], tensors without the allocator's slack).
mod common;

use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use std::time::Instant;
use tessera::data::{Augment, InMemory, Loader, Normalize};
use tessera::models::clip::{Clip, ClipConfig};
use tessera::models::vit::hf::{HfVit, HfVitConfig};
use tessera::models::vit::{VisionTransformer, VitConfig};
use tessera::models::{LoadOptions, Pretrained};
use tessera::nn::{Ctx, ParamStore, Precision};
use tessera::train::{
    grads_data_parallel, single_threaded_ops, AdamW, AdamWConfig, ImageClassifier,
};

const WORKLOADS: &[&str] = &[
    "fma_peak",
    "bf16_dot_peak",
    "int8_dot_peak",
    "matmul_2048",
    "vit_b16_b1",
    "vit_b16_b8",
    "vit_b16_b8_bf16",
    "vit_b16_b8_int8",
    "clip_image_b8",
    "clip_image_b8_int8",
    "clip_text77_b8",
    "clip_text16_b8",
    "seed_vit_train_b64",
    "vit_b16_finetune_b16",
    "detr_r50_800x1066_b1",
    "detr_r50_backbone_800x1066_b1",
    "blip_caption_b1",
    "blip_caption_b8",
];

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Median seconds of `reps` calls after `warmup` calls.
fn time(warmup: usize, reps: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..warmup {
        f();
    }
    median(
        (0..reps)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Matmul FLOPs of a pre-norm transformer encoder over `n` tokens: q/k/v/out projections,
/// the MLP, and the two attention products.
fn encoder_gflop(layers: usize, n: usize, d: usize, ff: usize) -> f64 {
    let (n, d, ff) = (n as f64, d as f64, ff as f64);
    layers as f64 * (2.0 * n * (4.0 * d * d + 2.0 * d * ff) + 4.0 * n * n * d) / 1e9
}

fn vit_gflop_per_image(c: &HfVitConfig, labels: usize) -> f64 {
    let np = (c.image_size / c.patch_size).pow(2);
    let patch = 2.0 * (np * c.num_channels * c.patch_size * c.patch_size * c.hidden_size) as f64;
    encoder_gflop(
        c.num_hidden_layers,
        np + 1,
        c.hidden_size,
        c.intermediate_size,
    ) + (patch + 2.0 * (c.hidden_size * labels) as f64) / 1e9
}

fn ids(b: usize, t: usize, dev: &Device) -> Tensor {
    // The same ids as tools/bench_suite.py.
    let rows: Vec<Vec<u32>> = (0..b)
        .map(|i| {
            let mut row: Vec<u32> = (0..t as u32)
                .map(|j| 400 + (i as u32 * 31 + j * 7) % 40000)
                .collect();
            row[0] = 49406;
            row[t - 1] = 49407;
            row
        })
        .collect();
    Tensor::new(rows, dev).expect("ids")
}

/// Matmul/convolution FLOPs of ResNet-50 (bottleneck, stride on the 3×3) on an `h`×`w` image:
/// stem, every block's three convolutions and the downsampling shortcuts.
fn resnet50_gflop(h: usize, w: usize) -> f64 {
    let out = |s: usize, k: usize, st: usize| (s + 2 * (k / 2) - k) / st + 1;
    let conv = |hw: (usize, usize), cin: usize, cout: usize, k: usize| {
        2.0 * (hw.0 * hw.1 * cin * cout * k * k) as f64
    };
    let (mut hh, mut ww) = (out(h, 7, 2), out(w, 7, 2));
    let mut f = conv((hh, ww), 3, 64, 7);
    (hh, ww) = (out(hh, 3, 2), out(ww, 3, 2));
    let mut cin = 64;
    for (s, (&width, &depth)) in [64usize, 128, 256, 512]
        .iter()
        .zip(&[3usize, 4, 6, 3])
        .enumerate()
    {
        for l in 0..depth {
            let stride = if l == 0 && s > 0 { 2 } else { 1 };
            let (oh, ow) = (out(hh, 3, stride), out(ww, 3, stride));
            f += conv((hh, ww), cin, width, 1) + conv((oh, ow), width, width, 3);
            f += conv((oh, ow), width, width * 4, 1);
            if l == 0 {
                f += conv((oh, ow), cin, width * 4, 1);
            }
            (hh, ww, cin) = (oh, ow, width * 4);
        }
    }
    f / 1e9
}

/// DETR-R50's transformer: input projection, 6 encoder layers over the `n` cells, 6 decoder
/// layers of 100 queries (self-attention, cross-attention to the cells, MLP), the heads.
fn detr_transformer_gflop(n: usize) -> f64 {
    let (d, ff, q) = (256.0, 2048.0, 100.0);
    let n = n as f64;
    let proj = 2.0 * n * 2048.0 * d;
    let enc = 6.0 * (2.0 * n * (4.0 * d * d + 2.0 * d * ff) + 4.0 * n * n * d);
    let dec = 6.0
        * (2.0 * q * (4.0 * d * d + 2.0 * d * ff)
            + 4.0 * q * q * d
            + 2.0 * (2.0 * q * d * d + 2.0 * n * d * d)
            + 4.0 * q * n * d);
    let heads = 2.0 * q * (d * 92.0 + 2.0 * d * d + d * 4.0);
    (proj + enc + dec + heads) / 1e9
}

/// The machine's peak: GFLOP/s of `common::peak`'s fp32 FMA loop (`fma_peak`, the widest of
/// AVX-512 and AVX2+FMA), `vdpbf16ps` loop (`bf16_dot_peak`; `None` where the CPU lacks
/// AVX512_BF16) or `vpdpbusd` loop (`int8_dot_peak`, GOP/s; `None` without AVX512_VNNI) on
/// `threads` threads at once, and the loop's ISA.
fn peak_gflops(workload: &str, threads: usize) -> Option<(f64, &'static str)> {
    let (kernel, flop_per_iter, isa) = match workload {
        "bf16_dot_peak" => common::peak::bf16_loop()?,
        "int8_dot_peak" => common::peak::int8_loop()?,
        _ => common::peak::f32_loop()?,
    };
    let iters = 20_000_000;
    // SAFETY: the `peak` functions return only a loop whose features this CPU has.
    let run = || std::hint::black_box(unsafe { kernel(iters, std::hint::black_box(1e-3)) });
    run();
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(run);
        }
    });
    let flop = threads as f64 * iters as f64 * flop_per_iter;
    Some((flop / t.elapsed().as_secs_f64() / 1e9, isa))
}

struct Run {
    seconds: f64,
    items: usize,
    unit: &'static str,
    gflop: f64,
}

fn run(workload: &str, dtype: Precision) -> Run {
    let dev = Device::Cpu;
    let reps = env_usize("BENCH_STEPS", 5);
    match workload {
        "matmul_2048" => {
            let n = 2048;
            let a = Tensor::randn(0f32, 1.0, (n, n), &dev).expect("a");
            let b = Tensor::randn(0f32, 1.0, (n, n), &dev).expect("b");
            let s = time(1, reps, || {
                a.matmul(&b).expect("matmul");
            });
            Run {
                seconds: s,
                items: 1,
                unit: "matmul",
                gflop: 2.0 * (n as f64).powi(3) / 1e9,
            }
        }
        "vit_b16_b1" | "vit_b16_b8" | "vit_b16_b8_bf16" | "vit_b16_b8_int8" => {
            let b = if workload == "vit_b16_b1" { 1 } else { 8 };
            let cfg = HfVitConfig::default();
            let loaded =
                HfVit::from_config(&cfg, &LoadOptions::default().num_labels(1000).trainable())
                    .expect("model");
            let model = loaded.model.with_dtype(dtype).expect("dtype");
            let px = Tensor::randn(0f32, 1.0, (b, 3, 224, 224), &dev).expect("px");
            let s = time(1, reps, || {
                model.forward(&px, &mut Ctx::inference()).expect("forward");
            });
            Run {
                seconds: s,
                items: b,
                unit: "img",
                gflop: b as f64 * vit_gflop_per_image(&cfg, 1000),
            }
        }
        "clip_image_b8" | "clip_image_b8_int8" | "clip_text77_b8" | "clip_text16_b8" => {
            let b = 8;
            let cfg = ClipConfig::default();
            let store = ParamStore::fresh(0, false, &dev);
            let model = Clip::new(store.var_builder(DType::F32), &cfg).expect("clip");
            let model = model.with_dtype(dtype).expect("dtype");
            let (v, t) = (&cfg.vision_config, &cfg.text_config);
            if workload.starts_with("clip_image_b8") {
                let px = Tensor::randn(0f32, 1.0, (b, 3, 224, 224), &dev).expect("px");
                let np = (v.image_size / v.patch_size).pow(2);
                let gflop = b as f64
                    * (encoder_gflop(
                        v.num_hidden_layers,
                        np + 1,
                        v.hidden_size,
                        v.intermediate_size,
                    ) + 2.0
                        * (np * 3 * v.patch_size * v.patch_size * v.hidden_size
                            + v.hidden_size * cfg.projection_dim) as f64
                        / 1e9);
                let s = time(1, reps, || {
                    model
                        .image_embeds(&px, &mut Ctx::inference())
                        .expect("image embeds");
                });
                Run {
                    seconds: s,
                    items: b,
                    unit: "img",
                    gflop,
                }
            } else {
                let len = if workload == "clip_text77_b8" { 77 } else { 16 };
                let ids = ids(b, len, &dev);
                let gflop = b as f64
                    * (encoder_gflop(t.num_hidden_layers, len, t.hidden_size, t.intermediate_size)
                        + 2.0 * (t.hidden_size * cfg.projection_dim) as f64 / 1e9);
                let s = time(2, reps.max(10), || {
                    model
                        .text_embeds(&ids, None, &mut Ctx::inference())
                        .expect("text embeds");
                });
                Run {
                    seconds: s,
                    items: b,
                    unit: "text",
                    gflop,
                }
            }
        }
        "seed_vit_train_b64" => {
            // As `tessera train`: single-threaded candle ops, one data-parallel shard per core.
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            single_threaded_ops();
            let cfg = VitConfig::preset("cifar").expect("preset"); // dropout 0.1, as the seed
            let batch = 64;
            let store = ParamStore::fresh(0, true, &dev);
            let model = VisionTransformer::new(store.var_builder(DType::F32), &cfg).expect("model");
            let s = train_steps(&model, &store, (32, 10, batch), threads, (2, reps.max(10)));
            Run {
                seconds: s,
                items: batch,
                unit: "img",
                gflop: 3.0 * cfg.flops_per_image() * batch as f64 / 1e9,
            }
        }
        "vit_b16_finetune_b16" => {
            // As `tessera finetune`: data-parallel shards with single-threaded candle ops
            // (BENCH_SHARDS=1: one shard, multi-threaded ops).
            let threads = env_usize(
                "BENCH_SHARDS",
                std::thread::available_parallelism().map_or(1, |n| n.get()),
            );
            if threads > 1 {
                single_threaded_ops();
            }
            let cfg = HfVitConfig::default();
            let batch = 16;
            let loaded =
                HfVit::from_config(&cfg, &LoadOptions::default().num_labels(37).trainable())
                    .expect("model");
            let s = train_steps(
                &loaded.model,
                &loaded.store,
                (224, 37, batch),
                threads,
                (1, reps.min(5)),
            );
            Run {
                seconds: s,
                items: batch,
                unit: "img",
                gflop: 3.0 * batch as f64 * vit_gflop_per_image(&cfg, 37),
            }
        }
        "blip_caption_b1" | "blip_caption_b8" => {
            // BLIP-base's config (ViT-B/16 at 384, 12 BERT-style decoder layers), random
            // weights; greedy, exactly 20 new tokens per image (min = max), the image encoded
            // once per call: end-to-end new tokens per second.
            use tessera::models::blip::{generation_defaults, BlipCaptioner, BlipConfig};
            let b = if workload.ends_with("b8") { 8 } else { 1 };
            let c = BlipConfig::default();
            let m = BlipCaptioner::from_config(&c, &LoadOptions::default().dtype(dtype))
                .expect("blip")
                .model;
            let cfg = tessera::nn::generate::GenerationConfig {
                max_new_tokens: Some(20),
                min_new_tokens: 20,
                ..generation_defaults(&c.text_config)
            };
            let px = Tensor::randn(0f32, 1.0, (b, 3, 384, 384), &dev).expect("px");
            let prompts = vec![vec![]; b];
            let seconds = time(1, reps.min(3), || {
                let g = m.generate(&px, &prompts, &cfg, false).expect("generate");
                assert_eq!(g.generated.sequences[0].len(), 21);
            });
            let (v, t) = (&c.vision_config, &c.text_config);
            let n = (v.image_size / v.patch_size).pow(2) + 1;
            let vision = b as f64
                * encoder_gflop(v.num_hidden_layers, n, v.hidden_size, v.intermediate_size);
            // Per new token: self/cross projections, the MLP and the tied head.
            let d = t.hidden_size as f64;
            let per_token = t.num_hidden_layers as f64
                * 2.0
                * (4.0 * d * d
                    + 2.0 * d * v.hidden_size as f64
                    + 2.0 * d * t.intermediate_size as f64)
                + 2.0 * d * (d + t.vocab_size as f64);
            let gflop = vision + (b * 20) as f64 * per_token / 1e9;
            Run {
                seconds,
                items: b * 20,
                unit: "token",
                gflop,
            }
        }
        "detr_r50_800x1066_b1" | "detr_r50_backbone_800x1066_b1" => {
            // facebook/detr-resnet-50's config (timm ResNet-50, 100 queries, 91 labels),
            // random weights; one 800×1066 image (DetrImageProcessor's size for 4:3 photos).
            use tessera::models::detr::{Detr, DetrConfig};
            let loaded =
                Detr::from_config(&DetrConfig::default(), &LoadOptions::default().dtype(dtype))
                    .expect("detr");
            let (h, w) = (800, 1066);
            let px = Tensor::randn(0f32, 1.0, (1, 3, h, w), &dev).expect("pixels");
            let mask = Tensor::ones((1, h, w), DType::F32, &dev).expect("mask");
            let backbone_only = workload.contains("backbone");
            let s = time(1, reps, || {
                if backbone_only {
                    loaded
                        .model
                        .backbone()
                        .forward(&px, &Ctx::inference())
                        .expect("backbone");
                } else {
                    loaded
                        .model
                        .forward(&px, &mask, &mut Ctx::inference())
                        .expect("detr");
                }
            });
            let cells = h.div_ceil(32) * w.div_ceil(32);
            Run {
                seconds: s,
                items: 1,
                unit: "img",
                gflop: resnet50_gflop(h, w)
                    + if backbone_only {
                        0.0
                    } else {
                        detr_transformer_gflop(cells)
                    },
            }
        }
        other => {
            eprintln!("unknown workload {other}; one of {WORKLOADS:?}");
            std::process::exit(2)
        }
    }
}

/// Median seconds of one training step (data-parallel gradients over `threads` shards, then
/// AdamW) on a batch of random `side`×`side` RGB images with `classes` labels, as the
/// trainer runs it; `(warm-up, timed)` steps.
fn train_steps(
    model: &dyn ImageClassifier,
    store: &ParamStore,
    (side, classes, batch): (usize, usize, usize),
    threads: usize,
    (warmup, reps): (usize, usize),
) -> f64 {
    let dev = Device::Cpu;
    let mut opt = AdamW::new(store.vars(), AdamWConfig::default());
    let ds = random_images(batch, 3, side, classes);
    let loader = loader(&ds, batch, 3);
    let idx: Vec<usize> = (0..batch).collect();
    let mut n = 0u64;
    time(warmup, reps, || {
        let out =
            grads_data_parallel(model, &loader, &idx, 0, n, 0.0, threads, &dev).expect("grads");
        opt.step(&out.grads, 1e-5).expect("step");
        n += 1;
    })
}

fn random_images(n: usize, c: usize, side: usize, classes: usize) -> InMemory {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    InMemory {
        name: "random".into(),
        pixels: (0..n * c * side * side)
            .map(|_| rand::Rng::random::<f32>(&mut rng))
            .collect(),
        labels: (0..n as u32).map(|i| i % classes as u32).collect(),
        dims: (c, side, side),
        classes: (0..classes).map(|i| i.to_string()).collect(),
    }
}

fn loader(ds: &InMemory, batch: usize, c: usize) -> Loader<'_> {
    Loader {
        dataset: ds,
        batch_size: batch,
        normalize: Normalize {
            mean: vec![0.5; c],
            std: vec![0.5; c],
        },
        augment: Augment::default(),
        seed: 0,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; ignore flags it adds.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let mut dtype = Precision::F32;
    let mut workloads = vec![];
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--dtype" => {
                dtype = match it.next().map(|d| tessera::nn::inference_dtype(d)) {
                    Some(Ok(d)) => d,
                    other => {
                        eprintln!("--dtype f32|bf16|int8|auto: {other:?}");
                        std::process::exit(2)
                    }
                }
            }
            "--list" => {
                for w in WORKLOADS {
                    println!("{w}");
                }
                return;
            }
            w => workloads.push(w.to_string()),
        }
    }
    if workloads.len() != 1 {
        eprintln!("usage: suite WORKLOAD [--dtype f32|bf16|int8]  (one per process: peak RSS is per workload)\nworkloads: {WORKLOADS:?}");
        std::process::exit(2)
    }
    let w = &workloads[0];
    if w.ends_with("_peak") {
        let threads = env_usize(
            "BENCH_THREADS",
            std::thread::available_parallelism().map_or(1, |n| n.get()),
        );
        let peak = peak_gflops(w, threads);
        println!(
            "{}",
            serde_json::json!({
                "workload": w, "impl": "tessera", "unit": "peak", "threads": threads,
                "gflops": peak.map(|p| p.0), "isa": peak.map(|p| p.1),
            })
        );
        return;
    }
    if w.ends_with("_bf16") {
        dtype = Precision::BF16;
    }
    if w.ends_with("_int8") {
        dtype = Precision::Int8;
    }
    let r = run(w, dtype);
    println!(
        "{}",
        serde_json::json!({
            "workload": w, "impl": "tessera", "median_s": r.seconds, "items": r.items,
            "unit": r.unit, "per_s": r.items as f64 / r.seconds, "gflop": r.gflop,
            "gflops": r.gflop / r.seconds, "peak_rss_mb": peak_rss_mb(),
            "peak_heap_mb": tessera::alloc::peak_bytes() as f64 / 1048576.0,
            "threads": std::thread::available_parallelism().map_or(1, |n| n.get()),
        })
    );
}
