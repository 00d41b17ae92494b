//! Decoding images and turning them into model inputs.
pub mod processor;
pub mod resize;

pub use processor::{ProcessorConfig, Size};

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
pub fn decode(bytes: &[u8], origin: &Path) -> Result<DynamicImage> {
    use image::ImageDecoder;
    let err = |e: image::ImageError| Error::Image {
        path: origin.to_path_buf(),
        msg: e.to_string(),
    };
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::Image {
            path: origin.to_path_buf(),
            msg: e.to_string(),
        })?;
    let is_jpeg = reader.format() == Some(image::ImageFormat::Jpeg);
    // libjpeg fills a truncated JPEG with grey and carries on; Pillow (and we) refuse it.
    if is_jpeg
        && !bytes
            .windows(2)
            .rev()
            .take(1 << 16)
            .any(|w| w == [0xFF, 0xD9])
    {
        return Err(Error::Image {
            path: origin.to_path_buf(),
            msg: "truncated JPEG (no end-of-image marker)".into(),
        });
    }
    let mut decoder = reader.into_decoder().map_err(err)?;
    let orientation = decoder.orientation().map_err(err)?;
    let mut img = if is_jpeg {
        match decode_jpeg_libjpeg(bytes) {
            Some(img) => img,
            // What libjpeg cannot read (e.g. CMYK), the image crate may.
            None => DynamicImage::from_decoder(decoder).map_err(err)?,
        }
    } else {
        DynamicImage::from_decoder(decoder).map_err(err)?
    };
    img.apply_orientation(orientation);
    Ok(img)
}

/// Grey JPEGs stay grey, colour ones become RGB, as Pillow's "L" and "RGB" modes.
fn decode_jpeg_libjpeg(bytes: &[u8]) -> Option<DynamicImage> {
    // libjpeg reports corrupt data by unwinding through its error handler: catch it here.
    std::panic::catch_unwind(|| -> Option<DynamicImage> {
        let d = mozjpeg::Decompress::new_mem(bytes).ok()?;
        match d.color_space() {
            mozjpeg::ColorSpace::JCS_GRAYSCALE => {
                let mut s = d.grayscale().ok()?;
                let (w, h) = (s.width() as u32, s.height() as u32);
                let px: Vec<u8> = s.read_scanlines::<u8>().ok()?;
                s.finish().ok()?;
                image::GrayImage::from_raw(w, h, px).map(DynamicImage::ImageLuma8)
            }
            mozjpeg::ColorSpace::JCS_YCbCr | mozjpeg::ColorSpace::JCS_RGB => {
                let mut s = d.rgb().ok()?;
                let (w, h) = (s.width() as u32, s.height() as u32);
                let px: Vec<[u8; 3]> = s.read_scanlines().ok()?;
                s.finish().ok()?;
                image::RgbImage::from_raw(w, h, px.concat()).map(DynamicImage::ImageRgb8)
            }
            _ => None,
        }
    })
    .ok()
    .flatten()
}

/// Resizes to `size`×`size` (bilinear), converts to `channels` (1: luma, 3: RGB) and returns
/// CHW floats in [0, 1].
pub fn to_chw(img: &DynamicImage, size: usize, channels: usize) -> Result<Vec<f32>> {
    // Converted first (Pillow's convert semantics), then resized with the one resampler the
    // project has: Pillow's bilinear, as `ViTImageProcessor` does.
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w == 0 || h == 0 {
        return Err(Error::Msg("empty image".into()));
    }
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
    Ok(hwc_to_chw(&px, channels, |p| p as f32 / 255.0))
}

/// Interleaved HWC pixels (`channels` per pixel) to planar CHW, each value through `f`.
pub fn hwc_to_chw<T: Copy, U: Copy + Default>(
    px: &[T],
    channels: usize,
    f: impl Fn(T) -> U,
) -> Vec<U> {
    let n = px.len() / channels.max(1);
    let mut out = vec![U::default(); px.len()];
    for (i, p) in px.chunks_exact(channels).enumerate() {
        for (c, &v) in p.iter().enumerate() {
            out[c * n + i] = f(v);
        }
    }
    out
}

/// Normalises planar CHW pixels in place: (x - mean[c]) / std[c], one plane per mean value.
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
