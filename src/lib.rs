//! tessera: vision and multimodal transformers on candle.
//!
//! Library first: the `tessera` binary is a thin layer over this API. Modules, bottom-up (none
//! imports from one listed after it; `tests/layering.rs` checks):
//! - [`alloc`] (the global allocator: mimalloc, counting the bytes held in large allocations),
//!   [`error`], [`util`] (atomic writes, JSON, the worker pool), [`progress`] (how long calls
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

pub mod alloc;
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
