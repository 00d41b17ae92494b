//! DETR trains: every parameter but the frozen batch norms gets a gradient through the set
//! loss (with auxiliary layers), the loss falls when a tiny model fits a few generated scenes,
//! and the COCO evaluation of its detections runs end to end.
use tessera::data::detection_scenes::write_coco;
use tessera::image::ProcessorConfig;
use tessera::models::detr::{Detr, DetrConfig};
use tessera::models::{LoadOptions, Pretrained};
use tessera::train::detr_train::{
    evaluate_detr, train_detr, CocoDir, DetrFitOptions, DetrTrainConfig,
};

fn tiny() -> DetrConfig {
    serde_json::from_value(serde_json::json!({
        "d_model": 32, "encoder_layers": 1, "decoder_layers": 2, "encoder_attention_heads": 4,
        "decoder_attention_heads": 4, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64, "num_queries": 8,
        "auxiliary_loss": true, "use_timm_backbone": false,
        "backbone_config": {"embedding_size": 8, "hidden_sizes": [8, 16, 24, 32], "depths": [1, 1, 1, 1], "layer_type": "bottleneck"},
        "id2label": {"0": "N/A", "1": "circle", "2": "square", "3": "triangle", "4": "diamond", "5": "cross", "6": "ring"}
    }))
    .unwrap()
}

/// `n` generated 64×64 scenes (seeded) in a temporary COCO directory, and a processor that
/// keeps them 64×64.
fn scenes(n: usize, seed: u64) -> (tempfile::TempDir, CocoDir, ProcessorConfig) {
    let d = tempfile::tempdir().unwrap();
    write_coco(&d.path().join("data"), n, 64, 64, seed).unwrap();
    let data = CocoDir::open(&d.path().join("data")).unwrap();
    (d, data, ProcessorConfig::detr_sized(64, 64))
}

/// A tiny trainable DETR, seeded.
fn fresh(seed: u64) -> tessera::models::Loaded<Detr> {
    Detr::from_config(&tiny(), &LoadOptions::default().trainable().seed(seed)).unwrap()
}

/// Trains without keeping anything on disk.
fn train(
    loaded: &tessera::models::Loaded<Detr>,
    proc: &ProcessorConfig,
    data: &CocoDir,
    cfg: &DetrTrainConfig,
) -> Vec<tessera::train::detr_train::EpochLog> {
    train_detr(loaded, proc, data, cfg, &DetrFitOptions::default(), |_| {}).unwrap()
}

#[test]
fn detr_learns_and_every_parameter_gets_a_gradient() {
    let (d, data, proc) = scenes(4, 3);
    let loaded = fresh(1);

    // One backward reaches every trainable tensor; only the frozen batch norms are left out.
    let vars = loaded.store.vars();
    let img = tessera::image::open(&d.path().join("data/images/000000.png")).unwrap();
    let batch = proc
        .batch_padded(&[img], &candle_core::Device::Cpu)
        .unwrap();
    let out = loaded
        .model
        .forward(
            &batch.pixel_values,
            &batch.pixel_mask,
            &mut tessera::nn::Ctx::eval(),
        )
        .unwrap();
    assert_eq!(out.auxiliary.len(), 1);
    let t = tessera::train::detr_loss::Target {
        class_labels: vec![1, 3],
        boxes: vec![[0.5, 0.5, 0.2, 0.3], [0.3, 0.6, 0.1, 0.1]],
    };
    let loss = tessera::train::detr_loss::detr_loss(
        &out.logits,
        &out.pred_boxes,
        &out.auxiliary,
        &[t],
        &tessera::train::detr_loss::DetrLossConfig::new(7),
    )
    .unwrap();
    let grads = loss.total.backward().unwrap();
    let (mut with, mut frozen) = (0, 0);
    for (name, v) in &vars {
        let bn = name.contains("normalization.")
            || name.contains(".bn")
            || name.contains("downsample.1.");
        match grads.get(v.as_tensor()) {
            Some(g) => {
                assert!(!bn, "{name}: a frozen batch norm got a gradient");
                let s = g
                    .abs()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                // The first decoder layer's queries start at zero, so its self-attention values
                // are all its v bias: the attention pattern cannot matter (q/k projections) and
                // the v weight multiplies zeros; they get a zero gradient (up to rounding; in
                // PyTorch too).
                let l0 = "model.decoder.layers.0.self_attn.";
                let degenerate = name.starts_with(&format!("{l0}q_proj"))
                    || name.starts_with(&format!("{l0}k_proj"))
                    || name == &format!("{l0}v_proj.weight");
                if degenerate {
                    assert!(s <= 1e-6, "{name}: {s}");
                } else {
                    assert!(s.is_finite() && s > 0.0, "{name}: gradient {s}");
                }
                with += 1;
            }
            None => {
                assert!(bn, "{name} got no gradient");
                frozen += 1;
            }
        }
    }
    eprintln!("{with} tensors with gradients, {frozen} frozen batch-norm tensors without");
    assert!(with > 60 && frozen > 0);

    let cfg = DetrTrainConfig {
        epochs: 100,
        batch_size: 4,
        lr: 2e-3,
        backbone_lr_scale: 0.1,
        clip: 1.0,
        ..DetrTrainConfig::default()
    };
    let logs = train(&loaded, &proc, &data, &cfg);
    let (first, last) = (logs[0].loss, logs[logs.len() - 1].loss);
    eprintln!(
        "loss {first:.3} → {last:.3} in {} epochs ({:.1} s)",
        logs.len(),
        logs.iter().map(|l| l.seconds).sum::<f64>()
    );
    assert!(
        last < 0.7 * first,
        "the loss did not fall: {first} → {last}"
    );
    let stats = evaluate_detr(&loaded.model, &proc, &data).unwrap();
    eprintln!("{stats:?}");
    assert!((0.0..=1.0).contains(&stats.ap50));
}

fn weights(store: &tessera::nn::ParamStore) -> Vec<(String, Vec<f32>)> {
    let mut v: Vec<_> = store
        .vars()
        .into_iter()
        .map(|(n, t)| (n, t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Stopped after one epoch and resumed, a run ends where an uninterrupted one does, bit for
/// bit (weights, moments, per-epoch shuffles); a resumed run with other settings is refused.
#[test]
fn detr_training_resumes_bit_for_bit() {
    let (d, data, proc) = scenes(6, 5);
    let cfg = DetrTrainConfig {
        epochs: 3,
        batch_size: 4,
        lr: 1e-3,
        lr_drop: Some(2),
        ..DetrTrainConfig::default()
    };
    let straight = fresh(3);
    let full = train(&straight, &proc, &data, &cfg);
    let out = d.path().join("run");
    let opts = |resume, stop_after| DetrFitOptions {
        out: Some(&out),
        resume,
        stop_after,
        files: vec![("config.json".into(), straight.model.config_json().unwrap())],
        ..DetrFitOptions::default()
    };
    let first = fresh(3);
    train_detr(&first, &proc, &data, &cfg, &opts(false, Some(1)), |_| {}).unwrap();
    let second = fresh(3);
    let resumed = train_detr(&second, &proc, &data, &cfg, &opts(true, None), |_| {}).unwrap();
    assert_eq!(resumed.len(), 3);
    assert_eq!(resumed[2].lr, 1e-4, "the step schedule continues");
    for (a, b) in full.iter().zip(&resumed) {
        assert_eq!(a.loss, b.loss, "epoch {}", a.epoch);
    }
    assert!(
        weights(&straight.store) == weights(&second.store),
        "weights differ after resume"
    );
    let lines = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 3);
    // Another learning rate is another run.
    let other = DetrTrainConfig { lr: 5e-4, ..cfg };
    let e = train_detr(&fresh(3), &proc, &data, &other, &opts(true, None), |_| {})
        .expect_err("a resume with other settings must be refused")
        .to_string();
    assert!(
        e.contains("only the epoch count and the rate drop may change"),
        "{e}"
    );
    // A longer schedule with a later drop continues the run: the fourth epoch at the full rate,
    // where the saved schedule (drop after 2) would have run it at a tenth.
    let longer = DetrTrainConfig {
        epochs: 4,
        lr_drop: Some(10),
        ..cfg
    };
    let more = train_detr(&fresh(3), &proc, &data, &longer, &opts(true, None), |_| {}).unwrap();
    assert_eq!(more.len(), 4);
    assert_eq!(more[2].loss, full[2].loss);
    assert_eq!(more[3].lr, 1e-3);
}

/// From scratch the backbone's batch norms learn (weights and biases get gradients, training
/// forwards move the running statistics); the cell-classification pretraining lowers its loss
/// and raises its held-out cell accuracy above chance; a frozen backbone then stays bit-equal
/// through DETR's training while the rest trains.
#[test]
fn backbone_pretrains_with_learned_batch_norms_then_freezes() {
    use tessera::train::backbone_pretrain::{pretrain_backbone, PretrainConfig};
    let (_d, data, proc) = scenes(16, 11);
    let mut loaded = fresh(2);
    loaded.model.learn_backbone_statistics().unwrap();
    let stem = "model.backbone.conv_encoder.model.embedder.embedder.normalization.";
    let get = |name: &str| {
        weights(&loaded.store)
            .into_iter()
            .find(|(n, _)| n == name)
            .unwrap()
            .1
    };
    let mean0 = get(&format!("{stem}running_mean"));
    let logs = pretrain_backbone(
        &loaded,
        &proc,
        &data,
        Some(&data),
        &PretrainConfig {
            epochs: 4,
            batch_size: 8,
            ..PretrainConfig::default()
        },
        |_| {},
    )
    .unwrap();
    eprintln!("{logs:?}");
    assert_eq!(logs.len(), 4);
    assert!(logs[3].loss < logs[0].loss, "{logs:?}");
    assert_ne!(get(&format!("{stem}running_mean")), mean0);
    assert_ne!(get(&format!("{stem}weight")), vec![1.0; 8]);

    loaded.model.freeze_backbone();
    let before = weights(&loaded.store);
    let cfg = DetrTrainConfig {
        epochs: 1,
        batch_size: 8,
        backbone_lr_scale: 0.0,
        ..DetrTrainConfig::default()
    };
    train(&loaded, &proc, &data, &cfg);
    let after = weights(&loaded.store);
    let (mut same, mut moved) = (0, 0);
    for ((n, a), (_, b)) in before.iter().zip(&after) {
        if n.starts_with("model.backbone.") {
            assert_eq!(a, b, "{n} changed in a frozen backbone");
            same += 1;
        } else if a != b {
            moved += 1;
        }
    }
    assert!(same > 20 && moved > 20, "{same} frozen, {moved} trained");
}

/// With the backbone frozen, the trainer keeps each image's backbone map from its first epoch
/// instead of recomputing it: the same losses and weights as recomputing every batch.
#[test]
fn kept_backbone_maps_train_as_recomputed_ones() {
    let (_d, data, proc) = scenes(10, 13);
    let cfg = DetrTrainConfig {
        epochs: 3,
        batch_size: 4,
        lr: 1e-3,
        backbone_lr_scale: 0.0,
        ..DetrTrainConfig::default()
    };
    let run = |recompute_backbone| {
        let mut loaded = fresh(6);
        loaded.model.freeze_backbone();
        let opts = DetrFitOptions {
            recompute_backbone,
            ..DetrFitOptions::default()
        };
        let logs = train_detr(&loaded, &proc, &data, &cfg, &opts, |_| {}).unwrap();
        (logs, weights(&loaded.store))
    };
    let (kept, wk) = run(false);
    let (recomputed, wr) = run(true);
    // Epoch 1 computes every map the same way in both runs.
    assert_eq!(kept[0].loss, recomputed[0].loss);
    for (a, b) in kept.iter().zip(&recomputed) {
        // Batches are reshuffled each epoch, so a kept map was computed in another batch
        // than the one it is read in: equal up to the GEMM's summation order (measured:
        // 3e-8 relative on the losses, 7e-6 on the weights after 3 epochs at lr 1e-3).
        assert!(
            (a.loss - b.loss).abs() <= 1e-6 * b.loss.abs(),
            "epoch {}: {} kept vs {} recomputed",
            a.epoch,
            a.loss,
            b.loss
        );
    }
    let mut worst = 0f32;
    for ((n, a), (_, b)) in wk.iter().zip(&wr) {
        for (x, y) in a.iter().zip(b) {
            worst = worst.max((x - y).abs());
        }
        assert!(worst < 2e-5, "{n}: weights differ by {worst}");
    }
    assert!(kept[2].loss < kept[0].loss, "{kept:?}");
    let reused = |l: &[tessera::train::detr_train::EpochLog]| {
        l.iter().map(|e| e.backbone_maps_reused).collect::<Vec<_>>()
    };
    assert_eq!(reused(&kept), [0, 10, 10]);
    assert_eq!(reused(&recomputed), [0, 0, 0]);
}
