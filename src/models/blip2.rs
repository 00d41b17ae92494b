//! BLIP-2 with an OPT language model (`Salesforce/blip2-opt-2.7b` and its kin,
//! `Blip2ForConditionalGeneration`) with HF tensor names, from the shared blocks.
//!
//! Vision: BLIP's pre-norm ViT ([`BlipVision`]: fused `qkv` whose bias has a zero key part,
//! `post_layernorm` over every token). Q-Former: `num_query_tokens` learned queries, LayerNorm,
//! then post-norm BERT layers (BLIP's `BertLayer`) with self-attention, cross-attention to the image
//! every `cross_attention_frequency`-th layer (0, f, 2f, …) and the queries' own feed-forward
//! (`intermediate_query` / `output_query`). `language_projection` maps the queries into OPT's
//! embedding space, and — as transformers 5 does — they replace the embeddings of the
//! `image_token_index` tokens, which `Blip2Processor` puts before the text (BOS included).
//! Generation runs through [`crate::nn::generate`] on [`OptLm`] with its KV caches.
use crate::models::blip::{
    BertLayer, BertNames, BertSizes, BlipVision, BlipVisionConfig, Generation,
};
use crate::models::checks;
use crate::models::load::{fresh, strict, Checkpoint, LoadOptions, Loaded, Pretrained};
use crate::models::opt::{OptConfig, OptDecoding, OptLm};
use crate::nn::generate::{self, GenerationConfig};
use crate::nn::Precision;
use crate::nn::{
    check_heads, check_patch_grid, Activation, AttnNames, Ctx, FfnNames, LayerNorm, Linear,
    QkvNames, Then,
};
use crate::{Error, Result};
use candle_core::{DType, Tensor};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

/// `transformers.Blip2VisionConfig` (defaults equal: ViT-g/14).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Blip2VisionConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
    pub qkv_bias: bool,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Default for Blip2VisionConfig {
    fn default() -> Self {
        Blip2VisionConfig {
            hidden_size: 1408,
            intermediate_size: 6144,
            num_hidden_layers: 39,
            num_attention_heads: 16,
            image_size: 224,
            patch_size: 14,
            hidden_act: Activation::Gelu,
            layer_norm_eps: 1e-6,
            qkv_bias: true,
            extra: serde_json::Map::new(),
        }
    }
}

impl Blip2VisionConfig {
    /// The same tower as BLIP's.
    fn blip(&self) -> BlipVisionConfig {
        BlipVisionConfig {
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            image_size: self.image_size,
            patch_size: self.patch_size,
            hidden_act: self.hidden_act,
            layer_norm_eps: self.layer_norm_eps,
            extra: serde_json::Map::new(),
        }
    }
}

/// `transformers.Blip2QFormerConfig` (defaults equal: BERT-base).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Blip2QFormerConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: Activation,
    pub max_position_embeddings: usize,
    pub layer_norm_eps: f64,
    pub pad_token_id: u32,
    pub cross_attention_frequency: usize,
    /// The vision width (`Blip2Config` sets it from `vision_config.hidden_size`).
    pub encoder_hidden_size: usize,
    /// Whether the layers also carry the text feed-forward (`intermediate`, `output`): image-text
    /// retrieval uses it, captioning never runs it.
    pub use_qformer_text_input: bool,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Default for Blip2QFormerConfig {
    fn default() -> Self {
        Blip2QFormerConfig {
            vocab_size: 30522,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            hidden_act: Activation::Gelu,
            max_position_embeddings: 512,
            layer_norm_eps: 1e-12,
            pad_token_id: 0,
            cross_attention_frequency: 2,
            encoder_hidden_size: 1408,
            use_qformer_text_input: false,
            extra: serde_json::Map::new(),
        }
    }
}

/// `transformers.Blip2Config` with an OPT `text_config`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Blip2Config {
    pub vision_config: Blip2VisionConfig,
    pub qformer_config: Blip2QFormerConfig,
    pub text_config: OptConfig,
    pub num_query_tokens: usize,
    pub image_text_hidden_size: usize,
    /// The token whose embeddings the image features replace (`<image>`).
    pub image_token_index: Option<u32>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Default for Blip2Config {
    fn default() -> Self {
        Blip2Config {
            vision_config: Blip2VisionConfig::default(),
            qformer_config: Blip2QFormerConfig::default(),
            text_config: OptConfig::default(),
            num_query_tokens: 32,
            image_text_hidden_size: 256,
            image_token_index: None,
            extra: serde_json::Map::new(),
        }
    }
}

impl Blip2Config {
    /// Checks what the model cannot be built with, naming the field.
    pub fn validate(&self) -> Result<()> {
        let (v, q) = (&self.vision_config, &self.qformer_config);
        checks::sizes(&[
            ("vision_config.hidden_size", v.hidden_size),
            ("vision_config.intermediate_size", v.intermediate_size),
            ("vision_config.num_hidden_layers", v.num_hidden_layers),
            ("vision_config.num_attention_heads", v.num_attention_heads),
            ("vision_config.image_size", v.image_size),
            ("vision_config.patch_size", v.patch_size),
            ("qformer_config.hidden_size", q.hidden_size),
            ("qformer_config.num_hidden_layers", q.num_hidden_layers),
            ("qformer_config.num_attention_heads", q.num_attention_heads),
            ("qformer_config.intermediate_size", q.intermediate_size),
            (
                "qformer_config.cross_attention_frequency",
                q.cross_attention_frequency,
            ),
            ("num_query_tokens", self.num_query_tokens),
        ])?;
        checks::non_negative(&[
            ("vision_config.layer_norm_eps", v.layer_norm_eps),
            ("qformer_config.layer_norm_eps", q.layer_norm_eps),
        ])?;
        check_heads(v.hidden_size, v.num_attention_heads)?;
        check_heads(q.hidden_size, q.num_attention_heads)?;
        check_patch_grid(v.image_size, v.patch_size)?;
        self.text_config.validate("text_config.")?;
        let t = &self.text_config;
        if t.embed_dim() != t.hidden_size {
            // `language_projection` maps to `hidden_size`, but the features replace token
            // embeddings of width `word_embed_proj_dim`: transformers' `masked_scatter` would
            // silently spread them across tokens.
            return Err(Error::Config(format!(
                "text_config.word_embed_proj_dim {} differs from text_config.hidden_size {}: \
                 BLIP-2's image features (hidden_size wide) cannot take the place of token \
                 embeddings",
                t.embed_dim(),
                t.hidden_size
            )));
        }
        self.image_token()?;
        Ok(())
    }

    /// `image_token_index`, which transformers 5 needs to place the image features.
    pub fn image_token(&self) -> Result<u32> {
        match self.image_token_index {
            None => Err(Error::Config(
                "image_token_index is missing: transformers 5 places the image features at \
                 `<image>` tokens (older configs prepended them; re-save the checkpoint with \
                 transformers 5, which adds the token)"
                    .into(),
            )),
            Some(i) if i as usize >= self.text_config.vocab_size => Err(Error::Config(format!(
                "image_token_index {i} is outside the language model's vocabulary ({})",
                self.text_config.vocab_size
            ))),
            Some(i) => Ok(i),
        }
    }

    /// Parameters of `Blip2ForConditionalGeneration` with this config, counted from the sizes
    /// alone (a tied LM head counted once): what a load must hold, before any tensor exists.
    pub fn parameter_count(&self) -> usize {
        let (v, q, t) = (&self.vision_config, &self.qformer_config, &self.text_config);
        let lin = |i: usize, o: usize| i * o + o;
        let (d, n) = (v.hidden_size, (v.image_size / v.patch_size).pow(2) + 1);
        let vision_layer = 2 * d
            + 3 * d * d
            + if v.qkv_bias { 3 * d } else { 0 }
            + lin(d, d)
            + 2 * d
            + lin(d, v.intermediate_size)
            + lin(v.intermediate_size, d);
        let vision = d
            + 3 * v.patch_size * v.patch_size * d
            + d
            + n * d
            + v.num_hidden_layers * vision_layer
            + 2 * d;
        let (dq, e) = (q.hidden_size, v.hidden_size);
        let attention = |kv: usize| lin(dq, dq) + 2 * lin(kv, dq) + lin(dq, dq) + 2 * dq;
        let qformer_layers: usize = (0..q.num_hidden_layers)
            .map(|i| {
                attention(dq)
                    + if i % q.cross_attention_frequency.max(1) == 0 {
                        attention(e)
                    } else {
                        0
                    }
                    + lin(dq, q.intermediate_size)
                    + lin(q.intermediate_size, dq)
                    + 2 * dq
            })
            .sum();
        let qformer = self.num_query_tokens * dq + 2 * dq + qformer_layers;
        let (h, dw) = (t.hidden_size, t.embed_dim());
        let opt_layer = 4 * lin(h, h) + 4 * h + lin(h, t.ffn_dim) + lin(t.ffn_dim, h);
        let opt = t.vocab_size * dw
            + (t.max_position_embeddings + crate::models::opt::POSITION_OFFSET) * h
            + if dw != h { 2 * dw * h } else { 0 }
            + if t.do_layer_norm_before && !t.remove_final_layer_norm {
                2 * h
            } else {
                0
            }
            + t.num_hidden_layers * opt_layer
            + if t.tie_word_embeddings {
                0
            } else {
                t.vocab_size * dw
            };
        vision + qformer + lin(dq, h) + opt
    }

    /// The `Salesforce/blip2-opt-2.7b` sizes (ViT-g/14, BERT-base Q-Former, OPT-2.7b; the hub
    /// config's vocabulary of 50304 with `<image>` at 50265).
    pub fn opt_2_7b() -> Blip2Config {
        Blip2Config {
            text_config: OptConfig {
                vocab_size: 50304,
                hidden_size: 2560,
                num_hidden_layers: 32,
                ffn_dim: 10240,
                num_attention_heads: 32,
                max_position_embeddings: 2048,
                word_embed_proj_dim: Some(2560),
                ..OptConfig::default()
            },
            image_token_index: Some(50265),
            ..Blip2Config::default()
        }
    }

    fn qformer_sizes(&self) -> BertSizes {
        let q = &self.qformer_config;
        BertSizes {
            hidden: q.hidden_size,
            heads: q.num_attention_heads,
            intermediate: q.intermediate_size,
            act: q.hidden_act,
            eps: q.layer_norm_eps,
            // What `Blip2Config.__post_init__` sets, whatever the file says.
            encoder_hidden: self.vision_config.hidden_size,
        }
    }
}

impl BertNames {
    /// `Blip2QFormerLayer`: q/k/v under `attention.attention`, the queries' feed-forward.
    pub const QFORMER: BertNames = BertNames {
        attn: AttnNames {
            qkv: QkvNames::Separate {
                q: "attention.query",
                k: "attention.key",
                v: "attention.value",
            },
            out: "output.dense",
        },
        ffn: FfnNames {
            fc1: "intermediate_query.dense",
            fc2: "output_query.dense",
            norm: "output_query.LayerNorm",
        },
    };
}

/// `Blip2QFormerModel` over query embeddings (no text input): LayerNorm, then the layers.
#[derive(Clone, Debug)]
pub struct QFormer {
    layernorm: LayerNorm,
    layers: Vec<BertLayer>,
}

impl QFormer {
    pub fn new(vb: VarBuilder, c: &Blip2Config) -> Result<Self> {
        let q = &c.qformer_config;
        let sizes = c.qformer_sizes();
        Ok(QFormer {
            layernorm: LayerNorm::new(vb.pp("layernorm"), q.hidden_size, q.layer_norm_eps)?,
            layers: (0..q.num_hidden_layers)
                .map(|i| {
                    BertLayer::new(
                        vb.pp(format!("encoder.layer.{i}")),
                        &BertNames::QFORMER,
                        &sizes,
                        i % q.cross_attention_frequency == 0,
                    )
                })
                .collect::<Result<_>>()?,
        })
    }

    /// Queries [B, Q, Dq] over image states [B, M, E] -> [B, Q, Dq]. No mask: every query
    /// sees every query and every image token. With a trace on, its attentions are each layer's
    /// self-attention, then (cross layers) its cross-attention [B, H, Q, M].
    pub fn forward(&self, queries: &Tensor, image: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let mut x = self.layernorm.forward(queries)?;
        for layer in &self.layers {
            x = layer.forward(&x, None, image, None, &mut Default::default(), ctx)?;
        }
        Ok(x)
    }
}

/// What the image side gives: the vision states, the Q-Former's output and the projected
/// features that take the image tokens' place.
#[derive(Clone, Debug)]
pub struct ImageFeatures {
    /// [B, 1+Np, Dv] (`vision_outputs.last_hidden_state`)
    pub image_embeds: Tensor,
    /// [B, Q, Dq] (`qformer_outputs.last_hidden_state`)
    pub qformer: Tensor,
    /// [B, Q, Dw] (`language_projection` of the Q-Former's output)
    pub features: Tensor,
}

/// `Blip2ForConditionalGeneration` with OPT.
#[derive(Clone, Debug)]
pub struct Blip2Captioner {
    pub config: Blip2Config,
    pub vision_model: BlipVision,
    /// [1, Q, Dq]
    query_tokens: Tensor,
    pub qformer: QFormer,
    language_projection: Linear,
    pub language_model: OptLm,
}

impl Blip2Captioner {
    pub fn new(vb: VarBuilder, c: &Blip2Config) -> Result<Self> {
        c.validate()?;
        let dq = c.qformer_config.hidden_size;
        Ok(Blip2Captioner {
            vision_model: BlipVision::with_qkv_bias(
                vb.pp("vision_model"),
                &c.vision_config.blip(),
                c.vision_config.qkv_bias,
            )?,
            query_tokens: vb.get_with_hints(
                (1, c.num_query_tokens, dq),
                "query_tokens",
                Init::Randn {
                    mean: 0.0,
                    stdev: 0.02,
                },
            )?,
            qformer: QFormer::new(vb.pp("qformer"), c)?,
            language_projection: Linear::new(
                vb.pp("language_projection"),
                dq,
                c.text_config.hidden_size,
                true,
            )?,
            language_model: OptLm::new(vb.pp("language_model"), &c.text_config)?,
            config: c.clone(),
        })
    }

    /// `get_image_features`: pixels [B, 3, S, S] -> vision states, Q-Former output, features.
    pub fn image_features(&self, pixels: &Tensor, ctx: &mut Ctx) -> Result<ImageFeatures> {
        let image_embeds = self.vision_model.forward(pixels, ctx)?;
        self.query_features(image_embeds, ctx)
    }

    /// The Q-Former's queries over `image_embeds` [B, 1+Np, Dv], projected into OPT's space.
    fn query_features(&self, image_embeds: Tensor, ctx: &mut Ctx) -> Result<ImageFeatures> {
        let b = image_embeds.dims()[0];
        let (_, q, dq) = self.query_tokens.dims3()?;
        // [1, Q, Dq] -> [B, Q, Dq]
        let queries = self.query_tokens.expand((b, q, dq))?;
        let qformer = self.qformer.forward(&queries, &image_embeds, ctx)?;
        let features = self
            .language_projection
            .forward(&qformer, Then::none(), ctx)?;
        Ok(ImageFeatures {
            image_embeds,
            qformer,
            features,
        })
    }

    /// `forward(pixel_values, input_ids, attention_mask).logits` [B, T, V]: `ids` [B, T] hold
    /// `num_query_tokens` image tokens per row (as `Blip2Processor` makes them), `keep` [B, T]
    /// is the 0/1 attention mask (all ones when `None`).
    pub fn logits(&self, pixels: &Tensor, ids: &Tensor, keep: Option<&Tensor>) -> Result<Tensor> {
        let f = self.image_features(pixels, &mut Ctx::inference())?;
        let keep: Option<Vec<Vec<u8>>> = keep
            .map(|k| -> Result<_> {
                Ok(k.to_dtype(DType::F32)?
                    .to_vec2::<f32>()?
                    .into_iter()
                    .map(|r| r.into_iter().map(|x| u8::from(x != 0.0)).collect())
                    .collect())
            })
            .transpose()?;
        self.language_model.logits(
            ids,
            keep.as_deref(),
            Some((&f.features, self.config.image_token()?)),
        )
    }

    /// The prompts `Blip2Processor` builds from tokenized texts (BOS included, as the OPT
    /// tokenizer adds it): `num_query_tokens` image tokens, then the texts left padded. An empty
    /// text is `[bos]`, what `generate` starts from without a prompt.
    pub fn prompts(&self, texts: &[Vec<u32>]) -> Result<generate::Prompts> {
        let t = &self.config.text_config;
        let bos = t.bos_token_id.ok_or_else(|| {
            Error::Config("text_config.bos_token_id is needed to start a caption".into())
        })?;
        let pad = t.pad_token_id.unwrap_or(bos);
        let rows: Vec<Vec<u32>> = texts
            .iter()
            .map(|r| if r.is_empty() { vec![bos] } else { r.clone() })
            .collect();
        let text = generate::Prompts::left_padded(&rows, pad);
        let image = self.config.image_token()?;
        let q = self.config.num_query_tokens;
        Ok(generate::Prompts {
            ids: text
                .ids
                .into_iter()
                .map(|r| std::iter::repeat_n(image, q).chain(r).collect())
                .collect(),
            mask: text
                .mask
                .into_iter()
                .map(|r| std::iter::repeat_n(1, q).chain(r).collect())
                .collect(),
        })
    }

    /// Generates from `pixels` [B, 3, S, S] and `prompts` (one row per image, with its image
    /// tokens: see [`Blip2Captioner::prompts`]). Sequences include the prompt, as transformers
    /// returns them. With `attention` (greedy or sampling), each generated token's map over the
    /// image tokens (see [`Blip2Captioner::word_maps`]).
    pub fn generate(
        &self,
        pixels: &Tensor,
        prompts: &generate::Prompts,
        cfg: &GenerationConfig,
        attention: bool,
    ) -> Result<Generation> {
        let b = pixels.dims4()?.0;
        if prompts.ids.len() != b {
            return Err(Error::Shape(format!(
                "{} prompts for {b} images",
                prompts.ids.len()
            )));
        }
        if attention && cfg.num_beams > 1 {
            return Err(Error::Config(
                "per-word attention needs greedy decoding or sampling (num_beams 1)".into(),
            ));
        }
        let mut trace = crate::nn::Trace::default();
        let image = self.vision_model.forward(pixels, &mut Ctx::inference())?;
        let f = {
            // With `attention`, the Q-Former traced (the vision tower's maps are not wanted).
            let mut ctx = Ctx::inference();
            if attention {
                ctx = ctx.with_trace(&mut trace);
            }
            self.query_features(image, &mut ctx)?
        };
        let token = self.config.image_token()?;
        let mut dec = OptDecoding::new(&self.language_model).with_features(f.features, token);
        if attention {
            dec = dec.with_attention();
        }
        let generated = generate::generate(&mut dec, prompts, cfg, pixels.device())?;
        let cross_attention = match dec.attention {
            Some(steps) => Some(self.word_maps(
                &self.query_maps(&trace)?,
                &steps,
                &prompts.ids,
                cfg.num_return_sequences,
            )?),
            None => None,
        };
        Ok(Generation {
            generated,
            cross_attention,
        })
    }

    /// Where each query looked: the Q-Former's cross-attention over the image tokens, mean over
    /// heads and cross-attention layers, [B, Q, M] (class token first), from a traced forward.
    fn query_maps(&self, trace: &crate::nn::Trace) -> Result<Tensor> {
        let freq = self.config.qformer_config.cross_attention_frequency;
        let mut at = 0;
        let mut cross = vec![];
        for i in 0..self.config.qformer_config.num_hidden_layers {
            at += 1; // the layer's self-attention
            if i % freq == 0 {
                let a = trace.attentions.get(at).ok_or_else(|| {
                    Error::Msg("the Q-Former's trace has fewer attentions than layers".into())
                })?;
                cross.push(a.mean(1)?); // [B, H, Q, M] -> [B, Q, M]
                at += 1;
            }
        }
        Ok((Tensor::stack(&cross, 0)?.sum(0)? / cross.len() as f64)?)
    }

    /// Per generated token, where it looked in the image: its attention to each image token
    /// (mean over OPT's heads and layers, renormalised over the Q image tokens) weighting that
    /// query's map over the image, `Σ_q w_q · A_q` -> [R, M] per step. `steps`: each step's
    /// attention over every position [R, T]; `ids`: the prompts (image tokens at the same
    /// columns in every row); `per`: rows per image.
    pub fn word_maps(
        &self,
        query_maps: &Tensor,
        steps: &[Tensor],
        ids: &[Vec<u32>],
        per: usize,
    ) -> Result<Vec<Tensor>> {
        let token = self.config.image_token()?;
        let columns = |r: &Vec<u32>| -> Vec<u32> {
            (0..r.len() as u32)
                .filter(|&j| r[j as usize] == token)
                .collect()
        };
        let cols = ids.first().map(columns).unwrap_or_default();
        if ids.iter().any(|r| columns(r) != cols) {
            return Err(Error::Shape(
                "per-word maps need the image tokens at the same positions in every prompt".into(),
            ));
        }
        let dev = query_maps.device();
        let cols = Tensor::new(cols, dev)?;
        steps
            .iter()
            .map(|a| {
                let r = a.dims()[0];
                // Row r's image is r / per (sampling may return several rows per image).
                let rows: Vec<u32> = (0..r).map(|i| (i / per.max(1)) as u32).collect();
                let maps = query_maps.index_select(&Tensor::new(rows, dev)?, 0)?; // [R, Q, M]
                let w = a.index_select(&cols, 1)?; // [R, Q]
                let w = w.broadcast_div(&w.sum_keepdim(1)?)?;
                // [R, 1, Q] @ [R, Q, M] -> [R, M]
                Ok(w.unsqueeze(1)?.matmul(&maps)?.squeeze(1)?)
            })
            .collect()
    }
}

/// BLIP-2's generation settings: stop at OPT's eos, pad with its pad id.
pub fn generation_defaults(c: &Blip2Config) -> GenerationConfig {
    GenerationConfig {
        eos_token_id: c.text_config.eos_token_id,
        pad_token_id: c.text_config.pad_token_id,
        ..GenerationConfig::default()
    }
}

/// Checkpoint tensors the captioner does not read: position-id buffers, a tied LM head's copy,
/// and the Q-Former's text side (its embeddings and text feed-forward, for retrieval).
fn keep_tensor(c: &Blip2Config, k: &str) -> bool {
    if k.ends_with("position_ids") || k.starts_with("qformer.embeddings.") {
        return false;
    }
    if c.text_config.tie_word_embeddings && k == "language_model.lm_head.weight" {
        return false;
    }
    if let Some(rest) = k.strip_prefix("qformer.encoder.layer.") {
        let sub = rest.trim_start_matches(|ch: char| ch.is_ascii_digit());
        return !(sub.starts_with(".intermediate.") || sub.starts_with(".output."));
    }
    true
}

impl Pretrained for Blip2Captioner {
    type Config = Blip2Config;
    const EXTRA_FILES: &'static [&'static str] = &[
        "preprocessor_config.json",
        "processor_config.json",
        "tokenizer.json",
        "generation_config.json",
    ];

    fn from_config(config: &Blip2Config, opts: &LoadOptions) -> Result<Loaded<Self>> {
        fresh(opts, |vb| Blip2Captioner::new(vb, config))
    }

    fn from_checkpoint(ckpt: Checkpoint, opts: &LoadOptions) -> Result<Loaded<Self>> {
        ckpt.expect(crate::models::Family::Blip2)?;
        let config: Blip2Config = ckpt.config()?;
        config.validate()?;
        strict(
            ckpt,
            opts,
            |k| keep_tensor(&config, k),
            |vb| Blip2Captioner::new(vb, &config),
        )
    }

    /// The vision encoder, OPT's linears and its LM head packed for `dtype`; the Q-Former stays
    /// in fp32, as transformers keeps it (`_keep_in_fp32_modules`).
    fn with_precision(&self, dtype: Precision) -> Result<Self> {
        let mut m = self.clone();
        m.vision_model.prepare(dtype)?;
        m.language_model.prepare(dtype)?;
        Ok(m)
    }

    fn config(&self) -> &Blip2Config {
        &self.config
    }

    fn config_json(&self) -> Result<serde_json::Value> {
        let mut v = serde_json::to_value(&self.config).map_err(|e| Error::Msg(e.to_string()))?;
        v["model_type"] = "blip-2".into();
        v["architectures"] = serde_json::json!(["Blip2ForConditionalGeneration"]);
        v["text_config"]["model_type"] = "opt".into();
        Ok(v)
    }
}
