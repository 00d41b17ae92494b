//! `tessera zero-shot`: CLIP scores of candidate labels for each image.
use anyhow::{bail, Result};
use clap::Parser;
use serde_json::json;
use std::ffi::OsString;
use tessera::pipelines::{fill_template, ClipEmbedder, ImageSource, ZeroShotClassifier};

#[derive(Parser)]
#[command(allow_negative_numbers = true)]
pub struct Args {
    #[command(flatten)]
    model: super::common::Model,
    /// Candidate labels, comma separated.
    #[arg(long, value_delimiter = ',', required = true)]
    labels: Vec<String>,
    /// Hypothesis template; `{}` is replaced by each label.
    #[arg(long, default_value = "This is a photo of {}.")]
    template: String,
    /// Image files or http(s) URLs.
    #[arg(required = true)]
    images: Vec<OsString>,
    #[command(flatten)]
    bpe: super::common::Bpe,
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<()> {
    let labels: Vec<String> = a
        .labels
        .iter()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    if labels.is_empty() {
        bail!("--labels is empty: give candidate labels, e.g. --labels cricket,ladybug,spider");
    }
    // Before loading the model: a bad template fails at once.
    fill_template(&a.template, "x")?;
    let opts = a.model.dtype.options()?;
    let embedder = ClipEmbedder::from_pretrained(&a.model.model, &a.bpe.bpe, &opts)?
        .with_processor_backend(a.model.processor.backend);
    let zs = ZeroShotClassifier::new(embedder);
    let sources: Vec<ImageSource> = a.images.iter().map(ImageSource::parse).collect();
    let results = zs.classify(&sources, &labels, &a.template)?;
    if a.json {
        let out: Vec<_> = sources
            .iter()
            .zip(&results)
            .map(|(s, r)| json!({"image": s.name(), "scores": r}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for (s, r) in sources.iter().zip(&results) {
            println!("{}", s.name());
            for ls in r {
                println!("  {:>7.4}  {}", ls.score, ls.label);
            }
        }
    }
    Ok(())
}
