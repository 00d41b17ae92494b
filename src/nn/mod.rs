//! The shared building blocks every model composes (no per-model attention copies), bottom-up;
//! no file imports from a file above it:
//!
//! 1. [`cpu`], [`math`], [`interpolate`]: CPU f32 tensor access and the one device predicate
//!    ([`cpu::kernels_apply`]); vectorisable `exp`/`erf`, lane reductions, row softmax;
//!    `F.interpolate` on planes.
//! 2. [`activation`], [`dropout`]: the activations (one table of HF names) and the counter-based
//!    dropout mask.
//! 3. [`ops`] (differentiable CPU ops: softmax, LayerNorm, linear, activations, each with
//!    backward), [`sdpa`] (attention per (image, head) from one q|k|v buffer, forward and
//!    backward), [`infer`] (the gradient-free inference linear on packed weights).
//! 4. [`ctx`]: per-forward state and [`Ctx::path`], the one predicate that picks a module's path.
//! 5. [`layers`] (Linear, LayerNorm), [`patch_embed`].
//! 6. [`attention`] (with its KV cache) → 7. [`block`] (MLP, encoder block) → 8. [`encoder`];
//!    beside the block, [`latent`]: the Perceiver's layer (latents cross-attending into a long
//!    input, separate query/key and value widths, the optional query residual); after it,
//!    [`coattention`]: two streams attending to each other (LXMERT's shared cross-attention,
//!    ViLBERT's per-direction co-attention), post-norm BERT sub-layers; [`llama`] (RMSNorm,
//!    RoPE, SwiGLU, bias-free attention, the decoder layer) and above it [`flamingo`]
//!    (IDEFICS's Perceiver resampler and tanh-gated cross-attention).
//! 9. [`generate`]: the one generation loop (greedy, sampling, beam search) over any
//!    [`generate::Decoder`].
//!
//! [`store`] (the parameter store behind every `VarBuilder`) stands apart: models use it to load.
pub mod activation;
pub mod attention;
pub mod block;
pub mod coattention;
pub mod conv;
pub mod cpu;
pub mod ctx;
pub mod dropout;
pub mod encoder;
pub mod flamingo;
pub mod generate;
pub mod infer;
pub mod interpolate;
pub mod latent;
pub mod layers;
pub mod llama;
pub mod math;
pub mod ops;
pub mod patch_embed;
pub mod sdpa;
pub mod store;

pub use activation::Activation;
pub use attention::{
    causal_mask, check_heads, padding_mask, Attention, AttnConfig, AttnNames, KvCache, Positions,
    QkvNames,
};
pub use block::{BlockConfig, BlockNames, DecoderBlock, DecoderNames, EncoderBlock, Mlp};
pub use coattention::{
    CoAttention, CoAttentionLayer, CoLayerConfig, CoLayerNames, CrossNames, FfnNames,
    PostNormAttention, PostNormFfn, TailNames,
};
pub use ctx::{Ctx, Path, Segments, Trace};
pub use encoder::Encoder;
pub use infer::{inference_dtype, PackedWeight, Precision};
pub use latent::{LatentConfig, LatentLayer};
pub use layers::{LayerNorm, Linear, Then};
pub use patch_embed::{check_patch_grid, PatchEmbed};
pub use store::{LoadReport, ParamStore};
