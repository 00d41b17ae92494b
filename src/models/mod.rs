//! Models composed from the shared blocks in [`crate::nn`].
pub mod clip;
pub mod vit;
