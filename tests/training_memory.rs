//! What a training step holds after its backward: the gradients, not the forward's activations.
//! Alone in its test binary, because it reads the process-wide allocation counters.
use candle_core::Device;
use tessera::data::{Augment, InMemory, Loader, Normalize};
use tessera::models::vit::hf::{HfVit, HfVitConfig};
use tessera::models::{LoadOptions, Pretrained};
use tessera::train::grads_data_parallel;

#[test]
fn gradients_hold_no_activations() {
    // Tensors of 0.5–2 MB, well over the counted allocation size.
    let cfg = HfVitConfig {
        hidden_size: 256,
        num_hidden_layers: 4,
        num_attention_heads: 4,
        intermediate_size: 1024,
        image_size: 64,
        patch_size: 8,
        ..HfVitConfig::default()
    };
    let loaded =
        HfVit::from_config(&cfg, &LoadOptions::default().num_labels(10).trainable()).unwrap();
    let param_bytes: usize = loaded
        .store
        .vars()
        .iter()
        .map(|(_, v)| v.as_tensor().elem_count() * 4)
        .sum();
    let (n, side) = (16, 64);
    let ds = InMemory {
        name: "random".into(),
        pixels: (0..n * 3 * side * side)
            .map(|i| ((i * 2_654_435_761) % 1000) as f32 / 1000.0)
            .collect(),
        labels: (0..n as u32).map(|i| i % 10).collect(),
        dims: (3, side, side),
        classes: (0..10).map(|i| i.to_string()).collect(),
    };
    let loader = Loader {
        dataset: &ds,
        batch_size: n,
        normalize: Normalize {
            mean: vec![0.5; 3],
            std: vec![0.5; 3],
        },
        augment: Augment::default(),
        seed: 0,
    };
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
