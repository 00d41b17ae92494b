//! Classify images from Rust: any checkpoint tessera reads (a `tessera train` run, an HF
//! `ViTForImageClassification` directory, or a hub id), as `pipeline("image-classification")`.
//!
//! cargo run --release --example classify -- MODEL IMAGE...
//! cargo run --release --example classify        # a tiny random HF ViT fixture on a test photo
use tessera::models::LoadOptions;
use tessera::pipelines::{ImageClassification, ImageSource};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let model = args
        .next()
        .unwrap_or_else(|| "tests/fixtures/hf_vit_cls".into());
    let mut images: Vec<ImageSource> = args.map(ImageSource::parse).collect();
    if images.is_empty() {
        images.push(ImageSource::parse("tests/fixtures/processor/chelsea.png"));
    }
    // AutoModel reads config.json and builds the right model with its own preprocessing.
    let pipe = ImageClassification::from_pretrained(&model, &LoadOptions::default())?;
    for (source, top) in images.iter().zip(pipe.classify(&images, Some(3))?) {
        println!("{}", source.name());
        for s in top {
            println!("  {:>7.4}  {}", s.score, s.label);
        }
    }
    Ok(())
}
