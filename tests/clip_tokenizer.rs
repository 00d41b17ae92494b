//! CLIP's BPE against transformers' CLIPTokenizer on 36 strings (fixture from
//! tools/gen_tokenizer_fixtures.py), with the real merges fetched by tools/fetch_clip_bpe.sh.
use std::path::PathBuf;
use tessera::models::clip::tokenizer::{ClipTokenizer, CONTEXT_LENGTH};

fn tokenizer() -> ClipTokenizer {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let path = std::env::var("TESSERA_CLIP_BPE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("assets/bpe_simple_vocab_16e6.txt.gz"));
    assert!(
        path.exists(),
        "{} is missing: run tools/fetch_clip_bpe.sh",
        path.display()
    );
    ClipTokenizer::from_bpe_gz(&path).unwrap()
}

#[test]
fn the_ladybug_prompt() {
    let t = tokenizer();
    assert_eq!(t.vocab_size(), 49408);
    assert_eq!(
        t.encode("This is a photo of a ladybug.", 77, false).ids,
        vec![49406, 589, 533, 320, 1125, 539, 320, 40038, 269, 49407]
    );
}

#[test]
fn ids_equal_transformers_on_every_fixture_string() {
    let t = tokenizer();
    let fx: Vec<serde_json::Value> =
        serde_json::from_str(include_str!("fixtures/clip_tokenizer.json")).unwrap();
    assert!(fx.len() >= 30);
    let ids = |v: &serde_json::Value| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect::<Vec<_>>()
    };
    let mut bad = vec![];
    for case in &fx {
        let text = case["text"].as_str().unwrap();
        // Untruncated (the long text runs past 77 here) and as the pipeline calls it: padded,
        // truncated to 77.
        let plain = t.encode(text, usize::MAX, false);
        let padded = t.encode(text, CONTEXT_LENGTH, true);
        if plain.ids != ids(&case["ids"])
            || padded.ids != ids(&case["padded_ids"])
            || padded.attention_mask != ids(&case["padded_mask"])
        {
            bad.push(format!(
                "{text:?}: got {:?}, want {:?}",
                plain.ids,
                ids(&case["ids"])
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {} differ:\n{}",
        bad.len(),
        fx.len(),
        bad.join("\n")
    );
}
