//! The one MLP and the one encoder block (pre-norm or post-norm), for every model.
use super::attention::{Attention, AttnNames, QkvNames};
use super::layers::{Ctx, LayerNorm, Linear};
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// Exact GELU with erf (PyTorch `gelu`, HF `gelu`).
    Gelu,
    /// tanh approximation (HF `gelu_new`, `gelu_pytorch_tanh`).
    #[serde(alias = "gelu_new", alias = "gelu_pytorch_tanh")]
    GeluTanh,
    /// x * sigmoid(1.702 x), OpenAI CLIP.
    QuickGelu,
    Relu,
}

impl Activation {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        super::ops::activation(x, *self)
    }
}

/// Two linears with an activation between.
#[derive(Clone, Debug)]
pub struct Mlp {
    fc1: Linear,
    fc2: Linear,
    act: Activation,
    dropout: f64,
}

impl Mlp {
    pub fn new(
        vb: VarBuilder,
        fc1: &str,
        fc2: &str,
        dim: usize,
        hidden: usize,
        act: Activation,
        dropout: f64,
    ) -> Result<Self> {
        Ok(Mlp {
            fc1: Linear::new(vb.pp(fc1), dim, hidden, true)?,
            fc2: Linear::new(vb.pp(fc2), hidden, dim, true)?,
            act,
            dropout,
        })
    }

    /// Inference: `residual + fc2(act(fc1(x)))`, each linear written once with its bias,
    /// activation or residual fused.
    pub fn forward_fused(&self, x: &Tensor, residual: Option<&Tensor>) -> Result<Tensor> {
        let h = self.fc1.forward_fused(x, Some(self.act), None)?;
        self.fc2.forward_fused(&h, None, residual)
    }

    /// Sets the inference dtype of both linears.
    pub fn prepare(&mut self, dtype: candle_core::DType) -> Result<()> {
        self.fc1.prepare(dtype)?;
        self.fc2.prepare(dtype)
    }

    pub(crate) fn parameters(&self) -> Vec<&Tensor> {
        [&self.fc1, &self.fc2]
            .into_iter()
            .flat_map(|l| std::iter::once(&l.weight).chain(l.bias.as_ref()))
            .collect()
    }

    /// [.., D] -> [.., hidden] -> [.., D]
    pub fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let h = self.act.forward(&self.fc1.forward(x)?)?;
        let h = ctx.dropout(&h, self.dropout)?;
        self.fc2.forward(&h)
    }
}

/// Checkpoint names of one encoder block; the layouts this project reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockNames {
    pub norm1: &'static str,
    pub norm2: &'static str,
    pub attn: &'static str,
    pub attn_names: AttnNames,
    pub fc1: &'static str,
    pub fc2: &'static str,
}

impl BlockNames {
    /// `nn.TransformerEncoderLayer`.
    pub const TORCH: BlockNames = BlockNames {
        norm1: "norm1",
        norm2: "norm2",
        attn: "self_attn",
        attn_names: AttnNames {
            qkv: QkvNames::TorchInProj,
            out: "out_proj",
        },
        fc1: "linear1",
        fc2: "linear2",
    };
    /// timm `Block`.
    pub const TIMM: BlockNames = BlockNames {
        norm1: "norm1",
        norm2: "norm2",
        attn: "attn",
        attn_names: AttnNames {
            qkv: QkvNames::FusedLinear("qkv"),
            out: "proj",
        },
        fc1: "mlp.fc1",
        fc2: "mlp.fc2",
    };
    /// Hugging Face `ViTLayer`.
    pub const HF_VIT: BlockNames = BlockNames {
        norm1: "layernorm_before",
        norm2: "layernorm_after",
        attn: "attention",
        attn_names: AttnNames {
            qkv: QkvNames::Separate {
                q: "attention.query",
                k: "attention.key",
                v: "attention.value",
            },
            out: "output.dense",
        },
        fc1: "intermediate.dense",
        fc2: "output.dense",
    };
    /// Hugging Face `CLIPEncoderLayer`.
    pub const CLIP: BlockNames = BlockNames {
        norm1: "layer_norm1",
        norm2: "layer_norm2",
        attn: "self_attn",
        attn_names: AttnNames {
            qkv: QkvNames::Separate {
                q: "q_proj",
                k: "k_proj",
                v: "v_proj",
            },
            out: "out_proj",
        },
        fc1: "mlp.fc1",
        fc2: "mlp.fc2",
    };
}

#[derive(Clone, Debug)]
pub struct BlockConfig {
    pub dim: usize,
    pub heads: usize,
    pub mlp_dim: usize,
    pub act: Activation,
    /// true: x + f(norm(x)) (timm/HF); false: norm(x + f(x)) (PyTorch default, the seed).
    pub pre_norm: bool,
    pub eps: f64,
    pub qkv_bias: bool,
    pub dropout: f64,
    pub attn_dropout: f64,
}

/// One transformer encoder block.
#[derive(Clone, Debug)]
pub struct EncoderBlock {
    norm1: LayerNorm,
    attn: Attention,
    norm2: LayerNorm,
    mlp: Mlp,
    pre_norm: bool,
    dropout: f64,
}

impl EncoderBlock {
    pub fn new(vb: VarBuilder, names: &BlockNames, cfg: &BlockConfig) -> Result<Self> {
        Ok(EncoderBlock {
            norm1: LayerNorm::new(vb.pp(names.norm1), cfg.dim, cfg.eps)?,
            attn: Attention::new(
                vb.pp(names.attn),
                names.attn_names,
                cfg.dim,
                cfg.heads,
                cfg.qkv_bias,
                cfg.attn_dropout,
            )?,
            norm2: LayerNorm::new(vb.pp(names.norm2), cfg.dim, cfg.eps)?,
            mlp: Mlp::new(
                vb.clone(),
                names.fc1,
                names.fc2,
                cfg.dim,
                cfg.mlp_dim,
                cfg.act,
                cfg.dropout,
            )?,
            pre_norm: cfg.pre_norm,
            dropout: cfg.dropout,
        })
    }

    pub fn attention(&self) -> &Attention {
        &self.attn
    }

    /// [B, N, D] -> [B, N, D]
    pub fn forward(&self, x: &Tensor, mask: Option<&Tensor>, ctx: &mut Ctx) -> Result<Tensor> {
        if ctx.fused(x, || self.parameters()) {
            return self.forward_fused(x, mask);
        }
        if self.pre_norm {
            let a = self
                .attn
                .forward(&self.norm1.forward(x)?, None, mask, ctx)?;
            let x = (x + ctx.dropout(&a, self.dropout)?)?;
            let m = self.mlp.forward(&self.norm2.forward(&x)?, ctx)?;
            x + ctx.dropout(&m, self.dropout)?
        } else {
            let a = self.attn.forward(x, None, mask, ctx)?;
            let x = self.norm1.forward(&(x + ctx.dropout(&a, self.dropout)?)?)?;
            let m = self.mlp.forward(&x, ctx)?;
            self.norm2.forward(&(x + ctx.dropout(&m, self.dropout)?)?)
        }
    }
}

impl EncoderBlock {
    /// Every parameter tensor of the block (a partly frozen block must not take the
    /// gradient-free path while any of its parameters still wants a gradient).
    fn parameters(&self) -> Vec<&Tensor> {
        let mut p = self.attn.parameters();
        p.extend(self.mlp.parameters());
        for n in [&self.norm1, &self.norm2] {
            p.push(&n.weight);
            p.push(&n.bias);
        }
        p
    }

    /// Sets the inference dtype of every linear in the block (see [`Linear::prepare`]).
    pub fn prepare(&mut self, dtype: candle_core::DType) -> Result<()> {
        self.attn.prepare(dtype)?;
        self.mlp.prepare(dtype)
    }

    /// The inference path: the residual adds happen inside the out-projection and fc2 matmuls.
    fn forward_fused(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        if self.pre_norm {
            let x = self
                .attn
                .forward_fused(&self.norm1.forward(x)?, mask, Some(x))?;
            self.mlp.forward_fused(&self.norm2.forward(&x)?, Some(&x))
        } else {
            let x = self
                .norm1
                .forward(&self.attn.forward_fused(x, mask, Some(x))?)?;
            self.norm2.forward(&self.mlp.forward_fused(&x, Some(&x))?)
        }
    }
}

/// A stack of encoder blocks named `{prefix}.{i}`; records hidden states when tracing.
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
    /// kernel in the fused inference path (training and traced forwards stay f32).
    pub fn prepare(&mut self, dtype: candle_core::DType) -> Result<()> {
        self.blocks.iter_mut().try_for_each(|b| b.prepare(dtype))
    }

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
