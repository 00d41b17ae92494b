//! The Perceiver's layer: pre-norm attention whose queries may come from a small set of latents
//! and whose keys and values from a long input (cross-attention), with its own query/key and
//! value widths, an optional residual to the queries, then a pre-norm MLP with a residual.
//!
//! `out = h + mlp(LN(h))`, `h = dense(attn(q = LN1(x)·Wq, k|v = LN2(inputs)·Wk|Wv)) [+ x]`; in
//! self-attention k and v come from `LN1(x)` and there is no second norm. Cost is linear in the
//! input length: the scores are [latents × inputs], never [inputs × inputs].
//!
//! On-disk names as transformers' `PerceiverLayer`: `attention.self.{layernorm1, layernorm2,
//! query, key, value}`, `attention.output.dense`, `layernorm`, `mlp.{dense1, dense2}`.
use super::activation::Activation;
use super::attention::attend_heads;
use super::ctx::Ctx;
use super::infer::Precision;
use super::layers::{LayerNorm, Linear, Then};
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

/// The widths of one [`LatentLayer`], resolved (transformers' defaults are the caller's).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LatentConfig {
    /// Width of the queries' input (the latents).
    pub q_dim: usize,
    /// Width of the keys'/values' input: `Some` for cross-attention, `None` for self-attention.
    pub kv_dim: Option<usize>,
    /// Query/key channels (split over the heads).
    pub qk_channels: usize,
    /// Value channels (split over the heads).
    pub v_channels: usize,
    pub heads: usize,
    /// The MLP's hidden width is `widening · q_dim`.
    pub widening: usize,
    /// Adds the queries' input to the attention output.
    pub query_residual: bool,
    pub act: Activation,
    pub attn_dropout: f64,
    /// transformers' Perceiver builds every LayerNorm with PyTorch's default eps (1e-5),
    /// whatever the config's `layer_norm_eps` says.
    pub eps: f64,
}

/// One Perceiver layer (see the module doc).
#[derive(Clone, Debug)]
pub struct LatentLayer {
    norm_q: LayerNorm,
    norm_kv: Option<LayerNorm>,
    query: Linear,
    key: Linear,
    value: Linear,
    dense: Linear,
    norm_mlp: LayerNorm,
    mlp_in: Linear,
    mlp_out: Linear,
    cfg: LatentConfig,
}

impl LatentLayer {
    pub fn new(vb: VarBuilder, cfg: &LatentConfig) -> crate::Result<Self> {
        let c = *cfg;
        let bad = |what: String| crate::Error::Config(format!("Perceiver layer: {what}"));
        if c.heads == 0
            || !c.qk_channels.is_multiple_of(c.heads)
            || !c.v_channels.is_multiple_of(c.heads)
        {
            return Err(bad(format!(
                "{} heads must divide qk_channels {} and v_channels {}",
                c.heads, c.qk_channels, c.v_channels
            )));
        }
        // transformers maps the attention's output to q_dim in cross-attention and to
        // v_channels in self-attention; both residuals then add it to q_dim-wide tensors, so in
        // self-attention v_channels must be the latent width.
        if c.kv_dim.is_none() && c.v_channels != c.q_dim {
            return Err(bad(format!(
                "self-attention v_channels {} must equal the latent width {}",
                c.v_channels, c.q_dim
            )));
        }
        let a = vb.pp("attention");
        let s = a.pp("self");
        let kv = c.kv_dim.unwrap_or(c.q_dim);
        Ok(LatentLayer {
            norm_q: LayerNorm::new(s.pp("layernorm1"), c.q_dim, c.eps)?,
            norm_kv: match c.kv_dim {
                Some(d) => Some(LayerNorm::new(s.pp("layernorm2"), d, c.eps)?),
                None => None,
            },
            query: Linear::new(s.pp("query"), c.q_dim, c.qk_channels, true)?,
            key: Linear::new(s.pp("key"), kv, c.qk_channels, true)?,
            value: Linear::new(s.pp("value"), kv, c.v_channels, true)?,
            dense: Linear::new(a.pp("output").pp("dense"), c.v_channels, c.q_dim, true)?,
            norm_mlp: LayerNorm::new(vb.pp("layernorm"), c.q_dim, c.eps)?,
            mlp_in: Linear::new(
                vb.pp("mlp").pp("dense1"),
                c.q_dim,
                c.widening * c.q_dim,
                true,
            )?,
            mlp_out: Linear::new(
                vb.pp("mlp").pp("dense2"),
                c.widening * c.q_dim,
                c.q_dim,
                true,
            )?,
            cfg: c,
        })
    }

    /// `x` [B, N, q_dim] (the latents or the decoder's queries), `inputs` [B, M, kv_dim] for
    /// cross-attention (`None`: self-attention), `mask` additive over the keys (broadcastable to
    /// [B, H, N, M]). Returns [B, N, q_dim]; the attention probabilities go to the trace.
    pub fn forward(
        &self,
        x: &Tensor,
        inputs: Option<&Tensor>,
        mask: Option<&Tensor>,
        ctx: &mut Ctx,
    ) -> Result<Tensor> {
        let c = &self.cfg;
        let (b, n, _) = x.dims3()?;
        let xq = self.norm_q.forward(x)?;
        let kv = match (inputs, &self.norm_kv) {
            (Some(i), Some(norm)) => norm.forward(i)?,
            (None, None) => xq.clone(),
            _ => candle_core::bail!(
                "Perceiver layer: cross-attention needs inputs, self-attention none"
            ),
        };
        let m = kv.dim(1)?;
        let none = Then::none;
        // [B, L, C] -> [B, H, L, C/H]
        let heads = |t: Tensor, len: usize, ch: usize| {
            t.reshape((b, len, c.heads, ch / c.heads))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = heads(self.query.forward(&xq, none(), ctx)?, n, c.qk_channels)?;
        let k = heads(self.key.forward(&kv, none(), ctx)?, m, c.qk_channels)?;
        let v = heads(self.value.forward(&kv, none(), ctx)?, m, c.v_channels)?;
        // [B, H, N, Dv] -> [B, N, H, Dv] -> [B, N, V]
        let o = attend_heads(&q, &k, &v, mask, c.attn_dropout, ctx)?
            .transpose(1, 2)?
            .reshape((b, n, c.v_channels))?;
        let h = self.dense.forward(
            &o,
            Then::none().residual(c.query_residual.then_some(x)),
            ctx,
        )?;
        let y = self
            .mlp_in
            .forward(&self.norm_mlp.forward(&h)?, Then::act(c.act), ctx)?;
        self.mlp_out
            .forward(&y, Then::none().residual(Some(&h)), ctx)
    }

    /// The layer's LayerNorms (the query's, the inputs', the MLP's).
    pub fn layer_norms(&self) -> Vec<&LayerNorm> {
        std::iter::once(&self.norm_q)
            .chain(self.norm_kv.as_ref())
            .chain(std::iter::once(&self.norm_mlp))
            .collect()
    }

    /// Every parameter tensor.
    pub fn parameters(&self) -> Vec<&Tensor> {
        let mut p = self.norm_q.parameters();
        if let Some(n) = &self.norm_kv {
            p.extend(n.parameters());
        }
        for l in [
            &self.query,
            &self.key,
            &self.value,
            &self.dense,
            &self.mlp_in,
            &self.mlp_out,
        ] {
            p.extend(l.parameters());
        }
        p.extend(self.norm_mlp.parameters());
        p
    }

    /// Sets the inference dtype of the linears (see [`Linear::prepare`]).
    pub fn prepare(&mut self, dtype: Precision) -> Result<()> {
        for l in [
            &mut self.query,
            &mut self.key,
            &mut self.value,
            &mut self.dense,
            &mut self.mlp_in,
            &mut self.mlp_out,
        ] {
            l.prepare(dtype)?;
        }
        Ok(())
    }
}
