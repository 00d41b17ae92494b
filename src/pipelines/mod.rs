//! Pipelines, as transformers' `pipeline(task)`: a model with its processor (and tokenizer),
//! from images (paths, bytes, URLs) or texts to sorted scores and embeddings.
//!
//! - [`ImageClassification`], as `pipeline("image-classification")`, for the seed ViT and HF
//!   ViT classifiers.
//! - [`ClipEmbedder`], CLIP image and text embeddings (batched, label embeddings cached):
//!   behind zero-shot, `embed`, the search index and CLIP explanations.
//! - [`ZeroShotClassifier`], as `pipeline("zero-shot-image-classification")`.
//! - [`Index`], a persistent text-to-image search index over a folder.
//! - [`ann`]: HNSW approximate search for large indexes, exact search as ground truth.
//! - [`shards`]: a collection embedded by N machines into Parquet parts, merged into one
//!   [`Index`].
//! - [`ObjectDetection`], as `pipeline("object-detection")`, for DETR.
//! - [`Captioning`], as `pipeline("image-to-text")` and `pipeline("visual-question-answering")`,
//!   for BLIP.
pub mod ann;
pub mod caption;
pub mod classify;
pub mod detect;
pub mod embed;
pub mod search;
pub mod shards;
pub mod source;
pub mod zero_shot;

pub use caption::{Caption, Captioning};
pub use classify::ImageClassification;
pub use detect::{Detection, ObjectDetection};
pub use embed::ClipEmbedder;
pub use search::{Index, IndexReport};
pub use source::ImageSource;
pub use zero_shot::{fill_template, ZeroShotClassifier};

/// One label's probability.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LabelScore {
    pub label: String,
    /// The class index (classification) or the candidate label's position (zero-shot).
    pub index: usize,
    pub score: f32,
}

/// Each row of probabilities as labels sorted by score, highest first, keeping `top_k` (all
/// when `None`). A non-finite probability is an error: NaN is never a score.
pub(crate) fn ranked(
    rows: Vec<Vec<f32>>,
    label: impl Fn(usize) -> String,
    top_k: Option<usize>,
) -> crate::Result<Vec<Vec<LabelScore>>> {
    rows.into_iter()
        .map(|row| {
            if row.iter().any(|p| !p.is_finite()) {
                return Err(crate::Error::Msg(
                    "the model produced non-finite scores (NaN or inf): check its weights and config"
                        .into(),
                ));
            }
            let mut r: Vec<LabelScore> = row
                .into_iter()
                .enumerate()
                .map(|(index, score)| LabelScore {
                    label: label(index),
                    index,
                    score,
                })
                .collect();
            r.sort_by(|a, b| b.score.total_cmp(&a.score));
            r.truncate(top_k.unwrap_or(usize::MAX));
            Ok(r)
        })
        .collect()
}
