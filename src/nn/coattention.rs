//! Co-attention: two streams (text and image regions) that attend to each other, the fusion of
//! ViLBERT and LXMERT. Every sub-layer is post-norm BERT style: `LN(x + f(x))`.
//!
//! - [`PostNormAttention`]: `LN(x + out(attention(q = x, k|v = context)))`, self or cross, the
//!   queries' stream keeping its width (BERT's `attention.{self, output}`).
//! - [`CoAttention`]: both directions computed from the same inputs: stream A's queries over B's
//!   keys and values, and B's over A's. LXMERT shares one module between the directions
//!   (`visual_attention`); ViLBERT has one per direction, with streams of different widths
//!   projected into a common attention width (`bi_hidden_size`).
//! - [`CoAttentionLayer`]: co-attention, then per stream either a post-norm
//!   [`EncoderBlock`] (LXMERT: self-attention and feed-forward) or the feed-forward alone
//!   (ViLBERT's connection layer).
use super::activation::Activation;
use super::attention::{Attention, AttnConfig, AttnNames, KvCache, QkvNames};
use super::block::{BlockConfig, BlockNames, EncoderBlock, Mlp};
use super::ctx::Ctx;
use super::infer::Precision;
use super::layers::LayerNorm;
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

/// BERT's attention names under a sub-layer's prefix: `self.{query,key,value}`,
/// `output.dense`, with the norm at `output.LayerNorm`.
pub const BERT_ATTENTION: AttnNames = BlockNames::BERT.attn_names;

/// BERT's attention output norm, beside [`BERT_ATTENTION`].
pub const BERT_ATTENTION_NORM: &str = "output.LayerNorm";

/// `LN(x + dropout(out(attention)))`: BERT's attention sub-layer, as self-attention (no
/// context) or cross-attention (queries from `x`, keys and values from a context of its own
/// width).
#[derive(Clone, Debug)]
pub struct PostNormAttention {
    attn: Attention,
    norm: LayerNorm,
}

impl PostNormAttention {
    /// `names` are relative to `vb`, the norm at `norm`; `cfg.dim` is the queries' (and the
    /// output's) width.
    pub fn new(
        vb: VarBuilder,
        names: AttnNames,
        norm: &str,
        cfg: &AttnConfig,
        eps: f64,
    ) -> Result<Self> {
        Ok(PostNormAttention {
            attn: Attention::new(vb.clone(), names, cfg)?,
            norm: LayerNorm::new(vb.pp(norm), cfg.dim, eps)?,
        })
    }

    /// `x` [B, N, D], `context` [B, M, D'] (`None`: self-attention), `mask` additive over the
    /// keys -> [B, N, D]; the probabilities go to the trace.
    pub fn forward(
        &self,
        x: &Tensor,
        context: Option<&Tensor>,
        mask: Option<&Tensor>,
        ctx: &mut Ctx,
    ) -> Result<Tensor> {
        let h = self.attn.forward(x, context, mask, Some(x), ctx)?;
        self.norm.forward(&h)
    }

    /// [`PostNormAttention::forward`] for incremental decoding (see
    /// [`Attention::forward_cached`]).
    pub fn forward_cached(
        &self,
        x: &Tensor,
        context: Option<&Tensor>,
        cache: &mut KvCache,
        mask: Option<&Tensor>,
        ctx: &mut Ctx,
    ) -> Result<Tensor> {
        let h = self
            .attn
            .forward_cached(x, context, cache, mask, Some(x), ctx)?;
        self.norm.forward(&h)
    }

    /// Sets the inference dtype of the projections.
    pub fn prepare(&mut self, dtype: Precision) -> Result<()> {
        self.attn.prepare(dtype)
    }
}

/// Names of a post-norm feed-forward: the two linears and the norm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FfnNames {
    pub fc1: &'static str,
    pub fc2: &'static str,
    pub norm: &'static str,
}

impl FfnNames {
    /// BERT's `intermediate.dense`, `output.dense`, `output.LayerNorm`.
    pub const BERT: FfnNames = FfnNames {
        fc1: "intermediate.dense",
        fc2: "output.dense",
        norm: "output.LayerNorm",
    };
}

/// `LN(x + fc2(act(fc1(x))))`: BERT's feed-forward sub-layer.
#[derive(Clone, Debug)]
pub struct PostNormFfn {
    mlp: Mlp,
    norm: LayerNorm,
}

impl PostNormFfn {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        vb: VarBuilder,
        names: FfnNames,
        dim: usize,
        hidden: usize,
        act: Activation,
        dropout: f64,
        eps: f64,
    ) -> Result<Self> {
        Ok(PostNormFfn {
            mlp: Mlp::new(
                vb.clone(),
                names.fc1,
                names.fc2,
                dim,
                hidden,
                act,
                0.0,
                dropout,
            )?,
            norm: LayerNorm::new(vb.pp(names.norm), dim, eps)?,
        })
    }

    /// [.., D] -> [.., D]
    pub fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        self.norm.forward(&self.mlp.forward(x, Some(x), ctx)?)
    }

    pub fn prepare(&mut self, dtype: Precision) -> Result<()> {
        self.mlp.prepare(dtype)
    }
}

/// Where the co-attention weights live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrossNames {
    /// One module serves both directions (LXMERT's `visual_attention`: `att.{query,key,value}`,
    /// `output.dense`, `output.LayerNorm`): streams of one width.
    Shared {
        prefix: &'static str,
        attn: AttnNames,
        norm: &'static str,
    },
    /// One set per direction, `[A over B, B over A]`, each with its norm; the q/k/v names may
    /// sit in different modules (ViLBERT: A's queries are `biattention.query1`, its keys over
    /// B `biattention.key2`, its output `biOutput.dense1`).
    Separate([(AttnNames, &'static str); 2]),
}

/// Names of one [`CoAttentionLayer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoLayerNames {
    pub cross: CrossNames,
    /// Each stream's tail.
    pub tails: [TailNames; 2],
}

/// Sizes of one [`CoAttentionLayer`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CoLayerConfig {
    /// Widths of stream A and stream B.
    pub dims: [usize; 2],
    /// Width of the co-attention's queries/keys/values (`None`: each direction at its queries'
    /// width, which a shared module needs).
    pub inner: Option<usize>,
    pub heads: usize,
    /// Heads of the per-stream self-attention.
    pub self_heads: usize,
    /// Each stream's feed-forward width.
    pub intermediate: [usize; 2],
    pub act: Activation,
    pub attn_dropout: f64,
    pub dropout: f64,
    pub eps: f64,
}

/// Both directions of cross-attention between two streams, from the same inputs.
#[derive(Clone, Debug)]
pub enum CoAttention {
    Shared(PostNormAttention),
    /// `[A's queries over B, B's queries over A]`.
    Separate(Box<[PostNormAttention; 2]>),
}

impl CoAttention {
    pub fn new(vb: VarBuilder, names: CrossNames, cfg: &CoLayerConfig) -> crate::Result<Self> {
        let [da, db] = cfg.dims;
        let attn = |dim: usize, kv: usize| AttnConfig {
            dim,
            heads: cfg.heads,
            qkv_bias: true,
            attn_dropout: cfg.attn_dropout,
            proj_dropout: cfg.dropout,
            kv_dim: Some(kv),
            inner: cfg.inner,
        };
        Ok(match names {
            CrossNames::Shared {
                prefix,
                attn: n,
                norm,
            } => {
                if da != db || cfg.inner.is_some_and(|i| i != da) {
                    return Err(crate::Error::Config(format!(
                        "shared co-attention needs streams of one width, got {da} and {db}{}",
                        cfg.inner
                            .map(|i| format!(" with attention width {i}"))
                            .unwrap_or_default()
                    )));
                }
                CoAttention::Shared(PostNormAttention::new(
                    vb.pp(prefix),
                    n,
                    norm,
                    &attn(da, da),
                    cfg.eps,
                )?)
            }
            CrossNames::Separate([(na, norm_a), (nb, norm_b)]) => {
                CoAttention::Separate(Box::new([
                    PostNormAttention::new(vb.clone(), na, norm_a, &attn(da, db), cfg.eps)?,
                    PostNormAttention::new(vb, nb, norm_b, &attn(db, da), cfg.eps)?,
                ]))
            }
        })
    }

    /// `a` [B, N, Da], `b` [B, M, Db]; `mask_a` / `mask_b` additive over each stream's
    /// positions as keys. Returns (a attending to b, b attending to a); the trace gets A→B's
    /// probabilities [B, H, N, M], then B→A's.
    pub fn forward(
        &self,
        a: &Tensor,
        mask_a: Option<&Tensor>,
        b: &Tensor,
        mask_b: Option<&Tensor>,
        ctx: &mut Ctx,
    ) -> Result<(Tensor, Tensor)> {
        let [to_b, to_a] = match self {
            CoAttention::Shared(m) => [m, m],
            CoAttention::Separate(ms) => [&ms[0], &ms[1]],
        };
        let a2 = to_b.forward(a, Some(b), mask_b, ctx)?;
        let b2 = to_a.forward(b, Some(a), mask_a, ctx)?;
        Ok((a2, b2))
    }

    pub fn prepare(&mut self, dtype: Precision) -> Result<()> {
        match self {
            CoAttention::Shared(m) => m.prepare(dtype),
            CoAttention::Separate(ms) => ms.iter_mut().try_for_each(|m| m.prepare(dtype)),
        }
    }
}

/// What follows the co-attention in each stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TailNames {
    /// Self-attention, then the feed-forward: a post-norm [`EncoderBlock`] (LXMERT).
    Block(BlockNames),
    /// The feed-forward only (ViLBERT).
    Ffn(FfnNames),
}

/// One stream's part after the co-attention.
#[derive(Clone, Debug)]
enum Tail {
    Block(Box<EncoderBlock>),
    Ffn(PostNormFfn),
}

/// One co-attention layer: [`CoAttention`], then each stream's tail (self-attention and
/// feed-forward, or the feed-forward alone).
#[derive(Clone, Debug)]
pub struct CoAttentionLayer {
    cross: CoAttention,
    tails: [Tail; 2],
}

impl CoAttentionLayer {
    pub fn new(vb: VarBuilder, names: &CoLayerNames, cfg: &CoLayerConfig) -> crate::Result<Self> {
        let tail = |i: usize| -> Result<Tail> {
            Ok(match names.tails[i] {
                TailNames::Block(n) => {
                    let c = BlockConfig {
                        dim: cfg.dims[i],
                        heads: cfg.self_heads,
                        mlp_dim: cfg.intermediate[i],
                        act: cfg.act,
                        pre_norm: false,
                        eps: cfg.eps,
                        qkv_bias: true,
                        dropout: cfg.dropout,
                        mlp_dropout: 0.0,
                        attn_dropout: cfg.attn_dropout,
                    };
                    Tail::Block(Box::new(EncoderBlock::new(vb.clone(), &n, &c)?))
                }
                TailNames::Ffn(n) => Tail::Ffn(PostNormFfn::new(
                    vb.clone(),
                    n,
                    cfg.dims[i],
                    cfg.intermediate[i],
                    cfg.act,
                    cfg.dropout,
                    cfg.eps,
                )?),
            })
        };
        Ok(CoAttentionLayer {
            cross: CoAttention::new(vb.clone(), names.cross, cfg)?,
            tails: [tail(0)?, tail(1)?],
        })
    }

    /// `a` [B, N, Da], `b` [B, M, Db], masks additive over each stream's keys -> (a', b'). The
    /// trace gets, in order: A→B, B→A, then A's and B's self-attention (when the tails have
    /// one).
    pub fn forward(
        &self,
        a: &Tensor,
        mask_a: Option<&Tensor>,
        b: &Tensor,
        mask_b: Option<&Tensor>,
        ctx: &mut Ctx,
    ) -> Result<(Tensor, Tensor)> {
        let (a, b) = self.cross.forward(a, mask_a, b, mask_b, ctx)?;
        let run = |t: &Tail, x: &Tensor, mask: Option<&Tensor>, ctx: &mut Ctx| match t {
            Tail::Block(blk) => blk.forward(x, mask, ctx),
            Tail::Ffn(f) => f.forward(x, ctx),
        };
        let a = run(&self.tails[0], &a, mask_a, ctx)?;
        let b = run(&self.tails[1], &b, mask_b, ctx)?;
        Ok((a, b))
    }

    pub fn prepare(&mut self, dtype: Precision) -> Result<()> {
        self.cross.prepare(dtype)?;
        self.tails.iter_mut().try_for_each(|t| match t {
            Tail::Block(b) => b.prepare(dtype),
            Tail::Ffn(f) => f.prepare(dtype),
        })
    }
}

/// ViLBERT's connection layer (`BertConnectionLayer` in facebookresearch/vilbert-multi-task):
/// stream A = image regions (`v_hidden_size`), B = text (`hidden_size`), both projected into
/// `bi_hidden_size` for the co-attention, no self-attention step.
pub const VILBERT_CONNECTION: CoLayerNames = CoLayerNames {
    cross: CrossNames::Separate([
        (
            AttnNames {
                qkv: QkvNames::Separate {
                    q: "biattention.query1",
                    k: "biattention.key2",
                    v: "biattention.value2",
                },
                out: "biOutput.dense1",
            },
            "biOutput.LayerNorm1",
        ),
        (
            AttnNames {
                qkv: QkvNames::Separate {
                    q: "biattention.query2",
                    k: "biattention.key1",
                    v: "biattention.value1",
                },
                out: "biOutput.dense2",
            },
            "biOutput.LayerNorm2",
        ),
    ]),
    tails: [
        TailNames::Ffn(FfnNames {
            fc1: "v_intermediate.dense",
            fc2: "v_output.dense",
            norm: "v_output.LayerNorm",
        }),
        TailNames::Ffn(FfnNames {
            fc1: "t_intermediate.dense",
            fc2: "t_output.dense",
            norm: "t_output.LayerNorm",
        }),
    ],
};

/// LXMERT's cross-modality layer (`LxmertXLayer`): stream A = language, B = vision, one shared
/// `visual_attention`, then `lang_self_att` / `visn_self_att`, then each stream's FFN.
pub const LXMERT_X_LAYER: CoLayerNames = CoLayerNames {
    cross: CrossNames::Shared {
        prefix: "visual_attention",
        attn: AttnNames {
            qkv: QkvNames::Separate {
                q: "att.query",
                k: "att.key",
                v: "att.value",
            },
            out: "output.dense",
        },
        norm: "output.LayerNorm",
    },
    tails: [
        TailNames::Block(BlockNames {
            norm1: "lang_self_att.output.LayerNorm",
            norm2: "lang_output.LayerNorm",
            attn: "lang_self_att",
            attn_names: BERT_ATTENTION,
            fc1: "lang_inter.dense",
            fc2: "lang_output.dense",
        }),
        TailNames::Block(BlockNames {
            norm1: "visn_self_att.output.LayerNorm",
            norm2: "visn_output.LayerNorm",
            attn: "visn_self_att",
            attn_names: BERT_ATTENTION,
            fc1: "visn_inter.dense",
            fc2: "visn_output.dense",
        }),
    ],
};
