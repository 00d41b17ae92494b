//! Hugging Face `ViTModel` / `ViTForImageClassification`: pre-norm blocks with HF tensor names,
//! driven by HF's `config.json` (serde defaults equal to `transformers.ViTConfig`'s).
//!
//! Layouts: `ViTModel` checkpoints (e.g. `google/vit-base-patch16-224-in21k`) have no prefix and
//! a `pooler.dense`; `ViTForImageClassification` checkpoints have a `vit.` prefix, no pooler and
//! a `classifier`. [`HfVit::load`] reads either, and makes a fresh head when asked for
//! `num_labels` (as `from_pretrained(..., num_labels=N)`).
use crate::nn::{
    Activation, BlockConfig, BlockNames, Ctx, Encoder, LayerNorm, Linear, LoadReport, ParamStore,
    PatchEmbed, Trace,
};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

fn d768() -> usize {
    768
}
fn d12() -> usize {
    12
}
fn d3072() -> usize {
    3072
}
fn d224() -> usize {
    224
}
fn d16() -> usize {
    16
}
fn d3() -> usize {
    3
}
fn d_eps() -> f64 {
    1e-12
}
fn d_init() -> f64 {
    0.02
}
fn d_true() -> bool {
    true
}
fn d_act() -> String {
    "gelu".into()
}
fn d_model_type() -> String {
    "vit".into()
}

/// `transformers.ViTConfig`, field for field; unknown fields are kept and written back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HfVitConfig {
    #[serde(default = "d_model_type")]
    pub model_type: String,
    #[serde(default = "d768")]
    pub hidden_size: usize,
    #[serde(default = "d12")]
    pub num_hidden_layers: usize,
    #[serde(default = "d12")]
    pub num_attention_heads: usize,
    #[serde(default = "d3072")]
    pub intermediate_size: usize,
    #[serde(default = "d_act")]
    pub hidden_act: String,
    #[serde(default)]
    pub hidden_dropout_prob: f64,
    #[serde(default)]
    pub attention_probs_dropout_prob: f64,
    #[serde(default = "d_init")]
    pub initializer_range: f64,
    #[serde(default = "d_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "d224")]
    pub image_size: usize,
    #[serde(default = "d16")]
    pub patch_size: usize,
    #[serde(default = "d3")]
    pub num_channels: usize,
    #[serde(default = "d_true")]
    pub qkv_bias: bool,
    #[serde(default)]
    pub id2label: BTreeMap<String, String>,
    #[serde(default)]
    pub label2id: BTreeMap<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architectures: Option<Vec<String>>,
    /// Every other field of the file, preserved on save.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Default for HfVitConfig {
    fn default() -> Self {
        serde_json::from_str("{}").expect("defaults deserialize")
    }
}

impl HfVitConfig {
    pub fn activation(&self) -> Result<Activation> {
        match self.hidden_act.as_str() {
            "gelu" => Ok(Activation::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(Activation::GeluTanh),
            "quick_gelu" => Ok(Activation::QuickGelu),
            "relu" => Ok(Activation::Relu),
            a => Err(Error::Config(format!("unsupported hidden_act {a:?}"))),
        }
    }

    pub fn num_labels(&self) -> usize {
        self.id2label.len()
    }

    /// Sets `num_labels` fresh labels (`LABEL_i`) or the given names.
    pub fn set_labels(&mut self, names: &[String]) {
        self.id2label = names
            .iter()
            .enumerate()
            .map(|(i, n)| (i.to_string(), n.clone()))
            .collect();
        self.label2id = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), serde_json::Value::from(i)))
            .collect();
    }

    pub fn label(&self, i: usize) -> String {
        self.id2label
            .get(&i.to_string())
            .cloned()
            .unwrap_or_else(|| format!("LABEL_{i}"))
    }

    pub fn validate(&self) -> Result<()> {
        if self.patch_size == 0 || !self.image_size.is_multiple_of(self.patch_size) {
            return Err(Error::Config(format!(
                "image_size {} is not divisible by patch_size {}",
                self.image_size, self.patch_size
            )));
        }
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(Error::Config(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            )));
        }
        self.activation()?;
        Ok(())
    }

    fn block(&self) -> Result<BlockConfig> {
        Ok(BlockConfig {
            dim: self.hidden_size,
            heads: self.num_attention_heads,
            mlp_dim: self.intermediate_size,
            act: self.activation()?,
            pre_norm: true,
            eps: self.layer_norm_eps,
            qkv_bias: self.qkv_bias,
            dropout: self.hidden_dropout_prob,
            attn_dropout: self.attention_probs_dropout_prob,
        })
    }
}

/// `ViTModel` minus the heads: embeddings, encoder, final LayerNorm, optional pooler.
#[derive(Clone, Debug)]
pub struct HfVitBackbone {
    pub config: HfVitConfig,
    cls_token: Tensor,
    position_embeddings: Tensor,
    patch: PatchEmbed,
    encoder: Encoder,
    layernorm: LayerNorm,
    pooler: Option<Linear>,
}

impl HfVitBackbone {
    pub fn new(vb: VarBuilder, config: &HfVitConfig, pooler: bool) -> Result<Self> {
        config.validate()?;
        let d = config.hidden_size;
        let n = (config.image_size / config.patch_size).pow(2);
        let std = Init::Randn {
            mean: 0.0,
            stdev: config.initializer_range,
        };
        let emb = vb.pp("embeddings");
        Ok(HfVitBackbone {
            cls_token: emb.get_with_hints((1, 1, d), "cls_token", std)?,
            position_embeddings: emb.get_with_hints((1, n + 1, d), "position_embeddings", std)?,
            patch: PatchEmbed::new(
                emb.pp("patch_embeddings.projection"),
                config.num_channels,
                d,
                config.patch_size,
                true,
            )?,
            encoder: Encoder::new(
                vb.pp("encoder.layer"),
                &BlockNames::HF_VIT,
                &config.block()?,
                config.num_hidden_layers,
            )?,
            layernorm: LayerNorm::new(vb.pp("layernorm"), d, config.layer_norm_eps)?,
            pooler: if pooler {
                Some(Linear::with_init(vb.pp("pooler.dense"), d, d, std)?)
            } else {
                None
            },
            config: config.clone(),
        })
    }

    /// Position embeddings for an `h`×`w` input: as stored when it matches the training size,
    /// else the patch grid bicubically resized (HF `interpolate_pos_encoding`).
    fn positions(&self, h: usize, w: usize, interpolate: bool) -> Result<Tensor> {
        let p = self.config.patch_size;
        let (gh, gw) = (h / p, w / p);
        let n = self.position_embeddings.dim(1)? - 1;
        if gh * gw == n && h == w {
            return Ok(self.position_embeddings.clone());
        }
        if !interpolate {
            return Err(Error::Shape(format!(
                "input {h}x{w} does not match the model's image_size {} (use interpolate_pos_encoding)",
                self.config.image_size
            )));
        }
        let d = self.config.hidden_size;
        let side = (n as f64).sqrt() as usize;
        let cls = self.position_embeddings.narrow(1, 0, 1)?;
        // [1, n, D] -> [D, side, side] -> bicubic -> [gh*gw, D]
        let grid = self
            .position_embeddings
            .narrow(1, 1, n)?
            .squeeze(0)?
            .t()?
            .contiguous()?;
        let src = grid.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        let mut out = Vec::with_capacity(d * gh * gw);
        for plane in &src {
            out.extend(crate::data::resize_bicubic(plane, side, side, gh, gw));
        }
        let patch = Tensor::from_vec(out, (d, gh * gw), self.position_embeddings.device())?
            .t()?
            .unsqueeze(0)?
            .to_dtype(self.position_embeddings.dtype())?;
        Ok(Tensor::cat(&[&cls, &patch], 1)?)
    }

    /// Pixel values [B, C, H, W] -> (last hidden state [B, 1+Np, D] after `layernorm`, pooler
    /// output [B, D] when the model has a pooler).
    pub fn forward(
        &self,
        x: &Tensor,
        interpolate: bool,
        ctx: &mut Ctx,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let (b, c, h, w) = x.dims4()?;
        if c != self.config.num_channels {
            return Err(Error::Shape(format!(
                "the model takes {} channels, got {c}",
                self.config.num_channels
            )));
        }
        let pos = self.positions(h, w, interpolate)?;
        let x = self.patch.forward(x)?; // [B, Np, D]
        let cls = self.cls_token.expand((b, 1, self.config.hidden_size))?;
        let x = Tensor::cat(&[&cls, &x], 1)?.broadcast_add(&pos)?;
        let x = ctx.dropout(&x, self.config.hidden_dropout_prob)?;
        let x = self.encoder.forward(&x, None, ctx)?;
        let x = self.layernorm.forward(&x)?;
        let pooled = match &self.pooler {
            Some(p) => Some(p.forward(&x.narrow(1, 0, 1)?.squeeze(1)?)?.tanh()?),
            None => None,
        };
        Ok((x, pooled))
    }
}

/// Which head a loaded model has.
#[derive(Clone, Debug)]
pub enum HfVit {
    /// `ViTModel`: hidden states and pooler output.
    Model(HfVitBackbone),
    /// `ViTForImageClassification`: logits from the class token.
    Classifier {
        vit: HfVitBackbone,
        classifier: Linear,
    },
}

/// A loaded HF ViT with its parameter store and what the load found.
pub struct Loaded {
    pub model: HfVit,
    pub store: ParamStore,
    pub report: LoadReport,
    /// Unexpected tensors that are harmless (a pooler when classifying).
    pub ignored: Vec<String>,
}

impl HfVit {
    pub fn config(&self) -> &HfVitConfig {
        match self {
            HfVit::Model(b) => &b.config,
            HfVit::Classifier { vit, .. } => &vit.config,
        }
    }

    /// Names the classes (HF's `id2label`/`label2id`); the count must match the head.
    pub fn set_labels(&mut self, names: &[String]) {
        match self {
            HfVit::Model(b) => b.config.set_labels(names),
            HfVit::Classifier { vit, .. } => vit.config.set_labels(names),
        }
    }

    pub fn backbone(&self) -> &HfVitBackbone {
        match self {
            HfVit::Model(b) => b,
            HfVit::Classifier { vit, .. } => vit,
        }
    }

    /// Builds a classifier (`vit.` prefix, `classifier` head, no pooler).
    pub fn classifier(vb: VarBuilder, config: &HfVitConfig) -> Result<Self> {
        let n = config.num_labels();
        if n == 0 {
            return Err(Error::Config(
                "a classifier needs labels (id2label is empty; pass num_labels)".into(),
            ));
        }
        let vit = HfVitBackbone::new(vb.pp("vit"), config, false)?;
        let std = Init::Randn {
            mean: 0.0,
            stdev: config.initializer_range,
        };
        let classifier = Linear::with_init(vb.pp("classifier"), config.hidden_size, n, std)?;
        Ok(HfVit::Classifier { vit, classifier })
    }

    /// Builds a `ViTModel` (no prefix, with pooler).
    pub fn model(vb: VarBuilder, config: &HfVitConfig) -> Result<Self> {
        Ok(HfVit::Model(HfVitBackbone::new(vb, config, true)?))
    }

    /// Loads `model.safetensors` (or `pytorch_model.bin`) from a directory with `config.json`.
    /// `classify`: build a classifier (fresh head when the
    /// checkpoint has none, or when `num_labels` differs, as HF's `ignore_mismatched_sizes`).
    /// Missing or mis-shaped backbone tensors are an error listing every name.
    pub fn load(
        dir: &Path,
        classify: bool,
        num_labels: Option<usize>,
        trainable: bool,
        seed: u64,
        device: &Device,
    ) -> Result<Loaded> {
        Self::load_with(dir, classify, num_labels, trainable, seed, device, vec![])
    }

    /// [`HfVit::load`] with parameters under `frozen` prefixes kept out of training.
    #[allow(clippy::too_many_arguments)]
    pub fn load_with(
        dir: &Path,
        classify: bool,
        num_labels: Option<usize>,
        trainable: bool,
        seed: u64,
        device: &Device,
        frozen: Vec<String>,
    ) -> Result<Loaded> {
        let mut config: HfVitConfig = crate::util::read_json(&dir.join("config.json"))?;
        let (tensors, weights) = crate::nn::store::load_weights(dir, device)?;
        let prefixed = tensors.keys().any(|k| k.starts_with("vit."));
        // Re-key so the checkpoint matches the layout being built.
        let tensors: std::collections::HashMap<String, Tensor> = match (classify, prefixed) {
            (true, false) => tensors
                .into_iter()
                .map(|(k, v)| (format!("vit.{k}"), v))
                .collect(),
            (false, true) => tensors
                .into_iter()
                .map(|(k, v)| (k.strip_prefix("vit.").map(str::to_string).unwrap_or(k), v))
                .collect(),
            _ => tensors,
        };
        let mut fresh_head = false;
        if let Some(n) = num_labels {
            if n != config.num_labels() {
                config.set_labels(&(0..n).map(|i| format!("LABEL_{i}")).collect::<Vec<_>>());
                fresh_head = true;
            }
        }
        let tensors = if fresh_head {
            tensors
                .into_iter()
                .filter(|(k, _)| !k.starts_with("classifier."))
                .collect()
        } else {
            tensors
        };
        let store = ParamStore::with_source(tensors, seed, trainable, device).with_frozen(frozen);
        let vb = store.var_builder(DType::F32);
        let model = if classify {
            HfVit::classifier(vb, &config)?
        } else {
            HfVit::model(vb, &config)?
        };
        let mut report = store.report();
        // A pooler in a checkpoint loaded as a classifier is unused by design (HF warns, too).
        let (ignored, unexpected): (Vec<String>, Vec<String>) = report
            .unexpected
            .drain(..)
            .partition(|k| k.contains("pooler.") || k.starts_with("classifier."));
        report.unexpected = unexpected;
        // A new head (or a `ViTModel` pooler missing from a classifier checkpoint) is expected.
        let missing_fatal: Vec<&String> = report
            .missing
            .iter()
            .filter(|k| {
                !((k.starts_with("classifier.") && classify)
                    || (k.starts_with("pooler.") && prefixed))
            })
            .collect();
        if !missing_fatal.is_empty()
            || !report.mismatched.is_empty()
            || !report.unexpected.is_empty()
        {
            return Err(Error::Checkpoint {
                path: weights,
                report: report.to_string(),
            });
        }
        Ok(Loaded {
            model,
            store,
            report,
            ignored,
        })
    }

    /// Pixel values [B, C, H, W] -> (output, trace-free). For a classifier: logits [B, labels];
    /// for a model: the last hidden state [B, 1+Np, D] (pooler via [`HfVit::forward_model`]).
    pub fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        match self {
            HfVit::Model(b) => Ok(b.forward(x, false, ctx)?.0),
            HfVit::Classifier { vit, classifier } => {
                let (h, _) = vit.forward(x, false, ctx)?;
                Ok(classifier.forward(&h.narrow(1, 0, 1)?.squeeze(1)?)?)
            }
        }
    }

    /// A classifier with `num_labels` labels and random weights from `config` (seeded).
    pub fn from_config(
        config: &HfVitConfig,
        num_labels: usize,
        seed: u64,
        device: &Device,
    ) -> Result<Loaded> {
        let mut config = config.clone();
        if config.num_labels() != num_labels {
            config.set_labels(
                &(0..num_labels)
                    .map(|i| format!("LABEL_{i}"))
                    .collect::<Vec<_>>(),
            );
        }
        let store = ParamStore::fresh(seed, true, device);
        let model = HfVit::classifier(store.var_builder(DType::F32), &config)?;
        Ok(Loaded {
            model,
            store,
            report: LoadReport::default(),
            ignored: vec![],
        })
    }

    /// Saves an HF checkpoint `ViTForImageClassification.from_pretrained(dir)` loads:
    /// `model.safetensors` (HF names, `format: pt`), `config.json` (with `id2label`,
    /// `label2id`, `architectures`) and, when given, `preprocessor_config.json`.
    pub fn save(
        &self,
        dir: &Path,
        store: &ParamStore,
        processor: Option<&crate::image::ProcessorConfig>,
    ) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut cfg = self.config().clone();
        cfg.architectures = Some(vec![match self {
            HfVit::Model(_) => "ViTModel".into(),
            HfVit::Classifier { .. } => "ViTForImageClassification".into(),
        }]);
        store.save(&dir.join("model.safetensors"))?;
        crate::util::write_json(&dir.join("config.json"), &cfg)?;
        if let Some(p) = processor {
            crate::util::write_json(&dir.join("preprocessor_config.json"), p)?;
        }
        Ok(())
    }

    /// The model computing in `dtype` for inference: `F32` as loaded; `BF16` packs every
    /// encoder linear once for the AVX512_BF16 kernel (fp32 accumulation; LayerNorm, softmax
    /// and activations stay fp32).
    pub fn with_dtype(&self, dtype: DType) -> Result<Self> {
        let mut m = self.clone();
        let vit = match &mut m {
            HfVit::Model(b) => b,
            HfVit::Classifier { vit, .. } => vit,
        };
        vit.encoder.prepare(dtype)?;
        Ok(m)
    }

    /// Eval forward with per-layer attentions and hidden states.
    pub fn forward_traced(&self, x: &Tensor) -> Result<(Tensor, Trace)> {
        let mut trace = Trace::default();
        let y = self.forward(x, &mut Ctx::eval().with_trace(&mut trace))?;
        Ok((y, trace))
    }
}

impl crate::train::ImageClassifier for HfVit {
    fn logits(&self, images: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        match self {
            HfVit::Classifier { .. } => self.forward(images, ctx),
            HfVit::Model(_) => Err(Error::Config("a ViTModel has no classifier head".into())),
        }
    }
}

/// The explicit name table from the seed ViT (`norm_first=True` layout) to HF's
/// `ViTForImageClassification`; PyTorch's fused `in_proj` splits into query/key/value.
/// Returns the HF tensors and config (`layer_norm_eps` = the seed's, so outputs are identical).
pub fn seed_to_hf(
    seed: &crate::models::vit::VitConfig,
    tensors: &[(String, Tensor)],
) -> Result<(Vec<(String, Tensor)>, HfVitConfig)> {
    if !seed.pre_norm {
        return Err(Error::Config(
            "only a pre-norm (norm_first) seed ViT has an HF ViT equivalent; this one is post-norm"
                .into(),
        ));
    }
    let d = seed.hidden_size;
    let mut out = vec![];
    for (name, t) in tensors {
        let mut push = |n: String, t: Tensor| out.push((n, t));
        let rest = name.as_str();
        match rest {
            "cls_token" => push("vit.embeddings.cls_token".into(), t.clone()),
            "pos_embed" => push("vit.embeddings.position_embeddings".into(), t.clone()),
            "norm.weight" => push("vit.layernorm.weight".into(), t.clone()),
            "norm.bias" => push("vit.layernorm.bias".into(), t.clone()),
            "head.weight" => push("classifier.weight".into(), t.clone()),
            "head.bias" => push("classifier.bias".into(), t.clone()),
            _ if rest.starts_with("patch_embed.conv2d.") => push(
                rest.replace(
                    "patch_embed.conv2d.",
                    "vit.embeddings.patch_embeddings.projection.",
                ),
                t.clone(),
            ),
            _ if rest.starts_with("encoder.layers.") => {
                let tail = &rest["encoder.layers.".len()..];
                let (i, field) = tail
                    .split_once('.')
                    .ok_or_else(|| Error::Config(format!("unexpected tensor {name}")))?;
                let p = format!("vit.encoder.layer.{i}.");
                match field {
                    "self_attn.in_proj_weight" | "self_attn.in_proj_bias" => {
                        let kind = if field.ends_with("weight") {
                            "weight"
                        } else {
                            "bias"
                        };
                        for (k, part) in ["query", "key", "value"].iter().enumerate() {
                            push(
                                format!("{p}attention.attention.{part}.{kind}"),
                                t.narrow(0, k * d, d)?.contiguous()?,
                            );
                        }
                    }
                    "self_attn.out_proj.weight" => {
                        push(format!("{p}attention.output.dense.weight"), t.clone())
                    }
                    "self_attn.out_proj.bias" => {
                        push(format!("{p}attention.output.dense.bias"), t.clone())
                    }
                    "linear1.weight" | "linear1.bias" => {
                        push(format!("{p}intermediate.dense.{}", &field[8..]), t.clone())
                    }
                    "linear2.weight" | "linear2.bias" => {
                        push(format!("{p}output.dense.{}", &field[8..]), t.clone())
                    }
                    "norm1.weight" | "norm1.bias" => {
                        push(format!("{p}layernorm_before.{}", &field[6..]), t.clone())
                    }
                    "norm2.weight" | "norm2.bias" => {
                        push(format!("{p}layernorm_after.{}", &field[6..]), t.clone())
                    }
                    _ => return Err(Error::Config(format!("unexpected tensor {name}"))),
                }
            }
            _ => return Err(Error::Config(format!("unexpected tensor {name}"))),
        }
    }
    let mut cfg = HfVitConfig {
        hidden_size: d,
        num_hidden_layers: seed.num_hidden_layers,
        num_attention_heads: seed.num_attention_heads,
        intermediate_size: seed.intermediate_size,
        hidden_act: match seed.hidden_act {
            Activation::Gelu => "gelu",
            Activation::GeluTanh => "gelu_pytorch_tanh",
            Activation::QuickGelu => "quick_gelu",
            Activation::Relu => "relu",
        }
        .into(),
        layer_norm_eps: seed.layer_norm_eps,
        image_size: seed.image_size,
        patch_size: seed.patch_size,
        num_channels: seed.num_channels,
        architectures: Some(vec!["ViTForImageClassification".into()]),
        ..HfVitConfig::default()
    };
    let names: Vec<String> = (0..seed.num_classes).map(|i| seed.label(i)).collect();
    cfg.set_labels(&names);
    Ok((out, cfg))
}
