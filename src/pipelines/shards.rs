//! Embedding a large collection on many machines: `tessera index --shard i/N --out DIR` embeds
//! the files whose path hashes to shard `i` of `N` into Parquet files (clip-retrieval's layout:
//! one row per image with its path, SHA-256 content hash, size, modification time and the
//! embedding as a `list<float>` column, the model in the file's key-value metadata), so any
//! scheduler (Slurm arrays, Kubernetes jobs, Ray) can run the N shards anywhere, and pyarrow,
//! DuckDB, Spark or polars read the result. Parts are written every `rows_per_part` rows, each
//! atomically: a killed shard resumes from its written parts.
//!
//! [`merge`] joins the parts of every shard into one search [`Index`] (the same file
//! `Index::update` writes, so `tessera search` and later incremental updates work on it).
use super::search::{self, Entry, Index, Manifest};
use super::ClipEmbedder;
use crate::progress::Progress;
use crate::{Error, Result};
use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, FloatType, Int64Type};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::record::Field;
use sha2::Digest as _;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Shard `index` of `count` (`--shard i/N`, 0-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// The whole collection as one shard.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// `i/N` with `0 <= i < N`.
    pub fn parse(s: &str) -> Result<Shard> {
        let bad = || Error::Config(format!("--shard {s:?}: expected i/N with 0 <= i < N"));
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (
            i.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    /// Whether the file at `rel` (relative to the folder) is this shard's: by a hash of the
    /// path, so that shards stay balanced and adding files moves no others between shards.
    pub fn owns(&self, rel: &str) -> bool {
        let h = sha2::Sha256::digest(rel.as_bytes());
        let k = u64::from_le_bytes(h[..8].try_into().unwrap_or([0; 8]));
        (k % self.count as u64) as usize == self.index
    }

    fn prefix(&self) -> String {
        format!("shard-{:05}-of-{:05}", self.index, self.count)
    }
}

/// One embedded image.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub entry: Entry,
    /// Lower-case hex SHA-256 of the file's bytes.
    pub sha256: String,
    pub embedding: Vec<f32>,
}

/// What a shard run did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ShardReport {
    pub embedded: usize,
    /// Already in this shard's parts (a resumed run).
    pub reused: usize,
    pub skipped: Vec<(String, String)>,
    /// Files of other shards.
    pub other_shards: usize,
    pub parts: Vec<PathBuf>,
}

const SCHEMA: &str = "message tessera_embeddings {
  REQUIRED BYTE_ARRAY path (UTF8);
  REQUIRED BYTE_ARRAY sha256 (UTF8);
  REQUIRED INT64 size;
  REQUIRED INT64 mtime;
  REQUIRED GROUP embedding (LIST) {
    REPEATED GROUP list {
      REQUIRED FLOAT element;
    }
  }
}";

/// Writes `rows` as one Parquet file (one row group, zstd), atomically.
pub fn write_part(path: &Path, rows: &[Row], model: &str, folder: &Path) -> Result<()> {
    let io = |e: parquet::errors::ParquetError| Error::Msg(format!("{}: {e}", path.display()));
    let schema = Arc::new(parquet::schema::parser::parse_message_type(SCHEMA).map_err(io)?);
    let width = rows.first().map_or(0, |r| r.embedding.len());
    if rows
        .iter()
        .any(|r| r.embedding.len() != width || width == 0)
    {
        return Err(Error::Shape(
            "embedding rows of different or zero width".into(),
        ));
    }
    let meta = vec![
        KeyValue::new("tessera.model".into(), model.to_string()),
        KeyValue::new("tessera.folder".into(), folder.display().to_string()),
        KeyValue::new("tessera.dim".into(), width.to_string()),
    ];
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::ZSTD(Default::default()))
            .set_key_value_metadata(Some(meta))
            .build(),
    );
    crate::util::atomic_write_with(path, |tmp| {
        let file = std::fs::File::create(tmp).map_err(|e| Error::io(tmp, e))?;
        let mut w = SerializedFileWriter::new(file, schema, props).map_err(io)?;
        let mut rg = w.next_row_group().map_err(io)?;
        let mut col = 0;
        while let Some(mut c) = rg.next_column().map_err(io)? {
            match col {
                0 | 1 => {
                    let v: Vec<ByteArray> = rows
                        .iter()
                        .map(|r| {
                            let s = if col == 0 { &r.entry.path } else { &r.sha256 };
                            ByteArray::from(s.as_str())
                        })
                        .collect();
                    c.typed::<ByteArrayType>()
                        .write_batch(&v, None, None)
                        .map_err(io)?;
                }
                2 | 3 => {
                    let v: Vec<i64> = rows
                        .iter()
                        .map(|r| if col == 2 { r.entry.size } else { r.entry.mtime } as i64)
                        .collect();
                    c.typed::<Int64Type>()
                        .write_batch(&v, None, None)
                        .map_err(io)?;
                }
                _ => {
                    // list<float>: every value defined (level 1); a row starts at repetition 0.
                    let flat: Vec<f32> = rows
                        .iter()
                        .flat_map(|r| r.embedding.iter().copied())
                        .collect();
                    let def = vec![1i16; flat.len()];
                    let rep: Vec<i16> =
                        (0..flat.len()).map(|i| i16::from(i % width != 0)).collect();
                    c.typed::<FloatType>()
                        .write_batch(&flat, Some(&def), Some(&rep))
                        .map_err(io)?;
                }
            }
            c.close().map_err(io)?;
            col += 1;
        }
        rg.close().map_err(io)?;
        w.close().map_err(io)?;
        Ok(())
    })
}

/// A part's rows and its (model, folder) metadata. Rows must be complete and finite.
pub fn read_part(path: &Path) -> Result<(String, PathBuf, Vec<Row>)> {
    let bad = |m: String| Error::data(path, m);
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let reader = SerializedFileReader::new(file).map_err(|e| bad(format!("not Parquet: {e}")))?;
    let kv = reader
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .cloned()
        .unwrap_or_default();
    let get = |k: &str| kv.iter().find(|x| x.key == k).and_then(|x| x.value.clone());
    let model = get("tessera.model")
        .ok_or_else(|| bad("no tessera.model metadata: not a tessera shard".into()))?;
    let folder = PathBuf::from(get("tessera.folder").unwrap_or_default());
    let mut rows = vec![];
    let iter = reader.get_row_iter(None).map_err(|e| bad(e.to_string()))?;
    for (i, row) in iter.enumerate() {
        let row = row.map_err(|e| bad(format!("row {i}: {e}")))?;
        let (mut path_, mut sha, mut size, mut mtime, mut emb) = (None, None, None, None, None);
        for (name, f) in row.get_column_iter() {
            match (name.as_str(), f) {
                ("path", Field::Str(s)) => path_ = Some(s.clone()),
                ("sha256", Field::Str(s)) => sha = Some(s.clone()),
                ("size", Field::Long(v)) => size = Some(*v as u64),
                ("mtime", Field::Long(v)) => mtime = Some(*v as u64),
                ("embedding", Field::ListInternal(l)) => {
                    let v: Option<Vec<f32>> = l
                        .elements()
                        .iter()
                        .map(|e| match e {
                            Field::Float(x) if x.is_finite() => Some(*x),
                            _ => None,
                        })
                        .collect();
                    emb = Some(v.ok_or_else(|| {
                        bad(format!(
                            "row {i}: embedding has non-finite or non-float values"
                        ))
                    })?);
                }
                _ => {}
            }
        }
        match (path_, sha, size, mtime, emb) {
            (Some(path), Some(sha256), Some(size), Some(mtime), Some(embedding)) => {
                rows.push(Row {
                    entry: Entry { path, size, mtime },
                    sha256,
                    embedding,
                })
            }
            _ => {
                return Err(bad(format!(
                    "row {i}: needs path, sha256, size, mtime and embedding"
                )))
            }
        }
    }
    Ok((model, folder, rows))
}

/// The parts in `dir` written for `shard` (its `N`), in order.
fn parts_of(dir: &Path, shard: Shard) -> Result<Vec<PathBuf>> {
    let prefix = format!("{}.", shard.prefix());
    let mut out: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".parquet"))
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![],
        Err(e) => return Err(Error::io(dir, e)),
    };
    out.sort();
    Ok(out)
}

/// Embeds this shard's images of `folder` into Parquet parts under `out` (resuming from parts
/// already there), `rows_per_part` rows per file.
pub fn embed_shard(
    embedder: &ClipEmbedder,
    model: &str,
    folder: &Path,
    out: &Path,
    shard: Shard,
    rows_per_part: usize,
    progress: &dyn Progress,
) -> Result<ShardReport> {
    if rows_per_part == 0 {
        return Err(Error::Config("rows per part must be at least 1".into()));
    }
    let mut report = ShardReport::default();
    let existing = parts_of(out, shard)?;
    let mut done: HashSet<String> = HashSet::new();
    for p in &existing {
        let (m, _, rows) = read_part(p)?;
        if m != model {
            return Err(Error::data(
                p,
                format!("written with model {m}, not {model}: use another --out directory"),
            ));
        }
        done.extend(rows.into_iter().map(|r| r.entry.path));
    }
    let mut files = vec![];
    search::walk(folder, &mut files)?;
    files.sort();
    let mut todo = vec![];
    for f in files {
        let rel = search::relative(folder, &f);
        if !shard.owns(&rel) {
            report.other_shards += 1;
        } else if done.contains(&rel) {
            report.reused += 1;
        } else {
            todo.push((f, rel));
        }
    }
    let mut next = existing.len();
    let mut pending: Vec<Row> = vec![];
    let flush = |rows: &mut Vec<Row>, next: &mut usize, report: &mut ShardReport| -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let p = out.join(format!("{}.{:05}.parquet", shard.prefix(), *next));
        write_part(&p, rows, model, folder)?;
        report.parts.push(p);
        *next += 1;
        rows.clear();
        Ok(())
    };
    progress.start("embedding", Some(todo.len() as u64));
    for chunk in todo.chunks(embedder.batch_size.max(1)) {
        let mut imgs = vec![];
        let mut ok = vec![];
        for (f, rel) in chunk {
            let read = std::fs::read(f)
                .map_err(|e| Error::io(f, e))
                .and_then(|bytes| {
                    let entry = search::entry(f, rel)?;
                    let img = crate::image::decode(&bytes, f)?;
                    Ok((entry, hex(&sha2::Sha256::digest(&bytes)), img))
                });
            match read {
                Ok((entry, sha, img)) => {
                    imgs.push(img);
                    ok.push((entry, sha));
                }
                Err(e) => {
                    progress.note(&format!("skipping {}: {e}", f.display()));
                    report.skipped.push((rel.clone(), e.to_string()));
                }
            }
        }
        if !imgs.is_empty() {
            let e = embedder.image_embeds(&imgs)?.to_vec2::<f32>()?;
            for ((entry, sha256), embedding) in ok.into_iter().zip(e) {
                pending.push(Row {
                    entry,
                    sha256,
                    embedding,
                });
            }
            report.embedded += imgs.len();
        }
        progress.advance(chunk.len() as u64, "");
        while pending.len() >= rows_per_part {
            let mut part: Vec<Row> = pending.drain(..rows_per_part).collect();
            flush(&mut part, &mut next, &mut report)?;
        }
    }
    flush(&mut pending, &mut next, &mut report)?;
    progress.finish();
    Ok(report)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// What a merge did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct MergeReport {
    pub parts: usize,
    pub rows: usize,
    /// Paths found in more than one part (the last part's row is kept).
    pub duplicates: usize,
}

/// Every `*.parquet` part under `dirs` (of any shard count) into one search index at `index`,
/// rows sorted by path (so the result does not depend on how the collection was sharded).
/// `model` overrides the parts' model (shards embedded on machines that mount the model at
/// different paths); without it every part must name the same model.
pub fn merge(dirs: &[PathBuf], index: &Path, model: Option<&str>) -> Result<MergeReport> {
    let mut parts = vec![];
    for d in dirs {
        if d.is_file() {
            parts.push(d.clone());
            continue;
        }
        for e in std::fs::read_dir(d).map_err(|e| Error::io(d, e))? {
            let p = e.map_err(|e| Error::io(d, e))?.path();
            if p.extension().is_some_and(|x| x == "parquet") {
                parts.push(p);
            }
        }
    }
    parts.sort();
    if parts.is_empty() {
        return Err(Error::Config("no .parquet parts to merge".into()));
    }
    let mut report = MergeReport {
        parts: parts.len(),
        ..Default::default()
    };
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    let (mut first_model, mut folder, mut width) = (None::<String>, PathBuf::new(), None);
    for p in &parts {
        let (m, f, part) = read_part(p)?;
        match (&first_model, model) {
            (None, _) => {
                first_model = Some(m);
                folder = f;
            }
            (Some(a), None) if *a != m => {
                return Err(Error::data(
                    p,
                    format!(
                    "embedded with model {m}, other parts with {a} (give --model to merge anyway)"
                ),
                ))
            }
            _ => {}
        }
        for r in part {
            if *width.get_or_insert(r.embedding.len()) != r.embedding.len() {
                return Err(Error::data(
                    p,
                    "embeddings of another width than the other parts'",
                ));
            }
            if rows.insert(r.entry.path.clone(), r).is_some() {
                report.duplicates += 1;
            }
        }
    }
    report.rows = rows.len();
    let model = model
        .map(str::to_string)
        .or(first_model)
        .unwrap_or_default();
    let (entries, embeds): (Vec<Entry>, Vec<Vec<f32>>) =
        rows.into_values().map(|r| (r.entry, r.embedding)).unzip();
    let idx = Index {
        manifest: Manifest {
            model,
            folder,
            entries,
            skipped: vec![],
        },
        embeds,
    };
    idx.save(index)?;
    Ok(report)
}
