//! Train the seed ViT from Rust: the recipe behind `tessera train`, with your own settings,
//! progress reported to an observer of your own.
//!
//! cargo run --release --example train -- [OUTPUT_DIR]     # default runs/example-digits
use tessera::progress::Progress;
use tessera::train::recipes::{train_vit, TrainSpec};

/// Prints each finished epoch; ignores the per-batch steps.
struct EpochLines;

impl Progress for EpochLines {
    fn note(&self, message: &str) {
        println!("{message}");
    }
}

fn main() -> anyhow::Result<()> {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "runs/example-digits".into());
    let spec = TrainSpec {
        dataset: "digits".into(), // embedded: 1,797 8x8 scikit-learn digits
        epochs: Some(5),
        output: Some(out.into()),
        ..TrainSpec::default()
    };
    let report = train_vit(&spec, &EpochLines)?;
    println!(
        "{} ({} parameters); model in {}",
        report.summary,
        report.parameters,
        report.model_dir.display()
    );
    // Five epochs already learn: chance is 0.1.
    anyhow::ensure!(report.summary.test_accuracy > 0.5, "did not learn");
    Ok(())
}
