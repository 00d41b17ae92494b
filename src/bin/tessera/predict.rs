//! `tessera predict`: top-k labels of images.
use anyhow::Result;
use clap::Parser;
use serde_json::json;
use std::ffi::OsString;
use tessera::pipelines::{ImageClassification, ImageSource};

#[derive(Parser)]
#[command(allow_negative_numbers = true)]
pub struct Args {
    #[command(flatten)]
    model: super::common::Model,
    /// Image files or http(s) URLs.
    #[arg(required = true)]
    images: Vec<OsString>,
    #[arg(long, default_value_t = 5)]
    top_k: usize,
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<()> {
    let opts = a.model.dtype.options()?;
    let pipe = ImageClassification::from_pretrained(&a.model.model, &opts)?
        .with_processor_backend(a.model.processor.backend);
    let mut results = vec![];
    for image in &a.images {
        let source = ImageSource::parse(image);
        let top = pipe.classify(std::slice::from_ref(&source), Some(a.top_k))?;
        let top = top.into_iter().next().unwrap_or_default();
        if !a.json {
            println!("{}", source.name());
            for t in &top {
                println!("  {:>7.4}  {}", t.score, t.label);
            }
        }
        results.push(json!({"image": source.name(), "predictions": top}));
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    }
    Ok(())
}
