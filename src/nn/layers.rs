//! Linear, LayerNorm and dropout, with PyTorch's tensor names and default initialisation.
use super::ops;
use candle_core::{Result, Tensor};
use candle_nn::{Init, VarBuilder};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// `nn.Linear`: `weight` [out, in], optional `bias` [out].
#[derive(Clone, Debug)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    /// The weight packed once for tessera's inference GEMMs, f32 or bf16 (see
    /// [`Linear::prepare`]); the fused inference path uses it instead of `weight`.
    pub packed: Option<std::sync::Arc<super::fused::Packed>>,
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
        Ok(Linear {
            weight,
            bias,
            packed: None,
        })
    }

    /// Explicit init for the weight (bias starts at zero), e.g. trunc-normal 0.02 heads.
    pub fn with_init(vb: VarBuilder, in_dim: usize, out_dim: usize, w_init: Init) -> Result<Self> {
        let weight = vb.get_with_hints((out_dim, in_dim), "weight", w_init)?;
        let bias = Some(vb.get_with_hints(out_dim, "bias", Init::Const(0.0))?);
        Ok(Linear {
            weight,
            bias,
            packed: None,
        })
    }

    pub fn from_parts(weight: Tensor, bias: Option<Tensor>) -> Self {
        Linear {
            weight,
            bias,
            packed: None,
        }
    }

    pub fn out_dim(&self) -> usize {
        self.weight.dims()[0]
    }

    /// Prepares the layer for inference in `dtype`: packs the weight once, as f32 panels
    /// for the AVX-512 FMA kernel or as bf16 for the AVX512_BF16 kernel (fp32 accumulation).
    /// The unpacked `weight` stays for training and traced forwards.
    pub fn prepare(&mut self, dtype: candle_core::DType) -> Result<()> {
        self.packed = Some(std::sync::Arc::new(super::fused::Packed::new(
            &self.weight,
            dtype,
        )?));
        Ok(())
    }

    /// The fused inference path: `act(x · Wᵀ + b) + residual`, written once (see
    /// [`super::fused`]). No autograd: callers check [`Ctx::fused`] first.
    pub fn forward_fused(
        &self,
        x: &Tensor,
        act: Option<super::Activation>,
        residual: Option<&Tensor>,
    ) -> Result<Tensor> {
        let n = self.out_dim();
        if let Some(p) = &self.packed {
            return super::fused::linear(
                x,
                &super::fused::Weight::Packed(p),
                n,
                self.bias.as_ref(),
                act,
                residual,
            );
        }
        super::fused::with_f32(&self.weight, |w| {
            super::fused::linear(
                x,
                &super::fused::Weight::F32(w),
                n,
                self.bias.as_ref(),
                act,
                residual,
            )
        })
    }

    /// `x @ W^T + b` over the last dimension; leading dimensions are flattened into one matmul.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let in_dim = *dims.last().unwrap_or(&0);
        let rows = x.elem_count() / in_dim.max(1);
        // [.., in] -> [rows, in] @ [in, out] -> [rows, out]
        let y = ops::linear(
            &x.reshape((rows, in_dim))?,
            &self.weight,
            self.bias.as_ref(),
        )?;
        let mut out_dims = dims;
        *out_dims.last_mut().unwrap_or(&mut 0) = self.out_dim();
        y.reshape(out_dims)
    }
}

use super::fused::Dropout;

impl candle_core::CustomOp1 for Dropout {
    fn name(&self) -> &'static str {
        "tessera-dropout"
    }

    fn cpu_fwd(
        &self,
        s: &candle_core::CpuStorage,
        l: &candle_core::Layout,
    ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let data = s.as_slice::<f32>()?;
        let (a, b) = l
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("dropout: input must be contiguous".into()))?;
        Ok((
            candle_core::CpuStorage::F32(self.apply(&data[a..b])),
            l.shape().clone(),
        ))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        // The gradient goes through the same mask (a constant): one op, no mask tensor kept
        // in the graph and no gradient computed for it.
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(self)?))
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

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        ops::layer_norm(x, &self.weight, &self.bias, self.eps)
    }
}

/// Per-forward state: training mode, the dropout RNG, and the optional trace.
///
/// Dropout draws from a seeded RNG owned by the caller (not candle's unseeded device RNG), so a
/// training run is reproducible and a resumed run continues bit-for-bit.
pub struct Ctx<'a> {
    pub train: bool,
    /// The caller promises not to differentiate this forward (set by [`Ctx::inference`]):
    /// the fused inference kernels run even when the weights are trainable variables.
    pub no_grad: bool,
    pub rng: Option<&'a mut ChaCha8Rng>,
    pub trace: Option<&'a mut crate::nn::Trace>,
}

impl<'a> Ctx<'a> {
    /// Evaluation mode (no dropout). Gradients still flow through anything that tracks them
    /// (trainable weights, inputs in a graph); the fused inference kernels run only where
    /// nothing does.
    pub fn eval() -> Self {
        Ctx {
            train: false,
            no_grad: false,
            rng: None,
            trace: None,
        }
    }

    /// Evaluation that will never be differentiated: always the fused inference kernels
    /// (CPU, f32 or a prepared bf16 model), even with trainable weights. Outputs carry no
    /// gradient graph.
    pub fn inference() -> Self {
        Ctx {
            no_grad: true,
            ..Ctx::eval()
        }
    }

    pub fn train(rng: &'a mut ChaCha8Rng) -> Self {
        Ctx {
            train: true,
            no_grad: false,
            rng: Some(rng),
            trace: None,
        }
    }

    /// Whether a layer with input `x` and parameters `weights` may take the fused inference
    /// path: no
    /// dropout, no trace, CPU f32, and no gradient could be wanted (promised, or nothing tracks
    /// one) — so gradients never go silently missing.
    /// `weights` is only listed when the caller has not promised `no_grad`.
    pub fn fused<'w>(&self, x: &Tensor, weights: impl FnOnce() -> Vec<&'w Tensor>) -> bool {
        !self.train
            && self.trace.is_none()
            && super::fused::applies(x)
            && (self.no_grad || !(x.track_op() || weights().iter().any(|w| w.track_op())))
    }

    pub fn with_trace(mut self, trace: &'a mut crate::nn::Trace) -> Self {
        self.trace = Some(trace);
        self
    }

    pub fn tracing(&self) -> bool {
        self.trace.is_some()
    }

    /// Inverted dropout with probability `p` (identity in eval mode or when p == 0).
    pub fn dropout(&mut self, x: &Tensor, p: f64) -> Result<Tensor> {
        if !self.train || p <= 0.0 {
            return Ok(x.clone());
        }
        let Some(rng) = self.rng.as_deref_mut() else {
            return Ok(x.clone());
        };
        if p >= 1.0 {
            return x.zeros_like();
        }
        // A counter-based SplitMix64 stream seeded from the caller's RNG: ~10x cheaper per
        // element than drawing each value from ChaCha, vectorised, and just as reproducible.
        let op = Dropout::new(p, rng.random());
        if super::fused::applies(x) {
            return x.contiguous()?.apply_op1(op);
        }
        // Other devices and dtypes: the same mask as a tensor.
        let ones = vec![1f32; x.elem_count()];
        let mask = Tensor::from_vec(op.apply(&ones), x.shape(), x.device())?.to_dtype(x.dtype())?;
        x * mask
    }
}
