//! `tessera export-hf`: a pre-norm seed ViT run as an HF checkpoint.
use anyhow::Result;
use clap::Parser;
use std::path::PathBuf;

#[derive(Parser)]
#[command(allow_negative_numbers = true)]
pub struct Args {
    /// A tessera run directory (config.json + model.safetensors) of a `--pre-norm` model.
    #[arg(long)]
    model: PathBuf,
    #[arg(long)]
    output: PathBuf,
}

pub fn run(a: Args) -> Result<()> {
    tessera::train::export::seed_run_to_hf(&a.model, &a.output)?;
    eprintln!(
        "wrote an HF ViTForImageClassification checkpoint to {}",
        a.output.display()
    );
    Ok(())
}
