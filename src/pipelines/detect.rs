//! Object detection, as `pipeline("object-detection")`: a DETR checkpoint with its
//! `DetrImageProcessor`, from images to boxes in each image's own pixels.
use super::ImageSource;
use crate::image::boxes::DetectedBox;
use crate::image::ProcessorConfig;
use crate::models::detr::Detr;
use crate::models::{LoadOptions, Loaded, Pretrained};
use crate::{Error, Result};
use candle_core::Device;
use std::ffi::OsStr;

/// One detection with its class name.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Detection {
    pub label: String,
    pub index: usize,
    pub score: f32,
    /// `(x0, y0, x1, y1)` in the image's pixels.
    pub bbox: [f32; 4],
    /// The object query that predicted it (its decoder attention is what `explain` draws).
    pub query: usize,
}

impl Detection {
    /// A post-processed box with its class name from `config`.
    pub fn from_box(b: DetectedBox, config: &crate::models::detr::DetrConfig) -> Self {
        Detection {
            label: config.label(b.label),
            index: b.label,
            score: b.score,
            bbox: b.bbox,
            query: b.query,
        }
    }
}

pub struct ObjectDetection {
    pub model: Detr,
    pub processor: ProcessorConfig,
    pub device: Device,
}

impl ObjectDetection {
    /// A DETR directory or hub id; its `preprocessor_config.json` when present, else
    /// `DetrImageProcessor`'s defaults.
    pub fn from_pretrained(source: impl AsRef<OsStr>, opts: &LoadOptions) -> Result<Self> {
        let loaded = Detr::load(source, opts)?;
        Self::from_loaded(loaded, &opts.device)
    }

    pub fn from_loaded(loaded: Loaded<Detr>, device: &Device) -> Result<Self> {
        let processor = ProcessorConfig::in_dir_or(loaded.dir.as_deref(), ProcessorConfig::detr)?;
        Ok(ObjectDetection {
            model: loaded.model,
            processor,
            device: device.clone(),
        })
    }

    pub fn with_processor_backend(mut self, backend: Option<crate::image::Backend>) -> Self {
        self.processor.set_backend(backend);
        self
    }

    /// Per image, the detections scoring above `threshold`, in query order (transformers'
    /// `post_process_object_detection` with each image's own size as target size).
    pub fn detect(&self, images: &[ImageSource], threshold: f32) -> Result<Vec<Vec<Detection>>> {
        if !(0.0..1.0).contains(&threshold) {
            return Err(Error::Config(format!(
                "threshold {threshold} must be in [0, 1)"
            )));
        }
        let decoded = images
            .iter()
            .map(|s| s.load())
            .collect::<Result<Vec<_>>>()?;
        let raw = crate::train::detr_train::predict(
            &self.model,
            &self.processor,
            &decoded,
            threshold,
            &self.device,
        )?;
        Ok(raw
            .into_iter()
            .map(|dets| {
                dets.into_iter()
                    .map(|b| Detection::from_box(b, &self.model.config))
                    .collect()
            })
            .collect())
    }
}
