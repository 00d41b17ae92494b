//! tessera: vision and multimodal transformers on candle.
//!
//! Library first: the `tessera` binary is a thin layer over this API. Modules, bottom-up (none
//! imports from one listed after it; `tests/layering.rs` checks):
//! - [`error`], [`util`] (atomic writes, JSON, the worker pool), [`progress`] (how long calls
//!   report: the library never prints).
//! - [`kernels`]: hand-written CPU GEMMs (fp32 AVX-512, bf16 AVX512_BF16) on packed weights.
//! - [`nn`]: the shared blocks (one attention, one MLP, one pre/post-norm block, patch
//!   embedding; the Perceiver's latent layer, co-attention, LLaMA's blocks, Flamingo's resampler
//!   and gated cross-attention), differentiable CPU ops, the inference path, and the parameter
//!   store that loads and reports checkpoints.
//! - [`device`]: `--device auto|cpu|cuda[:N]`, `--devices` lists, what `--dtype auto` means on
//!   each (CUDA with the `cuda` feature).
//! - [`hub`]: model arguments as local directories or hub ids, through the standard HF cache.
//! - [`models`]: the seed ViT, HF ViT, CLIP, DETR, BLIP, BLIP-2/OPT, the Perceiver, LXMERT and
//!   IDEFICS, one loading shape for all ([`models::Pretrained`], [`models::LoadOptions`]), and
//!   [`models::AutoModel`].
//! - [`image`]: decoding (limits, EXIF, libjpeg-exact JPEG), Pillow- and torchvision-exact
//!   resampling, HF image processors.
//! - [`data`]: datasets (embedded digits, Fashion-MNIST, ImageFolder, HF parquet, generated
//!   scenes) and batching.
//! - [`train`]: cross-entropy, AdamW, schedules, the trainer with checkpoints and resume, the
//!   recipes behind `train`/`finetune`, CLIP's contrastive training, DETR, the captioner, and
//!   the fusion experiments (co-attention VQA, Flamingo's gates).
//! - [`pipelines`]: image classification, CLIP embeddings, zero-shot, search.
//! - [`explain`]: attention maps, rollout, relevance, rendered over the image.
//! - [`hosted`]: asking hosted or local multimodal models (Gemini, OpenAI-compatible servers).
//! - [`serve`]: `tessera serve`, an HTTP server for every model (OpenAI-shaped embeddings,
//!   zero-shot, classification, detection) with dynamic batching and Prometheus metrics.

// mimalloc keeps candle's per-op buffers instead of handing them back to the OS:
// glibc malloc's page faults cost up to half of a training step.
#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;

/// The global allocator: mimalloc, counting the bytes held in large allocations.
pub mod alloc {
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
}

/// Tells mimalloc never to hand freed memory back to the OS (its default purges after 10 ms).
/// A forward allocates and frees the same large activation buffers layer after layer; purged
/// pages come back zero-filled by the kernel (measured, ViT-B/16 batch 8: 24,220 page faults
/// and ~8% of the time in `clear_page`, vs 452 faults with purging off). Peak RSS is unchanged.
/// Called when a model's parameter store is created; idempotent.
pub fn keep_freed_memory() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // mi_option_purge_delay (15 in mimalloc v2 and v3); -1: never purge.
        const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
        // SAFETY: mi_option_set only stores an option value; any value is valid for this one.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    });
}

pub mod data;
pub mod device;
pub mod error;
pub mod explain;
pub mod hosted;
pub mod hub;
pub mod image;
pub mod kernels;
pub mod models;
pub mod nn;
pub mod pipelines;
pub mod progress;
pub mod serve;
pub mod train;
pub mod util;

pub use error::{Error, Result};
