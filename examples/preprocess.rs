//! Runs an HF image processor on image files and writes the uint8 pixels (before rescaling,
//! `[3, H, W]` per image) to a safetensors file, for `tools/check_processor.py`.
//!
//! cargo run --release --example preprocess -- PREPROCESSOR_CONFIG.json OUT.safetensors IMAGE...
use candle_core::{Device, Tensor};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(args.len() >= 3, "usage: preprocess CONFIG OUT IMAGE...");
    let proc = tessera::image::ProcessorConfig::load(std::path::Path::new(&args[0]))?;
    let mut out = vec![];
    for path in &args[2..] {
        let img = tessera::image::open(std::path::Path::new(path))?;
        let (px, h, w) = proc.pixels_u8(&img)?;
        // HWC -> CHW
        let t = Tensor::from_vec(px, (h as usize, w as usize, 3), &Device::Cpu)?
            .permute((2, 0, 1))?
            .contiguous()?;
        out.push((path.clone(), t));
    }
    tessera::nn::store::save_safetensors(std::path::Path::new(&args[1]), &out)?;
    Ok(())
}
