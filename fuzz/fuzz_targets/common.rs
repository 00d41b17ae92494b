//! What the targets share: a per-process scratch file (the readers under test take paths).
#![allow(dead_code)]
use std::path::PathBuf;

/// `bytes` written to this process's scratch file named `name`; its path.
pub fn scratch(name: &str, bytes: &[u8]) -> PathBuf {
    let p = std::env::temp_dir()
        .join(format!("tessera-fuzz-{}", std::process::id()))
        .join(name);
    if let Some(dir) = p.parent() {
        std::fs::create_dir_all(dir).expect("scratch directory");
    }
    std::fs::write(&p, bytes).expect("scratch file");
    p
}
