//! The README's "Use it from Rust" examples run (cargo test builds `examples/` alongside the
//! tests): train a ViT, classify with the run it wrote and with an HF checkpoint, CLIP zero-shot.
use std::path::PathBuf;
use std::process::Command;

fn example(name: &str) -> Command {
    // target/<profile>/deps/examples-<hash> -> target/<profile>/examples/<name>
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(|d| d.parent())
        .map(|d| d.join("examples").join(name))
        .unwrap();
    assert!(bin.exists(), "{} is not built", bin.display());
    let mut c = Command::new(bin);
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

fn run(c: &mut Command) -> String {
    let o = c.output().unwrap();
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn train_then_classify_with_the_run() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("digits");
    let log = run(example("train").arg(&out));
    assert!(
        log.contains("epoch 5/5") && log.contains("test accuracy"),
        "{log}"
    );
    let grey: PathBuf = ["tests", "fixtures", "processor", "camera_grey.png"]
        .iter()
        .collect();
    let top = run(example("classify").arg(&out).arg(&grey));
    // Three digit classes with their probabilities.
    assert_eq!(top.lines().count(), 4, "{top}");
}

#[test]
fn classify_an_hf_checkpoint_and_zero_shot() {
    let top = run(&mut example("classify"));
    assert!(
        top.contains("chelsea.png") && top.contains("class_"),
        "{top}"
    );
    let zs = run(&mut example("zero_shot"));
    for label in ["a cat", "a dog", "a rocket"] {
        assert!(zs.contains(label), "{zs}");
    }
}
