//! The from-scratch captioner (`tessera train-captioner`): every parameter gets a gradient from
//! the language-modelling loss, the loss falls on a small set, and a run writes a checkpoint
//! that the captioning pipeline loads and whose `tokenizer.json` gives the trainer's ids.
use candle_core::Device;
use tessera::data::caption_scenes;
use tessera::data::shape_scenes::HELD_OUT;
use tessera::image::ProcessorConfig;
use tessera::models::blip::BlipCaptioner;
use tessera::models::{LoadOptions, Pretrained, TextTokenizer};
use tessera::nn::Ctx;
use tessera::train::captioner::{lm_loss, pixels, run, CaptionerConfig};
use tessera::train::{AdamW, AdamWConfig};

fn tiny() -> CaptionerConfig {
    CaptionerConfig {
        image_size: 32,
        patch_size: 8,
        hidden: 32,
        heads: 2,
        vision_layers: 1,
        text_layers: 1,
        train_scenes: 96,
        test_scenes: 12,
        epochs: 1,
        batch_size: 32,
        lr: 2e-3,
        seed: 3,
    }
}

#[test]
fn every_parameter_learns_and_the_loss_falls() {
    let cfg = tiny();
    let m = BlipCaptioner::from_config(&cfg.blip(), &LoadOptions::default().trainable()).unwrap();
    let scenes = caption_scenes::scenes(32, 32, &HELD_OUT, false, 1);
    let refs: Vec<_> = scenes.iter().collect();
    let px = pixels(&refs, &ProcessorConfig::blip(32), &Device::Cpu).unwrap();
    let caps: Vec<&str> = scenes.iter().map(|s| s.caption.as_str()).collect();
    let vars = m.store.vars();
    let mut opt = AdamW::new(
        vars.clone(),
        AdamWConfig {
            lr: 3e-3,
            ..AdamWConfig::default()
        },
    );
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
    let mut losses = vec![];
    for step in 0..25 {
        let loss = lm_loss(&m.model, &px, &caps, &mut Ctx::train(&mut rng)).unwrap();
        let grads = loss.backward().unwrap();
        if step == 0 {
            let missing: Vec<_> = vars
                .iter()
                .filter(|(_, v)| grads.get(v.as_tensor()).is_none())
                .map(|(n, _)| n.clone())
                .collect();
            assert!(missing.is_empty(), "no gradient for {missing:?}");
        }
        opt.step(&grads, 3e-3).unwrap();
        losses.push(loss.to_scalar::<f32>().unwrap());
    }
    let (first, last) = (losses[0], losses[losses.len() - 1]);
    assert!(last < 0.5 * first, "{losses:?}");
}

#[test]
fn a_run_writes_a_checkpoint_the_pipeline_captions_with() {
    let out = tempfile::tempdir().unwrap();
    let r = run(
        &tiny(),
        out.path(),
        &candle_core::Device::Cpu,
        &tessera::progress::Silent,
    )
    .unwrap();
    assert_eq!(r.epochs.len(), 1);
    assert_eq!(r.seen.scenes, 12);
    assert_eq!(r.unseen.scenes, 12);
    for s in [&r.seen, &r.unseen] {
        for v in [s.exact, s.count, s.color, s.shape, s.relation, s.pointing] {
            assert!((0.0..=1.0).contains(&v), "{s:?}");
        }
    }
    // The tokenizer.json written gives the ids the trainer used for every scene word.
    let tok = TextTokenizer::in_dir(out.path()).unwrap();
    let words = caption_scenes::words().join(" ");
    let ids = tok.encode(&words, false).unwrap();
    let want: Vec<u32> = (5..5 + caption_scenes::words().len() as u32).collect();
    assert_eq!(ids, want);
    assert_eq!(tok.decode(&[4, 5, 9, 3], true).unwrap(), "a red");
    let cap = tessera::pipelines::Captioning::from_pretrained(out.path(), &LoadOptions::default())
        .unwrap();
    let scene = &caption_scenes::scenes(1, 32, &HELD_OUT, false, 9)[0];
    let png = out.path().join("scene.png");
    image::RgbImage::from_raw(32, 32, scene.rgb.clone())
        .unwrap()
        .save(&png)
        .unwrap();
    let g = cap
        .caption(
            &[tessera::pipelines::ImageSource::parse(&png)],
            None,
            &cap.defaults(),
            true,
        )
        .unwrap();
    let words = &g[0][0].words;
    assert!(!words.is_empty());
    assert!(words
        .iter()
        .all(|w| w.attention.as_ref().is_some_and(|a| a.len() == 16)));
    // Settings no run can use are one-line errors.
    for bad in [
        CaptionerConfig {
            patch_size: 7,
            ..tiny()
        },
        CaptionerConfig { lr: 0.0, ..tiny() },
        CaptionerConfig {
            image_size: 16,
            patch_size: 8,
            ..tiny()
        },
    ] {
        assert!(run(
            &bad,
            out.path(),
            &candle_core::Device::Cpu,
            &tessera::progress::Silent
        )
        .is_err());
    }
}
