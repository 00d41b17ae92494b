//! Hugging Face ViT layouts against `transformers` (fixtures from tools/gen_hf_fixtures.py).
mod common;
use candle_core::{DType, Device};
use common::{fixture, load, max_abs_diff};
use tessera::models::vit::hf::{HfVit, HfVitConfig, Positions};
use tessera::models::{LoadOptions, Pretrained, Task};
use tessera::nn::{Ctx, Precision};

#[test]
fn vit_model_hidden_state_pooler_and_attentions_match() {
    let dir = fixture("hf_vit_model");
    let loaded = HfVit::load(&dir, &LoadOptions::default().task(Task::FeatureExtraction)).unwrap();
    assert!(loaded.report.is_clean(), "{}", loaded.report);
    let io = load(&dir.join("io.safetensors"));
    let HfVit::Model(b) = &loaded.model else {
        panic!("expected a ViTModel")
    };
    let mut trace = tessera::nn::Trace::default();
    let (h, pooled) = b
        .forward(
            &io["pixel_values"],
            Positions::AsTrained,
            &mut Ctx::eval().with_trace(&mut trace),
        )
        .unwrap();
    let dh = max_abs_diff(&h, &io["last_hidden_state"]);
    let dp = max_abs_diff(&pooled.unwrap(), &io["pooler_output"]);
    println!("last_hidden_state {dh:e}, pooler {dp:e}");
    assert!(dh <= 1e-4 && dp <= 1e-4);
    for (i, a) in trace.attentions.iter().enumerate() {
        let d = max_abs_diff(a, &io[&format!("attention_{i}")]);
        println!("attention {i}: {d:e}");
        assert!(d <= 1e-5, "attention {i} differs by {d}");
    }
    // Other input sizes: bicubic interpolation of the position grid, as HF.
    let (h48, _) = b
        .forward(
            &io["pixel_values_48"],
            Positions::Interpolate,
            &mut Ctx::eval(),
        )
        .unwrap();
    let d48 = max_abs_diff(&h48, &io["last_hidden_state_48"]);
    println!("interpolate_pos_encoding 48x48: {d48:e}");
    assert!(d48 <= 1e-4);
    // Without interpolation another size is a clear error.
    let err = b
        .forward(
            &io["pixel_values_48"],
            Positions::AsTrained,
            &mut Ctx::eval(),
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("interpolate_pos_encoding"), "{err}");
}

#[test]
fn vit_for_image_classification_logits_match() {
    let dir = fixture("hf_vit_cls");
    let loaded = HfVit::load(
        &dir,
        &LoadOptions::default().task(Task::ImageClassification),
    )
    .unwrap();
    assert!(loaded.report.is_clean(), "{}", loaded.report);
    let io = load(&dir.join("io.safetensors"));
    // Every inference path against the same reference: the composite ops (a trace forces
    // them), the fused kernels, the fused kernels with weights packed for tessera's fp32 GEMM,
    // bf16 (AVX512_BF16 linears, fp32 accumulation: close, not equal) and int8 (dynamic
    // quantisation of every linear: 8-bit steps, so within 3% of the largest logit).
    let f32p = loaded.model.with_dtype(DType::F32).unwrap();
    let bf16 = loaded.model.with_dtype(DType::BF16).unwrap();
    let int8 = loaded.model.with_dtype(Precision::Int8).unwrap();
    let scale = max_abs_diff(&io["logits"], &io["logits"].zeros_like().unwrap());
    // Each path must really run its own kernels: its logits differ (in rounding) from the
    // previous path's, so a silent fallback to the composite ops fails here.
    let mut previous: Option<candle_core::Tensor> = None;
    for (path, m, tol) in [
        ("composite", &loaded.model, 1e-4),
        ("fused", &loaded.model, 1e-4),
        ("packed f32", &f32p, 1e-4),
        ("bf16", &bf16, 0.01 * scale.max(1.0)),
        ("int8", &int8, 0.03 * scale.max(1.0)),
    ] {
        let mut trace = tessera::nn::Trace::default();
        let mut ctx = if path == "composite" {
            Ctx::eval().with_trace(&mut trace)
        } else {
            Ctx::inference()
        };
        let logits = m.forward(&io["pixel_values"], &mut ctx).unwrap();
        let d = max_abs_diff(&logits, &io["logits"]);
        println!("logits ({path}) {d:e} (largest |logit| {scale:e})");
        assert!(d <= tol, "{path}: {d}");
        if let Some(p) = previous.replace(logits.clone()) {
            assert!(
                max_abs_diff(&logits, &p) > 0.0,
                "{path} ran the previous path"
            );
        }
    }
    assert_eq!(loaded.model.config().label(3), "class_3");
}

#[test]
fn backbone_checkpoint_loads_as_classifier_with_a_fresh_head() {
    // The in21k layout (no prefix, pooler, no classifier) with num_labels = 37, as
    // `ViTForImageClassification.from_pretrained(in21k, num_labels=37)`.
    let dir = fixture("hf_vit_model");
    let loaded = HfVit::load(&dir, &LoadOptions::default().num_labels(37).trainable()).unwrap();
    assert_eq!(
        loaded.report.missing,
        vec![
            "classifier.weight".to_string(),
            "classifier.bias".to_string()
        ]
    );
    assert!(
        loaded.ignored.iter().any(|k| k.contains("pooler.dense")),
        "{:?}",
        loaded.ignored
    );
    assert_eq!(loaded.model.config().num_labels(), 37);
    let io = load(&dir.join("io.safetensors"));
    let logits = loaded
        .model
        .forward(&io["pixel_values"], &mut Ctx::eval())
        .unwrap();
    assert_eq!(logits.dims(), &[2, 37]);
    // The classifier checkpoint loads as a bare ViTModel too (the pooler is then fresh).
    let cls = HfVit::load(
        fixture("hf_vit_cls"),
        &LoadOptions::default().task(Task::FeatureExtraction),
    )
    .unwrap();
    assert!(
        cls.report.missing.iter().all(|k| k.starts_with("pooler.")),
        "{}",
        cls.report
    );
}

#[test]
fn config_defaults_equal_transformers() {
    let c: HfVitConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(
        (
            c.hidden_size,
            c.num_hidden_layers,
            c.num_attention_heads,
            c.intermediate_size
        ),
        (768, 12, 12, 3072)
    );
    assert_eq!((c.image_size, c.patch_size, c.num_channels), (224, 16, 3));
    assert_eq!(c.layer_norm_eps, 1e-12);
    assert!(c.qkv_bias);
    let bad: HfVitConfig =
        serde_json::from_str(r#"{"hidden_size": 50, "num_attention_heads": 3}"#).unwrap();
    assert!(bad
        .validate()
        .unwrap_err()
        .to_string()
        .contains("not divisible"));
}

#[test]
fn mis_shaped_checkpoint_lists_names() {
    let src = fixture("hf_vit_cls");
    let d = tempfile::tempdir().unwrap();
    std::fs::copy(
        src.join("model.safetensors"),
        d.path().join("model.safetensors"),
    )
    .unwrap();
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    cfg["intermediate_size"] = 64.into();
    std::fs::write(d.path().join("config.json"), cfg.to_string()).unwrap();
    let err = HfVit::load(
        d.path(),
        &LoadOptions::default().task(Task::ImageClassification),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("vit.encoder.layer.0.intermediate.dense.weight") && err.contains("[64, 48]"),
        "{err}"
    );
}

/// The seed ViT (norm_first) converts to HF's layout exactly: same logits.
#[test]
fn prenorm_seed_vit_exports_to_an_equivalent_hf_classifier() {
    use tessera::models::vit::{hf::seed_to_hf, VisionTransformer, VitConfig};
    use tessera::nn::ParamStore;
    let d = fixture("seed_vit_prenorm_32");
    let cfg: VitConfig = tessera::util::read_json(&d.join("config.json")).unwrap();
    let store =
        ParamStore::from_safetensors(&d.join("model.safetensors"), 0, false, &Device::Cpu).unwrap();
    let seed = VisionTransformer::new(store.var_builder(candle_core::DType::F32), &cfg).unwrap();
    let (tensors, hf_cfg) = seed_to_hf(&cfg, &store.named_tensors()).unwrap();
    let hf_store = ParamStore::with_source(tensors.into_iter().collect(), 0, false, &Device::Cpu);
    let hf = HfVit::classifier(hf_store.var_builder(candle_core::DType::F32), &hf_cfg).unwrap();
    assert!(hf_store.report().is_clean(), "{}", hf_store.report());
    let io = load(&d.join("io.safetensors"));
    let a = seed.forward(&io["input"], &mut Ctx::eval()).unwrap();
    let b = hf.forward(&io["input"], &mut Ctx::eval()).unwrap();
    let diff = max_abs_diff(&a, &b);
    println!("seed vs exported HF logits: {diff:e}");
    assert!(diff <= 1e-5);
    // A post-norm model has no HF equivalent: a clear error.
    let post: VitConfig =
        tessera::util::read_json(&fixture("seed_vit_postnorm_28").join("config.json")).unwrap();
    assert!(seed_to_hf(&post, &[])
        .unwrap_err()
        .to_string()
        .contains("post-norm"));
}

/// Full ViT-B/16 (86M parameters, too large for a committed fixture): data from
/// `tools/check_b16.py`, run with `TESSERA_B16_DIR=... cargo test --release --test hf_vit_parity -- --ignored`.
#[test]
#[ignore]
fn full_b16_config_matches_transformers() {
    let root = std::path::PathBuf::from(
        std::env::var("TESSERA_B16_DIR").expect("set TESSERA_B16_DIR (tools/check_b16.py)"),
    );
    let m = HfVit::load(
        root.join("model"),
        &LoadOptions::default().task(Task::FeatureExtraction),
    )
    .unwrap();
    assert!(m.report.is_clean(), "{}", m.report);
    let io = load(&root.join("model").join("io.safetensors"));
    let HfVit::Model(b) = &m.model else { panic!() };
    let (h, p) = b
        .forward(&io["pixel_values"], Positions::AsTrained, &mut Ctx::eval())
        .unwrap();
    let (dh, dp) = (
        max_abs_diff(&h, &io["last_hidden_state"]),
        max_abs_diff(&p.unwrap(), &io["pooler_output"]),
    );
    println!("B/16 ViTModel: last_hidden_state {dh:e}, pooler {dp:e}");
    assert!(dh <= 1e-4 && dp <= 1e-4);
    let c = HfVit::load(
        root.join("cls"),
        &LoadOptions::default().task(Task::ImageClassification),
    )
    .unwrap();
    assert!(c.report.is_clean(), "{}", c.report);
    let io = load(&root.join("cls").join("io.safetensors"));
    let logits = c
        .model
        .forward(&io["pixel_values"], &mut Ctx::eval())
        .unwrap();
    let d = max_abs_diff(&logits, &io["logits"]);
    println!("B/16 ViTForImageClassification (37 labels): logits {d:e}");
    assert!(d <= 1e-4);
}

/// The same classifier saved by `torch.save(state_dict)` as `pytorch_model.bin`.
#[test]
fn pytorch_model_bin_loads_too() {
    let loaded = HfVit::load(
        fixture("hf_vit_cls_bin"),
        &LoadOptions::default().task(Task::ImageClassification),
    )
    .unwrap();
    assert!(loaded.report.is_clean(), "{}", loaded.report);
    let io = load(&fixture("hf_vit_cls").join("io.safetensors"));
    let logits = loaded
        .model
        .forward(&io["pixel_values"], &mut Ctx::eval())
        .unwrap();
    assert!(max_abs_diff(&logits, &io["logits"]) <= 1e-4);
}
