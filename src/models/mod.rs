//! Models composed from the shared blocks in [`crate::nn`], and the one way to load them.
//!
//! Every model loads the same way — `X::load(source, &LoadOptions)` with `source` a local
//! directory or a hub id (`owner/name[@revision]`), or `X::from_config(&config, &LoadOptions)`
//! for fresh weights — and returns a [`Loaded<X>`]: the model, its parameter store and what the
//! load found. [`auto::AutoModel`] reads `config.json`'s `model_type` / `architectures` and
//! loads whichever model it names.
pub mod auto;
pub mod blip;
pub mod blip2;
mod checks;
pub mod clip;
pub mod detr;
pub mod idefics;
mod load;
pub mod lxmert;
pub mod opt;
pub mod perceiver;
pub mod resnet;
pub mod text_tokenizer;
pub mod vit;

pub use auto::{AutoModel, Family};
pub use load::{Checkpoint, LoadOptions, Loaded, Pretrained, Task};
pub use text_tokenizer::TextTokenizer;

use crate::nn::{Ctx, LayerNorm};
use crate::Result;
use candle_core::Tensor;

/// A model that maps a batch of images to class logits, with the names of its classes.
pub trait ImageClassifier: Sync {
    /// Images [B, C, H, W] -> logits [B, K].
    fn logits(&self, images: &Tensor, ctx: &mut Ctx) -> Result<Tensor>;
    /// The name of class `i` (`id2label`, else `LABEL_i`).
    fn label(&self, i: usize) -> String;
    fn num_labels(&self) -> usize;
    /// Every LayerNorm of the model (what HF Trainer's decay rule exempts by type).
    fn layer_norms(&self) -> Vec<&LayerNorm>;
}
