//! `tessera explain`: where a model looked, drawn over the image.
use anyhow::Result;
use clap::Parser;
use serde_json::json;
use std::ffi::OsString;
use std::path::PathBuf;
use tessera::explain::{render, Explainer, HeadFusion, Method, Request};
use tessera::pipelines::ImageSource;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum MethodArg {
    Attention,
    Rollout,
    Relevance,
}

#[derive(Parser)]
#[command(allow_negative_numbers = true)]
pub struct Args {
    /// A tessera ViT run, an HF ViT classifier, a CLIP or a DETR checkpoint (directory or hub
    /// id). For DETR: one panel per detection, its query's last-layer decoder attention.
    #[arg(long)]
    model: OsString,
    image: OsString,
    #[command(flatten)]
    device: super::common::Device,
    #[arg(long, value_enum, default_value = "relevance")]
    method: MethodArg,
    /// Class to explain (name or index; default: the top prediction).
    #[arg(long)]
    label: Option<String>,
    /// For CLIP: the text whose match to explain, e.g. "a ladybug".
    #[arg(long)]
    text: Option<String>,
    /// For --method attention: the layer (default: the last).
    #[arg(long)]
    layer: Option<usize>,
    /// For --method attention: one head instead of the fused heads.
    #[arg(long)]
    head: Option<usize>,
    #[arg(long, value_enum, default_value = "mean")]
    head_fusion: HeadFusion,
    /// For rollout: the fraction of lowest attentions to drop per layer, in [0, 1).
    #[arg(long, allow_hyphen_values = true, default_value_t = 0.0)]
    discard_ratio: f32,
    /// For DETR: detections scoring above this are explained.
    #[arg(long, default_value_t = 0.7)]
    threshold: f32,
    #[arg(long, default_value = "heat.png")]
    out: PathBuf,
    /// Also write a grid of every layer's class-token attention here.
    #[arg(long)]
    layers_out: Option<PathBuf>,
    #[command(flatten)]
    bpe: super::common::Bpe,
    #[command(flatten)]
    processor: super::common::Processor,
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<()> {
    let method = match a.method {
        MethodArg::Attention => Method::Attention {
            layer: a.layer,
            head: a.head,
        },
        MethodArg::Rollout => Method::Rollout {
            discard_ratio: a.discard_ratio,
        },
        MethodArg::Relevance => Method::Relevance,
    };
    let req = Request {
        method,
        fusion: a.head_fusion,
        label: a.label,
        text: a.text,
    };
    req.validate()?;
    let device = a.device.open()?;
    let explainer = Explainer::from_pretrained(
        &a.model,
        &a.bpe.bpe,
        &super::common::inference_load(&device),
    )?
    .with_processor_backend(a.processor.backend);
    let img = ImageSource::parse(&a.image).load()?;
    if let Explainer::Detector(det) = &explainer {
        let maps = tessera::explain::detection_attention(det, &img, a.threshold, a.head_fusion)?;
        render::save_png(
            &tessera::explain::render_detection_attention(&img, &maps)?,
            &a.out,
        )?;
        for m in &maps {
            let d = &m.detection;
            let hot = tessera::explain::argmax(&m.values);
            eprintln!(
                "query {:>3}: {} {:.3} at [{:.1}, {:.1}, {:.1}, {:.1}], attending most to cell ({}, {}) of {}x{}",
                d.query, d.label, d.score, d.bbox[0], d.bbox[1], d.bbox[2], d.bbox[3],
                hot / m.grid.1, hot % m.grid.1, m.grid.0, m.grid.1
            );
        }
        eprintln!("wrote {} ({} detections)", a.out.display(), maps.len());
        if a.json {
            println!(
                "{}",
                json!({"detections": maps, "out": a.out.display().to_string()})
            );
        }
        return Ok(());
    }
    let e = explainer.explain(&img, &req)?;
    render::save_png(&e.heatmap()?, &a.out)?;
    if let Some(p) = &a.layers_out {
        render::save_png(&e.layer_grid()?, p)?;
    }
    eprintln!(
        "wrote {} ({:?}, {side}x{side} patches; hottest patch {})",
        a.out.display(),
        a.method,
        e.hottest(),
        side = e.side
    );
    if a.json {
        let rows: Vec<Vec<f32>> = e.values.chunks(e.side).map(|r| r.to_vec()).collect();
        println!(
            "{}",
            json!({"method": format!("{:?}", a.method).to_lowercase(), "legend": e.legend,
                   "grid": rows, "out": a.out.display().to_string()})
        );
    }
    Ok(())
}
