//! tessera: vision and multimodal transformers on candle.
//!
//! Library first: the `tessera` binary is a thin layer over this API.
//! - [`nn`]: the shared blocks (one attention, one MLP, one encoder block, patch embedding),
//!   fused CPU ops with backward, and the parameter store that loads and reports checkpoints.
//! - [`models`]: models composed from those blocks (the seed ViT).
//! - [`data`]: datasets (embedded digits, Fashion-MNIST IDX, ImageFolder) and batching.
//! - [`image`]: decoding and resizing images into model inputs.
//! - [`train`]: cross-entropy, AdamW, LR schedules, the trainer with checkpoints and resume.

// mimalloc keeps candle's per-op buffers instead of handing them back to the OS:
// glibc malloc's page faults cost up to half of a training step.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod data;
pub mod error;
pub mod explain;
pub mod hub;
pub mod image;
pub mod kernels;
pub mod models;
pub mod nn;
pub mod pipelines;
pub mod train;
pub mod util;

pub use error::{Error, Result};
