//! `tessera finetune`: an HF ViT fine-tuned on an image dataset.
use anyhow::Result;
use clap::Parser;
use tessera::train::finetune::{finetune, FinetuneSpec};

#[derive(Parser)]
#[command(allow_negative_numbers = true)]
pub struct Args {
    #[command(flatten)]
    spec: FinetuneSpec,
    /// Evaluation strategy; `each-epoch` (HF `eval_strategy="epoch"`) is the only one.
    #[arg(long, default_value = "each-epoch", value_parser = ["each-epoch", "epoch"])]
    eval: String,
    /// End with one JSON object on stdout (progress stays on stderr).
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<()> {
    if super::launch::ranks(a.spec.devices.as_deref())? {
        return Ok(());
    }
    let r = finetune(&a.spec, &*super::launch::bars())?;
    if !super::launch::reports() {
        return Ok(());
    }
    eprintln!("{}; HF checkpoint in {}", r.summary, r.model_dir.display());
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    }
    Ok(())
}
