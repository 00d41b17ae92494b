//! The Perceiver image classifiers against transformers (fixtures from
//! tools/make_perceiver_fixtures.py: tiny random-init configs, every parameter redrawn).
mod common;
use candle_core::DType;
use common::{fixture, load, max_abs_diff};
use tessera::models::perceiver::{fourier_features, PerceiverClassifier, Preprocessing};
use tessera::models::{LoadOptions, Pretrained};
use tessera::nn::{Ctx, Trace};

fn check(name: &str, kind: Preprocessing) {
    let dir = fixture(name);
    let loaded = PerceiverClassifier::load(&dir, &LoadOptions::default()).unwrap();
    assert!(loaded.report.is_clean(), "{}", loaded.report);
    let m = loaded.model;
    assert_eq!(m.preprocessing(), kind);
    let io = load(&dir.join("io.safetensors"));
    let x = &io["pixel_values"];
    // The composite path (a trace forces it, and records every attention) and the fused
    // inference kernels, then packed f32 weights.
    let mut trace = Trace::default();
    let traced = m
        .forward(x, &mut Ctx::eval().with_trace(&mut trace))
        .unwrap();
    let fused = m.forward(x, &mut Ctx::inference()).unwrap();
    let packed = m
        .with_dtype(DType::F32)
        .unwrap()
        .forward(x, &mut Ctx::inference())
        .unwrap();
    for (path, out) in [
        ("composite", &traced),
        ("fused", &fused),
        ("packed", &packed),
    ] {
        let dl = max_abs_diff(&out.logits, &io["logits"]);
        let dz = max_abs_diff(&out.latents, &io["last_hidden_state"]);
        println!("{name} ({path}): logits {dl:e}, latents {dz:e}");
        assert!(dl <= 1e-4 && dz <= 1e-4, "{name} {path}: {dl} {dz}");
    }
    // Attentions: encoder cross, every self-attention (blocks × layers), decoder cross.
    let n_self = io
        .keys()
        .filter(|k| k.starts_with("self_attention_"))
        .count();
    assert_eq!(trace.attentions.len(), n_self + 2);
    let d = max_abs_diff(&trace.attentions[0], &io["encoder_cross_attention"]);
    assert!(d <= 1e-5, "{name} cross attention {d}");
    for i in 0..n_self {
        let d = max_abs_diff(
            &trace.attentions[1 + i],
            &io[&format!("self_attention_{i}")],
        );
        assert!(d <= 1e-5, "{name} self attention {i}: {d}");
    }
    let d = max_abs_diff(
        &trace.attentions[n_self + 1],
        &io["decoder_cross_attention"],
    );
    assert!(d <= 1e-5, "{name} decoder attention {d}");
}

#[test]
fn learned_positions_safetensors_match_transformers() {
    check("perceiver_learned", Preprocessing::Learned);
}

#[test]
fn fourier_pixels_three_heads_match_transformers() {
    check("perceiver_fourier", Preprocessing::Fourier);
}

#[test]
fn conv_preprocessing_from_pytorch_model_bin_matches_transformers() {
    check("perceiver_conv", Preprocessing::Conv);
}

#[test]
fn fourier_features_are_laid_out_dimension_major() {
    // A 2×3 grid: the first token is (y, x) = (-1, -1), sin(π·(-1)·1) = 0 for band 1, and
    // cos(π·(-1)·f) for band f; the width is 2 + 4·64.
    let f = fourier_features(2, 3, (224, 224), 64);
    assert_eq!(f.len(), 6 * 258);
    assert_eq!(&f[..2], &[-1.0, -1.0]);
    assert!(f[2].abs() < 1e-6); // sin(-π)
    assert!((f[2 + 128] + 1.0).abs() < 1e-6); // cos(-π)
                                              // The last token is (1, 1).
    assert_eq!(&f[5 * 258..5 * 258 + 2], &[1.0, 1.0]);
}

#[test]
fn wrong_inputs_and_configs_are_errors() {
    let dir = fixture("perceiver_learned");
    let m = PerceiverClassifier::load(&dir, &LoadOptions::default())
        .unwrap()
        .model;
    // The learned positions cover 8×8 pixels only.
    let x =
        candle_core::Tensor::zeros((1, 3, 9, 9), DType::F32, &candle_core::Device::Cpu).unwrap();
    let e = m.forward(&x, &mut Ctx::eval()).unwrap_err().to_string();
    assert!(e.contains("8×8"), "{e}");
    let x =
        candle_core::Tensor::zeros((1, 1, 8, 8), DType::F32, &candle_core::Device::Cpu).unwrap();
    assert!(m.forward(&x, &mut Ctx::eval()).is_err());
    // d_model must be what the preprocessing gives.
    let mut cfg = m.config().clone();
    cfg.d_model = 500;
    let e = match PerceiverClassifier::from_config(&cfg, &LoadOptions::default()) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("d_model 500 was accepted"),
    };
    assert!(e.contains("d_model"), "{e}");
    // Self-attention value width must be the latent width.
    let mut cfg = m.config().clone();
    cfg.v_channels = Some(16);
    cfg.qk_channels = Some(16);
    assert!(PerceiverClassifier::from_config(&cfg, &LoadOptions::default()).is_err());
    let conv = fixture("perceiver_conv");
    let m = PerceiverClassifier::load(&conv, &LoadOptions::default())
        .unwrap()
        .model;
    let x =
        candle_core::Tensor::zeros((1, 3, 4, 4), DType::F32, &candle_core::Device::Cpu).unwrap();
    assert!(m.forward(&x, &mut Ctx::eval()).is_err());
}

/// The claim behind examples/perceiver_scaling.rs, structurally: whatever the input length,
/// the Perceiver's attention matrices are [latents × inputs] (the one cross-attention) and
/// [latents × latents] — never [inputs × inputs].
#[test]
fn no_attention_matrix_grows_with_the_input_squared() {
    let m = PerceiverClassifier::load(fixture("perceiver_fourier"), &LoadOptions::default())
        .unwrap()
        .model;
    let latents = m.config().num_latents;
    for side in [6, 20, 40] {
        let x =
            candle_core::Tensor::zeros((1, 3, side, side), DType::F32, &candle_core::Device::Cpu)
                .unwrap();
        let mut trace = Trace::default();
        m.forward(&x, &mut Ctx::eval().with_trace(&mut trace))
            .unwrap();
        let n = side * side;
        assert_eq!(trace.attentions[0].dims()[2..], [latents, n]);
        for a in &trace.attentions[1..trace.attentions.len() - 1] {
            assert_eq!(a.dims()[2..], [latents, latents]);
        }
    }
}

/// `tessera predict` reads a Perceiver checkpoint through the one loading entry, with the
/// Perceiver's processor (crop, then bicubic resize to the model's size).
#[test]
fn the_classification_pipeline_reads_perceivers() {
    use tessera::pipelines::{classify::ImageClassification, ImageSource};
    let p =
        ImageClassification::from_pretrained(fixture("perceiver_learned"), &LoadOptions::default())
            .unwrap();
    let photo = fixture("processor_torchvision").join("photo_chelsea.png");
    let out = p.classify(&[ImageSource::Path(photo)], Some(2)).unwrap();
    assert_eq!(out[0].len(), 2);
    assert!(out[0][0].score >= out[0][1].score);
    assert!(out[0][0].label.starts_with("LABEL_"));
}

/// Trained from scratch (`tessera train --arch perceiver`): every parameter gets a gradient,
/// the latents start distinct, and a one-channel Fourier Perceiver takes one-channel images.
#[test]
fn a_fresh_perceiver_trains_every_parameter() {
    use tessera::models::perceiver::PerceiverConfig;
    let labels = (0..3).map(|i| (i.to_string(), format!("c{i}"))).collect();
    let cfg = PerceiverConfig::fourier_from_scratch(1, labels, 8);
    let l = PerceiverClassifier::from_config(&cfg, &LoadOptions::default().trainable()).unwrap();
    let x = candle_core::Tensor::randn(0f32, 1.0, (2, 1, 8, 8), &candle_core::Device::Cpu).unwrap();
    let y = candle_core::Tensor::new(&[0u32, 2], &candle_core::Device::Cpu).unwrap();
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
    let logits = l
        .model
        .forward(&x, &mut Ctx::train(&mut rng))
        .unwrap()
        .logits;
    let loss = tessera::train::cross_entropy(&logits, &y, 0.0).unwrap();
    let grads = loss.backward().unwrap();
    let opt = tessera::train::AdamW::new(l.store.vars(), Default::default());
    assert_eq!(opt.missing_grads(&grads), Vec::<String>::new());
    let latents = l
        .store
        .named_tensors()
        .into_iter()
        .find(|(n, _)| n == "perceiver.embeddings.latents")
        .unwrap()
        .1;
    let spread = latents
        .var_keepdim(0)
        .unwrap()
        .mean_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(spread > 1e-5, "latents start identical");
}

/// `tessera train --arch perceiver` stopped after an epoch and resumed ends with the weights of
/// an uninterrupted run.
#[test]
fn perceiver_training_resumes_bit_for_bit() {
    use tessera::train::recipes::{train_vit, Arch, TrainSpec};
    let d = tempfile::tempdir().unwrap();
    let spec = |out: &str| TrainSpec {
        arch: Arch::Perceiver,
        device: "cpu".into(),
        epochs: Some(2),
        // Features made for the digits' 8 pixels (tessera's option), saved in the config.
        fourier_resolution: Some(8),
        threads: 1,
        output: Some(d.path().join(out)),
        ..TrainSpec::default()
    };
    let silent = &tessera::progress::Silent;
    train_vit(&spec("whole"), silent).unwrap();
    let first = TrainSpec {
        stop_after: Some(1),
        ..spec("parts")
    };
    train_vit(&first, silent).unwrap();
    // The Fourier features are not weights: resuming with other ones is refused, not continued.
    let other = TrainSpec {
        resume: true,
        fourier_resolution: None,
        ..spec("parts")
    };
    let e = train_vit(&other, silent).unwrap_err();
    assert!(e.to_string().contains("--fourier-resolution 8"), "{e}");
    let rest = TrainSpec {
        resume: true,
        ..spec("parts")
    };
    train_vit(&rest, silent).unwrap();
    let w = |name: &str| load(&d.path().join(name).join("model.safetensors"));
    let (a, b) = (w("whole"), w("parts"));
    assert!(a.keys().any(|k| k.starts_with("perceiver.")));
    for (k, t) in &a {
        assert_eq!(max_abs_diff(t, &b[k]), 0.0, "{k}");
    }
    // The checkpoint is a Perceiver transformers reads: its config names the architecture.
    let cfg: serde_json::Value =
        tessera::util::read_json(&d.path().join("whole").join("config.json")).unwrap();
    assert_eq!(
        cfg["architectures"][0],
        "PerceiverForImageClassificationFourier"
    );
    assert_eq!(cfg["d_model"], 259);
    // Made at the digits' 8 pixels, not transformers' fixed 224 (tessera's own field).
    assert_eq!(cfg["fourier_max_resolution"], 8);
}
