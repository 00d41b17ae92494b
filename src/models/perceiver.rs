//! The Perceiver image classifiers of transformers: `PerceiverForImageClassificationLearned`
//! (1×1 convolution + learned positions), `…Fourier` (raw pixels + Fourier features, no
//! patches) and `…ConvProcessing` (a 7×7 stride-2 convolution, batch norm, ReLU and an unpadded
//! 3×3 max pool, + Fourier features), under their on-disk names (`perceiver.*`).
//!
//! Latents [num_latents, d_latents] cross-attend once into the pixels' tokens, then
//! `num_self_attends_per_block` self-attention layers run `num_blocks` times with **shared
//! weights**; a single learned query cross-attends into the latents and a linear layer gives
//! the logits. Every layer is [`crate::nn::LatentLayer`]; every LayerNorm has eps 1e-5 (the
//! config's `layer_norm_eps` is unused, as in transformers).
use crate::models::load::{fresh, strict, Checkpoint, LoadOptions, Loaded, Pretrained};
use crate::nn::conv::{Conv2d, ConvSpec, FrozenBatchNorm2d};
use crate::nn::Precision;
use crate::nn::{Activation, Ctx, LatentConfig, LatentLayer, Linear, Then};
use crate::{Error, Result};
use candle_core::{Device, Tensor, D};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `PerceiverConfig` (the fields the image classifiers read; the rest kept as they are).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct PerceiverConfig {
    pub num_latents: usize,
    pub d_latents: usize,
    /// The preprocessor's output width (512 learned, 261 Fourier, 322 conv).
    pub d_model: usize,
    pub num_blocks: usize,
    pub num_self_attends_per_block: usize,
    pub num_self_attention_heads: usize,
    pub num_cross_attention_heads: usize,
    pub qk_channels: Option<usize>,
    pub v_channels: Option<usize>,
    /// Query/key width of a cross-attention without `qk_channels`: `kv` (the inputs') or `q`.
    pub cross_attention_shape_for_attention: String,
    pub self_attention_widening_factor: usize,
    pub cross_attention_widening_factor: usize,
    pub hidden_act: String,
    pub attention_probs_dropout_prob: f64,
    pub use_query_residual: bool,
    pub image_size: usize,
    /// tessera's own field, not transformers': the resolution at which the Fourier features'
    /// top band reaches Nyquist (the Perceiver paper's choice is the input's size). transformers
    /// always uses 224 for `...Fourier`, which aliases on small inputs (64 bands up to frequency
    /// 112 on a 28-pixel grid); a model saved with another value loads in transformers but
    /// computes different position features there. `None`: 224, transformers' layout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fourier_max_resolution: Option<usize>,
    pub id2label: BTreeMap<String, String>,
    pub architectures: Vec<String>,
    pub model_type: String,
    /// Every other field of `config.json`, written back unchanged.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Default for PerceiverConfig {
    /// transformers' defaults.
    fn default() -> Self {
        PerceiverConfig {
            num_latents: 256,
            d_latents: 1280,
            d_model: 768,
            num_blocks: 1,
            num_self_attends_per_block: 26,
            num_self_attention_heads: 8,
            num_cross_attention_heads: 8,
            qk_channels: None,
            v_channels: None,
            cross_attention_shape_for_attention: "kv".into(),
            self_attention_widening_factor: 1,
            cross_attention_widening_factor: 1,
            hidden_act: "gelu".into(),
            attention_probs_dropout_prob: 0.1,
            use_query_residual: true,
            image_size: 56,
            fourier_max_resolution: None,
            id2label: BTreeMap::new(),
            architectures: vec![],
            model_type: "perceiver".into(),
            extra: Default::default(),
        }
    }
}

/// How pixels become the tokens the latents read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preprocessing {
    /// `PerceiverForImageClassificationLearned`: 1×1 conv to 256 channels + learned positions
    /// (`image_size²` of them) projected to 256, concatenated.
    Learned,
    /// `PerceiverForImageClassificationFourier`: the 3 pixel values + Fourier features (64 bands,
    /// resolution 224×224 whatever the input), concatenated: 261 channels.
    Fourier,
    /// `PerceiverForImageClassificationConvProcessing`: conv 7×7/2 (TF "same" padding) → batch
    /// norm → ReLU → max pool 3/2 (unpadded: 224 → 112 → 55) to 64 channels + Fourier features
    /// (resolution 56×56): 322 channels.
    Conv,
}

impl Preprocessing {
    fn of(config: &PerceiverConfig) -> Result<Preprocessing> {
        match config.architectures.first().map(String::as_str) {
            Some("PerceiverForImageClassificationLearned") => Ok(Preprocessing::Learned),
            Some("PerceiverForImageClassificationFourier") => Ok(Preprocessing::Fourier),
            Some("PerceiverForImageClassificationConvProcessing") => Ok(Preprocessing::Conv),
            other => Err(Error::Config(format!(
                "Perceiver architecture {other:?}: tessera reads the image classifiers \
                 (PerceiverForImageClassificationLearned, …Fourier, …ConvProcessing)"
            ))),
        }
    }

    /// The tokens' width this preprocessing gives (what `d_model` must say).
    pub fn channels(self) -> usize {
        match self {
            Preprocessing::Learned => 512,
            Preprocessing::Fourier => 3 + fourier_channels(2, BANDS),
            Preprocessing::Conv => 64 + fourier_channels(2, BANDS),
        }
    }
}

const BANDS: usize = 64;

/// `PerceiverForImageClassificationFourier`'s fixed `max_resolution`.
pub const TRANSFORMERS_FOURIER_RESOLUTION: usize = 224;

/// transformers' `_init_weights` for the latents and every trainable position table:
/// N(0, initializer_range = 0.02) (a zero init would make every latent the same forever).
const INIT: candle_nn::Init = candle_nn::Init::Randn {
    mean: 0.0,
    stdev: 0.02,
};

/// Width of `generate_fourier_features` over `dims` dimensions: the positions, then sin and cos
/// of every band of every dimension.
fn fourier_channels(dims: usize, bands: usize) -> usize {
    dims + 2 * dims * bands
}

/// `torch.linspace(start, end, steps)` in f32, value for value (PyTorch fills the first half
/// from `start` and the second from `end`).
fn linspace(start: f32, end: f32, steps: usize) -> Vec<f32> {
    if steps == 1 {
        return vec![start];
    }
    let step = (end - start) / (steps - 1) as f32;
    let half = steps / 2;
    (0..steps)
        .map(|i| {
            if i < half {
                start + step * i as f32
            } else {
                end - step * (steps - i - 1) as f32
            }
        })
        .collect()
}

/// transformers' `generate_fourier_features` for an `h`×`w` grid at `max_resolution`:
/// [h·w, 2 + 4·bands]: positions (y, x) in [-1, 1], then sin(π·f) and cos(π·f) of every
/// `pos_d · band_k`, dimension-major.
pub fn fourier_features(
    h: usize,
    w: usize,
    max_resolution: (usize, usize),
    bands: usize,
) -> Vec<f32> {
    let (ys, xs) = (linspace(-1.0, 1.0, h), linspace(-1.0, 1.0, w));
    let freqs = [
        linspace(1.0, max_resolution.0 as f32 / 2.0, bands),
        linspace(1.0, max_resolution.1 as f32 / 2.0, bands),
    ];
    let pi = std::f32::consts::PI;
    let width = fourier_channels(2, bands);
    let mut out = Vec::with_capacity(h * w * width);
    for &y in &ys {
        for &x in &xs {
            let pos = [y, x];
            // [d, k] dimension-major
            let f: Vec<f32> = (0..2)
                .flat_map(|d| freqs[d].iter().map(move |&k| pos[d] * k))
                .collect();
            out.extend(pos);
            out.extend(f.iter().map(|v| (pi * v).sin()));
            out.extend(f.iter().map(|v| (pi * v).cos()));
        }
    }
    out
}

#[derive(Clone, Debug)]
enum Preprocessor {
    Learned {
        conv: Conv2d,
        positions: Tensor,
        projection: Linear,
    },
    Fourier,
    Conv {
        conv: Conv2d,
        norm: FrozenBatchNorm2d,
    },
}

/// A Perceiver image classifier (see the module doc).
#[derive(Clone, Debug)]
pub struct PerceiverClassifier {
    config: PerceiverConfig,
    kind: Preprocessing,
    preprocessor: Preprocessor,
    latents: Tensor,
    cross: LatentLayer,
    self_attends: Vec<LatentLayer>,
    query: Tensor,
    decoder: LatentLayer,
    head: Linear,
}

/// A forward's outputs.
#[derive(Debug)]
pub struct PerceiverOutput {
    /// [B, num_labels]
    pub logits: Tensor,
    /// The latents after the encoder: [B, num_latents, d_latents].
    pub latents: Tensor,
}

impl PerceiverConfig {
    fn act(&self) -> Result<Activation> {
        Activation::from_hf(&self.hidden_act)
    }

    /// The cross-attention's query/key width without `qk_channels`.
    fn cross_qk(&self, q_dim: usize, kv_dim: usize) -> Result<usize> {
        match self.cross_attention_shape_for_attention.as_str() {
            "kv" => Ok(kv_dim),
            "q" => Ok(q_dim),
            other => Err(Error::Config(format!(
                "cross_attention_shape_for_attention {other:?}: use kv or q"
            ))),
        }
    }

    /// A cross-attention layer as transformers resolves its widths.
    fn cross_layer(
        &self,
        q_dim: usize,
        kv_dim: usize,
        heads: usize,
        widening: usize,
        qk: Option<usize>,
        v: Option<usize>,
    ) -> Result<LatentConfig> {
        let qk = match qk {
            Some(c) => c,
            None => self.cross_qk(q_dim, kv_dim)?,
        };
        Ok(LatentConfig {
            q_dim,
            kv_dim: Some(kv_dim),
            qk_channels: qk,
            v_channels: v.unwrap_or(qk),
            heads,
            widening,
            query_residual: true,
            act: self.act()?,
            attn_dropout: self.attention_probs_dropout_prob,
            eps: 1e-5,
        })
    }

    /// The Perceiver `tessera train --arch perceiver` trains from scratch on `channels`-channel
    /// images of any size: raw pixels + Fourier features (`PerceiverForImageClassificationFourier`'s
    /// layout, `d_model` = channels + 258, which transformers loads), 64 latents of width 128, one
    /// cross-attention head with 64 query/key channels, 6 self-attention layers of 4 heads
    /// (MLP ×2), no attention dropout, Fourier features for `fourier_resolution`-pixel inputs
    /// (transformers' 224 is stored as no `fourier_max_resolution`, so the config stays theirs).
    pub fn fourier_from_scratch(
        channels: usize,
        id2label: BTreeMap<String, String>,
        fourier_resolution: usize,
    ) -> Self {
        let fourier_max_resolution =
            (fourier_resolution != TRANSFORMERS_FOURIER_RESOLUTION).then_some(fourier_resolution);
        PerceiverConfig {
            num_latents: 64,
            d_latents: 128,
            d_model: channels + fourier_channels(2, BANDS),
            num_blocks: 1,
            num_self_attends_per_block: 6,
            num_self_attention_heads: 4,
            num_cross_attention_heads: 1,
            qk_channels: Some(64),
            v_channels: Some(128),
            self_attention_widening_factor: 2,
            cross_attention_widening_factor: 1,
            attention_probs_dropout_prob: 0.0,
            image_size: 224,
            fourier_max_resolution,
            id2label,
            architectures: vec!["PerceiverForImageClassificationFourier".into()],
            ..Default::default()
        }
    }

    /// The resolution the Fourier features are made for (`fourier_max_resolution`, else
    /// transformers' 224).
    pub fn fourier_resolution(&self) -> usize {
        self.fourier_max_resolution
            .unwrap_or(TRANSFORMERS_FOURIER_RESOLUTION)
    }

    /// The number of labels (`id2label`).
    pub fn num_labels(&self) -> usize {
        self.id2label.len()
    }

    fn validate(&self, kind: Preprocessing) -> Result<()> {
        let bad = |m: String| Err(Error::Config(format!("Perceiver config: {m}")));
        let fits = match kind {
            // Raw pixels: any channel count (transformers reads them as they come).
            Preprocessing::Fourier => self.d_model > fourier_channels(2, BANDS),
            _ => self.d_model == kind.channels(),
        };
        if !fits {
            return bad(format!(
                "d_model is {}, the {kind:?} preprocessing gives {} channels",
                self.d_model,
                kind.channels()
            ));
        }
        if self.num_labels() == 0 {
            return bad("a classifier needs labels (id2label is empty)".into());
        }
        if self.num_latents == 0 || self.d_latents == 0 || self.num_blocks == 0 {
            return bad("num_latents, d_latents and num_blocks must be positive".into());
        }
        match self.fourier_max_resolution {
            Some(0) => return bad("fourier_max_resolution must be positive".into()),
            Some(_) if kind != Preprocessing::Fourier => {
                return bad(format!(
                    "fourier_max_resolution applies to the Fourier preprocessing, not {kind:?}"
                ))
            }
            _ => {}
        }
        if kind == Preprocessing::Learned && self.image_size == 0 {
            return bad("the learned positions need image_size".into());
        }
        Ok(())
    }
}

impl PerceiverClassifier {
    pub fn new(vb: VarBuilder, config: &PerceiverConfig) -> Result<Self> {
        let kind = Preprocessing::of(config)?;
        config.validate(kind)?;
        let c = config;
        let p = vb.pp("perceiver");
        let pre = p.pp("input_preprocessor");
        let preprocessor = match kind {
            Preprocessing::Learned => Preprocessor::Learned {
                conv: Conv2d::new(
                    pre.pp("convnet_1x1"),
                    &ConvSpec {
                        bias: true,
                        ..ConvSpec::same(3, 256, 1, 1)
                    },
                )?,
                positions: pre.pp("position_embeddings").get_with_hints(
                    (c.image_size * c.image_size, 256),
                    "position_embeddings",
                    INIT,
                )?,
                projection: Linear::new(pre.pp("positions_projection"), 256, 256, true)?,
            },
            Preprocessing::Fourier => Preprocessor::Fourier,
            Preprocessing::Conv => Preprocessor::Conv {
                // TF "same" padding of a 7×7 stride-2 kernel: 3 on every side.
                conv: Conv2d::new(pre.pp("convnet").pp("conv"), &ConvSpec::same(3, 64, 7, 2))?,
                norm: FrozenBatchNorm2d::new(pre.pp("convnet").pp("batchnorm"), 64, 1e-5)?,
            },
        };
        let enc = p.pp("encoder");
        let cross = c.cross_layer(
            c.d_latents,
            c.d_model,
            c.num_cross_attention_heads,
            c.cross_attention_widening_factor,
            c.qk_channels,
            c.v_channels,
        )?;
        let cross = LatentConfig {
            query_residual: c.use_query_residual,
            ..cross
        };
        let qk = c.qk_channels.unwrap_or(c.d_latents);
        let v = c.v_channels.unwrap_or(qk);
        let self_cfg = LatentConfig {
            q_dim: c.d_latents,
            kv_dim: None,
            qk_channels: qk,
            v_channels: v,
            heads: c.num_self_attention_heads,
            widening: c.self_attention_widening_factor,
            query_residual: true,
            act: c.act()?,
            attn_dropout: c.attention_probs_dropout_prob,
            eps: 1e-5,
        };
        let self_attends = (0..c.num_self_attends_per_block)
            .map(|i| LatentLayer::new(enc.pp("self_attends").pp(i), &self_cfg))
            .collect::<Result<Vec<_>>>()?;
        let dec = p.pp("decoder").pp("decoder");
        // The classification decoder: one learned query, 1 head, widening 1, query residual.
        let decoder = c.cross_layer(c.d_latents, c.d_latents, 1, 1, None, None)?;
        Ok(PerceiverClassifier {
            config: c.clone(),
            kind,
            preprocessor,
            latents: p.pp("embeddings").get_with_hints(
                (c.num_latents, c.d_latents),
                "latents",
                INIT,
            )?,
            cross: LatentLayer::new(enc.pp("cross_attention"), &cross)?,
            self_attends,
            query: dec.pp("output_position_encodings").get_with_hints(
                (1, c.d_latents),
                "position_embeddings",
                INIT,
            )?,
            decoder: LatentLayer::new(dec.pp("decoding_cross_attention"), &decoder)?,
            head: Linear::new(dec.pp("final_layer"), c.d_latents, c.num_labels(), true)?,
        })
    }

    pub fn preprocessing(&self) -> Preprocessing {
        self.kind
    }

    /// Pixels [B, 3, H, W] → the tokens the latents read: [B, N, d_model].
    pub fn tokens(&self, pixels: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let (b, c, h, w) = pixels.dims4()?;
        let want = match self.kind {
            Preprocessing::Fourier => self.config.d_model - fourier_channels(2, BANDS),
            _ => 3,
        };
        if c != want {
            return Err(Error::Shape(format!(
                "this Perceiver takes {want}-channel images, got {c}"
            )));
        }
        let dev = pixels.device();
        // [B, C, H, W] -> [B, H·W, C]
        let flat = |x: &Tensor| -> Result<Tensor> {
            let (b, c, h, w) = x.dims4()?;
            Ok(x.permute((0, 2, 3, 1))?.reshape((b, h * w, c))?)
        };
        let fourier = |h: usize, w: usize, res: (usize, usize)| -> Result<Tensor> {
            let f = fourier_features(h, w, res, BANDS);
            Ok(
                Tensor::from_vec(f, (1, h * w, fourier_channels(2, BANDS)), dev)?
                    .to_dtype(pixels.dtype())?
                    .broadcast_as((b, h * w, fourier_channels(2, BANDS)))?,
            )
        };
        let out = match &self.preprocessor {
            Preprocessor::Learned {
                conv,
                positions,
                projection,
            } => {
                let n = positions.dim(0)?;
                if h * w != n {
                    return Err(Error::Shape(format!(
                        "this Perceiver's learned positions cover {n} pixels ({s}×{s}); got {h}×{w} (resize to {s}×{s})",
                        s = self.config.image_size
                    )));
                }
                let x = flat(&conv.forward(pixels)?)?;
                let pos = projection
                    .forward(positions, Then::none(), ctx)?
                    .unsqueeze(0)?
                    .broadcast_as((b, n, 256))?;
                Tensor::cat(&[&x, &pos], D::Minus1)?
            }
            Preprocessor::Fourier => {
                let r = self.config.fourier_resolution();
                Tensor::cat(&[&flat(pixels)?, &fourier(h, w, (r, r))?], D::Minus1)?
            }
            Preprocessor::Conv { conv, norm } => {
                let x = norm.forward(&conv.forward(pixels)?, false)?.relu()?;
                if x.dim(2)? < 3 || x.dim(3)? < 3 {
                    return Err(Error::Shape(format!(
                        "a {h}×{w} image is too small for the Perceiver's conv preprocessing"
                    )));
                }
                let x = x.max_pool2d_with_stride(3, 2)?;
                let (_, _, ph, pw) = x.dims4()?;
                Tensor::cat(&[&flat(&x)?, &fourier(ph, pw, (56, 56))?], D::Minus1)?
            }
        };
        Ok(out)
    }

    /// Logits and latents of `pixels` [B, 3, H, W]; attention probabilities go to `ctx`'s trace:
    /// the encoder's cross-attention, every self-attention, then the decoder's.
    pub fn forward(&self, pixels: &Tensor, ctx: &mut Ctx) -> Result<PerceiverOutput> {
        let inputs = self.tokens(pixels, ctx)?;
        let b = inputs.dim(0)?;
        let (n, d) = self.latents.dims2()?;
        // [N, D] -> [B, N, D]
        let latents = self
            .latents
            .unsqueeze(0)?
            .broadcast_as((b, n, d))?
            .contiguous()?;
        let mut z = self.cross.forward(&latents, Some(&inputs), None, ctx)?;
        for _ in 0..self.config.num_blocks {
            for layer in &self.self_attends {
                z = layer.forward(&z, None, None, ctx)?;
            }
        }
        // [1, D] -> [B, 1, D]
        let q = self
            .query
            .unsqueeze(0)?
            .broadcast_as((b, 1, d))?
            .contiguous()?;
        let out = self.decoder.forward(&q, Some(&z), None, ctx)?;
        let logits = self.head.forward(&out, Then::none(), ctx)?.squeeze(1)?;
        Ok(PerceiverOutput { logits, latents: z })
    }

    /// Every layer's linears in `dtype` for inference (see [`Linear::prepare`]).
    pub fn prepare(&mut self, dtype: Precision) -> Result<()> {
        for l in std::iter::once(&mut self.cross)
            .chain(self.self_attends.iter_mut())
            .chain(std::iter::once(&mut self.decoder))
        {
            l.prepare(dtype)?;
        }
        self.head.prepare(dtype)?;
        Ok(())
    }

    /// The label of class `i` (`id2label`).
    pub fn label(&self, i: usize) -> String {
        self.config
            .id2label
            .get(&i.to_string())
            .cloned()
            .unwrap_or_else(|| i.to_string())
    }

    /// The device of the weights.
    pub fn device(&self) -> &Device {
        self.latents.device()
    }
}

impl crate::models::ImageClassifier for PerceiverClassifier {
    fn logits(&self, images: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        Ok(self.forward(images, ctx)?.logits)
    }

    fn label(&self, i: usize) -> String {
        PerceiverClassifier::label(self, i)
    }

    fn num_labels(&self) -> usize {
        self.config.num_labels()
    }

    fn layer_norms(&self) -> Vec<&crate::nn::LayerNorm> {
        std::iter::once(&self.cross)
            .chain(&self.self_attends)
            .chain(std::iter::once(&self.decoder))
            .flat_map(LatentLayer::layer_norms)
            .collect()
    }
}

impl Pretrained for PerceiverClassifier {
    type Config = PerceiverConfig;

    fn from_config(config: &PerceiverConfig, opts: &LoadOptions) -> Result<Loaded<Self>> {
        fresh(opts, |vb| PerceiverClassifier::new(vb, config))
    }

    /// A `PerceiverForImageClassification{Learned,Fourier,ConvProcessing}` checkpoint
    /// (safetensors or `pytorch_model.bin`, as deepmind/vision-perceiver-* ship).
    fn from_checkpoint(ckpt: Checkpoint, opts: &LoadOptions) -> Result<Loaded<Self>> {
        ckpt.expect(crate::models::Family::Perceiver)?;
        let config: PerceiverConfig = ckpt.config()?;
        strict(
            ckpt,
            opts,
            |k| !k.ends_with("num_batches_tracked"),
            |vb| PerceiverClassifier::new(vb, &config),
        )
    }

    fn with_precision(&self, dtype: Precision) -> Result<Self> {
        let mut m = self.clone();
        m.prepare(dtype)?;
        Ok(m)
    }

    fn config(&self) -> &PerceiverConfig {
        &self.config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linspace_is_torchs() {
        // torch.linspace(1, 112, 64)[[0, 31, 32, 63]] and torch.linspace(-1, 1, 7)
        let l = linspace(1.0, 112.0, 64);
        assert_eq!((l[0], l[63]), (1.0, 112.0));
        assert_eq!(linspace(-1.0, 1.0, 1), vec![-1.0]);
        assert_eq!(fourier_features(2, 3, (224, 224), 64).len(), 6 * 258);
    }

    #[test]
    fn a_fourier_resolution_is_positive_and_only_for_fourier() {
        let labels: BTreeMap<_, _> = [("0".to_string(), "a".to_string())].into();
        let ok = PerceiverConfig::fourier_from_scratch(1, labels.clone(), 28);
        assert!(ok.validate(Preprocessing::Fourier).is_ok());
        let zero = PerceiverConfig::fourier_from_scratch(1, labels.clone(), 0);
        assert!(zero.validate(Preprocessing::Fourier).is_err());
        let conv = PerceiverConfig {
            d_model: Preprocessing::Conv.channels(),
            architectures: vec!["PerceiverForImageClassificationConvProcessing".into()],
            ..ok.clone()
        };
        let e = conv.validate(Preprocessing::Conv).unwrap_err();
        assert!(e.to_string().contains("fourier_max_resolution"), "{e}");
        // transformers' own config has no such field: it reads as None (224).
        let json = serde_json::to_value(PerceiverConfig::fourier_from_scratch(1, labels, 224));
        assert!(json.unwrap().get("fourier_max_resolution").is_none());
    }
}
