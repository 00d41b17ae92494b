//! BLIP against transformers 5 on tiny random-init checkpoints (`tools/make_blip_fixtures.py`:
//! every parameter redrawn, LayerNorms included, so no layer is an identity): the vision
//! tower's states and the teacher-forced logits (≤ 1e-4), and the ids `generate` returns for
//! greedy decoding, the repetition penalty with `min_new_tokens`, and beam search (early
//! stopping false / true / "never", length penalties, two returned sequences), on a batch of
//! left-padded prompts of different lengths; captioning without a prompt; VQA.
mod common;

use candle_core::{DType, Device, Tensor};
use serde_json::Value;
use std::path::PathBuf;
use tessera::models::blip::{generation_defaults, BlipCaptioner, BlipVqa};
use tessera::models::{LoadOptions, Pretrained};
use tessera::nn::generate::{generate, GenerationConfig, Prompts};

fn dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn reference(name: &str) -> (std::collections::HashMap<String, Tensor>, Value) {
    let t = candle_core::safetensors::load(dir(name).join("reference.safetensors"), &Device::Cpu)
        .unwrap();
    let j = std::fs::read_to_string(dir(name).join("reference.json")).unwrap();
    (t, serde_json::from_str(&j).unwrap())
}

#[test]
fn captioner_states_and_logits_equal_transformers() {
    let m = BlipCaptioner::load(dir("blip_caption"), &LoadOptions::default()).unwrap();
    assert!(m.report.is_clean(), "{}", m.report);
    let (r, _) = reference("blip_caption");
    let px = &r["pixel_values"];
    let image = m
        .model
        .vision_model
        .forward(px, &mut tessera::nn::Ctx::inference())
        .unwrap();
    let d = common::max_abs_diff(&image, &r["image_embeds"]);
    assert!(d <= 1e-4, "image states differ by {d}");
    let ids = r["tf_ids"].to_dtype(DType::U32).unwrap();
    let keep = r["tf_mask"].to_dtype(DType::F32).unwrap();
    let logits = m.model.logits(px, &ids, Some(&keep)).unwrap();
    // Padded positions included: they see the same (masked) keys as in transformers.
    let d = common::max_abs_diff(&logits, &r["logits"]);
    assert!(d <= 1e-4, "logits differ by {d}");
}

#[test]
fn captioner_generates_the_ids_transformers_generates() {
    let m = BlipCaptioner::load(dir("blip_caption"), &LoadOptions::default())
        .unwrap()
        .model;
    let (r, j) = reference("blip_caption");
    let px = &r["pixel_values"];
    let image = m
        .vision_model
        .forward(px, &mut tessera::nn::Ctx::inference())
        .unwrap();
    let prompts = Prompts {
        ids: common::generation::rows(&j["prompt"]),
        mask: common::generation::rows(&j["prompt_mask"])
            .into_iter()
            .map(|r| r.into_iter().map(|x| x as u8).collect())
            .collect(),
    };
    let base = generation_defaults(&m.config.text_config);
    let mut checked = 0;
    for run in [
        "greedy",
        "greedy_penalised",
        "beam3",
        "beam4_early",
        "beam2_never",
    ] {
        let cfg = common::generation::settings(base.clone(), &j[run]["settings"]);
        // Each run starts from fresh caches over the image states, repeated per beam inside.
        let mut dec = tessera::models::blip::BlipDecoding::new(&m.text_decoder, &image);
        let got = generate(&mut dec, &prompts, &cfg, &Device::Cpu).unwrap();
        assert_eq!(
            got.sequences,
            common::generation::rows(&j[run]["ids"]),
            "{run}: {cfg:?}"
        );
        checked += 1;
    }
    // BlipForConditionalGeneration.generate itself: no prompt, [BOS] first.
    for run in ["unconditional", "unconditional_beam"] {
        let cfg = common::generation::settings(base.clone(), &j[run]["settings"]);
        let got = m.generate(px, &[vec![], vec![]], &cfg, false).unwrap();
        assert_eq!(
            got.generated.sequences,
            common::generation::rows(&j[run]["ids"]),
            "{run}"
        );
        checked += 1;
    }
    assert_eq!(checked, 7);
    // The fixture exercises early stops: some sequence ends at [SEP] before max_new_tokens.
    let sep = m.config.text_config.sep_token_id;
    assert!(common::generation::rows(&j["greedy"]["ids"])[0].contains(&sep));
}

#[test]
fn per_word_attention_is_one_distribution_per_generated_token() {
    let m = BlipCaptioner::load(dir("blip_caption"), &LoadOptions::default())
        .unwrap()
        .model;
    let (r, _) = reference("blip_caption");
    let cfg = GenerationConfig {
        max_new_tokens: Some(5),
        ..generation_defaults(&m.config.text_config)
    };
    let g = m
        .generate(&r["pixel_values"], &[vec![], vec![]], &cfg, true)
        .unwrap();
    let maps = g.cross_attention.unwrap();
    // The prefill step predicts the first new token; each later step one more.
    let new = g.generated.sequences[0].len() - g.generated.prompt_len;
    assert_eq!(maps.len(), new);
    let tokens = 1 + (30usize / 6).pow(2);
    for a in &maps {
        assert_eq!(a.dims(), &[2, tokens]);
        let sums: Vec<f32> = a.sum(1).unwrap().to_vec1().unwrap();
        assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5), "{sums:?}");
    }
    // Beam search has no single attention path per word: refused, not guessed.
    let beams = GenerationConfig {
        num_beams: 2,
        ..cfg
    };
    assert!(m
        .generate(&r["pixel_values"], &[vec![], vec![]], &beams, true)
        .is_err());
}

#[test]
fn vqa_answers_as_transformers_does() {
    let m = BlipVqa::load(dir("blip_vqa"), &LoadOptions::default()).unwrap();
    assert!(m.report.is_clean(), "{}", m.report);
    let m = m.model;
    let (r, j) = reference("blip_vqa");
    let px = &r["pixel_values"];
    let q = Tensor::new(common::generation::rows(&j["question"]), &Device::Cpu).unwrap();
    let keep = Tensor::new(common::generation::rows(&j["question_mask"]), &Device::Cpu)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap();
    let qe = m
        .encode_question(px, &q, &keep, &mut tessera::nn::Ctx::inference())
        .unwrap();
    let d = common::max_abs_diff(&qe, &r["question_embeds"]);
    assert!(d <= 1e-4, "question states differ by {d}");
    let ans = r["answer_ids"].to_dtype(DType::U32).unwrap();
    let akeep = r["answer_mask"].to_dtype(DType::F32).unwrap();
    // transformers 5.24 drops `encoder_attention_mask` on the way to BlipTextSelfAttention
    // (BlipTextAttention does not pass it on), so its cross-attention is never masked: the
    // reference equals the unmasked call. tessera applies a mask only when given one.
    let logits = m
        .text_decoder
        .logits(
            &ans,
            Some(&akeep),
            &qe,
            None,
            &mut tessera::nn::Ctx::inference(),
        )
        .unwrap();
    let d = common::max_abs_diff(&logits, &r["logits"]);
    assert!(d <= 1e-4, "answer logits differ by {d}");
    let base = generation_defaults(&m.config.text_config);
    for run in ["greedy", "beam3"] {
        let cfg = common::generation::settings(base.clone(), &j[run]["settings"]);
        let got = m.generate(px, &q, &keep, &cfg).unwrap();
        assert_eq!(
            got.sequences,
            common::generation::rows(&j[run]["ids"]),
            "{run}"
        );
    }
}

#[test]
fn bad_blip_inputs_are_errors() {
    let m = BlipCaptioner::load(dir("blip_caption"), &LoadOptions::default())
        .unwrap()
        .model;
    let cfg = generation_defaults(&m.config.text_config);
    // Wrong image size, a prompt count that does not match, an id outside the vocabulary.
    let small = Tensor::zeros((1, 3, 12, 12), DType::F32, &Device::Cpu).unwrap();
    assert!(m.generate(&small, &[vec![]], &cfg, false).is_err());
    let px = Tensor::zeros((1, 3, 30, 30), DType::F32, &Device::Cpu).unwrap();
    assert!(m.generate(&px, &[vec![], vec![]], &cfg, false).is_err());
    assert!(m.generate(&px, &[vec![5000]], &cfg, false).is_err());
    // A config that cannot be built names the field.
    let mut c = m.config.clone();
    c.text_config.num_attention_heads = 5;
    let e = BlipCaptioner::from_config(&c, &LoadOptions::default())
        .err()
        .unwrap();
    assert!(e.to_string().contains("num_attention_heads"), "{e}");
}

#[test]
fn gradient_weighted_word_maps_equal_torch_autograd() {
    // tools/make_blip2_fixtures.py: (∇A ⊙ A)⁺ of each word's logit over transformers' cross-
    // attention maps (`retain_grad` + backward), mean over heads and layers, normalised.
    let m = BlipCaptioner::load(dir("blip_caption"), &LoadOptions::default())
        .unwrap()
        .model;
    let (r, _) = reference("blip_caption");
    let j: Value = serde_json::from_str(
        &std::fs::read_to_string(dir("blip_caption").join("word_relevance.json")).unwrap(),
    )
    .unwrap();
    let ids: Vec<u32> = j["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect();
    let px = r["pixel_values"].narrow(0, 1, 1).unwrap();
    let got = m.word_relevance(&px, &ids, 1).unwrap();
    let want = j["maps"].as_array().unwrap();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        let w: Vec<f32> = w
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        let w = Tensor::new(w, &Device::Cpu).unwrap();
        let d = common::max_abs_diff(g, &w);
        assert!(d <= 1e-4, "relevance differs by {d}");
    }
}
