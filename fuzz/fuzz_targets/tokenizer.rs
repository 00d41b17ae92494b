//! CLIP's BPE tokenizer on arbitrary text (the merges from `assets/`, or TESSERA_BPE): ids in
//! range, lengths as asked, no panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use tessera::models::clip::ClipTokenizer;

fn tokenizer() -> &'static ClipTokenizer {
    static TOK: OnceLock<ClipTokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        let path = std::env::var("TESSERA_BPE").unwrap_or_else(|_| {
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../assets/bpe_simple_vocab_16e6.txt.gz"
            )
            .into()
        });
        ClipTokenizer::from_bpe_gz(std::path::Path::new(&path))
            .expect("CLIP merges (run tools/fetch_clip_bpe.sh)")
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let t = tokenizer();
    let e = t.encode(&text, 77, true);
    assert_eq!(e.ids.len(), 77);
    assert!(e.ids.iter().all(|&i| i < 49408));
    let (ids, _) = t.encode_batch(&[&text, "a photo of a cat"], 77);
    assert!(ids.iter().all(|r| r.len() <= 77));
});
