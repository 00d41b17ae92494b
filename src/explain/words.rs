//! The chapter's captioning figure as a feature: each generated word with where it looked,
//! one panel per word (its attention map over the image, the word as legend), tiled.
use super::render;
use crate::pipelines::Caption;
use crate::{Error, Result};
use image::RgbImage;

/// Width of one panel; the image keeps its aspect ratio.
const PANEL: u32 = 192;

/// Panels for every word of `caption` that carries a map over a `grid`×`grid` patch grid, over
/// `img`, `cols` per row. Words without a map (beam search, no `--attention`) are an error.
pub fn render_word_maps(
    img: &RgbImage,
    caption: &Caption,
    grid: usize,
    cols: usize,
) -> Result<RgbImage> {
    if caption.words.is_empty() {
        return Err(Error::Config(
            "the caption has no generated words to show".into(),
        ));
    }
    let (w, h) = img.dimensions();
    let ph = ((h as f32 * PANEL as f32 / w.max(1) as f32).round() as u32).max(1);
    let base = image::imageops::resize(img, PANEL, ph, image::imageops::FilterType::Triangle);
    let panels = caption
        .words
        .iter()
        .map(|word| {
            let map = word.attention.as_ref().ok_or_else(|| {
                Error::Config(format!(
                    "the word {:?} has no attention map (generate with attention, greedy or \
                     sampling)",
                    word.text
                ))
            })?;
            let label = if word.text.is_empty() {
                &word.token
            } else {
                &word.text
            };
            render::legend(&render::overlay(&base, map, grid, 0.55)?, label)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(render::grid(&panels, cols.min(panels.len())))
}
