//! BLIP (`Salesforce/blip-image-captioning-base/large`, `Salesforce/blip-vqa-base`) with HF
//! tensor names, from the shared blocks: `BlipForConditionalGeneration` (captioning, with or
//! without a prompt) and `BlipForQuestionAnswering`.
//!
//! Vision: a pre-norm ViT (`BlockNames::BLIP`: fused `qkv`, `projection`), class token and a
//! position table `[1, N+1, D]`, `post_layernorm` over every token. Text: BERT-style post-norm
//! layers, each self-attention (causal when decoding), cross-attention to the encoder states
//! (keys/values from `encoder_hidden_size`) and the feed-forward; the LM head (`dense`, gelu,
//! LayerNorm, then the word embeddings, tied, plus `cls.predictions.bias`). Generation runs
//! through [`crate::nn::generate`] with each layer's KV cache.
use crate::models::checks;
use crate::models::load::{fresh, strict, Checkpoint, LoadOptions, Loaded, Pretrained};
use crate::nn::coattention::{BERT_ATTENTION, BERT_ATTENTION_NORM};
use crate::nn::generate::{self, Decoder, Generated, GenerationConfig, Prompts};
use crate::nn::Precision;
use crate::nn::{
    check_heads, check_patch_grid, padding_mask, Activation, AttnConfig, AttnNames, BlockConfig,
    BlockNames, Ctx, Encoder, FfnNames, KvCache, LayerNorm, Linear, PatchEmbed, PostNormAttention,
    PostNormFfn, QkvNames, Then,
};
use crate::{Error, Result};
use candle_core::{DType, IndexOp, Tensor};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

/// `transformers.BlipVisionConfig` (defaults equal).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BlipVisionConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Default for BlipVisionConfig {
    fn default() -> Self {
        BlipVisionConfig {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            image_size: 384,
            patch_size: 16,
            hidden_act: Activation::Gelu,
            layer_norm_eps: 1e-5,
            extra: serde_json::Map::new(),
        }
    }
}

/// `transformers.BlipTextConfig` (defaults equal).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BlipTextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    /// The width of the states cross-attended to (the vision tower's; `BlipConfig` sets it).
    pub encoder_hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub max_position_embeddings: usize,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
    pub bos_token_id: u32,
    pub pad_token_id: u32,
    /// What generation stops at (`[SEP]`); `eos_token_id` is not used by BLIP's `generate`.
    pub sep_token_id: u32,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl BlipTextConfig {
    fn sizes(&self) -> BertSizes {
        BertSizes {
            hidden: self.hidden_size,
            heads: self.num_attention_heads,
            intermediate: self.intermediate_size,
            act: self.hidden_act,
            eps: self.layer_norm_eps,
            encoder_hidden: self.encoder_hidden_size,
        }
    }
}

impl Default for BlipTextConfig {
    fn default() -> Self {
        BlipTextConfig {
            vocab_size: 30524,
            hidden_size: 768,
            encoder_hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 8,
            max_position_embeddings: 512,
            hidden_act: Activation::Gelu,
            layer_norm_eps: 1e-12,
            bos_token_id: 30522,
            pad_token_id: 0,
            sep_token_id: 102,
            extra: serde_json::Map::new(),
        }
    }
}

/// `transformers.BlipConfig`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct BlipConfig {
    pub text_config: BlipTextConfig,
    pub vision_config: BlipVisionConfig,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl BlipConfig {
    /// Checks what the model cannot be built with, naming the field.
    pub fn validate(&self) -> Result<()> {
        let (t, v) = (&self.text_config, &self.vision_config);
        checks::sizes(&[
            ("text_config.vocab_size", t.vocab_size),
            ("text_config.hidden_size", t.hidden_size),
            ("text_config.intermediate_size", t.intermediate_size),
            ("text_config.num_hidden_layers", t.num_hidden_layers),
            ("text_config.num_attention_heads", t.num_attention_heads),
            (
                "text_config.max_position_embeddings",
                t.max_position_embeddings,
            ),
            ("vision_config.hidden_size", v.hidden_size),
            ("vision_config.intermediate_size", v.intermediate_size),
            ("vision_config.num_hidden_layers", v.num_hidden_layers),
            ("vision_config.num_attention_heads", v.num_attention_heads),
            ("vision_config.image_size", v.image_size),
            ("vision_config.patch_size", v.patch_size),
        ])?;
        checks::non_negative(&[
            ("text_config.layer_norm_eps", t.layer_norm_eps),
            ("vision_config.layer_norm_eps", v.layer_norm_eps),
        ])?;
        check_heads(t.hidden_size, t.num_attention_heads)?;
        check_heads(v.hidden_size, v.num_attention_heads)?;
        check_patch_grid(v.image_size, v.patch_size)?;
        for (field, id) in [
            ("text_config.bos_token_id", t.bos_token_id),
            ("text_config.pad_token_id", t.pad_token_id),
            ("text_config.sep_token_id", t.sep_token_id),
        ] {
            if id as usize >= t.vocab_size {
                return Err(Error::Config(format!(
                    "{field} {id} is outside the vocabulary ({})",
                    t.vocab_size
                )));
            }
        }
        Ok(())
    }

    /// The text side with `encoder_hidden_size` = the vision width, as `BlipConfig` sets it.
    fn text(&self) -> BlipTextConfig {
        BlipTextConfig {
            encoder_hidden_size: self.vision_config.hidden_size,
            ..self.text_config.clone()
        }
    }
}

impl BlockNames {
    /// transformers' `BlipEncoderLayer`.
    pub const BLIP: BlockNames = BlockNames {
        norm1: "layer_norm1",
        norm2: "layer_norm2",
        attn: "self_attn",
        attn_names: AttnNames {
            qkv: QkvNames::FusedLinear("qkv"),
            out: "projection",
        },
        fc1: "mlp.fc1",
        fc2: "mlp.fc2",
    };
}

/// `BlipVisionModel`: every token's final state (`last_hidden_state`, post-LayerNorm).
#[derive(Clone, Debug)]
pub struct BlipVision {
    pub config: BlipVisionConfig,
    class_embedding: Tensor,
    patch: PatchEmbed,
    position_embedding: Tensor,
    encoder: Encoder,
    post_layernorm: LayerNorm,
}

impl BlipVision {
    pub fn new(vb: VarBuilder, c: &BlipVisionConfig) -> Result<Self> {
        Self::with_qkv_bias(vb, c, true)
    }

    /// The tower with or without the fused `qkv.bias` (BLIP-2's `qkv_bias`).
    pub fn with_qkv_bias(vb: VarBuilder, c: &BlipVisionConfig, qkv_bias: bool) -> Result<Self> {
        check_patch_grid(c.image_size, c.patch_size)?;
        let d = c.hidden_size;
        let n = (c.image_size / c.patch_size).pow(2) + 1;
        let emb = vb.pp("embeddings");
        let std = Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        };
        let cfg = BlockConfig {
            dim: d,
            heads: c.num_attention_heads,
            mlp_dim: c.intermediate_size,
            act: c.hidden_act,
            pre_norm: true,
            eps: c.layer_norm_eps,
            qkv_bias,
            dropout: 0.0,
            mlp_dropout: 0.0,
            attn_dropout: 0.0,
        };
        Ok(BlipVision {
            class_embedding: emb.get_with_hints((1, 1, d), "class_embedding", std)?,
            patch: PatchEmbed::new(emb.pp("patch_embedding"), 3, d, c.patch_size, true)?,
            position_embedding: emb.get_with_hints((1, n, d), "position_embedding", std)?,
            encoder: Encoder::new(
                vb.pp("encoder.layers"),
                &BlockNames::BLIP,
                &cfg,
                c.num_hidden_layers,
            )?,
            post_layernorm: LayerNorm::new(vb.pp("post_layernorm"), d, c.layer_norm_eps)?,
            config: c.clone(),
        })
    }

    /// Packs the encoder's linears for inference in `dtype` (see [`Linear::prepare`]).
    pub fn prepare(&mut self, dtype: Precision) -> Result<()> {
        Ok(self.encoder.prepare(dtype)?)
    }

    /// Pixel values [B, 3, S, S] -> every token's state [B, 1+Np, D].
    pub fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let (b, _, h, w) = x.dims4()?;
        let s = self.config.image_size;
        if h != s || w != s {
            return Err(Error::Shape(format!(
                "input {h}x{w} does not match the model's image_size {s}"
            )));
        }
        let d = self.config.hidden_size;
        let patches = self.patch.forward(x)?; // [B, Np, D]
        let cls = self.class_embedding.expand((b, 1, d))?;
        let x = Tensor::cat(&[&cls, &patches], 1)?.broadcast_add(&self.position_embedding)?;
        let h = self.encoder.forward(&x, None, ctx)?;
        Ok(self.post_layernorm.forward(&h)?)
    }
}

/// Sizes of one BERT-style layer (BLIP's text layers, BLIP-2's Q-Former).
#[derive(Clone, Copy, Debug)]
pub(crate) struct BertSizes {
    pub hidden: usize,
    pub heads: usize,
    pub intermediate: usize,
    pub act: Activation,
    pub eps: f64,
    /// The width of the states cross-attended to.
    pub encoder_hidden: usize,
}

/// Checkpoint names of one BERT-style layer: only the names differ between BLIP's text layers
/// and BLIP-2's Q-Former.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BertNames {
    /// q/k/v and the output dense, under `attention` / `crossattention`.
    pub attn: AttnNames,
    pub ffn: FfnNames,
}

impl BertNames {
    /// `BertLayer` (BLIP's `BlipTextLayer`).
    pub const BERT: BertNames = BertNames {
        attn: BERT_ATTENTION,
        ffn: FfnNames::BERT,
    };
}

/// One post-norm BERT-style layer: self-attention, cross-attention to the encoder states (when
/// the layer has one), feed-forward.
#[derive(Clone, Debug)]
pub(crate) struct BertLayer {
    attention: PostNormAttention,
    crossattention: Option<PostNormAttention>,
    ffn: PostNormFfn,
}

/// The caches of one text layer: its self-attention and cross-attention.
#[derive(Clone, Debug, Default)]
pub struct LayerCache {
    pub own: KvCache,
    pub cross: KvCache,
}

impl BertLayer {
    pub fn new(vb: VarBuilder, names: &BertNames, c: &BertSizes, cross: bool) -> Result<Self> {
        let attn = |vb: VarBuilder, kv_dim: Option<usize>| {
            let cfg = AttnConfig {
                dim: c.hidden,
                heads: c.heads,
                qkv_bias: true,
                attn_dropout: 0.0,
                proj_dropout: 0.0,
                kv_dim,
                inner: None,
            };
            PostNormAttention::new(vb, names.attn, BERT_ATTENTION_NORM, &cfg, c.eps)
        };
        Ok(BertLayer {
            attention: attn(vb.pp("attention"), None)?,
            crossattention: cross
                .then(|| attn(vb.pp("crossattention"), Some(c.encoder_hidden)))
                .transpose()?,
            ffn: PostNormFfn::new(
                vb.clone(),
                names.ffn,
                c.hidden,
                c.intermediate,
                c.act,
                0.0,
                c.eps,
            )?,
        })
    }

    /// [B, N, D] -> [B, N, D]; `mask` additive over the self-attention keys, `encoder_mask` over
    /// the `encoder` states [B, M, E] (used only by a layer with cross-attention).
    pub fn forward(
        &self,
        x: &Tensor,
        mask: Option<&Tensor>,
        encoder: &Tensor,
        encoder_mask: Option<&Tensor>,
        cache: &mut LayerCache,
        ctx: &mut Ctx,
    ) -> Result<Tensor> {
        let mut h = self
            .attention
            .forward_cached(x, None, &mut cache.own, mask, ctx)?;
        if let Some(cross) = &self.crossattention {
            h = cross.forward_cached(&h, Some(encoder), &mut cache.cross, encoder_mask, ctx)?;
        }
        Ok(self.ffn.forward(&h, ctx)?)
    }
}

/// `BlipTextModel` without a pooler: embeddings and layers (the `bert` of the decoder, or
/// VQA's question encoder).
#[derive(Clone, Debug)]
pub struct BlipText {
    pub config: BlipTextConfig,
    word_embeddings: Tensor,
    position_embeddings: Tensor,
    embed_norm: LayerNorm,
    layers: Vec<BertLayer>,
}

impl BlipText {
    pub fn new(vb: VarBuilder, c: &BlipTextConfig) -> Result<Self> {
        let emb = vb.pp("embeddings");
        let std = Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        };
        let d = c.hidden_size;
        Ok(BlipText {
            word_embeddings: emb.get_with_hints(
                (c.vocab_size, d),
                "word_embeddings.weight",
                std,
            )?,
            position_embeddings: emb.get_with_hints(
                (c.max_position_embeddings, d),
                "position_embeddings.weight",
                std,
            )?,
            embed_norm: LayerNorm::new(emb.pp("LayerNorm"), d, c.layer_norm_eps)?,
            layers: (0..c.num_hidden_layers)
                .map(|i| {
                    BertLayer::new(
                        vb.pp(format!("encoder.layer.{i}")),
                        &BertNames::BERT,
                        &c.sizes(),
                        true,
                    )
                })
                .collect::<Result<_>>()?,
            config: c.clone(),
        })
    }

    /// Fresh caches, one per layer.
    pub fn caches(&self) -> Vec<LayerCache> {
        vec![LayerCache::default(); self.layers.len()]
    }

    /// Token ids [R, N] (u32) at `positions` [R, N] -> states [R, N, D]. `mask` is additive over
    /// the self-attention keys ([R or 1, 1, N, T], T = cached + N); `encoder_mask` over the
    /// encoder states [R, M, E] (additive, broadcastable to [R, H, N, M]).
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        ids: &Tensor,
        positions: &Tensor,
        mask: Option<&Tensor>,
        encoder: &Tensor,
        encoder_mask: Option<&Tensor>,
        caches: &mut [LayerCache],
        ctx: &mut Ctx,
    ) -> Result<Tensor> {
        let c = &self.config;
        let (r, n) = ids.dims2()?;
        let check = |t: &Tensor, limit: usize, what: &str| -> Result<()> {
            let v: Vec<u32> = t.flatten_all()?.to_vec1()?;
            match v.iter().find(|&&i| i as usize >= limit) {
                Some(bad) => Err(Error::Shape(format!("{what} {bad} is outside 0..{limit}"))),
                None => Ok(()),
            }
        };
        check(ids, c.vocab_size, "token id")?;
        check(positions, c.max_position_embeddings, "position")?;
        let d = c.hidden_size;
        // [R, N] -> [R, N, D]
        let x = self
            .word_embeddings
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((r, n, d))?;
        let p = self
            .position_embeddings
            .index_select(&positions.flatten_all()?, 0)?
            .reshape((r, n, d))?;
        let mut x = self.embed_norm.forward(&(x + p)?)?;
        if caches.len() != self.layers.len() {
            return Err(Error::Shape(format!(
                "{} caches for {} layers",
                caches.len(),
                self.layers.len()
            )));
        }
        for (layer, cache) in self.layers.iter().zip(caches.iter_mut()) {
            x = layer.forward(&x, mask, encoder, encoder_mask, cache, ctx)?;
        }
        Ok(x)
    }
}

/// `BlipTextLMHeadModel`: the text model and its tied LM head.
#[derive(Clone, Debug)]
pub struct BlipTextLm {
    pub bert: BlipText,
    transform: Linear,
    transform_act: Activation,
    transform_norm: LayerNorm,
    /// The word embeddings (tied) with `cls.predictions.bias`: built once, so a prepared model
    /// packs it once instead of on every decoding step.
    decoder: Linear,
}

impl BlipTextLm {
    pub fn new(vb: VarBuilder, c: &BlipTextConfig) -> Result<Self> {
        let head = vb.pp("cls.predictions");
        let bert = BlipText::new(vb.pp("bert"), c)?;
        let bias = head.get_with_hints(c.vocab_size, "bias", Init::Const(0.0))?;
        Ok(BlipTextLm {
            decoder: Linear::from_parts(bert.word_embeddings.clone(), Some(bias)),
            bert,
            transform: Linear::new(
                head.pp("transform.dense"),
                c.hidden_size,
                c.hidden_size,
                true,
            )?,
            transform_act: c.hidden_act,
            transform_norm: LayerNorm::new(
                head.pp("transform.LayerNorm"),
                c.hidden_size,
                c.layer_norm_eps,
            )?,
        })
    }

    /// Packs the head for inference in `dtype` (see [`Linear::prepare`]).
    pub fn prepare(&mut self, dtype: Precision) -> Result<()> {
        self.transform.prepare(dtype)?;
        Ok(self.decoder.prepare(dtype)?)
    }

    /// States [.., D] -> logits [.., V] (the decoder weight is the word embeddings).
    pub fn head(&self, h: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let h = self
            .transform
            .forward(h, Then::act(self.transform_act), ctx)?;
        let h = self.transform_norm.forward(&h)?;
        Ok(self.decoder.forward(&h, Then::none(), ctx)?)
    }

    /// Teacher-forced logits [B, T, V] of `ids` [B, T] (causal, `keep` [B, T] 0/1 padding)
    /// over `encoder` [B, M, E] (`encoder_keep` [B, M] 0/1).
    pub fn logits(
        &self,
        ids: &Tensor,
        keep: Option<&Tensor>,
        encoder: &Tensor,
        encoder_keep: Option<&Tensor>,
        ctx: &mut Ctx,
    ) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let dev = ids.device();
        let mut mask = crate::nn::causal_mask(t, DType::F32, dev)?.reshape((1, 1, t, t))?;
        if let Some(k) = keep {
            mask = mask.broadcast_add(&padding_mask(k, DType::F32)?)?;
        }
        let enc_mask = encoder_keep
            .map(|k| padding_mask(k, DType::F32))
            .transpose()?;
        let pos = Tensor::arange(0u32, t as u32, dev)?
            .unsqueeze(0)?
            .expand((b, t))?
            .contiguous()?;
        let mut caches = self.bert.caches();
        let h = self.bert.forward(
            &ids.to_dtype(DType::U32)?,
            &pos,
            Some(&mask),
            encoder,
            enc_mask.as_ref(),
            &mut caches,
            ctx,
        )?;
        self.head(&h, ctx)
    }
}

/// A BLIP text decoder mid-generation: the encoder states it attends to and its caches.
pub struct BlipDecoding<'a> {
    lm: &'a BlipTextLm,
    encoder: Tensor,
    caches: Vec<LayerCache>,
    /// When set, each step's cross-attention probabilities, mean over heads and layers, for
    /// the last new token: [R, M] per step.
    pub cross_attention: Option<Vec<Tensor>>,
}

impl<'a> BlipDecoding<'a> {
    pub fn new(lm: &'a BlipTextLm, encoder: &Tensor) -> Self {
        BlipDecoding {
            lm,
            encoder: encoder.clone(),
            caches: lm.bert.caches(),
            cross_attention: None,
        }
    }
}

impl Decoder for BlipDecoding<'_> {
    fn step(
        &mut self,
        ids: &Tensor,
        positions: &Tensor,
        mask: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let run = |ctx: &mut Ctx, caches: &mut [LayerCache]| -> Result<Tensor> {
            let h = self.lm.bert.forward(
                ids,
                positions,
                Some(mask),
                &self.encoder,
                None,
                caches,
                ctx,
            )?;
            let n = h.dims()[1];
            self.lm.head(&h.i((.., n - 1))?, ctx)
        };
        let out = if self.cross_attention.is_some() {
            let mut trace = crate::nn::Trace::default();
            let logits = run(
                &mut Ctx::inference().with_trace(&mut trace),
                &mut self.caches,
            );
            let logits = logits.map_err(to_candle)?;
            // Attentions alternate self, cross per layer: [R, H, N, M] -> last token, mean over
            // heads and layers -> [R, M].
            let cross: Vec<Tensor> = trace
                .attentions
                .iter()
                .skip(1)
                .step_by(2)
                .map(|a| {
                    let n = a.dims()[2];
                    a.i((.., .., n - 1))?.mean(1)
                })
                .collect::<candle_core::Result<_>>()?;
            let mean = (Tensor::stack(&cross, 0)?.sum(0)? / cross.len() as f64)?;
            if let Some(v) = self.cross_attention.as_mut() {
                v.push(mean);
            }
            logits
        } else {
            run(&mut Ctx::inference(), &mut self.caches).map_err(to_candle)?
        };
        Ok(out)
    }

    fn select_rows(&mut self, rows: &Tensor) -> candle_core::Result<()> {
        self.encoder = self.encoder.index_select(rows, 0)?;
        for c in &mut self.caches {
            c.own.select_rows(rows)?;
            c.cross.select_rows(rows)?;
        }
        if let Some(v) = self.cross_attention.as_mut() {
            for t in v.iter_mut() {
                *t = t.index_select(rows, 0)?;
            }
        }
        Ok(())
    }
}

fn to_candle(e: Error) -> candle_core::Error {
    candle_core::Error::Msg(e.to_string())
}

/// The generation settings BLIP's `generate` uses: stop at `[SEP]`, pad with `pad_token_id`.
pub fn generation_defaults(c: &BlipTextConfig) -> GenerationConfig {
    GenerationConfig {
        eos_token_id: Some(c.sep_token_id),
        pad_token_id: Some(c.pad_token_id),
        ..GenerationConfig::default()
    }
}

/// `BlipForConditionalGeneration`.
#[derive(Clone, Debug)]
pub struct BlipCaptioner {
    pub config: BlipConfig,
    pub vision_model: BlipVision,
    pub text_decoder: BlipTextLm,
}

/// What `generate` gives back with the per-step attention over the image, when asked.
#[derive(Clone, Debug)]
pub struct Generation {
    pub generated: Generated,
    /// Per generated token (greedy and sampling): cross-attention over the image tokens
    /// (class token first), [R, 1+Np] per step, mean over heads and layers.
    pub cross_attention: Option<Vec<Tensor>>,
}

impl BlipCaptioner {
    pub fn new(vb: VarBuilder, c: &BlipConfig) -> Result<Self> {
        c.validate()?;
        Ok(BlipCaptioner {
            vision_model: BlipVision::new(vb.pp("vision_model"), &c.vision_config)?,
            text_decoder: BlipTextLm::new(vb.pp("text_decoder"), &c.text())?,
            config: c.clone(),
        })
    }

    /// `forward(pixel_values, input_ids, attention_mask).logits` [B, T, V].
    pub fn logits(&self, pixels: &Tensor, ids: &Tensor, keep: Option<&Tensor>) -> Result<Tensor> {
        self.forward(pixels, ids, keep, &mut Ctx::inference())
    }

    /// [`BlipCaptioner::logits`] under `ctx` (training: gradients reach every parameter).
    pub fn forward(
        &self,
        pixels: &Tensor,
        ids: &Tensor,
        keep: Option<&Tensor>,
        ctx: &mut Ctx,
    ) -> Result<Tensor> {
        let image = self.vision_model.forward(pixels, ctx)?;
        self.text_decoder.logits(ids, keep, &image, None, ctx)
    }

    /// Captions `pixels` [B, 3, S, S]. `prompts`: per image, the prompt's ids without `[CLS]`
    /// and `[SEP]` (empty: unconditional); `[BOS]` is put first, rows are left padded.
    pub fn generate(
        &self,
        pixels: &Tensor,
        prompts: &[Vec<u32>],
        cfg: &GenerationConfig,
        attention: bool,
    ) -> Result<Generation> {
        let b = pixels.dims4()?.0;
        if prompts.len() != b {
            return Err(Error::Shape(format!(
                "{} prompts for {b} images",
                prompts.len()
            )));
        }
        let t = &self.config.text_config;
        let image = self.vision_model.forward(pixels, &mut Ctx::inference())?;
        let rows: Vec<Vec<u32>> = prompts
            .iter()
            .map(|p| {
                std::iter::once(t.bos_token_id)
                    .chain(p.iter().copied())
                    .collect()
            })
            .collect();
        let prompts = Prompts::left_padded(&rows, t.pad_token_id);
        let mut dec = BlipDecoding::new(&self.text_decoder, &image);
        if attention {
            if cfg.num_beams > 1 {
                return Err(Error::Config(
                    "per-word attention needs greedy decoding or sampling (num_beams 1)".into(),
                ));
            }
            dec.cross_attention = Some(vec![]);
        }
        let generated = generate::generate(&mut dec, &prompts, cfg, pixels.device())?;
        Ok(Generation {
            generated,
            cross_attention: dec.cross_attention,
        })
    }
}

impl BlipCaptioner {
    /// Gradient-weighted cross-attention per word (Chefer et al.'s (∇A ⊙ A)⁺ read at the
    /// word): for each token `ids[j]`, j ≥ `from`, of one image's sequence (`pixels` [1, 3, S,
    /// S]), the gradient of its logit (predicted at position j − 1) with respect to each
    /// cross-attention map, times the map, positive part, mean over heads, row j − 1, mean over
    /// layers, normalised to sum 1 (uniform when nothing is positive): [1+Np] per word, class
    /// token first. One teacher-forced forward, one backward per word.
    pub fn word_relevance(&self, pixels: &Tensor, ids: &[u32], from: usize) -> Result<Vec<Tensor>> {
        if pixels.dims4()?.0 != 1 {
            return Err(Error::Shape(
                "word relevance takes one image at a time".into(),
            ));
        }
        if from == 0 || from > ids.len() {
            return Err(Error::Shape(format!(
                "words from {from} of a {}-token sequence (the first is predicted from nothing)",
                ids.len()
            )));
        }
        let image = self.vision_model.forward(pixels, &mut Ctx::inference())?;
        let dev = pixels.device();
        let seq = Tensor::new(ids, dev)?.unsqueeze(0)?;
        let mut trace = crate::nn::Trace::with_gradients();
        let logits = {
            let mut ctx = Ctx::eval().with_trace(&mut trace);
            self.text_decoder
                .logits(&seq, None, &image, None, &mut ctx)?
        };
        let probes = trace
            .probes
            .as_ref()
            .ok_or_else(|| Error::Msg("the trace kept no gradient probes".into()))?;
        // Per layer: self-attention, then cross-attention.
        let cross: Vec<usize> = (1..trace.attentions.len()).step_by(2).collect();
        (from..ids.len())
            .map(|j| {
                let y = logits.i((0, j - 1, ids[j] as usize))?;
                let grads = y.backward()?;
                let mut sum: Option<Tensor> = None;
                for &l in &cross {
                    let a = trace.attentions[l].i((0, .., j - 1))?; // [H, M]
                    let g = grads
                        .get(&probes[l])
                        .ok_or_else(|| Error::Msg(format!("no gradient reached attention {l}")))?
                        .i((0, .., j - 1))?;
                    let cam = (g * a)?.relu()?.mean(0)?; // [M]
                    sum = Some(match sum {
                        Some(s) => (s + cam)?,
                        None => cam,
                    });
                }
                let m = sum.ok_or_else(|| Error::Msg("the decoder has no layers".into()))?;
                let total = m.sum_all()?.to_scalar::<f32>()?;
                Ok(if total > 0.0 {
                    (m / total as f64)?
                } else {
                    let n = m.dims1()?;
                    Tensor::full(1.0 / n as f32, n, dev)?
                })
            })
            .collect()
    }
}

/// `BlipForQuestionAnswering`: the question is encoded over the image, the answer decoded over
/// the question.
#[derive(Clone, Debug)]
pub struct BlipVqa {
    pub config: BlipConfig,
    pub vision_model: BlipVision,
    pub text_encoder: BlipText,
    pub text_decoder: BlipTextLm,
}

impl BlipVqa {
    pub fn new(vb: VarBuilder, c: &BlipConfig) -> Result<Self> {
        c.validate()?;
        let text = c.text();
        if text.hidden_size != text.encoder_hidden_size {
            return Err(Error::Config(format!(
                "BLIP VQA decodes over the question encoder's states: text_config.hidden_size {} \
                 must equal vision_config.hidden_size {}",
                text.hidden_size, text.encoder_hidden_size
            )));
        }
        Ok(BlipVqa {
            vision_model: BlipVision::new(vb.pp("vision_model"), &c.vision_config)?,
            text_encoder: BlipText::new(vb.pp("text_encoder"), &text)?,
            text_decoder: BlipTextLm::new(vb.pp("text_decoder"), &text)?,
            config: c.clone(),
        })
    }

    /// The question's states [B, Tq, D]: `question` [B, Tq] (with `[CLS]`…`[SEP]`, right padded
    /// by `keep`) attending to itself (both ways) and to the image.
    pub fn encode_question(
        &self,
        pixels: &Tensor,
        question: &Tensor,
        keep: &Tensor,
        ctx: &mut Ctx,
    ) -> Result<Tensor> {
        let image = self.vision_model.forward(pixels, ctx)?;
        let (b, t) = question.dims2()?;
        let mask = padding_mask(keep, DType::F32)?;
        let pos = Tensor::arange(0u32, t as u32, question.device())?
            .unsqueeze(0)?
            .expand((b, t))?
            .contiguous()?;
        let mut caches = self.text_encoder.caches();
        self.text_encoder.forward(
            &question.to_dtype(DType::U32)?,
            &pos,
            Some(&mask),
            &image,
            None,
            &mut caches,
            ctx,
        )
    }

    /// Answers: `question` [B, Tq] with its 0/1 `keep` mask. As transformers, the answer
    /// decoder attends to every question position (padding included).
    pub fn generate(
        &self,
        pixels: &Tensor,
        question: &Tensor,
        keep: &Tensor,
        cfg: &GenerationConfig,
    ) -> Result<Generated> {
        let q = self.encode_question(pixels, question, keep, &mut Ctx::inference())?;
        let b = q.dims()[0];
        let t = &self.config.text_config;
        let prompts = Prompts::left_padded(&vec![vec![t.bos_token_id]; b], t.pad_token_id);
        let mut dec = BlipDecoding::new(&self.text_decoder, &q);
        generate::generate(&mut dec, &prompts, cfg, pixels.device())
    }
}

/// Tensors a BLIP checkpoint may carry that are not parameters: position-id buffers and the
/// tied LM-head copies older checkpoints store.
fn keep_tensor(k: &str) -> bool {
    !(k.ends_with("position_ids")
        || k.ends_with("cls.predictions.decoder.weight")
        || k.ends_with("cls.predictions.decoder.bias"))
}

fn config_json(c: &BlipConfig, architecture: &str) -> Result<serde_json::Value> {
    let mut v = serde_json::to_value(c).map_err(|e| Error::Msg(e.to_string()))?;
    v["model_type"] = "blip".into();
    v["architectures"] = serde_json::json!([architecture]);
    Ok(v)
}

/// One `Pretrained` impl for both BLIP heads: they differ only in their constructor and the
/// architecture `config.json` names.
macro_rules! blip_pretrained {
    ($model:ty, $architecture:literal) => {
        impl Pretrained for $model {
            type Config = BlipConfig;
            const EXTRA_FILES: &'static [&'static str] = &[
                "preprocessor_config.json",
                "processor_config.json",
                "tokenizer.json",
                "generation_config.json",
            ];

            fn from_config(config: &BlipConfig, opts: &LoadOptions) -> Result<Loaded<Self>> {
                fresh(opts, |vb| <$model>::new(vb, config))
            }

            fn from_checkpoint(ckpt: Checkpoint, opts: &LoadOptions) -> Result<Loaded<Self>> {
                ckpt.expect(crate::models::Family::Blip)?;
                let config: BlipConfig = ckpt.config()?;
                strict(ckpt, opts, keep_tensor, |vb| <$model>::new(vb, &config))
            }

            /// The vision encoder's linears and the LM head packed for `dtype`.
            fn with_precision(&self, dtype: Precision) -> Result<Self> {
                let mut m = self.clone();
                m.vision_model.prepare(dtype)?;
                m.text_decoder.prepare(dtype)?;
                Ok(m)
            }

            fn config(&self) -> &BlipConfig {
                &self.config
            }

            fn config_json(&self) -> Result<serde_json::Value> {
                config_json(&self.config, $architecture)
            }
        }
    };
}

blip_pretrained!(BlipCaptioner, "BlipForConditionalGeneration");
blip_pretrained!(BlipVqa, "BlipForQuestionAnswering");
