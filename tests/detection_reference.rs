//! The detection pieces with a Python reference, on fixtures from
//! `tools/make_detection_fixtures.py`: the Hungarian matching equals scipy's
//! `linear_sum_assignment` (same pairs, ties included); DETR's loss equals transformers'
//! `ForObjectDetectionLoss` with its gradients; `DetrImageProcessor` (both backends) and
//! `post_process_object_detection` equal transformers'; the COCO box evaluation equals
//! pycocotools' `COCOeval` (all twelve numbers, ≤ 1e-12).
mod common;

use serde_json::Value;
use tessera::data::coco::{CocoDataset, Detection};
use tessera::train::coco_eval::evaluate;
use tessera::train::matching::linear_sum_assignment;

fn fixture(name: &str) -> Value {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/detection")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn linear_sum_assignment_equals_scipy() {
    let cases = fixture("lsap.json");
    let cases = cases.as_array().unwrap();
    let mut ties = 0;
    for (i, c) in cases.iter().enumerate() {
        let (r, k) = (
            c["rows"].as_u64().unwrap() as usize,
            c["cols"].as_u64().unwrap() as usize,
        );
        let cost: Vec<f64> = c["cost"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap_or(f64::INFINITY))
            .collect();
        let maximize = c["maximize"].as_bool().unwrap();
        let (ri, ci) = linear_sum_assignment(&cost, r, k, maximize).unwrap();
        let want = |k: &str| {
            c[k].as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            (ri, ci),
            (want("row_ind"), want("col_ind")),
            "case {i}: {r}×{k} maximize={maximize}"
        );
        if cost.iter().all(|v| v.fract() == 0.0) {
            ties += 1;
        }
    }
    assert!(
        cases.len() >= 60 && ties >= 20,
        "{} cases, {ties} with integer (tied) costs",
        cases.len()
    );
}

#[test]
fn coco_box_evaluation_equals_pycocotools() {
    let cases = fixture("coco_eval.json");
    for c in cases.as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let gt: CocoDataset = serde_json::from_value(c["gt"].clone()).unwrap();
        let dets: Vec<Detection> = serde_json::from_value(c["dets"].clone()).unwrap();
        let got = evaluate(&gt, &dets).unwrap().to_array();
        let want: Vec<f64> = c["stats"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        for (j, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-12,
                "{name}: stat {j}: {g} vs pycocotools {w}\n{got:?}\n{want:?}"
            );
        }
        eprintln!(
            "{name}: AP {:.4} AP50 {:.4} AP75 {:.4} AR100 {:.4} (= pycocotools)",
            got[0], got[1], got[2], got[8]
        );
    }
}

#[test]
fn bad_detection_inputs_are_errors() {
    let c = &fixture("coco_eval.json")[0];
    let gt: CocoDataset = serde_json::from_value(c["gt"].clone()).unwrap();
    let d = |image_id: u64, bbox: [f64; 4], score: f64| Detection {
        image_id,
        category_id: 1,
        bbox,
        score,
    };
    let img = gt.images[0].id;
    for (dets, needle) in [
        (
            vec![d(123456, [0., 0., 1., 1.], 0.5)],
            "image 123456, which the annotations do not list",
        ),
        (vec![d(img, [0., 0., -1., 1.], 0.5)], "negative size"),
        (vec![d(img, [0., f64::NAN, 1., 1.], 0.5)], "not finite"),
        (vec![d(img, [0., 0., 1., 1.], f64::NAN)], "score NaN"),
    ] {
        let e = evaluate(&gt, &dets).unwrap_err().to_string();
        assert!(e.contains(needle), "{e}");
    }
    let mut bad = gt.clone();
    bad.annotations[1].id = bad.annotations[0].id;
    assert!(evaluate(&bad, &[])
        .unwrap_err()
        .to_string()
        .contains("appears twice"));
    let mut bad = gt.clone();
    bad.annotations[0].category_id = 77;
    assert!(evaluate(&bad, &[])
        .unwrap_err()
        .to_string()
        .contains("category 77, which is not listed"));
    let e = serde_json::from_str::<CocoDataset>(r#"{"images": [], "categories": [], "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0,0,1,1], "iscrowd": 2}]}"#).unwrap_err();
    assert!(e.to_string().contains("iscrowd must be 0 or 1"), "{e}");
}

#[test]
fn detr_loss_equals_transformers_with_gradients() {
    use candle_core::{Device, Tensor, Var};
    use tessera::train::detr_loss::{detr_loss, DetrLossConfig, Target};
    for c in fixture("detr_loss.json").as_array().unwrap() {
        let n = |k: &str| c[k].as_u64().unwrap() as usize;
        let (l, b, q, k) = (n("layers"), n("batch"), n("queries"), n("num_labels"));
        let floats = |k: &str| {
            c[k].as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect::<Vec<f32>>()
        };
        let logits = Var::from_tensor(
            &Tensor::from_vec(floats("logits"), (l, b, q, k + 1), &Device::Cpu).unwrap(),
        )
        .unwrap();
        let boxes = Var::from_tensor(
            &Tensor::from_vec(floats("boxes"), (l, b, q, 4), &Device::Cpu).unwrap(),
        )
        .unwrap();
        let targets: Vec<Target> = c["targets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| Target {
                class_labels: t["class_labels"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap() as u32)
                    .collect(),
                boxes: t["boxes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|b| {
                        let v: Vec<f32> = b
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|x| x.as_f64().unwrap() as f32)
                            .collect();
                        [v[0], v[1], v[2], v[3]]
                    })
                    .collect(),
            })
            .collect();
        let aux_on = c["aux"].as_bool().unwrap();
        let layer = |t: &Var, i: usize| t.as_tensor().get(i).unwrap();
        let aux: Vec<(Tensor, Tensor)> = if aux_on {
            (0..l - 1)
                .map(|i| (layer(&logits, i), layer(&boxes, i)))
                .collect()
        } else {
            vec![]
        };
        let out = detr_loss(
            &layer(&logits, l - 1),
            &layer(&boxes, l - 1),
            &aux,
            &targets,
            &DetrLossConfig::new(k),
        )
        .unwrap();
        let want_m: Vec<(Vec<usize>, Vec<usize>)> = c["matching"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let v = |j: usize| {
                    p[j].as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.as_u64().unwrap() as usize)
                        .collect::<Vec<_>>()
                };
                (v(0), v(1))
            })
            .collect();
        assert_eq!(out.matching, want_m, "aux={aux_on}");
        let terms = c["terms"].as_object().unwrap();
        assert_eq!(
            out.terms.len(),
            terms.len(),
            "{:?}",
            out.terms.keys().collect::<Vec<_>>()
        );
        let rel = |g: f64, w: f64| (g - w).abs() / w.abs().max(1e-6);
        let mut worst_term = 0f64;
        for (name, w) in terms {
            let g = out.terms[name] as f64;
            worst_term = worst_term.max(rel(g, w.as_f64().unwrap()));
            assert!(
                rel(g, w.as_f64().unwrap()) <= 1e-5,
                "aux={aux_on} {name}: {g} vs {w}"
            );
        }
        let total = out.total.to_scalar::<f32>().unwrap() as f64;
        assert!(
            rel(total, c["total"].as_f64().unwrap()) <= 1e-5,
            "total {total}"
        );
        let grads = out.total.backward().unwrap();
        for (var, key) in [(&logits, "grad_logits"), (&boxes, "grad_boxes")] {
            let want = floats(key);
            let g: Vec<f32> = match grads.get(var.as_tensor()) {
                Some(g) => g.flatten_all().unwrap().to_vec1().unwrap(),
                None => vec![0.0; want.len()],
            };
            let scale = want.iter().fold(0f32, |m, x| m.max(x.abs()));
            let worst = g
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                worst <= 1e-5 * scale.max(1.0),
                "aux={aux_on} {key}: max |Δ| {worst} (scale {scale})"
            );
            // Without auxiliary loss only the last layer gets gradients, as in torch.
            eprintln!("aux={aux_on} {key}: max |Δ| {worst:.2e} of max |g| {scale:.3}");
        }
        eprintln!(
            "aux={aux_on}: worst term relative difference {worst_term:.1e}; total {total:.6} vs transformers {:.6}; {} terms",
            c["total"].as_f64().unwrap(),
            terms.len()
        );
    }
}

#[test]
fn generated_scenes_are_a_coco_dataset() {
    let d = tempfile::tempdir().unwrap();
    let written = tessera::data::detection_scenes::write_coco(d.path(), 12, 96, 80, 7).unwrap();
    let gt = CocoDataset::load(&d.path().join("annotations.json")).unwrap();
    assert_eq!(gt, written);
    assert_eq!(gt.images.len(), 12);
    assert_eq!(gt.categories.len(), 6);
    for im in &gt.images {
        let img = image::open(d.path().join("images").join(&im.file_name)).unwrap();
        assert_eq!((img.width(), img.height()), (96, 80));
    }
    // The ground truth scored against itself is perfect; shifted boxes are not.
    let perfect: Vec<Detection> = gt
        .annotations
        .iter()
        .map(|a| Detection {
            image_id: a.image_id,
            category_id: a.category_id,
            bbox: a.bbox,
            score: 1.0,
        })
        .collect();
    let s = evaluate(&gt, &perfect).unwrap();
    assert_eq!((s.ap, s.ap50, s.ar100), (1.0, 1.0, 1.0));
    let shifted: Vec<Detection> = perfect
        .iter()
        .map(|p| Detection {
            bbox: [p.bbox[0] + p.bbox[2] * 0.3, p.bbox[1], p.bbox[2], p.bbox[3]],
            ..p.clone()
        })
        .collect();
    let s = evaluate(&gt, &shifted).unwrap();
    assert!(
        s.ap50 == 1.0 && s.ap < 0.7,
        "IoU 0.54 passes .5, fails from .55: {s:?}"
    );
    // Same seed, same data.
    let d2 = tempfile::tempdir().unwrap();
    assert_eq!(
        tessera::data::detection_scenes::write_coco(d2.path(), 12, 96, 80, 7).unwrap(),
        written
    );
}

#[test]
fn detr_image_processor_equals_transformers_both_backends() {
    use tessera::image::{Backend, ProcessorConfig};
    let meta = fixture("processor.json");
    let want = common::load(&common::fixture("detection").join("processor.safetensors"));
    let images: Vec<image::DynamicImage> = meta["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            tessera::image::open(&common::fixture("processor").join(f.as_str().unwrap())).unwrap()
        })
        .collect();
    for (name, kw) in meta["configs"].as_object().unwrap() {
        let mut cfg = kw.clone();
        cfg["image_processor_type"] = "DetrImageProcessor".into();
        let p: ProcessorConfig = serde_json::from_value(cfg).unwrap();
        assert!(p.do_pad, "{name}: DETR pads by default");
        for backend in Backend::ALL {
            let batch = p
                .clone()
                .with_backend(backend)
                .batch_padded(&images, &candle_core::Device::Cpu)
                .unwrap();
            let (px, mask, sizes) = (batch.pixel_values, batch.pixel_mask, batch.sizes);
            let w_px = &want[&format!("{name}.{backend}.pixel_values")];
            let w_mask = &want[&format!("{name}.{backend}.pixel_mask")];
            assert_eq!(px.dims(), w_px.dims(), "{name} {backend}");
            let a: Vec<f32> = px.flatten_all().unwrap().to_vec1().unwrap();
            let b: Vec<f32> = w_px.flatten_all().unwrap().to_vec1().unwrap();
            let worst = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            let equal = a.iter().zip(&b).filter(|(x, y)| x == y).count();
            // Bit-exact, as both backends are reproduced exactly.
            assert_eq!(equal, a.len(), "{name} {backend}: max |Δ| {worst}");
            let m: Vec<u8> = mask.flatten_all().unwrap().to_vec1().unwrap();
            let wm: Vec<u8> = w_mask.flatten_all().unwrap().to_vec1().unwrap();
            assert_eq!(m, wm, "{name} {backend}: pixel_mask");
            eprintln!("{name} {backend}: {:?} {equal}/{} values equal, max |Δ| {worst:.1e}, sizes {sizes:?}", px.dims(), a.len());
        }
        // The backends really differ here, so the dispatch is tested too.
        let (tv, pil) = (
            &want[&format!("{name}.torchvision.pixel_values")],
            &want[&format!("{name}.pil.pixel_values")],
        );
        let differ = common::max_abs_diff(tv, pil);
        assert!(
            differ > 0.0,
            "{name}: the two backends' fixtures are identical"
        );
    }
}

#[test]
fn post_process_object_detection_equals_transformers() {
    use tessera::image::boxes::post_process_object_detection;
    let f = fixture("postprocess.json");
    let floats = |k: &str| {
        f[k].as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect::<Vec<f32>>()
    };
    let dev = candle_core::Device::Cpu;
    let logits = candle_core::Tensor::from_vec(floats("logits"), (2, 7, 6), &dev).unwrap();
    let boxes = candle_core::Tensor::from_vec(floats("boxes"), (2, 7, 4), &dev).unwrap();
    for c in f["cases"].as_array().unwrap() {
        let t = c["threshold"].as_f64().unwrap() as f32;
        let sizes: Option<Vec<(u32, u32)>> = c["target_sizes"].as_array().map(|a| {
            a.iter()
                .map(|p| (p[0].as_u64().unwrap() as u32, p[1].as_u64().unwrap() as u32))
                .collect()
        });
        let got = post_process_object_detection(&logits, &boxes, t, sizes.as_deref()).unwrap();
        for (g, w) in got.iter().zip(c["results"].as_array().unwrap()) {
            let labels: Vec<usize> = w["labels"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect();
            assert_eq!(
                g.iter().map(|d| d.label).collect::<Vec<_>>(),
                labels,
                "threshold {t}"
            );
            for (d, (s, b)) in g.iter().zip(
                w["scores"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .zip(w["boxes"].as_array().unwrap()),
            ) {
                assert!(
                    (d.score - s.as_f64().unwrap() as f32).abs() <= 1e-6,
                    "{} vs {s}",
                    d.score
                );
                for (x, y) in d.bbox.iter().zip(b.as_array().unwrap()) {
                    let y = y.as_f64().unwrap() as f32;
                    assert!(
                        (x - y).abs() <= 1e-4 * y.abs().max(1.0),
                        "{:?} vs {b}",
                        d.bbox
                    );
                }
            }
        }
    }
}

#[test]
fn resnet_backbones_equal_transformers_and_timm() {
    use tessera::models::resnet::{Layout, ResNet, ResNetConfig};
    let all = common::load(&common::fixture("detection").join("resnet.safetensors"));
    let meta = fixture("resnet.json");
    let x = &all["input"];
    let mut cases: Vec<(String, Value, Layout)> = meta["configs"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone(), Layout::Hf))
        .collect();
    cases.push(("timm".into(), meta["timm"].clone(), Layout::Timm));
    for (name, cfg, layout) in cases {
        let cfg: ResNetConfig = serde_json::from_value(cfg).unwrap();
        let prefix = format!("{name}/");
        let weights: std::collections::HashMap<String, candle_core::Tensor> = all
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(&prefix).map(|k| (k.to_string(), v.clone())))
            .collect();
        let n_weights = weights.len();
        let vb = candle_nn::VarBuilder::from_tensors(
            weights,
            candle_core::DType::F32,
            &candle_core::Device::Cpu,
        );
        let net = ResNet::new(vb, &cfg, layout).unwrap();
        // Both paths: candle's ops, and the norms folded into convolutions packed for
        // tessera's GEMM (what a loaded detector runs).
        let mut packed = net.clone();
        packed.prepare().unwrap();
        let eval = tessera::nn::Ctx::eval();
        let outs: Vec<_> = net
            .forward(x, &eval)
            .unwrap()
            .into_iter()
            .chain(packed.forward(x, &tessera::nn::Ctx::inference()).unwrap())
            .collect();
        assert_eq!(outs.len(), 2 * cfg.hidden_sizes.len());
        for (j, o) in outs.iter().enumerate() {
            let i = j % cfg.hidden_sizes.len();
            let want = &all[&format!("{name}.out{i}")];
            assert_eq!(o.dims(), want.dims(), "{name} stage {i}");
            let d = common::max_abs_diff(o, want);
            let scale = common::max_abs_diff(want, &want.zeros_like().unwrap());
            assert!(
                d <= 1e-4 * scale.max(1.0),
                "{name} stage {i}: max |Δ| {d} (max |x| {scale})"
            );
            eprintln!(
                "{name} stage {i} {:?}: max |Δ| {d:.1e} (max |x| {scale:.2}), {n_weights} tensors",
                o.dims()
            );
        }
    }
}

#[test]
fn detr_equals_transformers_on_a_padded_batch() {
    use tessera::models::detr::{Detr, DetrConfig};
    // Both backbone layouts: HF's ResNetBackbone and timm's ResNet as transformers 5 saves it
    // (the DC5 one dilated: a stride-16 map, 4×6 on the 64×96 batch instead of 2×3).
    for (name, tokens) in [
        ("detr_hf", 6),
        ("detr_hf_aux_learned", 96),
        ("detr_timm", 6),
        ("detr_timm_dc5", 24),
    ] {
        let dir = common::fixture("detection").join(name);
        let cfg: DetrConfig =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap())
                .unwrap();
        let weights = common::load(&dir.join("model.safetensors"));
        let want = common::load(&dir.join("expected.safetensors"));
        let vb = candle_nn::VarBuilder::from_tensors(
            weights,
            candle_core::DType::F32,
            &candle_core::Device::Cpu,
        );
        let model = Detr::new(vb, &cfg).unwrap();
        let mut trace = tessera::nn::Trace::default();
        let out = {
            let mut traced = tessera::nn::Ctx::eval();
            traced.trace = Some(&mut trace);
            model
                .forward(&want["pixel_values"], &want["pixel_mask"], &mut traced)
                .unwrap()
        };
        let mut ctx = tessera::nn::Ctx::eval();
        assert_eq!(
            out.encoder_last_hidden_state.dim(1).unwrap(),
            tokens,
            "{name}"
        );
        // The trace's last map is the last decoder layer's cross-attention (what `explain`
        // draws per query); every layer's self- and cross-attention is there.
        assert_eq!(
            trace.attentions.len(),
            cfg.encoder_layers + 2 * cfg.decoder_layers
        );
        let mut pairs = vec![
            ("logits", out.logits.clone()),
            ("pred_boxes", out.pred_boxes.clone()),
            (
                "encoder_last_hidden_state",
                out.encoder_last_hidden_state.clone(),
            ),
            ("last_hidden_state", out.last_hidden_state.clone()),
            (
                "cross_attention_last",
                trace.attentions.last().unwrap().clone(),
            ),
        ];
        for (i, (l, b)) in out.auxiliary.iter().enumerate() {
            pairs.push((
                Box::leak(format!("aux{i}.logits").into_boxed_str()),
                l.clone(),
            ));
            pairs.push((
                Box::leak(format!("aux{i}.pred_boxes").into_boxed_str()),
                b.clone(),
            ));
        }
        assert_eq!(
            out.auxiliary.len(),
            if cfg.auxiliary_loss {
                cfg.decoder_layers - 1
            } else {
                0
            }
        );
        // The mask bites: without it, the padded image's detections change.
        let ones = want["pixel_mask"].ones_like().unwrap();
        let unmasked = model
            .forward(&want["pixel_values"], &ones, &mut ctx)
            .unwrap();
        let moved = common::max_abs_diff(&unmasked.logits, &out.logits);
        assert!(
            moved > 1e-3,
            "{name}: the pixel mask changed nothing ({moved})"
        );
        for (key, got) in pairs {
            let w = &want[key];
            assert_eq!(got.dims(), w.dims(), "{name} {key}");
            let d = common::max_abs_diff(&got, w);
            assert!(d <= 1e-4, "{name} {key}: max |Δ| {d}");
            eprintln!("{name} {key} {:?}: max |Δ| {d:.1e}", got.dims());
        }
    }
}

#[test]
fn object_detection_pipeline_and_cli_equal_transformers() {
    use tessera::pipelines::{ImageSource, ObjectDetection};
    let dir = common::fixture("detection").join("detr_hf");
    let want = fixture("detr_hf/pipeline.json");
    let photo = common::fixture("processor").join(want["image"].as_str().unwrap());
    let pipe =
        ObjectDetection::from_pretrained(&dir, &tessera::models::LoadOptions::default()).unwrap();
    let got = pipe
        .detect(&[ImageSource::from(photo.as_path())], 0.0)
        .unwrap()
        .remove(0);
    let scores = want["scores"].as_array().unwrap();
    assert_eq!(got.len(), scores.len());
    for (i, d) in got.iter().enumerate() {
        assert_eq!(d.index as u64, want["labels"][i].as_u64().unwrap());
        assert!(
            (d.score as f64 - scores[i].as_f64().unwrap()).abs() <= 1e-5,
            "score {i}: {} vs {}",
            d.score,
            scores[i]
        );
        for (k, x) in d.bbox.iter().enumerate() {
            let y = want["boxes"][i][k].as_f64().unwrap();
            assert!((*x as f64 - y).abs() <= 1e-3, "box {i}[{k}]: {x} vs {y}");
        }
    }
    // The CLI: JSON and a drawn picture.
    let out = tempfile::tempdir().unwrap();
    let png = out.path().join("boxes.png");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["detect", "--threshold", "0", "--json", "--out"])
        .arg(&png)
        .arg("--model")
        .arg(&dir)
        .arg(&photo)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["detections"].as_array().unwrap().len(), got.len());
    assert_eq!(v[0]["detections"][0]["label"], "LABEL_4");
    let drawn = image::open(&png).unwrap().to_rgb8();
    let orig = tessera::image::open(&photo).unwrap().to_rgb8();
    assert_eq!(drawn.dimensions(), orig.dimensions());
    assert_ne!(drawn.as_raw(), orig.as_raw(), "boxes were drawn");
    // A DETR checkpoint is refused by the classification commands, and thresholds are checked.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["predict", "--model"])
        .arg(&dir)
        .arg(&photo)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("DETR object detector"),
        "{err}"
    );
    assert!(pipe
        .detect(&[ImageSource::from(photo.as_path())], 1.5)
        .is_err());
}
