//! Co-attention against PyTorch (fixtures from tools/make_coattention_fixtures.py, every
//! parameter redrawn): LXMERT from transformers (the QA model as safetensors, the bare model as
//! `pytorch_model.bin`) with a padded sentence and a dropped region, and ViLBERT's connection
//! layer (streams of different widths, a separate module per direction) against that script's
//! own PyTorch module.
mod common;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use common::{fixture, load, max_abs_diff};
use std::collections::HashMap;
use tessera::models::lxmert::{Lxmert, LxmertConfig, LxmertInputs};
use tessera::models::{LoadOptions, Pretrained};
use tessera::nn::coattention::VILBERT_CONNECTION;
use tessera::nn::{padding_mask, Activation, CoAttentionLayer, CoLayerConfig, Ctx, Trace};
use tessera::train::{AdamW, AdamWConfig};

fn inputs(io: &HashMap<String, Tensor>) -> HashMap<&'static str, Tensor> {
    let ids = |k: &str| io[k].to_dtype(DType::U32).unwrap();
    HashMap::from([
        ("input_ids", ids("input_ids")),
        ("token_type_ids", ids("token_type_ids")),
    ])
}

fn check_lxmert(name: &str, qa: bool) {
    let dir = fixture(name);
    let loaded = Lxmert::load(&dir, &LoadOptions::default()).unwrap();
    assert!(loaded.report.is_clean(), "{}", loaded.report);
    let m = loaded.model;
    let io = load(&dir.join("io.safetensors"));
    let ints = inputs(&io);
    let x = LxmertInputs {
        input_ids: &ints["input_ids"],
        attention_mask: Some(&io["attention_mask"]),
        token_type_ids: Some(&ints["token_type_ids"]),
        visual_feats: &io["visual_feats"],
        visual_pos: &io["visual_pos"],
        visual_attention_mask: Some(&io["visual_attention_mask"]),
    };
    let mut trace = Trace::default();
    let traced = m
        .forward(&x, &mut Ctx::eval().with_trace(&mut trace))
        .unwrap();
    let fused = m.forward(&x, &mut Ctx::inference()).unwrap();
    let packed = m
        .with_dtype(DType::F32)
        .unwrap()
        .forward(&x, &mut Ctx::inference())
        .unwrap();
    // The padded token's states are compared too: transformers computes them like any other.
    for (path, out) in [
        ("composite", &traced),
        ("fused", &fused),
        ("packed", &packed),
    ] {
        let dl = max_abs_diff(&out.language, &io["language_output"]);
        let dv = max_abs_diff(&out.vision, &io["vision_output"]);
        let dp = max_abs_diff(&out.pooled, &io["pooled_output"]);
        println!("{name} ({path}): language {dl:e}, vision {dv:e}, pooled {dp:e}");
        assert!(dl <= 1e-4 && dv <= 1e-4 && dp <= 1e-4, "{name} {path}");
        match (&out.answer_scores, qa) {
            (Some(s), true) => {
                let d = max_abs_diff(s, &io["question_answering_score"]);
                println!("{name} ({path}): answer scores {d:e}");
                assert!(d <= 1e-4, "{name} {path} answers {d}");
            }
            (None, false) => {}
            _ => panic!("{name}: the QA head is there iff the checkpoint has one"),
        }
    }
    // Attentions: language layers, relationship layers, then 4 per cross-modality layer
    // (language→vision is what transformers returns as cross_encoder_attentions).
    let c = &m.config;
    assert_eq!(
        trace.attentions.len(),
        c.l_layers + c.r_layers + 4 * c.x_layers
    );
    let mut worst: f32 = 0.0;
    for i in 0..c.l_layers {
        worst = worst.max(max_abs_diff(
            &trace.attentions[i],
            &io[&format!("language_attentions_{i}")],
        ));
    }
    for i in 0..c.r_layers {
        let a = &trace.attentions[c.l_layers + i];
        worst = worst.max(max_abs_diff(a, &io[&format!("vision_attentions_{i}")]));
    }
    for i in 0..c.x_layers {
        let a = &trace.attentions[c.l_layers + c.r_layers + 4 * i];
        worst = worst.max(max_abs_diff(
            a,
            &io[&format!("cross_encoder_attentions_{i}")],
        ));
    }
    println!("{name}: attentions {worst:e}");
    assert!(worst <= 1e-5, "{name} attentions {worst}");
}

#[test]
fn lxmert_question_answering_safetensors_matches_transformers() {
    check_lxmert("lxmert_qa", true);
}

#[test]
fn lxmert_model_from_pytorch_model_bin_matches_transformers() {
    check_lxmert("lxmert_base", false);
}

#[test]
fn lxmert_bad_inputs_and_configs_are_errors() {
    let m = Lxmert::load(fixture("lxmert_qa"), &LoadOptions::default())
        .unwrap()
        .model;
    let dev = Device::Cpu;
    let ids = Tensor::new(&[[1u32, 2, 3]], &dev).unwrap();
    let feats = Tensor::zeros((1, 4, 16), DType::F32, &dev).unwrap();
    let pos = Tensor::zeros((1, 4, 4), DType::F32, &dev).unwrap();
    let ok = LxmertInputs {
        input_ids: &ids,
        attention_mask: None,
        token_type_ids: None,
        visual_feats: &feats,
        visual_pos: &pos,
        visual_attention_mask: None,
    };
    assert!(m.forward(&ok, &mut Ctx::inference()).is_ok());
    let wide = Tensor::zeros((1, 4, 17), DType::F32, &dev).unwrap();
    let bad_id = Tensor::new(&[[1u32, 99, 3]], &dev).unwrap();
    let bad_type = Tensor::new(&[[0u32, 2, 0]], &dev).unwrap();
    let bad_mask = Tensor::ones((1, 5), DType::F32, &dev).unwrap();
    let long = Tensor::zeros((1, 65), DType::U32, &dev).unwrap();
    for (what, x, needle) in [
        (
            "feature width",
            LxmertInputs {
                visual_feats: &wide,
                ..ok
            },
            "visual_feats",
        ),
        (
            "token id",
            LxmertInputs {
                input_ids: &bad_id,
                ..ok
            },
            "token id 99",
        ),
        (
            "token type",
            LxmertInputs {
                token_type_ids: Some(&bad_type),
                ..ok
            },
            "token type 2",
        ),
        (
            "mask",
            LxmertInputs {
                visual_attention_mask: Some(&bad_mask),
                ..ok
            },
            "visual_attention_mask",
        ),
        (
            "length",
            LxmertInputs {
                input_ids: &long,
                ..ok
            },
            "max_position_embeddings",
        ),
    ] {
        let e = m
            .forward(&x, &mut Ctx::inference())
            .unwrap_err()
            .to_string();
        assert!(e.contains(needle), "{what}: {e}");
    }
    let bad = LxmertConfig {
        hidden_size: 30,
        num_attention_heads: 4,
        ..LxmertConfig::default()
    };
    let e = Lxmert::from_config(&bad, &LoadOptions::default())
        .err()
        .expect("4 heads cannot split 30 channels");
    assert!(e.to_string().contains("heads"), "{e}");
}

/// Fresh LXMERT from a config: every parameter gets a gradient through both streams and the
/// shared cross-attention.
#[test]
fn a_fresh_lxmert_trains_every_parameter() {
    let cfg = LxmertConfig {
        vocab_size: 20,
        hidden_size: 16,
        num_attention_heads: 2,
        intermediate_size: 24,
        l_layers: 1,
        r_layers: 1,
        x_layers: 2,
        visual_feat_dim: 8,
        num_qa_labels: 3,
        ..LxmertConfig::default()
    };
    let m = Lxmert::from_config(&cfg, &LoadOptions::default().trainable()).unwrap();
    let dev = Device::Cpu;
    let ids = Tensor::new(&[[1u32, 5, 7, 2], [1, 9, 2, 0]], &dev).unwrap();
    let mask = Tensor::new(&[[1f32, 1., 1., 1.], [1., 1., 1., 0.]], &dev).unwrap();
    let feats = Tensor::randn(0f32, 1., (2, 3, 8), &dev).unwrap();
    let pos = Tensor::rand(0f32, 1., (2, 3, 4), &dev).unwrap();
    let x = LxmertInputs {
        input_ids: &ids,
        attention_mask: Some(&mask),
        token_type_ids: None,
        visual_feats: &feats,
        visual_pos: &pos,
        visual_attention_mask: None,
    };
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
    let out = m.model.forward(&x, &mut Ctx::train(&mut rng)).unwrap();
    let targets = Tensor::new(&[0u32, 2], &dev).unwrap();
    let loss = candle_nn::loss::cross_entropy(&out.answer_scores.unwrap(), &targets)
        .unwrap()
        // The vision stream's last states feed no head; a term of their own reaches them.
        .add(&out.vision.sqr().unwrap().mean_all().unwrap())
        .unwrap();
    let opt = AdamW::new(m.store.vars(), AdamWConfig::default());
    let grads = loss.backward().unwrap();
    assert_eq!(opt.missing_grads(&grads), Vec::<String>::new());
}

#[test]
fn vilbert_connection_layer_matches_pytorch() {
    let dir = fixture("vilbert_layer");
    let io = load(&dir.join("io.safetensors"));
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let u = |k: &str| config[k].as_u64().unwrap() as usize;
    let vb = unsafe {
        VarBuilder::from_mmaped_safetensors(
            &[dir.join("model.safetensors")],
            DType::F32,
            &Device::Cpu,
        )
    }
    .unwrap();
    let cfg = CoLayerConfig {
        dims: [u("v_hidden_size"), u("hidden_size")],
        inner: Some(u("bi_hidden_size")),
        heads: u("bi_num_attention_heads"),
        self_heads: 1,
        intermediate: [u("v_intermediate_size"), u("intermediate_size")],
        act: Activation::Gelu,
        attn_dropout: 0.0,
        dropout: 0.0,
        eps: 1e-12,
    };
    let layer = CoAttentionLayer::new(
        vb.pp(config["prefix"].as_str().unwrap()),
        &VILBERT_CONNECTION,
        &cfg,
    )
    .unwrap();
    let vm = padding_mask(&io["vision_mask"], DType::F32).unwrap();
    let tm = padding_mask(&io["text_mask"], DType::F32).unwrap();
    let mut trace = Trace::default();
    let (v, t) = layer
        .forward(
            &io["vision"],
            Some(&vm),
            &io["text"],
            Some(&tm),
            &mut Ctx::eval().with_trace(&mut trace),
        )
        .unwrap();
    let mut prepared = layer.clone();
    prepared.prepare(DType::F32.into()).unwrap();
    let (pv, pt) = prepared
        .forward(
            &io["vision"],
            Some(&vm),
            &io["text"],
            Some(&tm),
            &mut Ctx::inference(),
        )
        .unwrap();
    for (what, a, b) in [
        ("vision", &v, "vision_out"),
        ("text", &t, "text_out"),
        ("vision (packed)", &pv, "vision_out"),
        ("text (packed)", &pt, "text_out"),
        (
            "vision→text attention",
            &trace.attentions[0],
            "vision_to_text",
        ),
        (
            "text→vision attention",
            &trace.attentions[1],
            "text_to_vision",
        ),
    ] {
        let d = max_abs_diff(a, &io[b]);
        println!("ViLBERT connection layer {what}: {d:e}");
        assert!(d <= 1e-5, "{what}: {d}");
    }
    // Shared weights need streams of one width.
    let mut shared = cfg;
    shared.inner = None;
    let e =
        CoAttentionLayer::new(vb, &tessera::nn::coattention::LXMERT_X_LAYER, &shared).unwrap_err();
    assert!(e.to_string().contains("one width"), "{e}");
}
