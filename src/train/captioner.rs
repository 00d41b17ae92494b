//! A BLIP-style captioner trained from scratch, offline: a ViT encoder and a BERT-style decoder
//! with cross-attention ([`BlipCaptioner`], transformers' `BlipForConditionalGeneration` layout)
//! learn to caption generated scenes of one to three coloured shapes
//! ([`crate::data::caption_scenes`]) with the language-modelling loss. Held-out scenes score
//! exact captions, per-attribute accuracy (colour, shape, relation, object count) and the
//! pointing game of per-word attention: is each generated shape word's hottest patch on the
//! object it names, against the chance of a random patch. Colour–shape pairs held out of
//! training are scored separately. The run saves a checkpoint `tessera caption` (and
//! transformers) loads: `config.json`, `model.safetensors`, `tokenizer.json`,
//! `preprocessor_config.json`.
use crate::data::caption_scenes::{self, CaptionScene};
use crate::data::shape_scenes::{COLORS, HELD_OUT, SHAPES};
use crate::image::ProcessorConfig;
use crate::models::blip::{
    generation_defaults, BlipCaptioner, BlipConfig, BlipTextConfig, BlipVisionConfig,
};
use crate::models::{LoadOptions, Pretrained};
use crate::nn::generate::GenerationConfig;
use crate::nn::{Activation, Ctx};
use crate::progress::Progress;
use crate::train::{cross_entropy, descend, lr_at, AdamW, AdamWConfig, DecayRule, Schedule};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Special tokens first, then [`caption_scenes::words`].
pub const SPECIALS: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[DEC]"];
const PAD: u32 = 0;
const SEP: u32 = 3;
const BOS: u32 = 4;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CaptionerConfig {
    pub image_size: usize,
    pub patch_size: usize,
    pub hidden: usize,
    pub heads: usize,
    pub vision_layers: usize,
    pub text_layers: usize,
    pub train_scenes: usize,
    pub test_scenes: usize,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub seed: u64,
}

impl Default for CaptionerConfig {
    fn default() -> Self {
        CaptionerConfig {
            image_size: 64,
            patch_size: 8,
            hidden: 96,
            heads: 4,
            vision_layers: 4,
            text_layers: 2,
            train_scenes: 20_000,
            test_scenes: 500,
            epochs: 12,
            batch_size: 64,
            lr: 1e-3,
            seed: 0,
        }
    }
}

impl CaptionerConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.image_size == 0
            || self.patch_size == 0
            || !self.image_size.is_multiple_of(self.patch_size)
        {
            return bad(format!(
                "image size {} must be a positive multiple of the patch size {}",
                self.image_size, self.patch_size
            ));
        }
        if self.image_size < 24 {
            return bad(format!(
                "image size {} is too small to draw three shapes (at least 24)",
                self.image_size
            ));
        }
        if self.epochs == 0 || self.batch_size == 0 || self.train_scenes == 0 {
            return bad("epochs, batch size and training scenes must be positive".into());
        }
        if self.test_scenes == 0 {
            return bad("test scenes must be positive".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("learning rate {} must be a number > 0", self.lr));
        }
        crate::nn::check_heads(self.hidden, self.heads)
    }

    /// The BLIP config of this size (vocabulary: [`SPECIALS`] + the scene words).
    pub fn blip(&self) -> BlipConfig {
        let vocab = SPECIALS.len() + caption_scenes::words().len();
        BlipConfig {
            vision_config: BlipVisionConfig {
                hidden_size: self.hidden,
                intermediate_size: 4 * self.hidden,
                num_hidden_layers: self.vision_layers,
                num_attention_heads: self.heads,
                image_size: self.image_size,
                patch_size: self.patch_size,
                hidden_act: Activation::Gelu,
                layer_norm_eps: 1e-5,
                extra: Default::default(),
            },
            text_config: BlipTextConfig {
                vocab_size: vocab,
                hidden_size: self.hidden,
                encoder_hidden_size: self.hidden,
                intermediate_size: 4 * self.hidden,
                num_hidden_layers: self.text_layers,
                num_attention_heads: self.heads,
                max_position_embeddings: 32,
                bos_token_id: BOS,
                pad_token_id: PAD,
                sep_token_id: SEP,
                ..BlipTextConfig::default()
            },
            extra: Default::default(),
        }
    }
}

/// A word-level `tokenizer.json` over [`SPECIALS`] and the scene words (lower-cased,
/// whitespace-split; special tokens skipped when decoding).
pub fn tokenizer_json() -> serde_json::Value {
    let mut vocab = serde_json::Map::new();
    let all: Vec<&str> = SPECIALS
        .iter()
        .copied()
        .chain(caption_scenes::words())
        .collect();
    for (i, w) in all.iter().enumerate() {
        vocab.insert(w.to_string(), i.into());
    }
    let added: Vec<_> = SPECIALS
        .iter()
        .enumerate()
        .map(|(i, t)| {
            serde_json::json!({"id": i, "content": t, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": {"type": "Lowercase"}, "pre_tokenizer": {"type": "WhitespaceSplit"},
        "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"}
    })
}

/// Caption ids: `[DEC] words… [SEP]`; an unknown word is an error.
fn encode(caption: &str) -> Result<Vec<u32>> {
    let words = caption_scenes::words();
    let mut ids = vec![BOS];
    for w in caption.split_whitespace() {
        let i = words
            .iter()
            .position(|x| *x == w)
            .ok_or_else(|| Error::Msg(format!("{w:?} is not a scene word")))?;
        ids.push((SPECIALS.len() + i) as u32);
    }
    ids.push(SEP);
    Ok(ids)
}

fn word(id: u32) -> Option<&'static str> {
    (id as usize)
        .checked_sub(SPECIALS.len())
        .and_then(|i| caption_scenes::words().get(i).copied())
}

/// Pixels [B, 3, S, S] of scenes through BLIP's processor.
pub fn pixels(
    scenes: &[&CaptionScene],
    processor: &ProcessorConfig,
    device: &Device,
) -> Result<Tensor> {
    let size = scenes.first().map_or(0, |s| s.size);
    let rgb: Vec<&[u8]> = scenes.iter().map(|s| s.rgb.as_slice()).collect();
    super::contrastive::rgb_pixels(&rgb, size, processor, device)
}

/// Teacher-forced language-modelling loss of a batch: every caption token after `[DEC]`
/// (`[SEP]` included) predicted from the ones before, padding ignored.
pub fn lm_loss(
    model: &BlipCaptioner,
    px: &Tensor,
    captions: &[&str],
    ctx: &mut Ctx,
) -> Result<Tensor> {
    let rows: Vec<Vec<u32>> = captions.iter().map(|c| encode(c)).collect::<Result<_>>()?;
    let t = rows.iter().map(Vec::len).max().unwrap_or(0);
    let dev = px.device();
    let ids: Vec<Vec<u32>> = rows
        .iter()
        .map(|r| {
            r.iter()
                .copied()
                .chain(std::iter::repeat_n(PAD, t - r.len()))
                .collect()
        })
        .collect();
    let keep: Vec<Vec<f32>> = rows
        .iter()
        .map(|r| (0..t).map(|j| f32::from(u8::from(j < r.len()))).collect())
        .collect();
    let ids_t = Tensor::new(ids.clone(), dev)?;
    let keep_t = Tensor::new(keep, dev)?;
    let logits = model.forward(px, &ids_t, Some(&keep_t), ctx)?; // [B, T, V]
                                                                 // Positions j < T-1 predict ids[j+1]; only real tokens count.
    let (b, _, v) = logits.dims3()?;
    let mut at = vec![];
    let mut labels = vec![];
    for (i, r) in rows.iter().enumerate() {
        for j in 0..r.len() - 1 {
            at.push((i * t + j) as u32);
            labels.push(r[j + 1]);
        }
    }
    let flat = logits.reshape((b * t, v))?;
    let picked = flat.index_select(&Tensor::new(at, dev)?, 0)?;
    cross_entropy(&picked, &Tensor::new(labels, dev)?, 0.0)
}

/// Scores on one set of held-out scenes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Score {
    pub scenes: usize,
    /// Generated caption equal to the scene's.
    pub exact: f64,
    /// Right number of objects named.
    pub count: f64,
    /// Per object of the scene: its slot names its colour / its shape.
    pub color: f64,
    pub shape: f64,
    /// Scenes of two or more objects: the relation word is right.
    pub relation: f64,
    /// Shape words at a slot with an object: the word's hottest patch is on that object.
    pub pointing: f64,
    /// The chance of a random patch being on it.
    pub pointing_chance: f64,
    pub pointed_words: usize,
}

/// What a caption says of one object: its colour and shape, when named.
type Slot = (Option<usize>, Option<usize>);

/// One generated caption read back as (colour, shape) slots and the relation words used.
fn parse(words: &[&str]) -> (Vec<Slot>, Vec<usize>) {
    let mut slots = vec![];
    let mut relations = vec![];
    let mut cur: Option<Slot> = None;
    let mut i = 0;
    while i < words.len() {
        let w = words[i];
        if w == "a" {
            if let Some(s) = cur.take() {
                slots.push(s);
            }
            cur = Some((None, None));
        } else if let Some(c) = COLORS.iter().position(|(n, _)| *n == w) {
            cur.get_or_insert((None, None)).0 = Some(c);
        } else if let Some(s) = SHAPES.iter().position(|n| *n == w) {
            cur.get_or_insert((None, None)).1 = Some(s);
        } else if w == "left" {
            relations.push(0);
            i += 1; // "of"
        } else if w == "above" {
            relations.push(1);
        }
        i += 1;
    }
    if let Some(s) = cur {
        slots.push(s);
    }
    (slots, relations)
}

/// The index of the largest value (the first of ties).
fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &x)| {
            if x > bv {
                (i, x)
            } else {
                (bi, bv)
            }
        })
        .0
}

/// Greedy captions of `scenes` with per-word attention, scored (see [`Score`]).
pub fn evaluate(
    model: &BlipCaptioner,
    scenes: &[CaptionScene],
    processor: &ProcessorConfig,
    device: &Device,
) -> Result<Score> {
    let grid = model.config.vision_config.image_size / model.config.vision_config.patch_size;
    let cfg = GenerationConfig {
        max_new_tokens: Some(24),
        ..generation_defaults(&model.config.text_config)
    };
    let (mut exact, mut count, mut color, mut shape, mut objects) = (0, 0, 0, 0, 0);
    let (mut rel, mut rel_n, mut hits, mut chance, mut pointed) = (0, 0, 0, 0.0, 0);
    for chunk in scenes.chunks(100) {
        let refs: Vec<&CaptionScene> = chunk.iter().collect();
        let px = pixels(&refs, processor, device)?;
        let g = model.generate(&px, &vec![vec![]; chunk.len()], &cfg, true)?;
        let maps = g
            .cross_attention
            .ok_or_else(|| Error::Msg("no attention maps".into()))?;
        let plen = g.generated.prompt_len;
        for (r, (scene, seq)) in chunk.iter().zip(&g.generated.sequences).enumerate() {
            let new = &seq[plen..];
            let end = new.iter().position(|&i| i == SEP).unwrap_or(new.len());
            let words: Vec<&str> = new[..end].iter().filter_map(|&i| word(i)).collect();
            exact += usize::from(words.join(" ") == scene.caption);
            let (slots, relations) = parse(&words);
            count += usize::from(slots.len() == scene.objects.len());
            for (k, o) in scene.objects.iter().enumerate() {
                let slot = slots.get(k).copied().unwrap_or((None, None));
                color += usize::from(slot.0 == Some(o.color));
                shape += usize::from(slot.1 == Some(o.shape));
                objects += 1;
            }
            if scene.objects.len() > 1 {
                rel_n += 1;
                rel += usize::from(
                    !relations.is_empty() && relations.iter().all(|&x| x == scene.relation),
                );
            }
            // The pointing game: the k-th shape word and the k-th object.
            let mut k = 0;
            for (step, &id) in new[..end].iter().enumerate() {
                if !word(id).is_some_and(|w| SHAPES.contains(&w)) {
                    continue;
                }
                if k < scene.objects.len() {
                    let map: Vec<f32> = maps[step].get(r)?.to_dtype(DType::F32)?.to_vec1()?;
                    let patches = &map[1..];
                    let hot = argmax(patches);
                    hits += usize::from(scene.patch_on(k, grid, hot / grid, hot % grid));
                    chance += scene.patch_fraction(k, grid);
                    pointed += 1;
                }
                k += 1;
            }
        }
    }
    let n = scenes.len().max(1) as f64;
    let frac = |a: usize, b: usize| a as f64 / b.max(1) as f64;
    Ok(Score {
        scenes: scenes.len(),
        exact: exact as f64 / n,
        count: count as f64 / n,
        color: frac(color, objects),
        shape: frac(shape, objects),
        relation: frac(rel, rel_n),
        pointing: frac(hits, pointed),
        pointing_chance: chance / pointed.max(1) as f64,
        pointed_words: pointed,
    })
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub loss: f64,
    pub seconds: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CaptionerReport {
    pub config: CaptionerConfig,
    pub parameters: usize,
    pub held_out_pairs: Vec<String>,
    pub epochs: Vec<EpochLog>,
    pub train_seconds: f64,
    /// Held-out scenes whose colour–shape pairs were all seen in training.
    pub seen: Score,
    /// Held-out scenes with at least one pair never seen in training.
    pub unseen: Score,
}

/// Trains a captioner from scratch on generated scenes and writes the checkpoint, the report
/// (`report.json`) and per-epoch metrics (`metrics.jsonl`) into `out`; trains on `device`.
pub fn run(
    cfg: &CaptionerConfig,
    out: &Path,
    device: &Device,
    progress: &dyn Progress,
) -> Result<CaptionerReport> {
    cfg.validate()?;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let device = device.clone();
    let config = cfg.blip();
    let opts = LoadOptions::default()
        .device(&device)
        .trainable()
        .seed(cfg.seed);
    let loaded = BlipCaptioner::from_config(&config, &opts)?;
    let (model, store) = (loaded.model, loaded.store);
    let processor = ProcessorConfig::blip(cfg.image_size as u32);
    let vars = store.vars();
    let parameters = vars.iter().map(|(_, v)| v.elem_count()).sum();
    let var_list: Vec<_> = vars.iter().map(|(_, v)| v.clone()).collect();
    let mut opt = AdamW::new(
        vars,
        AdamWConfig {
            lr: cfg.lr,
            weight_decay: 0.05,
            decay: DecayRule::HfTrainer,
            ..AdamWConfig::default()
        },
    );
    let train =
        caption_scenes::scenes(cfg.train_scenes, cfg.image_size, &HELD_OUT, false, cfg.seed);
    let seen = caption_scenes::scenes(
        cfg.test_scenes,
        cfg.image_size,
        &HELD_OUT,
        false,
        cfg.seed + 1_000_001,
    );
    let unseen = caption_scenes::scenes(
        cfg.test_scenes,
        cfg.image_size,
        &HELD_OUT,
        true,
        cfg.seed + 2_000_003,
    );
    let steps_per_epoch = train.len().div_ceil(cfg.batch_size);
    let total = steps_per_epoch * cfg.epochs;
    let warmup = total / 20;
    let metrics = out.join("metrics.jsonl");
    super::fit::write_metrics::<EpochLog>(&metrics, &[])?;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut epochs = vec![];
    let t_start = std::time::Instant::now();
    let mut step = 0;
    for epoch in 0..cfg.epochs {
        order.shuffle(&mut rng);
        let t0 = std::time::Instant::now();
        let (mut sum, mut n) = (0f64, 0usize);
        progress.start(
            &format!("epoch {}/{}", epoch + 1, cfg.epochs),
            Some(steps_per_epoch as u64),
        );
        for idx in order.chunks(cfg.batch_size) {
            let batch: Vec<&CaptionScene> = idx.iter().map(|&i| &train[i]).collect();
            let px = pixels(&batch, &processor, &device)?;
            let caps: Vec<&str> = batch.iter().map(|s| s.caption.as_str()).collect();
            let loss = lm_loss(&model, &px, &caps, &mut Ctx::train(&mut rng))?;
            let lr = lr_at(cfg.lr, step, warmup, total, Schedule::Cosine);
            let l = descend(&loss, &mut opt, &var_list, 1.0, lr, step)?;
            step += 1;
            sum += l * idx.len() as f64;
            n += idx.len();
            progress.advance(1, &format!("loss {:.4}", sum / n as f64));
        }
        progress.finish();
        let log = EpochLog {
            epoch: epoch + 1,
            loss: sum / n.max(1) as f64,
            seconds: t0.elapsed().as_secs_f64(),
        };
        progress.note(&format!(
            "epoch {}/{}: caption loss {:.4} ({:.1}s)",
            log.epoch, cfg.epochs, log.loss, log.seconds
        ));
        super::fit::append_metrics(&metrics, &log)?;
        epochs.push(log);
    }
    let train_seconds = t_start.elapsed().as_secs_f64();
    model.save_pretrained(&store, out)?;
    crate::util::write_json(&out.join("tokenizer.json"), &tokenizer_json())?;
    crate::util::write_json(&out.join("preprocessor_config.json"), &processor)?;
    let report = CaptionerReport {
        config: cfg.clone(),
        parameters,
        held_out_pairs: HELD_OUT
            .iter()
            .map(|&(c, s)| format!("{} {}", COLORS[c].0, SHAPES[s]))
            .collect(),
        epochs,
        train_seconds,
        seen: evaluate(&model, &seen, &processor, &device)?,
        unseen: evaluate(&model, &unseen, &processor, &device)?,
    };
    crate::util::write_json(&out.join("report.json"), &report)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_captions_read_back_as_slots_and_relations() {
        let (slots, rel) = parse(
            &"a red circle left of a blue square"
                .split(' ')
                .collect::<Vec<_>>(),
        );
        assert_eq!(slots, vec![(Some(0), Some(0)), (Some(2), Some(1))]);
        assert_eq!(rel, vec![0]);
        // A colour without its shape, a dangling relation, three objects above each other.
        let (slots, rel) = parse(&["a", "green", "above"]);
        assert_eq!((slots, rel), (vec![(Some(1), None)], vec![1]));
        let (slots, _) = parse(
            &"a white ring above a cyan cross above a red diamond"
                .split(' ')
                .collect::<Vec<_>>(),
        );
        assert_eq!(slots.len(), 3);
        assert_eq!(encode("a red circle").unwrap(), vec![BOS, 5, 9, 17, SEP]);
        assert!(encode("a mauve circle").is_err());
        assert_eq!(argmax(&[0.1, 0.7, 0.7, 0.2]), 1);
    }
}
