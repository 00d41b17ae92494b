//! Pipelines: the library API behind the CLI's zero-shot, embedding and search commands.
pub mod zero_shot;

pub use zero_shot::{ImageSource, LabelScore, ZeroShotClassifier};
