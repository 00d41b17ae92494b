//! The steps of both backends: resize (Pillow's or torchvision's uint8 resampling), centre crop
//! offsets, and the float arithmetic of rescale and normalise.
use super::super::resize::{resize_u8, resize_u8_torchvision, Filter, TorchFilter};
use super::{Backend, ProcessorConfig};
use image::DynamicImage;

/// A validated resize filter of one backend.
#[derive(Clone, Copy)]
pub(super) enum Resampler {
    Pil(Filter),
    Torch(TorchFilter),
}

impl Resampler {
    pub(super) fn resize(self, px: &[u8], w: u32, h: u32, ow: u32, oh: u32) -> Vec<u8> {
        let (w, h, ow, oh) = (w as usize, h as usize, ow as usize, oh as usize);
        match self {
            Resampler::Pil(f) => resize_u8(px, w, h, 3, ow, oh, f),
            Resampler::Torch(f) => resize_u8_torchvision(px, w, h, 3, ow, oh, f),
        }
    }
}

/// Rescale and normalise, in each backend's arithmetic.
pub(super) enum Arithmetic {
    /// numpy: `(x.astype(float64) * r).astype(float32)`, then `(x - mean) / std` in float32.
    Pil {
        rescale: Option<f64>,
        norm: Option<([f32; 3], [f32; 3])>,
    },
    /// torch: with both steps on, `rescale_and_normalize` fuses them into one normalise by
    /// `mean / r` and `std / r` (float32 tensors times the float64 `1 / r`, which torch rounds
    /// to float32 first); rescale alone is `x * float32(r)`.
    Torch {
        rescale: Option<f32>,
        norm: Option<([f32; 3], [f32; 3])>,
    },
}

impl Arithmetic {
    pub(super) fn new(p: &ProcessorConfig, backend: Backend) -> Self {
        let mean_std = |scale: f32| {
            let m: [f32; 3] = std::array::from_fn(|c| p.image_mean[c] * scale);
            let s: [f32; 3] = std::array::from_fn(|c| p.image_std[c] * scale);
            (m, s)
        };
        match backend {
            Backend::Pil => Arithmetic::Pil {
                rescale: p.do_rescale.then_some(p.rescale_factor),
                norm: p.do_normalize.then(|| mean_std(1.0)),
            },
            Backend::Torchvision => match (p.do_rescale, p.do_normalize) {
                (true, true) => Arithmetic::Torch {
                    rescale: None,
                    norm: Some(mean_std((1.0 / p.rescale_factor) as f32)),
                },
                (r, n) => Arithmetic::Torch {
                    rescale: r.then_some(p.rescale_factor as f32),
                    norm: n.then(|| mean_std(1.0)),
                },
            },
        }
    }

    #[inline]
    pub(super) fn value(&self, c: usize, x: u8) -> f32 {
        match self {
            Arithmetic::Pil { rescale, norm } => {
                let v = match rescale {
                    Some(r) => (x as f64 * r) as f32,
                    None => x as f32,
                };
                match norm {
                    Some((m, s)) => (v - m[c]) / s[c],
                    None => v,
                }
            }
            Arithmetic::Torch { rescale, norm } => {
                let v = match rescale {
                    Some(r) => x as f32 * r,
                    None => x as f32,
                };
                match norm {
                    Some((m, s)) => (v - m[c]) / s[c],
                    None => v,
                }
            }
        }
    }
}

/// Where the crop starts along one axis of length `n` for a crop of `c` (negative: the crop
/// is larger and the image sits that far in, zero-padded around). Inside the image both
/// backends take `floor((n - c) / 2)`; when padding, numpy's `center_crop` puts the odd pixel
/// of padding before the image (`ceil`), torchvision's `F.pad` after it (`floor`).
pub(super) fn crop_offset(n: u32, c: u32, backend: Backend) -> i64 {
    if c <= n {
        ((n - c) / 2) as i64
    } else {
        let pad = (c - n) as i64;
        match backend {
            Backend::Torchvision => -(pad / 2),
            Backend::Pil => -((pad + 1) / 2),
        }
    }
}

/// Centre crop of HWC RGB pixels to `cw`×`ch`, zero-padded where the crop is larger.
pub(super) fn center_crop(
    px: &[u8],
    w: u32,
    h: u32,
    cw: u32,
    ch: u32,
    backend: Backend,
) -> Vec<u8> {
    let top = crop_offset(h, ch, backend);
    let left = crop_offset(w, cw, backend);
    let mut out = vec![0u8; cw as usize * ch as usize * 3];
    // Columns of the crop that fall inside the image, as one copy per row.
    let x0 = (-left).clamp(0, cw as i64);
    let x1 = (w as i64 - left).clamp(x0, cw as i64);
    if x0 == x1 {
        return out;
    }
    for y in 0..ch as i64 {
        let sy = y + top;
        if sy < 0 || sy >= h as i64 {
            continue;
        }
        let d = ((y * cw as i64 + x0) * 3) as usize;
        let s = ((sy * w as i64 + x0 + left) * 3) as usize;
        let len = ((x1 - x0) * 3) as usize;
        out[d..d + len].copy_from_slice(&px[s..s + len]);
    }
    out
}

/// Pillow's `convert("RGB")` of what `Image.open` gives: grey is replicated, alpha dropped
/// (not composited), 16-bit grey (`I;16`) clipped at 255, 16-bit colour reduced to its high
/// byte.
pub fn to_rgb8_like_pillow(img: &DynamicImage) -> image::RgbImage {
    match img {
        DynamicImage::ImageLuma16(g) => {
            let (w, h) = g.dimensions();
            image::RgbImage::from_fn(w, h, |x, y| {
                let v = g.get_pixel(x, y)[0].min(255) as u8;
                image::Rgb([v, v, v])
            })
        }
        DynamicImage::ImageLumaA16(g) => {
            let (w, h) = g.dimensions();
            image::RgbImage::from_fn(w, h, |x, y| {
                let v = g.get_pixel(x, y)[0].min(255) as u8;
                image::Rgb([v, v, v])
            })
        }
        DynamicImage::ImageRgb16(_) | DynamicImage::ImageRgba16(_) => {
            let rgb16 = img.to_rgb16();
            let (w, h) = rgb16.dimensions();
            image::RgbImage::from_fn(w, h, |x, y| {
                let p = rgb16.get_pixel(x, y);
                image::Rgb([(p[0] >> 8) as u8, (p[1] >> 8) as u8, (p[2] >> 8) as u8])
            })
        }
        _ => img.to_rgb8(),
    }
}
