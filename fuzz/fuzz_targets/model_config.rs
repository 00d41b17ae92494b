//! `config.json` of every model family: parsing, family detection and validation. Errors are
//! fine, panics are bugs. (Building the model is the parameter store's job: it refuses what
//! memory cannot hold; the safetensors target builds one.)
#![no_main]
use libfuzzer_sys::fuzz_target;
use tessera::models::clip::ClipConfig;
use tessera::models::vit::hf::HfVitConfig;
use tessera::models::vit::VitConfig;
use tessera::models::Family;

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let _ = Family::of(&v);
    if let Ok(c) = serde_json::from_value::<VitConfig>(v.clone()) {
        let _ = c.validate();
        let _ = c.label(3);
    }
    if let Ok(c) = serde_json::from_value::<HfVitConfig>(v.clone()) {
        let _ = c.validate();
        let _ = c.label(0);
    }
    if let Ok(c) = serde_json::from_value::<ClipConfig>(v) {
        let _ = c.validate();
    }
});
