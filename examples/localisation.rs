//! Localisation, measured: train the seed ViT on Fashion-MNIST items pasted on a 64×64 canvas
//! with clutter, then score each explanation method by whether its hottest patch lies in the
//! item's box (pointing game) and by the share of its mass inside the box, against the random
//! baseline (box area / canvas area). Writes example overlays to docs/.
//!
//! cargo run --release --example localisation -- [EPOCHS] [TRAIN_N]
use candle_core::{DType, Device};
use tessera::data::localisation::{pasted, patch_in_box};
use tessera::data::{self, Augment, Loader, Normalize};
use tessera::explain::{self, render, HeadFusion};
use tessera::models::vit::{VisionTransformer, VitConfig};
use tessera::nn::{Ctx, ParamStore, Trace};
use tessera::train::{self, AdamWConfig, FitOptions, TrainConfig};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let epochs: usize = args.first().and_then(|s| s.parse().ok()).unwrap_or(4);
    let n_train: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(20000);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    train::single_threaded_ops();
    let dev = Device::Cpu;
    let (fm_train, fm_test) = data::fashion_mnist(std::path::Path::new(data::FASHION_MNIST_DIR))?;
    let size = 64;
    let (tr, _) = pasted(&fm_train, n_train, size, 1);
    let (te, boxes) = pasted(&fm_test, 1000, size, 2);
    let mut cfg = VitConfig::preset("mnist")?;
    cfg.image_size = size;
    cfg.patch_size = 8;
    cfg.num_hidden_layers = 4;
    cfg.pre_norm = true;
    cfg.dropout = 0.0;
    cfg.id2label = fm_train
        .classes
        .iter()
        .enumerate()
        .map(|(i, c)| (i.to_string(), c.clone()))
        .collect();
    let store = ParamStore::fresh(0, true, &dev);
    let model = VisionTransformer::new(store.var_builder(DType::F32), &cfg)?;
    let norm = Normalize {
        mean: vec![0.5],
        std: vec![0.5],
    };
    let tl = Loader {
        dataset: &tr,
        batch_size: 128,
        normalize: norm.clone(),
        augment: Augment {
            max_shift: 0,
            hflip: true,
        },
        seed: 0,
    };
    let el = Loader {
        dataset: &te,
        batch_size: 250,
        normalize: norm,
        augment: Augment::default(),
        seed: 0,
    };
    let tc = TrainConfig {
        epochs,
        batch_size: 128,
        optim: AdamWConfig {
            lr: 1e-3,
            weight_decay: 0.05,
            ..Default::default()
        },
        clip_grad_norm: 1.0,
        ..Default::default()
    };
    let out = std::path::PathBuf::from("runs/localisation");
    let files = vec![("config.json".to_string(), serde_json::to_value(&cfg)?)];
    let s = train::fit(
        &model,
        &store,
        &files,
        &tl,
        &el,
        &tc,
        &out,
        &FitOptions {
            threads,
            ..Default::default()
        },
        &dev,
    )?;
    println!(
        "test accuracy {:.4} after {} epochs ({:.0}s)",
        s.test_accuracy, s.epochs, s.train_seconds
    );
    // Score the methods on 500 test canvases.
    let side = size / cfg.patch_size;
    let baseline = (28.0 * 28.0) / (size * size) as f64;
    let names = [
        "attention (last layer)",
        "rollout",
        "rollout, discard 0.9",
        "relevance (Chefer)",
    ];
    let (mut hits, mut mass) = ([0usize; 4], [0f64; 4]);
    let n_eval = 500;
    std::fs::create_dir_all("docs")?;
    for (i, &bx) in boxes.iter().enumerate().take(n_eval) {
        let batch = el.batch(&[i], false, 0, &dev)?;
        let mut trace = Trace::with_gradients();
        let logits = model.forward(&batch.images, &mut Ctx::eval().with_trace(&mut trace))?;
        let pred = logits.argmax(1)?.to_vec1::<u32>()?[0] as usize;
        let grads = explain::select(&logits, 0, pred)?.backward()?;
        let maps = [
            explain::cls_attention(&trace, trace.attentions.len() - 1, 0, HeadFusion::Mean)?,
            explain::rollout(&trace, 0, HeadFusion::Mean, 0.0)?,
            explain::rollout(&trace, 0, HeadFusion::Max, 0.9)?,
            explain::relevance(&trace, &grads, 0)?,
        ];
        for (m, map) in maps.iter().enumerate() {
            hits[m] += patch_in_box(explain::argmax(map), side, size, bx) as usize;
            let pos: Vec<f32> = map.iter().map(|v| v.max(0.0)).collect();
            let total: f32 = pos.iter().sum();
            let inside: f32 = pos
                .iter()
                .enumerate()
                .filter(|(p, _)| patch_in_box(*p, side, size, bx))
                .map(|(_, v)| v)
                .sum();
            mass[m] += (inside / total.max(1e-12)) as f64;
        }
        if i < 4 {
            // Overlays for the README: the input and the four maps side by side.
            let g: Vec<u8> = te.pixels[i * size * size..(i + 1) * size * size]
                .iter()
                .map(|v| (v * 255.0) as u8)
                .collect();
            let img = image::DynamicImage::ImageLuma8(
                image::GrayImage::from_raw(size as u32, size as u32, g).unwrap(),
            )
            .resize_exact(192, 192, image::imageops::FilterType::Nearest)
            .to_rgb8();
            let label = cfg.label(pred);
            let mut tiles = vec![render::legend(&img, &format!("pred: {label}"))?];
            for (m, map) in maps.iter().enumerate() {
                tiles.push(render::legend(
                    &render::overlay(&img, map, side, 0.55)?,
                    ["attention", "rollout", "rollout .9", "relevance"][m],
                )?);
            }
            render::save_png(
                &render::grid(&tiles, 5),
                std::path::Path::new(&format!("docs/localisation_{i}.png")),
            )?;
        }
    }
    println!("pointing game over {n_eval} test canvases (hottest patch inside the item's box); random baseline {baseline:.3}");
    for m in 0..4 {
        println!(
            "  {:24} pointing {:.3}   mass in box {:.3}",
            names[m],
            hits[m] as f64 / n_eval as f64,
            mass[m] / n_eval as f64
        );
    }
    Ok(())
}
