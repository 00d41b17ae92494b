//! Does co-attention help cross-modal reasoning? Three ways to fuse a question with an image,
//! trained at about the same parameter count and the same budget on generated visual questions
//! ([`crate::data::vqa_scenes`]), scored on held-out scenes with seen and with unseen
//! colour–shape combinations:
//!
//! - [`Fusion::CoAttention`]: two streams (ViLBERT/LXMERT): a language layer, a vision layer,
//!   then cross-modality layers ([`crate::nn::CoAttentionLayer`], LXMERT's layout) in which each
//!   stream attends to the other; the pooled text `[CLS]` times the pooled patches (ViLBERT's
//!   "mul") goes to the head.
//! - [`Fusion::SingleStream`]: one transformer over the question's tokens and the patches
//!   concatenated (VisualBERT / ViLT style), a type embedding telling them apart.
//! - [`Fusion::LateFusion`]: a text encoder and an image encoder that never see each other;
//!   their pooled embeddings (text `[CLS]`, mean of the patches) meet in an MLP over
//!   `[t, v, t ⊙ v]` (CLIP-style embeddings + a classifier).
//!
//! All three share the embeddings (BERT-style word + position; LXMERT-style patches:
//! `(LN(fc(pixels)) + LN(fc(box))) / 2`), the post-norm BERT layers and LXMERT's answer head.
use crate::data::shape_scenes::HELD_OUT;
use crate::data::vqa_scenes::{self, answers, question_words, QuestionKind, VqaSample};
use crate::nn::coattention::LXMERT_X_LAYER;
use crate::nn::Precision;
use crate::nn::{
    check_heads, padding_mask, Activation, BlockConfig, BlockNames, CoAttentionLayer,
    CoLayerConfig, Ctx, EncoderBlock, LayerNorm, Linear, ParamStore, Then, Trace,
};
use crate::progress::Progress;
use crate::train::{cross_entropy, descend, lr_at, AdamW, AdamWConfig, DecayRule, Schedule};
use crate::{Error, Result};
use candle_core::{DType, Device, IndexOp, Tensor, D};
use candle_nn::{Init, VarBuilder};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Question tokens before [`question_words`].
pub const SPECIALS: [&str; 3] = ["[PAD]", "[CLS]", "[SEP]"];
const CLS: u32 = 1;
const SEP: u32 = 2;
/// Longest question (9 words) with `[CLS]` and `[SEP]`, rounded up.
const MAX_TOKENS: usize = 16;

/// How the question meets the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fusion {
    CoAttention,
    SingleStream,
    LateFusion,
}

impl Fusion {
    pub const ALL: [Fusion; 3] = [
        Fusion::CoAttention,
        Fusion::SingleStream,
        Fusion::LateFusion,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fusion::CoAttention => "co-attention (two streams)",
            Fusion::SingleStream => "single stream (concatenation)",
            Fusion::LateFusion => "late fusion (pooled embeddings + MLP)",
        }
    }

    /// Layers per part, chosen so the three have about the same parameter count (a post-norm
    /// BERT layer has ~12·H² weights; a cross-modality layer ~28·H²): (text, vision, cross)
    /// for co-attention 1 + 1 + 2 (80·H²), 7 joint layers for the single stream (84·H²), 3 +
    /// 3 for late fusion (72·H², plus 4·H² more in its wider head).
    pub fn layers(self) -> (usize, usize, usize) {
        match self {
            Fusion::CoAttention => (1, 1, 2),
            Fusion::SingleStream => (7, 0, 0),
            Fusion::LateFusion => (3, 3, 0),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FusionConfig {
    pub image_size: usize,
    pub patch_size: usize,
    pub hidden: usize,
    pub heads: usize,
    pub train_samples: usize,
    pub test_samples: usize,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub seed: u64,
}

impl Default for FusionConfig {
    fn default() -> Self {
        FusionConfig {
            image_size: 48,
            patch_size: 8,
            hidden: 64,
            heads: 4,
            train_samples: 12_000,
            test_samples: 1_000,
            epochs: 8,
            batch_size: 64,
            lr: 1e-3,
            seed: 0,
        }
    }
}

impl FusionConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(format!("fusion VQA: {m}")));
        if self.patch_size == 0 || !self.image_size.is_multiple_of(self.patch_size) {
            return bad(format!(
                "patch size {} must divide image size {}",
                self.patch_size, self.image_size
            ));
        }
        if self.image_size < 24 {
            return bad(format!("image size {} is under 24", self.image_size));
        }
        if self.train_samples == 0 || self.test_samples == 0 || self.epochs == 0 {
            return bad("samples and epochs must be positive".into());
        }
        if self.batch_size == 0 {
            return bad("batch size 0".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("learning rate {} must be positive", self.lr));
        }
        check_heads(self.hidden, self.heads)
    }

    fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// One post-norm BERT layer.
    fn block(&self) -> BlockConfig {
        BlockConfig {
            dim: self.hidden,
            heads: self.heads,
            mlp_dim: 4 * self.hidden,
            act: Activation::Gelu,
            pre_norm: false,
            eps: 1e-12,
            qkv_bias: true,
            dropout: 0.0,
            mlp_dropout: 0.0,
            attn_dropout: 0.0,
        }
    }
}

/// One batch, model-ready.
#[derive(Clone, Debug)]
pub struct VqaBatch {
    /// [B, T] u32: `[CLS] words [SEP] [PAD]…`
    pub ids: Tensor,
    /// [B, T] f32, 1 for tokens.
    pub mask: Tensor,
    /// [B, N, P·P·3] pixels scaled to [-1, 1], patches in row-major order.
    pub patches: Tensor,
    /// [B, N, 4] each patch's normalised corners (x1, y1, x2, y2).
    pub boxes: Tensor,
    /// `[B]` u32 answer indices.
    pub answers: Tensor,
}

/// Token id of a question word.
fn token(word: &str) -> Result<u32> {
    question_words()
        .iter()
        .position(|w| *w == word)
        .map(|i| (i + SPECIALS.len()) as u32)
        .ok_or_else(|| Error::Config(format!("{word:?} is not a question word")))
}

/// Tensors for `samples` (all of one image size).
pub fn batch(samples: &[&VqaSample], cfg: &FusionConfig, device: &Device) -> Result<VqaBatch> {
    let b = samples.len();
    let (s, p, g) = (cfg.image_size, cfg.patch_size, cfg.grid());
    let t = samples
        .iter()
        .map(|x| x.question.len() + 2)
        .max()
        .unwrap_or(2);
    if t > MAX_TOKENS {
        return Err(Error::Config(format!(
            "a question of {} tokens exceeds {MAX_TOKENS}",
            t
        )));
    }
    let mut ids = vec![0u32; b * t];
    let mut mask = vec![0f32; b * t];
    let mut px = Vec::with_capacity(b * g * g * p * p * 3);
    for (i, x) in samples.iter().enumerate() {
        if x.size != s {
            return Err(Error::Shape(format!(
                "a {}-pixel scene in a {s}-pixel run",
                x.size
            )));
        }
        let row = std::iter::once(Ok(CLS))
            .chain(x.question.iter().map(|w| token(w)))
            .chain(std::iter::once(Ok(SEP)))
            .collect::<Result<Vec<u32>>>()?;
        ids[i * t..i * t + row.len()].copy_from_slice(&row);
        mask[i * t..i * t + row.len()].fill(1.0);
        for gy in 0..g {
            for gx in 0..g {
                for y in gy * p..(gy + 1) * p {
                    for xx in gx * p..(gx + 1) * p {
                        let o = (y * s + xx) * 3;
                        px.extend(x.rgb[o..o + 3].iter().map(|&v| v as f32 / 127.5 - 1.0));
                    }
                }
            }
        }
    }
    let boxes: Vec<f32> = (0..g * g)
        .flat_map(|k| {
            let (gy, gx) = ((k / g) as f32, (k % g) as f32);
            let g = g as f32;
            [gx / g, gy / g, (gx + 1.0) / g, (gy + 1.0) / g]
        })
        .collect();
    let answers: Vec<u32> = samples.iter().map(|x| x.answer as u32).collect();
    Ok(VqaBatch {
        ids: Tensor::from_vec(ids, (b, t), device)?,
        mask: Tensor::from_vec(mask, (b, t), device)?,
        patches: Tensor::from_vec(px, (b, g * g, p * p * 3), device)?,
        boxes: Tensor::from_vec(boxes, (1, g * g, 4), device)?
            .broadcast_as((b, g * g, 4))?
            .contiguous()?,
        answers: Tensor::from_vec(answers, b, device)?,
    })
}

/// The fusion part of a [`FusionVqa`].
#[derive(Clone, Debug)]
enum Body {
    Co {
        text: Vec<EncoderBlock>,
        vision: Vec<EncoderBlock>,
        cross: Vec<CoAttentionLayer>,
    },
    Single {
        types: Tensor,
        layers: Vec<EncoderBlock>,
    },
    Late {
        text: Vec<EncoderBlock>,
        vision: Vec<EncoderBlock>,
    },
}

/// The text and the patches through their own layers, apart.
fn encode_streams(
    text_layers: &[EncoderBlock],
    vision_layers: &[EncoderBlock],
    mut text: Tensor,
    mut vis: Tensor,
    text_mask: &Tensor,
    ctx: &mut Ctx,
) -> Result<(Tensor, Tensor)> {
    for layer in text_layers {
        text = layer.forward(&text, Some(text_mask), ctx)?;
    }
    for layer in vision_layers {
        vis = layer.forward(&vis, None, ctx)?;
    }
    Ok((text, vis))
}

/// A question-answering model over patches, with one of the three fusions.
#[derive(Clone, Debug)]
pub struct FusionVqa {
    pub fusion: Fusion,
    cfg: FusionConfig,
    words: Tensor,
    positions: Tensor,
    text_norm: LayerNorm,
    patch_fc: Linear,
    patch_norm: LayerNorm,
    box_fc: Linear,
    box_norm: LayerNorm,
    body: Body,
    pooler: Linear,
    /// Co-attention pools the vision stream too (mean, dense, tanh) and multiplies the two.
    vision_pooler: Option<Linear>,
    head_fc1: Linear,
    head_norm: LayerNorm,
    head_fc2: Linear,
}

impl FusionVqa {
    pub fn new(vb: VarBuilder, fusion: Fusion, cfg: &FusionConfig) -> Result<Self> {
        cfg.validate()?;
        let h = cfg.hidden;
        let std = Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        };
        let vocab = SPECIALS.len() + question_words().len();
        let layers = |vb: VarBuilder, n: usize| -> Result<Vec<EncoderBlock>> {
            (0..n)
                .map(|i| {
                    Ok(EncoderBlock::new(
                        vb.pp(i),
                        &BlockNames::BERT,
                        &cfg.block(),
                    )?)
                })
                .collect()
        };
        let (nt, nv, nx) = fusion.layers();
        let body = match fusion {
            Fusion::CoAttention => {
                let x = CoLayerConfig {
                    dims: [h, h],
                    inner: None,
                    heads: cfg.heads,
                    self_heads: cfg.heads,
                    intermediate: [4 * h; 2],
                    act: Activation::Gelu,
                    attn_dropout: 0.0,
                    dropout: 0.0,
                    eps: 1e-12,
                };
                Body::Co {
                    text: layers(vb.pp("layer"), nt)?,
                    vision: layers(vb.pp("r_layers"), nv)?,
                    cross: (0..nx)
                        .map(|i| {
                            CoAttentionLayer::new(vb.pp("x_layers").pp(i), &LXMERT_X_LAYER, &x)
                        })
                        .collect::<Result<_>>()?,
                }
            }
            Fusion::SingleStream => Body::Single {
                types: vb.get_with_hints((2, h), "token_type_embeddings", std)?,
                layers: layers(vb.pp("layer"), nt)?,
            },
            Fusion::LateFusion => Body::Late {
                text: layers(vb.pp("layer"), nt)?,
                vision: layers(vb.pp("r_layers"), nv)?,
            },
        };
        let head_in = if fusion == Fusion::LateFusion {
            3 * h
        } else {
            h
        };
        let pp = cfg.patch_size * cfg.patch_size * 3;
        Ok(FusionVqa {
            fusion,
            words: vb.get_with_hints((vocab, h), "word_embeddings", std)?,
            positions: vb.get_with_hints((MAX_TOKENS, h), "position_embeddings", std)?,
            text_norm: LayerNorm::new(vb.pp("text_norm"), h, 1e-12)?,
            patch_fc: Linear::new(vb.pp("visn_fc"), pp, h, true)?,
            patch_norm: LayerNorm::new(vb.pp("visn_layer_norm"), h, 1e-12)?,
            box_fc: Linear::new(vb.pp("box_fc"), 4, h, true)?,
            box_norm: LayerNorm::new(vb.pp("box_layer_norm"), h, 1e-12)?,
            body,
            pooler: Linear::new(vb.pp("pooler"), h, h, true)?,
            vision_pooler: match fusion {
                Fusion::CoAttention => Some(Linear::new(vb.pp("vision_pooler"), h, h, true)?),
                _ => None,
            },
            head_fc1: Linear::new(vb.pp("answer_head.0"), head_in, 2 * h, true)?,
            head_norm: LayerNorm::new(vb.pp("answer_head.2"), 2 * h, 1e-12)?,
            head_fc2: Linear::new(vb.pp("answer_head.3"), 2 * h, answers().len(), true)?,
            cfg: cfg.clone(),
        })
    }

    /// Answer scores [B, answers]. With a trace on, the co-attention model records (per layer,
    /// in order) text, vision, then per cross layer text→vision, vision→text, text and vision
    /// self-attention; the single stream its joint layers.
    pub fn forward(&self, x: &VqaBatch, ctx: &mut Ctx) -> Result<Tensor> {
        let (b, t) = x.ids.dims2()?;
        let h = self.cfg.hidden;
        // [B, T] -> [B, T, H]
        let words = self
            .words
            .index_select(&x.ids.flatten_all()?, 0)?
            .reshape((b, t, h))?;
        let text = self
            .text_norm
            .forward(&words.broadcast_add(&self.positions.narrow(0, 0, t)?.unsqueeze(0)?)?)?;
        // [B, N, P·P·3], [B, N, 4] -> [B, N, H]
        let feats =
            self.patch_norm
                .forward(&self.patch_fc.forward(&x.patches, Then::none(), ctx)?)?;
        let boxes = self
            .box_norm
            .forward(&self.box_fc.forward(&x.boxes, Then::none(), ctx)?)?;
        let vis = ((feats + boxes)? * 0.5)?;
        let n = vis.dim(1)?;
        let text_mask = padding_mask(&x.mask, DType::F32)?;
        let pooler = &self.pooler;
        let cls = |s: &Tensor, ctx: &mut Ctx| -> Result<Tensor> {
            Ok(pooler.forward(&s.i((.., 0))?, Then::none(), ctx)?.tanh()?)
        };
        let pooled = match &self.body {
            Body::Co {
                text: tl,
                vision: vl,
                cross,
            } => {
                let (mut l, mut v) = encode_streams(tl, vl, text, vis, &text_mask, ctx)?;
                for layer in cross {
                    (l, v) = layer.forward(&l, Some(&text_mask), &v, None, ctx)?;
                }
                // ViLBERT's "mul" pooling: both streams reach the head.
                let vp = match &self.vision_pooler {
                    Some(p) => p.forward(&v.mean(1)?, Then::none(), ctx)?.tanh()?,
                    None => return Err(Error::Msg("co-attention without a vision pooler".into())),
                };
                (cls(&l, ctx)? * vp)?
            }
            Body::Single { types, layers } => {
                let tt = text.broadcast_add(&types.i(0)?.reshape((1, 1, h))?)?;
                let vv = vis.broadcast_add(&types.i(1)?.reshape((1, 1, h))?)?;
                let mut s = Tensor::cat(&[&tt, &vv], 1)?;
                // [B, T + N]: the patches are never padding.
                let keep = Tensor::cat(
                    &[&x.mask, &Tensor::ones((b, n), DType::F32, x.mask.device())?],
                    1,
                )?;
                let mask = padding_mask(&keep, DType::F32)?;
                for layer in layers {
                    s = layer.forward(&s, Some(&mask), ctx)?;
                }
                cls(&s, ctx)?
            }
            Body::Late {
                text: tl,
                vision: vl,
            } => {
                let (l, v) = encode_streams(tl, vl, text, vis, &text_mask, ctx)?;
                let tp = cls(&l, ctx)?;
                let vp = v.mean(1)?;
                Tensor::cat(&[&tp, &vp, &(&tp * &vp)?], D::Minus1)?
            }
        };
        let y = self
            .head_fc1
            .forward(&pooled, Then::act(Activation::Gelu), ctx)?;
        Ok(self
            .head_fc2
            .forward(&self.head_norm.forward(&y)?, Then::none(), ctx)?)
    }

    /// Per sample, per question token (`[CLS]` first), the attention of that token over the
    /// patches `[N]` in the last fusing layer, averaged over heads: the text→vision co-attention,
    /// or (single stream) the token's attention to the patch positions renormalised to sum to 1.
    /// Late fusion has no such map (an error).
    pub fn question_maps(&self, x: &VqaBatch) -> Result<Vec<Vec<Vec<f32>>>> {
        let mut trace = Trace::default();
        self.forward(x, &mut Ctx::eval().with_trace(&mut trace))?;
        let t = x.ids.dim(1)?;
        let att = match &self.body {
            Body::Co {
                text,
                vision,
                cross,
            } => {
                let last = text.len() + vision.len() + 4 * (cross.len() - 1);
                // [B, H, T, N] -> [B, T, N]
                trace.attentions[last].mean(1)?
            }
            Body::Single { .. } => {
                let a = trace
                    .attentions
                    .last()
                    .ok_or_else(|| Error::Msg("no attention recorded".into()))?
                    .mean(1)?;
                // [B, T + N, T + N] -> the text rows, the patch columns, renormalised
                let n = a.dim(2)? - t;
                let p = a.narrow(1, 0, t)?.narrow(2, t, n)?;
                p.broadcast_div(&p.sum_keepdim(2)?)?
            }
            Body::Late { .. } => {
                return Err(Error::Config(
                    "late fusion has no attention between the question and the image".into(),
                ))
            }
        };
        Ok(att.to_vec3::<f32>()?)
    }

    /// Sets the inference dtype of every linear.
    pub fn prepare(&mut self, dtype: Precision) -> Result<()> {
        let layers: Vec<&mut EncoderBlock> = match &mut self.body {
            Body::Co {
                text,
                vision,
                cross,
            } => {
                for c in cross.iter_mut() {
                    c.prepare(dtype)?;
                }
                text.iter_mut().chain(vision.iter_mut()).collect()
            }
            Body::Single { layers, .. } => layers.iter_mut().collect(),
            Body::Late { text, vision } => text.iter_mut().chain(vision.iter_mut()).collect(),
        };
        for l in layers {
            l.prepare(dtype)?;
        }
        for l in [
            &mut self.patch_fc,
            &mut self.box_fc,
            &mut self.pooler,
            &mut self.head_fc1,
            &mut self.head_fc2,
        ] {
            l.prepare(dtype)?;
        }
        Ok(())
    }
}

/// Accuracy on one test set, overall and per question kind.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    pub overall: f64,
    pub colour: f64,
    pub shape: f64,
    pub left_of: f64,
    pub above: f64,
    pub samples: usize,
}

/// One architecture's run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FusionReport {
    pub fusion: Fusion,
    pub parameters: usize,
    /// Mean training loss per epoch.
    pub losses: Vec<f64>,
    pub train_seconds: f64,
    pub seen: Accuracy,
    pub unseen: Accuracy,
}

/// Scores `model` on `samples`.
pub fn evaluate(model: &FusionVqa, samples: &[VqaSample], device: &Device) -> Result<Accuracy> {
    let mut right = std::collections::HashMap::<QuestionKind, (usize, usize)>::new();
    for chunk in samples.chunks(200) {
        let refs: Vec<&VqaSample> = chunk.iter().collect();
        let x = batch(&refs, &model.cfg, device)?;
        let pred: Vec<u32> = model
            .forward(&x, &mut Ctx::inference())?
            .argmax(D::Minus1)?
            .to_vec1()?;
        for (s, p) in chunk.iter().zip(pred) {
            let e = right.entry(s.kind).or_default();
            e.0 += (p as usize == s.answer) as usize;
            e.1 += 1;
        }
    }
    let acc = |k: QuestionKind| {
        right
            .get(&k)
            .map(|(r, n)| *r as f64 / (*n).max(1) as f64)
            .unwrap_or(0.0)
    };
    let (r, n) = right.values().fold((0, 0), |(a, b), (r, n)| (a + r, b + n));
    Ok(Accuracy {
        overall: r as f64 / n.max(1) as f64,
        colour: acc(QuestionKind::Colour),
        shape: acc(QuestionKind::Shape),
        left_of: acc(QuestionKind::LeftOf),
        above: acc(QuestionKind::Above),
        samples: n,
    })
}

/// The three data sets of a run: training, seen and unseen test.
pub fn datasets(cfg: &FusionConfig) -> [Vec<VqaSample>; 3] {
    let s = cfg.image_size;
    [
        vqa_scenes::samples(cfg.train_samples, s, &HELD_OUT, false, cfg.seed),
        vqa_scenes::samples(cfg.test_samples, s, &HELD_OUT, false, cfg.seed + 1_000_001),
        vqa_scenes::samples(cfg.test_samples, s, &HELD_OUT, true, cfg.seed + 2_000_003),
    ]
}

/// Trains one architecture from scratch (AdamW, warm-up then cosine, clipping at 1) and scores
/// it; returns the model too (for attention maps).
pub fn train(
    fusion: Fusion,
    cfg: &FusionConfig,
    data: &[Vec<VqaSample>; 3],
    device: &Device,
    progress: &dyn Progress,
) -> Result<(FusionVqa, FusionReport)> {
    cfg.validate()?;
    let store = ParamStore::fresh(cfg.seed, true, device);
    let model = FusionVqa::new(store.var_builder(DType::F32), fusion, cfg)?;
    let vars = store.vars();
    let parameters = vars.iter().map(|(_, v)| v.elem_count()).sum();
    let var_list: Vec<_> = vars.iter().map(|(_, v)| v.clone()).collect();
    let mut opt = AdamW::new(
        vars,
        AdamWConfig {
            lr: cfg.lr,
            weight_decay: 0.01,
            decay: DecayRule::HfTrainer,
            ..AdamWConfig::default()
        },
    );
    let [train, seen, unseen] = data;
    let steps_per_epoch = train.len().div_ceil(cfg.batch_size);
    let total = steps_per_epoch * cfg.epochs;
    let warmup = total / 20;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut losses = vec![];
    let t0 = std::time::Instant::now();
    let mut step = 0;
    for epoch in 0..cfg.epochs {
        order.shuffle(&mut rng);
        progress.start(
            &format!("{} epoch {}/{}", fusion.name(), epoch + 1, cfg.epochs),
            Some(steps_per_epoch as u64),
        );
        let (mut sum, mut n) = (0f64, 0usize);
        for idx in order.chunks(cfg.batch_size) {
            let refs: Vec<&VqaSample> = idx.iter().map(|&i| &train[i]).collect();
            let x = batch(&refs, cfg, device)?;
            let logits = model.forward(&x, &mut Ctx::train(&mut rng))?;
            let loss = cross_entropy(&logits, &x.answers, 0.0)?;
            let lr = lr_at(cfg.lr, step, warmup, total, Schedule::Cosine);
            let l = descend(&loss, &mut opt, &var_list, 1.0, lr, step)?;
            step += 1;
            sum += l * idx.len() as f64;
            n += idx.len();
            progress.advance(1, &format!("loss {:.4}", sum / n as f64));
        }
        progress.finish();
        losses.push(sum / n.max(1) as f64);
    }
    let train_seconds = t0.elapsed().as_secs_f64();
    let report = FusionReport {
        fusion,
        parameters,
        losses,
        train_seconds,
        seen: evaluate(&model, seen, device)?,
        unseen: evaluate(&model, unseen, device)?,
    };
    Ok((model, report))
}
