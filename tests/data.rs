//! Datasets: the embedded digits, Fashion-MNIST IDX files, ImageFolder; errors name the path.
use std::io::Write;
use std::path::Path;
use tessera::data::{self, Dataset};

#[test]
fn embedded_digits_and_stratified_split() {
    let all = data::digits().unwrap();
    assert_eq!(all.len(), 1797);
    assert_eq!(all.dims(), (1, 8, 8));
    assert!(all.pixels.iter().all(|v| (0.0..=1.0).contains(v)));
    let (tr, te) = data::stratified_split(&all.labels, 0.2, 0);
    assert_eq!(tr.len() + te.len(), 1797);
    assert!((355..=365).contains(&te.len()), "{}", te.len());
    // Each class keeps its proportion (within one item of rounding).
    for c in 0..10u32 {
        let n = all.labels.iter().filter(|&&l| l == c).count() as f64;
        let t = te.iter().filter(|&&i| all.labels[i] == c).count() as f64;
        assert!((t - 0.2 * n).abs() <= 1.0, "class {c}: {t} of {n}");
    }
    // Fixed: the same split every time.
    assert_eq!(data::stratified_split(&all.labels, 0.2, 0), (tr, te));
}

fn write_gz(path: &Path, bytes: &[u8]) {
    let f = std::fs::File::create(path).unwrap();
    let mut e = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap();
}

fn idx_images(n: u32, r: u32, c: u32, pixels: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 8, 3];
    for v in [n, r, c] {
        b.extend(v.to_be_bytes());
    }
    b.extend_from_slice(pixels);
    b
}

#[test]
fn idx_files_parse_and_bad_files_name_the_path() {
    let d = tempfile::tempdir().unwrap();
    let px: Vec<u8> = (0..2 * 28 * 28).map(|i| (i % 256) as u8).collect();
    write_gz(
        &d.path().join("train-images-idx3-ubyte.gz"),
        &idx_images(2, 28, 28, &px),
    );
    write_gz(
        &d.path().join("train-labels-idx1-ubyte.gz"),
        &[0, 0, 8, 1, 0, 0, 0, 2, 3, 9],
    );
    write_gz(
        &d.path().join("t10k-images-idx3-ubyte.gz"),
        &idx_images(2, 28, 28, &px),
    );
    // Truncated test labels: the header says 2, the file has 1.
    write_gz(
        &d.path().join("t10k-labels-idx1-ubyte.gz"),
        &[0, 0, 8, 1, 0, 0, 0, 2, 3],
    );
    let err = data::fashion_mnist(d.path()).unwrap_err().to_string();
    assert!(
        err.contains("t10k-labels-idx1-ubyte.gz") && err.contains("truncated"),
        "{err}"
    );
    write_gz(
        &d.path().join("t10k-labels-idx1-ubyte.gz"),
        &[0, 0, 8, 1, 0, 0, 0, 2, 3, 4],
    );
    let (tr, te) = data::fashion_mnist(d.path()).unwrap();
    assert_eq!((tr.len(), te.len()), (2, 2));
    assert_eq!(tr.labels, vec![3, 9]);
    assert_eq!(tr.classes[9], "Ankle boot");
    assert!((tr.pixels[255] - 1.0).abs() < 1e-6);
    // Not gzip at all.
    std::fs::write(d.path().join("train-images-idx3-ubyte.gz"), b"garbage").unwrap();
    let err = data::fashion_mnist(d.path()).unwrap_err().to_string();
    assert!(err.contains("train-images-idx3-ubyte.gz"), "{err}");
    // Missing directory: says how to install it.
    let err = data::fashion_mnist(&d.path().join("nope"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("apt-get install dataset-fashion-mnist"),
        "{err}"
    );
}

/// The real Fashion-MNIST from the Debian package (.ci/run installs it).
#[test]
fn real_fashion_mnist_from_debian_package() {
    let dir = Path::new(data::FASHION_MNIST_DIR);
    if !dir.exists() && std::env::var("CI").is_err() {
        eprintln!(
            "skipping: {} not installed (apt-get install dataset-fashion-mnist)",
            dir.display()
        );
        return;
    }
    let (tr, te) = data::fashion_mnist(dir).unwrap();
    assert_eq!((tr.len(), te.len()), (60000, 10000));
    assert_eq!(tr.dims(), (1, 28, 28));
    for c in 0..10u32 {
        assert_eq!(te.labels.iter().filter(|&&l| l == c).count(), 1000);
    }
}

#[test]
fn image_folder_reads_classes_and_rejects_corrupt_images() {
    let d = tempfile::tempdir().unwrap();
    for (ci, class) in ["cat", "dog"].iter().enumerate() {
        std::fs::create_dir_all(d.path().join(class)).unwrap();
        for k in 0..3u8 {
            let img = image::RgbImage::from_pixel(20, 10, image::Rgb([100 * ci as u8, 50 * k, 7]));
            img.save(d.path().join(class).join(format!("{k}.png")))
                .unwrap();
        }
    }
    std::fs::write(d.path().join("cat").join("notes.txt"), "ignored").unwrap();
    let ds = data::image_folder(d.path(), 3, 16).unwrap();
    assert_eq!(ds.classes, vec!["cat", "dog"]);
    assert_eq!(ds.len(), 6);
    assert_eq!(ds.dims(), (3, 16, 16));
    assert_eq!(ds.labels, vec![0, 0, 0, 1, 1, 1]);
    // A grey conversion works too.
    assert_eq!(
        data::image_folder(d.path(), 1, 8).unwrap().dims(),
        (1, 8, 8)
    );
    // A truncated PNG is an error naming the file.
    let good = std::fs::read(d.path().join("dog").join("0.png")).unwrap();
    std::fs::write(
        d.path().join("dog").join("bad.png"),
        &good[..good.len() / 2],
    )
    .unwrap();
    let err = data::image_folder(d.path(), 3, 16).unwrap_err().to_string();
    assert!(err.contains("bad.png"), "{err}");
    // No class folders.
    let empty = tempfile::tempdir().unwrap();
    assert!(data::image_folder(empty.path(), 3, 16)
        .unwrap_err()
        .to_string()
        .contains("no class sub-folders"));
}

#[test]
fn loader_shuffles_by_seed_and_augments_deterministically() {
    let all = data::digits().unwrap();
    let norm = data::Normalize {
        mean: vec![0.5],
        std: vec![0.5],
    };
    let aug = data::Augment {
        max_shift: 1,
        hflip: true,
    };
    let l = data::Loader {
        dataset: &all,
        batch_size: 16,
        normalize: norm,
        augment: aug,
        seed: 3,
    };
    assert_ne!(l.order(0, true), l.order(1, true));
    assert_eq!(l.order(2, true), l.order(2, true));
    let mut sorted = l.order(0, true);
    sorted.sort();
    assert_eq!(sorted, (0..1797).collect::<Vec<_>>());
    let dev = candle_core::Device::Cpu;
    let a = l
        .batch(&[0, 1, 2], true, 4, &dev)
        .unwrap()
        .images
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let b = l
        .batch(&[0, 1, 2], true, 4, &dev)
        .unwrap()
        .images
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let plain = l
        .batch(&[0, 1, 2], false, 4, &dev)
        .unwrap()
        .images
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert_eq!(a, b);
    assert_ne!(a, plain);
    // Item 2's pixels do not depend on which batch (or thread's shard) it is in.
    let alone = l
        .batch(&[2], true, 4, &dev)
        .unwrap()
        .images
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert_eq!(&a[128..], &alone[..]);
    // Normalised with mean/std 0.5: values in [-1, 1].
    assert!(plain.iter().all(|v| (-1.0..=1.0).contains(v)));
}

#[test]
fn bilinear_resize_matches_torch_align_corners_false() {
    // torch.nn.functional.interpolate(torch.arange(4.).view(1,1,2,2), size=(4,4), mode="bilinear")
    let out = tessera::nn::interpolate::bilinear(&[0.0, 1.0, 2.0, 3.0], 2, 2, 4, 4);
    let want = [
        0.0, 0.25, 0.75, 1.0, 0.5, 0.75, 1.25, 1.5, 1.5, 1.75, 2.25, 2.5, 2.0, 2.25, 2.75, 3.0,
    ];
    for (o, w) in out.iter().zip(want) {
        assert!((o - w).abs() < 1e-6, "{out:?}");
    }
}
