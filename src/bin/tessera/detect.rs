//! `tessera detect`: objects in images with a DETR checkpoint.
use anyhow::{bail, Result};
use clap::Parser;
use serde_json::json;
use std::ffi::OsString;
use std::path::PathBuf;
use tessera::pipelines::{ImageSource, ObjectDetection};

#[derive(Parser)]
pub struct Args {
    #[command(flatten)]
    model: super::common::Model,
    /// Image files or http(s) URLs.
    #[arg(required = true)]
    images: Vec<OsString>,
    /// Keep detections scoring above this (transformers' pipeline default is 0.5; 0.9 is
    /// what DETR's model card uses).
    #[arg(long, default_value_t = 0.9, allow_negative_numbers = true)]
    threshold: f32,
    /// Write each image with its boxes drawn (one image: this file; several: FILE-N.png).
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<()> {
    let opts = a.model.dtype.options()?;
    if let Some(p) = opts.dtype.filter(|&p| p != tessera::nn::Precision::F32) {
        eprintln!(
            "note: DETR runs in fp32 (--dtype {p} applies to the transformer models' linears)"
        );
    }
    let pipe = ObjectDetection::from_pretrained(&a.model.model, &opts)?
        .with_processor_backend(a.model.processor.backend);
    let mut results = vec![];
    for (n, image) in a.images.iter().enumerate() {
        let source = ImageSource::parse(image);
        let dets = pipe.detect(std::slice::from_ref(&source), a.threshold)?;
        let dets = dets.into_iter().next().unwrap_or_default();
        if !a.json {
            println!("{}", source.name());
            for d in &dets {
                let [x0, y0, x1, y1] = d.bbox;
                println!(
                    "  {:>6.4}  {:<16} [{x0:.1}, {y0:.1}, {x1:.1}, {y1:.1}]",
                    d.score, d.label
                );
            }
        }
        if let Some(out) = &a.out {
            let path = if a.images.len() == 1 {
                out.clone()
            } else {
                let stem = out
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                out.with_file_name(format!("{stem}-{n}.png"))
            };
            if path.as_os_str().is_empty() {
                bail!("--out needs a file name");
            }
            let img = source.load()?.to_rgb8();
            let boxes: Vec<_> = dets
                .iter()
                .map(|d| (d.bbox, d.index, format!("{} {:.2}", d.label, d.score)))
                .collect();
            tessera::explain::render::save_png(
                &tessera::explain::render::draw_boxes(&img, &boxes)?,
                &path,
            )?;
        }
        results.push(json!({"image": source.name(), "detections": dets}));
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    }
    Ok(())
}
