//! CLIP embeddings of images and texts: the model with its tokenizer and image processor,
//! images and texts batched, text embeddings cached (a label set is embedded once).
use crate::image::ProcessorConfig;
use crate::models::clip::{Clip, ClipTokenizer};
use crate::models::{Checkpoint, LoadOptions, Pretrained};
use crate::nn::Ctx;
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::Path;
use std::sync::Mutex;

/// Where OpenAI's BPE merges are looked for when a checkpoint has no `vocab.json`/`merges.txt`
/// (`tools/fetch_clip_bpe.sh` puts them there).
pub const DEFAULT_BPE: &str = "assets/bpe_simple_vocab_16e6.txt.gz";

pub struct ClipEmbedder {
    pub model: Clip,
    pub tokenizer: ClipTokenizer,
    pub processor: ProcessorConfig,
    pub device: Device,
    /// Batch size for images and for texts.
    pub batch_size: usize,
    cache: Mutex<HashMap<String, Tensor>>,
}

impl ClipEmbedder {
    pub fn new(
        model: Clip,
        tokenizer: ClipTokenizer,
        processor: ProcessorConfig,
        device: &Device,
    ) -> Self {
        ClipEmbedder {
            model,
            tokenizer,
            processor,
            device: device.clone(),
            batch_size: 8,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// A CLIP checkpoint directory (or hub id): `config.json`, weights, `vocab.json` +
    /// `merges.txt` (else OpenAI's merges at `bpe_gz`), `preprocessor_config.json` (else CLIP's
    /// defaults at the model's image size).
    pub fn from_pretrained(
        source: impl AsRef<OsStr>,
        bpe_gz: &Path,
        opts: &LoadOptions,
    ) -> Result<Self> {
        let ckpt = Checkpoint::read(source, Clip::EXTRA_FILES, &opts.device, &*opts.progress)?;
        Self::from_checkpoint(ckpt, bpe_gz, opts)
    }

    /// [`ClipEmbedder::from_pretrained`] of a checkpoint already read from disk.
    pub fn from_checkpoint(ckpt: Checkpoint, bpe_gz: &Path, opts: &LoadOptions) -> Result<Self> {
        let dir = ckpt.dir.clone();
        let model = Clip::from_checkpoint(ckpt, opts)?.model;
        let tokenizer = ClipTokenizer::for_checkpoint(&dir, bpe_gz)?;
        let processor = ProcessorConfig::in_dir_or(Some(&dir), || {
            ProcessorConfig::clip(model.vision.config.image_size as u32)
        })?;
        Ok(Self::new(model, tokenizer, processor, &opts.device))
    }

    /// The embedder computing in `dtype` (see [`Pretrained::with_dtype`]); cached text
    /// embeddings are dropped.
    pub fn with_dtype(self, dtype: impl Into<crate::nn::Precision>) -> Result<Self> {
        Ok(ClipEmbedder {
            model: self.model.with_dtype(dtype.into())?,
            cache: Mutex::new(HashMap::new()),
            ..self
        })
    }

    /// Preprocesses as `backend` instead of what the processor config chooses (`None`: the
    /// config's choice; see [`crate::image::Backend`]).
    pub fn with_processor_backend(mut self, backend: Option<crate::image::Backend>) -> Self {
        self.processor.set_backend(backend);
        self
    }

    fn cache(&self) -> Result<std::sync::MutexGuard<'_, HashMap<String, Tensor>>> {
        self.cache
            .lock()
            .map_err(|_| Error::Msg("text embedding cache poisoned".into()))
    }

    /// Token ids [B, T] and the attention mask [B, T] (f32) of `texts`, padded to the model's
    /// context length.
    pub fn tokenize(&self, texts: &[&str]) -> Result<(Tensor, Tensor)> {
        let (ids, mask) = self
            .tokenizer
            .encode_batch(texts, self.model.text.config.max_position_embeddings);
        Ok((
            Tensor::new(ids, &self.device)?,
            Tensor::new(mask, &self.device)?.to_dtype(DType::F32)?,
        ))
    }

    /// Normalised text embeddings of `texts` [N, P], batched; each text embedded once.
    pub fn text_embeds(&self, texts: &[String]) -> Result<Tensor> {
        let missing: Vec<String> = {
            let cache = self.cache()?;
            let mut seen = std::collections::HashSet::new();
            texts
                .iter()
                .filter(|t| !cache.contains_key(*t) && seen.insert(t.as_str()))
                .cloned()
                .collect()
        };
        for chunk in missing.chunks(self.batch_size.max(1)) {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            let (ids, mask) = self.tokenize(&refs)?;
            let e = self
                .model
                .text_embeds(&ids, Some(&mask), &mut Ctx::inference())?;
            let mut cache = self.cache()?;
            for (i, t) in chunk.iter().enumerate() {
                cache.insert(t.clone(), e.get(i)?);
            }
        }
        let cache = self.cache()?;
        let rows: Vec<Tensor> = texts.iter().map(|t| cache[t].clone()).collect();
        if rows.is_empty() {
            return Err(Error::Config("no texts to embed".into()));
        }
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
            return Err(Error::Config("no images to embed".into()));
        }
        Ok(Tensor::cat(&out, 0)?)
    }
}
