//! A new user's bad inputs, through every subcommand: malformed images, model directories,
//! configs, weights, datasets, indexes and options. Each case must end as it should — a refusal
//! (non-zero exit, one short `error:` line naming the problem, no panic, no abort) or, where
//! accepting is right, a sane result — and within a time limit (no hang). Every input is made
//! here; nothing is a committed blob.
mod common;
use common::fixture;
use common::images::{jpeg, phone_jpeg, png, png_declaring, segment, sof};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tessera::models::clip::{Clip, ClipConfig};
use tessera::models::{LoadOptions, Pretrained};

const TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Clone, Debug)]
enum Expect {
    /// Refused with an error line containing every needle.
    Refuse(Vec<String>),
    /// Accepted; stdout must contain every needle.
    Accept(Vec<String>),
}

struct Case {
    name: String,
    args: Vec<OsString>,
    env: Vec<(String, String)>,
    expect: Expect,
}

fn os(v: &[&dyn AsRef<OsStr>]) -> Vec<OsString> {
    v.iter().map(|a| a.as_ref().to_os_string()).collect()
}

/// Cases are written as (name, args, expectation).
struct Corpus {
    cases: Vec<Case>,
}

impl Corpus {
    fn refuse(&mut self, name: &str, args: Vec<OsString>, needles: &[&str]) {
        self.cases.push(Case {
            name: name.into(),
            args,
            env: vec![],
            expect: Expect::Refuse(needles.iter().map(|s| s.to_string()).collect()),
        });
    }
    fn accept(&mut self, name: &str, args: Vec<OsString>, needles: &[&str]) {
        self.cases.push(Case {
            name: name.into(),
            args,
            env: vec![],
            expect: Expect::Accept(needles.iter().map(|s| s.to_string()).collect()),
        });
    }
    fn with_env(&mut self, k: &str, v: &str) {
        if let Some(c) = self.cases.last_mut() {
            c.env.push((k.into(), v.into()));
        }
    }
}

/// An edit of a `config.json`.
type Edit = Box<dyn Fn(&mut serde_json::Value)>;

enum Outcome {
    Refused(String),
    Accepted(String),
}

/// Runs `tessera args` with a deadline; the verdict or why the case failed.
fn run(case: &Case) -> Result<Outcome, String> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tessera"));
    cmd.args(&case.args)
        .env("HF_HUB_OFFLINE", "1")
        .env("RAYON_NUM_THREADS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in &case.env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    loop {
        if child.try_wait().map_err(|e| e.to_string())?.is_some() {
            break;
        }
        if t0.elapsed() > TIMEOUT {
            let _ = child.kill();
            return Err(format!("hung for more than {TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = child.wait_with_output().map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    for bad in [
        "panicked",
        "memory allocation",
        "RUST_BACKTRACE",
        "stack backtrace",
    ] {
        if stderr.contains(bad) {
            return Err(format!("{bad}: {stderr}"));
        }
    }
    match o.status.code() {
        Some(0) => Ok(Outcome::Accepted(stdout)),
        Some(_) => {
            let lines: Vec<&str> = stderr.trim().lines().collect();
            if lines.len() != 1 || !lines[0].starts_with("error:") {
                return Err(format!("not one `error:` line: {stderr}"));
            }
            if lines[0].len() > 600 {
                return Err(format!(
                    "error line too long ({}): {}",
                    lines[0].len(),
                    lines[0]
                ));
            }
            Ok(Outcome::Refused(lines[0].to_string()))
        }
        None => Err(format!("killed by a signal: {stderr}")),
    }
}

fn write(path: &Path, bytes: &[u8]) -> PathBuf {
    std::fs::write(path, bytes).unwrap();
    path.to_path_buf()
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        if e.path().is_dir() {
            copy_dir(&e.path(), &dst.join(e.file_name()));
        } else if e.path().is_file() {
            std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
        }
    }
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A copy of model directory `src` at `root/name`, with `config.json` edited by `f`.
fn with_config(
    src: &Path,
    root: &Path,
    name: &str,
    f: impl FnOnce(&mut serde_json::Value),
) -> PathBuf {
    let d = root.join(name);
    copy_dir(src, &d);
    let mut c = json(&d.join("config.json"));
    f(&mut c);
    std::fs::write(d.join("config.json"), c.to_string()).unwrap();
    d
}

/// A copy of `src` whose weights are the tensors of `f(name, tensor)` (None drops it).
fn with_weights(
    src: &Path,
    root: &Path,
    name: &str,
    f: impl Fn(&str, candle_core::Tensor) -> Option<candle_core::Tensor>,
) -> PathBuf {
    let d = root.join(name);
    copy_dir(src, &d);
    let t = tessera::nn::store::load_safetensors(
        &d.join("model.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let mut out: Vec<(String, candle_core::Tensor)> = t
        .into_iter()
        .filter_map(|(k, v)| f(&k, v).map(|v| (k, v)))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    tessera::nn::store::save_safetensors(&d.join("model.safetensors"), &out).unwrap();
    d
}

/// An ImageFolder at `root` with `classes` × `n` small PNGs.
fn image_folder(root: &Path, classes: &[&str], n: usize) -> PathBuf {
    for (ci, c) in classes.iter().enumerate() {
        std::fs::create_dir_all(root.join(c)).unwrap();
        for k in 0..n {
            image::RgbImage::from_fn(12, 10, |x, y| {
                image::Rgb([(x * 20) as u8, (ci * 100) as u8, (y * 9 + k as u32) as u8])
            })
            .save(root.join(c).join(format!("{k}.png")))
            .unwrap();
        }
    }
    root.to_path_buf()
}

#[test]
fn every_subcommand_refuses_bad_input_cleanly() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    let bin = env!("CARGO_BIN_EXE_tessera");
    let bpe = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/bpe_simple_vocab_16e6.txt.gz");
    assert!(bpe.exists(), "run tools/fetch_clip_bpe.sh");

    // --- models the cases start from -------------------------------------------------------
    let seed = r.join("seed");
    let o = Command::new(bin)
        .args(["train", "--epochs", "1", "--output"])
        .arg(&seed)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let hf = r.join("hf");
    copy_dir(&fixture("hf_vit_cls"), &hf);
    let prenorm = r.join("prenorm");
    copy_dir(&fixture("seed_vit_prenorm_32"), &prenorm);
    let clip = r.join("clip");
    {
        let cfg: ClipConfig = serde_json::from_value(serde_json::json!({
            "text_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2},
            "vision_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
            "projection_dim": 16
        }))
        .unwrap();
        let l = Clip::from_config(&cfg, &LoadOptions::default()).unwrap();
        l.model.save_pretrained(&l.store, &clip).unwrap();
    }

    // --- images --------------------------------------------------------------------------------
    let img = r.join("img");
    std::fs::create_dir_all(&img).unwrap();
    let good = write(&img.join("good.png"), &png(40, 30));
    let good_jpg = write(
        &img.join("good.jpg"),
        &jpeg(40, 30, mozjpeg::ColorSpace::JCS_RGB, 1),
    );
    let tiny = write(&img.join("tiny.png"), &png(1, 1));
    let grey = img.join("grey.png");
    image::GrayImage::from_fn(9, 7, |x, y| image::Luma([(x * y) as u8]))
        .save(&grey)
        .unwrap();
    let rgba = img.join("rgba.png");
    image::RgbaImage::from_fn(9, 7, |x, y| image::Rgba([x as u8, y as u8, 3, 100]))
        .save(&rgba)
        .unwrap();
    let deep = img.join("deep16.png");
    image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_fn(9, 7, |x, y| {
        image::Luma([(x * 1000 + y) as u16])
    })
    .save(&deep)
    .unwrap();
    let phone = phone_jpeg(96, 64);
    let phone_ok = write(&img.join("phone.jpg"), &phone);
    let scan = segment(&phone, &[0xDA]);
    let mut bad_images: Vec<(&str, Vec<u8>, &str)> = vec![
        ("missing.png", vec![], "missing.png"),
        ("empty.png", vec![], "empty"),
        ("text.png", b"just some text".to_vec(), "text.png"),
        (
            "noise.jpg",
            vec![0xFF, 0xD8, 0xFF, 0x00, 1, 2, 3, 4, 5],
            "noise.jpg",
        ),
        (
            "sigpng.png",
            b"\x89PNG\r\n\x1a\n garbage garbage".to_vec(),
            "sigpng.png",
        ),
        (
            "gif.png",
            b"GIF89a\x01\x00\x01\x00\x00\x00\x00;".to_vec(),
            "gif.png",
        ),
        (
            "bomb.png",
            png_declaring(65500, 65500),
            "decompression-bomb",
        ),
        ("zero.png", png_declaring(0, 16), "zero.png"),
        ("cut.png", png(40, 30)[..60].to_vec(), "cut.png"),
        (
            "phone_cut.jpg",
            phone[..(scan + phone.len()) / 2].to_vec(),
            "truncated",
        ),
        ("no_eoi.jpg", phone[..phone.len() - 2].to_vec(), "truncated"),
        (
            "cmyk.jpg",
            jpeg(16, 16, mozjpeg::ColorSpace::JCS_CMYK, 2),
            "CMYK",
        ),
    ];
    {
        let mut j = jpeg(8, 8, mozjpeg::ColorSpace::JCS_RGB, 3);
        let s = sof(&j);
        j[s + 5..s + 9].copy_from_slice(&[0xFF, 0xDC, 0xFF, 0xDC]);
        bad_images.push(("bomb.jpg", j, "decompression-bomb"));
        let j = jpeg(40, 30, mozjpeg::ColorSpace::JCS_RGB, 4);
        bad_images.push(("half.jpg", j[..j.len() / 2].to_vec(), "truncated"));
    }
    let bad_image_paths: Vec<(String, PathBuf, String)> = bad_images
        .iter()
        .map(|(n, b, needle)| {
            let p = img.join(n);
            if *n != "missing.png" {
                std::fs::write(&p, b).unwrap();
            }
            (n.to_string(), p, needle.to_string())
        })
        .collect();
    // A valid image whose file name is not UTF-8.
    #[cfg(unix)]
    let non_utf8 = {
        use std::os::unix::ffi::OsStrExt;
        let p = img.join(OsStr::from_bytes(b"caf\xe9.png"));
        std::fs::copy(&good, &p).unwrap();
        p
    };
    let mut c = Corpus { cases: vec![] };

    // --- predict ------------------------------------------------------------------------------
    for (model_name, model) in [("seed", &seed), ("hf", &hf)] {
        for (n, p, needle) in &bad_image_paths {
            c.refuse(
                &format!("predict {model_name} {n}"),
                os(&[&"predict", &"--model", model, p]),
                &[needle.as_str()],
            );
        }
        for p in [&good, &good_jpg, &tiny, &grey, &rgba, &deep, &phone_ok] {
            c.accept(
                &format!("predict {model_name} {}", p.display()),
                os(&[&"predict", &"--json", &"--model", model, p]),
                &["\"score\""],
            );
        }
        #[cfg(unix)]
        c.accept(
            &format!("predict {model_name} non-UTF-8 name"),
            os(&[&"predict", &"--json", &"--model", model, &non_utf8]),
            &["caf"],
        );
        c.refuse(
            &format!("predict {model_name} --top-k 0"),
            os(&[&"predict", &"--top-k", &"0", &"--model", model, &good]),
            &["top_k"],
        );
        c.refuse(
            &format!("predict {model_name} --dtype f64"),
            os(&[&"predict", &"--dtype", &"f64", &"--model", model, &good]),
            &["dtype"],
        );
        c.refuse(
            &format!("predict {model_name} --processor-backend cv2"),
            os(&[
                &"predict",
                &"--processor-backend",
                &"cv2",
                &"--model",
                model,
                &good,
            ]),
            &["cv2"],
        );
    }
    c.accept(
        "predict under a lower pixel limit passes small images",
        os(&[&"predict", &"--model", &hf, &good]),
        &["good.png"],
    );
    c.with_env("TESSERA_MAX_IMAGE_PIXELS", "1000000");
    c.refuse(
        "predict above TESSERA_MAX_IMAGE_PIXELS",
        os(&[&"predict", &"--model", &hf, &good]),
        &["decompression-bomb"],
    );
    c.with_env("TESSERA_MAX_IMAGE_PIXELS", "100");
    c.refuse(
        "TESSERA_MAX_IMAGE_PIXELS not a number",
        os(&[&"predict", &"--model", &hf, &good]),
        &["TESSERA_MAX_IMAGE_PIXELS"],
    );
    c.with_env("TESSERA_MAX_IMAGE_PIXELS", "lots");

    // --- model directories and configs (through predict, the one loading entry) --------------
    let nowhere = r.join("nowhere");
    c.refuse(
        "model that does not exist",
        os(&[&"predict", &"--model", &nowhere, &good]),
        &["nowhere"],
    );
    let empty_dir = r.join("empty_dir");
    std::fs::create_dir_all(&empty_dir).unwrap();
    c.refuse(
        "model directory without config.json",
        os(&[&"predict", &"--model", &empty_dir, &good]),
        &["config.json"],
    );
    let no_weights = r.join("no_weights");
    std::fs::create_dir_all(&no_weights).unwrap();
    std::fs::copy(hf.join("config.json"), no_weights.join("config.json")).unwrap();
    c.refuse(
        "model directory without weights",
        os(&[&"predict", &"--model", &no_weights, &good]),
        &["model.safetensors"],
    );
    let configs: Vec<(&str, Edit, &str)> = vec![
        (
            "image_size_huge",
            Box::new(|c| c["image_size"] = 1_000_000_000u64.into()),
            "image_size",
        ),
        (
            "image_size_0",
            Box::new(|c| c["image_size"] = 0.into()),
            "image_size",
        ),
        (
            "patch_0",
            Box::new(|c| c["patch_size"] = 0.into()),
            "patch_size",
        ),
        (
            "patch_7",
            Box::new(|c| c["patch_size"] = 7.into()),
            "patch_size",
        ),
        (
            "hidden_huge",
            Box::new(|c| c["hidden_size"] = 1_000_000_000u64.into()),
            "hidden_size",
        ),
        (
            "heads_0",
            Box::new(|c| c["num_attention_heads"] = 0.into()),
            "num_attention_heads",
        ),
        (
            "heads_5",
            Box::new(|c| c["num_attention_heads"] = 5.into()),
            "num_attention_heads",
        ),
        (
            "layers_0",
            Box::new(|c| c["num_hidden_layers"] = 0.into()),
            "num_hidden_layers",
        ),
        (
            "layers_huge",
            Box::new(|c| c["num_hidden_layers"] = 100_000_000u64.into()),
            "num_hidden_layers",
        ),
        (
            "mlp_0",
            Box::new(|c| c["intermediate_size"] = 0.into()),
            "intermediate_size",
        ),
        (
            "eps_negative",
            Box::new(|c| c["layer_norm_eps"] = (-1e-5).into()),
            "layer_norm_eps",
        ),
        (
            "act_unknown",
            Box::new(|c| c["hidden_act"] = "swishy".into()),
            "swishy",
        ),
        (
            "act_number",
            Box::new(|c| c["hidden_act"] = 3.into()),
            "hidden_act",
        ),
        (
            "dropout_2",
            Box::new(|c| c["hidden_dropout_prob"] = 2.0.into()),
            "hidden_dropout_prob",
        ),
        (
            "image_size_string",
            Box::new(|c| c["image_size"] = "big".into()),
            "image_size",
        ),
        (
            "channels_2",
            Box::new(|c| c["num_channels"] = 2.into()),
            "channels",
        ),
        (
            "model_type_bert",
            Box::new(|c| c["model_type"] = "bert".into()),
            "bert",
        ),
    ];
    for (n, f, needle) in &configs {
        let m = with_config(&hf, r, &format!("cfg_{n}"), f);
        c.refuse(
            &format!("hf config {n}"),
            os(&[&"predict", &"--model", &m, &good]),
            &[needle],
        );
    }
    let seed_configs: Vec<(&str, Edit, &str)> = vec![
        (
            "seed_image_size_huge",
            Box::new(|c| c["image_size"] = 1_000_000u64.into()),
            "image_size",
        ),
        (
            "seed_dim_huge",
            Box::new(|c| c["hidden_size"] = 100_000_000u64.into()),
            "hidden_size",
        ),
        (
            "seed_classes_0",
            Box::new(|c| c["num_classes"] = 0.into()),
            "num_classes",
        ),
        (
            "seed_mean_short",
            Box::new(|c| c["image_mean"] = serde_json::json!([0.5, 0.5])),
            "image_mean",
        ),
        (
            "seed_std_zero",
            Box::new(|c| c["image_std"] = serde_json::json!([0.0])),
            "image_std",
        ),
        (
            "seed_dropout_1",
            Box::new(|c| c["dropout"] = 1.0.into()),
            "dropout",
        ),
        (
            "seed_act",
            Box::new(|c| c["hidden_act"] = "gelu_cubed".into()),
            "gelu_cubed",
        ),
    ];
    for (n, f, needle) in &seed_configs {
        let m = with_config(&seed, r, n, f);
        c.refuse(
            &format!("seed config {n}"),
            os(&[&"predict", &"--model", &m, &good]),
            &[needle],
        );
    }
    let raw_configs: Vec<(&str, &str, &str)> = vec![
        ("cfg_not_json", "{not json", "config.json"),
        ("cfg_array", "[1, 2, 3]", "config.json"),
        ("cfg_string", "\"vit\"", "config.json"),
        ("cfg_empty", "", "config.json"),
    ];
    for (n, text, needle) in &raw_configs {
        let m = r.join(n);
        copy_dir(&hf, &m);
        std::fs::write(m.join("config.json"), text).unwrap();
        c.refuse(
            &format!("config {n}"),
            os(&[&"predict", &"--model", &m, &good]),
            &[needle],
        );
    }
    // Weights.
    let nan = with_weights(&hf, r, "w_nan", |k, t| {
        Some(if k.ends_with("query.weight") {
            (t.ones_like().unwrap() * f64::NAN).unwrap()
        } else {
            t
        })
    });
    c.refuse(
        "NaN weights",
        os(&[&"predict", &"--model", &nan, &good]),
        &["NaN"],
    );
    let inf = with_weights(&hf, r, "w_inf", |k, t| {
        Some(if k.ends_with("classifier.bias") {
            (t.ones_like().unwrap() * f64::INFINITY).unwrap()
        } else {
            t
        })
    });
    c.refuse(
        "inf weights",
        os(&[&"predict", &"--model", &inf, &good]),
        &["infinite"],
    );
    let missing = with_weights(&hf, r, "w_missing", |k, t| {
        (!k.contains("layer.1.")).then_some(t)
    });
    c.refuse(
        "missing tensors",
        os(&[&"predict", &"--model", &missing, &good]),
        &["missing tensors"],
    );
    let shaped = with_weights(&hf, r, "w_shape", |k, t| {
        Some(if k.ends_with("intermediate.dense.bias") {
            t.narrow(0, 0, 10).unwrap()
        } else {
            t
        })
    });
    c.refuse(
        "mis-shaped tensor",
        os(&[&"predict", &"--model", &shaped, &good]),
        &["mis-shaped"],
    );
    let foreign = with_weights(&hf, r, "w_foreign", |_, t| Some(t));
    {
        // Every tensor under another name: a summarised report saying what the file holds.
        let t = tessera::nn::store::load_safetensors(
            &foreign.join("model.safetensors"),
            &candle_core::Device::Cpu,
        )
        .unwrap();
        let renamed: Vec<(String, candle_core::Tensor)> = t
            .into_iter()
            .map(|(k, v)| (format!("model.visual.{k}"), v))
            .collect();
        tessera::nn::store::save_safetensors(&foreign.join("model.safetensors"), &renamed).unwrap();
    }
    c.refuse(
        "a checkpoint of another layout",
        os(&[&"predict", &"--model", &foreign, &good]),
        &["missing tensors", "model.*"],
    );
    let garbage = r.join("w_garbage");
    copy_dir(&hf, &garbage);
    std::fs::write(
        garbage.join("model.safetensors"),
        b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage",
    )
    .unwrap();
    c.refuse(
        "garbage safetensors",
        os(&[&"predict", &"--model", &garbage, &good]),
        &["model.safetensors"],
    );
    let short = r.join("w_short");
    copy_dir(&hf, &short);
    let bytes = std::fs::read(hf.join("model.safetensors")).unwrap();
    std::fs::write(short.join("model.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    c.refuse(
        "truncated safetensors",
        os(&[&"predict", &"--model", &short, &good]),
        &["model.safetensors"],
    );
    let no_tensors = r.join("w_none");
    copy_dir(&hf, &no_tensors);
    tessera::nn::store::save_safetensors(&no_tensors.join("model.safetensors"), &[]).unwrap();
    c.refuse(
        "safetensors without tensors",
        os(&[&"predict", &"--model", &no_tensors, &good]),
        &["no tensors"],
    );
    let empty_zip = r.join("w_zip");
    std::fs::create_dir_all(&empty_zip).unwrap();
    std::fs::copy(hf.join("config.json"), empty_zip.join("config.json")).unwrap();
    // An empty zip archive: only the end-of-central-directory record.
    let mut eocd = b"PK\x05\x06".to_vec();
    eocd.extend([0u8; 18]);
    std::fs::write(empty_zip.join("pytorch_model.bin"), &eocd).unwrap();
    c.refuse(
        "pytorch_model.bin that is an empty zip",
        os(&[&"predict", &"--model", &empty_zip, &good]),
        &["pytorch_model.bin"],
    );
    let not_zip = r.join("w_notzip");
    std::fs::create_dir_all(&not_zip).unwrap();
    std::fs::copy(hf.join("config.json"), not_zip.join("config.json")).unwrap();
    std::fs::write(not_zip.join("pytorch_model.bin"), b"not a pickle").unwrap();
    c.refuse(
        "pytorch_model.bin that is not a checkpoint",
        os(&[&"predict", &"--model", &not_zip, &good]),
        &["pytorch_model.bin"],
    );
    // What fuzzing found: a pickle string and a tensor claiming gigabytes over a 1 KB file
    // (candle allocated them before reading; with an 8 GB address-space limit, an abort).
    for (name, needle) in [
        ("huge-string-length", "claims 4294967040 bytes"),
        (
            "huge-tensor-shape",
            "needs 40000000000 bytes; its data holds 24",
        ),
    ] {
        let d = r.join(format!("w_{name}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::copy(hf.join("config.json"), d.join("config.json")).unwrap();
        let src = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(format!("fuzz/regressions/pytorch_bin/{name}.bin"));
        std::fs::copy(src, d.join("pytorch_model.bin")).unwrap();
        c.refuse(
            &format!("pytorch_model.bin with a {name}"),
            os(&[&"predict", &"--model", &d, &good]),
            &[needle],
        );
    }
    // The in21k layout has no head to predict with.
    let backbone = r.join("backbone");
    copy_dir(&fixture("hf_vit_model"), &backbone);
    c.refuse(
        "predict with a ViTModel (no head)",
        os(&[&"predict", &"--model", &backbone, &good]),
        &["head"],
    );
    c.refuse(
        "predict with CLIP",
        os(&[&"predict", &"--model", &clip, &good]),
        &["zero-shot"],
    );
    // Processor configs.
    let procs: Vec<(&str, serde_json::Value, &str)> = vec![
        (
            "size_0",
            serde_json::json!({"size": {"height": 0, "width": 32}}),
            "size",
        ),
        (
            "size_huge",
            serde_json::json!({"size": {"height": 1_000_000_000u64, "width": 32}}),
            "size",
        ),
        (
            "std_zero",
            serde_json::json!({"image_std": [0.0, 0.5, 0.5]}),
            "image_std",
        ),
        (
            "mean_short",
            serde_json::json!({"image_mean": [0.5]}),
            "image_mean",
        ),
        (
            "resample_99",
            serde_json::json!({"resample": 99}),
            "resample",
        ),
        (
            "rescale_nan",
            serde_json::json!({"rescale_factor": "NaN"}),
            "rescale_factor",
        ),
        (
            "crop_0",
            serde_json::json!({"do_center_crop": true, "crop_size": {"height": 0, "width": 0}}),
            "crop_size",
        ),
    ];
    for (n, p, needle) in &procs {
        let m = r.join(format!("proc_{n}"));
        copy_dir(&hf, &m);
        let mut base = serde_json::json!({"image_processor_type": "ViTImageProcessor",
            "size": {"height": 32, "width": 32}});
        for (k, v) in p.as_object().unwrap() {
            base[k] = v.clone();
        }
        std::fs::write(m.join("preprocessor_config.json"), base.to_string()).unwrap();
        c.refuse(
            &format!("processor {n}"),
            os(&[&"predict", &"--model", &m, &good]),
            &[needle],
        );
    }

    // --- zero-shot, embed --------------------------------------------------------------------
    for (n, p, needle) in bad_image_paths.iter().take(8) {
        c.refuse(
            &format!("zero-shot {n}"),
            os(&[
                &"zero-shot",
                &"--model",
                &clip,
                &"--labels",
                &"a,b",
                &"--bpe",
                &bpe,
                p,
            ]),
            &[needle.as_str()],
        );
        c.refuse(
            &format!("embed {n}"),
            os(&[&"embed", &"--model", &clip, &"--bpe", &bpe, &"--image", p]),
            &[needle.as_str()],
        );
    }
    c.accept(
        "zero-shot good",
        os(&[
            &"zero-shot",
            &"--json",
            &"--model",
            &clip,
            &"--labels",
            &"cat,dog",
            &"--bpe",
            &bpe,
            &good,
        ]),
        &["\"score\""],
    );
    c.refuse(
        "zero-shot empty labels",
        os(&[
            &"zero-shot",
            &"--model",
            &clip,
            &"--labels",
            &" , ",
            &"--bpe",
            &bpe,
            &good,
        ]),
        &["labels"],
    );
    c.refuse(
        "zero-shot template without {}",
        os(&[
            &"zero-shot",
            &"--model",
            &clip,
            &"--labels",
            &"a",
            &"--template",
            &"a photo",
            &"--bpe",
            &bpe,
            &good,
        ]),
        &["template"],
    );
    c.refuse(
        "zero-shot unreachable URL",
        os(&[
            &"zero-shot",
            &"--model",
            &clip,
            &"--labels",
            &"a",
            &"--bpe",
            &bpe,
            &"http://127.0.0.1:9/x.png",
        ]),
        &["127.0.0.1"],
    );
    c.refuse(
        "zero-shot missing BPE merges",
        os(&[
            &"zero-shot",
            &"--model",
            &clip,
            &"--labels",
            &"a",
            &"--bpe",
            &r.join("no.gz"),
            &good,
        ]),
        &["no.gz"],
    );
    c.refuse(
        "zero-shot with a ViT classifier",
        os(&[
            &"zero-shot",
            &"--model",
            &hf,
            &"--labels",
            &"a",
            &"--bpe",
            &bpe,
            &good,
        ]),
        &["config.json"],
    );
    let clip_vocab0 = with_config(&clip, r, "clip_vocab0", |c| {
        c["text_config"]["vocab_size"] = 0.into()
    });
    c.refuse(
        "CLIP vocab_size 0",
        os(&[
            &"zero-shot",
            &"--model",
            &clip_vocab0,
            &"--labels",
            &"a",
            &"--bpe",
            &bpe,
            &good,
        ]),
        &["vocab_size"],
    );
    let clip_pos_huge = with_config(&clip, r, "clip_pos", |c| {
        c["text_config"]["max_position_embeddings"] = 1_000_000_000u64.into()
    });
    c.refuse(
        "CLIP max_position_embeddings huge",
        os(&[
            &"zero-shot",
            &"--model",
            &clip_pos_huge,
            &"--labels",
            &"a",
            &"--bpe",
            &bpe,
            &good,
        ]),
        &["max_position_embeddings"],
    );
    c.refuse(
        "embed nothing",
        os(&[&"embed", &"--model", &clip, &"--bpe", &bpe]),
        &["--image"],
    );
    c.accept(
        "embed a text",
        os(&[
            &"embed", &"--model", &clip, &"--bpe", &bpe, &"--text", &"a cat",
        ]),
        &["text_embeds"],
    );

    // --- index and search --------------------------------------------------------------------
    let photos = r.join("photos");
    std::fs::create_dir_all(photos.join("sub")).unwrap();
    std::fs::copy(&good, photos.join("a.png")).unwrap();
    std::fs::copy(&good_jpg, photos.join("sub/b.jpg")).unwrap();
    std::fs::write(photos.join("broken.jpg"), b"\xff\xd8\xff junk").unwrap();
    std::fs::write(photos.join("bomb.png"), png_declaring(65500, 65500)).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(r.join("gone.png"), photos.join("dangling.png")).unwrap();
    let index = r.join("idx.safetensors");
    c.accept(
        "index skips broken, bomb and dangling files",
        os(&[
            &"index", &"--json", &"--model", &clip, &"--bpe", &bpe, &"--index", &index, &photos,
        ]),
        &["\"skipped\""],
    );
    c.refuse(
        "index a folder that does not exist",
        os(&[&"index", &"--model", &clip, &"--bpe", &bpe, &r.join("nope")]),
        &["nope"],
    );
    c.refuse(
        "index a file",
        os(&[&"index", &"--model", &clip, &"--bpe", &bpe, &good]),
        &["not a directory"],
    );
    c.refuse(
        "index --batch-size 0",
        os(&[
            &"index",
            &"--model",
            &clip,
            &"--bpe",
            &bpe,
            &"--batch-size",
            &"0",
            &photos,
        ]),
        &["batch-size"],
    );
    let idx_missing = r.join("no_index.safetensors");
    c.refuse(
        "search a missing index",
        os(&[&"search", &idx_missing, &"x", &"--bpe", &bpe]),
        &["no_index"],
    );
    let idx_garbage = write(&r.join("garbage.safetensors"), b"garbage!garbage!");
    c.refuse(
        "search a garbage index",
        os(&[&"search", &idx_garbage, &"x", &"--bpe", &bpe]),
        &["garbage.safetensors"],
    );

    // Run what the search cases need (the index) before listing them.
    let results = run_all(&c.cases);
    let mut failures: Vec<String> = results;
    let mut c2 = Corpus { cases: vec![] };
    c2.refuse(
        "search -k 0",
        os(&[&"search", &index, &"x", &"-k", &"0", &"--bpe", &bpe]),
        &["k must"],
    );
    c2.refuse(
        "search an empty query",
        os(&[&"search", &index, &"  ", &"--bpe", &bpe]),
        &["empty query"],
    );
    c2.accept(
        "search",
        os(&[&"search", &"--json", &index, &"a photo", &"--bpe", &bpe]),
        &["\"score\""],
    );
    {
        // The same index pointing at a model with another embedding width.
        let wide = with_config(&clip, r, "clip_wide", |c| c["projection_dim"] = 24.into());
        let l = Clip::from_config(
            &tessera::util::read_json(&wide.join("config.json")).unwrap(),
            &LoadOptions::default(),
        )
        .unwrap();
        l.model.save_pretrained(&l.store, &wide).unwrap();
        let mut header = tessera::nn::store::safetensors_metadata(&index).unwrap();
        let key = "tessera_index_manifest";
        let mut m: serde_json::Value = serde_json::from_str(&header[key]).unwrap();
        m["model"] = wide.display().to_string().into();
        header.insert(key.into(), m.to_string());
        let t = tessera::nn::store::load_safetensors(&index, &candle_core::Device::Cpu).unwrap();
        let moved = r.join("idx_wide.safetensors");
        tessera::nn::store::save_safetensors_with(
            &moved,
            &t.into_iter().collect::<Vec<_>>(),
            header,
        )
        .unwrap();
        c2.refuse(
            "search with another model's width",
            os(&[&"search", &moved, &"x", &"--bpe", &bpe]),
            &["wide"],
        );
        // NaN rows.
        let header = tessera::nn::store::safetensors_metadata(&index).unwrap();
        let t = tessera::nn::store::load_safetensors(&index, &candle_core::Device::Cpu).unwrap();
        let e = (t["embeds"].ones_like().unwrap() * f64::NAN).unwrap();
        let nan_idx = r.join("idx_nan.safetensors");
        tessera::nn::store::save_safetensors_with(
            &nan_idx,
            &[("embeds".to_string(), e)],
            header.clone(),
        )
        .unwrap();
        c2.refuse(
            "search an index with NaN rows",
            os(&[&"search", &nan_idx, &"x", &"--bpe", &bpe]),
            &["NaN"],
        );
        // Rows and manifest disagree.
        let e = t["embeds"].narrow(0, 0, 1).unwrap();
        let short = r.join("idx_short.safetensors");
        tessera::nn::store::save_safetensors_with(&short, &[("embeds".to_string(), e)], header)
            .unwrap();
        c2.refuse(
            "search an index whose rows and manifest disagree",
            os(&[&"search", &short, &"x", &"--bpe", &bpe]),
            &["disagree"],
        );
    }

    // --- explain -----------------------------------------------------------------------------
    let heat = r.join("heat.png");
    for (args, needle) in [
        (vec!["--method", "attention", "--layer", "99"], "layer 99"),
        (vec!["--method", "attention", "--head", "99"], "head 99"),
        (
            vec!["--method", "rollout", "--discard-ratio", "1"],
            "discard ratio",
        ),
        (
            vec!["--method", "rollout", "--discard-ratio", "1.5"],
            "discard ratio",
        ),
        (
            vec!["--method", "rollout", "--discard-ratio", "-0.1"],
            "discard ratio",
        ),
        (
            vec!["--method", "rollout", "--discard-ratio", "NaN"],
            "discard ratio",
        ),
        (vec!["--label", "zebra"], "zebra"),
        (vec!["--label", "17"], "17"),
        (vec!["--method", "sideways"], "sideways"),
    ] {
        let mut a = os(&[&"explain", &"--model", &hf, &good, &"--out", &heat]);
        a.extend(args.iter().map(OsString::from));
        c2.refuse(&format!("explain {args:?}"), a, &[needle]);
    }
    for m in ["attention", "rollout", "relevance"] {
        c2.accept(
            &format!("explain {m}"),
            os(&[
                &"explain",
                &"--json",
                &"--method",
                &m,
                &"--model",
                &hf,
                &good,
                &"--out",
                &heat,
            ]),
            &["\"grid\""],
        );
        c2.accept(
            &format!("explain seed {m}"),
            os(&[
                &"explain",
                &"--json",
                &"--method",
                &m,
                &"--model",
                &seed,
                &grey,
                &"--out",
                &heat,
            ]),
            &["\"grid\""],
        );
    }
    c2.accept(
        "explain two heads apart",
        os(&[
            &"explain",
            &"--json",
            &"--method",
            &"attention",
            &"--head",
            &"1",
            &"--model",
            &hf,
            &good,
            &"--out",
            &heat,
        ]),
        &["\"grid\""],
    );
    c2.refuse(
        "explain CLIP relevance without --text",
        os(&[
            &"explain", &"--model", &clip, &good, &"--bpe", &bpe, &"--out", &heat,
        ]),
        &["--text"],
    );
    c2.accept(
        "explain CLIP relevance with a text",
        os(&[
            &"explain", &"--json", &"--model", &clip, &good, &"--text", &"a cat", &"--bpe", &bpe,
            &"--out", &heat,
        ]),
        &["\"grid\""],
    );
    for (n, p, needle) in bad_image_paths.iter().take(6) {
        c2.refuse(
            &format!("explain {n}"),
            os(&[&"explain", &"--model", &hf, p, &"--out", &heat]),
            &[needle.as_str()],
        );
    }
    c2.refuse(
        "explain output into a missing directory's file",
        os(&[
            &"explain",
            &"--model",
            &hf,
            &good,
            &"--out",
            &r.join("heat.png/inside.png"),
        ]),
        &["heat.png"],
    );

    // --- export-hf ---------------------------------------------------------------------------
    c2.refuse(
        "export-hf onto itself",
        os(&[&"export-hf", &"--model", &prenorm, &"--output", &prenorm]),
        &["output"],
    );
    c2.refuse(
        "export-hf a post-norm run",
        os(&[
            &"export-hf",
            &"--model",
            &seed,
            &"--output",
            &r.join("exp1"),
        ]),
        &["post-norm"],
    );
    c2.refuse(
        "export-hf a missing run",
        os(&[
            &"export-hf",
            &"--model",
            &nowhere,
            &"--output",
            &r.join("exp2"),
        ]),
        &["nowhere"],
    );
    c2.accept(
        "export-hf",
        os(&[
            &"export-hf",
            &"--model",
            &prenorm,
            &"--output",
            &r.join("exp3"),
        ]),
        &[],
    );

    // --- train -------------------------------------------------------------------------------
    let out = r.join("train_out");
    for (args, needle) in [
        (vec!["--epochs", "0"], "epochs"),
        (vec!["--batch-size", "0"], "batch size"),
        (vec!["--lr", "-1"], "learning rate"),
        (vec!["--lr", "0"], "learning rate"),
        (vec!["--lr", "NaN"], "learning rate"),
        (vec!["--lr", "inf"], "learning rate"),
        (vec!["--weight-decay", "-0.1"], "weight decay"),
        (vec!["--weight-decay", "NaN"], "weight decay"),
        (vec!["--warmup", "1.5"], "warm-up"),
        (vec!["--warmup", "-0.1"], "warm-up"),
        (vec!["--label-smoothing", "1"], "label smoothing"),
        (vec!["--label-smoothing", "NaN"], "label smoothing"),
        (vec!["--clip", "-1"], "clipping"),
        (vec!["--clip", "NaN"], "clipping"),
        (vec!["--dropout", "1"], "dropout"),
        (vec!["--dropout", "-0.5"], "dropout"),
        (vec!["--image-size", "0"], "image_size"),
        (vec!["--image-size", "1000000"], "image_size"),
        (vec!["--image-size", "9"], "patch_size"),
        (vec!["--channels", "0"], "num_channels"),
        (vec!["--channels", "2"], "channel"),
        (vec!["--preset", "Q/99"], "unknown preset"),
        (vec!["--preset", "B/0"], "unknown preset"),
        (vec!["--dataset", "/no/such/dir"], "/no/such/dir"),
        (vec!["--resume"], "resume"),
        (vec!["--schedule", "sawtooth"], "sawtooth"),
        (vec!["--epochs", "-3"], "-3"),
        (vec!["--hflip", "maybe"], "maybe"),
    ] {
        let mut a = os(&[&"train", &"--output", &out.join(args.join("_"))]);
        if !args.contains(&"--epochs") {
            a.extend(os(&[&"--epochs", &"1"]));
        }
        a.extend(args.iter().map(OsString::from));
        c2.refuse(&format!("train {args:?}"), a, &[needle]);
    }
    // Resuming a run with a contradicting architecture names the field; resuming as saved works.
    for (i, (args, needle)) in [
        (
            vec!["--preset", "Ti/16", "--image-size", "32"],
            "hidden_size",
        ),
        (vec!["--image-size", "16"], "image_size"),
        (vec!["--pre-norm"], "pre_norm"),
        (vec!["--channels", "3"], "num_channels"),
    ]
    .into_iter()
    .enumerate()
    {
        let run = r.join(format!("resume{i}"));
        copy_dir(&seed, &run);
        let mut a = os(&[&"train", &"--resume", &"--epochs", &"2", &"--output", &run]);
        a.extend(args.iter().map(OsString::from));
        c2.refuse(&format!("train --resume {args:?}"), a, &[needle, "resume"]);
    }
    let run = r.join("resume_same");
    copy_dir(&seed, &run);
    c2.accept(
        "train --resume as saved",
        os(&[
            &"train",
            &"--json",
            &"--resume",
            &"--epochs",
            &"2",
            &"--output",
            &run,
        ]),
        &["\"test_accuracy\""],
    );
    // Datasets.
    let ds = r.join("ds");
    let two = image_folder(&ds.join("two"), &["cats", "dogs"], 6);
    let one = image_folder(&ds.join("one"), &["cats"], 6);
    let with_empty = image_folder(&ds.join("with_empty"), &["cats", "dogs"], 6);
    std::fs::create_dir_all(with_empty.join("birds")).unwrap();
    let hidden = image_folder(&ds.join("hidden"), &["cats", "dogs"], 6);
    std::fs::create_dir_all(hidden.join(".ipynb_checkpoints")).unwrap();
    std::fs::copy(&good, hidden.join(".ipynb_checkpoints/x.png")).unwrap();
    let corrupt = image_folder(&ds.join("corrupt"), &["cats", "dogs"], 6);
    std::fs::write(corrupt.join("dogs/bad.png"), b"\x89PNG\r\n\x1a\nnope").unwrap();
    let bomb_ds = image_folder(&ds.join("bomb"), &["cats", "dogs"], 6);
    std::fs::write(bomb_ds.join("dogs/bomb.png"), png_declaring(65500, 65500)).unwrap();
    let split = ds.join("split");
    image_folder(&split.join("train"), &["cats", "dogs"], 4);
    image_folder(&split.join("test"), &["cats", "birds"], 2);
    let tiny_ds = image_folder(&ds.join("tiny"), &["cats", "dogs"], 1);
    let no_images = ds.join("no_images");
    std::fs::create_dir_all(&no_images).unwrap();
    let fast = [
        "--preset",
        "S/4",
        "--image-size",
        "8",
        "--epochs",
        "1",
        "--batch-size",
        "4",
    ];
    for (n, root, needle) in [
        ("one class", &one, "two"),
        ("an empty class folder", &with_empty, "birds"),
        ("a corrupt image", &corrupt, "bad.png"),
        ("a decompression bomb", &bomb_ds, "bomb.png"),
        ("train/test class sets differ", &split, "different class"),
        ("a split with no test images", &tiny_ds, "no images"),
        ("no class folders", &no_images, "class"),
    ] {
        let mut a = os(&[
            &"train",
            &"--dataset",
            root,
            &"--output",
            &out.join(n.replace(' ', "_")),
        ]);
        a.extend(fast.iter().map(OsString::from));
        c2.refuse(&format!("train on {n}"), a, &[needle]);
    }
    let mut a = os(&[
        &"train",
        &"--json",
        &"--dataset",
        &hidden,
        &"--output",
        &out.join("hidden"),
    ]);
    a.extend(fast.iter().map(OsString::from));
    c2.accept("train ignores a hidden folder", a, &["\"test_accuracy\""]);
    let mut a = os(&[
        &"train",
        &"--json",
        &"--dataset",
        &two,
        &"--output",
        &out.join("two"),
    ]);
    a.extend(fast.iter().map(OsString::from));
    c2.accept("train on a folder", a, &["\"test_accuracy\""]);

    // --- finetune ----------------------------------------------------------------------------
    let ft = r.join("ft");
    let ft_base = || os(&[&"finetune", &"--model", &hf, &"--dataset", &two]);
    for (args, needle) in [
        (vec!["--epochs", "0"], "epochs"),
        (vec!["--batch-size", "0"], "batch size"),
        (vec!["--grad-accum", "0"], "gradient accumulation"),
        (vec!["--lr", "-5e-5"], "learning rate"),
        (vec!["--lr", "NaN"], "learning rate"),
        (vec!["--weight-decay", "-1"], "weight decay"),
        (vec!["--warmup", "2"], "warm-up"),
        (vec!["--backbone-lr-scale", "-1"], "scale"),
        (vec!["--backbone-lr-scale", "NaN"], "scale"),
        (vec!["--num-labels", "37"], "num_labels 37"),
        (vec!["--resume"], "resume"),
        (vec!["--labels", "/no/labels.txt"], "labels.txt"),
        (vec!["--processor-backend", "opencv"], "opencv"),
        (vec!["--eval", "steps"], "steps"),
    ] {
        let mut a = ft_base();
        a.extend(os(&[&"--output", &ft.join(args.join("_"))]));
        a.extend(args.iter().map(OsString::from));
        c2.refuse(&format!("finetune {args:?}"), a, &[needle]);
    }
    for (n, root, needle) in [
        ("one class", &one, "two"),
        ("class sets that differ", &split, "different class"),
        ("an empty class folder", &with_empty, "birds"),
        ("no class folders", &no_images, "class"),
    ] {
        c2.refuse(
            &format!("finetune on {n}"),
            os(&[
                &"finetune",
                &"--model",
                &hf,
                &"--dataset",
                root,
                &"--epochs",
                &"1",
                &"--output",
                &ft.join(n.replace(' ', "_")),
            ]),
            &[needle],
        );
    }
    c2.refuse(
        "finetune a CLIP checkpoint",
        os(&[
            &"finetune",
            &"--model",
            &clip,
            &"--dataset",
            &two,
            &"--output",
            &ft.join("clip"),
        ]),
        &["config.json"],
    );
    let bad_pq = ds.join("bad_pq");
    std::fs::create_dir_all(&bad_pq).unwrap();
    std::fs::write(
        bad_pq.join("train-00000-of-00001.parquet"),
        b"PAR1 not really PAR1",
    )
    .unwrap();
    c2.refuse(
        "finetune on a broken parquet file",
        os(&[
            &"finetune",
            &"--model",
            &hf,
            &"--dataset",
            &bad_pq,
            &"--output",
            &ft.join("pq"),
        ]),
        &["train-00000-of-00001.parquet"],
    );
    c2.accept(
        "finetune on a folder",
        os(&[
            &"finetune",
            &"--json",
            &"--model",
            &hf,
            &"--dataset",
            &two,
            &"--epochs",
            &"1",
            &"--batch-size",
            &"4",
            &"--output",
            &ft.join("ok"),
        ]),
        &["\"test_accuracy\""],
    );

    // --- clip-demo ---------------------------------------------------------------------------
    for (args, needle) in [
        (vec!["--epochs", "0"], "epoch"),
        (vec!["--unnamed", "1.5"], "unnamed"),
        (vec!["--unnamed", "NaN"], "unnamed"),
        (vec!["--patch", "5"], "patch 5"),
        (vec!["--batch-size", "1"], "batch size"),
        (vec!["--lr", "-1"], "lr"),
    ] {
        let mut a = os(&[&"clip-demo", &"--output", &r.join("demo"), &"--bpe", &bpe]);
        a.extend(args.iter().map(OsString::from));
        c2.refuse(&format!("clip-demo {args:?}"), a, &[needle]);
    }
    // --- detect -----------------------------------------------------------------------------
    let detr = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/detection/detr_hf");
    for (args, needle) in [
        (vec!["--threshold", "1.5"], "threshold"),
        (vec!["--threshold", "-0.1"], "threshold"),
        (vec!["--threshold", "NaN"], "threshold"),
    ] {
        let mut a = os(&[&"detect", &"--model", &detr, &good]);
        a.extend(args.iter().map(OsString::from));
        c2.refuse(&format!("detect {args:?}"), a, &[needle]);
    }
    c2.refuse(
        "detect with a ViT classifier",
        os(&[&"detect", &"--model", &hf, &good]),
        &["not a DETR one"],
    );
    c2.refuse(
        "detect a missing image",
        os(&[&"detect", &"--model", &detr, &r.join("nope.png")]),
        &["nope.png"],
    );
    c2.accept(
        "detect with threshold 0",
        os(&[
            &"detect",
            &"--json",
            &"--threshold",
            &"0",
            &"--model",
            &detr,
            &good,
        ]),
        &["\"detections\"", "LABEL_"],
    );

    // --- ask --------------------------------------------------------------------------------
    // Nothing listens on port 9: whatever reaches the network is a refused connection, so
    // every check before it is exercised offline. The provider variables are set (or emptied)
    // for each case so the user's own environment cannot leak in.
    let notes = write(&r.join("notes.png"), b"not an image at all");
    let gif = write(&r.join("anim.gif"), b"GIF89a\x01\x00\x01\x00\x00\x00\x00;");
    let schema_list = write(&r.join("schema_list.json"), b"[1, 2]");
    let schema_bad = write(&r.join("schema_bad.json"), b"{\"type\": ");
    let gemini_env = [
        ("GOOGLE_API_KEY", "test-key"),
        ("GEMINI_API_KEY", ""),
        ("GOOGLE_GEMINI_BASE_URL", "http://127.0.0.1:9"),
        ("OPENAI_API_KEY", ""),
        ("OPENAI_BASE_URL", ""),
    ];
    let no_env = [
        ("GOOGLE_API_KEY", ""),
        ("GEMINI_API_KEY", ""),
        ("OPENAI_API_KEY", ""),
        ("OPENAI_BASE_URL", ""),
    ];
    let q = "How many cats?";
    // (what, arguments, environment, needle)
    type AskCase<'a> = (&'a str, Vec<OsString>, &'a [(&'a str, &'a str)], &'a str);
    let ask_cases: Vec<AskCase> = vec![
        (
            "no provider",
            os(&[&good, &q]),
            &no_env,
            "no model provider configured",
        ),
        (
            "gemini without a key",
            os(&[&"--provider", &"gemini", &good, &q]),
            &no_env,
            "GOOGLE_API_KEY or GEMINI_API_KEY",
        ),
        (
            "openai without a key",
            os(&[&"--provider", &"openai", &good, &q]),
            &no_env,
            "OPENAI_API_KEY",
        ),
        (
            "unknown provider",
            os(&[&"--provider", &"claude", &good, &q]),
            &gemini_env,
            "claude",
        ),
        ("no question", os(&[&good]), &gemini_env, "no question"),
        (
            "missing image",
            os(&[&r.join("nope.png"), &q]),
            &gemini_env,
            "nope.png",
        ),
        (
            "not an image",
            os(&[&notes, &q]),
            &gemini_env,
            "notes.png: not an image Gemini takes",
        ),
        (
            "a GIF for Gemini",
            os(&[&gif, &q]),
            &gemini_env,
            "image/gif is not an image type Gemini takes",
        ),
        (
            "temperature 3",
            os(&[&"--temperature", &"3", &good, &q]),
            &gemini_env,
            "temperature",
        ),
        (
            "temperature NaN",
            os(&[&"--temperature", &"NaN", &good, &q]),
            &gemini_env,
            "temperature",
        ),
        (
            "max tokens 0",
            os(&[&"--max-tokens", &"0", &good, &q]),
            &gemini_env,
            "max tokens",
        ),
        (
            "retries 11",
            os(&[&"--retries", &"11", &good, &q]),
            &gemini_env,
            "--retries",
        ),
        (
            "timeout 0",
            os(&[&"--timeout", &"0", &good, &q]),
            &gemini_env,
            "--timeout",
        ),
        (
            "timeout NaN",
            os(&[&"--timeout", &"NaN", &good, &q]),
            &gemini_env,
            "--timeout",
        ),
        (
            "upload sometimes",
            os(&[&"--upload", &"sometimes", &good, &q]),
            &gemini_env,
            "upload mode",
        ),
        (
            "a schema that is a list",
            os(&[&"--json-schema", &schema_list, &good, &q]),
            &gemini_env,
            "JSON schema must be a JSON object",
        ),
        (
            "a schema that does not parse",
            os(&[&"--json-schema", &schema_bad, &good, &q]),
            &gemini_env,
            "schema_bad.json",
        ),
        (
            "a missing schema",
            os(&[&"--json-schema", &r.join("none.json"), &good, &q]),
            &gemini_env,
            "none.json",
        ),
        (
            "a base URL that is not http",
            os(&[&"--base-url", &"ftp://example.com", &good, &q]),
            &gemini_env,
            "not an http(s) URL",
        ),
        (
            "a model name with a query",
            os(&[&"--model", &"gemini?key=1", &good, &q]),
            &gemini_env,
            "not a Gemini model name",
        ),
        (
            "nothing listening",
            os(&[&"--retries", &"0", &good, &q]),
            &gemini_env,
            "cannot connect to http://127.0.0.1:9",
        ),
        (
            "stream and json",
            os(&[&"--stream", &"--json", &good, &q]),
            &gemini_env,
            "--json",
        ),
    ];
    for (what, args, env, needle) in ask_cases {
        let mut a = os(&[&"ask"]);
        a.extend(args);
        c2.refuse(&format!("ask: {what}"), a, &[needle]);
        for (k, v) in env {
            c2.with_env(k, v);
        }
    }

    c2.refuse(
        "an unknown subcommand",
        os(&[&"frobnicate"]),
        &["frobnicate"],
    );

    failures.extend(run_all(&c2.cases));
    let total = c.cases.len() + c2.cases.len();
    let refusals = c
        .cases
        .iter()
        .chain(&c2.cases)
        .filter(|c| matches!(c.expect, Expect::Refuse(_)))
        .count();
    println!(
        "{total} cases: {refusals} to refuse, {} to accept; {} failed",
        total - refusals,
        failures.len()
    );
    assert!(total >= 150, "only {total} cases");
    assert!(
        failures.is_empty(),
        "{} of {total} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Runs `cases` four at a time; the failures, one line each.
fn run_all(cases: &[Case]) -> Vec<String> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failures = std::sync::Mutex::new(vec![]);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(case) = cases.get(i) else { break };
                let verdict = match (run(case), &case.expect) {
                    (Err(e), _) => Some(e),
                    (Ok(Outcome::Refused(line)), Expect::Refuse(needles)) => needles
                        .iter()
                        .find(|n| !line.contains(n.as_str()))
                        .map(|n| format!("refused without naming {n:?}: {line}")),
                    (Ok(Outcome::Accepted(out)), Expect::Accept(needles)) => {
                        needles.iter().find(|n| !out.contains(n.as_str())).map(|n| {
                            format!(
                                "accepted without {n:?} in: {}",
                                out.chars().take(300).collect::<String>()
                            )
                        })
                    }
                    (Ok(Outcome::Refused(line)), Expect::Accept(_)) => {
                        Some(format!("refused: {line}"))
                    }
                    (Ok(Outcome::Accepted(out)), Expect::Refuse(_)) => Some(format!(
                        "accepted: {}",
                        out.chars().take(200).collect::<String>()
                    )),
                };
                if let Some(v) = verdict {
                    failures.lock().unwrap().push(format!("{}: {v}", case.name));
                }
            });
        }
    });
    failures.into_inner().unwrap()
}
