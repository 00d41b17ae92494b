//! The GPU check `tools/gpu_check.sh` runs on a machine with an NVIDIA GPU (a CUDA build:
//! `cargo build --release --features nccl --example gpu_check`).
//!
//! 1. Parity, GPU against CPU on the test fixtures (fp32 with TF32 off ≤ 1e-3; bf16 top-1):
//!    the seed ViT, HF ViT and CLIP; one AdamW training step of the seed ViT (loss and weights).
//! 2. NCCL with world size 1: all-reduce and broadcast through the job's collective.
//! 3. Throughput on the GPU, random-init models (`tools/gpu_bench_torch.py` runs the same in
//!    PyTorch): ViT-B/16 inference bf16 b64, ViT-B/16 fine-tune step b64 (fp32), CLIP B/32 image
//!    tower bf16 b256, seed ViT (cifar preset) training step b512 (fp32).
//!
//! Prints `PASS|FAIL name: detail` lines, then one JSON line per workload; exits 1 on a FAIL,
//! 2 when no GPU is usable. `gpu_check parity` or `gpu_check bench` runs one half.
use candle_core::{DType, Device, Tensor, D};
use rand::SeedableRng;
use std::path::PathBuf;
use std::time::Instant;
use tessera::models::clip::{Clip, ClipConfig};
use tessera::models::vit::hf::{HfVit, HfVitConfig};
use tessera::models::vit::{VisionTransformer, VitConfig};
use tessera::models::{ImageClassifier, LoadOptions, Pretrained, Task};
use tessera::nn::{Ctx, ParamStore};
use tessera::train::{cross_entropy, AdamW, AdamWConfig};

type R<T> = Result<T, Box<dyn std::error::Error>>;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn load(dir: &str, file: &str, dev: &Device) -> R<std::collections::HashMap<String, Tensor>> {
    Ok(candle_core::safetensors::load(
        fixture(dir).join(file),
        dev,
    )?)
}

fn diff(a: &Tensor, b: &Tensor) -> R<f32> {
    let a = a.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
    let b = b.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
    Ok((a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?)
}

fn top1(t: &Tensor) -> R<Vec<u32>> {
    Ok(t.to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .argmax(D::Minus1)?
        .to_vec1::<u32>()?)
}

struct Report {
    failed: usize,
}

impl Report {
    fn check(&mut self, name: &str, ok: bool, detail: String) {
        println!("{} {name}: {detail}", if ok { "PASS" } else { "FAIL" });
        if !ok {
            self.failed += 1;
        }
    }
}

fn seed_vit(dir: &str, trainable: bool, dev: &Device) -> R<(VisionTransformer, ParamStore)> {
    let cfg: VitConfig = tessera::util::read_json(&fixture(dir).join("config.json"))?;
    let store =
        ParamStore::from_safetensors(&fixture(dir).join("model.safetensors"), 0, trainable, dev)?;
    let model = VisionTransformer::new(store.var_builder(DType::F32), &cfg)?;
    Ok((model, store))
}

fn parity(gpu: &Device, r: &mut Report) -> R<()> {
    let cpu = Device::Cpu;
    // Seed ViT logits.
    for dir in ["seed_vit_postnorm_28", "seed_vit_prenorm_32"] {
        let io = load(dir, "io.safetensors", &cpu)?;
        let (mc, _) = seed_vit(dir, false, &cpu)?;
        let (mg, _) = seed_vit(dir, false, gpu)?;
        let want = mc.forward(&io["input"], &mut Ctx::inference())?;
        let got = mg.forward(&io["input"].to_device(gpu)?, &mut Ctx::inference())?;
        let d = diff(&got, &want)?;
        r.check(
            &format!("seed ViT {dir} fp32"),
            d <= 1e-3,
            format!("max |Δlogit| {d:.2e}"),
        );
    }
    // HF ViT classifier: fp32 and bf16.
    let io = load("hf_vit_cls", "io.safetensors", &cpu)?;
    let opts = LoadOptions::default().task(Task::ImageClassification);
    let mc = HfVit::load(fixture("hf_vit_cls"), &opts)?.model;
    let mg = HfVit::load(fixture("hf_vit_cls"), &opts.clone().device(gpu))?.model;
    let want = mc.forward(&io["pixel_values"], &mut Ctx::inference())?;
    let x = io["pixel_values"].to_device(gpu)?;
    let got = mg.forward(&x, &mut Ctx::inference())?;
    let d = diff(&got, &want)?;
    r.check("HF ViT fp32", d <= 1e-3, format!("max |Δlogit| {d:.2e}"));
    let half = mg
        .with_dtype(DType::BF16)?
        .forward(&x, &mut Ctx::inference())?;
    let same = top1(&half)? == top1(&want)?;
    r.check(
        "HF ViT bf16",
        same,
        format!(
            "top-1 {} the CPU's fp32, max |Δlogit| {:.2e}",
            if same { "equals" } else { "differs from" },
            diff(&half, &want)?
        ),
    );
    // CLIP: image and text embeddings.
    let io = load("clip_tiny", "io.safetensors", &cpu)?;
    let ids = io["input_ids"].to_dtype(DType::U32)?;
    let mask = io["attention_mask"].to_dtype(DType::F32)?;
    let cc = Clip::load(fixture("clip_tiny"), &LoadOptions::default())?.model;
    let cg = Clip::load(fixture("clip_tiny"), &LoadOptions::default().device(gpu))?.model;
    let want = cc.forward(
        &io["pixel_values"],
        &ids,
        Some(&mask),
        &mut Ctx::inference(),
    )?;
    for (dtype, tol) in [(DType::F32, 1e-3), (DType::BF16, 2e-2)] {
        let m = cg.with_dtype(dtype)?;
        let got = m.forward(
            &io["pixel_values"].to_device(gpu)?,
            &ids.to_device(gpu)?,
            Some(&mask.to_device(gpu)?),
            &mut Ctx::inference(),
        )?;
        let (di, dt) = (
            diff(&got.image_embeds, &want.image_embeds)?,
            diff(&got.text_embeds, &want.text_embeds)?,
        );
        let same = top1(&got.logits_per_image)? == top1(&want.logits_per_image)?;
        r.check(
            &format!("CLIP {dtype:?}"),
            di <= tol && dt <= tol && same,
            format!("max |Δ| image {di:.2e}, text {dt:.2e}; zero-shot top-1 same: {same}"),
        );
    }
    // One training step (dropout off in eval-free train mode: the fixture's config has p = 0).
    let dir = "seed_vit_train";
    let io = load(dir, "io.safetensors", &cpu)?;
    let mut losses = vec![];
    let mut weights = vec![];
    for dev in [&cpu, gpu] {
        let (m, store) = seed_vit(dir, true, dev)?;
        let mut opt = AdamW::new(store.vars(), AdamWConfig::default());
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let logits = m.forward(&io["x0"].to_device(dev)?, &mut Ctx::train(&mut rng))?;
        let y = io["y0"].to_dtype(DType::U32)?.to_device(dev)?;
        let loss = cross_entropy(&logits, &y, 0.0)?;
        losses.push(loss.to_scalar::<f32>()?);
        opt.step(&loss.backward()?, 1e-3)?;
        weights.push(store.named_tensors());
    }
    let dl = (losses[0] - losses[1]).abs();
    let mut dw = 0f32;
    for ((_, a), (_, b)) in weights[0].iter().zip(&weights[1]) {
        dw = dw.max(diff(a, b)?);
    }
    // Adam's first step is ±lr wherever |g| ≫ eps: weights agree to float noise except where a
    // gradient is ~0 on one device and not the other (then by at most 2·lr).
    r.check(
        "seed ViT train step",
        dl <= 1e-4 * losses[0].abs().max(1.0) && dw <= 2e-3 + 1e-6,
        format!(
            "loss {} vs {} (CPU), max |Δweight| {dw:.2e}",
            losses[1], losses[0]
        ),
    );
    Ok(())
}

#[cfg(feature = "nccl")]
fn nccl(gpu: &Device, r: &mut Report) -> R<()> {
    use tessera::train::dist::{join, RankEnv};
    let env = RankEnv {
        rank: 0,
        local_rank: 0,
        world: 1,
        master_addr: "127.0.0.1".into(),
        master_port: tessera::train::dist::free_port()?,
    };
    let c = join(&env, gpu)?;
    let t = Tensor::arange(0f32, 1000.0, gpu)?;
    let s = c.all_reduce_sum(&t)?;
    let b = c.broadcast(&t, 0)?;
    let ok = diff(&s, &t)? == 0.0 && diff(&b, &t)? == 0.0 && s.device().is_cuda();
    r.check(
        "NCCL world 1",
        ok,
        "all-reduce and broadcast return the input, on the GPU".into(),
    );
    Ok(())
}

#[cfg(not(feature = "nccl"))]
fn nccl(_: &Device, r: &mut Report) -> R<()> {
    r.check(
        "NCCL world 1",
        false,
        "this build has no NCCL (--features nccl)".into(),
    );
    Ok(())
}

fn timed(dev: &Device, warmup: usize, reps: usize, mut f: impl FnMut() -> R<()>) -> R<f64> {
    for _ in 0..warmup {
        f()?;
    }
    dev.synchronize()?;
    let mut ts = vec![];
    for _ in 0..reps {
        let t = Instant::now();
        f()?;
        dev.synchronize()?;
        ts.push(t.elapsed().as_secs_f64());
    }
    ts.sort_by(|a, b| a.total_cmp(b));
    Ok(ts[ts.len() / 2])
}

fn train_step(
    model: &dyn ImageClassifier,
    opt: &mut AdamW,
    x: &Tensor,
    y: &Tensor,
    rng: &mut rand_chacha::ChaCha8Rng,
) -> R<()> {
    let logits = model.logits(x, &mut Ctx::train(rng))?;
    let loss = cross_entropy(&logits, y, 0.0)?;
    opt.step(&loss.backward()?, 1e-5)?;
    Ok(())
}

fn bench(gpu: &Device, only: Option<&str>) -> R<()> {
    let reps = std::env::var("BENCH_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let labels =
        |b: usize, n: u32| Tensor::new((0..b as u32).map(|i| i % n).collect::<Vec<_>>(), gpu);
    for w in [
        "vit_b16_b64_bf16",
        "vit_b16_finetune_b64",
        "clip_image_b256_bf16",
        "seed_vit_train_b512",
    ] {
        if only.is_some_and(|o| o != w) {
            continue;
        }
        let (seconds, items) = match w {
            "vit_b16_b64_bf16" => {
                let m = HfVit::from_config(
                    &HfVitConfig::default(),
                    &LoadOptions::default().device(gpu).num_labels(1000),
                )?
                .model
                .with_dtype(DType::BF16)?;
                let x = Tensor::randn(0f32, 1.0, (64, 3, 224, 224), gpu)?;
                (
                    timed(gpu, 2, reps, || {
                        Ok(m.forward(&x, &mut Ctx::inference()).map(|_| ())?)
                    })?,
                    64,
                )
            }
            "vit_b16_finetune_b64" => {
                let l = HfVit::from_config(
                    &HfVitConfig::default(),
                    &LoadOptions::default()
                        .device(gpu)
                        .num_labels(37)
                        .trainable(),
                )?;
                let mut opt = AdamW::new(l.store.vars(), AdamWConfig::default());
                let x = Tensor::randn(0f32, 1.0, (64, 3, 224, 224), gpu)?;
                let y = labels(64, 37)?;
                (
                    timed(gpu, 1, reps.min(5), || {
                        train_step(&l.model, &mut opt, &x, &y, &mut rng)
                    })?,
                    64,
                )
            }
            "clip_image_b256_bf16" => {
                let store = ParamStore::fresh(0, false, gpu);
                let m = Clip::new(store.var_builder(DType::F32), &ClipConfig::default())?
                    .with_dtype(DType::BF16)?;
                let x = Tensor::randn(0f32, 1.0, (256, 3, 224, 224), gpu)?;
                (
                    timed(gpu, 2, reps, || {
                        Ok(m.image_embeds(&x, &mut Ctx::inference()).map(|_| ())?)
                    })?,
                    256,
                )
            }
            _ => {
                let cfg = VitConfig::preset("cifar")?;
                let store = ParamStore::fresh(0, true, gpu);
                let m = VisionTransformer::new(store.var_builder(DType::F32), &cfg)?;
                let mut opt = AdamW::new(store.vars(), AdamWConfig::default());
                let x = Tensor::randn(0f32, 1.0, (512, 3, 32, 32), gpu)?;
                let y = labels(512, 10)?;
                (
                    timed(gpu, 2, reps, || train_step(&m, &mut opt, &x, &y, &mut rng))?,
                    512,
                )
            }
        };
        println!(
            "{}",
            serde_json::json!({"workload": w, "impl": "tessera", "seconds": seconds, "items": items, "items_per_s": items as f64 / seconds})
        );
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let what = args.first().map(String::as_str).unwrap_or("all");
    let gpu = match tessera::device::open("cuda") {
        Ok(d) => d,
        Err(e) => {
            eprintln!("no GPU: {e}");
            std::process::exit(2);
        }
    };
    // fp32 GEMMs in full fp32 (as PyTorch's default allow_tf32 = False).
    candle_core::cuda::set_gemm_reduced_precision_f32(false);
    let mut r = Report { failed: 0 };
    let run = |r: &mut Report| -> R<()> {
        if what == "all" || what == "parity" {
            parity(&gpu, r)?;
            nccl(&gpu, r)?;
        }
        if what == "all" || what == "bench" {
            bench(&gpu, args.get(1).map(String::as_str))?;
        }
        Ok(())
    };
    if let Err(e) = run(&mut r) {
        println!("FAIL error: {e}");
        r.failed += 1;
    }
    std::process::exit(if r.failed > 0 { 1 } else { 0 });
}
