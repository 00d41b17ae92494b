//! `tessera search`: indexed images ranked by similarity to a text.
use anyhow::Result;
use clap::Parser;
use serde_json::json;
use std::path::PathBuf;
use tessera::pipelines::{ClipEmbedder, Index};

#[derive(Parser)]
#[command(allow_negative_numbers = true)]
pub struct Args {
    /// The index file written by `tessera index` (its manifest names the model).
    index: PathBuf,
    query: String,
    #[command(flatten)]
    dtype: super::common::Dtype,
    #[command(flatten)]
    processor: super::common::Processor,
    #[arg(short, long, default_value_t = 5)]
    k: usize,
    #[command(flatten)]
    bpe: super::common::Bpe,
    #[arg(long)]
    json: bool,
    /// Brute force even when the index has an HNSW graph (INDEX.usearch, used by default).
    #[arg(long)]
    exact: bool,
    /// HNSW candidates kept while searching (higher: slower, closer to exact).
    #[arg(long)]
    ef: Option<usize>,
}

pub fn run(a: Args) -> Result<()> {
    let idx = Index::load(&a.index)?;
    let opts = a.dtype.options()?;
    let e = ClipEmbedder::from_pretrained(&idx.manifest.model, &a.bpe.bpe, &opts)?
        .with_processor_backend(a.processor.backend);
    let graph = if a.exact {
        None
    } else {
        idx.load_graph(&a.index)?
    };
    if let (Some(g), Some(ef)) = (&graph, a.ef) {
        g.set_expansion_search(ef);
    }
    let hits = idx.search_with(&e, &a.query, a.k, graph.as_ref())?;
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
