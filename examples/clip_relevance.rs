//! Does "a red circle" light up the red circle, not the blue square beside it? Uses the tiny
//! CLIP that `tessera clip-demo` trains (runs/clip_shapes): on two-object scenes (target and a
//! distractor differing in colour and shape, sides random), the fraction whose hottest
//! relevance patch falls on the target's half, for Chefer relevance and rollout (baseline 0.5).
//! Writes two overlays to docs/.
//!
//! cargo run --release -- clip-demo && cargo run --release --example clip_relevance
use rand::{Rng, SeedableRng};
use tessera::data::shape_scenes::{two_objects, COLORS, SHAPES};
use tessera::explain::{render, Explainer, HeadFusion, Method, Request};
use tessera::models::LoadOptions;

fn main() -> anyhow::Result<()> {
    let model = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "runs/clip_shapes".into());
    let explainer = Explainer::from_pretrained(
        &model,
        std::path::Path::new(tessera::pipelines::embed::DEFAULT_BPE),
        &LoadOptions::default(),
    )?;
    let Explainer::Clip(clip) = &explainer else {
        anyhow::bail!("{model} is not a CLIP checkpoint");
    };
    let size = clip.model.vision.config.image_size;
    let side = size / clip.model.vision.config.patch_size;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let n = 200;
    let (mut rel_hits, mut roll_hits) = (0, 0);
    for i in 0..n {
        let a = (
            rng.random_range(0..COLORS.len()),
            rng.random_range(0..SHAPES.len()),
        );
        let b = loop {
            let b = (
                rng.random_range(0..COLORS.len()),
                rng.random_range(0..SHAPES.len()),
            );
            if b.0 != a.0 && b.1 != a.1 {
                break b;
            }
        };
        let a_left = rng.random::<bool>();
        let rgb = two_objects(size, a, b, a_left, &mut rng);
        let img = image::DynamicImage::ImageRgb8(
            image::RgbImage::from_raw(size as u32, size as u32, rgb)
                .ok_or_else(|| anyhow::anyhow!("scene buffer"))?,
        );
        let text = format!("a {} {}", COLORS[a.0].0, SHAPES[a.1]);
        let ask = |method| Request {
            method,
            fusion: HeadFusion::Mean,
            label: None,
            text: Some(text.clone()),
        };
        let rel = explainer.explain(&img, &ask(Method::Relevance))?;
        let roll = explainer.explain(&img, &ask(Method::Rollout { discard_ratio: 0.0 }))?;
        let on_target = |p: usize| ((p % side) < side / 2) == a_left;
        rel_hits += on_target(rel.hottest()) as usize;
        roll_hits += on_target(roll.hottest()) as usize;
        if i < 2 {
            let view = img
                .resize_exact(160, 160, image::imageops::FilterType::Nearest)
                .to_rgb8();
            let tiles = vec![
                render::legend(&view, "input")?,
                render::legend(
                    &render::overlay(&view, &rel.values, side, 0.55)?,
                    &format!("\"{text}\""),
                )?,
            ];
            std::fs::create_dir_all("docs")?;
            render::save_png(
                &render::grid(&tiles, 2),
                std::path::Path::new(&format!("docs/clip_relevance_{i}.png")),
            )?;
        }
    }
    println!("{n} two-object scenes: hottest patch on the named object's half — relevance {:.3}, rollout {:.3} (baseline 0.5)", rel_hits as f64 / n as f64, roll_hits as f64 / n as f64);
    Ok(())
}
