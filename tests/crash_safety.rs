//! Crash safety, proven by killing: `train` (checkpointing every few steps) and `index` are
//! SIGKILLed at random moments, dozens of times, and restarted. Training must end bit-identical
//! to an uninterrupted run; after every kill the index must load and hold only complete rows.
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Kills per test.
const KILLS: usize = 50;

fn tessera() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tessera"));
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    c
}

/// A deterministic sequence of delays (ms) in [lo, hi).
struct Delays(u64);

impl Delays {
    fn next(&mut self, lo: u64, hi: u64) -> Duration {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        Duration::from_millis(lo + (self.0 >> 33) % (hi - lo))
    }
}

/// Waits up to `d` for `child`; kills it (SIGKILL) if still running. True when it was killed.
fn kill_after(child: &mut Child, d: Duration) -> bool {
    let t0 = std::time::Instant::now();
    while t0.elapsed() < d {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                std::io::Read::read_to_string(&mut e, &mut err).unwrap();
            }
            assert!(status.success(), "the run failed by itself: {err}");
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    true
}

fn tensors(path: &Path) -> Vec<(String, Vec<u32>)> {
    let t = tessera::nn::store::load_safetensors(path, &candle_core::Device::Cpu).unwrap();
    let mut v: Vec<(String, Vec<u32>)> = t
        .into_iter()
        .map(|(k, t)| {
            let bits = t
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                .iter()
                .map(|f| f.to_bits())
                .collect();
            (k, bits)
        })
        .collect();
    v.sort();
    v
}

#[test]
fn killed_training_resumes_bit_for_bit() {
    let d = tempfile::tempdir().unwrap();
    let args = |out: &Path| {
        let mut c = tessera();
        c.args([
            "train",
            "--epochs",
            "3",
            "--save-steps",
            "7",
            "--threads",
            "2",
            "--output",
        ])
        .arg(out);
        c
    };
    let reference = d.path().join("ref");
    let o = args(&reference).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let run = d.path().join("run");
    let mut delays = Delays(42);
    let (mut kills, mut starts) = (0, 0);
    loop {
        let mut c = args(&run);
        // Resume when a checkpoint exists (a kill before the first one restarts from scratch).
        if tessera::train::latest_checkpoint(&run).is_some() {
            c.arg("--resume");
        }
        let mut child = c.spawn().unwrap();
        starts += 1;
        let wait = if kills < KILLS {
            delays.next(30, 700)
        } else {
            Duration::from_secs(600)
        };
        if kill_after(&mut child, wait) {
            kills += 1;
            // The checkpoint `latest` names is always complete.
            if let Some(ckpt) = tessera::train::latest_checkpoint(&run) {
                for f in [
                    "model.safetensors",
                    "optimizer.safetensors",
                    "trainer_state.json",
                    "config.json",
                ] {
                    assert!(ckpt.join(f).is_file(), "{} lacks {f}", ckpt.display());
                }
                assert!(!tensors(&ckpt.join("model.safetensors")).is_empty());
            }
        } else if kills >= KILLS {
            break;
        } else {
            // Finished between kills: start over, to be killed some more.
            std::fs::remove_dir_all(&run).unwrap();
        }
        assert!(starts < 10 * KILLS, "no progress after {starts} starts");
    }
    println!("training: {kills} kills over {starts} starts");
    assert!(kills >= KILLS);
    assert_eq!(
        tensors(&run.join("model.safetensors")),
        tensors(&reference.join("model.safetensors")),
        "the killed and resumed run ends with other weights"
    );
    let metrics = |p: &Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(p.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                // Times differ; everything else must not.
                v.as_object_mut().unwrap().remove("seconds");
                v.as_object_mut().unwrap().remove("images_per_second");
                v
            })
            .collect()
    };
    assert_eq!(metrics(&run), metrics(&reference));
    // Checkpointing mid-epoch changes nothing either: the same run without --save-steps.
    let plain = d.path().join("plain");
    let o = tessera()
        .args(["train", "--epochs", "3", "--threads", "2", "--output"])
        .arg(&plain)
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_eq!(metrics(&plain), metrics(&reference));
    assert_eq!(
        tensors(&plain.join("model.safetensors")),
        tensors(&reference.join("model.safetensors"))
    );
}

#[test]
fn killed_indexing_leaves_only_complete_rows() {
    use tessera::models::clip::{Clip, ClipConfig};
    use tessera::models::{LoadOptions, Pretrained};
    use tessera::pipelines::Index;
    let d = tempfile::tempdir().unwrap();
    let bpe = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("assets/bpe_simple_vocab_16e6.txt.gz");
    let model = d.path().join("clip");
    let cfg: ClipConfig = serde_json::from_value(serde_json::json!({
        "text_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2},
        "vision_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
        "projection_dim": 16
    }))
    .unwrap();
    let l = Clip::from_config(&cfg, &LoadOptions::default()).unwrap();
    l.model.save_pretrained(&l.store, &model).unwrap();
    let photos = d.path().join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    for k in 0..120u32 {
        image::RgbImage::from_fn(40, 30, |x, y| {
            image::Rgb([(x * 6 + k) as u8, (y * 8) as u8, (k * 2) as u8])
        })
        .save(photos.join(format!("{k:03}.png")))
        .unwrap();
    }
    let index_at = |name: &str| d.path().join(name);
    let args = |index: &Path| {
        let mut c = tessera();
        c.arg("index")
            .arg("--model")
            .arg(&model)
            .arg("--bpe")
            .arg(&bpe)
            .args(["--batch-size", "1", "--index"])
            .arg(index)
            .arg(&photos);
        c
    };
    let reference = index_at("ref.safetensors");
    let o = args(&reference).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want = Index::load(&reference).unwrap();
    let row_of = |idx: &Index, path: &str| -> Vec<f32> {
        let i = idx
            .manifest
            .entries
            .iter()
            .position(|e| e.path == path)
            .unwrap();
        idx.embeds[i].clone()
    };

    let index = index_at("run.safetensors");
    let mut delays = Delays(7);
    let (mut kills, mut starts, mut seen_partial) = (0, 0, 0);
    loop {
        let mut child = args(&index).spawn().unwrap();
        starts += 1;
        let wait = if kills < KILLS {
            delays.next(30, 900)
        } else {
            Duration::from_secs(600)
        };
        let killed = kill_after(&mut child, wait);
        if index.exists() {
            // Loads, and every row it holds is the complete embedding of its image.
            let idx = Index::load(&index).unwrap_or_else(|e| panic!("after a kill: {e}"));
            assert_eq!(idx.embeds.len(), idx.manifest.entries.len());
            if idx.embeds.len() < want.embeds.len() {
                seen_partial += 1;
            }
            for (e, row) in idx.manifest.entries.iter().zip(&idx.embeds) {
                assert_eq!(
                    row,
                    &row_of(&want, &e.path),
                    "{}: an incomplete row",
                    e.path
                );
            }
        }
        if killed {
            kills += 1;
        } else if kills >= KILLS {
            break;
        } else {
            // Finished between kills: start over, to be killed some more.
            std::fs::remove_file(&index).unwrap();
        }
        assert!(starts < 10 * KILLS, "no progress after {starts} starts");
    }
    println!(
        "indexing: {kills} kills over {starts} starts ({seen_partial} partial indexes checked)"
    );
    let got = Index::load(&index).unwrap();
    assert_eq!(got.manifest.entries, want.manifest.entries);
    assert_eq!(got.embeds, want.embeds);
}
