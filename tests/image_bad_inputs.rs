//! Bad images and bad processor configs: each is an `Err` with a short message naming the
//! problem (and the file), never a panic, an abort or silently wrong pixels. Every input is
//! built here; nothing is a committed blob.
mod common;
use common::images::{exif_app1, jpeg, png, png_declaring, segment, sof};
use std::path::Path;
use tessera::image::{decode_with_limit, Backend, ProcessorConfig, Size};
use tessera::Error;

const LIMIT: Option<u64> = Some(tessera::image::DEFAULT_MAX_IMAGE_PIXELS);

/// `decode` under Pillow's default limit (independent of the process-wide setting, which one
/// test below changes), as an error message.
fn decode_err(bytes: &[u8], name: &str) -> String {
    let e = decode_with_limit(bytes, Path::new(name), LIMIT)
        .err()
        .unwrap_or_else(|| panic!("{name}: decoded"));
    assert!(matches!(e, Error::Image { .. }), "{name}: {e:?}");
    let msg = e.to_string();
    assert!(msg.contains(name), "{msg}");
    assert!(msg.len() < 300, "{name}: message too long: {msg}");
    msg
}

#[test]
fn images_declaring_enormous_sizes_are_refused_before_allocating() {
    let bomb = png_declaring(65500, 65500);
    assert!(bomb.len() < 4096, "{} bytes", bomb.len());
    let e = decode_err(&bomb, "bomb.png");
    assert!(
        e.contains("65500x65500") && e.contains("decompression-bomb"),
        "{e}"
    );

    // A JPEG whose SOF says 65500x65500 (the rest is an 8x8 image).
    let mut j = jpeg(8, 8, mozjpeg::ColorSpace::JCS_RGB, 1);
    let sof = sof(&j);
    j[sof + 5..sof + 9].copy_from_slice(&[0xFF, 0xDC, 0xFF, 0xDC]);
    let e = decode_err(&j, "bomb.jpg");
    assert!(
        e.contains("65500x65500") && e.contains("decompression-bomb"),
        "{e}"
    );

    // Pillow's rule: above the limit but not twice it decodes (Pillow only warns) ...
    let ok = png(20, 10);
    let img = decode_with_limit(&ok, Path::new("x.png"), Some(150)).unwrap();
    assert_eq!((img.width(), img.height()), (20, 10));
    // ... above twice it is refused; no limit decodes anything.
    let e = decode_with_limit(&ok, Path::new("x.png"), Some(99)).unwrap_err();
    assert!(e.to_string().contains("decompression-bomb"), "{e}");
    assert!(decode_with_limit(&ok, Path::new("x.png"), None).is_ok());
}

#[test]
fn the_process_wide_limit_and_the_warning_threshold() {
    // Only this test changes the process-wide limit, to values that change no other test's
    // outcome (their images are small, their bad sizes far larger).
    use tessera::image::{exceeds_max_image_pixels, max_image_pixels, set_max_image_pixels};
    set_max_image_pixels(Some(1_000_000));
    assert_eq!(max_image_pixels().unwrap(), Some(1_000_000));
    assert!(exceeds_max_image_pixels(1001, 1000));
    assert!(!exceeds_max_image_pixels(1000, 1000));
    // decode() follows it: 2000x1001 declared > 2e6.
    let e = tessera::image::decode(&png_declaring(2000, 1001), Path::new("big.png")).unwrap_err();
    assert!(e.to_string().contains("decompression-bomb"), "{e}");
    // (No `set_max_image_pixels(None)` here: tests run in parallel, and without a limit the
    // other tests' absurd config sizes would be allowed through to the allocator.)
    set_max_image_pixels(Some(tessera::image::DEFAULT_MAX_IMAGE_PIXELS));
    assert!(exceeds_max_image_pixels(9460, 9460)); // 89.49M > 89,478,485
    assert!(!exceeds_max_image_pixels(9459, 9459));
}

#[test]
fn a_truncated_phone_jpeg_with_an_exif_thumbnail_is_refused() {
    let main = jpeg(96, 64, mozjpeg::ColorSpace::JCS_RGB, 7);
    let thumb = jpeg(16, 12, mozjpeg::ColorSpace::JCS_RGB, 9);
    assert_eq!(&thumb[thumb.len() - 2..], &[0xFF, 0xD9]);
    let app1 = exif_app1(&thumb);
    let mut phone = main[..2].to_vec();
    phone.extend(&app1);
    phone.extend(&main[2..]);
    // The whole file decodes, as the main image.
    let img = decode_with_limit(&phone, Path::new("phone.jpg"), LIMIT).unwrap();
    assert_eq!((img.width(), img.height()), (96, 64));
    // Cut in the middle of the main scan: the thumbnail's FF D9 is still in the file (what
    // the old check looked for), but the main image has no end.
    let scan = segment(&phone, &[0xDA]);
    let cut = &phone[..(scan + phone.len()) / 2];
    assert!(cut.windows(2).any(|w| w == [0xFF, 0xD9]));
    let e = decode_err(cut, "phone.jpg");
    assert!(e.contains("truncated"), "{e}");
    // Only the final EOI missing: Pillow refuses that too.
    let e = decode_err(&phone[..phone.len() - 2], "phone.jpg");
    assert!(e.contains("truncated"), "{e}");
    // Junk after the EOI is fine (libjpeg and Pillow ignore it).
    let mut junk = phone.clone();
    junk.extend(b"\x00\x00junk\xff\xd9");
    assert!(decode_with_limit(&junk, Path::new("junk.jpg"), LIMIT).is_ok());
}

#[test]
fn corrupt_images_of_every_kind_are_errors_naming_the_file() {
    let mut rng = 12345u32;
    let mut noise = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                rng = rng.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (rng >> 16) as u8
            })
            .collect()
    };
    let good_png = png(40, 30);
    let good_jpg = jpeg(40, 30, mozjpeg::ColorSpace::JCS_RGB, 3);
    assert!(decode_with_limit(&good_png, Path::new("a.png"), LIMIT).is_ok());
    assert!(decode_with_limit(&good_jpg, Path::new("a.jpg"), LIMIT).is_ok());

    let mut cases: Vec<(String, Vec<u8>, &str)> = vec![];
    for k in 0..8 {
        let mut p = b"\x89PNG\r\n\x1a\n".to_vec();
        p.extend(noise(64 << k));
        cases.push((format!("noise{k}.png"), p, ""));
        let mut j = vec![0xFF, 0xD8, 0xFF];
        j.extend(noise(64 << k));
        cases.push((format!("noise{k}.jpg"), j, ""));
    }
    // Valid headers, garbage bodies.
    let mut p = good_png.clone();
    let idat = p.windows(4).position(|w| w == b"IDAT").unwrap();
    p[idat + 8..idat + 40].copy_from_slice(&noise(32));
    cases.push(("garbled.png".into(), p, ""));
    // Cut inside the image data (Pillow: "image file is truncated"). A PNG cut after its
    // complete zlib stream (only IEND or the last CRC missing) Pillow still decodes: see below.
    for cut in [8, 20, 33, good_png.len() / 2, good_png.len() - 30] {
        cases.push((format!("cut{cut}.png"), good_png[..cut].to_vec(), ""));
    }
    for cut in [3, 20, good_jpg.len() / 2, good_jpg.len() - 1] {
        cases.push((format!("cut{cut}.jpg"), good_jpg[..cut].to_vec(), ""));
    }
    cases.push((
        "cmyk.jpg".into(),
        jpeg(16, 16, mozjpeg::ColorSpace::JCS_CMYK, 5),
        "CMYK",
    ));
    // Zero sizes declared in the headers, an empty file, not an image.
    cases.push(("zero.png".into(), png_declaring(0, 10), ""));
    cases.push(("zero_h.png".into(), png_declaring(10, 0), ""));
    let mut j = good_jpg.clone();
    let sof = sof(&j);
    j[sof + 5..sof + 7].copy_from_slice(&[0, 0]);
    cases.push(("zero_h.jpg".into(), j, ""));
    let mut j = good_jpg.clone();
    j[sof + 7..sof + 9].copy_from_slice(&[0, 0]);
    cases.push(("zero_w.jpg".into(), j, ""));
    cases.push(("empty.png".into(), vec![], "empty file"));
    cases.push(("text.jpg".into(), b"hello, not an image".to_vec(), ""));
    cases.push((
        "gif.gif".into(),
        b"GIF89a\x01\x00\x01\x00\x00\x00\x00;".to_vec(),
        "",
    ));
    for (name, bytes, want) in &cases {
        let e = decode_err(bytes, name);
        assert!(e.contains(want), "{name}: {e}");
        println!("{name:14} {e}");
    }
    // As Pillow: the pixels are all there, the missing IEND does not matter.
    for cut in [1, 12] {
        let r = decode_with_limit(&good_png[..good_png.len() - cut], Path::new("t.png"), LIMIT);
        println!(
            "PNG without its last {cut} bytes: {:?}",
            r.as_ref().map(|i| i.width())
        );
    }
}

fn chelsea() -> image::DynamicImage {
    let bytes = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/processor/chelsea.png"),
    )
    .unwrap();
    decode_with_limit(&bytes, Path::new("chelsea.png"), LIMIT).unwrap()
}

/// The config error of `p` (both through `validate` and a processing call), which must
/// mention every word of `want`.
fn config_err(p: &ProcessorConfig, want: &[&str]) {
    for e in [
        p.validate().unwrap_err(),
        p.pixels_u8(&chelsea()).unwrap_err(),
        p.preprocess(&chelsea()).unwrap_err(),
    ] {
        assert!(matches!(e, Error::Config(_)), "{e:?}");
        let msg = e.to_string();
        for w in want {
            assert!(msg.contains(w), "{want:?}: {msg}");
        }
        assert!(msg.len() < 300, "{msg}");
    }
}

#[test]
fn degenerate_processor_configs_are_config_errors_naming_the_field() {
    for backend in Backend::ALL {
        let vit = ProcessorConfig::vit(32).with_backend(backend);
        let clip = ProcessorConfig::clip(32).with_backend(backend);
        for (h, w) in [
            (0, 32),
            (32, 0),
            (0, 0),
            (1_000_000_000, 32),
            (1_000_000_000, 1_000_000_000),
        ] {
            let mut p = vit.clone();
            p.size = Size::HeightWidth {
                height: h,
                width: w,
            };
            config_err(&p, &["size"]);
        }
        for s in [0, 1_000_000_000] {
            let mut p = vit.clone();
            p.size = Size::Square(s);
            config_err(&p, &["size"]);
            let mut p = clip.clone();
            p.size = Size::ShortestEdge { shortest_edge: s };
            config_err(&p, &["size.shortest_edge"]);
            let mut p = clip.clone();
            p.crop_size = Some(Size::HeightWidth {
                height: s,
                width: 32,
            });
            config_err(&p, &["crop_size"]);
            let mut p = clip.clone();
            p.crop_size = Some(Size::Square(s));
            config_err(&p, &["crop_size"]);
        }
        let mut p = clip.clone();
        p.crop_size = None;
        config_err(&p, &["crop_size"]);
        let mut p = clip.clone();
        p.crop_size = Some(Size::ShortestEdge { shortest_edge: 32 });
        config_err(&p, &["crop_size"]);
        for bad in [0.0, -0.0, f32::NAN, f32::INFINITY] {
            let mut p = vit.clone();
            p.image_std[1] = bad;
            config_err(&p, &["image_std"]);
        }
        for bad in [f32::NAN, f32::NEG_INFINITY] {
            let mut p = vit.clone();
            p.image_mean[2] = bad;
            config_err(&p, &["image_mean"]);
        }
        let mut p = vit.clone();
        p.image_mean.pop();
        config_err(&p, &["image_mean"]);
        for bad in [f64::NAN, f64::INFINITY] {
            let mut p = vit.clone();
            p.rescale_factor = bad;
            config_err(&p, &["rescale_factor"]);
        }
        for r in [6, 99, u32::MAX] {
            let mut p = vit.clone();
            p.resample = r;
            config_err(&p, &["resample", &r.to_string()]);
        }
        // Unused values are not checked (transformers does not look at them either).
        let mut p = vit.clone();
        p.do_rescale = false;
        p.rescale_factor = f64::NAN;
        assert!(p.pixels_u8(&chelsea()).is_ok());
    }
}

#[test]
fn a_thin_image_cannot_blow_up_the_shortest_edge_resize() {
    // 100000x1: shortest edge 224 asks for 224 x 22,400,000.
    let img = image::DynamicImage::ImageRgb8(image::RgbImage::new(100_000, 1));
    let e = ProcessorConfig::clip(224).pixels_u8(&img).unwrap_err();
    assert!(matches!(e, Error::Config(_)), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("size") && msg.contains("100000x1"), "{msg}");
    // A zero-sized image (possible through the API) is an error, not a panic.
    let empty = image::DynamicImage::ImageRgb8(image::RgbImage::new(0, 5));
    assert!(ProcessorConfig::vit(32).pixels_u8(&empty).is_err());
    assert!(tessera::image::to_chw(&empty, 32, 3).is_err());
}

#[test]
fn degenerate_configs_in_files_name_the_file_and_field() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("preprocessor_config.json");
    for (json, want) in [
        (r#"{"size": {"height": 0, "width": 224}}"#, "size"),
        (r#"{"size": {"height": 1000000000, "width": 224}}"#, "size"),
        (r#"{"size": 0}"#, "size"),
        (
            r#"{"image_processor_type": "CLIPImageProcessor", "size": {"shortest_edge": 0}}"#,
            "shortest_edge",
        ),
        (
            r#"{"image_processor_type": "CLIPImageProcessor", "crop_size": {"height": 224, "width": 0}}"#,
            "crop_size",
        ),
        (
            r#"{"size": {"max_height": 224, "max_width": 1333}}"#,
            "size",
        ),
        (r#"{"size": {"height": -3, "width": 224}}"#, "size.height"),
        (
            r#"{"size": {"height": 10000000000, "width": 224}}"#,
            "size.height",
        ),
        (r#"{"size": "big"}"#, "size"),
        (r#"{"image_std": [0.5, 0.0, 0.5]}"#, "image_std"),
        (r#"{"image_std": [0.5, -0.0, 0.5]}"#, "image_std"),
        (
            r#"{"image_std": [0.5, NaN, 0.5]}"#,
            "preprocessor_config.json",
        ),
        (r#"{"image_mean": [1e39, 0.5, 0.5]}"#, "image_mean"),
        (r#"{"image_mean": ["a", 0.5, 0.5]}"#, "image_mean"),
        (r#"{"image_mean": [0.5, 0.5]}"#, "image_mean"),
        (r#"{"resample": 7}"#, "resample"),
        (r#"{"resample": -1}"#, "preprocessor_config.json"),
        (r#"{"rescale_factor": 1e999}"#, "preprocessor_config.json"),
    ] {
        std::fs::write(&f, json).unwrap();
        let e = ProcessorConfig::load(&f).unwrap_err();
        assert!(
            matches!(e, Error::Config(_) | Error::Json { .. }),
            "{json}: {e:?}"
        );
        let msg = e.to_string();
        assert!(msg.contains("preprocessor_config.json"), "{json}: {msg}");
        assert!(msg.contains(want), "{json}: {msg}");
        assert!(msg.len() < 300, "{msg}");
    }
}
