//! Explainability from a forward pass's [`Trace`]: raw class-token attention, attention
//! rollout (Abnar & Zuidema 2020) and gradient-weighted relevance (Chefer et al. 2021,
//! "generic attention-model explainability"), as patch-grid maps; rendering them over the
//! image ([`render`]); and [`Explainer`], which runs a classifier or CLIP on an image and
//! returns the map of what it looked at, or a detector and each detection's decoder attention
//! ([`detection_attention`]); a caption's words each with its map ([`render_word_maps`]).
mod detection;
mod explainer;
pub mod render;
mod words;

pub use detection::{detection_attention, render_detection_attention, DetectionAttention};
pub use explainer::{Explainer, Explanation, Method, Request};
pub use words::render_word_maps;

use crate::nn::Trace;
use crate::{Error, Result};
use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor};

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum HeadFusion {
    Mean,
    Max,
    Min,
}

/// Heads of one attention map `[H, N, M]` fused: `[N, M]` row-major.
fn fuse_heads(a: &Tensor, fusion: HeadFusion) -> Result<Vec<f32>> {
    let (h, n, m) = a.dims3()?;
    let v = a.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let mut out = vec![0f32; n * m];
    for (i, o) in out.iter_mut().enumerate() {
        let heads = (0..h).map(|k| v[k * n * m + i]);
        *o = match fusion {
            HeadFusion::Mean => heads.sum::<f32>() / h as f32,
            HeadFusion::Max => heads.fold(f32::NEG_INFINITY, f32::max),
            HeadFusion::Min => heads.fold(f32::INFINITY, f32::min),
        };
    }
    Ok(out)
}

/// Layer `l`'s attention for batch item `b`, heads fused: [N, N] row-major.
fn heads_fused(trace: &Trace, l: usize, b: usize, fusion: HeadFusion) -> Result<(Vec<f32>, usize)> {
    let a = trace
        .attentions
        .get(l)
        .ok_or_else(|| Error::Msg(format!("the trace has no layer {l}")))?;
    let a = a.get(b)?; // [H, N, N]
    let (_, n, m) = a.dims3()?;
    if n != m {
        return Err(Error::Shape(
            "self-attention maps are square; this one is not".into(),
        ));
    }
    Ok((fuse_heads(&a, fusion)?, n))
}

/// Class-token attention to every patch in layer `l` (heads fused): `N - 1` values.
pub fn cls_attention(trace: &Trace, l: usize, b: usize, fusion: HeadFusion) -> Result<Vec<f32>> {
    let (a, n) = heads_fused(trace, l, b, fusion)?;
    Ok(a[1..n].to_vec())
}

/// Class-token attention of head `h` alone in layer `l`: `N - 1` values.
pub fn cls_attention_head(trace: &Trace, l: usize, b: usize, h: usize) -> Result<Vec<f32>> {
    let a = trace
        .attentions
        .get(l)
        .ok_or_else(|| Error::Msg(format!("the trace has no layer {l}")))?;
    let heads = a.dim(1)?;
    if h >= heads {
        return Err(Error::Config(format!(
            "head {h} does not exist: layer {l} has {heads} heads"
        )));
    }
    let row = a
        .get(b)?
        .get(h)?
        .get(0)?
        .to_dtype(DType::F32)?
        .to_vec1::<f32>()?;
    Ok(row[1..].to_vec())
}

/// Head-fused class-token attention for every layer.
pub fn cls_attention_per_layer(
    trace: &Trace,
    b: usize,
    fusion: HeadFusion,
) -> Result<Vec<Vec<f32>>> {
    (0..trace.attentions.len())
        .map(|l| cls_attention(trace, l, b, fusion))
        .collect()
}

fn matmul(a: &[f32], b: &[f32], n: usize) -> Vec<f32> {
    let mut c = vec![0f32; n * n];
    for i in 0..n {
        for k in 0..n {
            let aik = a[i * n + k];
            if aik == 0.0 {
                continue;
            }
            for j in 0..n {
                c[i * n + j] += aik * b[k * n + j];
            }
        }
    }
    c
}

/// Attention rollout: per layer Â = (A + I) / 2 with rows renormalised (the residual
/// stream), optionally zeroing the lowest `discard_ratio` of the fused attentions first (never
/// the class token's own); the product over layers, read at the class token's row.
pub fn rollout(
    trace: &Trace,
    b: usize,
    fusion: HeadFusion,
    discard_ratio: f32,
) -> Result<Vec<f32>> {
    if trace.attentions.is_empty() {
        return Err(Error::Msg("the trace has no attention maps".into()));
    }
    if !(discard_ratio.is_finite() && (0.0..1.0).contains(&discard_ratio)) {
        return Err(Error::Config(format!(
            "discard ratio {discard_ratio} must be in [0, 1)"
        )));
    }
    let (_, n) = heads_fused(trace, 0, b, fusion)?;
    let mut r: Vec<f32> = (0..n * n)
        .map(|i| if i / n == i % n { 1.0 } else { 0.0 })
        .collect();
    for l in 0..trace.attentions.len() {
        let (mut a, _) = heads_fused(trace, l, b, fusion)?;
        if discard_ratio > 0.0 {
            let k = ((n * n) as f32 * discard_ratio) as usize;
            let mut idx: Vec<usize> = (0..n * n).collect();
            idx.sort_by(|&x, &y| a[x].total_cmp(&a[y]));
            for &i in idx.iter().take(k) {
                if i != 0 {
                    a[i] = 0.0;
                }
            }
        }
        for i in 0..n {
            a[i * n + i] += 1.0;
            let row = &mut a[i * n..(i + 1) * n];
            let s: f32 = row.iter().sum();
            row.iter_mut().for_each(|v| *v /= s.max(1e-12));
        }
        r = matmul(&a, &r, n);
    }
    Ok(r[1..n].to_vec())
}

/// Chefer et al. (2021) relevance for the output whose gradients are in `grads`: R = I, then per
/// layer R += Ā·R with Ā = mean over heads of (∇A ⊙ A)⁺; read at the class token's row.
/// `trace` must come from [`Trace::with_gradients`].
pub fn relevance(trace: &Trace, grads: &GradStore, b: usize) -> Result<Vec<f32>> {
    let probes = trace.probes.as_ref().ok_or_else(|| {
        Error::Msg("relevance needs a trace made with Trace::with_gradients".into())
    })?;
    if probes.len() != trace.attentions.len() || probes.is_empty() {
        return Err(Error::Msg("the trace has no gradient probes".into()));
    }
    let n = trace.attentions[0].dim(2)?;
    let mut r: Vec<f32> = (0..n * n)
        .map(|i| if i / n == i % n { 1.0 } else { 0.0 })
        .collect();
    for (l, probe) in probes.iter().enumerate() {
        let a = trace.attentions[l].get(b)?.to_dtype(DType::F32)?;
        let g = grads
            .get(probe)
            .ok_or_else(|| Error::Msg(format!("no gradient reached layer {l}'s attention")))?
            .get(b)?
            .to_dtype(DType::F32)?;
        // [H, N, N] -> mean_h relu(g * a) -> [N, N]
        let cam = (g * a)?.relu()?.mean(0)?.flatten_all()?.to_vec1::<f32>()?;
        let add = matmul(&cam, &r, n);
        r.iter_mut().zip(add).for_each(|(x, y)| *x += y);
    }
    Ok(r[1..n].to_vec())
}

/// Square patch grid side for `n` patch values.
pub fn grid_side(n: usize) -> Result<usize> {
    let s = (n as f64).sqrt().round() as usize;
    if s * s != n {
        return Err(Error::Shape(format!(
            "{n} patch values do not form a square grid"
        )));
    }
    Ok(s)
}

/// Index of the hottest patch.
pub fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i)
}

/// Convenience: a tensor of the target score's gradient seed, for callers that pick one logit.
pub fn select(logits: &Tensor, b: usize, index: usize) -> Result<Tensor> {
    Ok(logits.get(b)?.get(index)?)
}
