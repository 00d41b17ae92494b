//! `tessera train`: the seed ViT from scratch.
use anyhow::Result;
use clap::Parser;
use tessera::train::recipes::{train_vit, TrainSpec};

#[derive(Parser)]
#[command(allow_negative_numbers = true)]
pub struct Args {
    #[command(flatten)]
    spec: TrainSpec,
    /// End with one JSON object on stdout (progress stays on stderr).
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<()> {
    if super::launch::ranks(a.spec.devices.as_deref())? {
        return Ok(());
    }
    let r = train_vit(&a.spec, &*super::launch::bars())?;
    if !super::launch::reports() {
        return Ok(());
    }
    eprintln!("{}; model in {}", r.summary, r.model_dir.display());
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    }
    Ok(())
}
