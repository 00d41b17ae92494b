//! `tessera train-detr`: DETR on generated shape scenes or a COCO-format set.
use anyhow::Result;
use clap::Parser;
use tessera::train::detr_run::{train_detr_run, DetrSpec};

#[derive(Parser)]
#[command(allow_negative_numbers = true)]
pub struct Args {
    #[command(flatten)]
    spec: DetrSpec,
    /// End with one JSON object on stdout (progress stays on stderr).
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<()> {
    let r = train_detr_run(&a.spec, &*super::common::bars())?;
    let pretrain: f64 = r.pretrain.iter().map(|l| l.seconds).sum();
    if pretrain > 0.0 {
        eprintln!(
            "backbone pretraining: {} epochs, {pretrain:.0} s",
            r.pretrain.len()
        );
    }
    match &r.eval {
        Some(e) => eprintln!(
            "{} epochs, {:.0} s training ({} parameters, {} images); held-out mAP@[.5:.95] {:.3}, AP50 {:.3}, AP75 {:.3} (small {:.3}, medium {:.3}, large {:.3})",
            r.epochs, r.train_seconds, r.parameters, r.train_images, e.ap, e.ap50, e.ap75, e.ap_small, e.ap_medium, e.ap_large
        ),
        None => eprintln!(
            "{} epochs, {:.0} s training ({} parameters, {} images); no held-out set (--val)",
            r.epochs, r.train_seconds, r.parameters, r.train_images
        ),
    }
    eprintln!(
        "model in {} (curves: {})",
        r.model_dir.display(),
        r.curves.display()
    );
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    }
    Ok(())
}
