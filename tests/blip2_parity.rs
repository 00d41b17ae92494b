//! BLIP-2 with OPT against transformers 5 on tiny random-init checkpoints
//! (`tools/make_blip2_fixtures.py`: every parameter redrawn — LayerNorms, `query_tokens` and the
//! qkv bias's zero key part included — so no layer is an identity): the vision states, the
//! Q-Former's output, the projected image features and the logits of a padded batch (≤ 1e-4),
//! and the ids `generate` returns for greedy decoding, the repetition penalty with
//! `min_new_tokens` and beam search (early stopping false / true / "never", length penalties, two
//! returned sequences) on prompts of different lengths as `Blip2Processor` lays them out (image
//! tokens, padding, BOS, text), and without a prompt. Two layouts: pre-norm OPT in safetensors,
//! and opt-350m's post-norm layout with `project_in`/`project_out`, no final LayerNorm and the
//! Q-Former's unused text feed-forward, as a pickled `pytorch_model.bin` with the tied head.
mod common;

use candle_core::{DType, Device, Tensor};
use common::generation::{prompts, rows, settings};
use serde_json::Value;
use std::path::PathBuf;
use tessera::models::blip2::{generation_defaults, Blip2Captioner};
use tessera::models::opt::OptLm;
use tessera::models::{LoadOptions, Pretrained};
use tessera::nn::generate::GenerationConfig;

const FIXTURES: [&str; 2] = ["blip2_opt", "blip2_opt_postnorm"];

fn dir(name: &str) -> PathBuf {
    common::fixture(name)
}

fn reference(name: &str) -> (std::collections::HashMap<String, Tensor>, Value) {
    let t = common::load(&dir(name).join("reference.safetensors"));
    let j = std::fs::read_to_string(dir(name).join("reference.json")).unwrap();
    (t, serde_json::from_str(&j).unwrap())
}

#[test]
fn image_features_and_logits_equal_transformers() {
    for name in FIXTURES {
        let m = Blip2Captioner::load(dir(name), &LoadOptions::default()).unwrap();
        assert!(m.report.is_clean(), "{name}: {}", m.report);
        let m = m.model;
        let (r, _) = reference(name);
        let px = &r["pixel_values"];
        let f = m
            .image_features(px, &mut tessera::nn::Ctx::inference())
            .unwrap();
        for (got, want) in [
            (&f.image_embeds, "image_embeds"),
            (&f.qformer, "qformer"),
            (&f.features, "image_features"),
        ] {
            let d = common::max_abs_diff(got, &r[want]);
            assert!(d <= 1e-4, "{name}: {want} differ by {d}");
        }
        // Image tokens, then left padding, then BOS and text (Blip2Processor's layout); the
        // padded positions included: their rows are uniform over hidden keys in both.
        let ids = r["ids"].to_dtype(DType::U32).unwrap();
        let keep = r["mask"].to_dtype(DType::F32).unwrap();
        let logits = m.logits(px, &ids, Some(&keep)).unwrap();
        let d = common::max_abs_diff(&logits, &r["logits"]);
        assert!(d <= 1e-4, "{name}: logits differ by {d}");
    }
}

#[test]
fn generates_the_ids_transformers_generates() {
    for name in FIXTURES {
        let m = Blip2Captioner::load(dir(name), &LoadOptions::default())
            .unwrap()
            .model;
        let (r, j) = reference(name);
        let px = &r["pixel_values"];
        let p = prompts(&j["prompt"], &j["prompt_mask"]);
        // The processor's layout, rebuilt from the texts alone.
        let texts: Vec<Vec<u32>> = p
            .ids
            .iter()
            .zip(&p.mask)
            .map(|(ids, keep)| {
                ids.iter()
                    .zip(keep)
                    .skip(m.config.num_query_tokens)
                    .filter(|(_, &k)| k == 1)
                    .map(|(&i, _)| i)
                    .collect()
            })
            .collect();
        let built = m.prompts(&texts).unwrap();
        assert_eq!((&built.ids, &built.mask), (&p.ids, &p.mask), "{name}");
        let base = generation_defaults(&m.config);
        let mut checked = 0;
        for run in [
            "greedy",
            "greedy_penalised",
            "beam3",
            "beam4_early",
            "beam2_never",
        ] {
            let cfg = settings(base.clone(), &j[run]["settings"]);
            let got = m.generate(px, &p, &cfg, false).unwrap().generated;
            assert_eq!(got.sequences, rows(&j[run]["ids"]), "{name} {run}: {cfg:?}");
            checked += 1;
        }
        // No prompt: `[image] * Q + [bos]`, as Blip2ForConditionalGeneration.generate starts.
        let empty = m.prompts(&[vec![], vec![]]).unwrap();
        for run in ["unconditional", "unconditional_beam"] {
            let cfg = settings(base.clone(), &j[run]["settings"]);
            let got = m.generate(px, &empty, &cfg, false).unwrap().generated;
            assert_eq!(got.sequences, rows(&j[run]["ids"]), "{name} {run}");
            checked += 1;
        }
        assert_eq!(checked, 7);
        if name == "blip2_opt" {
            // This fixture exercises early stops: a greedy row ends at eos before
            // max_new_tokens, and the others are padded after it.
            let eos = m.config.text_config.eos_token_id.unwrap();
            let plen = p.ids[0].len();
            assert!(rows(&j["greedy"]["ids"])
                .iter()
                .any(|r| r[plen..r.len() - 1].contains(&eos)));
        }
    }
}

#[test]
fn bad_blip2_inputs_are_errors() {
    let m = Blip2Captioner::load(dir("blip2_opt"), &LoadOptions::default())
        .unwrap()
        .model;
    let cfg = GenerationConfig {
        max_new_tokens: Some(3),
        ..generation_defaults(&m.config)
    };
    let px = Tensor::zeros((1, 3, 30, 30), DType::F32, &Device::Cpu).unwrap();
    let one = m.prompts(&[vec![]]).unwrap();
    assert!(m.generate(&px, &one, &cfg, false).is_ok());
    // Wrong image size; a prompt count that does not match; an id outside the vocabulary.
    let small = Tensor::zeros((1, 3, 12, 12), DType::F32, &Device::Cpu).unwrap();
    assert!(m.generate(&small, &one, &cfg, false).is_err());
    let two = m.prompts(&[vec![], vec![]]).unwrap();
    assert!(m.generate(&px, &two, &cfg, false).is_err());
    let far = m.prompts(&[vec![2, 5000]]).unwrap();
    assert!(m.generate(&px, &far, &cfg, false).is_err());
    // Image tokens that do not number num_query_tokens: an error naming them, not shifted
    // features.
    let mut short = one.clone();
    short.ids[0].remove(0);
    short.mask[0].remove(0);
    let e = m
        .generate(&px, &short, &cfg, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("image tokens"), "{e}");
    // Configs that cannot be built or run name the field.
    let mut c = m.config.clone();
    c.qformer_config.num_attention_heads = 5;
    let e = Blip2Captioner::from_config(&c, &LoadOptions::default())
        .err()
        .unwrap();
    assert!(e.to_string().contains("num_attention_heads"), "{e}");
    let mut c = m.config.clone();
    c.image_token_index = None;
    let e = Blip2Captioner::from_config(&c, &LoadOptions::default())
        .err()
        .unwrap();
    assert!(e.to_string().contains("image_token_index"), "{e}");
    let mut c = m.config.clone();
    c.text_config.extra.insert("model_type".into(), "t5".into());
    let e = Blip2Captioner::from_config(&c, &LoadOptions::default())
        .err()
        .unwrap();
    assert!(e.to_string().contains("OPT"), "{e}");
}

#[test]
fn saved_blip2_reloads_identically() {
    let loaded = Blip2Captioner::load(dir("blip2_opt_postnorm"), &LoadOptions::default()).unwrap();
    let out = tempfile::tempdir().unwrap();
    loaded
        .model
        .save_pretrained(&loaded.store, out.path())
        .unwrap();
    let again = Blip2Captioner::load(out.path(), &LoadOptions::default()).unwrap();
    assert!(again.report.is_clean(), "{}", again.report);
    let (r, _) = reference("blip2_opt_postnorm");
    let ids = r["ids"].to_dtype(DType::U32).unwrap();
    let a = loaded.model.logits(&r["pixel_values"], &ids, None).unwrap();
    let b = again.model.logits(&r["pixel_values"], &ids, None).unwrap();
    assert_eq!(common::max_abs_diff(&a, &b), 0.0);
}

#[test]
fn opt_in_opt_350m_layout_equals_transformers() {
    // Post-norm layers, no final LayerNorm, 12-wide embeddings projected in and out of 16.
    let m = OptLm::load(dir("opt_350m_like"), &LoadOptions::default()).unwrap();
    assert!(m.report.is_clean(), "{}", m.report);
    let m = m.model;
    let (r, j) = reference("opt_350m_like");
    let p = prompts(&j["prompt"], &j["prompt_mask"]);
    let ids = Tensor::new(p.ids.clone(), &Device::Cpu).unwrap();
    let logits = m.logits(&ids, Some(&p.mask), None).unwrap();
    // Padded positions included (OPT embeds them at position -1).
    let d = common::max_abs_diff(&logits, &r["logits"]);
    assert!(d <= 1e-4, "logits differ by {d}");
    for run in ["greedy", "beam3"] {
        let cfg = settings(m.generation_defaults(), &j[run]["settings"]);
        let got = m.generate(&p, &cfg).unwrap();
        assert_eq!(got.sequences, rows(&j[run]["ids"]), "{run}");
    }
    // fp32-packed linears (tessera's inference GEMMs) give the same ids.
    let cfg = settings(m.generation_defaults(), &j["greedy"]["settings"]);
    let packed = m.with_dtype(DType::F32).unwrap();
    assert_eq!(
        packed.generate(&p, &cfg).unwrap().sequences,
        rows(&j["greedy"]["ids"])
    );
}

#[test]
fn per_word_maps_equal_the_formula_on_transformers_attentions() {
    // transformers' `output_attentions` of generate (OPT's self-attention per step) and the
    // Q-Former's `cross_attentions`, combined in Python by the same formula.
    for name in FIXTURES {
        let m = Blip2Captioner::load(dir(name), &LoadOptions::default())
            .unwrap()
            .model;
        let (r, j) = reference(name);
        let p = prompts(&j["prompt"], &j["prompt_mask"]);
        let cfg = settings(generation_defaults(&m.config), &j["word_maps"]["settings"]);
        let g = m.generate(&r["pixel_values"], &p, &cfg, true).unwrap();
        assert_eq!(
            g.generated.sequences,
            rows(&j["word_maps"]["ids"]),
            "{name}"
        );
        let maps = Tensor::stack(&g.cross_attention.unwrap(), 0).unwrap();
        let d = common::max_abs_diff(&maps, &r["word_maps"]);
        assert!(d <= 1e-4, "{name}: word maps differ by {d}");
        // One distribution over the image tokens per row and step.
        let sums: Vec<f32> = maps
            .sum(2)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-4), "{sums:?}");
    }
    let m = Blip2Captioner::load(dir("blip2_opt"), &LoadOptions::default())
        .unwrap()
        .model;
    let (r, j) = reference("blip2_opt");
    let p = prompts(&j["prompt"], &j["prompt_mask"]);
    let beams = GenerationConfig {
        num_beams: 2,
        max_new_tokens: Some(3),
        ..generation_defaults(&m.config)
    };
    assert!(m.generate(&r["pixel_values"], &p, &beams, true).is_err());
}

#[test]
fn parameter_count_from_the_config_is_exact() {
    for name in FIXTURES {
        let m = Blip2Captioner::load(dir(name), &LoadOptions::default()).unwrap();
        let held: usize = m
            .store
            .named_tensors()
            .iter()
            .map(|(_, t)| t.elem_count())
            .sum();
        assert_eq!(m.model.config.parameter_count(), held, "{name}");
    }
    // Salesforce/blip2-opt-2.7b's sizes: transformers counts 3,744,761,856 parameters
    // (`sum(p.numel())` of the model built on the meta device, tools/make_blip2_fixtures.py).
    let n = tessera::models::blip2::Blip2Config::opt_2_7b().parameter_count();
    assert_eq!(n, 3_744_761_856);
}
