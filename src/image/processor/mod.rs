//! HF image processors from `preprocessor_config.json`: `ViTImageProcessor` (resize to
//! height×width) and `CLIPImageProcessor` (shortest-edge resize, centre crop), in both of
//! transformers 5's backends, each reproduced exactly:
//!
//! * [`Backend::Torchvision`], transformers' default (`ViTImageProcessor`, what `use_fast=True`
//!   or `backend="torchvision"` gives): the PIL image becomes a uint8 tensor, torchvision's
//!   antialiased uint8 resize ([`crate::image::resize::resize_u8_torchvision`]), `F.center_crop`'s offsets, then
//!   rescale and normalise fused into one float32 `(x - mean/r) / (std/r)`.
//! * [`Backend::Pil`] (`ViTImageProcessorPil`): Pillow's uint8 resampling ([`crate::image::resize::resize_u8`]),
//!   numpy's centre crop, rescale in float64 then float32, normalise in float32.
//!
//! Both convert to RGB as Pillow's `convert("RGB")` and compute the shortest-edge size the same
//! way (`get_resize_output_image_size`: the long side is truncated).
mod parse;
mod steps;

use super::resize::{Filter, TorchFilter};
use crate::{Error, Result};
use candle_core::{Device, Tensor};
use image::DynamicImage;
use parse::{base_class, is_clip, RawConfig, CLIP_MEAN, CLIP_STD};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;
pub use steps::to_rgb8_like_pillow;
use steps::{center_crop, Arithmetic, Resampler};

/// Which of transformers' image-processor backends to reproduce.
///
/// transformers 5.24's `AutoImageProcessor.from_pretrained` (and so `pipeline(...)`) picks the
/// backend from its `backend=` / `use_fast=` arguments only, defaulting to torchvision whenever
/// torchvision is installed; it ignores the `Fast`/`Pil` suffix of `image_processor_type` and a
/// `use_fast` key in the file, and refuses a file with a `backend` key. tessera's
/// [`ProcessorConfig::backend`] therefore defaults to [`Backend::Torchvision`] too, and takes
/// the config's word only where it is explicit: a `backend` key, or an `image_processor_type`
/// naming a backend's class (`…Pil`: Pil, `…Fast`: torchvision; transformers' `to_dict` never
/// writes the `Pil` suffix, so such a file was written for tessera on purpose).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// torchvision (`ViTImageProcessor`, `CLIPImageProcessor`): transformers 5's default.
    #[default]
    Torchvision,
    /// Pillow + numpy (`ViTImageProcessorPil`, `CLIPImageProcessorPil`).
    Pil,
}

impl Backend {
    /// Every backend, in the order a help text lists them.
    pub const ALL: [Backend; 2] = [Backend::Torchvision, Backend::Pil];

    /// The name transformers uses (`backend="torchvision"` / `"pil"`), also what
    /// [`FromStr`](std::str::FromStr) accepts.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Torchvision => "torchvision",
            Backend::Pil => "pil",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Backend {
    type Err = Error;

    /// `torchvision` or `pil` (ASCII case-insensitive), e.g. for `--processor-backend`.
    fn from_str(s: &str) -> Result<Backend> {
        Backend::ALL
            .into_iter()
            .find(|b| b.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                Error::Config(format!(
                    "unknown image processor backend {s:?} (expected torchvision or pil)"
                ))
            })
    }
}

/// HF's `size` / `crop_size`: an int, `{height, width}`, `{shortest_edge}` or (DETR's)
/// `{shortest_edge, longest_edge}`.
///
/// An int means a square for `crop_size` and for most processors' `size`, but the shortest
/// edge for `CLIPImageProcessor`'s `size` (its `default_to_square = False`; the original
/// `openai/clip-vit-*` configs say `"size": 224`): see [`ProcessorConfig::resized_dims`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Size {
    Square(u32),
    HeightWidth {
        height: u32,
        width: u32,
    },
    ShortestEdge {
        shortest_edge: u32,
    },
    /// The shortest edge to `shortest_edge` unless that makes the longest pass
    /// `longest_edge` (`DetrImageProcessor`: 800 and 1333).
    ShortestLongest {
        shortest_edge: u32,
        longest_edge: u32,
    },
}

/// `preprocessor_config.json`. Keys the file leaves out take the defaults of its processor
/// class (`image_processor_type`, else the legacy `feature_extractor_type`): CLIP's for
/// `CLIPImageProcessor`, `ViTImageProcessor`'s otherwise.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawConfig")]
pub struct ProcessorConfig {
    pub image_processor_type: Option<String>,
    pub do_resize: bool,
    pub size: Size,
    pub resample: u32,
    pub do_center_crop: bool,
    pub crop_size: Option<Size>,
    pub do_rescale: bool,
    pub rescale_factor: f64,
    pub do_normalize: bool,
    pub image_mean: Vec<f32>,
    pub image_std: Vec<f32>,
    pub do_convert_rgb: bool,
    /// Pad a batch's images (bottom and right, with zeros after normalising) to the largest
    /// and give a `pixel_mask` (`DetrImageProcessor`; see [`ProcessorConfig::batch_padded`]).
    /// Written only when set: the classifiers' processors have no such key.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub do_pad: bool,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
    /// The caller's choice of backend, over whatever the config says (a CLI flag, say). Never
    /// written to JSON: transformers refuses a `backend` key.
    #[serde(skip)]
    pub backend_override: Option<Backend>,
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

    /// `PerceiverImageProcessor` for `size`×`size` inputs: the centre `size/256·224`… of the
    /// shorter side (crop_size scaled as 256 is to 224), bicubic resize, ImageNet mean/std.
    pub fn perceiver(size: u32) -> Self {
        let crop = (size as u64 * 256 / 224) as u32;
        ProcessorConfig {
            image_processor_type: Some("PerceiverImageProcessor".into()),
            size: Size::HeightWidth {
                height: size,
                width: size,
            },
            resample: 3,
            do_center_crop: true,
            crop_size: Some(Size::HeightWidth {
                height: crop,
                width: crop,
            }),
            image_mean: parse::IMAGENET_MEAN.to_vec(),
            image_std: parse::IMAGENET_STD.to_vec(),
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
            image_mean: CLIP_MEAN.to_vec(),
            image_std: CLIP_STD.to_vec(),
            ..Default::default()
        }
    }

    /// `BlipImageProcessor` (BLIP and BLIP-2): `size`×`size`, bicubic, OpenAI CLIP's mean and
    /// std, no crop.
    pub fn blip(size: u32) -> Self {
        ProcessorConfig {
            image_processor_type: Some("BlipImageProcessor".into()),
            size: Size::HeightWidth {
                height: size,
                width: size,
            },
            resample: 3,
            image_mean: CLIP_MEAN.to_vec(),
            image_std: CLIP_STD.to_vec(),
            ..Default::default()
        }
    }

    /// `DetrImageProcessor`'s defaults: shortest edge 800, longest 1333, bilinear, ImageNet
    /// mean and std, padding with a pixel mask.
    pub fn detr() -> Self {
        Self::detr_sized(800, 1333)
    }

    /// `DetrImageProcessor` resizing to `shortest_edge` unless the longest edge would pass
    /// `longest_edge` (both equal: a square image stays that size).
    pub fn detr_sized(shortest_edge: u32, longest_edge: u32) -> Self {
        ProcessorConfig {
            image_processor_type: Some("DetrImageProcessor".into()),
            size: Size::ShortestLongest {
                shortest_edge,
                longest_edge,
            },
            resample: 2,
            image_mean: parse::IMAGENET_MEAN.to_vec(),
            image_std: parse::IMAGENET_STD.to_vec(),
            do_pad: true,
            ..Default::default()
        }
    }

    /// A checkpoint directory's `preprocessor_config.json` when it has one, else the
    /// `image_processor` of its `processor_config.json` (what transformers 5's multimodal
    /// processors save), else `default()` (the processor the model family ships with).
    pub fn in_dir_or(dir: Option<&Path>, default: impl FnOnce() -> Self) -> Result<Self> {
        let Some(dir) = dir else {
            return Ok(default());
        };
        let pre = dir.join("preprocessor_config.json");
        if pre.exists() {
            return Self::load(&pre);
        }
        let proc = dir.join("processor_config.json");
        if proc.exists() {
            let v: Value = crate::util::read_json(&proc)?;
            if let Some(ip) = v.get("image_processor") {
                let c: ProcessorConfig = serde_path_to_error::deserialize(ip.clone())
                    .map_err(|e| Error::json(&proc, e))?;
                c.validate()
                    .map_err(|e| Error::Config(format!("{}: {}", proc.display(), config_msg(e))))?;
                return Ok(c);
            }
        }
        Ok(default())
    }

    pub fn load(path: &Path) -> Result<Self> {
        let c: ProcessorConfig = crate::util::read_json(path)?;
        c.validate()
            .map_err(|e| Error::Config(format!("{}: {}", path.display(), config_msg(e))))?;
        Ok(c)
    }

    /// The same config computed by `backend` whatever the file says.
    pub fn with_backend(mut self, backend: Backend) -> Self {
        self.backend_override = Some(backend);
        self
    }

    /// Sets (`Some`) or clears (`None`: back to what the config says) the caller's backend.
    pub fn set_backend(&mut self, backend: Option<Backend>) {
        self.backend_override = backend;
    }

    /// The backend the config itself names (see [`Backend`]): a `backend` key, else a
    /// `…Pil` / `…Fast` `image_processor_type`; `None` when it names none. An unknown
    /// `backend` value is an error.
    pub fn configured_backend(&self) -> Result<Option<Backend>> {
        if let Some(v) = self.extra.get("backend").filter(|v| !v.is_null()) {
            let s = v.as_str().ok_or_else(|| {
                Error::Config(format!(
                    "backend must be a string (torchvision or pil), got {v}"
                ))
            })?;
            return s.parse().map(Some);
        }
        Ok(match self.image_processor_type.as_deref() {
            Some(t) if t.ends_with("Pil") => Some(Backend::Pil),
            Some(t) if t.ends_with("Fast") => Some(Backend::Torchvision),
            _ => None,
        })
    }

    /// The backend the pipeline runs: the caller's [`with_backend`](Self::with_backend), else
    /// the config's [`configured_backend`](Self::configured_backend), else transformers'
    /// default, torchvision. (An invalid `backend` key is reported by [`validate`](Self::validate),
    /// which every processing call runs first.)
    pub fn backend(&self) -> Backend {
        self.backend_override
            .or_else(|| self.configured_backend().ok().flatten())
            .unwrap_or_default()
    }

    /// `CLIPImageProcessor` (any backend), from `image_processor_type` or the legacy
    /// `feature_extractor_type`.
    fn is_clip(&self) -> bool {
        is_clip(base_class(self.image_processor_type.as_deref(), &self.extra).as_deref())
    }

    /// `PerceiverImageProcessor` crops first, to (size / crop_size) of the shorter side, then
    /// resizes to `size`.
    fn is_perceiver(&self) -> bool {
        parse::is_perceiver(
            base_class(self.image_processor_type.as_deref(), &self.extra).as_deref(),
        )
    }

    /// The Perceiver's crop of an `h`×`w` image: `int(size / crop_size · min(h, w))` per side.
    fn perceiver_crop(&self, h: u32, w: u32) -> Result<(u32, u32)> {
        let (sh, sw) = match self.size {
            Size::HeightWidth { height, width } => (height, width),
            Size::Square(s) => (s, s),
            _ => {
                return Err(Error::Config(
                    "PerceiverImageProcessor: size must have height and width".into(),
                ))
            }
        };
        let (ch, cw) = self.crop_dims()?;
        let min = h.min(w) as f64;
        let side = |s: u32, c: u32| ((s as f64 / c as f64) * min) as u32;
        Ok((side(sh, ch).max(1), side(sw, cw).max(1)))
    }

    /// Checks every value the pipeline uses, naming the offending field: sizes (at least 1,
    /// output at most [`max_image_pixels`](super::max_image_pixels) pixels), a resample filter
    /// the backend has, finite rescale factor and mean, finite non-zero std.
    pub fn validate(&self) -> Result<()> {
        let backend = match self.backend_override {
            Some(b) => b,
            None => self.configured_backend()?.unwrap_or_default(),
        };
        if self.image_mean.len() != 3 || self.image_std.len() != 3 {
            return Err(Error::Config(
                "image_mean and image_std need 3 values".into(),
            ));
        }
        if self.do_normalize {
            if let Some(m) = self.image_mean.iter().find(|m| !m.is_finite()) {
                return Err(Error::Config(format!("image_mean has {m}")));
            }
            if let Some(s) = self.image_std.iter().find(|s| !s.is_finite() || **s == 0.0) {
                return Err(Error::Config(format!(
                    "image_std has {s} (must be finite and non-zero)"
                )));
            }
        }
        if self.do_rescale && !self.rescale_factor.is_finite() {
            return Err(Error::Config(format!(
                "rescale_factor is {}",
                self.rescale_factor
            )));
        }
        if self.do_resize {
            self.filter(backend)?;
            match self.size {
                Size::ShortestEdge { shortest_edge: s } => check_dims(s, s, "size.shortest_edge")?,
                Size::ShortestLongest {
                    shortest_edge: s,
                    longest_edge: l,
                } => {
                    check_dims(s, l, "size")?;
                    if l < s {
                        return Err(Error::Config(format!(
                            "size.longest_edge {l} is below size.shortest_edge {s}"
                        )));
                    }
                }
                Size::Square(s) => check_dims(s, s, "size")?,
                Size::HeightWidth { height, width } => check_dims(height, width, "size")?,
            }
        }
        if self.do_center_crop {
            self.crop_dims()?;
        }
        Ok(())
    }

    /// The resampler for `backend`, or an error naming `resample`.
    fn filter(&self, backend: Backend) -> Result<Resampler> {
        let r = self.resample;
        let name = match r {
            0 => "NEAREST",
            1 => "LANCZOS",
            2 => "BILINEAR",
            3 => "BICUBIC",
            4 => "BOX",
            5 => "HAMMING",
            _ => {
                return Err(Error::Config(format!(
                    "unknown resample {r} (PIL filters are 0-5)"
                )))
            }
        };
        match backend {
            Backend::Pil => Filter::from_pil(r).map(Resampler::Pil),
            Backend::Torchvision => TorchFilter::from_pil(r).map(Resampler::Torch),
        }
        .ok_or_else(|| {
            Error::Config(match r {
                4 | 5 => format!(
                    "resample {r} ({name}): transformers' torchvision backend cannot resize \
                     with it either (the pil backend can)"
                ),
                _ => format!(
                    "resample {r} ({name}) is not reproduced for the torchvision backend (only \
                     2 BILINEAR and 3 BICUBIC); use the pil backend"
                ),
            })
        })
    }

    /// `crop_size` as (height, width); an error when the crop is on and the size is missing
    /// or not a height and width.
    fn crop_dims(&self) -> Result<(u32, u32)> {
        let (h, w) = match &self.crop_size {
            Some(Size::HeightWidth { height, width }) => (*height, *width),
            Some(Size::Square(s)) => (*s, *s),
            Some(Size::ShortestEdge { .. } | Size::ShortestLongest { .. }) => {
                return Err(Error::Config(
                    "crop_size needs a height and width, not shortest_edge".into(),
                ))
            }
            None => {
                return Err(Error::Config(
                    "do_center_crop is set but crop_size is missing".into(),
                ))
            }
        };
        check_dims(h, w, "crop_size")?;
        Ok((h, w))
    }

    /// The (height, width) the resize step produces for an image of `h`×`w`.
    pub fn resized_dims(&self, h: u32, w: u32) -> (u32, u32) {
        let shortest = |s: u32| {
            // HF get_resize_output_image_size(default_to_square=False): the long side is
            // int(s * long / short), truncated (in float64, as Python's true division).
            let (short, long) = (h.min(w).max(1), h.max(w));
            let new_long = (s as f64 * long as f64 / short as f64) as u32;
            if h <= w {
                (s, new_long)
            } else {
                (new_long, s)
            }
        };
        match self.size {
            // get_size_dict(size, default_to_square): CLIP's int size is its shortest edge.
            Size::Square(s) if self.is_clip() => shortest(s),
            Size::Square(s) => (s, s),
            Size::HeightWidth { height, width } => (height, width),
            Size::ShortestEdge { shortest_edge: s } => shortest(s),
            Size::ShortestLongest {
                shortest_edge,
                longest_edge,
            } => size_with_aspect_ratio(h, w, shortest_edge, longest_edge),
        }
    }

    /// The output (height, width) of the whole pipeline (before any padding).
    pub fn output_dims(&self, h: u32, w: u32) -> (u32, u32) {
        let (h, w) = if self.do_resize {
            self.resized_dims(h, w)
        } else {
            (h, w)
        };
        match (
            self.do_center_crop && !self.is_perceiver(),
            self.crop_dims(),
        ) {
            (true, Ok(hw)) => hw,
            _ => (h, w),
        }
    }

    /// Converts (as Pillow's `convert("RGB")`), resizes and crops: the uint8 HWC pixels HF
    /// would normalise, with their (height, width).
    pub fn pixels_u8(&self, img: &DynamicImage) -> Result<(Vec<u8>, u32, u32)> {
        self.validate()?;
        let backend = self.backend();
        let rgb = to_rgb8_like_pillow(img);
        let (mut w, mut h) = (rgb.width(), rgb.height());
        if w == 0 || h == 0 {
            return Err(Error::Msg("empty image".into()));
        }
        let mut px = rgb.into_raw();
        let perceiver = self.is_perceiver();
        if perceiver && self.do_center_crop {
            let (ch, cw) = self.perceiver_crop(h, w)?;
            px = center_crop(&px, w, h, cw, ch, backend);
            (w, h) = (cw, ch);
        }
        if self.do_resize {
            let (oh, ow) = self.resized_dims(h, w);
            super::limits::check_output(
                oh as u64,
                ow as u64,
                &format!("size {:?} on a {w}x{h} image", self.size),
            )?;
            px = self.filter(backend)?.resize(&px, w, h, ow, oh);
            (w, h) = (ow, oh);
        }
        if self.do_center_crop && !perceiver {
            let (ch, cw) = self.crop_dims()?;
            px = center_crop(&px, w, h, cw, ch, backend);
            (w, h) = (cw, ch);
        }
        Ok((px, h, w))
    }

    /// The model input: CHW float32 (`pixel_values` of one image).
    pub fn preprocess(&self, img: &DynamicImage) -> Result<(Vec<f32>, u32, u32)> {
        let (px, h, w) = self.pixels_u8(img)?;
        let arith = Arithmetic::new(self, self.backend());
        let out = super::hwc_to_chw(&px, 3, |c, v| arith.value(c, v));
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

    /// A batch of images of any sizes, as `DetrImageProcessor` pads it: each processed image
    /// zero-padded at the bottom and right to the largest height and width (or `pad_size`),
    /// with `pixel_mask` [B, H, W] (u8, 1 on real pixels). Also the (height, width) each
    /// image was resized to, which boxes are relative to before padding.
    pub fn batch_padded(&self, images: &[DynamicImage], device: &Device) -> Result<PaddedBatch> {
        let done: Vec<(Vec<f32>, u32, u32)> = images
            .iter()
            .map(|img| self.preprocess(img))
            .collect::<Result<_>>()?;
        if done.is_empty() {
            return Err(Error::Msg("no images".into()));
        }
        let (mut ph, mut pw) = done
            .iter()
            .fold((0, 0), |(a, b), (_, h, w)| (a.max(*h), b.max(*w)));
        if let Some(p) = self.extra.get("pad_size").filter(|v| !v.is_null()) {
            let (h, w) = match parse::parse_size(p, "pad_size").map_err(Error::Config)? {
                Size::HeightWidth { height, width } => (height, width),
                other => {
                    return Err(Error::Config(format!(
                        "pad_size must be {{height, width}}, got {other:?}"
                    )))
                }
            };
            if h < ph || w < pw {
                return Err(Error::Config(format!(
                    "pad_size {h}x{w} is smaller than an image of the batch ({ph}x{pw})"
                )));
            }
            (ph, pw) = (h, w);
        }
        let (b, ph, pw) = (done.len(), ph as usize, pw as usize);
        crate::util::check_alloc((b * 3 * ph * pw * 4) as u64, "a padded batch")?;
        let mut data = vec![0f32; b * 3 * ph * pw];
        let mut mask = vec![0u8; b * ph * pw];
        let mut sizes = vec![];
        for (i, (x, h, w)) in done.iter().enumerate() {
            let (h, w) = (*h as usize, *w as usize);
            for c in 0..3 {
                for y in 0..h {
                    let dst = ((i * 3 + c) * ph + y) * pw;
                    data[dst..dst + w].copy_from_slice(&x[(c * h + y) * w..(c * h + y + 1) * w]);
                }
            }
            for y in 0..h {
                mask[(i * ph + y) * pw..(i * ph + y) * pw + w].fill(1);
            }
            sizes.push((h as u32, w as u32));
        }
        Ok(PaddedBatch {
            pixel_values: Tensor::from_vec(data, (b, 3, ph, pw), device)?,
            pixel_mask: Tensor::from_vec(mask, (b, ph, pw), device)?,
            sizes,
        })
    }
}

/// `Error::Config("x")` as "x" (for prefixing the file name), anything else as displayed.
fn config_msg(e: Error) -> String {
    match e {
        Error::Config(m) => m,
        e => e.to_string(),
    }
}

/// [`ProcessorConfig::batch_padded`]'s batch.
#[derive(Clone, Debug)]
pub struct PaddedBatch {
    /// [B, 3, H, W] float32, zero past each image.
    pub pixel_values: Tensor,
    /// [B, H, W] u8: 1 on real pixels.
    pub pixel_mask: Tensor,
    /// Each image's (height, width) before padding.
    pub sizes: Vec<(u32, u32)>,
}

/// transformers' `get_size_with_aspect_ratio((h, w), size, max_size)`: the shortest edge to
/// `size`, unless the longest would pass `max_size`, then the longest to `max_size` (Python's
/// `round`, half to even), the other side truncated; an image already at size is kept.
pub fn size_with_aspect_ratio(h: u32, w: u32, size: u32, max_size: u32) -> (u32, u32) {
    let (hf, wf) = (h as f64, w as f64);
    let (min_o, max_o) = (hf.min(wf), hf.max(wf));
    let mut size = size as f64;
    let mut raw = None;
    if max_o / min_o * size > max_size as f64 {
        let r = max_size as f64 * min_o / max_o;
        size = r.round_ties_even();
        raw = Some(r);
    }
    let s = size as u32;
    if (h <= w && h == s) || (w <= h && w == s) {
        return (h, w);
    }
    if w < h {
        let oh = match raw {
            Some(r) => r * hf / wf,
            None => (s as f64 * hf) / wf,
        };
        (oh as u32, s)
    } else {
        let ow = match raw {
            Some(r) => r * wf / hf,
            None => (s as f64 * wf) / hf,
        };
        (s, ow as u32)
    }
}

/// Both sides at least 1 and the area within the pixel limit; `what` names the field.
fn check_dims(h: u32, w: u32, what: &str) -> Result<()> {
    if h == 0 || w == 0 {
        return Err(Error::Config(format!(
            "{what} must be at least 1 (got {h}x{w})"
        )));
    }
    super::limits::check_output(h as u64, w as u64, what)
}

#[cfg(test)]
mod tests {
    use super::steps::crop_offset;
    use super::*;

    #[test]
    fn backend_names_round_trip() {
        for b in Backend::ALL {
            assert_eq!(b.name().parse::<Backend>().unwrap(), b);
            assert_eq!(b.to_string(), b.name());
        }
        assert_eq!(" PIL ".parse::<Backend>().unwrap(), Backend::Pil);
        let e = "fast".parse::<Backend>().unwrap_err().to_string();
        assert!(
            e.contains("\"fast\"") && e.contains("torchvision or pil"),
            "{e}"
        );
    }

    #[test]
    fn crop_offsets_differ_only_when_padding_an_odd_amount() {
        for b in Backend::ALL {
            assert_eq!(crop_offset(10, 4, b), 3);
            assert_eq!(crop_offset(11, 4, b), 3);
            assert_eq!(crop_offset(4, 8, b), -2);
        }
        assert_eq!(crop_offset(20, 25, Backend::Torchvision), -2);
        assert_eq!(crop_offset(20, 25, Backend::Pil), -3);
    }

    #[test]
    fn clip_defaults_and_int_size() {
        // openai/clip-vit-base-patch32's file: legacy type key, int sizes, no crop flag default.
        let c: ProcessorConfig = serde_json::from_str(
            r#"{"feature_extractor_type": "CLIPFeatureExtractor", "size": 224, "crop_size": 224}"#,
        )
        .unwrap();
        assert_eq!(c.resample, 3);
        assert!(c.do_center_crop);
        assert_eq!(c.image_mean, CLIP_MEAN.to_vec());
        assert_eq!(c.resized_dims(375, 500), (224, 298));
        assert_eq!(c.output_dims(375, 500), (224, 224));
        // ViT's int size is a square.
        let v: ProcessorConfig =
            serde_json::from_str(r#"{"image_processor_type": "ViTImageProcessor", "size": 100}"#)
                .unwrap();
        assert_eq!(v.resized_dims(375, 500), (100, 100));
        assert_eq!(v.resample, 2);
        // Round trip keeps what the file said.
        let back: ProcessorConfig =
            serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }
}
