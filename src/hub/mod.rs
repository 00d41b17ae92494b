//! Model arguments: a local directory, or a Hugging Face hub id (`owner/name`, optional
//! `@revision`) resolved through the `hf-hub` crate into the standard HF cache (`HF_HOME`
//! honoured; with `HF_HUB_OFFLINE=1` only the cache is read).
use crate::progress::Progress;
use crate::{Error, Result};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// Where a model argument points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelRef {
    Local(PathBuf),
    Hub {
        repo: String,
        revision: Option<String>,
    },
}

impl ModelRef {
    /// An existing path is local (any file name, UTF-8 or not); otherwise
    /// `owner/name[@revision]` is a hub id.
    pub fn parse(arg: impl AsRef<OsStr>) -> Result<ModelRef> {
        let p = Path::new(arg.as_ref());
        if p.exists() {
            return Ok(ModelRef::Local(p.to_path_buf()));
        }
        let Some(arg) = arg.as_ref().to_str() else {
            return Err(Error::Config(format!(
                "{}: no such directory (and not a hub id)",
                p.display()
            )));
        };
        let (repo, revision) = match arg.split_once('@') {
            Some((r, v)) if !v.is_empty() => (r, Some(v.to_string())),
            Some(_) => return Err(Error::Config(format!("{arg:?}: empty revision after '@'"))),
            None => (arg, None),
        };
        let valid = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        match repo.split_once('/') {
            Some((o, n)) if valid(o) && valid(n) => Ok(ModelRef::Hub { repo: repo.to_string(), revision }),
            _ => Err(Error::Config(format!(
                "{arg:?} is neither an existing directory nor a hub id like google/vit-base-patch16-224"
            ))),
        }
    }
}

fn offline() -> bool {
    matches!(
        std::env::var("HF_HUB_OFFLINE").as_deref(),
        Ok("1") | Ok("true") | Ok("TRUE") | Ok("yes")
    )
}

/// Resolves a model argument to a local directory holding `required` files (and whichever of
/// `optional` exist; the first present of each `alternatives` group is fetched). Downloads
/// report to `progress` (one phase per file, in bytes).
pub fn resolve(
    arg: impl AsRef<OsStr>,
    required: &[&str],
    alternatives: &[&[&str]],
    optional: &[&str],
    progress: &dyn Progress,
) -> Result<PathBuf> {
    match ModelRef::parse(arg)? {
        ModelRef::Local(dir) => {
            for f in required {
                if !dir.join(f).exists() {
                    return Err(Error::data(&dir, format!("missing {f}")));
                }
            }
            for group in alternatives {
                if !group.iter().any(|f| dir.join(f).exists()) {
                    return Err(Error::data(&dir, format!("missing {}", group.join(" or "))));
                }
            }
            Ok(dir)
        }
        ModelRef::Hub { repo, revision } => fetch(
            &repo,
            revision.as_deref(),
            required,
            alternatives,
            optional,
            progress,
        ),
    }
}

/// hf-hub's download callbacks forwarded to a [`Progress`].
struct Downloads<'a>(&'a dyn Progress);

impl hf_hub::api::Progress for Downloads<'_> {
    fn init(&mut self, size: usize, filename: &str) {
        self.0.start_bytes(filename, size as u64);
    }
    fn update(&mut self, size: usize) {
        self.0.advance(size as u64, "");
    }
    fn finish(&mut self) {
        self.0.finish();
    }
}

fn fetch(
    repo: &str,
    revision: Option<&str>,
    required: &[&str],
    alternatives: &[&[&str]],
    optional: &[&str],
    progress: &dyn Progress,
) -> Result<PathBuf> {
    use hf_hub::{Cache, Repo, RepoType};
    let rev = revision.unwrap_or("main").to_string();
    let hub_repo = Repo::with_revision(repo.to_string(), RepoType::Model, rev.clone());
    let how_to_fix = |what: &str| {
        format!(
            "{repo}@{rev}: {what}. Download it once with network access (same command), or pass a local \
             directory with config.json and model.safetensors; the cache is $HF_HOME/hub (default ~/.cache/huggingface/hub)"
        )
    };
    let mut dir: Option<PathBuf> = None;
    let mut note = |p: PathBuf| {
        if dir.is_none() {
            dir = p.parent().map(Path::to_path_buf);
        }
    };
    if offline() {
        let cache = Cache::from_env().repo(hub_repo);
        for f in required {
            note(cache.get(f).ok_or_else(|| {
                Error::Msg(how_to_fix(&format!(
                    "HF_HUB_OFFLINE is set and {f} is not cached"
                )))
            })?);
        }
        for group in alternatives {
            let hit = group.iter().find_map(|f| cache.get(f));
            note(hit.ok_or_else(|| {
                Error::Msg(how_to_fix(&format!(
                    "HF_HUB_OFFLINE is set and none of {} is cached",
                    group.join(", ")
                )))
            })?);
        }
        for f in optional {
            if let Some(p) = cache.get(f) {
                note(p);
            }
        }
    } else {
        let api = hf_hub::api::sync::ApiBuilder::from_env()
            .with_progress(false)
            .build()
            .map_err(|e| Error::Msg(how_to_fix(&format!("cannot start the hub client: {e}"))))?;
        let cache = Cache::from_env().repo(hub_repo.clone());
        let api_repo = api.repo(hub_repo);
        // The cached file, else a download reported to `progress`.
        let get = |f: &str| match cache.get(f) {
            Some(p) => Ok(p),
            None => api_repo.download_with_progress(f, Downloads(progress)),
        };
        for f in required {
            note(get(f).map_err(|e| Error::Msg(how_to_fix(&format!("cannot download {f}: {e}"))))?);
        }
        for group in alternatives {
            let mut last = String::new();
            let mut found = false;
            for f in group.iter() {
                match get(f) {
                    Ok(p) => {
                        note(p);
                        found = true;
                        break;
                    }
                    Err(e) => last = e.to_string(),
                }
            }
            if !found {
                return Err(Error::Msg(how_to_fix(&format!(
                    "cannot download any of {}: {last}",
                    group.join(", ")
                ))));
            }
        }
        for f in optional {
            if let Ok(p) = get(f) {
                note(p);
            }
        }
    }
    dir.ok_or_else(|| Error::Msg(how_to_fix("nothing to fetch")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hub_ids_and_local_dirs() {
        assert_eq!(
            ModelRef::parse("google/vit-base-patch16-224-in21k").unwrap(),
            ModelRef::Hub {
                repo: "google/vit-base-patch16-224-in21k".into(),
                revision: None
            }
        );
        assert_eq!(
            ModelRef::parse("openai/clip-vit-base-patch32@refs/pr/1").unwrap(),
            ModelRef::Hub {
                repo: "openai/clip-vit-base-patch32".into(),
                revision: Some("refs/pr/1".into())
            }
        );
        assert_eq!(
            ModelRef::parse("google/vit-base-patch16-224@v1.0").unwrap(),
            ModelRef::Hub {
                repo: "google/vit-base-patch16-224".into(),
                revision: Some("v1.0".into())
            }
        );
        assert!(ModelRef::parse("not a model").is_err());
        let d = tempfile::tempdir().unwrap();
        assert_eq!(
            ModelRef::parse(d.path().to_str().unwrap()).unwrap(),
            ModelRef::Local(d.path().to_path_buf())
        );
    }

    /// Offline: an uncached id is one clear error; once the standard cache layout holds the
    /// files, the same id resolves to the snapshot directory. (One test: both set HF_HOME.)
    #[test]
    fn offline_reads_only_the_standard_cache() {
        let home = tempfile::tempdir().unwrap();
        std::env::set_var("HF_HOME", home.path());
        std::env::set_var("HF_HUB_OFFLINE", "1");
        let image_model = |id| {
            resolve(
                id,
                &["config.json"],
                &[&["model.safetensors", "pytorch_model.bin"]],
                &["preprocessor_config.json"],
                &crate::progress::Silent,
            )
        };
        let err = image_model("acme/tiny-vit").unwrap_err().to_string();
        assert!(
            err.contains("HF_HUB_OFFLINE is set") && err.contains("local directory"),
            "{err}"
        );
        let repo = home.path().join("hub").join("models--acme--tiny-vit");
        let snap = repo.join("snapshots").join("abc123");
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs").join("main"), "abc123").unwrap();
        std::fs::write(snap.join("config.json"), "{}").unwrap();
        // Only the weights' alternative that exists is needed.
        std::fs::write(snap.join("pytorch_model.bin"), "").unwrap();
        let dir = image_model("acme/tiny-vit");
        std::env::remove_var("HF_HUB_OFFLINE");
        std::env::remove_var("HF_HOME");
        assert_eq!(dir.unwrap(), snap);
    }
}
