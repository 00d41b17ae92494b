//! CLIP zero-shot image classification, as `pipeline("zero-shot-image-classification")`:
//! the hypothesis template filled with each candidate label, `logits_per_image` softmaxed over
//! the labels, results sorted by score. Label embeddings are computed once per label set and
//! cached across images; images and labels are batched.
use crate::image::ProcessorConfig;
use crate::models::clip::{Clip, ClipTokenizer};
use crate::nn::Ctx;
use crate::{Error, Result};
use candle_core::{Device, Tensor, D};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Where an image comes from.
#[derive(Clone, Debug)]
pub enum ImageSource {
    Path(PathBuf),
    Bytes(Vec<u8>),
    Url(String),
}

impl ImageSource {
    /// `http(s)://…` is a URL, anything else a path.
    pub fn parse(s: &str) -> ImageSource {
        if s.starts_with("http://") || s.starts_with("https://") {
            ImageSource::Url(s.to_string())
        } else {
            ImageSource::Path(PathBuf::from(s))
        }
    }

    pub fn name(&self) -> String {
        match self {
            ImageSource::Path(p) => p.display().to_string(),
            ImageSource::Bytes(_) => "<bytes>".into(),
            ImageSource::Url(u) => u.clone(),
        }
    }

    /// Decodes the image (EXIF orientation applied); a failed download is a clear error.
    pub fn load(&self) -> Result<image::DynamicImage> {
        match self {
            ImageSource::Path(p) => crate::image::open(p),
            ImageSource::Bytes(b) => crate::image::decode(b, Path::new("<bytes>")),
            ImageSource::Url(u) => {
                let resp = ureq::get(u)
                    .timeout(std::time::Duration::from_secs(30))
                    .call()
                    .map_err(|e| Error::Msg(format!("{u}: cannot download the image: {e}")))?;
                let mut bytes = vec![];
                std::io::Read::read_to_end(&mut resp.into_reader().take(64 << 20), &mut bytes)
                    .map_err(|e| Error::Msg(format!("{u}: download failed: {e}")))?;
                crate::image::decode(&bytes, Path::new(u))
            }
        }
    }
}

use std::io::Read as _;

/// One label's probability.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LabelScore {
    pub label: String,
    pub score: f32,
}

pub struct ZeroShotClassifier {
    pub model: Clip,
    pub tokenizer: ClipTokenizer,
    pub processor: ProcessorConfig,
    pub device: Device,
    /// Batch size for images and for label prompts.
    pub batch_size: usize,
    cache: Mutex<HashMap<String, Tensor>>,
}

/// Fills `template`'s `{}` with `label`; a template without `{}` is an error.
pub fn fill_template(template: &str, label: &str) -> Result<String> {
    if !template.contains("{}") {
        return Err(Error::Config(format!(
            "hypothesis template {template:?} has no {{}} for the label"
        )));
    }
    Ok(template.replacen("{}", label, 1))
}

impl ZeroShotClassifier {
    pub fn new(
        model: Clip,
        tokenizer: ClipTokenizer,
        processor: ProcessorConfig,
        device: &Device,
    ) -> Self {
        ZeroShotClassifier {
            model,
            tokenizer,
            processor,
            device: device.clone(),
            batch_size: 8,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Normalised text embeddings of `texts` [N, P], batched; each text embedded once.
    pub fn text_embeds(&self, texts: &[String]) -> Result<Tensor> {
        let missing: Vec<String> = {
            let cache = self
                .cache
                .lock()
                .map_err(|_| Error::Msg("cache poisoned".into()))?;
            let mut m: Vec<String> = texts
                .iter()
                .filter(|t| !cache.contains_key(*t))
                .cloned()
                .collect();
            m.dedup();
            m
        };
        for chunk in missing.chunks(self.batch_size.max(1)) {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            let (ids, mask) = self
                .tokenizer
                .encode_batch(&refs, self.model.text.config.max_position_embeddings);
            let ids = Tensor::new(ids, &self.device)?;
            let mask = Tensor::new(mask, &self.device)?.to_dtype(candle_core::DType::F32)?;
            let e = self
                .model
                .text_embeds(&ids, Some(&mask), &mut Ctx::inference())?;
            let mut cache = self
                .cache
                .lock()
                .map_err(|_| Error::Msg("cache poisoned".into()))?;
            for (i, t) in chunk.iter().enumerate() {
                cache.insert(t.clone(), e.get(i)?);
            }
        }
        let cache = self
            .cache
            .lock()
            .map_err(|_| Error::Msg("cache poisoned".into()))?;
        let rows: Vec<Tensor> = texts.iter().map(|t| cache[t].clone()).collect();
        Ok(Tensor::stack(&rows, 0)?)
    }

    /// Normalised image embeddings [N, P], batched.
    pub fn image_embeds(&self, images: &[image::DynamicImage]) -> Result<Tensor> {
        let mut out = vec![];
        for chunk in images.chunks(self.batch_size.max(1)) {
            let px = self.processor.batch(chunk, &self.device)?;
            out.push(self.model.image_embeds(&px, &mut Ctx::inference())?);
        }
        if out.is_empty() {
            return Err(Error::Msg("no images".into()));
        }
        Ok(Tensor::cat(&out, 0)?)
    }

    /// For each image, every label with its probability (softmax over the labels of
    /// `logit_scale · cos`), highest first.
    pub fn classify(
        &self,
        images: &[ImageSource],
        labels: &[String],
        template: &str,
    ) -> Result<Vec<Vec<LabelScore>>> {
        if labels.is_empty() {
            return Err(Error::Config("candidate labels are empty".into()));
        }
        if let Some(l) = labels.iter().find(|l| l.trim().is_empty()) {
            return Err(Error::Config(format!("empty candidate label {l:?}")));
        }
        let prompts: Vec<String> = labels
            .iter()
            .map(|l| fill_template(template, l))
            .collect::<Result<_>>()?;
        let text = self.text_embeds(&prompts)?;
        let decoded: Vec<image::DynamicImage> =
            images.iter().map(|s| s.load()).collect::<Result<_>>()?;
        let img = self.image_embeds(&decoded)?;
        let probs = candle_nn::ops::softmax(&self.model.logits(&img, &text)?, D::Minus1)?
            .to_vec2::<f32>()?;
        Ok(probs
            .into_iter()
            .map(|row| {
                let mut r: Vec<LabelScore> = row
                    .into_iter()
                    .zip(labels)
                    .map(|(score, label)| LabelScore {
                        label: label.clone(),
                        score,
                    })
                    .collect();
                r.sort_by(|a, b| b.score.total_cmp(&a.score));
                r
            })
            .collect())
    }
}

impl ZeroShotClassifier {
    /// A CLIP checkpoint directory (or hub id): `config.json`, weights, `vocab.json` +
    /// `merges.txt` (else OpenAI's merges at `bpe_gz`), `preprocessor_config.json` (else CLIP's
    /// defaults at the model's image size).
    /// The classifier computing in `dtype` (see [`Clip::with_dtype`]); cached label
    /// embeddings are dropped.
    pub fn with_dtype(self, dtype: candle_core::DType) -> Result<Self> {
        Ok(ZeroShotClassifier {
            model: self.model.with_dtype(dtype)?,
            cache: Mutex::new(HashMap::new()),
            ..self
        })
    }

    pub fn from_pretrained(arg: &str, bpe_gz: &Path, device: &Device) -> Result<Self> {
        let dir = crate::hub::resolve(
            arg,
            &["config.json"],
            &[&["model.safetensors", "pytorch_model.bin"]],
            &["preprocessor_config.json", "vocab.json", "merges.txt"],
        )?;
        let (model, _) = Clip::load(&dir, false, device)?;
        let tokenizer = ClipTokenizer::for_checkpoint(&dir, bpe_gz)?;
        let pp = dir.join("preprocessor_config.json");
        let processor = if pp.exists() {
            ProcessorConfig::load(&pp)?
        } else {
            ProcessorConfig::clip(model.vision.config.image_size as u32)
        };
        Ok(Self::new(model, tokenizer, processor, device))
    }
}
