//! Data-parallel training across processes, on the CPU (what NCCL does on GPUs, with the same
//! sharding, bucketing and rank-0-writes logic): `tessera train --devices cpu,cpu` launches two
//! ranks that talk over TCP. Two ranks with batch b must train the same weights as one process
//! with batch 2b (up to float summation order), and a stopped-and-resumed two-rank run must
//! equal an uninterrupted one bit for bit.
mod common;
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

fn train(out: &Path, extra: &[&str]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args([
            "train",
            "--dataset",
            "digits",
            "--epochs",
            "2",
            "--dropout",
            "0",
            "--threads",
            "1",
            "--device",
            "cpu",
            "--json",
            "--output",
        ])
        .arg(out)
        .args(extra)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

fn weights(dir: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap()
}

/// Root-mean-square difference over every weight.
fn rms_diff(a: &HashMap<String, Tensor>, b: &HashMap<String, Tensor>) -> f64 {
    let (mut s, mut n) = (0f64, 0usize);
    for (k, t) in a {
        let d = (t - &b[k]).unwrap().sqr().unwrap().sum_all().unwrap();
        s += d.to_scalar::<f32>().unwrap() as f64;
        n += t.elem_count();
    }
    (s / n as f64).sqrt()
}

fn max_diff(a: &HashMap<String, Tensor>, b: &HashMap<String, Tensor>) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .map(|(k, t)| common::max_abs_diff(t, &b[k]))
        .fold(0.0, f32::max)
}

#[test]
fn two_ranks_train_what_one_process_trains_with_their_joint_batch() {
    let d = tempfile::tempdir().unwrap();
    let (two, one) = (d.path().join("two"), d.path().join("one"));
    let (ok, stdout, stderr) = train(&two, &["--batch-size", "16", "--devices", "cpu,cpu"]);
    assert!(ok, "{stderr}");
    // Rank 0 alone reports: one JSON line, one summary.
    assert_eq!(stdout.trim().lines().count(), 1, "{stdout}");
    let r2: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let (ok, stdout, stderr) = train(&one, &["--batch-size", "32"]);
    assert!(ok, "{stderr}");
    let r1: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let (w2, w1) = (weights(&two), weights(&one));
    let diff = rms_diff(&w2, &w1);
    eprintln!(
        "two ranks vs one: rms {diff:.3e}, max {:.3e}",
        max_diff(&w2, &w1)
    );
    let acc = |r: &serde_json::Value| r["test_accuracy"].as_f64().unwrap();
    assert!((acc(&r2) - acc(&r1)).abs() < 0.01, "{r2} vs {r1}");
    // Different data per rank would not be equivalent: a batch of 16 in one process is not.
    let (ok, _, stderr) = train(&d.path().join("half"), &["--batch-size", "16"]);
    assert!(ok, "{stderr}");
    let other = rms_diff(&weights(&d.path().join("half")), &w2);
    eprintln!("two ranks vs one process at half the batch: rms {other:.3e}");
    // Not zero: one process sums 32 per-item gradients in one graph, two ranks average two
    // 16-item means, and Adam turns rounding noise in near-zero gradients into lr-sized steps.
    assert!(diff < 1e-4 && diff < other / 100.0, "two ranks vs one process: rms weight difference {diff} (vs {other} for another batch size)");
}

#[test]
fn two_ranks_resume_bit_for_bit() {
    let d = tempfile::tempdir().unwrap();
    let (whole, parts) = (d.path().join("whole"), d.path().join("parts"));
    let ranks = ["--batch-size", "24", "--devices", "cpu,cpu"];
    let (ok, _, stderr) = train(&whole, &ranks);
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = train(&parts, &[&ranks[..], &["--stop-after", "1"]].concat());
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = train(&parts, &[&ranks[..], &["--resume"]].concat());
    assert!(ok, "{stderr}");
    assert_eq!(max_diff(&weights(&whole), &weights(&parts)), 0.0);
    let metrics = |p: &Path| std::fs::read_to_string(p.join("metrics.jsonl")).unwrap();
    // The same epochs logged once each (rank 0 writes), with the same numbers but the timing.
    let strip = |s: String| -> Vec<f64> {
        s.lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["test_loss"]
                    .as_f64()
                    .unwrap()
            })
            .collect()
    };
    assert_eq!(strip(metrics(&whole)), strip(metrics(&parts)));
    assert_eq!(strip(metrics(&whole)).len(), 2);
}

#[test]
fn a_failing_rank_fails_the_job_with_one_clear_line() {
    let d = tempfile::tempdir().unwrap();
    let (ok, _, stderr) = train(
        &d.path().join("x"),
        &["--devices", "cpu,cpu", "--batch-size", "0"],
    );
    assert!(!ok);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("error:"), "{stderr}");
    let (ok, _, stderr) = train(&d.path().join("y"), &["--devices", "0,cpu"]);
    assert!(!ok);
    assert!(stderr.contains("not a mix"), "{stderr}");
}
