//! Convolution and frozen batch norm with PyTorch's tensor names: the CNN blocks of the
//! detection backbones (DETR freezes every batch norm: eval-mode statistics, no updates; a
//! backbone trained from scratch learns them).
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
        // candle's convolution backward (a transposed convolution for the input, a convolution
        // with an H'×W' kernel for the weight) was most of a DETR training step: where a
        // gradient is wanted on the CPU, convolve as a gather and one matmul instead, whose
        // backward is a scatter-add and two matmuls.
        let y = if x.device().is_cpu() && (self.weight.track_op() || x.track_op()) {
            self.gather_matmul(x)?
        } else {
            x.conv2d(&self.weight, self.padding, self.stride, self.dilation, 1)?
        };
        match &self.bias {
            Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1))?),
            None => Ok(y),
        }
    }

    /// The convolution as im2col by `index_select` and a matmul (differentiable by candle's
    /// own ops): `out[b, pixel, :] = patch(b, pixel) · Wᵀ`.
    fn gather_matmul(&self, x: &Tensor) -> Result<Tensor> {
        let (b, cin, h, w) = x.dims4()?;
        let (cout, wc, k, _) = self.weight.dims4()?;
        if wc != cin {
            candle_core::bail!("conv2d: input has {cin} channels, the weight {wc}")
        }
        let (p, s, d) = (self.padding, self.stride, self.dilation);
        let (hp, wp) = (h + 2 * p, w + 2 * p);
        let span = d * (k - 1) + 1;
        if hp < span || wp < span {
            candle_core::bail!("conv2d: a {h}×{w} input is smaller than the {span}-pixel kernel")
        }
        let (oh, ow) = ((hp - span) / s + 1, (wp - span) / s + 1);
        let wmat = self.weight.reshape((cout, cin * k * k))?;
        if k == 1 && s == 1 && p == 0 {
            // [B, C, H·W] → [B, H·W, C] · Wᵀ → [B, C_out, H, W].
            let cols = x.reshape((b, cin, h * w))?.transpose(1, 2)?;
            return cols
                .broadcast_matmul(&wmat.t()?)?
                .transpose(1, 2)?
                .reshape((b, cout, oh, ow));
        }
        let xp = if p > 0 {
            x.pad_with_zeros(2, p, p)?.pad_with_zeros(3, p, p)?
        } else {
            x.clone()
        };
        // Position of every (output pixel, ky, kx) in the padded map, pixel-major.
        let mut idx = Vec::with_capacity(oh * ow * k * k);
        for oy in 0..oh {
            for ox in 0..ow {
                for ky in 0..k {
                    for kx in 0..k {
                        idx.push(((oy * s + ky * d) * wp + ox * s + kx * d) as u32);
                    }
                }
            }
        }
        let idx = Tensor::from_vec(idx, oh * ow * k * k, x.device())?;
        // [B·C, Hp·Wp] → [B·C, H'·W'·k²] → [B, H'·W', C·k²].
        let cols = xp
            .reshape((b * cin, hp * wp))?
            .index_select(&idx, 1)?
            .reshape((b, cin, oh * ow, k * k))?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b * oh * ow, cin * k * k))?;
        // [B·H'·W', C_out] → [B, C_out, H', W'].
        cols.matmul(&wmat.t()?)?
            .reshape((b, oh * ow, cout))?
            .transpose(1, 2)?
            .reshape((b, cout, oh, ow))
    }
}

/// `DetrFrozenBatchNorm2d` / eval-mode `nn.BatchNorm2d`: `x·scale + shift` with
/// `scale = weight·rsqrt(running_var + eps)`, `shift = bias − running_mean·scale`, computed in
/// that order as DETR does. The statistics are buffers: frozen unless
/// [`FrozenBatchNorm2d::learn_statistics`] turns the module into a training-mode
/// `nn.BatchNorm2d` (a CNN trained from scratch needs its normalisation; DETR's frozen norms
/// assume an ImageNet-trained backbone).
#[derive(Clone, Debug)]
pub struct FrozenBatchNorm2d {
    pub(crate) scale: Tensor,
    pub(crate) shift: Tensor,
    /// The four tensors as the store holds them (variables in a trainable store; the running
    /// statistics are updated in place, so a saved checkpoint carries them).
    weight: Tensor,
    bias: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
    eps: f64,
    learning: bool,
}

/// `nn.BatchNorm2d`'s default momentum of the running statistics.
const BN_MOMENTUM: f64 = 0.1;

impl FrozenBatchNorm2d {
    pub fn new(vb: VarBuilder, channels: usize, eps: f64) -> Result<Self> {
        let weight = vb.get_with_hints(channels, "weight", Init::Const(1.0))?;
        let bias = vb.get_with_hints(channels, "bias", Init::Const(0.0))?;
        let running_mean = vb.get_with_hints(channels, "running_mean", Init::Const(0.0))?;
        let running_var = vb.get_with_hints(channels, "running_var", Init::Const(1.0))?;
        let mut n = FrozenBatchNorm2d {
            scale: weight.clone(),
            shift: bias.clone(),
            weight,
            bias,
            running_mean,
            running_var,
            eps,
            learning: false,
        };
        (n.scale, n.shift) = n.frozen_affine()?;
        Ok(n)
    }

    /// `(scale, shift)` `[1, C, 1, 1]` from the current statistics, no gradient.
    pub(crate) fn frozen_affine(&self) -> Result<(Tensor, Tensor)> {
        let c = self.weight.elem_count();
        let scale =
            (self.weight.detach() * (self.running_var.detach() + self.eps)?.sqrt()?.recip()?)?;
        let shift = (self.bias.detach() - (self.running_mean.detach() * &scale)?)?;
        Ok((scale.reshape((1, c, 1, 1))?, shift.reshape((1, c, 1, 1))?))
    }

    /// Training-mode batch norm from now on: training forwards normalise by the batch's
    /// statistics (biased variance), learn `weight` and `bias`, and move the running
    /// statistics by momentum 0.1 (unbiased variance), as `nn.BatchNorm2d.train()`; evaluation
    /// forwards use the running statistics. Needs a trainable store.
    pub fn learn_statistics(&mut self) -> Result<()> {
        if !self.running_mean.is_variable() || !self.weight.is_variable() {
            candle_core::bail!("batch statistics can only be learned by trainable parameters")
        }
        self.learning = true;
        Ok(())
    }

    /// `train`: a training forward (batch statistics when learning them).
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if !self.learning {
            return x.broadcast_mul(&self.scale)?.broadcast_add(&self.shift);
        }
        if !train {
            // The statistics move during training: fold them afresh.
            let (scale, shift) = self.frozen_affine()?;
            return x.broadcast_mul(&scale)?.broadcast_add(&shift);
        }
        let (b, c, h, w) = x.dims4()?;
        let n = b * h * w;
        if n < 2 {
            candle_core::bail!("batch norm statistics need more than one value per channel")
        }
        // [B, C, H, W] → per channel mean and biased variance, [1, C, 1, 1]; the contiguous
        // H·W axis is reduced first (a strided reduction over B first was the slow part).
        let per_channel = |t: &Tensor| -> Result<Tensor> {
            (t.reshape((b, c, h * w))?.sum_keepdim(2)?.sum_keepdim(0)? / n as f64)?
                .reshape((1, c, 1, 1))
        };
        let mean = per_channel(x)?;
        let centred = x.broadcast_sub(&mean)?;
        let var = per_channel(&centred.sqr()?)?;
        let y = centred.broadcast_div(&(&var + self.eps)?.sqrt()?)?;
        let y = y
            .broadcast_mul(&self.weight.reshape((1, c, 1, 1))?)?
            .broadcast_add(&self.bias.reshape((1, c, 1, 1))?)?;
        let m = BN_MOMENTUM;
        let unbiased = (var.detach().flatten_all()? * (n as f64 / (n - 1) as f64))?;
        let new_mean =
            ((self.running_mean.detach() * (1.0 - m))? + (mean.detach().flatten_all()? * m)?)?;
        let new_var = ((self.running_var.detach() * (1.0 - m))? + (unbiased * m)?)?;
        candle_core::Var::from_tensor(&self.running_mean)?.set(&new_mean)?;
        candle_core::Var::from_tensor(&self.running_var)?.set(&new_var)?;
        Ok(y)
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
        // Folded from the current statistics (a norm that learned them has moved since).
        let (scale, shift) = norm.frozen_affine()?;
        let scale = scale.flatten_all()?.to_vec1::<f32>()?;
        let shift = shift.flatten_all()?.to_vec1::<f32>()?;
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

#[cfg(test)]
mod tests {
    use super::FrozenBatchNorm2d;
    use crate::nn::store::ParamStore;
    use candle_core::{DType, Device, Tensor, Var};

    fn values(t: &Tensor) -> Vec<f64> {
        t.flatten_all()
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    /// The differentiable gather-and-matmul convolution equals candle's convolution, output
    /// and both gradients, over strides, padding and dilation.
    #[test]
    fn gather_convolution_is_candle_convolution() {
        let dev = Device::Cpu;
        for (cin, cout, k, stride, dilation, h, w) in [
            (3, 5, 7, 2, 1, 13, 11),
            (4, 6, 3, 1, 2, 9, 10),
            (4, 6, 3, 2, 1, 9, 9),
            (6, 4, 1, 1, 1, 5, 7),
            (6, 4, 1, 2, 1, 5, 7),
        ] {
            let spec = super::ConvSpec::same(cin, cout, k, stride).dilated(dilation);
            let store = ParamStore::fresh(5, true, &dev);
            let conv = super::Conv2d::new(store.var_builder(DType::F32), &spec).unwrap();
            let x =
                Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, cin, h, w), &dev).unwrap()).unwrap();
            let ours = conv.forward(x.as_tensor()).unwrap();
            let theirs = x
                .as_tensor()
                .conv2d(&conv.weight, spec.padding, stride, dilation, 1)
                .unwrap();
            assert_eq!(ours.dims(), theirs.dims());
            let r = Tensor::randn(0f32, 1.0, ours.dims(), &dev).unwrap();
            let g1 = (&ours * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (&theirs * &r)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let close = |a: &Tensor, b: &Tensor| {
                let d = (a - b).unwrap().abs().unwrap().max_all().unwrap();
                d.to_scalar::<f32>().unwrap()
            };
            assert!(close(&ours, &theirs) < 1e-4, "output {spec:?}");
            for t in [x.as_tensor(), &conv.weight] {
                let d = close(g1.get(t).unwrap(), g2.get(t).unwrap());
                assert!(d < 1e-3, "gradient {spec:?}: {d}");
            }
        }
    }

    /// Training-mode batch norm against `nn.BatchNorm2d.train()`'s formulas in f64: output,
    /// running statistics (momentum 0.1, unbiased variance), the three gradients; then
    /// evaluation with the updated statistics.
    #[test]
    fn learned_batch_norm_is_torch_batch_norm() {
        let dev = Device::Cpu;
        let store = ParamStore::fresh(3, true, &dev);
        let (b, c, h, w) = (3, 4, 5, 6);
        let mut bn = FrozenBatchNorm2d::new(store.var_builder(DType::F32), c, 1e-5).unwrap();
        // Non-trivial affine and statistics, so every term is exercised.
        let set = |t: &Tensor, v: Tensor| Var::from_tensor(t).unwrap().set(&v).unwrap();
        set(
            &bn.weight,
            Tensor::new(&[0.5f32, 1.5, -0.7, 2.0], &dev).unwrap(),
        );
        set(
            &bn.bias,
            Tensor::new(&[0.1f32, -0.3, 0.2, 1.0], &dev).unwrap(),
        );
        set(
            &bn.running_mean,
            Tensor::new(&[0.3f32, -1.0, 0.0, 2.0], &dev).unwrap(),
        );
        set(
            &bn.running_var,
            Tensor::new(&[1.2f32, 0.4, 2.0, 0.9], &dev).unwrap(),
        );
        bn.learn_statistics().unwrap();
        let x = Var::from_tensor(
            &(Tensor::randn(0f32, 2.0, (b, c, h, w), &dev).unwrap() + 0.7).unwrap(),
        )
        .unwrap();
        let r = Tensor::randn(0f32, 1.0, (b, c, h, w), &dev).unwrap();
        let (rm0, rv0) = (values(&bn.running_mean), values(&bn.running_var));
        let y = bn.forward(x.as_tensor(), true).unwrap();
        let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let (xs, rs, ys) = (values(x.as_tensor()), values(&r), values(&y));
        let (gamma, beta) = (values(&bn.weight), values(&bn.bias));
        let gx = values(grads.get(x.as_tensor()).unwrap());
        let gw = values(grads.get(&bn.weight).unwrap());
        let gb = values(grads.get(&bn.bias).unwrap());
        let n = (b * h * w) as f64;
        let at = |bi: usize, ch: usize, i: usize| (bi * c + ch) * h * w + i;
        let (rm, rv) = (values(&bn.running_mean), values(&bn.running_var));
        for ch in 0..c {
            let idx: Vec<usize> = (0..b)
                .flat_map(|bi| (0..h * w).map(move |i| at(bi, ch, i)))
                .collect();
            let mean = idx.iter().map(|&i| xs[i]).sum::<f64>() / n;
            let var = idx.iter().map(|&i| (xs[i] - mean).powi(2)).sum::<f64>() / n;
            let inv = 1.0 / (var + 1e-5).sqrt();
            let xhat = |i: usize| (xs[i] - mean) * inv;
            for &i in &idx {
                assert!((ys[i] - (xhat(i) * gamma[ch] + beta[ch])).abs() < 1e-5);
            }
            let sum_r: f64 = idx.iter().map(|&i| rs[i]).sum();
            let sum_rx: f64 = idx.iter().map(|&i| rs[i] * xhat(i)).sum();
            assert!((gb[ch] - sum_r).abs() < 1e-4, "bias grad {ch}");
            assert!((gw[ch] - sum_rx).abs() < 1e-4, "weight grad {ch}");
            for &i in &idx {
                let want = gamma[ch] * inv * (rs[i] - sum_r / n - xhat(i) * sum_rx / n);
                assert!(
                    (gx[i] - want).abs() < 1e-4,
                    "input grad {i}: {} vs {want}",
                    gx[i]
                );
            }
            assert!((rm[ch] - (0.9 * rm0[ch] + 0.1 * mean)).abs() < 1e-6);
            assert!((rv[ch] - (0.9 * rv0[ch] + 0.1 * var * n / (n - 1.0))).abs() < 1e-5);
        }
        // Evaluation normalises by the updated running statistics, without moving them.
        let e = values(&bn.forward(x.as_tensor(), false).unwrap());
        for ch in 0..c {
            let i = at(1, ch, 7);
            let want = (xs[i] - rm[ch]) / (rv[ch] + 1e-5).sqrt() * gamma[ch] + beta[ch];
            assert!((e[i] - want).abs() < 1e-5);
        }
        assert_eq!(values(&bn.running_mean), rm);
        // A frozen (inference) store cannot learn statistics.
        let frozen = ParamStore::fresh(3, false, &dev);
        let mut f = FrozenBatchNorm2d::new(frozen.var_builder(DType::F32), c, 1e-5).unwrap();
        assert!(f.learn_statistics().is_err());
    }
}
