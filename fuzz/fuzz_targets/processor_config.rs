//! `preprocessor_config.json` parsing and validation, then preprocessing a fixed image with
//! whatever passes (when its output is small): errors are fine, panics are bugs.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tessera::image::{Backend, ProcessorConfig};

fuzz_target!(|data: &[u8]| {
    let Ok(p) = serde_json::from_slice::<ProcessorConfig>(data) else {
        return;
    };
    if p.validate().is_err() {
        return;
    }
    let img = image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(23, 17, |x, y| {
        image::Rgb([(x * 11) as u8, (y * 15) as u8, (x * y) as u8])
    }));
    let (h, w) = p.output_dims(17, 23);
    if (h as u64) * (w as u64) > 1 << 16 {
        return;
    }
    for b in Backend::ALL {
        let _ = p.clone().with_backend(b).preprocess(&img);
    }
});
