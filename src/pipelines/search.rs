//! Text-to-image search over a folder: CLIP image embeddings in a persistent index
//! (`NAME.safetensors`: rows of L2-normalised embeddings, and in its header the manifest — the
//! model, and per image its path, size, modification time and row — so that one atomic rename
//! replaces both together; `NAME.json` is a readable copy of the manifest). Re-indexing embeds
//! only new or changed files; progress is saved every few batches, so an interrupted (even
//! killed) run resumes; unreadable images are skipped, reported and listed in the manifest.
use super::ClipEmbedder;
use crate::progress::Progress;
use crate::{Error, Result};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Relative to the indexed folder.
    pub path: String,
    pub size: u64,
    pub mtime: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Manifest {
    pub model: String,
    pub folder: PathBuf,
    pub entries: Vec<Entry>,
    /// Files that could not be read, with why.
    pub skipped: Vec<(String, String)>,
}

/// A loaded index.
pub struct Index {
    pub manifest: Manifest,
    /// [N, P] L2-normalised.
    pub embeds: Vec<Vec<f32>>,
}

/// What an indexing run did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct IndexReport {
    pub embedded: usize,
    pub reused: usize,
    pub removed: usize,
    pub skipped: Vec<(String, String)>,
    pub total: usize,
}

fn manifest_path(index: &Path) -> PathBuf {
    index.with_extension("json")
}

/// The header key holding the manifest.
const MANIFEST_KEY: &str = "tessera_index_manifest";

/// Every image file under `dir` (recursively; unreadable entries included, to be reported).
pub(crate) fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for e in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let p = e.map_err(|e| Error::io(dir, e))?.path();
        if p.is_dir() {
            walk(&p, out)?;
        } else if crate::image::is_image_path(&p) {
            // Dangling links and unreadable files too: they are skipped and reported later.
            out.push(p);
        }
    }
    Ok(())
}

/// `f`'s path relative to the indexed `folder`, as the manifest stores it.
pub(crate) fn relative(folder: &Path, f: &Path) -> String {
    f.strip_prefix(folder)
        .unwrap_or(f)
        .to_string_lossy()
        .into_owned()
}

/// The manifest entry of file `f` (size and modification time: what marks it changed).
pub(crate) fn entry(f: &Path, rel: &str) -> Result<Entry> {
    let meta = std::fs::metadata(f).map_err(|e| Error::io(f, e))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    Ok(Entry {
        path: rel.to_string(),
        size: meta.len(),
        mtime,
    })
}

impl Index {
    /// Reads an index written by [`Index::update`] (or by older tessera versions, whose
    /// manifest lives only in `NAME.json`). Rows and manifest must agree, every row must have
    /// the same width and only finite values.
    pub fn load(index: &Path) -> Result<Index> {
        let bytes = std::fs::read(index).map_err(|e| Error::io(index, e))?;
        let bad = |msg: String| Error::data(index, format!("{msg}; re-run tessera index"));
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| bad(format!("not a valid index file: {e}")))?;
        let manifest: Manifest = match header.metadata().as_ref().and_then(|m| m.get(MANIFEST_KEY))
        {
            Some(json) => serde_json::from_str(json)
                .map_err(|e| bad(format!("the index's manifest is not valid: {e}")))?,
            None => crate::util::read_json(&manifest_path(index))?,
        };
        let t = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
            .map_err(|e| bad(format!("not a valid index file: {e}")))?;
        let embeds: Vec<Vec<f32>> = match t.get("embeds") {
            Some(e) if e.rank() == 2 && e.dim(0)? == manifest.entries.len() => {
                e.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?
            }
            Some(e) => {
                return Err(bad(format!(
                    "embeddings {:?} and the manifest's {} images disagree",
                    e.dims(),
                    manifest.entries.len()
                )))
            }
            None if manifest.entries.is_empty() => vec![],
            None => return Err(bad("no embeds tensor".into())),
        };
        if let Some(i) = embeds.iter().position(|r| r.iter().any(|v| !v.is_finite())) {
            return Err(bad(format!(
                "the embedding of {} has NaN or infinite values",
                manifest.entries[i].path
            )));
        }
        Ok(Index { manifest, embeds })
    }

    /// The embedding width (`None` for an empty index).
    pub fn width(&self) -> Option<usize> {
        self.embeds.first().map(Vec::len)
    }

    /// One file holds rows and manifest: a crash leaves the old index or the new one.
    pub(crate) fn save(&self, index: &Path) -> Result<()> {
        let manifest = serde_json::to_string(&self.manifest)
            .map_err(|e| Error::Msg(format!("index manifest: {e}")))?;
        let meta = HashMap::from([(MANIFEST_KEY.to_string(), manifest)]);
        let tensors = match self.width() {
            Some(w) => {
                let flat: Vec<f32> = self.embeds.iter().flatten().copied().collect();
                let t = Tensor::from_vec(flat, (self.embeds.len(), w), &Device::Cpu)?;
                vec![("embeds".to_string(), t)]
            }
            None => vec![],
        };
        crate::nn::store::save_safetensors_with(index, &tensors, meta)?;
        // A graph of the old rows would answer for the wrong images.
        let graph = super::ann::graph_path(index);
        if graph.exists() {
            std::fs::remove_file(&graph).map_err(|e| Error::io(&graph, e))?;
        }
        // A readable copy for people and older tools; `load` trusts the header.
        crate::util::write_json(&manifest_path(index), &self.manifest)
    }

    /// Builds or updates the index of `folder` at `index` (`model` names the checkpoint in the
    /// manifest). Progress goes to `progress`: one phase over the images to embed, and a note
    /// per unreadable file (skipped and listed in the report).
    pub fn update(
        embedder: &ClipEmbedder,
        model: &str,
        folder: &Path,
        index: &Path,
        progress: &dyn Progress,
    ) -> Result<IndexReport> {
        let mut files = vec![];
        walk(folder, &mut files)?;
        files.sort();
        let old = if index.exists() {
            Some(Index::load(index)?)
        } else {
            None
        };
        // Rows of another model (or of another width) are never mixed in.
        let width = embedder.model.config.projection_dim;
        let old = old.filter(|o| o.manifest.model == model && o.width().is_none_or(|w| w == width));
        let mut reuse: HashMap<String, (Entry, Vec<f32>)> = HashMap::new();
        if let Some(o) = old {
            for (e, v) in o.manifest.entries.into_iter().zip(o.embeds) {
                reuse.insert(e.path.clone(), (e, v));
            }
        }
        let mut idx = Index {
            manifest: Manifest {
                model: model.into(),
                folder: folder.to_path_buf(),
                ..Default::default()
            },
            embeds: vec![],
        };
        let mut report = IndexReport::default();
        let mut todo = vec![];
        for f in &files {
            let rel = relative(folder, f);
            let entry = match entry(f, &rel) {
                Ok(e) => e,
                Err(e) => {
                    // A dangling link, a file removed meanwhile: skipped, like undecodable ones.
                    let why = e.to_string();
                    progress.note(&format!("skipping {why}"));
                    report.skipped.push((rel, why));
                    continue;
                }
            };
            match reuse.remove(&rel) {
                Some((e, v)) if e == entry => {
                    idx.manifest.entries.push(e);
                    idx.embeds.push(v);
                    report.reused += 1;
                }
                _ => todo.push((f.clone(), entry)),
            }
        }
        report.removed = reuse.len();
        progress.start("indexing", Some(todo.len() as u64));
        for (bi, chunk) in todo.chunks(embedder.batch_size.max(1)).enumerate() {
            let mut imgs = vec![];
            let mut ok = vec![];
            for (f, entry) in chunk {
                match crate::image::open(f) {
                    Ok(i) => {
                        imgs.push(i);
                        ok.push(entry.clone());
                    }
                    Err(e) => {
                        progress.note(&format!("skipping {}: {e}", f.display()));
                        report.skipped.push((entry.path.clone(), e.to_string()));
                    }
                }
            }
            if !imgs.is_empty() {
                let e = embedder.image_embeds(&imgs)?.to_vec2::<f32>()?;
                idx.manifest.entries.extend(ok);
                idx.embeds.extend(e);
                report.embedded += imgs.len();
            }
            progress.advance(chunk.len() as u64, "");
            // Save progress every 8 batches: an interrupted run resumes from here.
            if bi % 8 == 7 {
                idx.manifest.skipped = report.skipped.clone();
                idx.save(index)?;
            }
        }
        progress.finish();
        idx.manifest.skipped = report.skipped.clone();
        idx.save(index)?;
        report.total = idx.manifest.entries.len();
        Ok(report)
    }

    /// Builds the HNSW graph of the rows and writes it next to `index` (`NAME.usearch`), where
    /// [`Index::load_graph`] finds it; any later save of the index removes it.
    pub fn build_graph(
        &self,
        index: &Path,
        opts: &super::ann::AnnOptions,
    ) -> Result<super::ann::Hnsw> {
        let h = super::ann::Hnsw::build(&self.embeds, opts)?;
        h.save(&super::ann::graph_path(index))?;
        Ok(h)
    }

    /// The graph written for the index at `index`, if there is one and it has every row.
    pub fn load_graph(&self, index: &Path) -> Result<Option<super::ann::Hnsw>> {
        let p = super::ann::graph_path(index);
        if !p.exists() {
            return Ok(None);
        }
        let h = super::ann::Hnsw::load(&p, true)?;
        if h.len() != self.embeds.len() || self.width().is_some_and(|w| w != h.dim()) {
            return Err(Error::data(
                &p,
                format!(
                    "holds {} vectors, the index {}: rebuild it (tessera index --hnsw) or delete it",
                    h.len(),
                    self.embeds.len()
                ),
            ));
        }
        Ok(Some(h))
    }

    /// The `k` images most similar (cosine) to `query`: (path, similarity), best first; exact
    /// unless `graph` is given.
    pub fn search(
        &self,
        embedder: &ClipEmbedder,
        query: &str,
        k: usize,
    ) -> Result<Vec<(String, f32)>> {
        self.search_with(embedder, query, k, None)
    }

    /// [`Index::search`], approximate through `graph` when given.
    pub fn search_with(
        &self,
        embedder: &ClipEmbedder,
        query: &str,
        k: usize,
        graph: Option<&super::ann::Hnsw>,
    ) -> Result<Vec<(String, f32)>> {
        if query.trim().is_empty() {
            return Err(Error::Config("empty query".into()));
        }
        if k == 0 {
            return Err(Error::Config("k must be at least 1".into()));
        }
        let q = embedder
            .text_embeds(&[query.to_string()])?
            .squeeze(0)?
            .to_vec1::<f32>()?;
        if let Some(w) = self.width().filter(|&w| w != q.len()) {
            return Err(Error::Config(format!(
                "the index holds {w}-wide embeddings, this model gives {}: index the folder with this model",
                q.len()
            )));
        }
        let hits = match graph {
            Some(g) => g.search(&q, k)?,
            None => super::ann::exact_top_k(&self.embeds, &q, k),
        };
        Ok(hits
            .into_iter()
            .filter_map(|(i, s)| self.manifest.entries.get(i).map(|e| (e.path.clone(), s)))
            .collect())
    }
}
