//! LXMERT (`LxmertModel`, `LxmertForQuestionAnswering`): the Hugging Face model of ViLBERT's
//! two-stream family. Words go through BERT embeddings and `l_layers` language layers; image
//! regions (detector features `[B, N, visual_feat_dim]` with their normalised corners
//! `[B, N, 4]`) through `(LN(fc(feats)) + LN(fc(boxes))) / 2` and `r_layers` relationship layers;
//! then `x_layers` cross-modality layers ([`crate::nn::CoAttentionLayer`] with
//! [`crate::nn::coattention::LXMERT_X_LAYER`]: one cross-attention module shared by both
//! directions, then self-attention and a feed-forward per stream). The pooler takes the
//! language `[CLS]`; the QA head maps it to `num_qa_labels` answer scores.
//!
//! Every LayerNorm eps is 1e-12 (hard-coded in transformers). On-disk names are transformers':
//! `embeddings.*`, `encoder.{visn_fc, layer, r_layers, x_layers}.*`, `pooler.dense`, and for
//! the QA model everything under `lxmert.` plus `answer_head.logit_fc.{0,2,3}`.
//!
//! transformers does not ship the Faster R-CNN that produces the region features; callers bring
//! them (any `[B, N, visual_feat_dim]` features work, as in the co-attention experiment).
use crate::models::load::{fresh, strict, Checkpoint, LoadOptions, Loaded, Pretrained};
use crate::models::Family;
use crate::nn::coattention::LXMERT_X_LAYER;
use crate::nn::Precision;
use crate::nn::{
    check_heads, padding_mask, Activation, BlockConfig, BlockNames, CoAttentionLayer,
    CoLayerConfig, Ctx, EncoderBlock, LayerNorm, Linear, Then,
};
use crate::{Error, Result};
use candle_core::{DType, Tensor};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

/// LXMERT's LayerNorm eps, whatever the config says.
const EPS: f64 = 1e-12;

/// `transformers.LxmertConfig` (defaults equal; fields it does not read kept as they are).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LxmertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_attention_heads: usize,
    pub num_qa_labels: usize,
    pub num_object_labels: usize,
    pub num_attr_labels: usize,
    pub intermediate_size: usize,
    pub hidden_act: Activation,
    pub hidden_dropout_prob: f64,
    pub attention_probs_dropout_prob: f64,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub initializer_range: f64,
    /// Language layers.
    pub l_layers: usize,
    /// Cross-modality layers.
    pub x_layers: usize,
    /// Relationship (vision) layers.
    pub r_layers: usize,
    pub visual_feat_dim: usize,
    pub visual_pos_dim: usize,
    pub architectures: Vec<String>,
    pub model_type: String,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Default for LxmertConfig {
    fn default() -> Self {
        LxmertConfig {
            vocab_size: 30522,
            hidden_size: 768,
            num_attention_heads: 12,
            num_qa_labels: 9500,
            num_object_labels: 1600,
            num_attr_labels: 400,
            intermediate_size: 3072,
            hidden_act: Activation::Gelu,
            hidden_dropout_prob: 0.1,
            attention_probs_dropout_prob: 0.1,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            initializer_range: 0.02,
            l_layers: 9,
            x_layers: 5,
            r_layers: 5,
            visual_feat_dim: 2048,
            visual_pos_dim: 4,
            architectures: vec!["LxmertForQuestionAnswering".into()],
            model_type: "lxmert".into(),
            extra: Default::default(),
        }
    }
}

impl LxmertConfig {
    fn check(&self) -> Result<()> {
        check_heads(self.hidden_size, self.num_attention_heads)?;
        let zero = [
            ("vocab_size", self.vocab_size),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
            ("visual_feat_dim", self.visual_feat_dim),
            ("visual_pos_dim", self.visual_pos_dim),
        ];
        if let Some((name, _)) = zero.iter().find(|(_, v)| *v == 0) {
            return Err(Error::Config(format!("LXMERT config: {name} is 0")));
        }
        for (name, p) in [
            ("hidden_dropout_prob", self.hidden_dropout_prob),
            (
                "attention_probs_dropout_prob",
                self.attention_probs_dropout_prob,
            ),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(Error::Config(format!(
                    "LXMERT config: {name} {p} is outside [0, 1)"
                )));
            }
        }
        Ok(())
    }

    /// Whether the checkpoint is the question-answering model (weights under `lxmert.`).
    fn is_qa(&self) -> bool {
        self.architectures
            .first()
            .is_some_and(|a| a != "LxmertModel")
    }

    /// One language or relationship layer: post-norm BERT.
    fn block(&self) -> BlockConfig {
        BlockConfig {
            dim: self.hidden_size,
            heads: self.num_attention_heads,
            mlp_dim: self.intermediate_size,
            act: self.hidden_act,
            pre_norm: false,
            eps: EPS,
            qkv_bias: true,
            dropout: self.hidden_dropout_prob,
            mlp_dropout: 0.0,
            attn_dropout: self.attention_probs_dropout_prob,
        }
    }
}

/// The inputs of one forward. Masks are 1 (keep) / 0 (padding), any float or integer dtype.
#[derive(Clone, Copy, Debug)]
pub struct LxmertInputs<'a> {
    /// Token ids [B, T] (u32).
    pub input_ids: &'a Tensor,
    /// [B, T]; `None`: every token.
    pub attention_mask: Option<&'a Tensor>,
    /// [B, T] (u32); `None`: zeros.
    pub token_type_ids: Option<&'a Tensor>,
    /// Region features [B, N, visual_feat_dim].
    pub visual_feats: &'a Tensor,
    /// Region boxes [B, N, visual_pos_dim] (normalised x1, y1, x2, y2).
    pub visual_pos: &'a Tensor,
    /// [B, N]; `None`: every region.
    pub visual_attention_mask: Option<&'a Tensor>,
}

/// What one forward returns.
#[derive(Clone, Debug)]
pub struct LxmertOutput {
    /// [B, T, H]
    pub language: Tensor,
    /// [B, N, H]
    pub vision: Tensor,
    /// tanh(dense(language[:, 0])) [B, H]
    pub pooled: Tensor,
    /// The QA head's answer scores [B, num_qa_labels] (`LxmertForQuestionAnswering`).
    pub answer_scores: Option<Tensor>,
}

/// `LxmertVisualAnswerHead`: Linear(H, 2H), GELU, LayerNorm, Linear(2H, labels).
#[derive(Clone, Debug)]
struct AnswerHead {
    fc1: Linear,
    norm: LayerNorm,
    fc2: Linear,
}

/// `LxmertModel`, with the QA head when the checkpoint is `LxmertForQuestionAnswering`.
#[derive(Clone, Debug)]
pub struct Lxmert {
    pub config: LxmertConfig,
    word_embeddings: Tensor,
    position_embeddings: Tensor,
    token_type_embeddings: Tensor,
    embed_norm: LayerNorm,
    visn_fc: Linear,
    visn_norm: LayerNorm,
    box_fc: Linear,
    box_norm: LayerNorm,
    layers: Vec<EncoderBlock>,
    r_layers: Vec<EncoderBlock>,
    x_layers: Vec<CoAttentionLayer>,
    pooler: Linear,
    answer_head: Option<AnswerHead>,
}

impl Lxmert {
    /// `vb` at the checkpoint's root: `LxmertForQuestionAnswering` (`lxmert.` + `answer_head.`)
    /// or `LxmertModel`, as `config.architectures` says.
    pub fn new(vb: VarBuilder, c: &LxmertConfig) -> Result<Self> {
        c.check()?;
        let (base, head) = if c.is_qa() {
            (vb.pp("lxmert"), Some(vb.pp("answer_head").pp("logit_fc")))
        } else {
            (vb, None)
        };
        let h = c.hidden_size;
        let std = Init::Randn {
            mean: 0.0,
            stdev: c.initializer_range,
        };
        let emb = base.pp("embeddings");
        let enc = base.pp("encoder");
        let vfc = enc.pp("visn_fc");
        let bert = |vb: VarBuilder, n: usize| -> Result<Vec<EncoderBlock>> {
            (0..n)
                .map(|i| Ok(EncoderBlock::new(vb.pp(i), &BlockNames::BERT, &c.block())?))
                .collect()
        };
        let x_cfg = CoLayerConfig {
            dims: [h, h],
            inner: None,
            heads: c.num_attention_heads,
            self_heads: c.num_attention_heads,
            intermediate: [c.intermediate_size; 2],
            act: c.hidden_act,
            attn_dropout: c.attention_probs_dropout_prob,
            dropout: c.hidden_dropout_prob,
            eps: EPS,
        };
        Ok(Lxmert {
            word_embeddings: emb.get_with_hints(
                (c.vocab_size, h),
                "word_embeddings.weight",
                std,
            )?,
            position_embeddings: emb.get_with_hints(
                (c.max_position_embeddings, h),
                "position_embeddings.weight",
                std,
            )?,
            token_type_embeddings: emb.get_with_hints(
                (c.type_vocab_size, h),
                "token_type_embeddings.weight",
                std,
            )?,
            embed_norm: LayerNorm::new(emb.pp("LayerNorm"), h, EPS)?,
            visn_fc: Linear::new(vfc.pp("visn_fc"), c.visual_feat_dim, h, true)?,
            visn_norm: LayerNorm::new(vfc.pp("visn_layer_norm"), h, EPS)?,
            box_fc: Linear::new(vfc.pp("box_fc"), c.visual_pos_dim, h, true)?,
            box_norm: LayerNorm::new(vfc.pp("box_layer_norm"), h, EPS)?,
            layers: bert(enc.pp("layer"), c.l_layers)?,
            r_layers: bert(enc.pp("r_layers"), c.r_layers)?,
            x_layers: (0..c.x_layers)
                .map(|i| CoAttentionLayer::new(enc.pp("x_layers").pp(i), &LXMERT_X_LAYER, &x_cfg))
                .collect::<Result<_>>()?,
            pooler: Linear::new(base.pp("pooler").pp("dense"), h, h, true)?,
            answer_head: match head {
                Some(vb) => Some(AnswerHead {
                    fc1: Linear::new(vb.pp("0"), h, 2 * h, true)?,
                    norm: LayerNorm::new(vb.pp("2"), 2 * h, EPS)?,
                    fc2: Linear::new(vb.pp("3"), 2 * h, c.num_qa_labels, true)?,
                }),
                None => None,
            },
            config: c.clone(),
        })
    }

    /// Language, vision, pooled states and (QA model) answer scores. The trace gets every
    /// attention in order: the language layers', the relationship layers', then per
    /// cross-modality layer language→vision, vision→language, language self, vision self.
    pub fn forward(&self, x: &LxmertInputs, ctx: &mut Ctx) -> Result<LxmertOutput> {
        let c = &self.config;
        let (b, t) = x.input_ids.dims2()?;
        let (vb_, n, f) = x.visual_feats.dims3()?;
        let (pb, pn, pd) = x.visual_pos.dims3()?;
        if vb_ != b || pb != b || pn != n || f != c.visual_feat_dim || pd != c.visual_pos_dim {
            return Err(Error::Shape(format!(
                "LXMERT takes ids [B, T], visual_feats [B, N, {}] and visual_pos [B, N, {}]; got \
                 [{b}, {t}], [{vb_}, {n}, {f}] and [{pb}, {pn}, {pd}]",
                c.visual_feat_dim, c.visual_pos_dim
            )));
        }
        if t == 0 || n == 0 {
            return Err(Error::Shape(
                "LXMERT needs at least one token and one region".into(),
            ));
        }
        if t > c.max_position_embeddings {
            return Err(Error::Shape(format!(
                "{t} tokens exceed max_position_embeddings {}",
                c.max_position_embeddings
            )));
        }
        let within = |ids: &Tensor, limit: usize, what: &str| -> Result<()> {
            let v: Vec<u32> = ids.flatten_all()?.to_dtype(DType::U32)?.to_vec1()?;
            match v.iter().find(|&&i| i as usize >= limit) {
                Some(bad) => Err(Error::Shape(format!("{what} {bad} is outside 0..{limit}"))),
                None => Ok(()),
            }
        };
        within(x.input_ids, c.vocab_size, "token id")?;
        let h = c.hidden_size;
        let dev = x.visual_feats.device();
        // [B, T] -> [B, T, H]: words + positions + token types
        let words = self
            .word_embeddings
            .index_select(&x.input_ids.flatten_all()?, 0)?
            .reshape((b, t, h))?;
        let positions = self.position_embeddings.narrow(0, 0, t)?.unsqueeze(0)?;
        let types = match x.token_type_ids {
            Some(tt) => {
                if tt.dims() != [b, t] {
                    return Err(Error::Shape(format!(
                        "token_type_ids {:?} must be [{b}, {t}]",
                        tt.dims()
                    )));
                }
                within(tt, c.type_vocab_size, "token type")?;
                self.token_type_embeddings
                    .index_select(&tt.flatten_all()?.to_dtype(DType::U32)?, 0)?
                    .reshape((b, t, h))?
            }
            None => self
                .token_type_embeddings
                .get(0)?
                .reshape((1, 1, h))?
                .broadcast_as((b, t, h))?,
        };
        let lang_in = words.broadcast_add(&positions)?.add(&types)?;
        let mut lang = self.embed_norm.forward(&lang_in)?;
        let mask = |m: Option<&Tensor>, len: usize, what: &str| -> Result<Option<Tensor>> {
            m.map(|m| {
                if m.dims() != [b, len] {
                    return Err(Error::Shape(format!(
                        "{what} {:?} must be [{b}, {len}]",
                        m.dims()
                    )));
                }
                Ok(padding_mask(&m.to_device(dev)?, DType::F32)?)
            })
            .transpose()
        };
        // transformers always builds the language mask (all ones when none is given).
        let lang_mask = mask(x.attention_mask, t, "attention_mask")?;
        let vis_mask = mask(x.visual_attention_mask, n, "visual_attention_mask")?;
        // [B, N, F], [B, N, 4] -> [B, N, H]
        let feats =
            self.visn_norm
                .forward(&self.visn_fc.forward(x.visual_feats, Then::none(), ctx)?)?;
        let boxes =
            self.box_norm
                .forward(&self.box_fc.forward(x.visual_pos, Then::none(), ctx)?)?;
        let mut vis = ((feats + boxes)? * 0.5)?;
        for l in &self.layers {
            lang = l.forward(&lang, lang_mask.as_ref(), ctx)?;
        }
        for l in &self.r_layers {
            vis = l.forward(&vis, vis_mask.as_ref(), ctx)?;
        }
        for l in &self.x_layers {
            (lang, vis) = l.forward(&lang, lang_mask.as_ref(), &vis, vis_mask.as_ref(), ctx)?;
        }
        // [B, T, H] -> [B, H]
        let cls = lang.narrow(1, 0, 1)?.squeeze(1)?;
        let pooled = self.pooler.forward(&cls, Then::none(), ctx)?.tanh()?;
        let answer_scores = match &self.answer_head {
            Some(a) => {
                let y = a.fc1.forward(&pooled, Then::act(Activation::Gelu), ctx)?;
                Some(a.fc2.forward(&a.norm.forward(&y)?, Then::none(), ctx)?)
            }
            None => None,
        };
        Ok(LxmertOutput {
            language: lang,
            vision: vis,
            pooled,
            answer_scores,
        })
    }

    /// The model computing its linears in `dtype` on the inference path.
    pub fn prepare(&mut self, dtype: Precision) -> Result<()> {
        for l in self.layers.iter_mut().chain(self.r_layers.iter_mut()) {
            l.prepare(dtype)?;
        }
        for l in &mut self.x_layers {
            l.prepare(dtype)?;
        }
        for l in [&mut self.visn_fc, &mut self.box_fc, &mut self.pooler] {
            l.prepare(dtype)?;
        }
        if let Some(a) = &mut self.answer_head {
            a.fc1.prepare(dtype)?;
            a.fc2.prepare(dtype)?;
        }
        Ok(())
    }
}

impl Pretrained for Lxmert {
    type Config = LxmertConfig;
    const EXTRA_FILES: &'static [&'static str] = &["vocab.txt", "tokenizer.json"];

    fn from_config(config: &LxmertConfig, opts: &LoadOptions) -> Result<Loaded<Self>> {
        fresh(opts, |vb| Lxmert::new(vb, config))
    }

    /// `LxmertModel` or `LxmertForQuestionAnswering` (safetensors or `pytorch_model.bin`); a
    /// pre-training checkpoint's other heads (`cls.*`, `obj_predict_head.*`) are left unread.
    fn from_checkpoint(ckpt: Checkpoint, opts: &LoadOptions) -> Result<Loaded<Self>> {
        ckpt.expect(Family::Lxmert)?;
        let config: LxmertConfig = ckpt.config()?;
        strict(
            ckpt,
            opts,
            |k| !k.starts_with("cls.") && !k.starts_with("obj_predict_head."),
            |vb| Lxmert::new(vb, &config),
        )
    }

    fn with_precision(&self, dtype: Precision) -> Result<Self> {
        let mut m = self.clone();
        m.prepare(dtype)?;
        Ok(m)
    }

    fn config(&self) -> &LxmertConfig {
        &self.config
    }
}
