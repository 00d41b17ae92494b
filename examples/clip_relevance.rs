//! Does "a red circle" light up the red circle, not the blue square beside it? Uses the tiny
//! CLIP that `tessera clip-demo` trains (runs/clip_shapes): on two-object scenes (target and a
//! distractor differing in colour and shape, sides random), the fraction whose hottest
//! relevance patch falls on the target's half, for Chefer relevance and rollout (baseline 0.5).
//! Writes two overlays to docs/.
//!
//! cargo run --release -- clip-demo && cargo run --release --example clip_relevance
use candle_core::Device;
use rand::{Rng, SeedableRng};
use tessera::data::shapes::{two_objects, COLORS, SHAPES};
use tessera::explain::{self, render, HeadFusion};
use tessera::nn::{Ctx, Trace};
use tessera::pipelines::ZeroShotClassifier;

fn main() -> anyhow::Result<()> {
    let dev = Device::Cpu;
    let model = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "runs/clip_shapes".into());
    let zs = ZeroShotClassifier::from_pretrained(
        &model,
        std::path::Path::new("assets/bpe_simple_vocab_16e6.txt.gz"),
        &dev,
    )?;
    let size = zs.model.vision.config.image_size;
    let side = size / zs.model.vision.config.patch_size;
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
            image::RgbImage::from_raw(size as u32, size as u32, rgb).unwrap(),
        );
        let text = format!("a {} {}", COLORS[a.0].0, SHAPES[a.1]);
        let x = zs.processor.batch(std::slice::from_ref(&img), &dev)?;
        let mut trace = Trace::with_gradients();
        let ie = zs
            .model
            .image_embeds(&x, &mut Ctx::eval().with_trace(&mut trace))?;
        let te = zs.text_embeds(std::slice::from_ref(&text))?;
        let grads = (&ie * &te)?.sum_all()?.backward()?;
        let rel = explain::relevance(&trace, &grads, 0)?;
        let roll = explain::rollout(&trace, 0, HeadFusion::Mean, 0.0)?;
        let on_target = |map: &[f32]| {
            let p = explain::argmax(map);
            ((p % side) < side / 2) == a_left
        };
        rel_hits += on_target(&rel) as usize;
        roll_hits += on_target(&roll) as usize;
        if i < 2 {
            let view = img
                .resize_exact(160, 160, image::imageops::FilterType::Nearest)
                .to_rgb8();
            let tiles = vec![
                render::legend(&view, "input")?,
                render::legend(
                    &render::overlay(&view, &rel, side, 0.55)?,
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
