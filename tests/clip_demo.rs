//! The compositional CLIP demo's claim, end to end (the default recipe, ~6 min on 2 cores): a
//! tiny CLIP trained without any red circle names red circles (and the other held-out
//! colour–shape pairs) zero-shot, far above what reading colour alone allows, without a bias
//! toward never-trained prompts; and the checkpoint it writes loads back.
use std::path::PathBuf;
use tessera::models::clip::{Clip, ClipTokenizer};
use tessera::models::{LoadOptions, Pretrained};
use tessera::progress::Silent;
use tessera::train::shapes_demo::{run, DemoConfig};

#[test]
fn tiny_clip_composes_held_out_colour_shape_pairs() {
    let bpe = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/bpe_simple_vocab_16e6.txt.gz");
    assert!(bpe.exists(), "run tools/fetch_clip_bpe.sh");
    let tok = ClipTokenizer::from_bpe_gz(&bpe).unwrap();
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
    let bpe = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/bpe_simple_vocab_16e6.txt.gz");
    let tok = ClipTokenizer::from_bpe_gz(&bpe).unwrap();
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
