//! An HF parquet dataset file (arbitrary bytes) through the dataset reader and an image
//! processor: errors are fine, panics are bugs.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tessera::image::ProcessorConfig;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let p = common::scratch("train-00000-of-00001.parquet", data);
    let _ = tessera::data::parquet::read_split(&[p], &ProcessorConfig::vit(16), (16, 16), None);
});
