//! `tessera embed`: CLIP embeddings and their similarity matrix.
use anyhow::{bail, Result};
use candle_core::Tensor;
use clap::Parser;
use serde_json::json;
use std::ffi::OsString;
use std::path::PathBuf;
use tessera::pipelines::{ClipEmbedder, ImageSource};

#[derive(Parser)]
#[command(allow_negative_numbers = true)]
pub struct Args {
    #[command(flatten)]
    model: super::common::Model,
    /// Image files or URLs.
    #[arg(long = "image")]
    images: Vec<OsString>,
    /// Texts.
    #[arg(long = "text")]
    texts: Vec<String>,
    /// Write embeddings and the similarity matrix here (.json or .safetensors); default: JSON
    /// on stdout.
    #[arg(long)]
    output: Option<PathBuf>,
    #[command(flatten)]
    bpe: super::common::Bpe,
}

pub fn run(a: Args) -> Result<()> {
    if a.images.is_empty() && a.texts.is_empty() {
        bail!("give at least one --image or --text");
    }
    let opts = a.model.dtype.options()?;
    let e = ClipEmbedder::from_pretrained(&a.model.model, &a.bpe.bpe, &opts)?
        .with_processor_backend(a.model.processor.backend);
    let sources: Vec<ImageSource> = a.images.iter().map(ImageSource::parse).collect();
    let img = if sources.is_empty() {
        None
    } else {
        let decoded: Vec<_> = sources
            .iter()
            .map(|s| s.load())
            .collect::<tessera::Result<_>>()?;
        Some(e.image_embeds(&decoded)?)
    };
    let txt = if a.texts.is_empty() {
        None
    } else {
        Some(e.text_embeds(&a.texts)?)
    };
    // image_features @ text_features.T (cosine similarities: both are L2-normalised)
    let sim = match (&img, &txt) {
        (Some(i), Some(t)) => Some(i.matmul(&t.t()?)?),
        _ => None,
    };
    let named = [
        ("image_embeds", &img),
        ("text_embeds", &txt),
        ("similarity", &sim),
    ];
    match &a.output {
        Some(path) if path.extension().and_then(|e| e.to_str()) == Some("safetensors") => {
            let ts: Vec<(String, Tensor)> = named
                .iter()
                .filter_map(|(k, v)| v.as_ref().map(|v| (k.to_string(), v.clone())))
                .collect();
            tessera::nn::store::save_safetensors(path, &ts)?;
            eprintln!("wrote {}", path.display());
        }
        output => {
            let mut out = json!({
                "images": sources.iter().map(ImageSource::name).collect::<Vec<_>>(),
                "texts": a.texts,
                "logit_scale": e.model.logit_scale.exp()?.to_scalar::<f32>()?,
            });
            for (k, v) in named {
                out[k] = match v {
                    Some(t) => json!(t.to_vec2::<f32>()?),
                    None => serde_json::Value::Null,
                };
            }
            match output {
                Some(p) => tessera::util::write_json(p, &out)?,
                None => println!("{}", serde_json::to_string(&out)?),
            }
        }
    }
    Ok(())
}
