//! A search index file (arbitrary bytes: safetensors with the manifest in its header) through
//! `Index::load` and a search: errors are fine, panics are bugs.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let p = common::scratch("index.safetensors", data);
    if let Ok(idx) = tessera::pipelines::Index::load(&p) {
        let _ = idx.width();
        assert_eq!(idx.embeds.len(), idx.manifest.entries.len());
    }
});
