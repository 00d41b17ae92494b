//! Captioning and visual question answering, as transformers' `pipeline("image-to-text")` and
//! `pipeline("visual-question-answering")` with BLIP and BLIP-2 (OPT): the checkpoint's image
//! processor and `tokenizer.json`, generation through the one loop, ids decoded with special
//! tokens skipped. BLIP-2's prompts are laid out as `Blip2Processor` does (image tokens, then
//! the text with OPT's BOS), and its questions are asked as "Question: … Answer:".
use super::ImageSource;
use crate::image::ProcessorConfig;
use crate::models::blip::{generation_defaults, BlipCaptioner, BlipVqa, Generation};
use crate::models::blip2::{self, Blip2Captioner};
use crate::models::{Checkpoint, Family, LoadOptions, Pretrained, TextTokenizer};
use crate::nn::generate::GenerationConfig;
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use std::ffi::OsStr;

/// Which captioning model a checkpoint holds.
#[derive(Clone, Debug)]
pub enum BlipModel {
    Caption(BlipCaptioner),
    Vqa(BlipVqa),
    /// BLIP-2 captions, and answers questions asked in its prompt.
    Blip2(Box<Blip2Captioner>),
}

/// One generated text.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Caption {
    /// Decoded with special tokens skipped (the prompt included, as transformers returns it).
    pub text: String,
    /// Every id, prompt included.
    pub ids: Vec<u32>,
    /// Per generated token: its string and, when asked for, the cross-attention over the
    /// image patches (class token dropped), a `grid`×`grid` map in row-major order.
    pub words: Vec<Word>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Word {
    /// The vocabulary entry (`Ġcat`, `##s`).
    pub token: String,
    /// The token decoded alone, trimmed (`cat`, `s`, `</s>`).
    pub text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attention: Option<Vec<f32>>,
    /// Gradient-weighted cross-attention over the patches (BLIP; see
    /// [`BlipCaptioner::word_relevance`]), when asked for ([`Captioning::add_relevance`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relevance: Option<Vec<f32>>,
}

pub struct Captioning {
    pub model: BlipModel,
    pub processor: ProcessorConfig,
    pub tokenizer: TextTokenizer,
    pub device: Device,
}

impl Captioning {
    /// A BLIP or BLIP-2 directory or hub id: `BlipForConditionalGeneration`,
    /// `BlipForQuestionAnswering` (as `architectures` names it) or
    /// `Blip2ForConditionalGeneration`.
    pub fn from_pretrained(source: impl AsRef<OsStr>, opts: &LoadOptions) -> Result<Self> {
        let ckpt = Checkpoint::read(
            source,
            BlipCaptioner::EXTRA_FILES,
            &opts.device,
            &*opts.progress,
        )?;
        let family = Family::of(&ckpt.config)?;
        if !matches!(family, Family::Blip | Family::Blip2) {
            return Err(Error::Config(format!(
                "{}: this is a {} checkpoint, not a BLIP or BLIP-2 one",
                ckpt.dir.join("config.json").display(),
                family.name()
            )));
        }
        let vqa = ckpt
            .config
            .get("architectures")
            .and_then(|a| a.get(0))
            .and_then(|a| a.as_str())
            .is_some_and(|a| a.contains("QuestionAnswering"));
        let dir = ckpt.dir.clone();
        let size = if family == Family::Blip2 { 224 } else { 384 };
        let processor = ProcessorConfig::in_dir_or(Some(&dir), || ProcessorConfig::blip(size))?;
        let tokenizer = TextTokenizer::in_dir(&dir)?;
        let model = match (family, vqa) {
            (Family::Blip2, _) => {
                BlipModel::Blip2(Box::new(Blip2Captioner::from_checkpoint(ckpt, opts)?.model))
            }
            (_, true) => BlipModel::Vqa(BlipVqa::from_checkpoint(ckpt, opts)?.model),
            (_, false) => BlipModel::Caption(BlipCaptioner::from_checkpoint(ckpt, opts)?.model),
        };
        Ok(Captioning {
            model,
            processor,
            tokenizer,
            device: opts.device.clone(),
        })
    }

    pub fn with_processor_backend(mut self, backend: Option<crate::image::Backend>) -> Self {
        self.processor.set_backend(backend);
        self
    }

    /// The model's generation settings (BLIP: stop at `[SEP]`; BLIP-2: OPT's eos), with its pad
    /// id.
    pub fn defaults(&self) -> GenerationConfig {
        match &self.model {
            BlipModel::Caption(m) => generation_defaults(&m.config.text_config),
            BlipModel::Vqa(m) => generation_defaults(&m.config.text_config),
            BlipModel::Blip2(m) => blip2::generation_defaults(&m.config),
        }
    }

    /// The side of the image-token grid the per-word maps are on.
    pub fn grid(&self) -> usize {
        let (s, p) = match &self.model {
            BlipModel::Caption(m) => (
                m.config.vision_config.image_size,
                m.config.vision_config.patch_size,
            ),
            BlipModel::Vqa(m) => (
                m.config.vision_config.image_size,
                m.config.vision_config.patch_size,
            ),
            BlipModel::Blip2(m) => (
                m.config.vision_config.image_size,
                m.config.vision_config.patch_size,
            ),
        };
        s / p
    }

    fn pixels(&self, images: &[ImageSource]) -> Result<Tensor> {
        let decoded = images
            .iter()
            .map(|s| s.load())
            .collect::<Result<Vec<_>>>()?;
        self.processor.batch(&decoded, &self.device)
    }

    /// The text of `ids` (all of them, or only the new ones with `answer_only`, trimmed) and
    /// the words after the prompt.
    fn decode(
        &self,
        ids: &[u32],
        prompt_len: usize,
        answer_only: bool,
    ) -> Result<(String, Vec<Word>)> {
        let new = &ids[prompt_len.min(ids.len())..];
        let text = if answer_only {
            self.tokenizer.decode(new, true)?.trim().to_string()
        } else {
            self.tokenizer.decode(ids, true)?
        };
        let words = new
            .iter()
            .map(|&i| {
                Ok(Word {
                    token: self.tokenizer.token(i).unwrap_or_default(),
                    text: self.tokenizer.decode(&[i], false)?.trim().to_string(),
                    attention: None,
                    relevance: None,
                })
            })
            .collect::<Result<_>>()?;
        Ok((text, words))
    }

    /// Captions each image; `prompt` starts every caption (`"a picture of"`), `None` for
    /// unconditional captioning. With `attention`, each word's map over the image patches.
    pub fn caption(
        &self,
        images: &[ImageSource],
        prompt: Option<&str>,
        cfg: &GenerationConfig,
        attention: bool,
    ) -> Result<Vec<Vec<Caption>>> {
        if images.is_empty() {
            return Ok(vec![]);
        }
        let g = match &self.model {
            BlipModel::Caption(m) => {
                let px = self.pixels(images)?;
                let p = match prompt {
                    Some(t) => self.tokenizer.encode(t, false)?,
                    None => vec![],
                };
                m.generate(&px, &vec![p; images.len()], cfg, attention)?
            }
            BlipModel::Blip2(m) => {
                let px = self.pixels(images)?;
                // OPT's tokenizer puts its BOS first; no prompt is `[bos]` alone.
                let p = match prompt {
                    Some(t) => self.tokenizer.encode(t, true)?,
                    None => vec![],
                };
                m.generate(&px, &m.prompts(&vec![p; images.len()])?, cfg, attention)?
            }
            BlipModel::Vqa(_) => {
                return Err(Error::Config(
                    "this is a BLIP VQA checkpoint: ask it a question (`tessera vqa`)".into(),
                ))
            }
        };
        self.captions(&g, images.len(), cfg.num_return_sequences, false)
    }

    /// Fills each word's gradient-weighted map (`Word::relevance`) of `captions` (as
    /// [`Captioning::caption`] returned them for `images`): one teacher-forced forward and a
    /// backward per word, per caption. BLIP captioning checkpoints only.
    pub fn add_relevance(
        &self,
        images: &[ImageSource],
        captions: &mut [Vec<Caption>],
    ) -> Result<()> {
        let BlipModel::Caption(m) = &self.model else {
            return Err(Error::Config(
                "gradient-weighted word maps are built for BLIP captioning checkpoints only".into(),
            ));
        };
        if images.len() != captions.len() {
            return Err(Error::Shape(format!(
                "{} caption lists for {} images",
                captions.len(),
                images.len()
            )));
        }
        for (src, caps) in images.iter().zip(captions.iter_mut()) {
            let px = self.pixels(std::slice::from_ref(src))?;
            for c in caps.iter_mut() {
                let from = c.ids.len() - c.words.len();
                let maps = m.word_relevance(&px, &c.ids, from.max(1))?;
                for (w, map) in c.words.iter_mut().zip(maps) {
                    let v: Vec<f32> = map.to_dtype(DType::F32)?.to_vec1()?;
                    w.relevance = Some(v[1..].to_vec());
                }
            }
        }
        Ok(())
    }

    /// Each returned sequence decoded, grouped per image; `answer_only` decodes the new tokens
    /// alone (a BLIP-2 answer without its question).
    fn captions(
        &self,
        g: &Generation,
        images: usize,
        per: usize,
        answer_only: bool,
    ) -> Result<Vec<Vec<Caption>>> {
        let grid = self.grid();
        let plen = g.generated.prompt_len;
        let mut out: Vec<Vec<Caption>> = vec![vec![]; images];
        for (r, ids) in g.generated.sequences.iter().enumerate() {
            let (text, mut words) = self.decode(ids, plen, answer_only)?;
            if let Some(maps) = &g.cross_attention {
                for (w, step) in words.iter_mut().zip(maps) {
                    // [R, 1+Np] -> this row's patches (the class token dropped)
                    let row: Vec<f32> = step.get(r)?.to_dtype(DType::F32)?.to_vec1()?;
                    let patches = row[1..].to_vec();
                    debug_assert_eq!(patches.len(), grid * grid);
                    w.attention = Some(patches);
                }
            }
            out[r / per].push(Caption {
                text,
                ids: ids.clone(),
                words,
            });
        }
        Ok(out)
    }

    /// Answers `question` about each image (BLIP-2: generated after "Question: {question}
    /// Answer:", the answer alone returned).
    pub fn answer(
        &self,
        images: &[ImageSource],
        question: &str,
        cfg: &GenerationConfig,
    ) -> Result<Vec<Vec<Caption>>> {
        if images.is_empty() {
            return Ok(vec![]);
        }
        let n = images.len();
        let per = cfg.num_return_sequences;
        match &self.model {
            BlipModel::Vqa(m) => {
                let px = self.pixels(images)?;
                let q = self.tokenizer.encode(question, true)?;
                let ids = Tensor::new(vec![q.clone(); n], &self.device)?;
                let keep = Tensor::ones((n, q.len()), DType::F32, &self.device)?;
                let generated = m.generate(&px, &ids, &keep, cfg)?;
                let g = Generation {
                    generated,
                    cross_attention: None,
                };
                self.captions(&g, n, per, false)
            }
            BlipModel::Blip2(m) => {
                let px = self.pixels(images)?;
                let p = self
                    .tokenizer
                    .encode(&format!("Question: {question} Answer:"), true)?;
                let g = m.generate(&px, &m.prompts(&vec![p; n])?, cfg, false)?;
                self.captions(&g, n, per, true)
            }
            BlipModel::Caption(_) => Err(Error::Config(
                "this is a BLIP captioning checkpoint, not a VQA one (`tessera caption`)".into(),
            )),
        }
    }
}
