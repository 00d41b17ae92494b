//! The `tessera` binary: train --json, predict, and one-line errors (never a panic).
use std::process::Command;

fn tessera() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
}

fn run(cmd: &mut Command) -> (bool, String, String) {
    let o = cmd.output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

fn assert_clean_error(stderr: &str) {
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    assert!(stderr.trim_start().starts_with("error:"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "not one line: {stderr}");
}

#[test]
fn train_json_then_predict() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("run");
    let (ok, stdout, stderr) = run(tessera()
        .args(["train", "--epochs", "3", "--json", "--output"])
        .arg(&out));
    assert!(ok, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    for k in [
        "test_accuracy",
        "test_loss",
        "epochs",
        "train_seconds",
        "checkpoint",
    ] {
        assert!(v.get(k).is_some(), "missing {k} in {stdout}");
    }
    assert_eq!(v["epochs"], 3);
    // `train` decays as timm does (tests/optim_decay.rs checks the rule itself).
    let ckpt = tessera::train::latest_checkpoint(&out).unwrap();
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ckpt.join("trainer_state.json")).unwrap())
            .unwrap();
    assert_eq!(state["config"]["optim"]["decay"], "timm");
    // Three epochs already learn (chance is 0.1; measured about 0.8).
    assert!(v["test_accuracy"].as_f64().unwrap() > 0.5, "{stdout}");
    // Predict on a digit drawn as a PNG.
    let all = tessera::data::digits().unwrap();
    let img = image::GrayImage::from_fn(8, 8, |x, y| {
        image::Luma([(all.pixels[(y * 8 + x) as usize] * 255.0) as u8])
    });
    let png = d.path().join("digit.png");
    img.save(&png).unwrap();
    let (ok, stdout, stderr) = run(tessera()
        .args(["predict", "--json", "--top-k", "3", "--model"])
        .arg(&out)
        .arg(&png));
    assert!(ok, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let preds = v[0]["predictions"].as_array().unwrap();
    assert_eq!(preds.len(), 3);
    assert!(preds[0]["score"].as_f64().unwrap() >= preds[1]["score"].as_f64().unwrap());

    // Bad inputs: one-line errors, non-zero exit.
    let (ok, _, e) = run(tessera()
        .args(["predict", "--model"])
        .arg(&out)
        .arg(d.path().join("missing.png")));
    assert!(!ok);
    assert_clean_error(&e);
    assert!(e.contains("missing.png"));
    let bad = d.path().join("corrupt.jpg");
    std::fs::write(&bad, b"\xff\xd8\xff\xe0 not really a jpeg").unwrap();
    let (ok, _, e) = run(tessera().args(["predict", "--model"]).arg(&out).arg(&bad));
    assert!(!ok);
    assert_clean_error(&e);
    assert!(e.contains("corrupt.jpg"));
    // A checkpoint whose config asks for an unsupported channel count.
    let cfg_path = out.join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg["num_channels"] = 2.into();
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let (ok, _, e) = run(tessera().args(["predict", "--model"]).arg(&out).arg(&png));
    assert!(!ok);
    assert_clean_error(&e);
    assert!(e.contains("image_mean") || e.contains("channel"), "{e}");
    // No checkpoint at all.
    let (ok, _, e) = run(tessera()
        .args(["predict", "--model"])
        .arg(d.path().join("nothing"))
        .arg(&png));
    assert!(!ok);
    assert_clean_error(&e);
}

#[test]
fn unknown_preset_and_dataset_are_clear_errors() {
    let d = tempfile::tempdir().unwrap();
    let (ok, _, e) = run(tessera()
        .args(["train", "--preset", "Q/99", "--output"])
        .arg(d.path()));
    assert!(!ok);
    assert_clean_error(&e);
    assert!(e.contains("unknown preset") && e.contains("B/16"), "{e}");
    let (ok, _, e) = run(tessera()
        .args(["train", "--dataset", "/no/such/dir", "--output"])
        .arg(d.path()));
    assert!(!ok);
    assert_clean_error(&e);
    assert!(e.contains("/no/such/dir"), "{e}");
    let (ok, _, e) = run(tessera()
        .args(["train", "--resume", "--output"])
        .arg(d.path().join("fresh")));
    assert!(!ok);
    assert_clean_error(&e);
}

#[test]
fn clip_demo_rejects_bad_settings() {
    let d = tempfile::tempdir().unwrap();
    for (args, needle) in [
        (vec!["--epochs", "0"], "epoch"),
        (vec!["--unnamed", "1.5"], "unnamed"),
        (vec!["--patch", "5"], "patch 5"),
        (vec!["--batch-size", "1"], "batch size"),
    ] {
        let (ok, _, e) = run(tessera()
            .arg("clip-demo")
            .args(&args)
            .arg("--output")
            .arg(d.path()));
        assert!(!ok, "{args:?}");
        assert_clean_error(&e);
        assert!(e.contains(needle), "{args:?}: {e}");
    }
}

/// `train-detr` on a few small generated scenes.
const SMALL_DETR: [&str; 7] = [
    "train-detr",
    "--train-images",
    "8",
    "--val-scenes",
    "4",
    "--image-size",
    "64",
];

/// `train-detr` on generated scenes writes a model `detect` and `explain` read back (and
/// transformers would: config, processor and safetensors with its names), with metrics, curves
/// and the held-out COCO numbers; bad settings are one-line errors.
#[test]
fn train_detr_then_detect_and_explain() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("detr");
    let (ok, stdout, stderr) = run(tessera()
        .args(SMALL_DETR)
        .args([
            "--epochs",
            "2",
            "--eval-every",
            "1",
            "--pretrain-epochs",
            "2",
            "--d-model",
            "32",
        ])
        .args(["--json", "--output"])
        .arg(&out));
    assert!(ok, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["epochs"], 2);
    // The backbone was pretrained (two epochs, held-out cell accuracies), then frozen.
    let pre = v["pretrain"].as_array().unwrap();
    assert_eq!(pre.len(), 2, "{stdout}");
    let acc = pre[1]["val_object_accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc), "{stdout}");
    assert!(out.join("pretrain.json").exists());
    let ap50 = v["eval"]["ap50"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&ap50), "{stdout}");
    for f in [
        "model.safetensors",
        "config.json",
        "preprocessor_config.json",
        "metrics.jsonl",
        "curves.png",
        "eval.json",
        "latest",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["architectures"][0], "DetrForObjectDetection");
    assert_eq!(cfg["id2label"]["3"], "triangle");
    assert_eq!(
        (
            cfg["d_model"].as_u64(),
            cfg["encoder_attention_heads"].as_u64()
        ),
        (Some(32), Some(2))
    );
    let image = out.join("data/val/images/000000.png");
    let (ok, stdout, stderr) = run(tessera()
        .args(["detect", "--threshold", "0.0", "--json", "--model"])
        .arg(&out)
        .arg(&image));
    assert!(ok, "{stderr}");
    assert!(stdout.contains("\"query\""), "{stdout}");
    let heat = d.path().join("queries.png");
    let (ok, stdout, stderr) = run(tessera()
        .args(["explain", "--threshold", "0.0", "--json", "--model"])
        .arg(&out)
        .arg(&image)
        .arg("--out")
        .arg(&heat));
    assert!(ok, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let dets = v["detections"].as_array().unwrap();
    // Threshold 0 keeps every query that predicts a real class: one panel each.
    assert!(!dets.is_empty(), "{stdout}");
    let n_cells = dets[0]["values"].as_array().unwrap().len();
    assert_eq!(n_cells, 64, "a 64-pixel scene at stride 8 is an 8×8 map");
    assert!(image::open(&heat).is_ok());
    // Resuming a finished run with more epochs continues it.
    let (ok, _, stderr) = run(tessera()
        .args(SMALL_DETR)
        .args(["--epochs", "3", "--d-model", "32", "--resume", "--output"])
        .arg(&out));
    assert!(ok, "{stderr}");
    let lines = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 3, "{lines}");
    for bad in [
        vec!["--image-size", "8"],
        vec!["--epochs", "0"],
        vec!["--lr", "nan"],
        vec!["--dataset", "/nonexistent/coco"],
        vec!["--frozen-batch-norm", "--pretrain-epochs", "2"],
        vec!["--stride", "12"],
        vec!["--d-model", "40"],
    ] {
        let (ok, _, stderr) = run(tessera()
            .arg("train-detr")
            .args(&bad)
            .arg("--output")
            .arg(d.path().join("bad")));
        assert!(!ok, "{bad:?} was accepted");
        assert_clean_error(&stderr);
    }
}

/// `train-detr --model` fine-tunes a transformers DETR: a fresh class head for the scenes' 7
/// labels (the checkpoint has 5), the stem and first stage frozen as transformers freezes them,
/// the rest trained.
#[test]
fn train_detr_fine_tunes_a_checkpoint_with_a_fresh_head() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("ft");
    let base =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/detection/detr_hf");
    let (ok, _, stderr) = run(tessera()
        .args(SMALL_DETR)
        .args(["--epochs", "1", "--lr", "1e-2", "--model"])
        .arg(&base)
        .arg("--output")
        .arg(&out));
    assert!(ok, "{stderr}");
    let load = |p: &std::path::Path| {
        candle_core::safetensors::load(p.join("model.safetensors"), &candle_core::Device::Cpu)
            .unwrap()
    };
    let (before, after) = (load(&base), load(&out));
    let differs = |k: &str| {
        let (a, b) = (&before[k], &after[k]);
        a.dims() != b.dims()
            || a.sub(b)
                .unwrap()
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                > 0.0
    };
    let m = "model.backbone.conv_encoder.model.";
    assert_eq!(
        after["class_labels_classifier.weight"].dims()[0],
        8,
        "7 labels + no object"
    );
    assert!(
        !differs(&format!("{m}embedder.embedder.convolution.weight")),
        "the stem trained"
    );
    assert!(!differs(&format!(
        "{m}encoder.stages.0.layers.0.layer.1.convolution.weight"
    )));
    assert!(differs(&format!(
        "{m}encoder.stages.1.layers.0.layer.1.convolution.weight"
    )));
    assert!(differs("model.encoder.layers.0.fc1.weight"));
}

/// `--device` on the model commands: a bad name or a GPU this build lacks is one clear line
/// (the CPU-only build names the feature to rebuild with).
#[test]
fn device_option_errors_are_one_line() {
    let img = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/processor_torchvision/photo_chelsea.png");
    let model =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/perceiver_conv");
    let (ok, _, stderr) = run(tessera()
        .args(["predict", "--device", "tpu", "--model"])
        .arg(&model)
        .arg(&img));
    assert!(!ok);
    assert_clean_error(&stderr);
    assert!(stderr.contains("use auto, cpu, cuda or cuda:N"), "{stderr}");
    if !tessera::device::cuda_built() {
        let out = tempfile::tempdir().unwrap();
        let predict = || {
            let mut c = tessera();
            c.args(["predict", "--device", "cuda:1", "--model"])
                .arg(&model)
                .arg(&img);
            c
        };
        let train = || {
            let mut c = tessera();
            c.args(["train", "--device", "cuda", "--epochs", "1", "--output"])
                .arg(out.path());
            c
        };
        for mut cmd in [predict(), train()] {
            let (ok, _, stderr) = run(&mut cmd);
            assert!(!ok);
            assert_clean_error(&stderr);
            assert!(stderr.contains("built without CUDA"), "{stderr}");
        }
    }
    // auto falls back to the CPU without a GPU and runs.
    let (ok, stdout, stderr) = run(tessera()
        .args(["predict", "--device", "auto", "--model"])
        .arg(&model)
        .arg(&img));
    assert!(ok, "{stderr}");
    assert!(stdout.contains("LABEL_"), "{stdout}");
}
