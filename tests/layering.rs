//! The layout reads bottom-up: no file imports from a file above it. Checked on the source:
//! `src/nn`'s files in their documented order, and the crate's top-level modules.
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Code lines only (doc links and comments may point anywhere).
fn code(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The modules `text` names after `prefix` (`super::x`, `crate::x`, `use super::{x, y}`).
fn named(text: &str, prefix: &str, known: &[&str]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices(prefix) {
        let rest = &text[i + prefix.len()..];
        let items: Vec<&str> = if let Some(inner) = rest.strip_prefix('{') {
            let end = inner.find('}').unwrap_or(inner.len());
            inner[..end].split(',').collect()
        } else {
            vec![rest]
        };
        for item in items {
            let name: String = item
                .trim()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if known.contains(&name.as_str()) {
                out.insert(name);
            }
        }
    }
    out
}

/// `src/nn` bottom-up; a file may use only files of a lower level.
const NN: &[(&str, usize)] = &[
    ("cpu", 0),
    ("math", 0),
    ("interpolate", 0),
    ("store", 0),
    ("conv", 1),
    ("activation", 1),
    ("dropout", 1),
    ("ops", 2),
    ("sdpa", 2),
    ("infer", 2),
    ("ctx", 3),
    ("layers", 4),
    ("patch_embed", 4),
    ("attention", 5),
    ("block", 6),
    ("latent", 6),
    ("coattention", 7),
    ("llama", 6),
    ("flamingo", 7),
    ("encoder", 7),
    ("generate", 8),
];

#[test]
fn nn_files_import_only_from_below() {
    let names: Vec<&str> = NN.iter().map(|(n, _)| *n).collect();
    let level = |n: &str| NN.iter().find(|(m, _)| *m == n).map(|(_, l)| *l).unwrap();
    let mut files: Vec<String> = std::fs::read_dir(src().join("nn"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".rs") && f != "mod.rs")
        .collect();
    files.sort();
    // Every file has its place in the order.
    let listed: BTreeSet<String> = names.iter().map(|n| format!("{n}.rs")).collect();
    assert_eq!(files.iter().cloned().collect::<BTreeSet<_>>(), listed);
    for f in &files {
        let me = f.trim_end_matches(".rs");
        let text = code(&src().join("nn").join(f));
        let mut used = named(&text, "super::", &names);
        used.extend(named(&text, "crate::nn::", &names));
        for u in used.iter().filter(|u| *u != me) {
            assert!(
                level(u) < level(me),
                "nn/{f} (level {}) imports nn/{u}.rs (level {})",
                level(me),
                level(u)
            );
        }
    }
}

/// The crate's modules bottom-up: a module may use only modules listed before it.
const CRATE: &[&str] = &[
    "alloc",
    "error",
    "util",
    "progress",
    "kernels",
    "nn",
    "device",
    "hub",
    "models",
    "image",
    "data",
    "train",
    "pipelines",
    "explain",
    "hosted",
    "serve",
];

#[test]
fn crate_modules_import_only_from_below() {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    for (i, m) in CRATE.iter().enumerate() {
        let mut files = vec![];
        let dir = src().join(m);
        if dir.is_dir() {
            walk(&dir, &mut files);
        } else {
            files.push(src().join(format!("{m}.rs")));
        }
        for f in files {
            for u in named(&code(&f), "crate::", CRATE) {
                let j = CRATE.iter().position(|c| *c == u).unwrap();
                assert!(
                    j <= i,
                    "{} (module {m}) imports crate::{u}, which sits above it",
                    f.display()
                );
            }
        }
    }
}

/// The crate's front page lists every public module, in this order.
#[test]
fn crate_doc_lists_every_module_in_order() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let declared: BTreeSet<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';'))
        .collect();
    assert_eq!(declared, CRATE.iter().copied().collect::<BTreeSet<_>>());
    let doc: String = lib
        .lines()
        .filter(|l| l.starts_with("//!"))
        .collect::<Vec<_>>()
        .join("\n");
    let at: Vec<usize> = CRATE
        .iter()
        .map(|m| {
            doc.find(&format!("[`{m}`]"))
                .unwrap_or_else(|| panic!("lib.rs's doc does not list {m}"))
        })
        .collect();
    assert!(
        at.windows(2).all(|w| w[0] < w[1]),
        "lib.rs lists the modules out of order"
    );
}
