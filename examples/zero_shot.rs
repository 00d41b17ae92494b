//! CLIP zero-shot classification from Rust, as `pipeline("zero-shot-image-classification")`.
//!
//! cargo run --release --example zero_shot -- openai/clip-vit-base-patch32 photo.jpg
//! cargo run --release --example zero_shot     # offline: a random tiny CLIP (scores meaningless)
use tessera::models::clip::{Clip, ClipConfig, ClipTokenizer};
use tessera::models::{LoadOptions, Pretrained};
use tessera::pipelines::{embed::DEFAULT_BPE, ClipEmbedder, ImageSource, ZeroShotClassifier};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let opts = LoadOptions::default();
    let bpe = std::path::Path::new(DEFAULT_BPE);
    let embedder = match args.next() {
        // A checkpoint directory or hub id, with its tokenizer and image processor.
        Some(model) => ClipEmbedder::from_pretrained(&model, bpe, &opts)?,
        // Offline: random weights from a small config (OpenAI's tokenizer, CLIP's processor).
        None => {
            let cfg: ClipConfig = serde_json::from_value(serde_json::json!({
                "text_config": {"hidden_size": 64, "intermediate_size": 128,
                                "num_hidden_layers": 2, "num_attention_heads": 2},
                "vision_config": {"hidden_size": 64, "intermediate_size": 128,
                                  "num_hidden_layers": 2, "num_attention_heads": 2,
                                  "image_size": 64, "patch_size": 16},
                "projection_dim": 32
            }))?;
            let model = Clip::from_config(&cfg, &opts)?.model;
            ClipEmbedder::new(
                model,
                ClipTokenizer::from_bpe_gz(bpe)?,
                tessera::image::ProcessorConfig::clip(64),
                &opts.device,
            )
        }
    };
    let mut images: Vec<ImageSource> = args.map(ImageSource::parse).collect();
    if images.is_empty() {
        images.push(ImageSource::parse("tests/fixtures/processor/chelsea.png"));
    }
    let labels: Vec<String> = ["a cat", "a dog", "a rocket"].map(String::from).to_vec();
    let zs = ZeroShotClassifier::new(embedder);
    let scores = zs.classify(&images, &labels, "This is a photo of {}.")?;
    for (source, ranked) in images.iter().zip(scores) {
        println!("{}", source.name());
        for s in ranked {
            println!("  {:>7.4}  {}", s.score, s.label);
        }
    }
    Ok(())
}
