//! bf16 against fp32 inference on real photos: top-1 agreement and the largest logit error.
//!
//! Models (no pretrained weights offline): ViT-B/16 with 1000 labels, random init (seed 0) as
//! in the benchmark, and a fine-tuned checkpoint if one is given with `--model DIR`. Photos: the
//! scikit-image / scikit-learn images (`tools/photos.sh` lists them).
//!
//! cargo run --release --example bf16_accuracy -- [--model DIR] $(tools/photos.sh)
use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor, D};
use tessera::image::ProcessorConfig;
use tessera::models::vit::hf::{HfVit, HfVitConfig};
use tessera::models::{LoadOptions, Pretrained, Task};
use tessera::nn::Ctx;

fn compare(name: &str, model: &HfVit, x: &Tensor, paths: &[String]) -> Result<()> {
    let f32_logits = model.forward(x, &mut Ctx::inference())?;
    let bf16 = model.with_dtype(DType::BF16)?;
    let bf16_logits = bf16.forward(x, &mut Ctx::inference())?;
    let top = |t: &Tensor| -> Result<Vec<u32>> { Ok(t.argmax(D::Minus1)?.to_vec1::<u32>()?) };
    let (a, b) = (top(&f32_logits)?, top(&bf16_logits)?);
    let diff = (&f32_logits - &bf16_logits)?
        .abs()?
        .max(D::Minus1)?
        .to_vec1::<f32>()?;
    let range = f32_logits.abs()?.max(D::Minus1)?.to_vec1::<f32>()?;
    let agree = a.iter().zip(&b).filter(|(x, y)| x == y).count();
    println!("{name}: top-1 agreement {agree}/{} photos", a.len());
    for (i, p) in paths.iter().enumerate() {
        println!(
            "  {:<28} top-1 f32 {:>4} bf16 {:>4}  max |logit diff| {:.2e} (max |logit| {:.2})",
            std::path::Path::new(p)
                .file_name()
                .map_or(p.clone(), |f| f.to_string_lossy().into()),
            a[i],
            b[i],
            diff[i],
            range[i]
        );
    }
    let worst = diff.iter().copied().fold(0f32, f32::max);
    println!("  worst max |logit diff| {worst:.2e}");
    Ok(())
}

fn main() -> Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut model_dir = None;
    if let Some(i) = args.iter().position(|a| a == "--model") {
        model_dir = Some(args.get(i + 1).context("--model DIR")?.clone());
        args.drain(i..i + 2);
    }
    anyhow::ensure!(
        !args.is_empty(),
        "give photo paths (tools/photos.sh lists them)"
    );
    let dev = Device::Cpu;
    let images = args
        .iter()
        .map(|p| tessera::image::open(std::path::Path::new(p)))
        .collect::<tessera::Result<Vec<_>>>()?;
    let x = ProcessorConfig::vit(224).batch(&images, &dev)?;
    let random = HfVit::from_config(
        &HfVitConfig::default(),
        &LoadOptions::default().num_labels(1000).device(&dev),
    )?;
    compare(
        "ViT-B/16, 1000 labels, random init",
        &random.model,
        &x,
        &args,
    )?;
    if let Some(dir) = model_dir {
        let loaded = HfVit::load(
            &dir,
            &LoadOptions::default()
                .task(Task::ImageClassification)
                .device(&dev),
        )?;
        let size = loaded.model.config().image_size as u32;
        let pp = std::path::Path::new(&dir).join("preprocessor_config.json");
        let proc = if pp.exists() {
            ProcessorConfig::load(&pp)?
        } else {
            ProcessorConfig::vit(size)
        };
        let x = proc.batch(&images, &dev)?;
        compare(&dir, &loaded.model, &x, &args)?;
    }
    Ok(())
}
