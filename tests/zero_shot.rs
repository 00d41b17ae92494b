//! The zero-shot pipeline and CLI: behaviour and bad input (parity with transformers' pipeline
//! on real photos is `tools/check_zero_shot.py`: it needs the reference venv).
mod common;
use candle_core::{DType, Device};
use common::{bpe, tiny_clip};
use std::path::{Path, PathBuf};
use std::process::Command;
use tessera::models::clip::{Clip, ClipConfig};
use tessera::models::{LoadOptions, Pretrained};
use tessera::nn::ParamStore;
use tessera::pipelines::{ClipEmbedder, ImageSource, ZeroShotClassifier};
use tessera::progress::Silent;

fn photo(dir: &Path, name: &str, rgb: [u8; 3]) -> PathBuf {
    let p = dir.join(name);
    image::RgbImage::from_fn(50, 40, |x, y| {
        image::Rgb([
            rgb[0].wrapping_add((x * 3) as u8),
            rgb[1],
            rgb[2].wrapping_add(y as u8),
        ])
    })
    .save(&p)
    .unwrap();
    p
}

#[test]
fn classify_sorts_scores_and_rejects_bad_input() {
    let d = tempfile::tempdir().unwrap();
    tiny_clip(d.path());
    let zs = ZeroShotClassifier::new(
        ClipEmbedder::from_pretrained(d.path(), &bpe(), &LoadOptions::default()).unwrap(),
    );
    let imgs = [
        ImageSource::Path(photo(d.path(), "a.png", [200, 30, 30])),
        ImageSource::Path(photo(d.path(), "b.png", [10, 30, 220])),
    ];
    let labels: Vec<String> = ["cricket", "ladybug", "spider"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let r = zs
        .classify(&imgs, &labels, "This is a photo of a {}.")
        .unwrap();
    assert_eq!(r.len(), 2);
    for row in &r {
        assert_eq!(row.len(), 3);
        assert!(row.windows(2).all(|w| w[0].score >= w[1].score));
        assert!((row.iter().map(|s| s.score).sum::<f32>() - 1.0).abs() < 1e-5);
    }
    // Images in one batch or alone: the same scores (batching does not change results).
    let alone = zs
        .classify(&imgs[1..], &labels, "This is a photo of a {}.")
        .unwrap();
    assert!((alone[0][0].score - r[1][0].score).abs() < 1e-5);
    // Bad input: clear errors.
    let e = |res: tessera::Result<Vec<Vec<tessera::pipelines::LabelScore>>>| {
        res.unwrap_err().to_string()
    };
    assert!(e(zs.classify(&imgs, &[], "a {}")).contains("empty"));
    assert!(e(zs.classify(&imgs, &labels, "a photo")).contains("no {}"));
    let txt = d.path().join("notes.txt");
    std::fs::write(&txt, "not an image").unwrap();
    assert!(e(zs.classify(&[ImageSource::Path(txt)], &labels, "a {}")).contains("notes.txt"));
    // Port 9 on loopback: nothing listens, the connection is refused at once.
    assert!(e(zs.classify(
        &[ImageSource::parse("http://127.0.0.1:9/cat.jpg")],
        &labels,
        "a {}"
    ))
    .contains("cannot download"));
}

#[test]
fn zero_shot_and_embed_cli() {
    let d = tempfile::tempdir().unwrap();
    tiny_clip(d.path());
    let img = photo(d.path(), "a.png", [200, 30, 30]);
    let bin = env!("CARGO_BIN_EXE_tessera");
    let run = |args: &[&str]| {
        let o = Command::new(bin)
            .args(args)
            .arg("--bpe")
            .arg(bpe())
            .output()
            .unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).to_string(),
            String::from_utf8_lossy(&o.stderr).to_string(),
        )
    };
    let m = d.path().to_str().unwrap();
    let (ok, out, err) = run(&[
        "zero-shot",
        "--json",
        "--model",
        m,
        "--labels",
        "cricket,ladybug,spider",
        img.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["scores"].as_array().unwrap().len(), 3);
    let (ok, _, err) = run(&[
        "zero-shot",
        "--model",
        m,
        "--labels",
        ",",
        img.to_str().unwrap(),
    ]);
    assert!(
        !ok && err.contains("--labels is empty") && !err.contains("panicked"),
        "{err}"
    );
    let (ok, _, err) = run(&[
        "zero-shot",
        "--model",
        m,
        "--labels",
        "a,b",
        "--template",
        "no placeholder",
        img.to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("no {}"), "{err}");
    let (ok, out, err) = run(&[
        "embed",
        "--model",
        m,
        "--image",
        img.to_str().unwrap(),
        "--text",
        "a cat",
        "--text",
        "a dog",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["similarity"].as_array().unwrap()[0]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let emb = v["image_embeds"][0].as_array().unwrap();
    let norm: f64 = emb.iter().map(|x| x.as_f64().unwrap().powi(2)).sum();
    assert!(
        (norm - 1.0).abs() < 1e-4,
        "image embeddings are L2-normalised"
    );
}

#[test]
fn index_is_incremental_skips_bad_files_and_searches() {
    let d = tempfile::tempdir().unwrap();
    let model = d.path().join("model");
    std::fs::create_dir_all(&model).unwrap();
    tiny_clip(&model);
    let photos = d.path().join("photos");
    std::fs::create_dir_all(photos.join("sub")).unwrap();
    photo(&photos, "red.png", [220, 20, 20]);
    photo(&photos, "blue.png", [20, 20, 220]);
    photo(&photos.join("sub"), "green.png", [20, 220, 20]);
    std::fs::write(photos.join("broken.jpg"), b"\xff\xd8\xff\xe0 truncated").unwrap();
    let zs = ClipEmbedder::from_pretrained(&model, &bpe(), &LoadOptions::default()).unwrap();
    let index = d.path().join("idx.safetensors");
    let m = model.to_str().unwrap();
    let r = tessera::pipelines::Index::update(&zs, m, &photos, &index, &Silent).unwrap();
    assert_eq!(
        (r.embedded, r.reused, r.skipped.len(), r.total),
        (3, 0, 1, 3)
    );
    assert!(r.skipped[0].0.contains("broken.jpg"));
    // Nothing changed: nothing embedded.
    let r = tessera::pipelines::Index::update(&zs, m, &photos, &index, &Silent).unwrap();
    assert_eq!((r.embedded, r.reused), (0, 3));
    // One changed, one removed.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    image::RgbImage::from_pixel(31, 17, image::Rgb([1, 2, 3]))
        .save(photos.join("red.png"))
        .unwrap();
    std::fs::remove_file(photos.join("blue.png")).unwrap();
    let r = tessera::pipelines::Index::update(&zs, m, &photos, &index, &Silent).unwrap();
    assert_eq!((r.embedded, r.reused, r.removed, r.total), (1, 1, 1, 2));
    let idx = tessera::pipelines::Index::load(&index).unwrap();
    let hits = idx.search(&zs, "a red square", 5).unwrap();
    assert_eq!(hits.len(), 2);
    assert!(hits[0].1 >= hits[1].1);
    assert!(idx.search(&zs, "  ", 5).is_err());
    // The CLI finds the model through the manifest.
    let o = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args([
            "search",
            index.to_str().unwrap(),
            "a green square",
            "-k",
            "1",
            "--json",
            "--bpe",
        ])
        .arg(bpe())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
}

#[test]
fn contrastive_training_reduces_the_loss_and_trains_the_temperature() {
    use tessera::data::shape_scenes::{scenes, HELD_OUT};
    use tessera::train::contrastive::{caption_batch, clip_loss, scene_pixels};
    let dev = Device::Cpu;
    let tok = tessera::models::clip::ClipTokenizer::from_bpe_gz(&bpe()).unwrap();
    let cfg: ClipConfig = serde_json::from_value(serde_json::json!({
        "text_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2},
        "vision_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
        "projection_dim": 16
    }))
    .unwrap();
    let store = ParamStore::fresh(1, true, &dev);
    let model = Clip::new(store.var_builder(DType::F32), &cfg).unwrap();
    let proc = tessera::image::ProcessorConfig::clip(32);
    let data = scenes(16, 32, &HELD_OUT, false, &Default::default(), 3);
    // Every parameter, the temperature included, receives a gradient from the symmetric loss.
    let refs: Vec<_> = data.iter().collect();
    let px = scene_pixels(&refs, 32, &proc, &dev).unwrap();
    let texts: Vec<&str> = data.iter().map(|s| s.caption.as_str()).collect();
    let (ids, mask) = caption_batch(&tok, &texts, &dev).unwrap();
    let o = model
        .forward(&px, &ids, Some(&mask), &mut tessera::nn::Ctx::eval())
        .unwrap();
    let grads = clip_loss(&o.logits_per_image).unwrap().backward().unwrap();
    let opt = tessera::train::AdamW::new(store.vars(), Default::default());
    let missing = opt.missing_grads(&grads);
    // Token embeddings get a gradient (index_select backward); nothing is missing.
    assert!(missing.is_empty(), "{missing:?}");
    let before = store
        .vars()
        .iter()
        .find(|(n, _)| n == "logit_scale")
        .unwrap()
        .1
        .as_tensor()
        .to_scalar::<f32>()
        .unwrap();
    let out = tempfile::tempdir().unwrap();
    let tc = tessera::train::TrainConfig {
        epochs: 4,
        batch_size: 8,
        optim: tessera::train::AdamWConfig {
            lr: 2e-3,
            ..Default::default()
        },
        ..Default::default()
    };
    let losses = tessera::train::contrastive::fit_clip(
        &model,
        &store,
        &tok,
        &proc,
        &|_| std::borrow::Cow::Borrowed(data.as_slice()),
        32,
        &tc,
        0.5,
        out.path(),
        &dev,
        &mut |_, _, _| Ok(serde_json::json!({})),
        &Silent,
    )
    .unwrap();
    assert!(
        losses.last().unwrap() < losses.first().unwrap(),
        "{losses:?}"
    );
    let after = store
        .vars()
        .iter()
        .find(|(n, _)| n == "logit_scale")
        .unwrap()
        .1
        .as_tensor()
        .to_scalar::<f32>()
        .unwrap();
    assert_ne!(before, after, "the temperature is learned");
    // The saved checkpoint loads back as a CLIP model.
    assert!(Clip::load(out.path(), &LoadOptions::default().device(&dev)).is_ok());
}

#[test]
fn multi_positive_loss_and_hard_negative_batches() {
    use tessera::data::shape_scenes::{scenes, training_scenes, COLORS, HELD_OUT, SHAPES};
    use tessera::train::contrastive::{
        caption_positives, clip_loss, clip_loss_multi, epoch_batches,
    };
    let dev = Device::Cpu;
    let logits = candle_core::Tensor::new(
        &[[2.0f32, -1.0, 0.5], [0.3, 1.5, -0.2], [0.1, 0.4, 0.9]],
        &dev,
    )
    .unwrap();
    // With only the diagonal positive it is the plain symmetric loss.
    let eye = candle_core::Tensor::eye(3, DType::F32, &dev).unwrap();
    let a = clip_loss(&logits).unwrap().to_scalar::<f32>().unwrap();
    let b = clip_loss_multi(&logits, &eye)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    // Two positives in row 0: image 0 -> uniform target over texts 0 and 1, by hand.
    let pos = candle_core::Tensor::new(&[[1f32, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], &dev)
        .unwrap();
    let l: Vec<Vec<f32>> = logits.to_vec2().unwrap();
    let lse = |v: &[f32]| v.iter().map(|x| x.exp()).sum::<f32>().ln();
    let col = |j: usize| -> Vec<f32> { l.iter().map(|r| r[j]).collect() };
    let i2t = (-(0.5 * (l[0][0] + l[0][1]) - lse(&l[0]))
        - (l[1][1] - lse(&l[1]))
        - (l[2][2] - lse(&l[2])))
        / 3.0;
    // Text 0 is true of image 0 only; text 1 of images 0 and 1.
    let t2i = (-(l[0][0] - lse(&col(0)))
        - (0.5 * (l[0][1] + l[1][1]) - lse(&col(1)))
        - (l[2][2] - lse(&col(2))))
        / 3.0;
    let got = clip_loss_multi(&logits, &pos)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!((got - 0.5 * (i2t + t2i)).abs() < 1e-5, "{got}");
    assert!(clip_loss_multi(&logits, &eye.narrow(0, 0, 2).unwrap()).is_err());

    // Positives: a caption is true of its own scene, and a subset caption of others too.
    let data = training_scenes(300, 32, &HELD_OUT, 0.5, &Default::default(), 9);
    let two = data.iter().filter(|s| s.objects.len() == 2).count();
    assert!((100..200).contains(&two), "{two} two-object scenes");
    let refs: Vec<_> = data.iter().collect();
    let p: Vec<Vec<f32>> = caption_positives(&refs, &dev).unwrap().to_vec2().unwrap();
    let mut others = 0;
    for (i, img) in data.iter().enumerate() {
        assert_eq!(p[i][i], 1.0, "{}", data[i].caption);
        for (j, cap) in data.iter().enumerate() {
            // Every object the caption describes is in the image with those attributes.
            let fits = cap.mentions.iter().all(|m| {
                img.objects.iter().any(|o| {
                    m.color.is_none_or(|c| c == o.color)
                        && m.shape.is_none_or(|s| s == o.shape)
                        && m.position.is_none_or(|q| q == o.position)
                })
            });
            assert_eq!(p[i][j] == 1.0, fits);
            others += (i != j && fits) as usize;
        }
    }
    assert!(others > 0);
    // Training never shows a held-out pair: not as an object, not bound in a caption.
    for s in &data {
        assert!(!s.mentions.is_empty());
        for o in &s.objects {
            assert!(!HELD_OUT.contains(&(o.color, o.shape)));
        }
        for m in &s.mentions {
            if let (Some(c), Some(sh)) = (m.color, m.shape) {
                assert!(!HELD_OUT.contains(&(c, sh)), "{}", s.caption);
            }
        }
        // The caption text binds each colour to the shape after it.
        for part in s.caption.split(" and ") {
            let w: Vec<&str> = part.split(' ').collect();
            for (c, sh) in HELD_OUT {
                assert!(
                    !(w.contains(&COLORS[c].0) && w.contains(&SHAPES[sh])),
                    "{}",
                    s.caption
                );
            }
        }
    }
    // Test scenes: one object each, held-out pairs only when asked.
    for s in scenes(50, 32, &HELD_OUT, true, &Default::default(), 2) {
        assert_eq!(s.objects.len(), 1);
        assert!(HELD_OUT.contains(&(s.objects[0].color, s.objects[0].shape)));
    }
    // Hard-negative batches cover every scene once, and are more concentrated in colour (or
    // shape) than plain shuffled ones.
    let distinct = |batches: &[Vec<usize>], key: &dyn Fn(usize) -> usize| -> usize {
        batches
            .iter()
            .map(|b| {
                let mut k: Vec<usize> = b.iter().map(|&i| key(i)).collect();
                k.sort();
                k.dedup();
                k.len()
            })
            .sum()
    };
    let plain = epoch_batches(&data, 20, 0.0, 4);
    let hard = epoch_batches(&data, 20, 0.5, 4);
    for batches in [&plain, &hard] {
        let mut all: Vec<usize> = batches.iter().flatten().copied().collect();
        all.sort();
        assert_eq!(all, (0..data.len()).collect::<Vec<_>>());
    }
    let colours = |i: usize| data[i].objects[0].color;
    assert!(distinct(&hard, &colours) < distinct(&plain, &colours));
    // All pure: every batch shares one colour or one shape.
    let shapes = |i: usize| data[i].objects[0].shape;
    let pure = epoch_batches(&data, 20, 1.0, 4);
    assert_eq!(pure.iter().map(Vec::len).sum::<usize>(), data.len());
    for b in &pure {
        assert!(
            distinct(std::slice::from_ref(b), &colours) == 1
                || distinct(std::slice::from_ref(b), &shapes) == 1
        );
    }
}
