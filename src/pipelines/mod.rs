//! Pipelines: the library API behind the CLI's zero-shot, embedding and search commands.
pub mod search;
pub mod zero_shot;

pub use search::{Index, IndexReport};
pub use zero_shot::{ImageSource, LabelScore, ZeroShotClassifier};
