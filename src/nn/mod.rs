//! The shared building blocks: every model composes these (no per-model attention copies).
pub mod attention;
pub mod block;
pub mod fused;
pub mod layers;
pub mod ops;
pub mod patch_embed;
pub mod store;

pub use attention::{causal_mask, padding_mask, Attention, AttnNames, QkvNames};
pub use block::{Activation, BlockConfig, BlockNames, Encoder, EncoderBlock, Mlp};
pub use layers::{Ctx, LayerNorm, Linear};
pub use patch_embed::PatchEmbed;
pub use store::{LoadReport, ParamStore};

use candle_core::{DType, Tensor};

/// The inference dtype named `f32`, `bf16` or `auto` (bf16 where the CPU has AVX512_BF16
/// dot products, else f32).
pub fn inference_dtype(name: &str) -> crate::Result<DType> {
    match name.to_ascii_lowercase().as_str() {
        "f32" | "float32" | "fp32" => Ok(DType::F32),
        "bf16" | "bfloat16" => Ok(DType::BF16),
        "auto" => Ok(if crate::kernels::bf16::has_avx512_bf16() {
            DType::BF16
        } else {
            DType::F32
        }),
        other => Err(crate::Error::Config(format!(
            "unknown dtype {other:?}: use f32, bf16 or auto"
        ))),
    }
}

/// Intermediates on request: a forward fills this when the caller passes one.
#[derive(Debug, Default, Clone)]
pub struct Trace {
    /// Per layer: attention probabilities [B, H, N, M].
    pub attentions: Vec<Tensor>,
    /// The embeddings, then the output of each layer: [B, N, D].
    pub hidden_states: Vec<Tensor>,
    /// When set, one zero variable per attention layer is added to its probabilities, so a
    /// backward pass yields the gradient of any output with respect to every attention map
    /// (for gradient-weighted relevance). `None` in the normal traced path: no extra cost.
    pub probes: Option<Vec<candle_core::Var>>,
}

impl Trace {
    /// A trace that also records gradient probes on the attention maps.
    pub fn with_gradients() -> Self {
        Trace {
            probes: Some(vec![]),
            ..Default::default()
        }
    }
}
