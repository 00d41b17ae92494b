//! Per-forward state every module's `forward` takes: training or evaluation, the dropout RNG, the
//! optional trace, and the one predicate ([`Ctx::path`]) that picks which implementation a
//! module runs.
use super::cpu::kernels_apply;
use candle_core::{Result, Tensor, Var};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

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
    pub probes: Option<Vec<Var>>,
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

/// Cut points of a training forward, so that its backward can free the activations block by
/// block: the forward holds every block's graph until the backward has consumed it, and candle's
/// one-shot backward holds all of them (and every gradient) until it ends. At each cut the
/// stack's hidden state continues as a fresh leaf variable; the backward
/// (`train::backward_segmented`) then runs segment by segment from the last, each seeded with
/// the gradient its leaf received, and drops the segment's graph before the next.
#[derive(Debug, Default)]
pub struct Segments {
    /// Per cut: the hidden state as its segment computed it (holding that segment's graph) and
    /// the leaf the rest of the forward read instead.
    parts: Vec<(Tensor, Var)>,
}

impl Segments {
    /// `x` continued as a new leaf (a copy, so its graph is cut), when `x` carries a graph;
    /// else `x` itself.
    pub fn cut(&mut self, x: Tensor) -> Result<Tensor> {
        if !x.track_op() {
            return Ok(x);
        }
        let leaf = Var::from_tensor(&x.detach())?;
        let t = leaf.as_tensor().clone();
        self.parts.push((x, leaf));
        Ok(t)
    }

    /// The cuts, last first, as the backward consumes them (each once).
    pub fn pop(&mut self) -> Option<(Tensor, Var)> {
        self.parts.pop()
    }
}

/// Which implementation a module's forward runs (timm's `fused_attn` flag, decided per call).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// Composite candle ops: any device or dtype, and the one path that materialises attention
    /// probabilities (a trace asks for them).
    Composite,
    /// tessera's CPU f32 kernels with backward (fused softmax, LayerNorm, linear, attention).
    Kernels,
    /// Gradient-free inference kernels: weights packed once, bias/activation/residual in the
    /// GEMM epilogue, attention straight from one q|k|v buffer. Taken only when no gradient
    /// can be wanted, so gradients never go silently missing.
    Inference,
}

/// Per-forward state: training mode, the dropout RNG, and the optional trace.
///
/// Dropout draws from a seeded RNG owned by the caller (not candle's unseeded device RNG), so a
/// training run is reproducible and a resumed run continues bit-for-bit.
pub struct Ctx<'a> {
    pub train: bool,
    /// The caller promises not to differentiate this forward (set by [`Ctx::inference`]):
    /// the inference kernels run even when the weights are trainable variables.
    pub no_grad: bool,
    pub rng: Option<&'a mut ChaCha8Rng>,
    pub trace: Option<&'a mut Trace>,
    /// Where a training forward records its cut points ([`Segments`]); when set, an encoder
    /// cuts before each block of at least [`super::encoder::CUT_MIN_PARAMS`] parameters.
    pub segments: Option<&'a mut Segments>,
}

impl<'a> Ctx<'a> {
    /// Evaluation mode (no dropout). Gradients still flow through anything that tracks them
    /// (trainable weights, inputs in a graph); the inference kernels run only where nothing
    /// does.
    pub fn eval() -> Self {
        Ctx {
            train: false,
            no_grad: false,
            rng: None,
            trace: None,
            segments: None,
        }
    }

    /// Evaluation that will never be differentiated: always the inference kernels (CPU, f32 or
    /// a prepared bf16 model), even with trainable weights. Outputs carry no gradient graph.
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
            segments: None,
        }
    }

    pub fn with_trace(mut self, trace: &'a mut Trace) -> Self {
        self.trace = Some(trace);
        self
    }

    /// Records cut points for a segmented backward ([`Segments`]).
    pub fn with_segments(mut self, segments: &'a mut Segments) -> Self {
        self.segments = Some(segments);
        self
    }

    pub fn tracing(&self) -> bool {
        self.trace.is_some()
    }

    /// The path of a module with input `x` and parameters `params` (listed only when the caller
    /// has not promised `no_grad`): [`Path::Inference`] in evaluation without a trace on CPU f32
    /// when no gradient could be wanted (promised, or nothing tracks one), [`Path::Composite`]
    /// with a trace or where the CPU kernels do not apply, else [`Path::Kernels`].
    pub fn path<'w>(&self, x: &Tensor, params: impl FnOnce() -> Vec<&'w Tensor>) -> Path {
        if self.trace.is_some() || !kernels_apply(x) {
            Path::Composite
        } else if self.gradient_free(x, params) {
            Path::Inference
        } else {
            Path::Kernels
        }
    }

    /// True in evaluation when no gradient can be wanted through a module with input `x` and
    /// parameters `params`: promised ([`Ctx::inference`]) or nothing tracks one. Weights
    /// prepared in another dtype (see [`super::Linear::prepare`]) are used only then.
    pub fn gradient_free<'w>(&self, x: &Tensor, params: impl FnOnce() -> Vec<&'w Tensor>) -> bool {
        !self.train && (self.no_grad || !(x.track_op() || params().iter().any(|w| w.track_op())))
    }

    /// A fresh seed for one dropout mask, when this forward drops anything at rate `p`.
    pub(crate) fn dropout_seed(&mut self, p: f64) -> Option<u64> {
        if !self.train || p <= 0.0 {
            return None;
        }
        self.rng.as_deref_mut().map(|rng| rng.random())
    }

    /// Inverted dropout with probability `p` (identity in eval mode or when p == 0).
    pub fn dropout(&mut self, x: &Tensor, p: f64) -> Result<Tensor> {
        if !self.train || p <= 0.0 || self.rng.is_none() {
            return Ok(x.clone());
        }
        if p >= 1.0 {
            return x.zeros_like();
        }
        let Some(seed) = self.dropout_seed(p) else {
            return Ok(x.clone());
        };
        // A counter-based SplitMix64 stream seeded from the caller's RNG: ~10x cheaper per
        // element than drawing each value from ChaCha, vectorised, and just as reproducible.
        super::dropout::dropout(x, p, seed)
    }
}
