//! The global allocator: mimalloc, counting the bytes held in large allocations.
use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Allocations from this size up are counted: tensors and buffers, where the memory is.
/// Smaller ones go uncounted so that their many calls pay no atomic operations.
pub const COUNTED_FROM: usize = 64 << 10;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// mimalloc with two counters: the bytes live in allocations of at least
/// [`COUNTED_FROM`] bytes, and the most that ever were.
pub struct Counting;

fn grew(n: usize) {
    if n >= COUNTED_FROM {
        let live = LIVE.fetch_add(n, Relaxed) + n;
        PEAK.fetch_max(live, Relaxed);
    }
}

fn shrank(n: usize) {
    if n >= COUNTED_FROM {
        LIVE.fetch_sub(n, Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to mimalloc; the counters only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = mimalloc::MiMalloc.alloc(l);
        if !p.is_null() {
            grew(l.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let p = mimalloc::MiMalloc.alloc_zeroed(l);
        if !p.is_null() {
            grew(l.size());
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        shrank(l.size());
        mimalloc::MiMalloc.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = mimalloc::MiMalloc.realloc(p, l, new);
        if !q.is_null() {
            shrank(l.size());
            grew(new);
        }
        q
    }
}

/// Bytes now held in large allocations (tensors, buffers).
pub fn live_bytes() -> usize {
    LIVE.load(Relaxed)
}

/// The most bytes ever held at once in large allocations since the start or the last
/// [`reset_peak`]. Against the process's peak RSS it shows what the allocator keeps besides
/// (freed pages it holds, per-thread heaps) and what small allocations and code add.
pub fn peak_bytes() -> usize {
    PEAK.load(Relaxed)
}

/// Starts a new peak from the bytes live now.
pub fn reset_peak() {
    PEAK.store(LIVE.load(Relaxed), Relaxed);
}
