//! Scores a trained DETR on generated shape scenes it has never seen: `N` fresh scenes from
//! `SEED` (the training run's own held-out set uses seed + 1,000,001, its training set seed +
//! 1), written under `DIR` as a COCO set, then COCOeval's twelve numbers as JSON.
//!
//! `cargo run --release --example detr_eval -- MODEL_DIR DIR [N=1000] [SEED=4242] [SIDE=128]`
use tessera::data::detection_scenes::write_coco;
use tessera::image::ProcessorConfig;
use tessera::models::detr::Detr;
use tessera::models::{LoadOptions, Pretrained};
use tessera::train::detr_train::{evaluate_detr, CocoDir};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, dir, rest @ ..] = args.as_slice() else {
        anyhow::bail!("usage: detr_eval MODEL_DIR DIR [N] [SEED] [SIDE]");
    };
    let n: usize = rest.first().map_or(Ok(1000), |s| s.parse())?;
    let seed: u64 = rest.get(1).map_or(Ok(4242), |s| s.parse())?;
    let side: usize = rest.get(2).map_or(Ok(128), |s| s.parse())?;
    let loaded = Detr::load(model, &LoadOptions::default())?;
    let processor = ProcessorConfig::in_dir_or(loaded.dir.as_deref(), ProcessorConfig::detr)?;
    let dir = std::path::Path::new(dir);
    write_coco(dir, n, side, side, seed)?;
    let data = CocoDir::open(dir)?;
    let t = std::time::Instant::now();
    let stats = evaluate_detr(&loaded.model, &processor, &data)?;
    eprintln!(
        "{n} scenes (seed {seed}, {side}×{side}) scored in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    println!("{}", serde_json::to_string(&stats)?);
    Ok(())
}
