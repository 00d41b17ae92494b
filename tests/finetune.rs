//! `tessera finetune` end to end on a generated ImageFolder, from an HF backbone checkpoint
//! (the in21k layout: no prefix, pooler, no classifier) to an HF classifier checkpoint.
mod common;
use common::{fixture, load, max_abs_diff};
use std::path::Path;
use std::process::Command;

/// Two easily separated classes: reddish vs bluish noisy images, 40x36 (resized by the processor).
fn make_folder(root: &Path, per_class: u32) {
    for (ci, class) in ["blue_things", "red_things"].iter().enumerate() {
        for split in ["train", "test"] {
            let d = root.join(split).join(class);
            std::fs::create_dir_all(&d).unwrap();
            for k in 0..per_class {
                let img = image::RgbImage::from_fn(40, 36, |x, y| {
                    let noise = ((x * 31 + y * 17 + k * 7) % 50) as u8;
                    if ci == 0 {
                        image::Rgb([noise, 40, 180 + noise])
                    } else {
                        image::Rgb([180 + noise, 40, noise])
                    }
                });
                img.save(d.join(format!("{k}.png"))).unwrap();
            }
        }
    }
}

fn tessera(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

#[test]
fn finetune_backbone_into_hf_classifier_and_predict() {
    let d = tempfile::tempdir().unwrap();
    make_folder(&d.path().join("data"), 12);
    let out = d.path().join("out");
    let model = fixture("hf_vit_model");
    let (ok, stdout, stderr) = tessera(&[
        "finetune",
        "--model",
        model.to_str().unwrap(),
        "--dataset",
        d.path().join("data").to_str().unwrap(),
        "--epochs",
        "3",
        "--batch-size",
        "8",
        "--lr",
        "2e-3",
        "--output",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("newly initialised: classifier.weight, classifier.bias"),
        "{stderr}"
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(v["test_accuracy"].as_f64().unwrap() >= 0.9, "{stdout}");
    // An HF checkpoint: names, labels, processor.
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["architectures"][0], "ViTForImageClassification");
    assert_eq!(cfg["id2label"]["1"], "red_things");
    assert_eq!(cfg["label2id"]["blue_things"], 0);
    assert!(out.join("preprocessor_config.json").exists());
    let w = load(&out.join("model.safetensors"));
    assert!(
        w.contains_key("classifier.weight")
            && w.contains_key("vit.encoder.layer.1.output.dense.bias")
    );
    assert!(!w.keys().any(|k| k.contains("pooler")));
    // Predict with the checkpoint's own processor.
    let img = d
        .path()
        .join("data")
        .join("test")
        .join("red_things")
        .join("3.png");
    let (ok, stdout, stderr) = tessera(&[
        "predict",
        "--json",
        "--model",
        out.to_str().unwrap(),
        img.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let p: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(p[0]["predictions"][0]["label"], "red_things", "{stdout}");
    // bf16 inference gives the same top label and nearly the same score; a bad dtype is an
    // error, not a panic.
    let (ok, stdout, stderr) = tessera(&[
        "predict",
        "--json",
        "--dtype",
        "bf16",
        "--model",
        out.to_str().unwrap(),
        img.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let b: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(b[0]["predictions"][0]["label"], "red_things", "{stdout}");
    let (s32, s16) = (
        p[0]["predictions"][0]["score"].as_f64().unwrap(),
        b[0]["predictions"][0]["score"].as_f64().unwrap(),
    );
    assert!((s32 - s16).abs() < 0.02, "f32 {s32} vs bf16 {s16}");
    let (ok, _, stderr) = tessera(&[
        "predict",
        "--dtype",
        "fp8",
        "--model",
        out.to_str().unwrap(),
        img.to_str().unwrap(),
    ]);
    assert!(
        !ok && stderr.contains("unknown dtype") && !stderr.contains("panicked"),
        "{stderr}"
    );
}

#[test]
fn freeze_backbone_trains_only_the_head_and_grad_accum_runs() {
    let d = tempfile::tempdir().unwrap();
    make_folder(&d.path().join("data"), 6);
    let out = d.path().join("probe");
    let model = fixture("hf_vit_model");
    let (ok, _, stderr) = tessera(&[
        "finetune",
        "--model",
        model.to_str().unwrap(),
        "--dataset",
        d.path().join("data").to_str().unwrap(),
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--grad-accum",
        "2",
        "--lr",
        "1e-3",
        "--freeze-backbone",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("backbone frozen"), "{stderr}");
    let before = load(&model.join("model.safetensors"));
    let after = load(&out.join("model.safetensors"));
    for (k, t) in &before {
        if k.starts_with("pooler") {
            continue;
        }
        assert_eq!(
            max_abs_diff(t, &after[&format!("vit.{k}")]),
            0.0,
            "{k} changed"
        );
    }
    // A zero backbone LR scale is a probe by another route: the backbone stays put, the head
    // (at the full LR) moves; a 0.5 scale moves the backbone.
    for (scale, moves) in [("0", false), ("0.5", true)] {
        let out = d.path().join(format!("scale{scale}"));
        let (ok, _, stderr) = tessera(&[
            "finetune",
            "--model",
            model.to_str().unwrap(),
            "--dataset",
            d.path().join("data").to_str().unwrap(),
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--lr",
            "1e-3",
            "--backbone-lr-scale",
            scale,
            "--output",
            out.to_str().unwrap(),
        ]);
        assert!(ok, "{stderr}");
        let after = load(&out.join("model.safetensors"));
        let moved = max_abs_diff(
            &before["encoder.layer.0.attention.attention.query.weight"],
            &after["vit.encoder.layer.0.attention.attention.query.weight"],
        ) > 0.0;
        assert_eq!(moved, moves, "scale {scale}");
    }
    // Bad input: --num-labels that disagrees with the dataset.
    let (ok, _, e) = tessera(&[
        "finetune",
        "--model",
        model.to_str().unwrap(),
        "--dataset",
        d.path().join("data").to_str().unwrap(),
        "--num-labels",
        "37",
        "--output",
        d.path().join("x").to_str().unwrap(),
    ]);
    assert!(
        !ok && e.contains("num_labels 37") && !e.contains("panicked"),
        "{e}"
    );
}

#[test]
fn parquet_dataset_in_hf_layout() {
    use tessera::data::{parquet, Dataset};
    use tessera::image::ProcessorConfig;
    let dir = fixture("parquet_pets_like");
    let train = parquet::split_files(&dir, "train").unwrap();
    let test = parquet::split_files(&dir, "test").unwrap();
    assert_eq!(train.len(), 1);
    assert_eq!(test.len(), 1);
    let proc = ProcessorConfig::vit(32);
    let tr = parquet::read_split(&train, &proc, (32, 32), None).unwrap();
    assert_eq!(tr.len(), 18);
    assert_eq!(tr.classes, vec!["blue_things", "red_things"]); // from the `huggingface` metadata
    assert_eq!(tr.dims(), (3, 32, 32));
    // A file that is not parquet is an error naming it.
    let d = tempfile::tempdir().unwrap();
    let bad = d.path().join("train-00000-of-00001.parquet");
    std::fs::write(&bad, b"PAR1 nope").unwrap();
    let err = parquet::read_split(&[bad], &proc, (32, 32), None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("train-00000-of-00001.parquet"), "{err}");

    // End to end: fine-tune the in21k-layout fixture on the parquet set.
    let out = d.path().join("pq");
    let (ok, stdout, stderr) = tessera(&[
        "finetune",
        "--model",
        fixture("hf_vit_model").to_str().unwrap(),
        "--dataset",
        dir.to_str().unwrap(),
        "--epochs",
        "3",
        "--batch-size",
        "6",
        "--lr",
        "2e-3",
        "--output",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert!(ok, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(
        v["test_accuracy"].as_f64().unwrap() >= 5.0 / 6.0,
        "{stdout}"
    );
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["id2label"]["0"], "blue_things");
    // Fine-tuning decays as HF Trainer does (tests/optim_decay.rs checks the rule itself).
    let ckpt = tessera::train::latest_checkpoint(&out).unwrap();
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ckpt.join("trainer_state.json")).unwrap())
            .unwrap();
    assert_eq!(state["config"]["optim"]["decay"], "hf_trainer");
}
