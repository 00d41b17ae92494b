//! transformers 5's default image processors (the torchvision backend: `ViTImageProcessor`,
//! `CLIPImageProcessor`) against transformers + torch on this project's fixtures
//! (tools/gen_torchvision_fixtures.py): torch's uint8 antialiased resize alone, the small
//! crops of tests/fixtures/processor in every mode under several configs, crops of the nine
//! real photos, and the rescale/normalise arithmetic. Tolerances: uint8 values exactly equal
//! everywhere; float32 `pixel_values` exactly equal (0 ulp) too.
mod common;
use common::{fixture, load};
use std::collections::HashMap;
use std::path::Path;
use tessera::image::resize::{resize_u8_torchvision, TorchFilter};
use tessera::image::{Backend, ProcessorConfig};

fn dir() -> std::path::PathBuf {
    fixture("processor_torchvision")
}

fn meta_list(key: &str) -> Vec<String> {
    let bytes = std::fs::read(dir().join("expected.safetensors")).unwrap();
    let (_, m) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let m = m.metadata().as_ref().unwrap();
    serde_json::from_str(&m[key]).unwrap()
}

fn config(name: &str, backend: Backend) -> ProcessorConfig {
    let p = ProcessorConfig::load(&dir().join(format!("{name}.{backend}.json"))).unwrap();
    // The file says it (image_processor_type ...Pil for Pil, the plain name for torchvision).
    assert_eq!(p.backend(), backend, "{name}");
    p
}

/// (values equal, total, max |difference|) between tessera's HWC pixels and HF's CHW tensor.
fn compare_u8(px: &[u8], want: &[u8], n: usize) -> (usize, usize, i32) {
    let (mut eq, mut worst) = (0, 0);
    for i in 0..n {
        for c in 0..3 {
            let d = (px[i * 3 + c] as i32 - want[c * n + i] as i32).abs();
            worst = worst.max(d);
            eq += (d == 0) as usize;
        }
    }
    (eq, 3 * n, worst)
}

fn check_u8(
    want: &HashMap<String, candle_core::Tensor>,
    key: &str,
    img: &image::DynamicImage,
    p: &ProcessorConfig,
) -> (usize, usize, i32) {
    let (px, h, w) = p.pixels_u8(img).unwrap();
    let exp = &want[key];
    assert_eq!(exp.dims(), &[3, h as usize, w as usize], "{key}");
    let exp = exp.flatten_all().unwrap().to_vec1::<u8>().unwrap();
    let r = compare_u8(&px, &exp, (h * w) as usize);
    println!("{key:55} {}/{} equal, max diff {}", r.0, r.1, r.2);
    r
}

#[test]
fn resize_kernel_equals_torch_uint8_antialias() {
    let src = load(&fixture("pil_resize").join("resize.safetensors"));
    let want = load(&dir().join("resize.safetensors"));
    let mut checked = 0;
    for name in ["chelsea_rgb", "camera_l"] {
        let s = &src[&format!("{name}/src")];
        let dims = s.dims().to_vec();
        let (h, w, c) = (dims[0], dims[1], if dims.len() == 3 { dims[2] } else { 1 });
        let s = s.flatten_all().unwrap().to_vec1::<u8>().unwrap();
        for (mode, f) in [
            ("bilinear", TorchFilter::Bilinear),
            ("bicubic", TorchFilter::Bicubic),
        ] {
            let prefix = format!("{name}/{mode}/");
            for (key, t) in want.iter().filter(|(k, _)| k.starts_with(&prefix)) {
                let (ow, oh) = key[prefix.len()..].split_once('x').unwrap();
                let (ow, oh): (usize, usize) = (ow.parse().unwrap(), oh.parse().unwrap());
                let exp = t.flatten_all().unwrap().to_vec1::<u8>().unwrap();
                let got = resize_u8_torchvision(&s, w, h, c, ow, oh, f);
                let diff = got.iter().zip(&exp).filter(|(a, b)| a != b).count();
                assert_eq!(got.len(), exp.len(), "{key}");
                assert_eq!(diff, 0, "{key}: {diff} of {} values differ", exp.len());
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 2 * 2 * 8);
}

#[test]
fn small_crops_in_every_mode_equal_transformers_torchvision() {
    let want = load(&dir().join("expected.safetensors"));
    let small = fixture("processor");
    let names = meta_list("small");
    assert_eq!(names.len(), 7);
    let mut total = (0, 0, 0);
    for cname in meta_list("configs") {
        let mut backends = vec![Backend::Torchvision];
        if meta_list("pil_configs").contains(&cname) {
            backends.push(Backend::Pil);
        }
        for backend in backends {
            let p = config(&cname, backend);
            for name in &names {
                let img = tessera::image::open(&small.join(name)).unwrap();
                let key = format!("small/{name}/{cname}/{backend}/uint8");
                let (eq, n, worst) = check_u8(&want, &key, &img, &p);
                total = (total.0 + eq, total.1 + n, total.2.max(worst));
            }
        }
    }
    println!("all: {}/{} equal, max diff {}", total.0, total.1, total.2);
    assert_eq!(total.0, total.1, "max level diff {}", total.2);
}

#[test]
fn real_photo_crops_equal_transformers_both_backends() {
    let want = load(&dir().join("expected.safetensors"));
    let photos = meta_list("photos");
    assert_eq!(photos.len(), 9);
    for backend in Backend::ALL {
        let mut total = (0, 0, 0);
        for cname in meta_list("photo_configs") {
            let p = config(&cname, backend);
            for name in &photos {
                let img = tessera::image::open(&dir().join(name)).unwrap();
                let key = format!("photo/{name}/{cname}/{backend}/uint8");
                let (eq, n, worst) = check_u8(&want, &key, &img, &p);
                total = (total.0 + eq, total.1 + n, total.2.max(worst));
            }
        }
        println!(
            "{backend}: {}/{} equal, max diff {}",
            total.0, total.1, total.2
        );
        assert_eq!(total.0, total.1, "{backend}: max level diff {}", total.2);
    }
}

#[test]
fn rescale_and_normalize_arithmetic_is_bit_exact() {
    let want = load(&dir().join("expected.safetensors"));
    let small = fixture("processor");
    for name in meta_list("arith_images") {
        let img = tessera::image::open(&small.join(&name)).unwrap();
        for cname in meta_list("arith_configs") {
            for backend in Backend::ALL {
                let p = config(&cname, backend);
                let (x, h, w) = p.preprocess(&img).unwrap();
                let key = format!("arith/{name}/{cname}/{backend}/pixel_values");
                let exp = &want[&key];
                assert_eq!(exp.dims(), &[3, h as usize, w as usize], "{key}");
                let exp = exp.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let bad = x
                    .iter()
                    .zip(&exp)
                    .filter(|(a, b)| a.to_bits() != b.to_bits())
                    .count();
                let worst = x
                    .iter()
                    .zip(&exp)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                println!("{key:60} {bad} of {} differ (max {worst:e})", x.len());
                assert_eq!(bad, 0, "{key}: max diff {worst:e}");
            }
        }
    }
}

#[test]
fn the_two_backends_really_differ_and_the_override_wins() {
    // The fixtures would not test the dispatch if both backends gave the same pixels.
    let img = tessera::image::open(&fixture("processor").join("coffee_exif6.jpg")).unwrap();
    let tv = config("vit", Backend::Torchvision);
    let pil = config("vit", Backend::Pil);
    let (a, _, _) = tv.pixels_u8(&img).unwrap();
    let (b, _, _) = pil.pixels_u8(&img).unwrap();
    assert_ne!(a, b);
    let (c, _, _) = pil
        .clone()
        .with_backend(Backend::Torchvision)
        .pixels_u8(&img)
        .unwrap();
    assert_eq!(a, c);
    let mut d = tv.clone();
    d.set_backend(Some(Backend::Pil));
    assert_eq!(d.pixels_u8(&img).unwrap().0, b);
    d.set_backend(None);
    assert_eq!(d.backend(), Backend::Torchvision);
}

fn parse(json: &str) -> ProcessorConfig {
    serde_json::from_str(json).unwrap()
}

#[test]
fn backend_selection_follows_transformers_with_explicit_names() {
    // transformers 5.24: AutoImageProcessor gives torchvision for all of these (the default).
    for t in [
        r#"{}"#,
        r#"{"image_processor_type": "ViTImageProcessor"}"#,
        r#"{"image_processor_type": "CLIPImageProcessorFast"}"#,
        r#"{"feature_extractor_type": "CLIPFeatureExtractor"}"#,
        // a use_fast key in the file is ignored by transformers too
        r#"{"image_processor_type": "CLIPImageProcessor", "use_fast": false}"#,
    ] {
        assert_eq!(parse(t).backend(), Backend::Torchvision, "{t}");
    }
    // Explicit in the file: the Pil class name, or a backend key.
    assert_eq!(
        parse(r#"{"image_processor_type": "CLIPImageProcessorPil"}"#).backend(),
        Backend::Pil
    );
    assert_eq!(parse(r#"{"backend": "pil"}"#).backend(), Backend::Pil);
    assert_eq!(
        parse(r#"{"image_processor_type": "ViTImageProcessorPil", "backend": "torchvision"}"#)
            .backend(),
        Backend::Torchvision
    );
    // The caller's override beats the file.
    let p = parse(r#"{"image_processor_type": "ViTImageProcessorPil"}"#);
    assert_eq!(
        p.clone().with_backend(Backend::Torchvision).backend(),
        Backend::Torchvision
    );
    // ... and is not written back (transformers refuses a backend key).
    let s = serde_json::to_string(&p.with_backend(Backend::Torchvision)).unwrap();
    assert!(!s.contains("backend"), "{s}");
    // Constructors are transformers' defaults.
    assert_eq!(ProcessorConfig::vit(224).backend(), Backend::Torchvision);
    assert_eq!(ProcessorConfig::clip(224).backend(), Backend::Torchvision);
    // A bad backend key is a config error naming it.
    let bad = parse(r#"{"backend": "opencv"}"#);
    let e = bad.validate().unwrap_err().to_string();
    assert!(
        e.contains("opencv") && e.contains("torchvision or pil"),
        "{e}"
    );
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("preprocessor_config.json");
    std::fs::write(&f, r#"{"backend": 3}"#).unwrap();
    let e = ProcessorConfig::load(&f).unwrap_err().to_string();
    assert!(
        e.contains("preprocessor_config.json") && e.contains("backend"),
        "{e}"
    );
    // The CLI flag's parser.
    assert_eq!(
        "torchvision".parse::<Backend>().unwrap(),
        Backend::Torchvision
    );
    assert_eq!("pil".parse::<Backend>().unwrap(), Backend::Pil);
    assert!("PIL-SIMD".parse::<Backend>().is_err());
}

#[test]
fn filters_the_torchvision_backend_does_not_reproduce_are_config_errors() {
    let img = tessera::image::open(&fixture("processor").join("chelsea.png")).unwrap();
    for (r, what) in [(0, "NEAREST"), (1, "LANCZOS"), (4, "BOX"), (5, "HAMMING")] {
        let mut p = ProcessorConfig::vit(32);
        p.resample = r;
        let e = p.pixels_u8(&img).unwrap_err();
        assert!(matches!(e, tessera::Error::Config(_)), "{e}");
        let e = e.to_string();
        assert!(e.contains("resample") && e.contains(what), "{e}");
        // The Pil backend has every PIL filter.
        assert!(p.with_backend(Backend::Pil).pixels_u8(&img).is_ok());
    }
}

#[test]
fn openai_clip_config_with_int_sizes_keeps_the_aspect_ratio() {
    // openai/clip-vit-base-patch32's preprocessor_config.json (no image_processor_type, int
    // sizes): transformers reads "size": 224 as the shortest edge, not a 224x224 square.
    let p = parse(
        r#"{"crop_size": 224, "do_center_crop": true, "do_normalize": true, "do_resize": true,
            "feature_extractor_type": "CLIPFeatureExtractor",
            "image_mean": [0.48145466, 0.4578275, 0.40821073],
            "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "size": 224}"#,
    );
    assert_eq!(p.resized_dims(300, 451), (224, 336));
    let clip = config("clip", Backend::Torchvision);
    let img = tessera::image::open(Path::new(&fixture("processor").join("chelsea.png"))).unwrap();
    // Same pipeline as the explicit {shortest_edge} form at this size.
    let mut q = clip.clone();
    q.size = tessera::image::Size::Square(40);
    assert_eq!(q.pixels_u8(&img).unwrap(), clip.pixels_u8(&img).unwrap());
}
