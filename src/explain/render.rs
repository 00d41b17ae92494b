//! Heatmaps over images: bilinear upsampling of the patch grid, a perceptual colormap
//! (viridis), alpha overlay on the original, an optional legend, PNG output; and grids of maps.
use crate::{Error, Result};
use image::{Rgb, RgbImage};
use std::path::Path;

/// Viridis at 0.0, 0.1, …, 1.0 (matplotlib's values), linearly interpolated.
const VIRIDIS: [[f32; 3]; 11] = [
    [0.267004, 0.004874, 0.329415],
    [0.282623, 0.140926, 0.457517],
    [0.253935, 0.265254, 0.529983],
    [0.206756, 0.371758, 0.553117],
    [0.163625, 0.471133, 0.558148],
    [0.127568, 0.566949, 0.550556],
    [0.134692, 0.658636, 0.517649],
    [0.266941, 0.748751, 0.440573],
    [0.477504, 0.821444, 0.318195],
    [0.741388, 0.873449, 0.149561],
    [0.993248, 0.906157, 0.143936],
];

pub fn viridis(t: f32) -> [u8; 3] {
    let t = t.clamp(0.0, 1.0) * (VIRIDIS.len() - 1) as f32;
    let i = (t.floor() as usize).min(VIRIDIS.len() - 2);
    let f = t - i as f32;
    let c = |k: usize| ((VIRIDIS[i][k] * (1.0 - f) + VIRIDIS[i + 1][k] * f) * 255.0).round() as u8;
    [c(0), c(1), c(2)]
}

/// Min-max normalisation to [0, 1].
pub fn normalize(v: &[f32]) -> Vec<f32> {
    let (lo, hi) = v
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    let span = (hi - lo).max(1e-12);
    v.iter().map(|x| (x - lo) / span).collect()
}

/// The patch grid (`side`×`side`) upsampled bilinearly to `w`×`h`, coloured, blended over
/// `img` with `alpha`.
pub fn overlay(img: &RgbImage, grid: &[f32], side: usize, alpha: f32) -> Result<RgbImage> {
    overlay_rect(img, grid, (side, side), alpha)
}

/// [`overlay`] of a `rows`×`cols` grid (a detector's feature map need not be square).
pub fn overlay_rect(
    img: &RgbImage,
    grid: &[f32],
    (rows, cols): (usize, usize),
    alpha: f32,
) -> Result<RgbImage> {
    if grid.len() != rows * cols || grid.is_empty() {
        return Err(Error::Shape(format!(
            "{} values for a {rows}x{cols} grid",
            grid.len()
        )));
    }
    let (w, h) = img.dimensions();
    let heat =
        crate::nn::interpolate::bilinear(&normalize(grid), rows, cols, h as usize, w as usize);
    Ok(RgbImage::from_fn(w, h, |x, y| {
        let c = viridis(heat[(y * w + x) as usize]);
        let p = img.get_pixel(x, y);
        Rgb([0, 1, 2].map(|k| (p[k] as f32 * (1.0 - alpha) + c[k] as f32 * alpha).round() as u8))
    }))
}

/// Draws `text` in a band at the top of `img` (a legend: label and score).
pub fn legend(img: &RgbImage, text: &str) -> Result<RgbImage> {
    use plotters::prelude::*;
    crate::train::register_font();
    let (w, h) = img.dimensions();
    let band = 22u32;
    let mut buf = vec![255u8; (w * (h + band) * 3) as usize];
    buf[(w * band * 3) as usize..].copy_from_slice(img.as_raw());
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h + band)).into_drawing_area();
        root.draw(&Text::new(
            text.to_string(),
            (4, 3),
            ("sans-serif", 15).into_font().color(&BLACK),
        ))
        .map_err(|e| Error::Msg(format!("legend: {e}")))?;
        root.present()
            .map_err(|e| Error::Msg(format!("legend: {e}")))?;
    }
    RgbImage::from_raw(w, h + band, buf).ok_or_else(|| Error::Msg("legend buffer".into()))
}

/// Draws each box `(x0, y0, x1, y1)` (pixels) with its caption ("cat 0.98") on a copy of
/// `img`, a colour per class.
pub fn draw_boxes(img: &RgbImage, boxes: &[([f32; 4], usize, String)]) -> Result<RgbImage> {
    use plotters::prelude::*;
    crate::train::register_font();
    let (w, h) = img.dimensions();
    let mut buf = img.as_raw().clone();
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        let err = |e: DrawingAreaErrorKind<_>| Error::Msg(format!("drawing boxes: {e}"));
        for (b, class, text) in boxes {
            let c = Palette99::pick(*class).to_rgba();
            let clamp = |v: f32, hi: u32| v.round().clamp(0.0, hi.saturating_sub(1) as f32) as i32;
            let (x0, y0, x1, y1) = (
                clamp(b[0], w),
                clamp(b[1], h),
                clamp(b[2], w),
                clamp(b[3], h),
            );
            for t in 0..2 {
                root.draw(&Rectangle::new(
                    [(x0 + t, y0 + t), (x1 - t, y1 - t)],
                    c.stroke_width(1),
                ))
                .map_err(err)?;
            }
            let ty = if y0 >= 16 { y0 - 16 } else { y0 + 2 };
            root.draw(&Rectangle::new(
                [(x0, ty), (x0 + 7 * text.len() as i32 + 4, ty + 15)],
                c.filled(),
            ))
            .map_err(err)?;
            root.draw(&Text::new(
                text.clone(),
                (x0 + 2, ty + 1),
                ("sans-serif", 13).into_font().color(&WHITE),
            ))
            .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    RgbImage::from_raw(w, h, buf).ok_or_else(|| Error::Msg("box buffer".into()))
}

/// Tiles images left to right, `cols` per row.
pub fn grid(images: &[RgbImage], cols: usize) -> RgbImage {
    let (w, h) = images.first().map_or((1, 1), |i| i.dimensions());
    let cols = cols.max(1) as u32;
    let rows = (images.len() as u32).div_ceil(cols);
    let mut out = RgbImage::from_pixel(w * cols, h * rows.max(1), Rgb([255, 255, 255]));
    for (k, im) in images.iter().enumerate() {
        let (ox, oy) = ((k as u32 % cols) * w, (k as u32 / cols) * h);
        image::imageops::overlay(&mut out, im, ox as i64, oy as i64);
    }
    out
}

/// Saves a PNG atomically.
pub fn save_png(img: &RgbImage, path: &Path) -> Result<()> {
    let mut bytes = std::io::Cursor::new(vec![]);
    img.write_to(&mut bytes, image::ImageFormat::Png)
        .map_err(|e| Error::Msg(format!("encoding {}: {e}", path.display())))?;
    crate::util::atomic_write(path, bytes.get_ref())
}
