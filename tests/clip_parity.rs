//! CLIP against transformers (fixtures from tools/gen_clip_fixtures.py, random init, tiny config).
mod common;
use candle_core::{DType, Device};
use common::{fixture, load, max_abs_diff};
use tessera::models::clip::Clip;
use tessera::models::{LoadOptions, Pretrained};
use tessera::nn::{Ctx, Precision, Trace};

fn check(name: &str) {
    let dir = fixture(name);
    let model = Clip::load(&dir, &LoadOptions::default()).unwrap().model;
    let io = load(&dir.join("io.safetensors"));
    let ids = io["input_ids"].to_dtype(DType::U32).unwrap();
    let mask = io["attention_mask"].to_dtype(DType::F32).unwrap();
    // Every inference path against the same reference: the composite ops (a trace forces
    // them), the fused kernels, the fused kernels with weights packed for tessera's fp32 GEMM,
    // and bf16 (close, not equal: the largest embedding component is ~1 after L2 norm).
    let f32p = model.with_dtype(DType::F32).unwrap();
    let bf16 = model.with_dtype(DType::BF16).unwrap();
    // int8: every linear dynamically quantised (8-bit steps: within 3e-2 of unit embeddings).
    let int8 = model.with_dtype(Precision::Int8).unwrap();
    // Each path must really run its own kernels: its embeddings differ (in rounding) from the
    // previous path's, so a silent fallback to the composite ops fails here.
    let mut previous: Option<candle_core::Tensor> = None;
    for (path, m, tol) in [
        ("composite", &model, 1e-4),
        ("fused", &model, 1e-4),
        ("packed f32", &f32p, 1e-4),
        ("bf16", &bf16, 1e-2),
        ("int8", &int8, 3e-2),
    ] {
        let mut trace = Trace::default();
        let mut ctx = if path == "composite" {
            Ctx::eval().with_trace(&mut trace)
        } else {
            Ctx::inference()
        };
        let out = m
            .forward(&io["pixel_values"], &ids, Some(&mask), &mut ctx)
            .unwrap();
        let (di, dt, dl) = (
            max_abs_diff(&out.image_embeds, &io["image_embeds"]),
            max_abs_diff(&out.text_embeds, &io["text_embeds"]),
            max_abs_diff(&out.logits_per_image, &io["logits_per_image"]),
        );
        println!(
            "{name} ({path}): image_embeds {di:e}, text_embeds {dt:e}, logits_per_image {dl:e}"
        );
        assert!(di <= tol && dt <= tol, "{path}");
        if path != "bf16" && path != "int8" {
            assert!(dl <= 1e-4, "{path}");
        }
        let both = candle_core::Tensor::cat(&[&out.image_embeds, &out.text_embeds], 0).unwrap();
        if let Some(p) = previous.replace(both.clone()) {
            assert!(
                max_abs_diff(&both, &p) > 0.0,
                "{path} ran the previous path"
            );
        }
    }
    // Without the padding mask the pooled end-of-text state is the same (the mask is causal).
    let nomask = model.text_embeds(&ids, None, &mut Ctx::eval()).unwrap();
    assert!(max_abs_diff(&nomask, &io["text_embeds"]) <= 1e-4);
    // Vision attention probabilities as output_attentions=True (eager).
    let (_, trace) = model.image_embeds_traced(&io["pixel_values"]).unwrap();
    for (i, a) in trace.attentions.iter().enumerate() {
        let d = max_abs_diff(a, &io[&format!("vision_attention_{i}")]);
        println!("{name}: vision attention {i} {d:e}");
        assert!(d <= 1e-5);
    }
}

#[test]
fn clip_embeddings_and_logits_match_transformers() {
    check("clip_tiny");
}

#[test]
fn legacy_eos_token_id_2_pools_at_the_largest_id() {
    check("clip_tiny_legacy_eos");
}

#[test]
fn bad_inputs_are_errors() {
    let model = Clip::load(fixture("clip_tiny"), &LoadOptions::default())
        .unwrap()
        .model;
    let ids = candle_core::Tensor::new(&[[998u32, 5000, 999]], &Device::Cpu).unwrap();
    let err = model
        .text_embeds(&ids, None, &mut Ctx::eval())
        .unwrap_err()
        .to_string();
    assert!(err.contains("outside the vocabulary"), "{err}");
    let px = candle_core::Tensor::zeros((1, 3, 64, 64), DType::F32, &Device::Cpu).unwrap();
    assert!(model.image_embeds(&px, &mut Ctx::eval()).is_err());
}
