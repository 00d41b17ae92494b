#![allow(dead_code)]
pub mod generation;
pub mod images;
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::PathBuf;

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(name)
}

pub fn load(path: &std::path::Path) -> HashMap<String, Tensor> {
    tessera::nn::store::load_safetensors(path, &Device::Cpu).expect("fixture")
}

pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// OpenAI's BPE merges, where `tools/fetch_clip_bpe.sh` puts them.
pub fn bpe() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/bpe_simple_vocab_16e6.txt.gz");
    assert!(p.exists(), "run tools/fetch_clip_bpe.sh");
    p
}

/// A random tiny CLIP (16-wide embeddings) with the real vocabulary, saved as an HF checkpoint
/// in `dir`.
pub fn tiny_clip(dir: &std::path::Path) {
    use tessera::models::clip::{Clip, ClipConfig};
    let cfg: ClipConfig = serde_json::from_value(serde_json::json!({
        "text_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2},
        "vision_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
        "projection_dim": 16, "model_type": "clip"
    }))
    .unwrap();
    let store = tessera::nn::ParamStore::fresh(5, false, &Device::Cpu);
    Clip::new(store.var_builder(candle_core::DType::F32), &cfg).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    store.save(&dir.join("model.safetensors")).unwrap();
    tessera::util::write_json(&dir.join("config.json"), &cfg).unwrap();
}

/// The weights of `store` after `steps` AdamW steps at `lr` against PyTorch's
/// (`after.safetensors` of fixture `dir`): within 2e-5 absolute, except where PyTorch saw a
/// near-zero gradient (|g| < 1e-8 at some step, `min_abs_grad.safetensors`): there Adam's
/// normalised step m/√v is ±lr whatever the gradient's size, so float noise in g can flip its
/// sign; those elements may differ by at most the 2·lr·steps such flips allow, and they must be
/// rare (< 0.5% of all weights).
pub fn assert_adamw_weights_match(
    store: &tessera::nn::ParamStore,
    dir: &str,
    lr: f64,
    steps: usize,
) {
    let after = load(&fixture(dir).join("after.safetensors"));
    let min_g = load(&fixture(dir).join("min_abs_grad.safetensors"));
    let (mut total, mut exempt, mut worst) = (0usize, 0usize, 0f32);
    for (name, t) in store.named_tensors() {
        let got = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let want = after[&name]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let g = min_g[&name]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        for i in 0..got.len() {
            let d = (got[i] - want[i]).abs();
            total += 1;
            if g[i] < 1e-8 {
                exempt += 1;
                assert!(
                    d <= (2.0 * lr * steps as f64) as f32 + 1e-6,
                    "{name}[{i}] differs by {d}"
                );
            } else {
                worst = worst.max(d);
                assert!(
                    d <= 2e-5,
                    "{name}[{i}]: {} vs {} (|g| >= {})",
                    got[i],
                    want[i],
                    g[i]
                );
            }
        }
    }
    println!("weights: max diff {worst:e} over {total} values; {exempt} near-zero-gradient values exempt");
    assert!(
        (exempt as f64) < 0.005 * total as f64,
        "{exempt} of {total} weights had near-zero gradients"
    );
}

/// A seed ViT fixture (tools/gen_fixtures.py): its model, store and config; every PyTorch tensor
/// name consumed, none missing or mis-shaped.
pub fn seed_vit_fixture(
    dir: &str,
    trainable: bool,
) -> (
    tessera::models::vit::VisionTransformer,
    tessera::nn::ParamStore,
    tessera::models::vit::VitConfig,
) {
    let d = fixture(dir);
    let cfg: tessera::models::vit::VitConfig =
        tessera::util::read_json(&d.join("config.json")).unwrap();
    let store = tessera::nn::ParamStore::from_safetensors(
        &d.join("model.safetensors"),
        0,
        trainable,
        &Device::Cpu,
    )
    .unwrap();
    let model = tessera::models::vit::VisionTransformer::new(
        store.var_builder(candle_core::DType::F32),
        &cfg,
    )
    .unwrap();
    let report = store.report();
    assert!(report.is_clean(), "{report}");
    (model, store, cfg)
}
