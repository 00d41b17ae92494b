//! Small helpers: crash-safe file writes, JSON, the worker pool, the memory the machine has.
use crate::{Error, Result};
use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` atomically (see [`atomic_write_with`]).
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    atomic_write_with(path, |tmp| {
        let mut f = std::fs::File::create(tmp).map_err(|e| Error::io(tmp, e))?;
        f.write_all(bytes).map_err(|e| Error::io(tmp, e))
    })
}

/// The one crash-safe write: `write` fills a temp file in `path`'s directory, which is fsynced,
/// renamed over `path`, and the directory fsynced — so a reader, or a run resumed after a
/// crash or `kill -9`, sees the old file or the new one, never a half-written one, and the
/// rename survives a power cut.
pub fn atomic_write_with(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let file_name = path
        .file_name()
        .ok_or_else(|| Error::Msg(format!("{}: not a file path", path.display())))?;
    let tmp = path.with_file_name(format!(
        ".{}.{}.tmp",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    // The permissions a new file gets here (the umask's): writers that stage through their
    // own temp file (safetensors uses `tempfile`, mode 0600) would otherwise leave the result
    // unreadable to everyone but its owner.
    let mode = std::fs::File::create(&tmp)
        .and_then(|f| f.metadata())
        .map_err(|e| Error::io(&tmp, e))?
        .permissions();
    let result = write(&tmp).and_then(|()| {
        std::fs::set_permissions(&tmp, mode).map_err(|e| Error::io(&tmp, e))?;
        let f = std::fs::File::open(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
        // The rename is in the directory: fsync it too. (Directories cannot be opened for
        // syncing on every platform; failing to is not an error of the write.)
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Reads a JSON file into `T` with errors naming the path.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut de = serde_json::Deserializer::from_str(&text);
    serde_path_to_error::deserialize(&mut de).map_err(|e| Error::json(path, e))
}

/// Writes `value` as pretty JSON, atomically.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::Msg(format!("serialising {}: {e}", path.display())))?;
    atomic_write(path, text.as_bytes())
}

/// The persistent worker threads (data-parallel shards, image decoding): at least one per core.
/// Threads spawned per step would each start a fresh allocator heap and page-fault their
/// buffers in again every step; candle's own pools are kept single-threaded while these run.
pub fn worker_pool(threads: usize) -> &'static rayon::ThreadPool {
    static POOL: std::sync::OnceLock<rayon::ThreadPool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        let n = threads.max(std::thread::available_parallelism().map_or(1, |n| n.get()));
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .thread_name(|i| format!("tessera-worker-{i}"))
            .build()
            .expect("cannot start the worker thread pool")
    })
}

/// Memory the OS can give this process now (Linux `MemAvailable` plus free swap), if known.
pub fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib = |key: &str| -> Option<u64> {
        let line = info.lines().find(|l| l.starts_with(key))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    Some((kib("MemAvailable:")? + kib("SwapFree:").unwrap_or(0)) * 1024)
}

/// Refuses an allocation of `bytes` that the machine cannot give (allocation failure aborts the
/// process instead of returning an error); `what` names it in the error.
pub fn check_alloc(bytes: u64, what: &str) -> Result<()> {
    match available_memory() {
        Some(avail) if bytes > avail => Err(Error::Config(format!(
            "{what} would need {} of memory; {} is available",
            human_bytes(bytes),
            human_bytes(avail)
        ))),
        _ => Ok(()),
    }
}

/// `12.3 GB`, `512 MB`, `4 KB`.
pub fn human_bytes(b: u64) -> String {
    let f = b as f64;
    match b {
        _ if f >= 1e9 => format!("{:.1} GB", f / 1e9),
        _ if f >= 1e6 => format!("{:.0} MB", f / 1e6),
        _ if f >= 1e3 => format!("{:.0} KB", f / 1e3),
        _ => format!("{b} bytes"),
    }
}

thread_local! {
    /// Set while [`contain_panics`] runs its closure on this thread.
    static CONTAINED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, a call into a third-party parser that may panic on malformed input (candle's
/// pickle reader does, on some `pytorch_model.bin` files), turning a panic into an error that
/// names `what`. The panic is not printed: a hook installed once chains to the previous hook
/// except on a thread inside this call.
pub fn contain_panics<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !CONTAINED.with(|c| c.get()) {
                previous(info)
            }
        }));
    });
    let was = CONTAINED.with(|c| c.replace(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    CONTAINED.with(|c| c.set(was));
    r.unwrap_or_else(|payload| {
        let why = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("malformed input");
        Err(Error::Msg(format!("{what}: {why}")))
    })
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    /// Files written atomically get the mode any new file gets (the umask's), also when the
    /// writer stages through a 0600 temp file of its own (safetensors does).
    #[test]
    fn atomic_writes_keep_the_default_mode() {
        let d = tempfile::tempdir().unwrap();
        let plain = d.path().join("plain");
        std::fs::File::create(&plain).unwrap();
        let want = std::fs::metadata(&plain).unwrap().permissions().mode() & 0o777;
        let st = d.path().join("model.safetensors");
        let t = candle_core::Tensor::zeros(3, candle_core::DType::F32, &candle_core::Device::Cpu)
            .unwrap();
        // What the parameter store's writer does (util sits below nn, so not through it).
        super::atomic_write_with(&st, |tmp| {
            safetensors::tensor::serialize_to_file(vec![("w", &t)], None, tmp)
                .map_err(|e| crate::Error::Msg(e.to_string()))
        })
        .unwrap();
        let js = d.path().join("config.json");
        super::write_json(&js, &serde_json::json!({"a": 1})).unwrap();
        for p in [st, js] {
            let got = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(got, want, "{}: {got:o} vs {want:o}", p.display());
        }
    }
}
