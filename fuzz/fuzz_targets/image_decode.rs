//! Image decoding (PNG, JPEG through libjpeg, EXIF orientation, limits) and both processor
//! backends on whatever decodes: errors are fine, panics and aborts are bugs.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use tessera::image::{decode_with_limit, Backend, ProcessorConfig};

fuzz_target!(|data: &[u8]| {
    // A small limit: the fuzzer must not spend its time decoding legitimately huge images.
    let Ok(img) = decode_with_limit(data, Path::new("fuzz"), Some(1 << 20)) else {
        return;
    };
    for p in [ProcessorConfig::vit(24), ProcessorConfig::clip(24)] {
        for b in Backend::ALL {
            let _ = p.clone().with_backend(b).preprocess(&img);
        }
    }
});
