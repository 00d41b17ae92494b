//! The one MLP and the one transformer block (pre-norm or post-norm), for every model.
use super::activation::Activation;
use super::attention::{Attention, AttnConfig, AttnNames, KvCache, Positions, QkvNames};
use super::ctx::{Ctx, Path};
use super::infer::Precision;
use super::layers::{LayerNorm, Linear, Then};
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

/// Two linears with an activation between: `residual + drop2(fc2(drop1(act(fc1(x)))))`.
#[derive(Clone, Debug)]
pub struct Mlp {
    fc1: Linear,
    fc2: Linear,
    act: Activation,
    /// After the activation (PyTorch's `TransformerEncoderLayer.dropout`, timm's `drop1`; HF
    /// ViT and CLIP have none).
    act_dropout: f64,
    /// After fc2, before the residual add (PyTorch's `dropout2`, timm's `drop2`, HF
    /// `ViTOutput.dropout`).
    out_dropout: f64,
}

impl Mlp {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        vb: VarBuilder,
        fc1: &str,
        fc2: &str,
        dim: usize,
        hidden: usize,
        act: Activation,
        act_dropout: f64,
        out_dropout: f64,
    ) -> Result<Self> {
        Ok(Mlp {
            fc1: Linear::new(vb.pp(fc1), dim, hidden, true)?,
            fc2: Linear::new(vb.pp(fc2), hidden, dim, true)?,
            act,
            act_dropout,
            out_dropout,
        })
    }

    /// Sets the inference dtype of both linears.
    pub fn prepare(&mut self, dtype: Precision) -> Result<()> {
        self.fc1.prepare(dtype)?;
        self.fc2.prepare(dtype)
    }

    /// [.., D] -> [.., hidden] -> [.., D], plus `residual`. On the inference path each linear is
    /// written once with its activation or residual add fused into the GEMM epilogue.
    pub fn forward(&self, x: &Tensor, residual: Option<&Tensor>, ctx: &mut Ctx) -> Result<Tensor> {
        let then = Then::none().dropout(self.out_dropout).residual(residual);
        // Training with nothing between the activation and fc2: fc2 takes the pre-activation
        // and applies the activation itself, so the graph keeps the hidden layer once.
        let params = || {
            [&self.fc1, &self.fc2]
                .into_iter()
                .flat_map(Linear::parameters)
                .collect()
        };
        if (self.act_dropout <= 0.0 || !ctx.train) && ctx.path(x, params) == Path::Kernels {
            let h = self.fc1.forward(x, Then::none(), ctx)?;
            return self.fc2.forward_act_input(&h, self.act, then, ctx);
        }
        let h = self
            .fc1
            .forward(x, Then::act(self.act).dropout(self.act_dropout), ctx)?;
        self.fc2.forward(&h, then, ctx)
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
    /// BERT's `BertLayer` without cross-attention (post-norm): LXMERT's language and
    /// relationship layers.
    pub const BERT: BlockNames = BlockNames {
        norm1: "attention.output.LayerNorm",
        norm2: "output.LayerNorm",
        attn: "attention",
        attn_names: AttnNames {
            qkv: QkvNames::Separate {
                q: "self.query",
                k: "self.key",
                v: "self.value",
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
    /// Dropout on each branch's output before its residual add (attention's out projection,
    /// the MLP's fc2).
    pub dropout: f64,
    /// Dropout after the MLP's activation.
    pub mlp_dropout: f64,
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
}

impl EncoderBlock {
    /// Elements of the block's attention and MLP weights and biases.
    pub fn parameter_count(&self) -> usize {
        let mlp = [&self.mlp.fc1, &self.mlp.fc2];
        (self.attn.parameters().into_iter())
            .chain(mlp.into_iter().flat_map(Linear::parameters))
            .map(Tensor::elem_count)
            .sum()
    }

    pub fn new(vb: VarBuilder, names: &BlockNames, cfg: &BlockConfig) -> Result<Self> {
        let attn = AttnConfig {
            dim: cfg.dim,
            heads: cfg.heads,
            qkv_bias: cfg.qkv_bias,
            attn_dropout: cfg.attn_dropout,
            proj_dropout: cfg.dropout,
            kv_dim: None,
            inner: None,
        };
        Ok(EncoderBlock {
            norm1: LayerNorm::new(vb.pp(names.norm1), cfg.dim, cfg.eps)?,
            attn: Attention::new(vb.pp(names.attn), names.attn_names, &attn)?,
            norm2: LayerNorm::new(vb.pp(names.norm2), cfg.dim, cfg.eps)?,
            mlp: Mlp::new(
                vb.clone(),
                names.fc1,
                names.fc2,
                cfg.dim,
                cfg.mlp_dim,
                cfg.act,
                cfg.mlp_dropout,
                cfg.dropout,
            )?,
            pre_norm: cfg.pre_norm,
        })
    }

    pub fn attention(&self) -> &Attention {
        &self.attn
    }

    pub fn layer_norms(&self) -> [&LayerNorm; 2] {
        [&self.norm1, &self.norm2]
    }

    /// Sets the inference dtype of every linear in the block (see [`Linear::prepare`]).
    pub fn prepare(&mut self, dtype: Precision) -> Result<()> {
        self.attn.prepare(dtype)?;
        self.mlp.prepare(dtype)
    }

    /// [B, N, D] -> [B, N, D]. Each branch adds its own residual (inside the out projection's
    /// and fc2's output pass on the inference path).
    pub fn forward(&self, x: &Tensor, mask: Option<&Tensor>, ctx: &mut Ctx) -> Result<Tensor> {
        self.forward_with_positions(x, None, mask, ctx)
    }

    /// [`EncoderBlock::forward`] with `pos` [B, N, D] added to the attention's query and key
    /// inputs (DETR's encoder layer).
    pub fn forward_with_positions(
        &self,
        x: &Tensor,
        pos: Option<&Tensor>,
        mask: Option<&Tensor>,
        ctx: &mut Ctx,
    ) -> Result<Tensor> {
        let pos = Positions {
            query: pos,
            key: None,
        };
        if self.pre_norm {
            // x + attn(norm1(x)), then x + mlp(norm2(x))
            let x = self.attn.forward_with_positions(
                &self.norm1.forward(x)?,
                None,
                pos,
                mask,
                Some(x),
                ctx,
            )?;
            self.mlp.forward(&self.norm2.forward(&x)?, Some(&x), ctx)
        } else {
            // norm1(x + attn(x)), then norm2(x + mlp(x))
            let x = self.norm1.forward(&self.attn.forward_with_positions(
                x,
                None,
                pos,
                mask,
                Some(x),
                ctx,
            )?)?;
            self.norm2.forward(&self.mlp.forward(&x, Some(&x), ctx)?)
        }
    }
}

impl EncoderBlock {
    /// Incremental decoding (a causal decoder's layer, OPT's): [`EncoderBlock::forward`] over
    /// the new positions `x` [B, N, D] only, the attention appending their keys and values to
    /// `cache` and attending over everything cached (`mask` additive, [B or 1, 1, N, T]).
    pub fn forward_cached(
        &self,
        x: &Tensor,
        mask: Option<&Tensor>,
        cache: &mut KvCache,
        ctx: &mut Ctx,
    ) -> Result<Tensor> {
        if self.pre_norm {
            // x + attn(norm1(x)), then x + mlp(norm2(x))
            let h = self.norm1.forward(x)?;
            let x = self
                .attn
                .forward_cached(&h, None, cache, mask, Some(x), ctx)?;
            self.mlp.forward(&self.norm2.forward(&x)?, Some(&x), ctx)
        } else {
            // norm1(x + attn(x)), then norm2(x + mlp(x))
            let h = self
                .attn
                .forward_cached(x, None, cache, mask, Some(x), ctx)?;
            let x = self.norm1.forward(&h)?;
            self.norm2.forward(&self.mlp.forward(&x, Some(&x), ctx)?)
        }
    }
}

impl BlockNames {
    /// transformers' DETR encoder layer (on-disk names): CLIP's attention names.
    pub const DETR: BlockNames = BlockNames {
        norm1: "self_attn_layer_norm",
        norm2: "final_layer_norm",
        fc1: "fc1",
        fc2: "fc2",
        ..BlockNames::CLIP
    };
}

/// Checkpoint names of one decoder block (self-attention, cross-attention, MLP).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecoderNames {
    pub self_attn: &'static str,
    pub self_norm: &'static str,
    pub cross_attn: &'static str,
    pub cross_norm: &'static str,
    pub attn_names: AttnNames,
    pub fc1: &'static str,
    pub fc2: &'static str,
    pub final_norm: &'static str,
}

impl DecoderNames {
    /// transformers' DETR decoder layer (on-disk names).
    pub const DETR: DecoderNames = DecoderNames {
        self_attn: "self_attn",
        self_norm: "self_attn_layer_norm",
        cross_attn: "encoder_attn",
        cross_norm: "encoder_attn_layer_norm",
        // The attention's names are CLIP's (BART's, which DETR's code copies).
        attn_names: BlockNames::CLIP.attn_names,
        fc1: "fc1",
        fc2: "fc2",
        final_norm: "final_layer_norm",
    };
}

/// A post-norm decoder block: `x = norm(x + self_attn(x))`, `x = norm(x + cross_attn(x,
/// memory))`, `x = norm(x + mlp(x))`, with position embeddings on queries and keys.
#[derive(Clone, Debug)]
pub struct DecoderBlock {
    self_attn: Attention,
    self_norm: LayerNorm,
    cross_attn: Attention,
    cross_norm: LayerNorm,
    mlp: Mlp,
    final_norm: LayerNorm,
}

impl DecoderBlock {
    pub fn new(vb: VarBuilder, names: &DecoderNames, cfg: &BlockConfig) -> Result<Self> {
        let attn = AttnConfig {
            dim: cfg.dim,
            heads: cfg.heads,
            qkv_bias: cfg.qkv_bias,
            attn_dropout: cfg.attn_dropout,
            proj_dropout: cfg.dropout,
            kv_dim: None,
            inner: None,
        };
        Ok(DecoderBlock {
            self_attn: Attention::new(vb.pp(names.self_attn), names.attn_names, &attn)?,
            self_norm: LayerNorm::new(vb.pp(names.self_norm), cfg.dim, cfg.eps)?,
            cross_attn: Attention::new(vb.pp(names.cross_attn), names.attn_names, &attn)?,
            cross_norm: LayerNorm::new(vb.pp(names.cross_norm), cfg.dim, cfg.eps)?,
            mlp: Mlp::new(
                vb.clone(),
                names.fc1,
                names.fc2,
                cfg.dim,
                cfg.mlp_dim,
                cfg.act,
                cfg.mlp_dropout,
                cfg.dropout,
            )?,
            final_norm: LayerNorm::new(vb.pp(names.final_norm), cfg.dim, cfg.eps)?,
        })
    }

    /// Queries `x` [B, Q, D] (positions `query_pos`) attend to themselves, then to `memory`
    /// [B, M, D] (positions `memory_pos`, additive `memory_mask` over M). Returns [B, Q, D].
    pub fn forward(
        &self,
        x: &Tensor,
        query_pos: Option<&Tensor>,
        memory: &Tensor,
        memory_pos: Option<&Tensor>,
        memory_mask: Option<&Tensor>,
        ctx: &mut Ctx,
    ) -> Result<Tensor> {
        let own = Positions {
            query: query_pos,
            key: None,
        };
        let h = self
            .self_attn
            .forward_with_positions(x, None, own, None, Some(x), ctx)?;
        let x = self.self_norm.forward(&h)?;
        let cross = Positions {
            query: query_pos,
            key: memory_pos,
        };
        let h = self.cross_attn.forward_with_positions(
            &x,
            Some(memory),
            cross,
            memory_mask,
            Some(&x),
            ctx,
        )?;
        let x = self.cross_norm.forward(&h)?;
        self.final_norm
            .forward(&self.mlp.forward(&x, Some(&x), ctx)?)
    }
}
