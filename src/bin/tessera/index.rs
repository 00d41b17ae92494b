//! `tessera index`: a folder's images into a persistent search index.
use anyhow::{bail, Result};
use clap::Parser;
use std::path::PathBuf;
use tessera::pipelines::{ClipEmbedder, Index};

#[derive(Parser)]
#[command(allow_negative_numbers = true)]
pub struct Args {
    #[command(flatten)]
    model: super::common::Model,
    folder: PathBuf,
    /// Index file (a manifest .json is written next to it). Default: FOLDER/tessera_index.safetensors.
    #[arg(long)]
    index: Option<PathBuf>,
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    #[command(flatten)]
    bpe: super::common::Bpe,
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<()> {
    if !a.folder.is_dir() {
        bail!("{}: not a directory", a.folder.display());
    }
    if a.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let index = a
        .index
        .clone()
        .unwrap_or_else(|| a.folder.join("tessera_index.safetensors"));
    let bars = super::common::bars();
    let opts = a.model.dtype.options()?;
    let mut e = ClipEmbedder::from_pretrained(&a.model.model, &a.bpe.bpe, &opts)?
        .with_processor_backend(a.model.processor.backend);
    e.batch_size = a.batch_size;
    // Absolute paths in the manifest, so `search` works from any directory.
    let model_id = std::fs::canonicalize(&a.model.model)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| a.model.model.to_string_lossy().into_owned());
    let folder = std::fs::canonicalize(&a.folder).unwrap_or(a.folder.clone());
    let r = Index::update(&e, &model_id, &folder, &index, &*bars)?;
    eprintln!(
        "{}: {} images ({} embedded, {} unchanged, {} removed, {} skipped)",
        index.display(),
        r.total,
        r.embedded,
        r.reused,
        r.removed,
        r.skipped.len()
    );
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    }
    Ok(())
}
