//! A trained seed ViT run as a Hugging Face `ViTForImageClassification` checkpoint.
use crate::image::ProcessorConfig;
use crate::models::vit::hf::seed_to_hf;
use crate::models::vit::VisionTransformer;
use crate::models::{LoadOptions, Pretrained};
use crate::{Error, Result};
use std::path::Path;

/// Converts a pre-norm seed ViT run (`config.json` + `model.safetensors`) into an HF checkpoint
/// in `out` — `model.safetensors` (HF names), `config.json`, `preprocessor_config.json` — that
/// `ViTForImageClassification.from_pretrained` and `tessera finetune` load. `out` must not be
/// the run itself (that would overwrite what is being converted).
pub fn seed_run_to_hf(run: &Path, out: &Path) -> Result<()> {
    if let (Ok(a), Ok(b)) = (std::fs::canonicalize(run), std::fs::canonicalize(out)) {
        if a == b {
            return Err(Error::Config(format!(
                "the output {} is the run being converted: choose another directory",
                out.display()
            )));
        }
    }
    let loaded = VisionTransformer::load(run, &LoadOptions::default())?;
    let cfg = &loaded.model.config;
    let (tensors, hf_cfg) = seed_to_hf(cfg, &loaded.store.named_tensors())?;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    crate::nn::store::save_safetensors(&out.join("model.safetensors"), &tensors)?;
    crate::util::write_json(&out.join("config.json"), &hf_cfg)?;
    let mut proc = ProcessorConfig::vit(cfg.image_size as u32);
    proc.image_mean = cfg.image_mean.clone();
    proc.image_std = cfg.image_std.clone();
    crate::util::write_json(&out.join("preprocessor_config.json"), &proc)
}
