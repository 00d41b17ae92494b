//! AdamW exactly as `torch.optim.AdamW`, LR schedules, gradient clipping, cross-entropy.
use crate::{Error, Result};
use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var, D};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Mean cross-entropy of logits `[B, K]` against class indices `[B]` (u32), with optional
/// label smoothing as `nn.CrossEntropyLoss(label_smoothing=ε)`.
pub fn cross_entropy(logits: &Tensor, labels: &Tensor, label_smoothing: f64) -> Result<Tensor> {
    let (b, _k) = logits.dims2()?;
    if labels.dims() != [b] {
        return Err(Error::Shape(format!(
            "labels {:?} do not match logits {:?}",
            labels.dims(),
            logits.dims()
        )));
    }
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let nll = logp
        .gather(&labels.to_dtype(DType::U32)?.unsqueeze(1)?, 1)?
        .neg()?
        .mean_all()?;
    if label_smoothing > 0.0 {
        let smooth = logp.neg()?.mean_all()?; // mean over batch and classes = sum/K averaged
        Ok(((nll * (1.0 - label_smoothing))? + (smooth * label_smoothing)?)?)
    } else {
        Ok(nll)
    }
}

/// Which parameters weight decay applies to: a property of the recipe, not of the names a
/// checkpoint happens to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecayRule {
    /// timm's `param_groups_weight_decay` (the seed ViT's recipe): no decay on tensors with at
    /// most one dimension, on `*.bias`, or on the model's `no_weight_decay` set (`cls_token`,
    /// `pos_embed`, `dist_token`).
    #[default]
    Timm,
    /// Hugging Face `Trainer`'s `get_decay_parameter_names`: no decay on parameters of
    /// LayerNorm modules or where the lower-cased name matches `bias`, `layernorm`, `rmsnorm`,
    /// `(^|.)norm($|.)` or `_norm($|.)`; decay on everything else, position embeddings and class
    /// tokens included.
    HfTrainer,
}

impl DecayRule {
    /// Whether the parameter `name` with `rank` dimensions (`in_layer_norm`: it belongs to a
    /// LayerNorm module) is decayed.
    pub fn decays(self, name: &str, rank: usize, in_layer_norm: bool) -> bool {
        match self {
            DecayRule::Timm => {
                rank >= 2
                    && !name.ends_with(".bias")
                    && !matches!(name, "cls_token" | "pos_embed" | "dist_token")
            }
            DecayRule::HfTrainer if in_layer_norm => false,
            DecayRule::HfTrainer => {
                let n = name.to_lowercase();
                let segment = |s: &str| n.split('.').any(|part| part == s);
                let norm_suffix = n
                    .match_indices("_norm")
                    .any(|(i, m)| matches!(n[i + m.len()..].chars().next(), None | Some('.')));
                !(n.contains("bias")
                    || n.contains("layernorm")
                    || n.contains("rmsnorm")
                    || segment("norm")
                    || norm_suffix)
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Which parameters `weight_decay` applies to (older trainer states: timm's rule).
    #[serde(default)]
    pub decay: DecayRule,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        // torch.optim.AdamW's defaults
        AdamWConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
            decay: DecayRule::Timm,
        }
    }
}

/// One parameter's state.
struct Slot {
    name: String,
    var: Var,
    decay: bool,
    lr_scale: f64,
    moments: Moments,
}

/// Adam's moments: plain vectors beside CPU weights (one fused loop per tensor), tensors on
/// the weights' device elsewhere (a GPU updates in place of a round trip through the host).
enum Moments {
    Host { m: Vec<f32>, v: Vec<f32> },
    Device { m: Tensor, v: Tensor },
}

/// `torch.optim.AdamW`, step for step:
/// `p *= 1 - lr·wd; m = lerp(m, g, 1-β1); v = β2·v + (1-β2)·g²;
///  p -= lr/(1-β1^t) · m / (√v/√(1-β2^t) + eps)`.
/// Weight decay applies where the config's [`DecayRule`] says. The moments live as plain `f32` vectors: one fused loop per tensor, and checkpointing them is
/// a copy.
pub struct AdamW {
    pub config: AdamWConfig,
    slots: Vec<Slot>,
    /// Steps taken (PyTorch's `state['step']`).
    pub step: u64,
}

impl AdamW {
    /// `params` in a fixed order (the model's construction order); decay as `config.decay`,
    /// knowing no LayerNorm (see [`AdamW::with_layer_norms`]).
    pub fn new(params: Vec<(String, Var)>, config: AdamWConfig) -> Self {
        Self::with_layer_norms(params, config, &[])
    }

    /// [`AdamW::new`] where `layer_norms` are the model's LayerNorm modules (the decay rule may
    /// exempt them by type).
    pub fn with_layer_norms(
        params: Vec<(String, Var)>,
        config: AdamWConfig,
        layer_norms: &[&crate::nn::LayerNorm],
    ) -> Self {
        let norm_ids: std::collections::HashSet<_> = layer_norms
            .iter()
            .flat_map(|l| l.parameters())
            .map(|t| t.id())
            .collect();
        let slots = params
            .into_iter()
            .map(|(name, var)| {
                let n = var.elem_count();
                let decay = config.decay.decays(
                    &name,
                    var.rank(),
                    norm_ids.contains(&var.as_tensor().id()),
                );
                let moments = if crate::nn::cpu::kernels_apply(var.as_tensor()) {
                    Moments::Host {
                        m: vec![0.0; n],
                        v: vec![0.0; n],
                    }
                } else {
                    let z = || Tensor::zeros(var.shape(), DType::F32, var.device());
                    match (z(), z()) {
                        (Ok(m), Ok(v)) => Moments::Device { m, v },
                        // Cannot allocate there: the host loop still works.
                        _ => Moments::Host {
                            m: vec![0.0; n],
                            v: vec![0.0; n],
                        },
                    }
                };
                Slot {
                    name,
                    var,
                    decay,
                    lr_scale: 1.0,
                    moments,
                }
            })
            .collect();
        AdamW {
            config,
            slots,
            step: 0,
        }
    }

    /// Scales the learning rate of parameters whose name starts with `prefix` (e.g. a smaller LR
    /// for a pretrained backbone than for a fresh head).
    pub fn set_lr_scale(&mut self, prefix: &str, scale: f64) {
        for s in self.slots.iter_mut().filter(|s| s.name.starts_with(prefix)) {
            s.lr_scale = scale;
        }
    }

    /// Decides decay per name instead of by rank (for exact parity with a reference setup).
    pub fn set_decay(&mut self, f: impl Fn(&str, usize) -> bool) {
        for s in self.slots.iter_mut() {
            s.decay = f(&s.name, s.var.rank());
        }
    }

    /// The names of the parameters weight decay applies to.
    pub fn decayed(&self) -> Vec<&str> {
        self.slots
            .iter()
            .filter(|s| s.decay)
            .map(|s| s.name.as_str())
            .collect()
    }

    pub fn names(&self) -> Vec<String> {
        self.slots.iter().map(|s| s.name.clone()).collect()
    }

    /// True when every moment lives as a tensor on its weight's device (weights off the CPU, or
    /// the CPU kernels switched off) rather than in host vectors.
    pub fn moments_on_device(&self) -> bool {
        self.slots
            .iter()
            .all(|s| matches!(s.moments, Moments::Device { .. }))
    }

    /// Names of parameters that got no gradient (a sign of an op without backward).
    pub fn missing_grads(&self, grads: &GradStore) -> Vec<String> {
        self.slots
            .iter()
            .filter(|s| grads.get(&s.var).is_none())
            .map(|s| s.name.clone())
            .collect()
    }

    /// One update with learning rate `lr`; parameters without a gradient are left alone.
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        self.step += 1;
        let c = self.config;
        let t = self.step as i32;
        let bc1 = 1.0 - c.beta1.powi(t);
        let bc2_sqrt = (1.0 - c.beta2.powi(t)).sqrt();
        for s in self.slots.iter_mut() {
            let Some(g) = grads.get(&s.var) else { continue };
            let (m, v) = match &mut s.moments {
                Moments::Host { m, v } => (m, v),
                Moments::Device { m, v } => {
                    // The same formulas as tensor ops on the weights' device.
                    let lr = lr * s.lr_scale;
                    let g = g.to_dtype(DType::F32)?;
                    let mut p = s.var.as_tensor().to_dtype(DType::F32)?;
                    if s.decay {
                        p = (p * (1.0 - lr * c.weight_decay))?;
                    }
                    // m.lerp_(g, 1 - β1); v = β2·v + (1 - β2)·g²
                    *m = (&*m + ((&g - &*m)? * (1.0 - c.beta1))?)?;
                    *v = ((&*v * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
                    let denom = ((v.sqrt()? / bc2_sqrt)? + c.eps)?;
                    let p = (p - ((&*m / denom)? * (lr / bc1))?)?;
                    s.var.set(&p.to_dtype(s.var.dtype())?)?;
                    continue;
                }
            };
            let g = g.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            let mut p = s
                .var
                .as_tensor()
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            let lr = lr * s.lr_scale;
            let decay = if s.decay {
                (1.0 - lr * c.weight_decay) as f32
            } else {
                1.0
            };
            let step_size = (lr / bc1) as f32;
            let (b1, b2, eps, bc2s) = (
                c.beta1 as f32,
                c.beta2 as f32,
                c.eps as f32,
                bc2_sqrt as f32,
            );
            for i in 0..p.len() {
                let gi = g[i];
                p[i] *= decay;
                m[i] += (gi - m[i]) * (1.0 - b1);
                v[i] = v[i] * b2 + (1.0 - b2) * gi * gi;
                let denom = v[i].sqrt() / bc2s + eps;
                p[i] -= step_size * m[i] / denom;
            }
            let new =
                Tensor::from_vec(p, s.var.shape(), s.var.device())?.to_dtype(s.var.dtype())?;
            s.var.set(&new)?;
        }
        Ok(())
    }

    /// The moments as named tensors (`{name}.exp_avg`, `{name}.exp_avg_sq`) for checkpoints.
    pub fn state_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = vec![];
        for s in &self.slots {
            let dev = s.var.device();
            let (m, v) = match &s.moments {
                Moments::Host { m, v } => (
                    Tensor::from_vec(m.clone(), s.var.shape(), dev)?,
                    Tensor::from_vec(v.clone(), s.var.shape(), dev)?,
                ),
                Moments::Device { m, v } => (m.clone(), v.clone()),
            };
            out.push((format!("{}.exp_avg", s.name), m));
            out.push((format!("{}.exp_avg_sq", s.name), v));
        }
        Ok(out)
    }

    /// Restores moments saved by [`AdamW::state_tensors`]; every slot must be present.
    pub fn load_state(&mut self, tensors: &HashMap<String, Tensor>, step: u64) -> Result<()> {
        for s in self.slots.iter_mut() {
            let n = s.var.elem_count();
            let get = |suffix: &str| -> Result<Tensor> {
                let key = format!("{}.{suffix}", s.name);
                let t = tensors
                    .get(&key)
                    .ok_or_else(|| Error::Msg(format!("optimizer state has no tensor {key}")))?;
                if t.elem_count() != n {
                    return Err(Error::Shape(format!(
                        "optimizer tensor {key} has {} values, expected {n}",
                        t.elem_count(),
                    )));
                }
                Ok(t.to_dtype(DType::F32)?)
            };
            let (m, v) = (get("exp_avg")?, get("exp_avg_sq")?);
            match &mut s.moments {
                Moments::Host { m: hm, v: hv } => {
                    *hm = m.flatten_all()?.to_vec1::<f32>()?;
                    *hv = v.flatten_all()?.to_vec1::<f32>()?;
                }
                Moments::Device { m: dm, v: dv } => {
                    *dm = m.reshape(s.var.shape())?.to_device(s.var.device())?;
                    *dv = v.reshape(s.var.shape())?.to_device(s.var.device())?;
                }
            }
        }
        self.step = step;
        Ok(())
    }
}

/// One optimisation step on `loss`: an error naming `step` if the loss is not finite (nothing
/// is updated then), else backpropagation, gradient clipping of `vars` to `max_norm` (none at
/// 0) and one AdamW step at `lr`. Returns the loss.
pub fn descend(
    loss: &Tensor,
    opt: &mut AdamW,
    vars: &[Var],
    max_norm: f64,
    lr: f64,
    step: usize,
) -> Result<f64> {
    let l = loss.to_dtype(DType::F32)?.to_scalar::<f32>()? as f64;
    if !l.is_finite() {
        return Err(Error::Msg(format!("the loss became {l} at step {step}")));
    }
    let mut grads = backward(loss)?;
    if max_norm > 0.0 {
        clip_grad_norm(&mut grads, vars, max_norm)?;
    }
    opt.step(&grads, lr)?;
    Ok(l)
}

/// `loss.backward()`, every gradient detached from the graph: what every training loop calls.
///
/// candle builds a gradient with tracked ops wherever an op's backward multiplies by a forward
/// tensor (a matmul's `dW = gᵀ x`, a convolution's): such a gradient keeps the graph it came
/// from, every activation of the forward and the backward's own temporaries, alive for as long
/// as the gradient lives, through gradient clipping, the data-parallel sum and the optimizer
/// step. Detached, a gradient holds only its own values.
pub fn backward(loss: &Tensor) -> Result<GradStore> {
    let mut grads = loss.backward()?;
    detach_all(&mut grads);
    Ok(grads)
}

fn detach_all(grads: &mut GradStore) {
    let ids: Vec<_> = grads.get_ids().copied().collect();
    for id in ids {
        if let Some(g) = grads
            .get_id(id)
            .filter(|g| g.track_op())
            .map(Tensor::detach)
        {
            grads.insert_id(id, g);
        }
    }
}

/// Adds every gradient of `more` into `grads` (detached; a new entry where `grads` has none):
/// the data-parallel sum of shard gradients and the segments of [`backward_segmented`].
pub(crate) fn merge_grads(grads: &mut GradStore, more: &GradStore) -> Result<()> {
    for id in more.get_ids().copied().collect::<Vec<_>>() {
        if let Some(t) = more.get_id(id) {
            let sum = match grads.get_id(id).cloned() {
                Some(acc) => add_grad(acc, t)?,
                None => t.detach(),
            };
            grads.insert_id(id, sum);
        }
    }
    Ok(())
}

/// `acc += t`, in place where both are contiguous f32 on the CPU (a new tensor per parameter
/// would be allocated on the summing thread, whose freed pages the shards' threads cannot
/// reuse: 344 MB of ViT-B/16's resident memory); else `acc + t` as a new tensor. `acc` is a
/// gradient of `grads` (detached, owning its values, read by no one else). Returns the sum.
fn add_grad(acc: Tensor, t: &Tensor) -> Result<Tensor> {
    struct AddAssign;
    impl candle_core::InplaceOp2 for AddAssign {
        fn name(&self) -> &'static str {
            "add-assign"
        }
        fn cpu_fwd(
            &self,
            s1: &mut candle_core::CpuStorage,
            l1: &candle_core::Layout,
            s2: &candle_core::CpuStorage,
            l2: &candle_core::Layout,
        ) -> candle_core::Result<()> {
            use candle_core::CpuStorage::F32;
            let (Some((a0, a1)), Some((b0, b1))) =
                (l1.contiguous_offsets(), l2.contiguous_offsets())
            else {
                candle_core::bail!("add-assign: non-contiguous operands")
            };
            match (s1, s2) {
                (F32(a), F32(b)) if a1 - a0 == b1 - b0 => {
                    crate::nn::math::add_into(&mut a[a0..a1], &b[b0..b1]);
                    Ok(())
                }
                _ => candle_core::bail!("add-assign: f32 operands of one size expected"),
            }
        }
    }
    let in_place = acc.device().is_cpu()
        && acc.dtype() == DType::F32
        && t.dtype() == DType::F32
        && acc.shape() == t.shape()
        && acc.is_contiguous()
        && t.is_contiguous()
        && !acc.track_op();
    if in_place {
        acc.inplace_op2(t, &AddAssign)?;
        Ok(acc)
    } else {
        Ok((&acc + t.detach())?)
    }
}

/// [`backward`] of a forward cut into segments ([`crate::nn::Segments`]): the last segment
/// (up to `loss`) first, then each earlier one seeded with the gradient its leaf received,
/// its graph dropped before the next, so the activations are freed as the backward consumes
/// them instead of all at its end. The gradients are the same as one backward's, bit for bit:
/// a segment's output receives its leaf's gradient `g` through `sum(y · g)`, whose backward
/// hands `y` exactly `g`. `loss` should be the caller's last reference to the last segment.
pub fn backward_segmented(loss: Tensor, segments: &mut crate::nn::Segments) -> Result<GradStore> {
    let mut grads = loss.backward()?;
    drop(loss);
    detach_all(&mut grads);
    while let Some((y, leaf)) = segments.pop() {
        // The leaf is no parameter: its gradient is consumed here.
        let Some(g) = grads.remove(leaf.as_tensor()) else {
            continue;
        };
        drop(leaf);
        let part = (&y * &g)?.sum_all()?;
        drop(y);
        let mut more = part.backward()?;
        drop(part);
        // candle also hands the constant factor `g` a gradient (y): not wanted.
        more.remove(&g);
        // A parameter used in several segments (tied weights) gets its parts summed.
        merge_grads(&mut grads, &more)?;
    }
    Ok(grads)
}

/// Scales gradients so their global L2 norm is at most `max_norm`
/// (`torch.nn.utils.clip_grad_norm_`). Returns the norm before clipping.
pub fn clip_grad_norm(grads: &mut GradStore, vars: &[Var], max_norm: f64) -> Result<f64> {
    let mut total = 0f64;
    // Off the CPU the squares are summed where they are: one read back, not one per tensor.
    let mut on_device: Option<Tensor> = None;
    for v in vars {
        if let Some(g) = grads.get(v) {
            let sq = g.to_dtype(DType::F64)?.sqr()?.sum_all()?;
            if g.device().is_cpu() {
                total += sq.to_scalar::<f64>()?;
            } else {
                on_device = Some(match on_device {
                    Some(acc) => (acc + sq)?,
                    None => sq,
                });
            }
        }
    }
    if let Some(t) = on_device {
        total += t.to_scalar::<f64>()?;
    }
    let norm = total.sqrt();
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        for v in vars {
            if let Some(g) = grads.get(v) {
                let scaled = (g * coef)?;
                grads.insert(v, scaled);
            }
        }
    }
    Ok(norm)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    Cosine,
    Linear,
    Constant,
}

/// Linear warm-up over `warmup` steps from 0, then cosine/linear decay to 0 at `total`
/// (HF `get_cosine_schedule_with_warmup` / `get_linear_schedule_with_warmup`).
pub fn lr_at(base: f64, step: usize, warmup: usize, total: usize, schedule: Schedule) -> f64 {
    if step < warmup {
        return base * step as f64 / warmup.max(1) as f64;
    }
    let progress = (step - warmup) as f64 / (total.saturating_sub(warmup)).max(1) as f64;
    match schedule {
        Schedule::Cosine => base * 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos()),
        Schedule::Linear => base * (1.0 - progress).max(0.0),
        Schedule::Constant => base,
    }
}
