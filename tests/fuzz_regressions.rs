//! Inputs the fuzzers found (`fuzz/regressions/<target>/`) and their seed corpora
//! (`fuzz/corpus/<target>/`), through the same library calls as the fuzz targets, on every
//! `cargo test`: each must end as `Ok` or `Err`, never a panic.
use std::path::{Path, PathBuf};
use tessera::image::{decode_with_limit, Backend, ProcessorConfig};

fn inputs(target: &str) -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut out = vec![];
    for kind in ["regressions", "corpus"] {
        if let Ok(entries) = std::fs::read_dir(root.join(kind).join(target)) {
            out.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_file()));
        }
    }
    out.sort();
    out
}

fn each(target: &str, mut f: impl FnMut(&Path, &[u8])) {
    let files = inputs(target);
    assert!(!files.is_empty(), "no inputs for {target}");
    for p in files {
        let bytes = std::fs::read(&p).unwrap();
        f(&p, &bytes);
    }
}

#[test]
fn images_and_processors() {
    each("image_decode", |p, b| {
        if let Ok(img) = decode_with_limit(b, p, Some(1 << 20)) {
            for proc in [ProcessorConfig::vit(24), ProcessorConfig::clip(24)] {
                for backend in Backend::ALL {
                    let _ = proc.clone().with_backend(backend).preprocess(&img);
                }
            }
        }
    });
    each("processor_config", |_, b| {
        if let Ok(c) = serde_json::from_slice::<ProcessorConfig>(b) {
            let _ = c.validate();
        }
    });
}

#[test]
fn model_configs() {
    use tessera::models::clip::ClipConfig;
    use tessera::models::vit::hf::HfVitConfig;
    use tessera::models::vit::VitConfig;
    each("model_config", |_, b| {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(b) {
            let _ = tessera::models::Family::of(&v);
            if let Ok(c) = serde_json::from_value::<VitConfig>(v.clone()) {
                let _ = c.validate();
            }
            if let Ok(c) = serde_json::from_value::<HfVitConfig>(v.clone()) {
                let _ = c.validate();
            }
            if let Ok(c) = serde_json::from_value::<ClipConfig>(v) {
                let _ = c.validate();
            }
        }
    });
}

#[test]
fn checkpoints() {
    let d = tempfile::tempdir().unwrap();
    for (target, file) in [
        ("safetensors", "model.safetensors"),
        ("pytorch_bin", "pytorch_model.bin"),
    ] {
        each(target, |_, b| {
            let dir = d.path().join(target);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(file), b).unwrap();
            let _ = tessera::nn::store::load_weights(&dir, &candle_core::Device::Cpu);
        });
    }
}

#[test]
fn tokenizer_parquet_and_index() {
    let bpe = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/bpe_simple_vocab_16e6.txt.gz");
    let tok = tessera::models::clip::ClipTokenizer::from_bpe_gz(&bpe).unwrap();
    each("tokenizer", |_, b| {
        let e = tok.encode(&String::from_utf8_lossy(b), 77, true);
        assert_eq!(e.ids.len(), 77);
    });
    let d = tempfile::tempdir().unwrap();
    each("parquet", |_, b| {
        let p = d.path().join("train-00000-of-00001.parquet");
        std::fs::write(&p, b).unwrap();
        let _ = tessera::data::parquet::read_split(&[p], &ProcessorConfig::vit(16), (16, 16), None);
    });
    each("index", |_, b| {
        let p = d.path().join("index.safetensors");
        std::fs::write(&p, b).unwrap();
        let _ = tessera::pipelines::Index::load(&p);
    });
}
