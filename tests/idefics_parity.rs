//! IDEFICS (Flamingo's reproduction) against transformers (fixtures from
//! tools/make_idefics_fixtures.py: every parameter redrawn, the tanh gates and the resampler's
//! latents included): scalar gates with q/k norms and a decoupled vocabulary, and per-channel
//! gates without; a padded row, and tokens that see no image (the cross-attention gate).
mod common;
use candle_core::{DType, Device, Tensor};
use common::{fixture, load, max_abs_diff};
use tessera::models::idefics::{Idefics, IdeficsConfig, IdeficsInputs};
use tessera::models::{LoadOptions, Pretrained};
use tessera::nn::Ctx;
use tessera::train::{AdamW, AdamWConfig};

fn inputs(io: &std::collections::HashMap<String, Tensor>) -> Tensor {
    io["input_ids"].to_dtype(DType::U32).unwrap()
}

fn check(name: &str) {
    let dir = fixture(name);
    let loaded = Idefics::load(&dir, &LoadOptions::default()).unwrap();
    assert!(loaded.report.is_clean(), "{}", loaded.report);
    let m = loaded.model;
    let io = load(&dir.join("io.safetensors"));
    let ids = inputs(&io);
    let x = IdeficsInputs {
        input_ids: &ids,
        attention_mask: Some(&io["attention_mask"]),
        pixel_values: &io["pixel_values"],
        image_attention_mask: &io["image_attention_mask"],
    };
    let packed = m.with_dtype(DType::F32).unwrap();
    for (path, model, mut ctx) in [
        ("composite", &m, Ctx::eval()),
        ("packed", &packed, Ctx::inference()),
    ] {
        let out = model.forward(&x, &mut ctx).unwrap();
        let dl = max_abs_diff(&out.logits, &io["logits"]);
        let dh = max_abs_diff(&out.hidden, &io["last_hidden_state"]);
        // [4, L, E] per image -> [2, 2·L, E] per row
        let r = &io["resampled"];
        let (n, l, e) = r.dims3().unwrap();
        let di = max_abs_diff(&out.image_states, &r.reshape((2, n / 2 * l, e)).unwrap());
        println!("{name} ({path}): logits {dl:e}, final states {dh:e}, resampled images {di:e}");
        assert!(dl <= 1e-4 && dh <= 1e-4 && di <= 1e-4, "{name} {path}");
    }
}

#[test]
fn idefics_scalar_gates_qk_norms_decoupled_vocab_match_transformers() {
    check("idefics_float");
}

#[test]
fn idefics_vector_gates_match_transformers() {
    check("idefics_vector");
}

/// Flamingo's premise: with every tanh gate at 0 the image path adds exactly nothing, so the
/// model's outputs equal the bare language model's, bit for bit; with the fixture's gates they
/// do not.
#[test]
fn closed_gates_leave_the_language_model_exactly_intact() {
    let dir = fixture("idefics_float");
    let io = load(&dir.join("io.safetensors"));
    let ids = inputs(&io);
    let mask = &io["attention_mask"];
    let x = IdeficsInputs {
        input_ids: &ids,
        attention_mask: Some(mask),
        pixel_values: &io["pixel_values"],
        image_attention_mask: &io["image_attention_mask"],
    };
    let open = Idefics::load(&dir, &LoadOptions::default()).unwrap().model;
    let lm = open
        .forward_text(&ids, Some(mask), &mut Ctx::eval())
        .unwrap();
    let with = open.forward(&x, &mut Ctx::eval()).unwrap().logits;
    assert!(
        max_abs_diff(&with, &lm) > 1e-2,
        "the fixture's gates change the outputs"
    );
    // The same weights with the gates closed.
    let tmp = tempfile::tempdir().unwrap();
    let mut tensors = load(&dir.join("model.safetensors"));
    for (k, v) in tensors.iter_mut() {
        if k.contains("alpha_") {
            *v = v.zeros_like().unwrap();
        }
    }
    candle_core::safetensors::save(&tensors, tmp.path().join("model.safetensors")).unwrap();
    std::fs::copy(dir.join("config.json"), tmp.path().join("config.json")).unwrap();
    let closed = Idefics::load(tmp.path(), &LoadOptions::default())
        .unwrap()
        .model;
    for g in closed.gated_layers() {
        assert_eq!(g.gate_values().unwrap(), (0.0, 0.0));
    }
    let gated = closed.forward(&x, &mut Ctx::eval()).unwrap().logits;
    let bare = closed
        .forward_text(&ids, Some(mask), &mut Ctx::eval())
        .unwrap();
    let a: Vec<f32> = gated.flatten_all().unwrap().to_vec1().unwrap();
    let b: Vec<f32> = bare.flatten_all().unwrap().to_vec1().unwrap();
    assert!(
        a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
        "not bit-identical"
    );
    assert_eq!(max_abs_diff(&bare, &lm), 0.0);
}

#[test]
fn bad_inputs_and_configs_are_errors() {
    let dir = fixture("idefics_vector");
    let m = Idefics::load(&dir, &LoadOptions::default()).unwrap().model;
    let dev = Device::Cpu;
    let ids = Tensor::new(&[[3u32, 4, 100]], &dev).unwrap();
    let px = Tensor::zeros((1, 1, 3, 30, 30), DType::F32, &dev).unwrap();
    let seen = Tensor::ones((1, 3, 1), DType::F32, &dev).unwrap();
    let x = IdeficsInputs {
        input_ids: &ids,
        attention_mask: None,
        pixel_values: &px,
        image_attention_mask: &seen,
    };
    let e = m.forward(&x, &mut Ctx::eval()).unwrap_err().to_string();
    assert!(e.contains("token id 100"), "{e}");
    let ok_ids = Tensor::new(&[[3u32, 4, 5]], &dev).unwrap();
    let wrong = Tensor::ones((1, 3, 2), DType::F32, &dev).unwrap();
    let e = m
        .forward(
            &IdeficsInputs {
                input_ids: &ok_ids,
                image_attention_mask: &wrong,
                ..x
            },
            &mut Ctx::eval(),
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("image_attention_mask"), "{e}");
    let small = Tensor::zeros((1, 1, 3, 28, 28), DType::F32, &dev).unwrap();
    let e = m
        .forward(
            &IdeficsInputs {
                input_ids: &ok_ids,
                pixel_values: &small,
                ..x
            },
            &mut Ctx::eval(),
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("image_size"), "{e}");
    for (cfg, needle) in [
        (
            IdeficsConfig {
                cross_layer_interval: 3,
                num_hidden_layers: 4,
                ..IdeficsConfig::default()
            },
            "cross_layer_interval",
        ),
        (
            IdeficsConfig {
                hidden_act: "gelu".into(),
                ..IdeficsConfig::default()
            },
            "silu",
        ),
        (
            IdeficsConfig {
                alpha_type: "matrix".into(),
                ..IdeficsConfig::default()
            },
            "alpha_type",
        ),
    ] {
        let e = Idefics::from_config(&cfg, &LoadOptions::default())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains(needle), "{e}");
    }
}

/// A fresh model (gates at 0, as Flamingo starts): every parameter gets a gradient, the gates'
/// included, so training can open them.
#[test]
fn a_fresh_idefics_trains_every_parameter() {
    let cfg: IdeficsConfig = serde_json::from_str(
        &std::fs::read_to_string(fixture("idefics_float").join("config.json")).unwrap(),
    )
    .unwrap();
    let m = Idefics::from_config(&cfg, &LoadOptions::default().trainable()).unwrap();
    let dev = Device::Cpu;
    let ids = Tensor::new(&[[3u32, 4, 5, 6], [7, 8, 101, 9]], &dev).unwrap();
    let px = Tensor::randn(0f32, 1., (2, 1, 3, 30, 30), &dev).unwrap();
    let seen = Tensor::new(
        &[[[0f32], [1.], [1.], [1.]], [[1.], [1.], [1.], [1.]]],
        &dev,
    )
    .unwrap();
    let x = IdeficsInputs {
        input_ids: &ids,
        attention_mask: None,
        pixel_values: &px,
        image_attention_mask: &seen,
    };
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
    let out = m.model.forward(&x, &mut Ctx::train(&mut rng)).unwrap();
    let loss = out.logits.sqr().unwrap().mean_all().unwrap();
    let opt = AdamW::new(m.store.vars(), AdamWConfig::default());
    let grads = loss.backward().unwrap();
    // The vision tower's pooled-output norm feeds nothing in IDEFICS (transformers computes it
    // and drops it).
    let missing: Vec<String> = opt
        .missing_grads(&grads)
        .into_iter()
        .filter(|n| !n.contains("post_layernorm"))
        .collect();
    assert_eq!(missing, Vec::<String>::new());
}

/// Flamingo's recipe in miniature (`cargo run --release --example idefics_gates` is the full
/// run): the gates start at exactly 0, a few steps of training only the resampler and the gated
/// layers move them, and the frozen language model and vision tower do not change.
#[test]
fn gated_training_opens_the_gates_and_leaves_the_frozen_weights_alone() {
    use tessera::train::gated_captioning::{run, GateRunConfig};
    let cfg = GateRunConfig {
        hidden: 32,
        layers: 2,
        scenes: 64,
        lm_steps: 3,
        steps: 4,
        batch_size: 8,
        record_every: 1,
        ..GateRunConfig::default()
    };
    let r = run(&cfg, &Device::Cpu, &tessera::progress::Silent).unwrap();
    let first = &r.gates[0];
    assert!(
        first.attention.iter().chain(&first.mlp).all(|&g| g == 0.0),
        "{first:?}"
    );
    let last = r.gates.last().unwrap();
    assert_eq!(last.step, 4);
    assert!(
        last.attention.iter().chain(&last.mlp).all(|&g| g != 0.0),
        "{last:?}"
    );
    assert!(r.frozen_unchanged);
    assert!(r.lm_losses.iter().chain(&r.losses).all(|l| l.is_finite()));
    assert!(r.trainable_parameters > 0 && r.frozen_parameters > r.trainable_parameters);
}
