//! `preprocessor_config.json` as transformers reads it: class defaults (ViT's or CLIP's), an
//! integer `size` meaning the shortest edge for CLIP, every field checked and named.
use super::{ProcessorConfig, Size};
use serde::Deserialize;
use serde_json::Value;

/// What the JSON may hold; `None` takes the class default.
#[derive(Deserialize)]
pub(super) struct RawConfig {
    #[serde(default)]
    image_processor_type: Option<String>,
    #[serde(default)]
    do_resize: Option<bool>,
    #[serde(default)]
    size: Option<Value>,
    #[serde(default)]
    resample: Option<u32>,
    #[serde(default)]
    do_center_crop: Option<bool>,
    #[serde(default)]
    crop_size: Option<Value>,
    #[serde(default)]
    do_rescale: Option<bool>,
    #[serde(default)]
    rescale_factor: Option<f64>,
    #[serde(default)]
    do_normalize: Option<bool>,
    #[serde(default)]
    image_mean: Option<Value>,
    #[serde(default)]
    image_std: Option<Value>,
    #[serde(default)]
    do_convert_rgb: Option<bool>,
    #[serde(default)]
    do_pad: Option<bool>,
    /// DETR's legacy name for `do_pad`.
    #[serde(default)]
    pad_and_return_pixel_mask: Option<bool>,
    /// DETR's legacy longest edge, with an integer `size`.
    #[serde(default)]
    max_size: Option<u32>,
    #[serde(flatten)]
    extra: serde_json::Map<String, Value>,
}

// OpenAI's constants as transformers writes them, rounded to f32 through f64 as Python (and
// serde_json reading the same JSON) does: a direct decimal-to-f32 literal could round otherwise.
pub(super) const CLIP_MEAN: [f32; 3] = [
    0.48145466_f64 as f32,
    0.4578275_f64 as f32,
    0.40821073_f64 as f32,
];
pub(super) const CLIP_STD: [f32; 3] = [
    0.26862954_f64 as f32,
    0.26130258_f64 as f32,
    0.27577711_f64 as f32,
];

/// timm's / torchvision's ImageNet statistics (`IMAGENET_DEFAULT_MEAN`/`STD`), as f64 → f32.
pub(super) const IMAGENET_MEAN: [f32; 3] = [0.485_f64 as f32, 0.456_f64 as f32, 0.406_f64 as f32];
pub(super) const IMAGENET_STD: [f32; 3] = [0.229_f64 as f32, 0.224_f64 as f32, 0.225_f64 as f32];

/// The base class name (no `Fast`/`Pil` suffix) a config's type fields name.
pub(super) fn base_class(
    image_processor_type: Option<&str>,
    extra: &serde_json::Map<String, Value>,
) -> Option<String> {
    let t = match image_processor_type {
        Some(t) => t.to_string(),
        None => extra
            .get("feature_extractor_type")?
            .as_str()?
            .replace("FeatureExtractor", "ImageProcessor"),
    };
    let t = t
        .strip_suffix("Fast")
        .or_else(|| t.strip_suffix("Pil"))
        .unwrap_or(&t);
    Some(t.to_string())
}

pub(super) fn is_clip(base: Option<&str>) -> bool {
    base == Some("CLIPImageProcessor")
}

pub(super) fn is_blip(base: Option<&str>) -> bool {
    base == Some("BlipImageProcessor")
}

pub(super) fn is_perceiver(base: Option<&str>) -> bool {
    base == Some("PerceiverImageProcessor")
}

pub(super) fn is_detr(base: Option<&str>) -> bool {
    base == Some("DetrImageProcessor")
}

/// `size`-like JSON: an int, `[h, w]`, `{height, width}` or `{shortest_edge}` (null entries
/// count as absent, as in HF's SizeDict). Anything else is an error naming `field`, rather
/// than being read as something it is not.
pub(super) fn parse_size(v: &Value, field: &str) -> std::result::Result<Size, String> {
    let int = |v: &Value, what: &str| -> std::result::Result<u32, String> {
        let n = v
            .as_u64()
            .ok_or_else(|| format!("{what} must be a non-negative integer, got {v}"))?;
        u32::try_from(n).map_err(|_| format!("{what} = {n} is too large"))
    };
    match v {
        Value::Number(_) => Ok(Size::Square(int(v, field)?)),
        Value::Array(a) if a.len() == 2 => Ok(Size::HeightWidth {
            height: int(&a[0], &format!("{field}[0]"))?,
            width: int(&a[1], &format!("{field}[1]"))?,
        }),
        Value::Object(m) => {
            let keys: Vec<&str> = m
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, _)| k.as_str())
                .collect();
            let get = |k: &str| int(&m[k], &format!("{field}.{k}"));
            let mut sorted = keys.clone();
            sorted.sort_unstable();
            match sorted.as_slice() {
                ["height", "width"] => Ok(Size::HeightWidth {
                    height: get("height")?,
                    width: get("width")?,
                }),
                ["shortest_edge"] => Ok(Size::ShortestEdge {
                    shortest_edge: get("shortest_edge")?,
                }),
                ["longest_edge", "shortest_edge"] => Ok(Size::ShortestLongest {
                    shortest_edge: get("shortest_edge")?,
                    longest_edge: get("longest_edge")?,
                }),
                _ => Err(format!(
                    "{field} {v}: only an integer, {{height, width}}, {{shortest_edge}} or \
                     {{shortest_edge, longest_edge}} is supported"
                )),
            }
        }
        _ => Err(format!(
            "{field} {v}: expected an integer, [height, width], {{height, width}} or \
             {{shortest_edge}}"
        )),
    }
}

/// `image_mean`-like JSON: a list, or one number for every channel (HF accepts both).
pub(super) fn parse_floats(v: &Value, field: &str) -> std::result::Result<Vec<f32>, String> {
    let one = |x: &Value| {
        x.as_f64()
            .map(|f| f as f32)
            .ok_or_else(|| format!("{field} must hold numbers, got {x}"))
    };
    match v {
        Value::Array(a) => a.iter().map(one).collect(),
        Value::Number(_) => Ok(vec![one(v)?; 3]),
        _ => Err(format!("{field} must be a list of numbers, got {v}")),
    }
}

impl TryFrom<RawConfig> for ProcessorConfig {
    type Error = String;

    fn try_from(r: RawConfig) -> std::result::Result<Self, String> {
        let class = base_class(r.image_processor_type.as_deref(), &r.extra);
        let detr = is_detr(class.as_deref());
        let base = if is_clip(class.as_deref()) {
            ProcessorConfig::clip(224)
        } else if detr {
            ProcessorConfig::detr()
        } else if is_blip(class.as_deref()) {
            ProcessorConfig::blip(384)
        } else {
            ProcessorConfig::vit(224)
        };
        let size = match r.size.as_ref().filter(|v| !v.is_null()) {
            // DETR's `get_size_dict(size, max_size, default_to_square=False)`: an int is the
            // shortest edge, the longest `max_size` (1333 when absent).
            Some(v) if detr && v.is_u64() => match parse_size(v, "size")? {
                Size::Square(s) => Size::ShortestLongest {
                    shortest_edge: s,
                    longest_edge: r.max_size.unwrap_or(1333),
                },
                other => other,
            },
            Some(v) => parse_size(v, "size")?,
            None => base.size,
        };
        let crop_size = match r.crop_size.as_ref().filter(|v| !v.is_null()) {
            Some(v) => Some(parse_size(v, "crop_size")?),
            None => base.crop_size,
        };
        let floats = |v: Option<&Value>, field, d: Vec<f32>| match v.filter(|v| !v.is_null()) {
            Some(v) => parse_floats(v, field),
            None => Ok(d),
        };
        Ok(ProcessorConfig {
            image_processor_type: r.image_processor_type,
            do_resize: r.do_resize.unwrap_or(base.do_resize),
            size,
            resample: r.resample.unwrap_or(base.resample),
            do_center_crop: r.do_center_crop.unwrap_or(base.do_center_crop),
            crop_size,
            do_rescale: r.do_rescale.unwrap_or(base.do_rescale),
            rescale_factor: r.rescale_factor.unwrap_or(base.rescale_factor),
            do_normalize: r.do_normalize.unwrap_or(base.do_normalize),
            image_mean: floats(r.image_mean.as_ref(), "image_mean", base.image_mean)?,
            image_std: floats(r.image_std.as_ref(), "image_std", base.image_std)?,
            do_convert_rgb: r.do_convert_rgb.unwrap_or(base.do_convert_rgb),
            do_pad: r
                .do_pad
                .or(r.pad_and_return_pixel_mask)
                .unwrap_or(base.do_pad),
            extra: r.extra,
            backend_override: None,
        })
    }
}

impl Default for ProcessorConfig {
    /// `ViTImageProcessor`'s defaults (what an empty `preprocessor_config.json` means).
    fn default() -> Self {
        ProcessorConfig {
            image_processor_type: None,
            do_resize: true,
            size: Size::HeightWidth {
                height: 224,
                width: 224,
            },
            resample: 2,
            do_center_crop: false,
            crop_size: None,
            do_rescale: true,
            rescale_factor: 1.0 / 255.0,
            do_normalize: true,
            image_mean: vec![0.5; 3],
            image_std: vec![0.5; 3],
            do_convert_rgb: true,
            do_pad: false,
            extra: Default::default(),
            backend_override: None,
        }
    }
}
