//! Decoding images and turning them into model inputs.
pub mod boxes;
mod jpeg;
pub mod limits;
pub mod processor;
pub mod resize;

pub use limits::{
    exceeds_max_image_pixels, max_image_pixels, set_max_image_pixels, DEFAULT_MAX_IMAGE_PIXELS,
    MAX_IMAGE_PIXELS_ENV,
};
pub use processor::{Backend, PaddedBatch, ProcessorConfig, Size};

use crate::{Error, Result};
use candle_core::{Device, Tensor};
use image::DynamicImage;
use std::path::Path;

/// Whether a path names a format tessera decodes (PNG, JPEG), by extension.
pub fn is_image_path(p: &Path) -> bool {
    matches!(
        p.extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .as_deref(),
        Some("png" | "jpg" | "jpeg")
    )
}

/// Decodes an image file; a missing, truncated or non-image file is an error naming the path.
pub fn open(path: &Path) -> Result<DynamicImage> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode(&bytes, path)
}

/// Decodes image bytes (format guessed from the content) and applies the EXIF orientation,
/// as HF's `load_image` (`ImageOps.exif_transpose`) does. JPEGs go through libjpeg-turbo's
/// code (mozjpeg: islow IDCT, fancy upsampling) so the pixels equal Pillow's.
///
/// Refused, with an [`Error::Image`] naming `origin`: an unknown format, a header declaring
/// more than twice [`max_image_pixels`] (Pillow's decompression-bomb error; checked before
/// anything is allocated) or an empty size, a truncated or corrupt file (a JPEG must reach the
/// main image's end-of-image marker, as Pillow requires), and CMYK/YCCK JPEGs (Pillow's CMYK to
/// RGB conversion is not reproduced).
pub fn decode(bytes: &[u8], origin: &Path) -> Result<DynamicImage> {
    decode_with_limit(bytes, origin, max_image_pixels()?)
}

/// [`decode`] under an explicit pixel limit instead of the process-wide one (`None`: none).
pub fn decode_with_limit(bytes: &[u8], origin: &Path, limit: Option<u64>) -> Result<DynamicImage> {
    use image::ImageDecoder;
    let err = |msg: String| Error::Image {
        path: origin.to_path_buf(),
        msg,
    };
    if bytes.is_empty() {
        return Err(err("empty file".into()));
    }
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| err(e.to_string()))?;
    let is_jpeg = match reader.format() {
        Some(image::ImageFormat::Jpeg) => true,
        Some(image::ImageFormat::Png) => false,
        _ => return Err(err("not a PNG or JPEG file".into())),
    };
    if is_jpeg {
        // libjpeg pads a truncated JPEG with grey and only warns; Pillow refuses such files.
        jpeg::check_complete(bytes).map_err(|m| err(m.into()))?;
    }
    reader.limits(limits::image_crate_limits(limit));
    let mut decoder = reader.into_decoder().map_err(|e| err(e.to_string()))?;
    let (w, h) = decoder.dimensions();
    limits::check_declared(w, h, origin, limit)?;
    let orientation = decoder.orientation().map_err(|e| err(e.to_string()))?;
    let mut img = if is_jpeg {
        // libjpeg's verdict is final: a JPEG it cannot read, Pillow (libjpeg too) cannot.
        jpeg::decode_libjpeg(bytes, origin, limit)?
    } else {
        DynamicImage::from_decoder(decoder).map_err(|e| err(e.to_string()))?
    };
    if img.width() == 0 || img.height() == 0 {
        return Err(err(format!(
            "decoded to an empty {}x{} image",
            img.width(),
            img.height()
        )));
    }
    img.apply_orientation(orientation);
    Ok(img)
}

/// Resizes to `size`×`size` (bilinear), converts to `channels` (1: luma, 3: RGB) and returns
/// CHW floats in [0, 1].
pub fn to_chw(img: &DynamicImage, size: usize, channels: usize) -> Result<Vec<f32>> {
    // Converted first (Pillow's convert semantics), then resized with Pillow's bilinear, as the
    // seed models' own preprocessing always did (HF checkpoints go through ProcessorConfig).
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w == 0 || h == 0 {
        return Err(Error::Msg("empty image".into()));
    }
    check_square_size(size)?;
    let px = match channels {
        1 => img.to_luma8().into_raw(),
        3 => processor::to_rgb8_like_pillow(img).into_raw(),
        c => {
            return Err(Error::Config(format!(
                "unsupported channel count {c} (1 or 3)"
            )))
        }
    };
    let px = resize::resize_u8(&px, w, h, channels, size, size, resize::Filter::Bilinear);
    Ok(hwc_to_chw(&px, channels, |_, p| p as f32 / 255.0))
}

/// Interleaved HWC pixels (`channels` per pixel) to planar CHW, each value through
/// `f(channel, value)`.
pub fn hwc_to_chw<T: Copy, U: Copy + Default>(
    px: &[T],
    channels: usize,
    f: impl Fn(usize, T) -> U,
) -> Vec<U> {
    let n = px.len() / channels.max(1);
    let mut out = vec![U::default(); px.len()];
    for (i, p) in px.chunks_exact(channels).enumerate() {
        for (c, &v) in p.iter().enumerate() {
            out[c * n + i] = f(c, v);
        }
    }
    out
}

fn check_square_size(size: usize) -> Result<()> {
    if size == 0 {
        return Err(Error::Config("image size is 0".into()));
    }
    limits::check_output(size as u64, size as u64, &format!("image size {size}"))
}

/// Normalises planar CHW pixels in place: `(x - mean[c]) / std[c]`, one plane per entry of `mean`
/// (callers check that `std` has as many).
pub fn normalize(chw: &mut [f32], mean: &[f32], std: &[f32]) {
    let n = chw.len() / mean.len().max(1);
    if n == 0 {
        return;
    }
    for (plane, (m, s)) in chw.chunks_mut(n).zip(mean.iter().zip(std)) {
        plane.iter_mut().for_each(|v| *v = (*v - m) / s);
    }
}

/// Decoded images into one normalised batch [B, C, size, size] (C = the number of `mean`
/// values: 1 grey, 3 RGB), resized as [`to_chw`].
pub fn batch_resized(
    images: &[DynamicImage],
    size: usize,
    mean: &[f32],
    std: &[f32],
    device: &Device,
) -> Result<Tensor> {
    let c = mean.len();
    if std.len() != c {
        return Err(Error::Config(format!(
            "image_mean has {c} values but image_std {}",
            std.len()
        )));
    }
    if let Some(m) = mean.iter().find(|m| !m.is_finite()) {
        return Err(Error::Config(format!(
            "image_mean has a non-finite value {m}"
        )));
    }
    if let Some(s) = std.iter().find(|s| !s.is_finite() || **s == 0.0) {
        return Err(Error::Config(format!(
            "image_std has {s} (must be finite and non-zero)"
        )));
    }
    check_square_size(size)?;
    let mut data = Vec::with_capacity(images.len() * c * size * size);
    for img in images {
        let mut x = to_chw(img, size, c)?;
        normalize(&mut x, mean, std);
        data.extend(x);
    }
    Ok(Tensor::from_vec(
        data,
        (images.len(), c, size, size),
        device,
    )?)
}
