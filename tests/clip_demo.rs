//! The compositional CLIP demo's claim, end to end: a tiny CLIP trained without any red circle
//! names red circles (and the other held-out colour–shape pairs) zero-shot, far above what
//! reading colour alone allows, without a bias toward never-trained prompts; and the checkpoint
//! it writes loads back.
//!
//! The full recipe takes ~6 min on 2 cores (13 min on a busy CI machine), so it is ignored by
//! default: `cargo test --release --test clip_demo -- --ignored`. The default suite runs a short
//! budget that checks the mechanics and what that budget already learns.
use std::path::PathBuf;
use tessera::models::clip::{Clip, ClipTokenizer};
use tessera::models::{LoadOptions, Pretrained};
use tessera::progress::Silent;
use tessera::train::shapes_demo::{run, DemoConfig};

fn tokenizer() -> ClipTokenizer {
    let bpe = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/bpe_simple_vocab_16e6.txt.gz");
    assert!(bpe.exists(), "run tools/fetch_clip_bpe.sh");
    ClipTokenizer::from_bpe_gz(&bpe).unwrap()
}

/// Two short epochs (4,000 scenes each; measured: colour 1.000 on both sets, seen joint 0.16):
/// colour is read on held-out pairs (the first thing CLIP learns here), seen pairs are named
/// well above the 48-way chance, every epoch is logged, the checkpoint loads.
#[test]
fn a_short_demo_learns_colour_and_writes_a_loadable_clip() {
    let tok = tokenizer();
    let out = tempfile::tempdir().unwrap();
    let dev = candle_core::Device::Cpu;
    let cfg = DemoConfig {
        epochs: 2,
        train_size: 4_000,
        test_size: 200,
        ..DemoConfig::default()
    };
    let r = run(&cfg, &tok, out.path(), &dev, &Silent).unwrap();
    eprintln!("{:?} {:?}", r.seen, r.held_out);
    assert!(r.held_out.color >= 0.9, "{:?}", r.held_out);
    assert!(r.seen.color >= 0.9, "{:?}", r.seen);
    // 4× the 48-way chance; shapes come later (joint 0.56 after 6 full epochs, 0.99 after 20).
    assert!(r.seen.joint >= 0.08, "{:?}", r.seen);
    assert!(r.seen.joint.is_finite() && r.held_out.joint.is_finite());
    assert_eq!(r.epochs.len(), 2);
    let metrics = std::fs::read_to_string(out.path().join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 2);
    let last: serde_json::Value = serde_json::from_str(metrics.lines().last().unwrap()).unwrap();
    assert_eq!(last["held_out"]["joint"].as_f64(), Some(r.held_out.joint));
    assert!(Clip::load(out.path(), &LoadOptions::default().device(&dev)).is_ok());
}

/// The default recipe (20 epochs × 12,000 scenes).
#[test]
#[ignore = "the full recipe, ~6 min: cargo test --release --test clip_demo -- --ignored"]
fn tiny_clip_composes_held_out_colour_shape_pairs() {
    let tok = tokenizer();
    let out = tempfile::tempdir().unwrap();
    let dev = candle_core::Device::Cpu;
    let r = run(&DemoConfig::default(), &tok, out.path(), &dev, &Silent).unwrap();
    eprintln!("{}", serde_json::to_string(&r.held_out).unwrap());
    // Held-out (joint, shape) measured: seed 0 (this test, any thread count) 0.805, 0.655;
    // seeds 1, 2: 0.748, 0.583 and 0.550, 0.430; without unnamed colours 0.388, 0.268. The bars
    // sit between the worst seed and that ablation, far above colour alone (1/6).
    assert!(r.seen.joint >= 0.9, "seen {:?}", r.seen);
    assert!(r.held_out.color >= 0.95, "{:?}", r.held_out);
    // Colour read right, shape guessed: 1/6. Shape alone is the vision tower's own test.
    assert!(r.held_out.shape >= 0.35, "{:?}", r.held_out);
    assert!(r.held_out.joint >= 0.5, "{:?}", r.held_out);
    // Held-out accuracy does not come from naming everything a held-out pair.
    assert!(r.seen.called_held_out <= 0.05, "{:?}", r.seen);
    assert_eq!(r.epochs.len(), DemoConfig::default().epochs);
    let metrics = std::fs::read_to_string(out.path().join("metrics.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(metrics.lines().last().unwrap()).unwrap();
    assert_eq!(last["held_out"]["joint"].as_f64(), Some(r.held_out.joint));
    assert!(Clip::load(out.path(), &LoadOptions::default().device(&dev)).is_ok());
}

#[test]
fn bad_demo_settings_are_errors_before_training() {
    let tok = tokenizer();
    let out = tempfile::tempdir().unwrap();
    let dev = candle_core::Device::Cpu;
    for cfg in [
        DemoConfig {
            epochs: 0,
            ..DemoConfig::default()
        },
        DemoConfig {
            held_out: vec![(8, 0)],
            ..DemoConfig::default()
        },
        DemoConfig {
            patch: 3,
            ..DemoConfig::default()
        },
    ] {
        let e = run(&cfg, &tok, out.path(), &dev, &Silent).unwrap_err();
        assert!(matches!(e, tessera::Error::Config(_)), "{e}");
    }
    // Nothing was trained or written.
    assert!(!out.path().join("model.safetensors").exists());
}
