//! HF image processors (Pillow backend) against transformers, on crops of the scikit-image and
//! scikit-learn photos in every mode HF meets (fixtures from tools/gen_processor_fixtures.py).
mod common;
use common::{fixture, load};
use tessera::image::ProcessorConfig;

#[test]
fn vit_and_clip_processors_match_transformers() {
    let dir = fixture("processor");
    let want = load(&dir.join("expected.safetensors"));
    let procs = [
        (
            "vit",
            ProcessorConfig::load(&dir.join("vit_preprocessor_config.json")).unwrap(),
        ),
        (
            "clip",
            ProcessorConfig::load(&dir.join("clip_preprocessor_config.json")).unwrap(),
        ),
    ];
    let (mut total, mut equal, mut worst_level, mut worst_norm) = (0usize, 0usize, 0i32, 0f32);
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.ends_with(".png") || n.ends_with(".jpg"))
        .collect();
    names.sort();
    assert_eq!(names.len(), 7);
    for name in &names {
        let img = tessera::image::open(&dir.join(name)).unwrap();
        for (pname, proc) in &procs {
            let (px, h, w) = proc.pixels_u8(&img).unwrap();
            let exp = &want[&format!("{name}/{pname}/uint8")];
            assert_eq!(exp.dims(), &[3, h as usize, w as usize], "{name} {pname}");
            let exp = exp.flatten_all().unwrap().to_vec1::<u8>().unwrap();
            let n = (h * w) as usize;
            let (mut eq, mut lvl) = (0, 0);
            for i in 0..n {
                for c in 0..3 {
                    let d = (px[i * 3 + c] as i32 - exp[c * n + i] as i32).abs();
                    lvl = lvl.max(d);
                    eq += (d == 0) as usize;
                }
            }
            // Normalised values: same float32 arithmetic as HF where the pixels agree.
            let (x, _, _) = proc.preprocess(&img).unwrap();
            let pv = want[&format!("{name}/{pname}/pixel_values")]
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let mut norm = 0f32;
            for i in 0..3 * n {
                let (c, j) = (i / n, i % n);
                if px[j * 3 + c] == exp[i] {
                    norm = norm.max((x[i] - pv[i]).abs());
                }
            }
            println!("{name:18} {pname:4}: {eq}/{} equal, max level diff {lvl}, max normalised diff {norm:e}", 3 * n);
            // Every input, PNG and JPEG (decoded with libjpeg-turbo's code, as Pillow), must
            // come out bit-identical to transformers.
            assert_eq!(eq, 3 * n, "{name} {pname}: max level diff {lvl}");
            total += 3 * n;
            equal += eq;
            worst_level = worst_level.max(lvl);
            worst_norm = worst_norm.max(norm);
        }
    }
    let frac = equal as f64 / total as f64;
    println!("all: {equal}/{total} = {:.5} exactly equal; max level diff {worst_level}; normalised {worst_norm:e}", frac);
    assert!(worst_norm <= 1e-6);
    assert_eq!(frac, 1.0, "fraction {frac}, worst {worst_level}");
}

#[test]
fn shortest_edge_truncates_the_long_side() {
    let p = ProcessorConfig::clip(224);
    // 500x375 (w x h): long side int(224 * 500 / 375) = int(298.67) = 298, not 299.
    assert_eq!(p.resized_dims(375, 500), (224, 298));
    assert_eq!(p.resized_dims(500, 375), (298, 224));
    assert_eq!(p.output_dims(375, 500), (224, 224));
}

#[test]
fn truncated_and_corrupt_images_are_errors_naming_the_file() {
    let dir = fixture("processor");
    for name in ["rocket.jpg", "chelsea.png"] {
        let bytes = std::fs::read(dir.join(name)).unwrap();
        let cut = &bytes[..bytes.len() * 2 / 3];
        let err = tessera::image::decode(cut, std::path::Path::new(name))
            .unwrap_err()
            .to_string();
        assert!(err.contains(name), "{err}");
    }
    let err = tessera::image::decode(b"\xff\xd8\xff\xe0garbage", std::path::Path::new("x.jpg"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("x.jpg"), "{err}");
    let err = tessera::image::decode(b"not an image at all", std::path::Path::new("y.bin"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("y.bin"), "{err}");
}
