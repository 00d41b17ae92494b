//! Convolution and frozen batch norm with PyTorch's tensor names: the CNN blocks of the
//! detection backbones (DETR freezes every batch norm: eval-mode statistics, no updates).
use candle_core::{Result, Tensor};
use candle_nn::{Init, VarBuilder};

/// `nn.Conv2d`: `weight` `[out, in, k, k]`, optional `bias` `[out]`.
#[derive(Clone, Debug)]
pub struct Conv2d {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub(crate) stride: usize,
    pub(crate) padding: usize,
    pub(crate) dilation: usize,
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
    pub(crate) scale: Tensor,
    pub(crate) shift: Tensor,
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

/// A convolution with its frozen batch norm folded in (`w·scale`, `shift + b·scale`), its weight
/// reordered to `[out, ky, kx, in]` and packed once for tessera's fp32 GEMM: the gradient-free
/// inference path of a CNN, on NHWC maps (`out[pixel] = patch(pixel) · Wᵀ`, a 1×1 stride-1
/// convolution needing no patch copy at all).
#[derive(Clone, Debug)]
pub struct PackedConv {
    w: std::sync::Arc<crate::kernels::f32::PackedF32>,
    bias: Vec<f32>,
    cin: usize,
    k: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
    relu: bool,
}

/// An NHWC f32 map: `data[((b·h + y)·w + x)·c + ch]`.
#[derive(Clone, Debug)]
pub struct Nhwc {
    pub data: Vec<f32>,
    pub dims: (usize, usize, usize, usize),
}

impl Nhwc {
    /// One transposing copy of a CPU f32 `[B, C, H, W]` tensor.
    pub fn from_nchw(t: &Tensor) -> crate::Result<Nhwc> {
        let (b, c, h, w) = t.dims4()?;
        let data = super::cpu::with_f32(t, |src| {
            let mut out = vec![0f32; src.len()];
            for bi in 0..b {
                for ch in 0..c {
                    let plane = &src[(bi * c + ch) * h * w..][..h * w];
                    for (p, &v) in plane.iter().enumerate() {
                        out[(bi * h * w + p) * c + ch] = v;
                    }
                }
            }
            Ok(out)
        })?;
        Ok(Nhwc {
            data,
            dims: (b, h, w, c),
        })
    }

    /// One transposing copy back to `[B, C, H, W]`.
    pub fn to_nchw(&self, device: &candle_core::Device) -> crate::Result<Tensor> {
        let (b, h, w, c) = self.dims;
        let mut out = vec![0f32; self.data.len()];
        for bi in 0..b {
            for p in 0..h * w {
                let px = &self.data[(bi * h * w + p) * c..][..c];
                for (ch, &v) in px.iter().enumerate() {
                    out[(bi * c + ch) * h * w + p] = v;
                }
            }
        }
        Ok(Tensor::from_vec(out, (b, c, h, w), device)?)
    }
}

impl PackedConv {
    pub fn new(conv: &Conv2d, norm: &FrozenBatchNorm2d, relu: bool) -> crate::Result<Self> {
        let (cout, cin, k, _) = conv.weight.dims4()?;
        let scale = norm.scale.flatten_all()?.to_vec1::<f32>()?;
        let shift = norm.shift.flatten_all()?.to_vec1::<f32>()?;
        let w = conv
            .weight
            .permute((0, 2, 3, 1))?
            .contiguous()?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let per = k * k * cin;
        let w: Vec<f32> = w
            .chunks(per)
            .zip(&scale)
            .flat_map(|(row, s)| row.iter().map(move |v| v * s))
            .collect();
        let b0 = match &conv.bias {
            Some(b) => b.to_vec1::<f32>()?,
            None => vec![0.0; cout],
        };
        let bias = (0..cout).map(|o| shift[o] + b0[o] * scale[o]).collect();
        Ok(PackedConv {
            w: std::sync::Arc::new(crate::kernels::f32::PackedF32::pack(&w, cout, per)?),
            bias,
            cin,
            k,
            stride: conv.stride,
            padding: conv.padding,
            dilation: conv.dilation,
            relu,
        })
    }

    /// The convolution (+ folded norm, + ReLU) of an NHWC map.
    pub fn forward(&self, x: &Nhwc) -> crate::Result<Nhwc> {
        let (b, h, w, c) = x.dims;
        if c != self.cin {
            return Err(crate::Error::Shape(format!(
                "a {c}-channel map into a {}-channel convolution",
                self.cin
            )));
        }
        let span = self.dilation * (self.k - 1) + 1;
        if h + 2 * self.padding < span || w + 2 * self.padding < span {
            return Err(crate::Error::Shape(format!(
                "a {h}×{w} map is too small for a {}×{} convolution",
                self.k, self.k
            )));
        }
        let oh = (h + 2 * self.padding - span) / self.stride + 1;
        let ow = (w + 2 * self.padding - span) / self.stride + 1;
        let kdim = self.k * self.k * c;
        let m = b * oh * ow;
        let direct = self.k == 1 && self.stride == 1 && self.padding == 0;
        let patches;
        let a: &[f32] = if direct {
            &x.data
        } else {
            // One row per output pixel: its (ky, kx, channel) patch, zeros outside the map.
            let mut p = vec![0f32; m * kdim];
            use rayon::prelude::*;
            p.par_chunks_mut(ow * kdim)
                .enumerate()
                .for_each(|(row, out)| {
                    let (bi, oy) = (row / oh, row % oh);
                    for ox in 0..ow {
                        for ky in 0..self.k {
                            let iy = (oy * self.stride + ky * self.dilation) as isize
                                - self.padding as isize;
                            if iy < 0 || iy >= h as isize {
                                continue;
                            }
                            for kx in 0..self.k {
                                let ix = (ox * self.stride + kx * self.dilation) as isize
                                    - self.padding as isize;
                                if ix < 0 || ix >= w as isize {
                                    continue;
                                }
                                let src = ((bi * h + iy as usize) * w + ix as usize) * c;
                                let dst = ox * kdim + (ky * self.k + kx) * c;
                                out[dst..dst + c].copy_from_slice(&x.data[src..src + c]);
                            }
                        }
                    }
                });
            patches = p;
            &patches
        };
        let n = self.w.n();
        let mut out = vec![0f32; m * n];
        let relu = |rows: &mut [f32]| rows.iter_mut().for_each(|v| *v = v.max(0.0));
        crate::kernels::f32::gemm_f32_packed(
            a,
            m,
            kdim,
            &self.w,
            Some(&self.bias),
            &mut out,
            if self.relu { Some(&relu) } else { None },
            rayon::current_num_threads(),
        )?;
        Ok(Nhwc {
            data: out,
            dims: (b, oh, ow, n),
        })
    }
}
