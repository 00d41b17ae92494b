//! A `model.safetensors` (arbitrary bytes) through the weights checks and the load report of a
//! tiny HF ViT classifier: errors are fine, panics are bugs.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tessera::models::{Checkpoint, LoadOptions, Pretrained};

#[path = "common.rs"]
mod common;

const CONFIG: &str = include_str!("../../tests/fixtures/hf_vit_cls/config.json");

fuzz_target!(|data: &[u8]| {
    let dir = common::scratch("ckpt/model.safetensors", data);
    let dir = dir.parent().expect("scratch dir");
    std::fs::write(dir.join("config.json"), CONFIG).expect("config");
    let Ok(ckpt) = Checkpoint::read_dir(dir, &candle_core::Device::Cpu) else {
        return;
    };
    if let Ok(l) = tessera::models::vit::hf::HfVit::from_checkpoint(ckpt, &LoadOptions::default()) {
        let _ = l.report.to_string();
    }
});
