//! A stack of encoder blocks; records hidden states when tracing.
use super::block::{BlockConfig, BlockNames, EncoderBlock};
use super::ctx::Ctx;
use candle_core::{DType, Result, Tensor};
use candle_nn::VarBuilder;

/// Encoder blocks named `{prefix}.{i}`.
#[derive(Clone, Debug)]
pub struct Encoder {
    pub blocks: Vec<EncoderBlock>,
}

impl Encoder {
    pub fn new(
        vb: VarBuilder,
        names: &BlockNames,
        cfg: &BlockConfig,
        depth: usize,
    ) -> Result<Self> {
        let blocks = (0..depth)
            .map(|i| EncoderBlock::new(vb.pp(i), names, cfg))
            .collect::<Result<_>>()?;
        Ok(Encoder { blocks })
    }

    /// Sets the inference dtype of every block: `BF16` runs the linears on the AVX512_BF16
    /// kernel on the inference path (training and traced forwards stay f32).
    pub fn prepare(&mut self, dtype: DType) -> Result<()> {
        self.blocks.iter_mut().try_for_each(|b| b.prepare(dtype))
    }

    /// Every block's LayerNorms.
    pub fn layer_norms(&self) -> Vec<&super::LayerNorm> {
        self.blocks.iter().flat_map(|b| b.layer_norms()).collect()
    }

    /// [B, N, D] -> [B, N, D]
    pub fn forward(&self, x: &Tensor, mask: Option<&Tensor>, ctx: &mut Ctx) -> Result<Tensor> {
        let mut x = x.clone();
        if let Some(t) = ctx.trace.as_deref_mut() {
            t.hidden_states.push(x.detach());
        }
        for block in &self.blocks {
            x = block.forward(&x, mask, ctx)?;
            if let Some(t) = ctx.trace.as_deref_mut() {
                t.hidden_states.push(x.detach());
            }
        }
        Ok(x)
    }
}
