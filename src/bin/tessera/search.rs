//! `tessera search`: indexed images ranked by similarity to a text.
use anyhow::Result;
use clap::Parser;
use serde_json::json;
use std::path::PathBuf;
use tessera::pipelines::{ClipEmbedder, Index};

#[derive(Parser)]
pub struct Args {
    /// The index file written by `tessera index` (its manifest names the model).
    index: PathBuf,
    query: String,
    /// Inference dtype: f32 (exact), bf16 (AVX512_BF16 linears, fp32 accumulation) or auto
    /// (bf16 where the CPU has native bf16 dot products, else f32).
    #[arg(long, default_value = "f32")]
    dtype: String,
    #[arg(short, long, default_value_t = 5)]
    k: usize,
    #[arg(long, default_value_os_t = super::common::default_bpe())]
    bpe: PathBuf,
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<()> {
    let idx = Index::load(&a.index)?;
    let opts = super::common::inference_load().dtype(super::common::dtype(&a.dtype)?);
    let e = ClipEmbedder::from_pretrained(&idx.manifest.model, &a.bpe, &opts)?;
    let hits = idx.search(&e, &a.query, a.k)?;
    if a.json {
        let v: Vec<_> = hits
            .iter()
            .map(|(p, s)| json!({"path": idx.manifest.folder.join(p).display().to_string(), "score": s}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for (p, s) in hits {
            println!("{s:>7.4}  {}", idx.manifest.folder.join(p).display());
        }
    }
    Ok(())
}
