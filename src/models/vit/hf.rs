//! Hugging Face `ViTModel` / `ViTForImageClassification`: pre-norm blocks with HF tensor names,
//! driven by HF's `config.json` (defaults equal to `transformers.ViTConfig`'s).
//!
//! Layouts: `ViTModel` checkpoints (e.g. `google/vit-base-patch16-224-in21k`) have no prefix and
//! a `pooler.dense`; `ViTForImageClassification` checkpoints have a `vit.` prefix, no pooler and
//! a `classifier`. [`HfVit`]'s [`Pretrained::load`] reads either, as the layout
//! [`LoadOptions::task`] asks for, and makes a fresh head for [`LoadOptions::num_labels`] (as
//! `from_pretrained(..., num_labels=N)`).
use crate::models::checks;
use crate::models::load::{finish, fresh, Checkpoint, LoadOptions, Loaded, Pretrained, Task};
use crate::nn::Precision;
use crate::nn::{
    check_heads, check_patch_grid, Activation, BlockConfig, BlockNames, Ctx, Encoder, LayerNorm,
    Linear, PatchEmbed, Then, Trace,
};
use crate::{Error, Result};
use candle_core::{DType, Tensor};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// `transformers.ViTConfig`, field for field; unknown fields are kept and written back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HfVitConfig {
    pub model_type: String,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: Activation,
    pub hidden_dropout_prob: f64,
    pub attention_probs_dropout_prob: f64,
    pub initializer_range: f64,
    pub layer_norm_eps: f64,
    pub image_size: usize,
    pub patch_size: usize,
    pub num_channels: usize,
    pub qkv_bias: bool,
    pub id2label: BTreeMap<String, String>,
    pub label2id: BTreeMap<String, serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub architectures: Option<Vec<String>>,
    /// Every other field of the file, preserved on save.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Default for HfVitConfig {
    /// `transformers.ViTConfig()`'s values.
    fn default() -> Self {
        HfVitConfig {
            model_type: "vit".into(),
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            hidden_act: Activation::Gelu,
            hidden_dropout_prob: 0.0,
            attention_probs_dropout_prob: 0.0,
            initializer_range: 0.02,
            layer_norm_eps: 1e-12,
            image_size: 224,
            patch_size: 16,
            num_channels: 3,
            qkv_bias: true,
            id2label: BTreeMap::new(),
            label2id: BTreeMap::new(),
            architectures: None,
            extra: serde_json::Map::new(),
        }
    }
}

impl HfVitConfig {
    pub fn num_labels(&self) -> usize {
        self.id2label.len()
    }

    /// Names the classes (`id2label` and `label2id`).
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

    /// `n` fresh labels `LABEL_0` … (transformers' names for an unnamed head).
    pub fn set_num_labels(&mut self, n: usize) {
        self.set_labels(&(0..n).map(|i| format!("LABEL_{i}")).collect::<Vec<_>>());
    }

    pub fn label(&self, i: usize) -> String {
        self.id2label
            .get(&i.to_string())
            .cloned()
            .unwrap_or_else(|| format!("LABEL_{i}"))
    }

    pub fn validate(&self) -> Result<()> {
        checks::sizes(&[
            ("image_size", self.image_size),
            ("patch_size", self.patch_size),
            ("num_channels", self.num_channels),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
        ])?;
        check_patch_grid(self.image_size, self.patch_size)?;
        check_heads(self.hidden_size, self.num_attention_heads)?;
        checks::non_negative(&[
            ("layer_norm_eps", self.layer_norm_eps),
            ("initializer_range", self.initializer_range),
        ])?;
        checks::probabilities(&[
            ("hidden_dropout_prob", self.hidden_dropout_prob),
            (
                "attention_probs_dropout_prob",
                self.attention_probs_dropout_prob,
            ),
        ])
    }

    fn block(&self) -> BlockConfig {
        // HF ViT: dropout on the attention probabilities, on `ViTSelfOutput` and `ViTOutput`
        // (before each residual add); `ViTIntermediate` has none after the activation.
        BlockConfig {
            dim: self.hidden_size,
            heads: self.num_attention_heads,
            mlp_dim: self.intermediate_size,
            act: self.hidden_act,
            pre_norm: true,
            eps: self.layer_norm_eps,
            qkv_bias: self.qkv_bias,
            dropout: self.hidden_dropout_prob,
            mlp_dropout: 0.0,
            attn_dropout: self.attention_probs_dropout_prob,
        }
    }

    /// Whether `architectures` names the classifier (`None`: it does not say).
    fn saved_as_classifier(&self) -> Option<bool> {
        let a = self.architectures.as_ref()?.first()?;
        Some(a.ends_with("ForImageClassification"))
    }
}

/// Position embeddings for inputs of another size than the model's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Positions {
    /// The stored grid; another input size is an error (transformers' default).
    #[default]
    AsTrained,
    /// The grid bicubically resized to the input (transformers' `interpolate_pos_encoding`).
    Interpolate,
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
    /// `pooler`: the `ViTModel` layout's `pooler.dense` (classifiers have none).
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
                &config.block(),
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
    fn positions(&self, h: usize, w: usize, positions: Positions) -> Result<Tensor> {
        let p = self.config.patch_size;
        let (gh, gw) = (h / p, w / p);
        let n = self.position_embeddings.dim(1)? - 1;
        if gh * gw == n && h == w {
            return Ok(self.position_embeddings.clone());
        }
        if positions == Positions::AsTrained {
            return Err(Error::Shape(format!(
                "input {h}x{w} does not match the model's image_size {} (use interpolate_pos_encoding: Positions::Interpolate)",
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
            out.extend(crate::nn::interpolate::bicubic(plane, side, side, gh, gw));
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
        positions: Positions,
        ctx: &mut Ctx,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let (b, c, h, w) = x.dims4()?;
        if c != self.config.num_channels {
            return Err(Error::Shape(format!(
                "the model takes {} channels, got {c}",
                self.config.num_channels
            )));
        }
        let pos = self.positions(h, w, positions)?;
        let x = self.patch.forward(x)?; // [B, Np, D]
        let cls = self.cls_token.expand((b, 1, self.config.hidden_size))?;
        let x = Tensor::cat(&[&cls, &x], 1)?.broadcast_add(&pos)?;
        let x = ctx.dropout(&x, self.config.hidden_dropout_prob)?;
        let x = self.encoder.forward(&x, None, ctx)?;
        let x = self.layernorm.forward(&x)?;
        let pooled = match &self.pooler {
            Some(p) => Some(
                p.forward(&x.narrow(1, 0, 1)?.squeeze(1)?, Then::none(), ctx)?
                    .tanh()?,
            ),
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

impl HfVit {
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

    /// Pixel values [B, C, H, W] -> for a classifier, logits [B, labels]; for a model, the last
    /// hidden state [B, 1+Np, D] (the pooler output through [`HfVitBackbone::forward`]).
    pub fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        match self {
            HfVit::Model(b) => Ok(b.forward(x, Positions::AsTrained, ctx)?.0),
            HfVit::Classifier { vit, classifier } => {
                let (h, _) = vit.forward(x, Positions::AsTrained, ctx)?;
                Ok(classifier.forward(&h.narrow(1, 0, 1)?.squeeze(1)?, Then::none(), ctx)?)
            }
        }
    }

    /// Eval forward with per-layer attentions and hidden states.
    pub fn forward_traced(&self, x: &Tensor) -> Result<(Tensor, Trace)> {
        let mut trace = Trace::default();
        let y = self.forward(x, &mut Ctx::eval().with_trace(&mut trace))?;
        Ok((y, trace))
    }

    /// The layout to build: the task asked for, else what the checkpoint is.
    fn wants_classifier(config: &HfVitConfig, opts: &LoadOptions, has_head: bool) -> bool {
        match opts.task {
            Task::ImageClassification => true,
            Task::FeatureExtraction => false,
            Task::AsSaved => {
                opts.num_labels.is_some() || config.saved_as_classifier().unwrap_or(has_head)
            }
        }
    }

    fn build(vb: VarBuilder, config: &HfVitConfig, classify: bool) -> Result<Self> {
        if classify {
            HfVit::classifier(vb, config)
        } else {
            HfVit::model(vb, config)
        }
    }
}

impl Pretrained for HfVit {
    type Config = HfVitConfig;

    fn from_config(config: &HfVitConfig, opts: &LoadOptions) -> Result<Loaded<Self>> {
        let mut config = config.clone();
        if let Some(n) = opts.num_labels.filter(|&n| n != config.num_labels()) {
            config.set_num_labels(n);
        }
        let classify = Self::wants_classifier(&config, opts, config.num_labels() > 0);
        fresh(opts, |vb| Self::build(vb, &config, classify))
    }

    /// Either layout from either checkpoint layout; missing or mis-shaped backbone tensors are an
    /// error naming them; a fresh head (or a `ViTModel` pooler absent from a classifier
    /// checkpoint) is expected.
    fn from_checkpoint(ckpt: Checkpoint, opts: &LoadOptions) -> Result<Loaded<Self>> {
        ckpt.expect(crate::models::Family::Vit)?;
        let mut config: HfVitConfig = ckpt.config()?;
        if opts.random_init {
            let loaded = Self::from_config(&config, opts)?;
            return Ok(Loaded {
                dir: Some(ckpt.dir),
                ..loaded
            });
        }
        let Checkpoint {
            dir,
            tensors,
            weights,
            ..
        } = ckpt;
        let prefixed = tensors.keys().any(|k| k.starts_with("vit."));
        let has_head = tensors.keys().any(|k| k.starts_with("classifier."));
        let classify = Self::wants_classifier(&config, opts, has_head);
        // Re-key so the checkpoint matches the layout being built.
        let tensors: HashMap<String, Tensor> = match (classify, prefixed) {
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
        let fresh_head = opts.num_labels.filter(|&n| n != config.num_labels());
        if let Some(n) = fresh_head {
            config.set_num_labels(n);
        }
        let tensors = tensors
            .into_iter()
            .filter(|(k, _)| fresh_head.is_none() || !k.starts_with("classifier."))
            .collect();
        let store = opts.store(tensors);
        let model = Self::build(store.var_builder(DType::F32), &config, classify)?;
        let mut report = store.report();
        // A pooler in a checkpoint loaded as a classifier is unused by design (HF warns, too).
        let (ignored, unexpected): (Vec<String>, Vec<String>) = report
            .unexpected
            .drain(..)
            .partition(|k| k.contains("pooler.") || k.starts_with("classifier."));
        report.unexpected = unexpected;
        let fatal = report.missing.iter().any(|k| {
            !((k.starts_with("classifier.") && classify) || (k.starts_with("pooler.") && prefixed))
        });
        if fatal || !report.mismatched.is_empty() || !report.unexpected.is_empty() {
            return Err(Error::Checkpoint {
                path: weights,
                report: report.to_string(),
            });
        }
        finish(model, store, report, ignored, Some(dir), opts)
    }

    /// Every encoder linear packed once for `dtype` (see [`Pretrained::with_dtype`]).
    fn with_precision(&self, dtype: Precision) -> Result<Self> {
        let mut m = self.clone();
        let vit = match &mut m {
            HfVit::Model(b) => b,
            HfVit::Classifier { vit, .. } => vit,
        };
        vit.encoder.prepare(dtype)?;
        Ok(m)
    }

    fn config(&self) -> &HfVitConfig {
        &self.backbone().config
    }

    /// `config.json` with `architectures` naming this layout.
    fn config_json(&self) -> Result<serde_json::Value> {
        let mut cfg = self.backbone().config.clone();
        cfg.architectures = Some(vec![match self {
            HfVit::Model(_) => "ViTModel".into(),
            HfVit::Classifier { .. } => "ViTForImageClassification".into(),
        }]);
        serde_json::to_value(&cfg).map_err(|e| Error::Msg(e.to_string()))
    }
}

impl crate::models::ImageClassifier for HfVit {
    fn logits(&self, images: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        match self {
            HfVit::Classifier { .. } => self.forward(images, ctx),
            HfVit::Model(_) => Err(Error::Config(
                "a ViTModel has no classifier head: fine-tune it first (tessera finetune)".into(),
            )),
        }
    }

    fn label(&self, i: usize) -> String {
        self.backbone().config.label(i)
    }

    fn num_labels(&self) -> usize {
        match self {
            HfVit::Classifier { classifier, .. } => classifier.out_dim(),
            HfVit::Model(_) => 0,
        }
    }

    fn layer_norms(&self) -> Vec<&LayerNorm> {
        let b = self.backbone();
        let mut v = b.encoder.layer_norms();
        v.push(&b.layernorm);
        v
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
        hidden_act: seed.hidden_act,
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
