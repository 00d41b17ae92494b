//! ResNet as a feature backbone (DETR's): bottleneck or basic blocks, every batch norm frozen,
//! in the two layouts checkpoints use — Hugging Face's `ResNetBackbone` (`embedder.embedder`,
//! `encoder.stages.{s}.layers.{l}.layer.{0,1,2}`, `shortcut`) and timm's / torchvision's
//! (`conv1`, `bn1`, `layer{1..4}.{l}.conv1..3`, `downsample.0/1`). Only names differ: the
//! computation is the same (stride on the 3×3 convolution, ReLU after the sum).
use crate::nn::conv::{Conv2d, ConvSpec, FrozenBatchNorm2d, Nhwc, PackedConv};
use crate::nn::{Ctx, Path};
use crate::{Error, Result};
use candle_core::Tensor;
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

/// Which names the checkpoint uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// transformers' `ResNetBackbone` / `ResNetModel`.
    Hf,
    /// timm's and torchvision's `ResNet`.
    Timm,
}

/// `ResNetConfig` (transformers' defaults: ResNet-50).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResNetConfig {
    pub num_channels: usize,
    pub embedding_size: usize,
    pub hidden_sizes: Vec<usize>,
    pub depths: Vec<usize>,
    pub layer_type: String,
    pub hidden_act: String,
    pub downsample_in_first_stage: bool,
    pub downsample_in_bottleneck: bool,
    /// timm's `output_stride` (DETR's `dilation`: 16): once the net has reached this stride,
    /// later stages dilate their 3×3 convolutions instead of striding. Not a field of HF's
    /// `ResNetConfig` (its `ResNetBackbone` cannot dilate), so never read from or written to it.
    #[serde(skip)]
    pub output_stride: Option<usize>,
    /// Fields read by transformers only (`out_features`, `model_type`, …), kept for saving.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Default for ResNetConfig {
    fn default() -> Self {
        ResNetConfig {
            num_channels: 3,
            embedding_size: 64,
            hidden_sizes: vec![256, 512, 1024, 2048],
            depths: vec![3, 4, 6, 3],
            layer_type: "bottleneck".into(),
            hidden_act: "relu".into(),
            downsample_in_first_stage: false,
            downsample_in_bottleneck: false,
            output_stride: None,
            extra: Default::default(),
        }
    }
}

impl ResNetConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.hidden_sizes.is_empty() || self.hidden_sizes.len() != self.depths.len() {
            return bad(format!(
                "hidden_sizes {:?} and depths {:?} must be non-empty and of one length",
                self.hidden_sizes, self.depths
            ));
        }
        let limit = 1 << 16;
        if self.num_channels == 0 || self.embedding_size == 0 || self.embedding_size > limit {
            return bad(format!(
                "num_channels {} / embedding_size {} out of range",
                self.num_channels, self.embedding_size
            ));
        }
        if let Some(h) = self.hidden_sizes.iter().find(|&&h| h == 0 || h > limit) {
            return bad(format!("hidden size {h} must be between 1 and {limit}"));
        }
        if self.depths.iter().any(|&d| d == 0 || d > 1024) {
            return bad(format!(
                "depths {:?} must be between 1 and 1024",
                self.depths
            ));
        }
        match self.layer_type.as_str() {
            "bottleneck" if self.hidden_sizes.iter().any(|h| h % 4 != 0) => bad(format!(
                "bottleneck hidden_sizes {:?} must be multiples of 4",
                self.hidden_sizes
            )),
            "bottleneck" | "basic" => match self.hidden_act.as_str() {
                "relu" => Ok(()),
                a => bad(format!("hidden_act {a:?}: only relu is supported")),
            },
            t => bad(format!("layer_type {t:?}: expected bottleneck or basic")),
        }?;
        match self.output_stride {
            None | Some(8 | 16 | 32) => Ok(()),
            Some(s) => bad(format!("output_stride {s}: expected 8, 16 or 32")),
        }
    }

    /// The stage whose map DETR takes (0-based): the last of `out_features` (`stage1`…) when
    /// given, else the last stage.
    pub fn out_stage(&self) -> Result<usize> {
        let n = self.hidden_sizes.len();
        let Some(f) = self.extra.get("out_features").filter(|f| !f.is_null()) else {
            return Ok(n.saturating_sub(1));
        };
        let last = f
            .as_array()
            .and_then(|a| a.last())
            .and_then(|v| v.as_str())
            .ok_or_else(|| Error::Config(format!("out_features {f}: expected stage names")))?;
        match last
            .strip_prefix("stage")
            .and_then(|i| i.parse::<usize>().ok())
        {
            Some(i) if (1..=n).contains(&i) => Ok(i - 1),
            _ => Err(Error::Config(format!(
                "out_features {f}: the last must be one of stage1…stage{n}"
            ))),
        }
    }
}

const BN_EPS: f64 = 1e-5;

/// Convolution, frozen batch norm, optional ReLU (HF's `ResNetConvLayer`).
#[derive(Clone, Debug)]
struct ConvNorm {
    conv: Conv2d,
    norm: FrozenBatchNorm2d,
    relu: bool,
    /// The same, norm folded in and packed ([`ResNet::prepare`]).
    packed: Option<std::sync::Arc<PackedConv>>,
}

impl ConvNorm {
    /// `conv`/`norm` are the two modules' paths under `vb`.
    fn new(vb: &VarBuilder, conv: &str, norm: &str, spec: ConvSpec, relu: bool) -> Result<Self> {
        Ok(ConvNorm {
            conv: Conv2d::kaiming_fan_out(vb.pp(conv), &spec)?,
            norm: FrozenBatchNorm2d::new(vb.pp(norm), spec.out_channels, BN_EPS)?,
            relu,
            packed: None,
        })
    }

    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let y = self.norm.forward(&self.conv.forward(x)?, train)?;
        Ok(if self.relu { y.relu()? } else { y })
    }

    fn prepare(&mut self) -> Result<()> {
        self.packed = Some(std::sync::Arc::new(PackedConv::new(
            &self.conv, &self.norm, self.relu,
        )?));
        Ok(())
    }

    fn forward_packed(&self, x: &Nhwc) -> Result<Nhwc> {
        self.packed
            .as_ref()
            .ok_or_else(|| Error::Msg("the convolution is not prepared".into()))?
            .forward(x)
    }
}

/// One residual block: `relu(layers(x) + shortcut(x))`.
#[derive(Clone, Debug)]
struct Block {
    layers: Vec<ConvNorm>,
    shortcut: Option<ConvNorm>,
}

impl Block {
    fn new(
        vb: VarBuilder,
        layout: Layout,
        cfg: &ResNetConfig,
        cin: usize,
        cout: usize,
        stride: usize,
        (first_dilation, dilation): (usize, usize),
    ) -> Result<Self> {
        let bottleneck = cfg.layer_type == "bottleneck";
        let specs: Vec<ConvSpec> = if bottleneck {
            let mid = cout / 4;
            let (s1, s2) = if cfg.downsample_in_bottleneck {
                (stride, 1)
            } else {
                (1, stride)
            };
            vec![
                ConvSpec::same(cin, mid, 1, s1),
                ConvSpec::same(mid, mid, 3, s2).dilated(first_dilation),
                ConvSpec::same(mid, cout, 1, 1),
            ]
        } else {
            vec![
                ConvSpec::same(cin, cout, 3, stride).dilated(first_dilation),
                ConvSpec::same(cout, cout, 3, 1).dilated(dilation),
            ]
        };
        let last = specs.len() - 1;
        let layers = specs
            .into_iter()
            .enumerate()
            .map(|(i, s)| match layout {
                Layout::Hf => ConvNorm::new(
                    &vb.pp("layer").pp(i),
                    "convolution",
                    "normalization",
                    s,
                    i < last,
                ),
                Layout::Timm => ConvNorm::new(
                    &vb,
                    &format!("conv{}", i + 1),
                    &format!("bn{}", i + 1),
                    s,
                    i < last,
                ),
            })
            .collect::<Result<_>>()?;
        let shortcut = if cin != cout || stride != 1 {
            let s = ConvSpec::same(cin, cout, 1, stride);
            Some(match layout {
                Layout::Hf => {
                    ConvNorm::new(&vb.pp("shortcut"), "convolution", "normalization", s, false)?
                }
                Layout::Timm => ConvNorm::new(&vb.pp("downsample"), "0", "1", s, false)?,
            })
        } else {
            None
        };
        Ok(Block { layers, shortcut })
    }

    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut h = x.clone();
        for l in &self.layers {
            h = l.forward(&h, train)?;
        }
        let residual = match &self.shortcut {
            Some(s) => s.forward(x, train)?,
            None => x.clone(),
        };
        Ok((h + residual)?.relu()?)
    }

    fn convs(&mut self) -> impl Iterator<Item = &mut ConvNorm> {
        self.layers.iter_mut().chain(self.shortcut.as_mut())
    }

    /// [`Block::forward`] on an NHWC map with the packed convolutions.
    fn forward_packed(&self, x: Nhwc) -> Result<Nhwc> {
        let mut h = self.layers[0].forward_packed(&x)?;
        for l in &self.layers[1..] {
            h = l.forward_packed(&h)?;
        }
        let residual = match &self.shortcut {
            Some(s) => s.forward_packed(&x)?,
            None => x,
        };
        if residual.dims != h.dims {
            return Err(Error::Shape(format!(
                "residual {:?} and block output {:?}",
                residual.dims, h.dims
            )));
        }
        h.data
            .iter_mut()
            .zip(&residual.data)
            .for_each(|(a, r)| *a = (*a + r).max(0.0));
        Ok(h)
    }
}

/// Max pool 3×3 with stride 2 (no padding) as the maximum of nine strided views, so it has a
/// backward (candle's max_pool2d has none for overlapping windows).
fn max_pool_3x3_s2(x: &Tensor) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    if h < 3 || w < 3 {
        return Err(Error::Shape(format!(
            "a {h}×{w} map is too small for the stem's max pool"
        )));
    }
    let (oh, ow) = ((h - 3) / 2 + 1, (w - 3) / 2 + 1);
    let dev = x.device();
    let mut out: Option<Tensor> = None;
    for dy in 0..3 {
        let rows = Tensor::new(
            (0..oh).map(|i| (2 * i + dy) as u32).collect::<Vec<_>>(),
            dev,
        )?;
        let r = x.index_select(&rows, 2)?;
        for dx in 0..3 {
            let cols = Tensor::new(
                (0..ow).map(|j| (2 * j + dx) as u32).collect::<Vec<_>>(),
                dev,
            )?;
            let v = r.index_select(&cols, 3)?;
            out = Some(match out {
                Some(o) => o.maximum(&v)?,
                None => v,
            });
        }
    }
    out.ok_or_else(|| Error::Msg("max pool".into()))
}

/// The backbone: stem (7×7 stride-2 convolution, norm, ReLU, 3×3 stride-2 max pool) and the
/// stages.
#[derive(Clone, Debug)]
pub struct ResNet {
    stem: ConvNorm,
    stages: Vec<Vec<Block>>,
    /// [`ResNet::prepare`] has packed every convolution.
    prepared: bool,
    pub config: ResNetConfig,
}

/// 3×3 stride-2 max pool with padding 1 on an NHWC map of post-ReLU values (zero padding
/// then equals PyTorch's −inf padding: every window holds a real pixel).
fn max_pool_nhwc(x: &Nhwc) -> Result<Nhwc> {
    let (b, h, w, c) = x.dims;
    if h < 2 || w < 2 {
        return Err(Error::Shape(format!(
            "a {h}×{w} map is too small for the stem's max pool"
        )));
    }
    let (oh, ow) = ((h - 1) / 2 + 1, (w - 1) / 2 + 1);
    let mut out = vec![0f32; b * oh * ow * c];
    for bi in 0..b {
        for oy in 0..oh {
            for ox in 0..ow {
                let o = ((bi * oh + oy) * ow + ox) * c;
                for iy in (2 * oy).saturating_sub(1)..(2 * oy + 2).min(h) {
                    for ix in (2 * ox).saturating_sub(1)..(2 * ox + 2).min(w) {
                        let i = ((bi * h + iy) * w + ix) * c;
                        for ch in 0..c {
                            out[o + ch] = out[o + ch].max(x.data[i + ch]);
                        }
                    }
                }
            }
        }
    }
    Ok(Nhwc {
        data: out,
        dims: (b, oh, ow, c),
    })
}

impl ResNet {
    pub fn new(vb: VarBuilder, cfg: &ResNetConfig, layout: Layout) -> Result<Self> {
        cfg.validate()?;
        let stem_spec = ConvSpec::same(cfg.num_channels, cfg.embedding_size, 7, 2);
        let stem = match layout {
            Layout::Hf => ConvNorm::new(
                &vb.pp("embedder").pp("embedder"),
                "convolution",
                "normalization",
                stem_spec,
                true,
            )?,
            Layout::Timm => ConvNorm::new(&vb, "conv1", "bn1", stem_spec, true)?,
        };
        let mut stages = vec![];
        let mut cin = cfg.embedding_size;
        // timm's bookkeeping for `output_stride`: the stem reaches stride 4; a stage that would
        // pass the target multiplies the dilation instead. A stage's first block keeps the
        // previous dilation on its 3×3 convolution, the rest take the new one.
        let (mut net_stride, mut dilation) = (4, 1);
        let target = cfg.output_stride.unwrap_or(usize::MAX);
        for (s, (&cout, &depth)) in cfg.hidden_sizes.iter().zip(&cfg.depths).enumerate() {
            let mut stride = if s == 0 && !cfg.downsample_in_first_stage {
                1
            } else {
                2
            };
            let previous = dilation;
            if net_stride >= target {
                dilation *= stride;
                stride = 1;
            } else {
                net_stride *= stride;
            }
            let mut blocks = vec![];
            for l in 0..depth {
                let vb_l = match layout {
                    Layout::Hf => vb.pp("encoder").pp("stages").pp(s).pp("layers").pp(l),
                    Layout::Timm => vb.pp(format!("layer{}", s + 1)).pp(l),
                };
                let (i, st, first) = if l == 0 {
                    (cin, stride, previous)
                } else {
                    (cout, 1, dilation)
                };
                blocks.push(Block::new(
                    vb_l,
                    layout,
                    cfg,
                    i,
                    cout,
                    st,
                    (first, dilation),
                )?);
            }
            stages.push(blocks);
            cin = cout;
        }
        Ok(ResNet {
            stem,
            stages,
            prepared: false,
            config: cfg.clone(),
        })
    }

    /// Folds every frozen norm into its convolution and packs the weights once for tessera's
    /// fp32 GEMM; later gradient-free CPU f32 forwards run on them (NHWC, im2col rows, ReLU in
    /// the GEMM's epilogue). Differentiable forwards keep the composite ops.
    ///
    /// Trainable weights are left unpacked: a copy would go stale as they train; so are weights
    /// off the CPU.
    pub fn prepare(&mut self) -> Result<()> {
        // Packed convolutions are for tessera's CPU kernels only (a GPU runs candle's conv).
        if self.stem.conv.weight.track_op()
            || !crate::nn::cpu::kernels_apply(&self.stem.conv.weight)
        {
            return Ok(());
        }
        self.stem.prepare()?;
        for b in self.stages.iter_mut().flatten() {
            for c in b.convs() {
                c.prepare()?;
            }
        }
        self.prepared = true;
        Ok(())
    }

    /// Every batch norm in training mode from now on (see
    /// [`FrozenBatchNorm2d::learn_statistics`]): for a backbone trained from scratch, which
    /// frozen identity norms leave unnormalised. The weights must be trainable.
    pub fn learn_batch_statistics(&mut self) -> Result<()> {
        self.stem.norm.learn_statistics()?;
        for b in self.stages.iter_mut().flatten() {
            for c in b.convs() {
                c.norm.learn_statistics()?;
            }
        }
        Ok(())
    }

    fn forward_packed(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        let mut h = max_pool_nhwc(&self.stem.forward_packed(&Nhwc::from_nchw(x)?)?)?;
        let mut out = vec![];
        for stage in &self.stages {
            for b in stage {
                h = b.forward_packed(h)?;
            }
            out.push(h.to_nchw(x.device())?);
        }
        Ok(out)
    }

    /// Images [B, C, H, W] → every stage's feature map, `[B, hidden_sizes[s], H/4/2^s', …]`.
    pub fn forward(&self, x: &Tensor, ctx: &Ctx) -> Result<Vec<Tensor>> {
        // The packed weights are a copy taken by `prepare`: only a forward that can want no
        // gradient (the one predicate's inference path) may use them.
        if self.prepared && ctx.path(x, || vec![&self.stem.conv.weight]) == Path::Inference {
            return self.forward_packed(x);
        }
        let h = self.stem.forward(x, ctx.train)?;
        // Max pool 3×3, stride 2, padding 1. The input is post-ReLU (≥ 0) and every window
        // holds a real pixel, so zero padding gives what PyTorch's -inf padding gives.
        let h = h.pad_with_zeros(2, 1, 1)?.pad_with_zeros(3, 1, 1)?;
        let mut h = if h.track_op() {
            max_pool_3x3_s2(&h)?
        } else {
            // Nothing to differentiate: candle's pooling kernel, one pass.
            h.max_pool2d_with_stride(3, 2)?
        };
        let mut out = vec![];
        for stage in &self.stages {
            for b in stage {
                h = b.forward(&h, ctx.train)?;
            }
            out.push(h.clone());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    /// The differentiable pool and candle's kernel agree (the inference path takes the kernel).
    #[test]
    fn both_max_pools_agree() {
        let x = candle_core::Tensor::randn(0f32, 1.0, (2, 3, 9, 12), &candle_core::Device::Cpu)
            .unwrap();
        let a = super::max_pool_3x3_s2(&x).unwrap();
        let b = x.max_pool2d_with_stride(3, 2).unwrap();
        let (a, b): (Vec<f32>, Vec<f32>) = (
            a.flatten_all().unwrap().to_vec1().unwrap(),
            b.flatten_all().unwrap().to_vec1().unwrap(),
        );
        assert_eq!(a, b);
    }
}
