//! HF image processors from `preprocessor_config.json`: `ViTImageProcessor` (resize to
//! height×width) and `CLIPImageProcessor` (shortest-edge resize, centre crop), reproducing the
//! Pillow backend of `transformers` exactly: Pillow's uint8 resampling, `int()` truncations,
//! rescale in float64 then float32, normalise in float32.
use super::resize::{resize_u8, Filter};
use crate::{Error, Result};
use candle_core::{Device, Tensor};
use image::DynamicImage;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// HF's `size` / `crop_size`: an int (square), `{height, width}` or `{shortest_edge}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Size {
    Square(u32),
    HeightWidth { height: u32, width: u32 },
    ShortestEdge { shortest_edge: u32 },
}

fn t() -> bool {
    true
}
fn d_rescale() -> f64 {
    1.0 / 255.0
}
fn d_resample() -> u32 {
    2
}
fn d_size() -> Size {
    Size::HeightWidth {
        height: 224,
        width: 224,
    }
}
fn d_half() -> Vec<f32> {
    vec![0.5, 0.5, 0.5]
}

/// `preprocessor_config.json`. Defaults are `ViTImageProcessor`'s.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProcessorConfig {
    #[serde(default)]
    pub image_processor_type: Option<String>,
    #[serde(default = "t")]
    pub do_resize: bool,
    #[serde(default = "d_size")]
    pub size: Size,
    #[serde(default = "d_resample")]
    pub resample: u32,
    #[serde(default)]
    pub do_center_crop: bool,
    #[serde(default)]
    pub crop_size: Option<Size>,
    #[serde(default = "t")]
    pub do_rescale: bool,
    #[serde(default = "d_rescale")]
    pub rescale_factor: f64,
    #[serde(default = "t")]
    pub do_normalize: bool,
    #[serde(default = "d_half")]
    pub image_mean: Vec<f32>,
    #[serde(default = "d_half")]
    pub image_std: Vec<f32>,
    #[serde(default = "t")]
    pub do_convert_rgb: bool,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        serde_json::from_str("{}").expect("defaults deserialize")
    }
}

impl ProcessorConfig {
    /// `ViTImageProcessor` for `size`×`size` inputs (what `save_pretrained` writes).
    pub fn vit(size: u32) -> Self {
        ProcessorConfig {
            image_processor_type: Some("ViTImageProcessor".into()),
            size: Size::HeightWidth {
                height: size,
                width: size,
            },
            ..Default::default()
        }
    }

    /// `CLIPImageProcessor` as `openai/clip-vit-base-patch32` ships it.
    pub fn clip(size: u32) -> Self {
        ProcessorConfig {
            image_processor_type: Some("CLIPImageProcessor".into()),
            size: Size::ShortestEdge {
                shortest_edge: size,
            },
            resample: 3,
            do_center_crop: true,
            crop_size: Some(Size::HeightWidth {
                height: size,
                width: size,
            }),
            image_mean: vec![0.481_454_66, 0.457_827_5, 0.408_210_73],
            image_std: vec![0.268_629_54, 0.261_302_6, 0.275_777_1],
            ..Default::default()
        }
    }

    pub fn load(path: &Path) -> Result<Self> {
        let c: ProcessorConfig = crate::util::read_json(path)?;
        c.validate()?;
        Ok(c)
    }

    pub fn validate(&self) -> Result<()> {
        if self.image_mean.len() != 3 || self.image_std.len() != 3 {
            return Err(Error::Config(
                "image_mean and image_std need 3 values".into(),
            ));
        }
        if self.image_std.contains(&0.0) {
            return Err(Error::Config("image_std has a zero".into()));
        }
        if Filter::from_pil(self.resample).is_none() {
            return Err(Error::Config(format!("unknown resample {}", self.resample)));
        }
        Ok(())
    }

    /// The (height, width) the resize step produces for an image of `h`×`w`.
    pub fn resized_dims(&self, h: u32, w: u32) -> (u32, u32) {
        match self.size {
            Size::Square(s) => (s, s),
            Size::HeightWidth { height, width } => (height, width),
            Size::ShortestEdge { shortest_edge: s } => {
                // HF get_resize_output_image_size(default_to_square=False): the long side is
                // int(s * long / short), truncated.
                let (short, long) = (h.min(w), h.max(w));
                let new_long = (s as f64 * long as f64 / short as f64) as u32;
                if h <= w {
                    (s, new_long)
                } else {
                    (new_long, s)
                }
            }
        }
    }

    /// The output (height, width) of the whole pipeline.
    pub fn output_dims(&self, h: u32, w: u32) -> (u32, u32) {
        let (h, w) = if self.do_resize {
            self.resized_dims(h, w)
        } else {
            (h, w)
        };
        match (&self.do_center_crop, &self.crop_size) {
            (true, Some(Size::HeightWidth { height, width })) => (*height, *width),
            (true, Some(Size::Square(s))) => (*s, *s),
            _ => (h, w),
        }
    }

    /// Converts (as Pillow's `convert("RGB")`), resizes and crops: the uint8 HWC pixels HF
    /// would normalise, with their (height, width).
    pub fn pixels_u8(&self, img: &DynamicImage) -> Result<(Vec<u8>, u32, u32)> {
        let rgb = to_rgb8_like_pillow(img);
        let (mut w, mut h) = (rgb.width(), rgb.height());
        if w == 0 || h == 0 {
            return Err(Error::Msg("empty image".into()));
        }
        let mut px = rgb.into_raw();
        if self.do_resize {
            let (oh, ow) = self.resized_dims(h, w);
            if oh == 0 || ow == 0 {
                return Err(Error::Msg(format!("image {w}x{h} is too small to resize")));
            }
            let filter = Filter::from_pil(self.resample)
                .ok_or_else(|| Error::Config(format!("unknown resample {}", self.resample)))?;
            px = resize_u8(
                &px,
                w as usize,
                h as usize,
                3,
                ow as usize,
                oh as usize,
                filter,
            );
            (w, h) = (ow, oh);
        }
        if self.do_center_crop {
            let (ch, cw) = self.output_dims(h, w);
            px = center_crop(&px, w, h, cw, ch);
            (w, h) = (cw, ch);
        }
        Ok((px, h, w))
    }

    /// The model input: CHW float32 (`pixel_values` of one image).
    pub fn preprocess(&self, img: &DynamicImage) -> Result<(Vec<f32>, u32, u32)> {
        let (px, h, w) = self.pixels_u8(img)?;
        let n = (h * w) as usize;
        let mut out = vec![0f32; 3 * n];
        for (i, p) in px.chunks_exact(3).enumerate() {
            for c in 0..3 {
                // rescale in float64, cast to float32 (numpy), then normalise in float32
                let mut v = if self.do_rescale {
                    (p[c] as f64 * self.rescale_factor) as f32
                } else {
                    p[c] as f32
                };
                if self.do_normalize {
                    v = (v - self.image_mean[c]) / self.image_std[c];
                }
                out[c * n + i] = v;
            }
        }
        Ok((out, h, w))
    }

    /// A batch [B, 3, H, W] from decoded images (all must give the same output size).
    pub fn batch(&self, images: &[DynamicImage], device: &Device) -> Result<Tensor> {
        let mut data = vec![];
        let mut dims = None;
        for img in images {
            let (x, h, w) = self.preprocess(img)?;
            if *dims.get_or_insert((h, w)) != (h, w) {
                return Err(Error::Shape(
                    "images of different output sizes cannot share a batch; set size or crop_size"
                        .into(),
                ));
            }
            data.extend(x);
        }
        let (h, w) = dims.ok_or_else(|| Error::Msg("no images".into()))?;
        Ok(Tensor::from_vec(
            data,
            (images.len(), 3, h as usize, w as usize),
            device,
        )?)
    }
}

/// HF's `center_crop` (Pillow backend): top = int((h - ch) / 2), left likewise; pads with zeros
/// when the crop is larger than the image.
fn center_crop(px: &[u8], w: u32, h: u32, cw: u32, ch: u32) -> Vec<u8> {
    let top = (h as i64 - ch as i64) / 2;
    let left = (w as i64 - cw as i64) / 2;
    let mut out = vec![0u8; (cw * ch * 3) as usize];
    for y in 0..ch as i64 {
        let sy = y + top;
        if sy < 0 || sy >= h as i64 {
            continue;
        }
        for x in 0..cw as i64 {
            let sx = x + left;
            if sx < 0 || sx >= w as i64 {
                continue;
            }
            let (d, s) = (
                ((y * cw as i64 + x) * 3) as usize,
                ((sy * w as i64 + sx) * 3) as usize,
            );
            out[d..d + 3].copy_from_slice(&px[s..s + 3]);
        }
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
