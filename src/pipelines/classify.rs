//! Image classification, as `pipeline("image-classification")`: the seed ViT (tessera's own
//! runs) or an HF `ViTForImageClassification`, with the preprocessing each was trained with,
//! from images to labels sorted by probability.
use super::{ranked, ImageSource, LabelScore};
use crate::image::ProcessorConfig;
use crate::models::vit::VitConfig;
use crate::models::{AutoModel, ImageClassifier, LoadOptions, Loaded, Pretrained};
use crate::nn::Ctx;
use crate::{Error, Result};
use candle_core::{Device, Tensor, D};
use image::{DynamicImage, RgbImage};
use std::ffi::OsStr;

/// How a classifier's inputs are made from decoded images.
#[derive(Clone, Debug)]
pub enum Inputs {
    /// An HF image processor (`preprocessor_config.json`).
    Processor(ProcessorConfig),
    /// The seed ViT's own: Pillow-bilinear resize to the model's square size, grey or RGB as
    /// the model's channels, normalised by its `image_mean`/`image_std`.
    Seed {
        size: usize,
        mean: Vec<f32>,
        std: Vec<f32>,
    },
}

impl Inputs {
    fn seed(c: &VitConfig) -> Self {
        Inputs::Seed {
            size: c.image_size,
            mean: c.image_mean.clone(),
            std: c.image_std.clone(),
        }
    }

    /// A normalised batch [B, C, H, W].
    pub fn batch(&self, images: &[DynamicImage], device: &Device) -> Result<Tensor> {
        match self {
            Inputs::Processor(p) => p.batch(images, device),
            Inputs::Seed { size, mean, std } => {
                crate::image::batch_resized(images, *size, mean, std, device)
            }
        }
    }

    /// What the model sees of `img` as an RGB picture at its input size (for heat-map overlays).
    pub fn view(&self, img: &DynamicImage) -> Result<RgbImage> {
        let (px, h, w) = match self {
            Inputs::Processor(p) => p.pixels_u8(img)?,
            Inputs::Seed { size, mean, .. } => {
                let chw = crate::image::to_chw(img, *size, mean.len())?;
                let n = size * size;
                let px = (0..n)
                    .flat_map(|i| {
                        let at = |c: usize| (chw[(c % mean.len()) * n + i] * 255.0).round() as u8;
                        [at(0), at(1), at(2)]
                    })
                    .collect();
                (px, *size as u32, *size as u32)
            }
        };
        RgbImage::from_raw(w, h, px)
            .ok_or_else(|| Error::Shape("processed image has the wrong size".into()))
    }
}

/// A classifier with its inputs.
pub struct ImageClassification {
    pub model: AutoModel,
    pub inputs: Inputs,
    pub device: Device,
}

impl ImageClassification {
    /// A tessera run directory, an HF classifier directory or a hub id. A checkpoint without a
    /// trained head (a `ViTModel`, or a head the weights lack) is an error.
    pub fn from_pretrained(source: impl AsRef<OsStr>, opts: &LoadOptions) -> Result<Self> {
        let loaded = AutoModel::load(source, opts)?;
        Self::from_loaded(loaded, &opts.device)
    }

    pub fn from_loaded(loaded: Loaded<AutoModel>, device: &Device) -> Result<Self> {
        let where_ = loaded
            .dir
            .as_ref()
            .map_or("the model".to_string(), |d| d.display().to_string());
        if loaded.model.family() == crate::models::Family::Clip {
            return Err(Error::Config(format!(
                "{where_}: CLIP classifies through zero-shot prompts (tessera zero-shot)"
            )));
        }
        if loaded.model.as_classifier().is_none() || !loaded.report.missing.is_empty() {
            return Err(Error::Config(format!(
                "{where_}: not an image classifier with a trained head ({:?}); fine-tune it first \
                 (tessera finetune)",
                loaded.model.family()
            )));
        }
        let inputs = match &loaded.model {
            AutoModel::SeedVit(m) => Inputs::seed(&m.config),
            AutoModel::Vit(m) => {
                Inputs::Processor(ProcessorConfig::in_dir_or(loaded.dir.as_deref(), || {
                    ProcessorConfig::vit(m.backbone().config.image_size as u32)
                })?)
            }
            AutoModel::Perceiver(m) => {
                Inputs::Processor(ProcessorConfig::in_dir_or(loaded.dir.as_deref(), || {
                    ProcessorConfig::perceiver(m.config().image_size as u32)
                })?)
            }
            AutoModel::Clip(_) => {
                return Err(Error::Config(format!("{where_}: not an image classifier")))
            }
        };
        Ok(ImageClassification {
            model: loaded.model,
            inputs,
            device: device.clone(),
        })
    }

    /// Preprocesses as `backend` instead of what the processor config chooses (`None`: the
    /// config's choice); the seed ViT's own preprocessing has one way only.
    pub fn with_processor_backend(mut self, backend: Option<crate::image::Backend>) -> Self {
        if let Inputs::Processor(p) = &mut self.inputs {
            p.set_backend(backend);
        }
        self
    }

    /// The pipeline computing in `dtype` (see [`crate::models::Pretrained::with_dtype`]).
    pub fn with_dtype(self, dtype: impl Into<crate::nn::Precision>) -> Result<Self> {
        Ok(ImageClassification {
            model: self.model.with_dtype(dtype.into())?,
            ..self
        })
    }

    pub fn classifier(&self) -> &dyn ImageClassifier {
        // Checked at construction.
        self.model
            .as_classifier()
            .expect("ImageClassification holds a classifier")
    }

    /// Class probabilities [B, K] of a preprocessed batch.
    pub fn probabilities(&self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let logits = self.classifier().logits(x, ctx)?;
        Ok(candle_nn::ops::softmax(&logits, D::Minus1)?)
    }

    /// For each image, the `top_k` labels (all when `None`) with their probabilities, highest
    /// first.
    pub fn classify(
        &self,
        images: &[ImageSource],
        top_k: Option<usize>,
    ) -> Result<Vec<Vec<LabelScore>>> {
        if top_k == Some(0) {
            return Err(Error::Config("top_k must be at least 1".into()));
        }
        let decoded: Vec<DynamicImage> = images.iter().map(|s| s.load()).collect::<Result<_>>()?;
        let x = self.inputs.batch(&decoded, &self.device)?;
        let p = self
            .probabilities(&x, &mut Ctx::inference())?
            .to_vec2::<f32>()?;
        let c = self.classifier();
        ranked(p, |i| c.label(i), top_k)
    }
}
