//! `tessera index`: a folder's images into a persistent search index, or (with `--out`) one
//! shard of a large collection into Parquet parts; `tessera index merge` joins the parts.
use anyhow::{bail, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use tessera::pipelines::shards::{self, Shard};
use tessera::pipelines::{ClipEmbedder, Index};

#[derive(Parser)]
#[command(allow_negative_numbers = true, args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    cmd: Option<IndexCmd>,
    #[command(flatten)]
    build: Build,
}

#[derive(Subcommand)]
enum IndexCmd {
    /// Join the Parquet parts of every shard into one search index.
    Merge(Merge),
}

#[derive(clap::Args)]
struct Build {
    /// The CLIP checkpoint: a local directory or a hub id (`owner/name[@revision]`).
    #[arg(long)]
    model: Option<std::ffi::OsString>,
    #[command(flatten)]
    dtype: super::common::Dtype,
    #[command(flatten)]
    processor: super::common::Processor,
    folder: Option<PathBuf>,
    /// Index file (a manifest .json is written next to it). Default: FOLDER/tessera_index.safetensors.
    #[arg(long, conflicts_with = "out")]
    index: Option<PathBuf>,
    /// Write Parquet parts (path, sha256, size, mtime, embedding) into this directory instead
    /// of an index file; resumable; see --shard and `tessera index merge`.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Embed only shard i of N (0-based; files are assigned by a hash of their path), so N
    /// machines can share a collection. Needs --out.
    #[arg(long, requires = "out")]
    shard: Option<String>,
    /// Rows per Parquet part (each part is written atomically; a killed run resumes from them).
    #[arg(long, default_value_t = 4096)]
    rows_per_part: usize,
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// Also build an HNSW graph (NAME.usearch) for approximate search of large indexes.
    #[arg(long, conflicts_with = "out")]
    hnsw: bool,
    #[command(flatten)]
    bpe: super::common::Bpe,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct Merge {
    /// Directories (or single .parquet parts) written by `tessera index --out`.
    #[arg(required = true)]
    parts: Vec<PathBuf>,
    /// The merged index file.
    #[arg(long)]
    index: PathBuf,
    /// The model to record (default: the one every part names).
    #[arg(long)]
    model: Option<String>,
    /// Also build an HNSW graph (INDEX.usearch) for approximate search.
    #[arg(long)]
    hnsw: bool,
}

/// Builds and writes the graph of the index at `path`.
fn build_graph(path: &std::path::Path) -> Result<()> {
    let idx = Index::load(path)?;
    if idx.embeds.is_empty() {
        bail!("{}: empty index, no graph to build", path.display());
    }
    let t0 = std::time::Instant::now();
    let h = idx.build_graph(path, &tessera::pipelines::ann::AnnOptions::default())?;
    eprintln!(
        "{}: HNSW graph of {} vectors in {:.1} s ({})",
        tessera::pipelines::ann::graph_path(path).display(),
        h.len(),
        t0.elapsed().as_secs_f64(),
        tessera::util::human_bytes(h.memory_usage() as u64)
    );
    Ok(())
}

pub fn run(a: Args) -> Result<()> {
    match a.cmd {
        Some(IndexCmd::Merge(m)) => {
            let r = shards::merge(&m.parts, &m.index, m.model.as_deref())?;
            eprintln!(
                "{}: {} images from {} parts ({} duplicate paths)",
                m.index.display(),
                r.rows,
                r.parts,
                r.duplicates
            );
            if m.hnsw {
                build_graph(&m.index)?;
            }
            Ok(())
        }
        None => build(a.build),
    }
}

fn build(a: Build) -> Result<()> {
    let (Some(model), Some(folder)) = (a.model.as_ref(), a.folder.as_ref()) else {
        bail!("give --model and the FOLDER to index (or `tessera index merge`)");
    };
    if !folder.is_dir() {
        bail!("{}: not a directory", folder.display());
    }
    if a.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let bars = super::common::bars();
    let opts = a.dtype.options()?;
    let mut e = ClipEmbedder::from_pretrained(model, &a.bpe.bpe, &opts)?
        .with_processor_backend(a.processor.backend);
    e.batch_size = a.batch_size;
    // Absolute paths in the manifest, so `search` works from any directory.
    let model_id = std::fs::canonicalize(model)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| model.to_string_lossy().into_owned());
    let folder = std::fs::canonicalize(folder).unwrap_or(folder.clone());
    if let Some(out) = &a.out {
        let shard = match &a.shard {
            Some(s) => Shard::parse(s)?,
            None => Shard::ALL,
        };
        let r = shards::embed_shard(&e, &model_id, &folder, out, shard, a.rows_per_part, &*bars)?;
        eprintln!(
            "{}: shard {}/{}: {} embedded, {} already done, {} skipped, {} in other shards; {} parts written",
            out.display(),
            shard.index,
            shard.count,
            r.embedded,
            r.reused,
            r.skipped.len(),
            r.other_shards,
            r.parts.len()
        );
        if a.json {
            println!("{}", serde_json::to_string(&r)?);
        }
        return Ok(());
    }
    let index = a
        .index
        .clone()
        .unwrap_or_else(|| folder.join("tessera_index.safetensors"));
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
    if a.hnsw {
        build_graph(&index)?;
    }
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    }
    Ok(())
}
