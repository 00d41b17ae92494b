//! The co-attention experiment's three fusions (`tessera::train::fusion_vqa`; the full run is
//! `cargo run --release --example fusion_vqa`): every parameter of each gets a gradient, their
//! sizes match within 12%, the maps are distributions over the patches, and a short run learns.
use candle_core::Device;
use tessera::data::shape_scenes::HELD_OUT;
use tessera::data::vqa_scenes;
use tessera::nn::{Ctx, ParamStore};
use tessera::progress::Silent;
use tessera::train::fusion_vqa::{batch, datasets, train, Fusion, FusionConfig, FusionVqa};
use tessera::train::{cross_entropy, AdamW, AdamWConfig};

fn small() -> FusionConfig {
    FusionConfig {
        hidden: 32,
        heads: 2,
        train_samples: 600,
        test_samples: 100,
        epochs: 3,
        batch_size: 32,
        lr: 2e-3,
        ..FusionConfig::default()
    }
}

#[test]
fn every_fusion_trains_every_parameter_at_a_matched_size() {
    let cfg = small();
    let dev = Device::Cpu;
    let samples = vqa_scenes::samples(8, cfg.image_size, &HELD_OUT, false, 1);
    let refs: Vec<_> = samples.iter().collect();
    let x = batch(&refs, &cfg, &dev).unwrap();
    let mut sizes = vec![];
    for fusion in Fusion::ALL {
        let store = ParamStore::fresh(0, true, &dev);
        let m = FusionVqa::new(store.var_builder(candle_core::DType::F32), fusion, &cfg).unwrap();
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
        let logits = m.forward(&x, &mut Ctx::train(&mut rng)).unwrap();
        assert_eq!(logits.dims(), [8, vqa_scenes::answers().len()]);
        let loss = cross_entropy(&logits, &x.answers, 0.0).unwrap();
        let opt = AdamW::new(store.vars(), AdamWConfig::default());
        let grads = loss.backward().unwrap();
        assert_eq!(
            opt.missing_grads(&grads),
            Vec::<String>::new(),
            "{fusion:?}"
        );
        sizes.push(
            store
                .vars()
                .iter()
                .map(|(_, v)| v.elem_count())
                .sum::<usize>(),
        );
        // The maps: one distribution over the 36 patches per question token.
        match m.question_maps(&x) {
            Ok(maps) => {
                assert_eq!((maps.len(), maps[0][0].len()), (8, 36), "{fusion:?}");
                for row in &maps[3] {
                    let s: f32 = row.iter().sum();
                    assert!((s - 1.0).abs() < 1e-4, "{fusion:?}: {s}");
                }
            }
            Err(e) => {
                assert_eq!(fusion, Fusion::LateFusion);
                assert!(e.to_string().contains("late fusion"), "{e}");
            }
        }
    }
    let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
    assert!(
        *hi as f64 <= *lo as f64 * 1.12,
        "parameter counts {sizes:?}"
    );
}

#[test]
fn a_short_co_attention_run_learns() {
    let cfg = small();
    let data = datasets(&cfg);
    let (_, r) = train(Fusion::CoAttention, &cfg, &data, &Device::Cpu, &Silent).unwrap();
    println!("losses {:?}, seen {:?}", r.losses, r.seen);
    assert!(r.losses[2] < r.losses[0] * 0.8, "{:?}", r.losses);
    // 57 steps learn the answer type of each question (a uniform guess among the 16 answers
    // would score 0.06; the right type alone ≈ 0.3); the full run is the example.
    assert!(r.seen.overall > 0.25, "{:?}", r.seen);
}

#[test]
fn bad_configs_are_errors() {
    for (cfg, needle) in [
        (
            FusionConfig {
                patch_size: 7,
                ..small()
            },
            "divide image size",
        ),
        (
            FusionConfig {
                heads: 3,
                ..small()
            },
            "heads",
        ),
        (
            FusionConfig {
                epochs: 0,
                ..small()
            },
            "positive",
        ),
        (
            FusionConfig {
                lr: f64::NAN,
                ..small()
            },
            "learning rate",
        ),
    ] {
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains(needle), "{e}");
    }
}
