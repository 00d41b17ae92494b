//! How long-running library calls report what they do (downloads, training, indexing): the
//! library never prints or draws; the caller passes an observer. The CLI renders one with
//! indicatif progress bars on stderr; [`Silent`] ignores everything.
use std::sync::Arc;

/// Observer of a long-running call. Every method defaults to doing nothing; calls may come
/// from worker threads.
pub trait Progress: Send + Sync {
    /// A phase begins (`what`: e.g. "epoch 2/10", "indexing", a file name) with `total` units
    /// (batches, images, bytes) when known.
    fn start(&self, _what: &str, _total: Option<u64>) {}
    /// A phase counted in bytes (a download of `total` bytes).
    fn start_bytes(&self, what: &str, total: u64) {
        self.start(what, Some(total))
    }
    /// `n` more units are done; `status` is a short line (loss, speed) or empty.
    fn advance(&self, _n: u64, _status: &str) {}
    /// The phase ended.
    fn finish(&self) {}
    /// Something the user should read: a finished epoch's numbers, a skipped file, a note that
    /// a run resumed.
    fn note(&self, _message: &str) {}
}

/// Ignores everything.
#[derive(Clone, Copy, Debug, Default)]
pub struct Silent;

impl Progress for Silent {}

/// A shareable observer handle (for option structs that are `Clone`).
#[derive(Clone)]
pub struct Observer(pub Arc<dyn Progress>);

impl Observer {
    pub fn new(p: impl Progress + 'static) -> Self {
        Observer(Arc::new(p))
    }
}

impl Default for Observer {
    fn default() -> Self {
        Observer::new(Silent)
    }
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Observer")
    }
}

impl std::ops::Deref for Observer {
    type Target = dyn Progress;
    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}
