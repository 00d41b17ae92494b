//! CLIP zero-shot image classification, as `pipeline("zero-shot-image-classification")`:
//! the hypothesis template filled with each candidate label, `logits_per_image` softmaxed over
//! the labels, results sorted by score. Label embeddings are computed once per label set and
//! cached across images; images and labels are batched.
use super::{ranked, ClipEmbedder, ImageSource, LabelScore};
use crate::{Error, Result};
use candle_core::D;

/// Fills `template`'s `{}` with `label`; a template without `{}` is an error.
pub fn fill_template(template: &str, label: &str) -> Result<String> {
    if !template.contains("{}") {
        return Err(Error::Config(format!(
            "hypothesis template {template:?} has no {{}} for the label"
        )));
    }
    Ok(template.replacen("{}", label, 1))
}

pub struct ZeroShotClassifier {
    pub embedder: ClipEmbedder,
}

impl ZeroShotClassifier {
    pub fn new(embedder: ClipEmbedder) -> Self {
        ZeroShotClassifier { embedder }
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
        let e = &self.embedder;
        let text = e.text_embeds(&prompts)?;
        let decoded: Vec<image::DynamicImage> =
            images.iter().map(|s| s.load()).collect::<Result<_>>()?;
        let img = e.image_embeds(&decoded)?;
        let probs =
            candle_nn::ops::softmax(&e.model.logits(&img, &text)?, D::Minus1)?.to_vec2::<f32>()?;
        ranked(probs, |i| labels[i].clone(), None)
    }
}
