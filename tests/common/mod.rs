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
