//! Linear and LayerNorm, with PyTorch's tensor names and default initialisation.
use super::activation::Activation;
use super::cpu::kernels_apply;
use super::ctx::{Ctx, Path};
use super::infer::{self, PackedWeight, Precision, Weight};
use super::ops;
use candle_core::{Result, Tensor};
use candle_nn::{Init, VarBuilder};
use std::sync::Arc;

/// What follows a linear layer inside its output pass: `residual + dropout(act(x·Wᵀ + b))`.
/// On the inference path the activation and the residual run in the GEMM epilogue (dropout is
/// the identity there); elsewhere the same ops are composed, with backward.
#[derive(Clone, Copy, Debug, Default)]
pub struct Then<'a> {
    pub act: Option<Activation>,
    pub dropout: f64,
    pub residual: Option<&'a Tensor>,
}

impl<'a> Then<'a> {
    /// Nothing: `x·Wᵀ + b`.
    pub fn none() -> Self {
        Then::default()
    }

    pub fn act(act: Activation) -> Self {
        Then {
            act: Some(act),
            ..Then::default()
        }
    }

    pub fn dropout(self, p: f64) -> Self {
        Then { dropout: p, ..self }
    }

    pub fn residual(self, residual: Option<&'a Tensor>) -> Self {
        Then { residual, ..self }
    }
}

/// `nn.Linear`: `weight` `[out, in]`, optional `bias` `[out]`.
#[derive(Clone, Debug)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    /// The weight packed once for tessera's inference GEMMs, f32 or bf16 (see
    /// [`Linear::prepare`]); the inference path uses it instead of `weight`.
    pub packed: Option<Arc<PackedWeight>>,
    /// Where tessera's CPU kernels do not run (a GPU): the weight in the inference dtype
    /// (bf16), multiplied in that dtype and the result read back in the input's dtype, as
    /// PyTorch's autocast does for linears (norms, softmax and residuals stay in f32).
    pub cast: Option<Tensor>,
}

impl Linear {
    /// PyTorch's default init: U(±1/√fan_in) for weight (kaiming_uniform, a=√5) and bias.
    pub fn new(vb: VarBuilder, in_dim: usize, out_dim: usize, bias: bool) -> Result<Self> {
        let bound = 1.0 / (in_dim as f64).sqrt();
        let init = Init::Uniform {
            lo: -bound,
            up: bound,
        };
        let weight = vb.get_with_hints((out_dim, in_dim), "weight", init)?;
        let bias = if bias {
            Some(vb.get_with_hints(out_dim, "bias", init)?)
        } else {
            None
        };
        Ok(Self::from_parts(weight, bias))
    }

    /// Explicit init for the weight (bias starts at zero), e.g. trunc-normal 0.02 heads.
    pub fn with_init(vb: VarBuilder, in_dim: usize, out_dim: usize, w_init: Init) -> Result<Self> {
        let weight = vb.get_with_hints((out_dim, in_dim), "weight", w_init)?;
        let bias = Some(vb.get_with_hints(out_dim, "bias", Init::Const(0.0))?);
        Ok(Self::from_parts(weight, bias))
    }

    pub fn from_parts(weight: Tensor, bias: Option<Tensor>) -> Self {
        Linear {
            weight,
            bias,
            packed: None,
            cast: None,
        }
    }

    pub fn out_dim(&self) -> usize {
        self.weight.dims()[0]
    }

    /// The weight and the bias, if any.
    pub fn parameters(&self) -> Vec<&Tensor> {
        std::iter::once(&self.weight)
            .chain(self.bias.as_ref())
            .collect()
    }

    /// Prepares the layer for inference in `dtype`. Where tessera's CPU kernels run, packs the
    /// weight once, as f32 panels for the FMA kernel, as bf16 for the AVX512_BF16 kernel (fp32
    /// accumulation) or as int8 for the VNNI kernel. Elsewhere (a GPU) keeps a copy of the
    /// weight in `dtype` when it differs (bf16: autocast-style linears); int8 is CPU-only.
    /// The original `weight` stays for training and traced forwards.
    pub fn prepare(&mut self, dtype: Precision) -> Result<()> {
        if kernels_apply(&self.weight) {
            self.packed = Some(Arc::new(PackedWeight::new(&self.weight, dtype)?));
        } else {
            match dtype {
                Precision::Int8 => candle_core::bail!(
                    "int8 runs on tessera's CPU kernels only (f32 weights on the CPU)"
                ),
                Precision::Float(d) if d != self.weight.dtype() => {
                    self.cast = Some(self.weight.to_dtype(d)?)
                }
                Precision::Float(_) => {}
            }
        }
        Ok(())
    }

    /// `then` applied to `x @ W^T + b` over the last dimension (leading dimensions are flattened
    /// into one matmul).
    pub fn forward(&self, x: &Tensor, then: Then, ctx: &mut Ctx) -> Result<Tensor> {
        self.forward_after(x, None, then, ctx)
    }

    /// [`Linear::forward`] of `act(h)`. On the training kernels the activation is fused into
    /// the linear ([`ops::act_linear`]), so the graph holds `h` alone, not `act(h)` as well.
    pub fn forward_act_input(
        &self,
        h: &Tensor,
        act: Activation,
        then: Then,
        ctx: &mut Ctx,
    ) -> Result<Tensor> {
        self.forward_after(h, Some(act), then, ctx)
    }

    fn forward_after(
        &self,
        x: &Tensor,
        pre: Option<Activation>,
        then: Then,
        ctx: &mut Ctx,
    ) -> Result<Tensor> {
        // The residual counts as an input: a gradient through it must not go missing either.
        let inputs = || {
            let mut p = self.parameters();
            p.extend(then.residual);
            p
        };
        let path = ctx.path(x, inputs);
        let fused_pre = pre.filter(|_| path == Path::Kernels && self.cast.is_none());
        let act_x;
        let x = match pre {
            Some(a) if fused_pre.is_none() => {
                act_x = ops::activation(x, a)?;
                &act_x
            }
            _ => x,
        };
        if path == Path::Inference {
            let w = match &self.packed {
                Some(p) => Weight::Packed(p),
                None => Weight::Unpacked(&self.weight),
            };
            return infer::linear(x, w, self.bias.as_ref(), then.act, then.residual);
        }
        let dims = x.dims().to_vec();
        let in_dim = *dims.last().unwrap_or(&0);
        let rows = x.elem_count() / in_dim.max(1);
        // [.., in] -> [rows, in] @ [in, out] -> [rows, out] -> [.., out]
        let x2 = x.reshape((rows, in_dim))?;
        let y = match &self.cast {
            // [rows, in] @ [in, out] in the prepared dtype, back to x's dtype for the bias.
            Some(w) if ctx.gradient_free(x, inputs) => {
                let y = x2
                    .to_dtype(w.dtype())?
                    .matmul(&w.t()?)?
                    .to_dtype(x.dtype())?;
                match &self.bias {
                    Some(b) => y.broadcast_add(b)?,
                    None => y,
                }
            }
            _ => match fused_pre {
                Some(a) => ops::act_linear(&x2, a, &self.weight, self.bias.as_ref())?,
                None => ops::linear(&x2, &self.weight, self.bias.as_ref())?,
            },
        };
        let mut out_dims = dims;
        *out_dims.last_mut().unwrap_or(&mut 0) = self.out_dim();
        let mut y = y.reshape(out_dims)?;
        if let Some(a) = then.act {
            y = ops::activation(&y, a)?;
        }
        let y = ctx.dropout(&y, then.dropout)?;
        match then.residual {
            Some(r) => r + y,
            None => Ok(y),
        }
    }
}

/// `nn.LayerNorm` over the last dimension: `weight`, `bias`.
#[derive(Clone, Debug)]
pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub eps: f64,
}

impl LayerNorm {
    pub fn new(vb: VarBuilder, dim: usize, eps: f64) -> Result<Self> {
        Ok(LayerNorm {
            weight: vb.get_with_hints(dim, "weight", Init::Const(1.0))?,
            bias: vb.get_with_hints(dim, "bias", Init::Const(0.0))?,
            eps,
        })
    }

    pub fn parameters(&self) -> Vec<&Tensor> {
        vec![&self.weight, &self.bias]
    }

    /// One path for every mode: the fused op has a backward and is as fast for inference.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        ops::layer_norm(x, &self.weight, &self.bias, self.eps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    /// int8 packs f32 CPU weights and runs close to fp32; elsewhere it is a clear error, not a
    /// silent fp32 fallback.
    #[test]
    fn int8_prepare_runs_or_refuses() {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (40, 24), &dev).unwrap();
        let b = Tensor::randn(0f32, 1.0, 40, &dev).unwrap();
        let x = Tensor::randn(0f32, 1.0, (2, 5, 24), &dev).unwrap();
        let exact = Linear::from_parts(w.clone(), Some(b.clone()))
            .forward(&x, Then::none(), &mut Ctx::inference())
            .unwrap();
        let mut q = Linear::from_parts(w.clone(), Some(b.clone()));
        q.prepare(Precision::Int8).unwrap();
        assert!(matches!(q.packed.as_deref(), Some(PackedWeight::Int8(_))));
        let y = q.forward(&x, Then::none(), &mut Ctx::inference()).unwrap();
        let max = |t: &Tensor| {
            t.abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        let (err, scale) = (max(&(&y - &exact).unwrap()), max(&exact));
        // 8-bit steps on both operands: a few percent of the largest output at K = 24.
        assert!(
            err > 0.0 && err < 0.05 * scale,
            "int8 error {err} of {scale}"
        );
        // bf16 weights do not take tessera's kernels: int8 refuses them.
        let mut h = Linear::from_parts(w.to_dtype(DType::BF16).unwrap(), None);
        let e = h.prepare(Precision::Int8).unwrap_err().to_string();
        assert!(e.contains("int8"), "{e}");
    }
}
