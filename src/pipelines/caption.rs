//! Captioning and visual question answering, as transformers' `pipeline("image-to-text")` and
//! `pipeline("visual-question-answering")` with BLIP: the checkpoint's image processor and
//! `tokenizer.json`, generation through the one loop, ids decoded with special tokens skipped.
use super::ImageSource;
use crate::image::ProcessorConfig;
use crate::models::blip::{generation_defaults, BlipCaptioner, BlipVqa};
use crate::models::{Checkpoint, Family, LoadOptions, Pretrained, TextTokenizer};
use crate::nn::generate::GenerationConfig;
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use std::ffi::OsStr;

/// Which BLIP head a checkpoint holds.
#[derive(Clone, Debug)]
pub enum BlipModel {
    Caption(BlipCaptioner),
    Vqa(BlipVqa),
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
    pub token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attention: Option<Vec<f32>>,
}

pub struct Captioning {
    pub model: BlipModel,
    pub processor: ProcessorConfig,
    pub tokenizer: TextTokenizer,
    pub device: Device,
}

impl Captioning {
    /// A BLIP directory or hub id: `BlipForConditionalGeneration` or
    /// `BlipForQuestionAnswering` as `architectures` names it.
    pub fn from_pretrained(source: impl AsRef<OsStr>, opts: &LoadOptions) -> Result<Self> {
        let ckpt = Checkpoint::read(
            source,
            BlipCaptioner::EXTRA_FILES,
            &opts.device,
            &*opts.progress,
        )?;
        ckpt.expect(Family::Blip)?;
        let vqa = ckpt
            .config
            .get("architectures")
            .and_then(|a| a.get(0))
            .and_then(|a| a.as_str())
            .is_some_and(|a| a.contains("QuestionAnswering"));
        let dir = ckpt.dir.clone();
        let processor = ProcessorConfig::in_dir_or(Some(&dir), || ProcessorConfig::blip(384))?;
        let tokenizer = TextTokenizer::in_dir(&dir)?;
        let model = if vqa {
            BlipModel::Vqa(BlipVqa::from_checkpoint(ckpt, opts)?.model)
        } else {
            BlipModel::Caption(BlipCaptioner::from_checkpoint(ckpt, opts)?.model)
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

    /// BLIP's generation settings (stop at `[SEP]`, pad id) for this checkpoint.
    pub fn defaults(&self) -> GenerationConfig {
        generation_defaults(&self.config().text_config)
    }

    fn config(&self) -> &crate::models::blip::BlipConfig {
        match &self.model {
            BlipModel::Caption(m) => &m.config,
            BlipModel::Vqa(m) => &m.config,
        }
    }

    fn pixels(&self, images: &[ImageSource]) -> Result<Tensor> {
        let decoded = images
            .iter()
            .map(|s| s.load())
            .collect::<Result<Vec<_>>>()?;
        self.processor.batch(&decoded, &self.device)
    }

    fn decode(&self, ids: &[u32], prompt_len: usize) -> Result<(String, Vec<Word>)> {
        let text = self.tokenizer.decode(ids, true)?;
        let words = ids[prompt_len.min(ids.len())..]
            .iter()
            .map(|&i| Word {
                token: self.tokenizer.token(i).unwrap_or_default(),
                attention: None,
            })
            .collect();
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
        let BlipModel::Caption(m) = &self.model else {
            return Err(Error::Config(
                "this is a BLIP VQA checkpoint: ask it a question (`tessera vqa`)".into(),
            ));
        };
        if images.is_empty() {
            return Ok(vec![]);
        }
        let px = self.pixels(images)?;
        let p = match prompt {
            Some(t) => self.tokenizer.encode(t, false)?,
            None => vec![],
        };
        let g = m.generate(&px, &vec![p; images.len()], cfg, attention)?;
        let per = cfg.num_return_sequences;
        let grid = m.config.vision_config.image_size / m.config.vision_config.patch_size;
        let mut out: Vec<Vec<Caption>> = vec![vec![]; images.len()];
        for (r, ids) in g.generated.sequences.iter().enumerate() {
            let (text, mut words) = self.decode(ids, g.generated.prompt_len)?;
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

    /// Answers `question` about each image.
    pub fn answer(
        &self,
        images: &[ImageSource],
        question: &str,
        cfg: &GenerationConfig,
    ) -> Result<Vec<Vec<Caption>>> {
        let BlipModel::Vqa(m) = &self.model else {
            return Err(Error::Config(
                "this is a BLIP captioning checkpoint, not a VQA one (`tessera caption`)".into(),
            ));
        };
        if images.is_empty() {
            return Ok(vec![]);
        }
        let px = self.pixels(images)?;
        let q = self.tokenizer.encode(question, true)?;
        let n = images.len();
        let ids = Tensor::new(vec![q.clone(); n], &self.device)?;
        let keep = Tensor::ones((n, q.len()), DType::F32, &self.device)?;
        let g = m.generate(&px, &ids, &keep, cfg)?;
        let per = cfg.num_return_sequences;
        let mut out: Vec<Vec<Caption>> = vec![vec![]; n];
        for (r, ids) in g.sequences.iter().enumerate() {
            let (text, words) = self.decode(ids, g.prompt_len)?;
            out[r / per].push(Caption {
                text,
                ids: ids.clone(),
                words,
            });
        }
        Ok(out)
    }
}
