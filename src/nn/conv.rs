//! Convolution and frozen batch norm with PyTorch's tensor names: the CNN blocks of the
//! detection backbones (DETR freezes every batch norm: eval-mode statistics, no updates).
use candle_core::{Result, Tensor};
use candle_nn::{Init, VarBuilder};

/// `nn.Conv2d`: `weight` `[out, in, k, k]`, optional `bias` `[out]`.
#[derive(Clone, Debug)]
pub struct Conv2d {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    stride: usize,
    padding: usize,
    dilation: usize,
}

/// The shape of a convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvSpec {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
    pub dilation: usize,
    pub bias: bool,
}

impl ConvSpec {
    /// A `k`×`k` convolution with PyTorch-style "same" padding `dilation·(k/2)`, no bias.
    pub fn same(in_channels: usize, out_channels: usize, kernel: usize, stride: usize) -> Self {
        ConvSpec {
            in_channels,
            out_channels,
            kernel,
            stride,
            padding: kernel / 2,
            dilation: 1,
            bias: false,
        }
    }

    /// The same convolution dilated by `d` (padding `d·(k/2)` keeps the size).
    pub fn dilated(self, d: usize) -> Self {
        ConvSpec {
            dilation: d,
            padding: d * (self.kernel / 2),
            ..self
        }
    }
}

impl Conv2d {
    /// PyTorch's default init (kaiming_uniform a=√5: U(±1/√fan_in)).
    pub fn new(vb: VarBuilder, s: &ConvSpec) -> Result<Self> {
        let fan_in = s.in_channels * s.kernel * s.kernel;
        let bound = 1.0 / (fan_in as f64).sqrt();
        let init = Init::Uniform {
            lo: -bound,
            up: bound,
        };
        Self::with_init(vb, s, init, init)
    }

    /// Fresh weights drawn as ResNets draw them (`kaiming_normal_(mode="fan_out",
    /// nonlinearity="relu")`, transformers' and torchvision's): a random ResNet keeps its
    /// activations' scale from stage to stage. With PyTorch's default init and DETR's frozen
    /// (identity) batch norms, a random three-stage backbone's output shrank to a std of 0.05,
    /// drowned by the position embeddings.
    pub fn kaiming_fan_out(vb: VarBuilder, s: &ConvSpec) -> Result<Self> {
        let fan_out = s.out_channels * s.kernel * s.kernel;
        let weight = Init::Randn {
            mean: 0.0,
            stdev: (2.0 / fan_out as f64).sqrt(),
        };
        Self::with_init(vb, s, weight, Init::Const(0.0))
    }

    fn with_init(vb: VarBuilder, s: &ConvSpec, init: Init, bias_init: Init) -> Result<Self> {
        let weight = vb.get_with_hints(
            (s.out_channels, s.in_channels, s.kernel, s.kernel),
            "weight",
            init,
        )?;
        let bias = if s.bias {
            Some(vb.get_with_hints(s.out_channels, "bias", bias_init)?)
        } else {
            None
        };
        Ok(Conv2d {
            weight,
            bias,
            stride: s.stride,
            padding: s.padding,
            dilation: s.dilation,
        })
    }

    /// [B, C_in, H, W] → [B, C_out, H', W'].
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = x.conv2d(&self.weight, self.padding, self.stride, self.dilation, 1)?;
        match &self.bias {
            Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1))?),
            None => Ok(y),
        }
    }
}

/// `DetrFrozenBatchNorm2d` / eval-mode `nn.BatchNorm2d`: `x·scale + shift` with
/// `scale = weight·rsqrt(running_var + eps)`, `shift = bias − running_mean·scale`, computed in
/// that order as DETR does. The statistics are buffers: never trained.
#[derive(Clone, Debug)]
pub struct FrozenBatchNorm2d {
    scale: Tensor,
    shift: Tensor,
}

impl FrozenBatchNorm2d {
    pub fn new(vb: VarBuilder, channels: usize, eps: f64) -> Result<Self> {
        let w = vb
            .get_with_hints(channels, "weight", Init::Const(1.0))?
            .detach();
        let b = vb
            .get_with_hints(channels, "bias", Init::Const(0.0))?
            .detach();
        let mean = vb
            .get_with_hints(channels, "running_mean", Init::Const(0.0))?
            .detach();
        let var = vb
            .get_with_hints(channels, "running_var", Init::Const(1.0))?
            .detach();
        let scale = (w * (var + eps)?.sqrt()?.recip()?)?;
        let shift = (b - (mean * &scale)?)?;
        Ok(FrozenBatchNorm2d {
            scale: scale.reshape((1, channels, 1, 1))?,
            shift: shift.reshape((1, channels, 1, 1))?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.broadcast_mul(&self.scale)?.broadcast_add(&self.shift)
    }
}
