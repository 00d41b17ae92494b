//! Hugging Face datasets as the hub stores them: parquet files with an `image` struct column
//! (`bytes`, `path`) and an integer `label`; class names from the `huggingface` schema metadata
//! (`info.features.label.names`) or a labels file; splits by file name
//! (`train-00000-of-00001.parquet`, `test-…`).
//!
//! Reading streams row group by row group (the 400 MB `timm/oxford-iiit-pet` never sits in
//! memory at once): each image is decoded and put through the model's processor as it arrives,
//! and only the processed uint8 pixels are kept.
use super::U8Images;
use crate::image::ProcessorConfig;
use crate::{Error, Result};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// The parquet files of `split` under `dir` (searched recursively, e.g. `data/`), sorted.
pub fn split_files(dir: &Path, split: &str) -> Result<Vec<PathBuf>> {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
        for e in std::fs::read_dir(d)? {
            let p = e?.path();
            if p.is_dir() {
                walk(&p, out)?;
            } else if p.extension().and_then(|e| e.to_str()) == Some("parquet") {
                out.push(p);
            }
        }
        Ok(())
    }
    let mut all = vec![];
    walk(dir, &mut all).map_err(|e| Error::io(dir, e))?;
    let mut files: Vec<PathBuf> = all
        .into_iter()
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().to_lowercase())
                .unwrap_or_default();
            let parent = p
                .parent()
                .and_then(|d| d.file_name())
                .map(|n| n.to_string_lossy().to_lowercase())
                .unwrap_or_default();
            name.starts_with(&format!("{split}-"))
                || name.starts_with(&format!("{split}."))
                || parent == split
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Whether `dir` holds an HF parquet dataset.
pub fn is_parquet_dataset(dir: &Path) -> bool {
    split_files(dir, "train")
        .map(|f| !f.is_empty())
        .unwrap_or(false)
}

fn class_names_from_metadata(reader: &SerializedFileReader<std::fs::File>) -> Option<Vec<String>> {
    let kv = reader.metadata().file_metadata().key_value_metadata()?;
    let json = kv.iter().find(|k| k.key == "huggingface")?.value.as_ref()?;
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let names = v.pointer("/info/features/label/names")?.as_array()?;
    names
        .iter()
        .map(|n| n.as_str().map(str::to_string))
        .collect()
}

/// Reads `files` (one split) through `processor` into uint8 pixels of `size` (height, width).
/// `labels`: class names when the files carry none.
pub fn read_split(
    files: &[PathBuf],
    processor: &ProcessorConfig,
    size: (u32, u32),
    labels: Option<&[String]>,
) -> Result<U8Images> {
    let (h, w) = (size.0 as usize, size.1 as usize);
    let mut pixels = vec![];
    let mut out_labels = vec![];
    let mut classes: Option<Vec<String>> = labels.map(|l| l.to_vec());
    if files.is_empty() {
        return Err(Error::Msg("no parquet files for this split".into()));
    }
    for path in files {
        let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        // The parquet crate can panic on malformed files (fuzzing): contained, as errors.
        let reader = crate::util::contain_panics(&path.display().to_string(), || {
            SerializedFileReader::new(f)
                .map_err(|e| Error::data(path, format!("not a parquet file: {e}")))
        })?;
        if classes.is_none() {
            classes = crate::util::contain_panics(&path.display().to_string(), || {
                Ok(class_names_from_metadata(&reader))
            })?;
        }
        for rg in 0..reader.num_row_groups() {
            let at = format!("{}: row group {rg}", path.display());
            let encoded = crate::util::contain_panics(&at, || read_row_group(&reader, rg, path))?;
            let processed: Vec<Result<(Vec<u8>, u32)>> =
                crate::util::worker_pool(0).install(|| {
                    encoded
                        .par_iter()
                        .map(|(ri, bytes, label)| {
                            let at = format!("{}: row group {rg} row {ri}", path.display());
                            let img = crate::image::decode(bytes, Path::new(&at))?;
                            let chw = super::processed_chw(processor, &img, size)
                                .map_err(|e| Error::Msg(format!("{at}: {e}")))?;
                            Ok((chw, *label))
                        })
                        .collect()
                });
            for r in processed {
                let (chw, label) = r?;
                pixels.extend_from_slice(&chw);
                out_labels.push(label);
            }
        }
    }
    let max = out_labels.iter().copied().max().unwrap_or(0) as usize;
    let classes = classes.unwrap_or_else(|| (0..=max).map(|i| i.to_string()).collect());
    if max >= classes.len() {
        return Err(Error::data(
            &files[0],
            format!("label {max} but only {} class names", classes.len()),
        ));
    }
    Ok(U8Images {
        name: files
            .first()
            .map_or_else(String::new, |f| f.display().to_string()),
        pixels,
        labels: out_labels,
        dims: (3, h, w),
        classes,
    })
}

/// The encoded images and labels of row group `rg` (one group in memory at a time; decoded and
/// processed on the worker threads by the caller).
fn read_row_group(
    reader: &SerializedFileReader<std::fs::File>,
    rg: usize,
    path: &Path,
) -> Result<Vec<(usize, Vec<u8>, u32)>> {
    let group = reader
        .get_row_group(rg)
        .map_err(|e| Error::data(path, e.to_string()))?;
    let rows = group
        .get_row_iter(None)
        .map_err(|e| Error::data(path, e.to_string()))?;
    let mut encoded = vec![];
    for (ri, row) in rows.enumerate() {
        let row = row.map_err(|e| Error::data(path, format!("row group {rg} row {ri}: {e}")))?;
        let (mut bytes, mut label) = (None, None);
        for (name, field) in row.get_column_iter() {
            match (name.as_str(), field) {
                ("image", Field::Group(g)) => {
                    for (n, f) in g.get_column_iter() {
                        if let ("bytes", Field::Bytes(b)) = (n.as_str(), f) {
                            bytes = Some(b.data().to_vec());
                        }
                    }
                }
                ("label" | "labels", Field::Long(v)) => label = Some(*v),
                ("label" | "labels", Field::Int(v)) => label = Some(*v as i64),
                _ => {}
            }
        }
        let bytes = bytes
            .ok_or_else(|| Error::data(path, format!("row group {rg} row {ri}: no image.bytes")))?;
        let label = label.ok_or_else(|| {
            Error::data(path, format!("row group {rg} row {ri}: no integer label"))
        })?;
        if label < 0 {
            return Err(Error::data(
                path,
                format!("row group {rg} row {ri}: negative label {label}"),
            ));
        }
        encoded.push((ri, bytes, label as u32));
    }
    Ok(encoded)
}
