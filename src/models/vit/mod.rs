//! The seed's Vision Transformer, exactly the PyTorch class of the classic recipe:
//! `PatchEmbedding` (Conv2d kernel = stride = patch) -> class token + learned positions ->
//! dropout -> `nn.TransformerEncoder` of `nn.TransformerEncoderLayer(batch_first=True,
//! activation="gelu")` (post-norm; `norm_first=True` gives the pre-norm timm/HF variant) ->
//! `LayerNorm` of the class token -> `Linear` head. Tensor names are PyTorch's own.
//!
//! [`hf`] is Hugging Face's ViT layout from the same blocks.
pub mod hf;
use super::checks;
use super::load::{fresh, strict, Checkpoint, LoadOptions, Loaded, Pretrained};
use crate::nn::Precision;
use crate::nn::{
    check_heads, check_patch_grid, Activation, BlockConfig, BlockNames, Ctx, Encoder, LayerNorm,
    Linear, PatchEmbed, Then, Trace,
};
use crate::{Error, Result};
use candle_core::{Tensor, D};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The seed ViT's hyper-parameters; serialised as the checkpoint's `config.json`.
/// Defaults are the seed's: img 224, patch 16, 3 channels, 1000 classes, dim 768, depth 12,
/// heads 12, ff 3072, dropout 0.1, post-norm.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VitConfig {
    pub model_type: String,
    #[serde(alias = "img_size")]
    pub image_size: usize,
    pub patch_size: usize,
    #[serde(alias = "in_channels")]
    pub num_channels: usize,
    pub num_classes: usize,
    #[serde(alias = "embed_dim")]
    pub hidden_size: usize,
    #[serde(alias = "depth")]
    pub num_hidden_layers: usize,
    #[serde(alias = "num_heads")]
    pub num_attention_heads: usize,
    #[serde(alias = "mlp_dim")]
    pub intermediate_size: usize,
    pub dropout: f64,
    /// false: PyTorch's post-norm `TransformerEncoderLayer` (the seed); true: `norm_first`.
    #[serde(alias = "norm_first")]
    pub pre_norm: bool,
    pub layer_norm_eps: f64,
    pub hidden_act: Activation,
    /// Class index (as a string, HF-style) to name.
    pub id2label: BTreeMap<String, String>,
    /// Input normalisation applied after scaling pixels to [0, 1].
    pub image_mean: Vec<f32>,
    pub image_std: Vec<f32>,
}

impl Default for VitConfig {
    fn default() -> Self {
        VitConfig {
            model_type: "tessera-vit".into(),
            image_size: 224,
            patch_size: 16,
            num_channels: 3,
            num_classes: 1000,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            dropout: 0.1,
            pre_norm: false,
            layer_norm_eps: 1e-5,
            hidden_act: Activation::Gelu,
            id2label: BTreeMap::new(),
            image_mean: vec![0.5; 3],
            image_std: vec![0.5; 3],
        }
    }
}

/// One size table (big_vision's `decode_variant`): width, depth, heads, mlp.
const SIZES: &[(&str, usize, usize, usize, usize)] = &[
    ("Ti", 192, 12, 3, 768),
    ("S", 384, 12, 6, 1536),
    ("M", 512, 12, 8, 2048),
    ("B", 768, 12, 12, 3072),
    ("L", 1024, 24, 16, 4096),
    ("H", 1280, 32, 16, 5120),
];

/// Small presets for small inputs: name, image, patch, channels, width, depth, heads, mlp.
#[allow(clippy::type_complexity)]
const SMALL: &[(&str, usize, usize, usize, usize, usize, usize, usize, &str)] = &[
    // 8x8 digits: 2x2 patches give 16 tokens.
    (
        "digits",
        8,
        2,
        1,
        64,
        4,
        4,
        128,
        "8x8 grayscale (scikit-learn digits)",
    ),
    // 28x28 (MNIST, Fashion-MNIST): 4x4 patches give 49 tokens.
    (
        "mnist",
        28,
        4,
        1,
        128,
        6,
        4,
        256,
        "28x28 grayscale (Fashion-MNIST)",
    ),
    // 28x28 with 7x7 patches: 16 tokens, the fast variant.
    (
        "mnist-p7",
        28,
        7,
        1,
        128,
        6,
        4,
        256,
        "28x28 grayscale, 7x7 patches",
    ),
    // The classic small ViT for 32x32 colour images (CIFAR-like).
    (
        "cifar",
        32,
        4,
        3,
        192,
        6,
        3,
        768,
        "32x32 colour, the classic small ViT",
    ),
];

impl VitConfig {
    /// A preset by name: `Ti/16`, `S/16`, `B/16`, `L/16`, any `<size>/<patch>`, or a small preset
    /// (`digits`, `mnist`, `mnist-p7`, `cifar`). Unknown names list the known ones.
    pub fn preset(name: &str) -> Result<Self> {
        let mut cfg = VitConfig::default();
        if let Some(&(_, img, patch, ch, dim, depth, heads, mlp, _)) =
            SMALL.iter().find(|s| s.0 == name)
        {
            cfg.image_size = img;
            cfg.patch_size = patch;
            cfg.num_channels = ch;
            cfg.hidden_size = dim;
            cfg.num_hidden_layers = depth;
            cfg.num_attention_heads = heads;
            cfg.intermediate_size = mlp;
            cfg.num_classes = 10;
            cfg.image_mean = vec![0.5; ch];
            cfg.image_std = vec![0.5; ch];
            return Ok(cfg);
        }
        let parsed = name.split_once('/').and_then(|(size, patch)| {
            let row = SIZES.iter().find(|s| s.0 == size)?;
            Some((row, patch.parse::<usize>().ok().filter(|p| *p > 0)?))
        });
        match parsed {
            Some((&(_, dim, depth, heads, mlp), patch)) => {
                cfg.hidden_size = dim;
                cfg.num_hidden_layers = depth;
                cfg.num_attention_heads = heads;
                cfg.intermediate_size = mlp;
                cfg.patch_size = patch;
                Ok(cfg)
            }
            None => Err(Error::Config(format!(
                "unknown preset {name:?}; known: {}, {}",
                SIZES
                    .iter()
                    .map(|s| format!("{}/16", s.0))
                    .collect::<Vec<_>>()
                    .join(", "),
                SMALL
                    .iter()
                    .map(|s| format!("{} ({})", s.0, s.8))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// Checks what the model cannot be built with, with a message naming the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        checks::sizes(&[
            ("image_size", self.image_size),
            ("patch_size", self.patch_size),
            ("num_channels", self.num_channels),
            ("num_classes", self.num_classes),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
        ])?;
        check_patch_grid(self.image_size, self.patch_size)?;
        check_heads(self.hidden_size, self.num_attention_heads)?;
        checks::non_negative(&[("layer_norm_eps", self.layer_norm_eps)])?;
        if self.image_mean.len() != self.num_channels || self.image_std.len() != self.num_channels {
            return bad(format!(
                "image_mean/image_std need {} values (one per channel)",
                self.num_channels
            ));
        }
        if let Some(s) = self.image_std.iter().find(|s| !s.is_finite() || **s == 0.0) {
            return bad(format!("image_std has {s} (must be finite and non-zero)"));
        }
        if let Some(m) = self.image_mean.iter().find(|m| !m.is_finite()) {
            return bad(format!("image_mean has a non-finite value {m}"));
        }
        checks::probabilities(&[("dropout", self.dropout)])
    }

    pub fn num_patches(&self) -> usize {
        (self.image_size / self.patch_size).pow(2)
    }

    pub fn label(&self, i: usize) -> String {
        self.id2label
            .get(&i.to_string())
            .cloned()
            .unwrap_or_else(|| format!("LABEL_{i}"))
    }

    /// Forward FLOPs per image (matmuls only, 2 per multiply-add), as nanoGPT's `estimate_mfu`.
    pub fn flops_per_image(&self) -> f64 {
        let n = (self.num_patches() + 1) as f64;
        let d = self.hidden_size as f64;
        let m = self.intermediate_size as f64;
        let pdim = (self.num_channels * self.patch_size * self.patch_size) as f64;
        let patch = 2.0 * self.num_patches() as f64 * pdim * d;
        // qkv + out proj + mlp, plus scores and probs@v
        let layer = 2.0 * n * (4.0 * d * d + 2.0 * d * m) + 2.0 * 2.0 * n * n * d;
        patch + self.num_hidden_layers as f64 * layer + 2.0 * d * self.num_classes as f64
    }
}

/// The seed ViT.
#[derive(Clone, Debug)]
pub struct VisionTransformer {
    pub config: VitConfig,
    patch_embed: PatchEmbed,
    cls_token: Tensor,
    pos_embed: Tensor,
    encoder: Encoder,
    norm: LayerNorm,
    head: Linear,
}

impl VisionTransformer {
    pub fn new(vb: VarBuilder, config: &VitConfig) -> Result<Self> {
        config.validate()?;
        let d = config.hidden_size;
        // `nn.TransformerEncoderLayer(dropout=p)`: one rate for the attention probabilities,
        // after the activation and on both residual branches.
        let block = BlockConfig {
            dim: d,
            heads: config.num_attention_heads,
            mlp_dim: config.intermediate_size,
            act: config.hidden_act,
            pre_norm: config.pre_norm,
            eps: config.layer_norm_eps,
            qkv_bias: true,
            dropout: config.dropout,
            mlp_dropout: config.dropout,
            attn_dropout: config.dropout,
        };
        // Fresh class token and positions start at N(0, 0.02) (timm), not the seed's zeros:
        // zeros make every position alike at the start and slow small-data training.
        let small = Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        };
        Ok(VisionTransformer {
            patch_embed: PatchEmbed::new(
                vb.pp("patch_embed.conv2d"),
                config.num_channels,
                d,
                config.patch_size,
                true,
            )?,
            cls_token: vb.get_with_hints((1, 1, d), "cls_token", small)?,
            pos_embed: vb.get_with_hints((1, config.num_patches() + 1, d), "pos_embed", small)?,
            encoder: Encoder::new(
                vb.pp("encoder.layers"),
                &BlockNames::TORCH,
                &block,
                config.num_hidden_layers,
            )?,
            norm: LayerNorm::new(vb.pp("norm"), d, config.layer_norm_eps)?,
            head: Linear::new(vb.pp("head"), d, config.num_classes, true)?,
            config: config.clone(),
        })
    }

    fn check_input(&self, x: &Tensor) -> Result<()> {
        let c = &self.config;
        match x.dims() {
            [_, ch, h, w] if *ch == c.num_channels && *h == c.image_size && *w == c.image_size => {
                Ok(())
            }
            dims => Err(Error::Shape(format!(
                "the model takes images of shape [batch, {}, {}, {}], got {dims:?}",
                c.num_channels, c.image_size, c.image_size
            ))),
        }
    }

    /// Normalised images [B, C, H, W] -> final hidden states [B, 1 + Np, D] (before `norm`).
    pub fn features(&self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        self.check_input(x)?;
        let x = self.patch_embed.forward(x)?; // [B, Np, D]
        let b = x.dim(0)?;
        let cls = self.cls_token.expand((b, 1, self.config.hidden_size))?;
        let x = Tensor::cat(&[&cls, &x], 1)?.broadcast_add(&self.pos_embed)?; // [B, 1 + Np, D]
        let x = ctx.dropout(&x, self.config.dropout)?;
        Ok(self.encoder.forward(&x, None, ctx)?)
    }

    /// Normalised images [B, C, H, W] -> logits [B, classes].
    pub fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let h = self.features(x, ctx)?;
        let cls = h.narrow(1, 0, 1)?.squeeze(1)?; // [B, D]
        Ok(self
            .head
            .forward(&self.norm.forward(&cls)?, Then::none(), ctx)?)
    }

    /// Eval-mode forward that also returns per-layer attentions and hidden states.
    pub fn forward_traced(&self, x: &Tensor) -> Result<(Tensor, Trace)> {
        let mut trace = Trace::default();
        let logits = self.forward(x, &mut Ctx::eval().with_trace(&mut trace))?;
        Ok((logits, trace))
    }

    /// Probabilities [B, classes] in eval mode.
    pub fn predict_proba(&self, x: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::softmax(
            &self.forward(x, &mut Ctx::inference())?,
            D::Minus1,
        )?)
    }
}

impl Pretrained for VisionTransformer {
    type Config = VitConfig;
    const EXTRA_FILES: &'static [&'static str] = &[];

    fn from_config(config: &VitConfig, opts: &LoadOptions) -> Result<Loaded<Self>> {
        fresh(opts, |vb| VisionTransformer::new(vb, config))
    }

    /// A tessera run (or its `best/`, `checkpoint-N/`): every tensor must match by name and
    /// shape.
    fn from_checkpoint(ckpt: Checkpoint, opts: &LoadOptions) -> Result<Loaded<Self>> {
        ckpt.expect(super::Family::SeedVit)?;
        let config: VitConfig = ckpt.config()?;
        strict(
            ckpt,
            opts,
            |_| true,
            |vb| VisionTransformer::new(vb, &config),
        )
    }

    /// Encoder linears packed for `dtype` (see [`Pretrained::with_dtype`]).
    fn with_precision(&self, dtype: Precision) -> Result<Self> {
        let mut m = self.clone();
        m.encoder.prepare(dtype)?;
        Ok(m)
    }

    fn config(&self) -> &VitConfig {
        &self.config
    }
}

impl super::ImageClassifier for VisionTransformer {
    fn logits(&self, images: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        self.forward(images, ctx)
    }

    fn label(&self, i: usize) -> String {
        self.config.label(i)
    }

    fn num_labels(&self) -> usize {
        self.config.num_classes
    }

    fn layer_norms(&self) -> Vec<&LayerNorm> {
        let mut v = self.encoder.layer_norms();
        v.push(&self.norm);
        v
    }
}
