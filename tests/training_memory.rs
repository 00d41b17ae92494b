//! What a training step holds after its backward: the gradients, not the forward's activations.
//! Alone in its test binary, because it reads the process-wide allocation counters (and its
//! tests take turns).
use candle_core::Device;
use rand::SeedableRng;
use std::sync::Mutex;
use tessera::data::{Augment, InMemory, Loader, Normalize};
use tessera::models::vit::hf::{HfVit, HfVitConfig};
use tessera::models::{ImageClassifier, LoadOptions, Loaded, Pretrained};
use tessera::nn::Ctx;
use tessera::train::{backward, cross_entropy, grads_data_parallel};

static COUNTERS: Mutex<()> = Mutex::new(());

/// A trainable random-init HF ViT for 10 classes: width, depth, MLP width, image and patch
/// sides (64-wide heads).
fn vit(width: usize, depth: usize, mlp: usize, image: usize, patch: usize) -> Loaded<HfVit> {
    let cfg = HfVitConfig {
        hidden_size: width,
        num_hidden_layers: depth,
        num_attention_heads: width / 64,
        intermediate_size: mlp,
        image_size: image,
        patch_size: patch,
        ..HfVitConfig::default()
    };
    HfVit::from_config(&cfg, &LoadOptions::default().num_labels(10).trainable()).unwrap()
}

/// `n` pseudo-random `side`-pixel images (values cycling with period `period`), 10 classes.
fn images(n: usize, side: usize, period: usize) -> InMemory {
    InMemory {
        name: "random".into(),
        pixels: (0..n * 3 * side * side)
            .map(|i| ((i * 2_654_435_761) % period) as f32 / period as f32)
            .collect(),
        labels: (0..n as u32).map(|i| (i * 7) % 10).collect(),
        dims: (3, side, side),
        classes: (0..10).map(|i| i.to_string()).collect(),
    }
}

/// The whole set as one batch, no augmentation.
fn loader(ds: &InMemory) -> Loader<'_> {
    Loader {
        dataset: ds,
        batch_size: ds.labels.len(),
        normalize: Normalize {
            mean: vec![0.5; 3],
            std: vec![0.5; 3],
        },
        augment: Augment::default(),
        seed: 0,
    }
}

#[test]
fn gradients_hold_no_activations() {
    let _turn = COUNTERS.lock().unwrap_or_else(|e| e.into_inner());
    // Tensors of 0.5–2 MB, well over the counted allocation size.
    let loaded = vit(256, 4, 1024, 64, 8);
    let param_bytes: usize = loaded
        .store
        .vars()
        .iter()
        .map(|(_, v)| v.as_tensor().elem_count() * 4)
        .sum();
    let (n, side) = (16, 64);
    let ds = images(n, side, 1000);
    let loader = loader(&ds);
    let idx: Vec<usize> = (0..n).collect();
    let dev = Device::Cpu;
    let before = tessera::alloc::live_bytes();
    tessera::alloc::reset_peak();
    let out = grads_data_parallel(&loaded.model, &loader, &idx, 0, 0, 0.0, 2, &dev).unwrap();
    let peak = tessera::alloc::peak_bytes() - before;
    let held = tessera::alloc::live_bytes().saturating_sub(before);
    for (name, v) in loaded.store.vars() {
        let g = out
            .grads
            .get(v.as_tensor())
            .expect("every parameter has a gradient");
        assert!(
            !g.track_op(),
            "{name}: the gradient still carries its graph"
        );
    }
    // The summed gradients (plus the input images' own gradient), not the activations: before
    // the gradients were detached this held ~8x the parameters (the forward and backward graphs).
    assert!(
        held < param_bytes * 3 / 2,
        "{held} bytes held after the step for {param_bytes} bytes of parameters (peak {peak})"
    );
    assert!(
        peak > 2 * param_bytes,
        "the activations were not counted: peak {peak}"
    );
}

/// The training step's backward runs block by block ([`tessera::nn::Segments`]): the same
/// gradients as one backward over the whole graph, bit for bit, at a lower peak.
#[test]
fn segmented_backward_matches_and_peaks_lower() {
    let _turn = COUNTERS.lock().unwrap_or_else(|e| e.into_inner());
    let loaded = vit(384, 6, 1536, 32, 4);
    let (n, side) = (8, 32);
    let ds = images(n, side, 997);
    let loader = loader(&ds);
    let idx: Vec<usize> = (0..n).collect();
    let dev = Device::Cpu;

    // One backward over the whole graph (one shard: seed 0, weight 1).
    let batch = loader.batch(&idx, true, 0, &dev).unwrap();
    let before = tessera::alloc::live_bytes();
    tessera::alloc::reset_peak();
    let plain = {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let logits = loaded
            .model
            .logits(&batch.images, &mut Ctx::train(&mut rng))
            .unwrap();
        let loss = cross_entropy(&logits, &batch.labels, 0.0).unwrap();
        backward(&(&loss * 1.0).unwrap()).unwrap()
    };
    let plain_peak = tessera::alloc::peak_bytes() - before;

    let before = tessera::alloc::live_bytes();
    tessera::alloc::reset_peak();
    let seg = grads_data_parallel(&loaded.model, &loader, &idx, 0, 0, 0.0, 1, &dev).unwrap();
    let seg_peak = tessera::alloc::peak_bytes() - before;

    for (name, v) in loaded.store.vars() {
        let (a, b) = (
            plain.get(v.as_tensor()).expect("plain gradient"),
            seg.grads.get(v.as_tensor()).expect("segmented gradient"),
        );
        let (a, b) = (
            a.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            b.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        );
        assert!(a.iter().any(|x| *x != 0.0), "{name}: a zero gradient");
        assert!(
            a.iter().zip(&b).all(|(x, y)| x == y),
            "{name}: the segmented backward's gradient differs"
        );
    }
    // Measured: 133.3 MB for one backward, 101.3 MB segmented (6 blocks of width 384, 1.8M
    // parameters each, on 8 images of 64 patches: a one-shot backward holds all activations
    // and all gradients together at its end).
    eprintln!("peak: one backward {plain_peak} bytes, segmented {seg_peak}");
    assert!(
        seg_peak * 10 < plain_peak * 9,
        "segmented backward peaked at {seg_peak} bytes, one backward at {plain_peak}"
    );
}
