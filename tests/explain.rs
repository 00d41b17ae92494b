//! Explainability maps against a PyTorch computation on the same model (fixture from
//! tools/gen_explain_fixtures.py): class-token attention, rollout, Chefer relevance.
mod common;
use common::{fixture, load};
use tessera::explain::{self, HeadFusion};
use tessera::models::vit::hf::HfVit;
use tessera::models::{LoadOptions, Pretrained};
use tessera::nn::{Ctx, Trace};

fn close(a: &[f32], b: &candle_core::Tensor, tol: f32, what: &str) {
    let b = b.to_vec1::<f32>().unwrap();
    assert_eq!(a.len(), b.len(), "{what}");
    let d = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    println!("{what}: max diff {d:e}");
    assert!(d <= tol, "{what}: {d}");
}

#[test]
fn attention_rollout_and_relevance_match_pytorch() {
    let dir = fixture("hf_vit_cls");
    let m = HfVit::load(&dir, &LoadOptions::default()).unwrap().model;
    let io = load(&dir.join("io.safetensors"));
    let want = load(&dir.join("explain.safetensors"));
    let x = io["pixel_values"].narrow(0, 0, 1).unwrap();
    let mut trace = Trace::with_gradients();
    let logits = m
        .forward(&x, &mut Ctx::eval().with_trace(&mut trace))
        .unwrap();
    let target = want["target"].to_vec1::<i64>().unwrap()[0] as usize;
    let grads = explain::select(&logits, 0, target)
        .unwrap()
        .backward()
        .unwrap();
    let last = trace.attentions.len() - 1;
    close(
        &explain::cls_attention(&trace, last, 0, HeadFusion::Mean).unwrap(),
        &want["cls_attention_last"],
        1e-6,
        "class-token attention",
    );
    close(
        &explain::rollout(&trace, 0, HeadFusion::Mean, 0.0).unwrap(),
        &want["rollout"],
        1e-5,
        "rollout",
    );
    close(
        &explain::rollout(&trace, 0, HeadFusion::Mean, 0.5).unwrap(),
        &want["rollout_discard_05"],
        1e-5,
        "rollout, discard 0.5",
    );
    close(
        &explain::relevance(&trace, &grads, 0).unwrap(),
        &want["relevance"],
        1e-5,
        "relevance",
    );
    // Per head: the mean of the heads is the fused map.
    let heads = trace.attentions[last].dim(1).unwrap();
    let per: Vec<Vec<f32>> = (0..heads)
        .map(|h| explain::cls_attention_head(&trace, last, 0, h).unwrap())
        .collect();
    let mean: Vec<f32> = (0..per[0].len())
        .map(|i| per.iter().map(|p| p[i]).sum::<f32>() / heads as f32)
        .collect();
    close(
        &mean,
        &want["cls_attention_last"],
        1e-6,
        "mean of per-head attention",
    );
    assert!(explain::cls_attention_head(&trace, last, 0, heads).is_err());
    // The probes do not change the forward result (same composite path, with and without);
    // the fused inference path agrees to rounding.
    let mut t = Trace::default();
    let plain = m.forward(&x, &mut Ctx::eval().with_trace(&mut t)).unwrap();
    assert!(common::max_abs_diff(&plain, &logits) == 0.0);
    let fused = m.forward(&x, &mut Ctx::inference()).unwrap();
    assert!(common::max_abs_diff(&fused, &logits) < 1e-5);
}

#[test]
fn heatmap_overlay_renders() {
    let img = image::RgbImage::from_pixel(40, 40, image::Rgb([128, 128, 128]));
    let grid: Vec<f32> = (0..16).map(|i| i as f32).collect();
    let o = explain::render::overlay(&img, &grid, 4, 0.5).unwrap();
    // The hottest corner (bottom right) is yellow-ish, the coldest (top left) purple-ish.
    let (hot, cold) = (o.get_pixel(39, 39), o.get_pixel(0, 0));
    assert!(hot[0] > cold[0] && hot[1] > cold[1], "{hot:?} vs {cold:?}");
    let with_legend = explain::render::legend(&o, "tabby cat 0.93").unwrap();
    assert_eq!(with_legend.dimensions(), (40, 62));
    assert!(explain::render::overlay(&img, &grid, 5, 0.5).is_err());
}

#[test]
fn explain_cli_writes_heatmaps_and_json() {
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("photo.png");
    image::RgbImage::from_fn(48, 40, |x, y| {
        image::Rgb([(x * 5) as u8, (y * 6) as u8, 90])
    })
    .save(&img)
    .unwrap();
    let model = fixture("hf_vit_cls");
    let bin = env!("CARGO_BIN_EXE_tessera");
    for method in ["attention", "rollout", "relevance"] {
        let out = d.path().join(format!("{method}.png"));
        let layers = d.path().join(format!("{method}_layers.png"));
        let o = std::process::Command::new(bin)
            .args([
                "explain",
                "--model",
                model.to_str().unwrap(),
                img.to_str().unwrap(),
                "--method",
                method,
                "--json",
                "--label",
                "class_2",
            ])
            .arg("--out")
            .arg(&out)
            .arg("--layers-out")
            .arg(&layers)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(
            v["grid"].as_array().unwrap().len(),
            4,
            "32 px / patch 8 = 4x4"
        );
        assert!(v["legend"].as_str().unwrap().starts_with("class_2"));
        let png = image::open(&out).unwrap();
        // The model's 32-px input view, scaled by a whole factor (7) to at least 224 px.
        assert_eq!(png.width(), 224);
        assert!(image::open(&layers).is_ok());
    }
    let o = std::process::Command::new(bin)
        .args([
            "explain",
            "--model",
            model.to_str().unwrap(),
            img.to_str().unwrap(),
            "--label",
            "zebra",
        ])
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && e.contains("zebra") && !e.contains("panicked"),
        "{e}"
    );
}
