//! The path a GPU runs, checked on the CPU: with tessera's CPU kernels switched off
//! (`nn::cpu::set_kernels_enabled(false)`, as `TESSERA_KERNELS=off`), every module takes the
//! composite candle ops that candle's CUDA backend executes, and `prepare(bf16)` keeps bf16
//! copies of the linear weights (autocast-style) instead of packing them. These must match the
//! PyTorch/transformers references as the kernel paths do, training included.
mod common;
use candle_core::{DType, Device, Tensor, D};
use common::{fixture, load, max_abs_diff};
use rand::SeedableRng;
use tessera::models::clip::Clip;
use tessera::models::vit::hf::HfVit;
use tessera::models::vit::VisionTransformer;
use tessera::models::{LoadOptions, Pretrained, Task};
use tessera::nn::{Ctx, ParamStore, Path};
use tessera::train::{clip_grad_norm, cross_entropy, AdamW, AdamWConfig};

/// Every test in this binary runs without the CPU kernels (the switch is process-wide).
fn gpu_path() {
    tessera::nn::cpu::set_kernels_enabled(false);
    let x = Tensor::zeros((1, 4), DType::F32, &Device::Cpu).unwrap();
    assert!(!tessera::nn::cpu::kernels_apply(&x));
    assert_eq!(Ctx::inference().path(&x, Vec::new), Path::Composite);
}

fn seed_vit(dir: &str, trainable: bool) -> (VisionTransformer, ParamStore) {
    let (model, store, _) = common::seed_vit_fixture(dir, trainable);
    (model, store)
}

#[test]
fn seed_vit_logits_match_pytorch() {
    gpu_path();
    for dir in ["seed_vit_postnorm_28", "seed_vit_prenorm_32"] {
        let (model, _) = seed_vit(dir, false);
        let io = load(&fixture(dir).join("io.safetensors"));
        let logits = model.forward(&io["input"], &mut Ctx::inference()).unwrap();
        let d = max_abs_diff(&logits, &io["logits"]);
        println!("{dir}: {d:e}");
        assert!(d <= 1e-4, "{dir}: {d}");
    }
}

/// Three AdamW steps as `seed_vit_parity`'s test, through candle's ops and their backward.
#[test]
fn seed_vit_training_steps_match_pytorch() {
    gpu_path();
    let dir = "seed_vit_train";
    let (model, store) = seed_vit(dir, true);
    let io = load(&fixture(dir).join("io.safetensors"));
    let lr = 1e-3;
    let cfg = AdamWConfig {
        lr,
        weight_decay: 0.05,
        ..Default::default()
    };
    let mut opt = AdamW::new(store.vars(), cfg);
    // The GPU's optimizer: moments as tensors, updated with tensor ops.
    assert!(opt.moments_on_device());
    let vars: Vec<_> = store.vars().into_iter().map(|(_, v)| v).collect();
    let want = io["losses"].to_vec1::<f64>().unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    for (s, want) in want.iter().enumerate() {
        let y = io[&format!("y{s}")].to_dtype(DType::U32).unwrap();
        let logits = model
            .forward(&io[&format!("x{s}")], &mut Ctx::train(&mut rng))
            .unwrap();
        let loss = cross_entropy(&logits, &y, 0.0).unwrap();
        let l = loss.to_scalar::<f32>().unwrap() as f64;
        assert!(
            (l - want).abs() <= 1e-4 * want.abs(),
            "step {s}: {l} vs {want}"
        );
        let mut grads = loss.backward().unwrap();
        assert_eq!(opt.missing_grads(&grads), Vec::<String>::new());
        clip_grad_norm(&mut grads, &vars, 1.0).unwrap();
        opt.step(&grads, lr).unwrap();
    }
    common::assert_adamw_weights_match(&store, dir, lr, 3);
}

#[test]
fn hf_vit_logits_match_in_f32_and_agree_in_bf16() {
    gpu_path();
    let dir = fixture("hf_vit_cls");
    let opts = LoadOptions::default().task(Task::ImageClassification);
    let model = HfVit::load(&dir, &opts).unwrap().model;
    let io = load(&dir.join("io.safetensors"));
    let x = &io["pixel_values"];
    let f32m = model.with_dtype(DType::F32).unwrap();
    let bf16 = model.with_dtype(DType::BF16).unwrap();
    let exact = f32m.forward(x, &mut Ctx::inference()).unwrap();
    let d = max_abs_diff(&exact, &io["logits"]);
    assert!(d <= 1e-4, "f32: {d}");
    let half = bf16.forward(x, &mut Ctx::inference()).unwrap();
    let scale = max_abs_diff(&io["logits"], &io["logits"].zeros_like().unwrap());
    let dh = max_abs_diff(&half, &io["logits"]);
    println!("f32 {d:e}, bf16 {dh:e} (largest |logit| {scale:e})");
    // bf16 linears really ran (rounding differs), close to the reference, same top-1.
    assert!(dh > 0.0 && dh <= 0.01 * scale.max(1.0), "bf16: {dh}");
    let top = |t: &Tensor| t.argmax(D::Minus1).unwrap().to_vec1::<u32>().unwrap();
    assert_eq!(top(&half), top(&io["logits"]));
    // Norms, softmax and the outputs stay f32, as under PyTorch's autocast.
    assert_eq!(half.dtype(), DType::F32);
}

#[test]
fn clip_embeddings_match_in_f32_and_agree_in_bf16() {
    gpu_path();
    let dir = fixture("clip_tiny");
    let model = Clip::load(&dir, &LoadOptions::default()).unwrap().model;
    let io = load(&dir.join("io.safetensors"));
    let ids = io["input_ids"].to_dtype(DType::U32).unwrap();
    let mask = io["attention_mask"].to_dtype(DType::F32).unwrap();
    for (dtype, tol) in [(DType::F32, 1e-4), (DType::BF16, 1e-2)] {
        let m = model.with_dtype(dtype).unwrap();
        let out = m
            .forward(
                &io["pixel_values"],
                &ids,
                Some(&mask),
                &mut Ctx::inference(),
            )
            .unwrap();
        let di = max_abs_diff(&out.image_embeds, &io["image_embeds"]);
        let dt = max_abs_diff(&out.text_embeds, &io["text_embeds"]);
        println!("{dtype:?}: image {di:e}, text {dt:e}");
        assert!(di <= tol && dt <= tol, "{dtype:?}: {di} {dt}");
        if dtype == DType::BF16 {
            assert!(di > 0.0, "bf16 weights were not used");
        }
    }
}

/// The trainer as on a GPU: batches prefetched on a thread of their own, composite ops, AdamW
/// moments as tensors. It learns, and a stopped and resumed run ends where an uninterrupted
/// one does, bit for bit.
#[test]
fn training_with_prefetched_batches_learns_and_resumes_exactly() {
    gpu_path();
    use tessera::train::recipes::{train_vit, TrainSpec};
    let d = tempfile::tempdir().unwrap();
    let spec = |out: &str| TrainSpec {
        device: "cpu".into(),
        epochs: Some(2),
        threads: 1,
        output: Some(d.path().join(out)),
        ..TrainSpec::default()
    };
    let whole = train_vit(&spec("whole"), &tessera::progress::Silent).unwrap();
    assert!(
        whole.summary.test_accuracy > 0.5,
        "{}",
        whole.summary.test_accuracy
    );
    let first = TrainSpec {
        stop_after: Some(1),
        ..spec("parts")
    };
    train_vit(&first, &tessera::progress::Silent).unwrap();
    let rest = TrainSpec {
        resume: true,
        ..spec("parts")
    };
    train_vit(&rest, &tessera::progress::Silent).unwrap();
    let w = |name: &str| load(&d.path().join(name).join("model.safetensors"));
    let (a, b) = (w("whole"), w("parts"));
    for (k, t) in &a {
        assert_eq!(max_abs_diff(t, &b[k]), 0.0, "{k}");
    }
}
