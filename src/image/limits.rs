//! How many pixels an image file may declare before tessera refuses to decode it.
//!
//! Pillow's rule (`Image.MAX_IMAGE_PIXELS`, `_decompression_bomb_check`): a file declaring more
//! than `MAX_IMAGE_PIXELS` = 89,478,485 pixels gets a `DecompressionBombWarning`, more than
//! twice that a `DecompressionBombError`. A few kilobytes of PNG or JPEG can declare
//! 65500×65500 pixels; allocating that aborts the process, so the dimensions are checked from
//! the header, before anything is allocated.
//!
//! tessera keeps the same two thresholds: above twice the limit [`crate::image::decode`] returns
//! an error; between the limit and twice it the image decodes, and a caller that wants Pillow's
//! warning asks [`exceeds_max_image_pixels`] (library code never prints).
//!
//! The limit is process-wide: [`set_max_image_pixels`] if called, else the environment variable
//! [`MAX_IMAGE_PIXELS_ENV`] (`TESSERA_MAX_IMAGE_PIXELS`: a positive pixel count, or `none` for
//! no limit, like Pillow's `MAX_IMAGE_PIXELS = None`), else [`DEFAULT_MAX_IMAGE_PIXELS`]. The same
//! limit bounds the output size an image processor config may ask for.
use crate::{Error, Result};
use std::path::Path;
use std::sync::Mutex;

/// Pillow's `Image.MAX_IMAGE_PIXELS` (its warning threshold; the error is at twice this).
pub const DEFAULT_MAX_IMAGE_PIXELS: u64 = 89_478_485;

/// Environment variable read when [`set_max_image_pixels`] was not called.
pub const MAX_IMAGE_PIXELS_ENV: &str = "TESSERA_MAX_IMAGE_PIXELS";

/// `None`: not set by the program (environment, then default). `Some(None)`: no limit.
static LIMIT: Mutex<Option<Option<u64>>> = Mutex::new(None);

/// Sets the process-wide limit (`None`: no limit, as Pillow's `MAX_IMAGE_PIXELS = None`; then
/// only what cannot be addressed is refused, and a huge declared size or config size goes to
/// the allocator), overriding [`MAX_IMAGE_PIXELS_ENV`]. A limit of 0 is treated as 1.
pub fn set_max_image_pixels(limit: Option<u64>) {
    let mut l = LIMIT.lock().unwrap_or_else(|e| e.into_inner());
    *l = Some(limit.map(|n| n.max(1)));
}

/// The limit in force: what [`set_max_image_pixels`] set, else [`MAX_IMAGE_PIXELS_ENV`], else
/// [`DEFAULT_MAX_IMAGE_PIXELS`]. `Ok(None)`: no limit. An unparsable environment value is an
/// error naming the variable (rather than silently decoding without the limit).
pub fn max_image_pixels() -> Result<Option<u64>> {
    if let Some(set) = *LIMIT.lock().unwrap_or_else(|e| e.into_inner()) {
        return Ok(set);
    }
    match std::env::var(MAX_IMAGE_PIXELS_ENV) {
        Err(_) => Ok(Some(DEFAULT_MAX_IMAGE_PIXELS)),
        Ok(v) => parse_limit(&v).ok_or_else(|| {
            Error::Config(format!(
                "{MAX_IMAGE_PIXELS_ENV}={v:?}: expected a positive pixel count or \"none\""
            ))
        }),
    }
}

fn parse_limit(v: &str) -> Option<Option<u64>> {
    let v = v.trim();
    if v.eq_ignore_ascii_case("none") {
        return Some(None);
    }
    v.replace('_', "")
        .parse::<u64>()
        .ok()
        .filter(|&n| n > 0)
        .map(Some)
}

/// Pillow's `DecompressionBombWarning` condition: more pixels than the limit (but, if the
/// image was decoded, not more than twice it). False when there is no limit or the
/// environment value is invalid (decoding reports that).
pub fn exceeds_max_image_pixels(width: u32, height: u32) -> bool {
    matches!(max_image_pixels(), Ok(Some(l)) if width as u64 * height as u64 > l)
}

/// Refuses a declared size above twice the limit (Pillow's `DecompressionBombError`) and an
/// empty one, before the decoder allocates anything.
pub(crate) fn check_declared(
    width: u32,
    height: u32,
    origin: &Path,
    limit: Option<u64>,
) -> Result<()> {
    let err = |msg: String| Error::Image {
        path: origin.to_path_buf(),
        msg,
    };
    if width == 0 || height == 0 {
        return Err(err(format!(
            "image declares an empty size {width}x{height}"
        )));
    }
    let pixels = width as u64 * height as u64;
    if let Some(limit) = limit {
        if pixels > limit.saturating_mul(2) {
            return Err(err(format!(
                "image declares {width}x{height} = {pixels} pixels, over the decompression-bomb \
                 limit of {} (twice the max image pixels {limit}; see {MAX_IMAGE_PIXELS_ENV})",
                limit.saturating_mul(2)
            )));
        }
    }
    Ok(())
}

/// The `image` crate's allocation limit matching the pixel limit: twice the limit at the
/// widest sample format the decoders produce (16-bit RGBA, 8 bytes a pixel), so the crate's
/// own default (512 MiB) does not refuse images Pillow opens.
pub(crate) fn image_crate_limits(limit: Option<u64>) -> image::Limits {
    let mut l = image::Limits::no_limits();
    l.max_alloc = limit.map(|p| p.saturating_mul(2).saturating_mul(8));
    l
}

/// Bounds an output size (resize target, crop) by the same limit; `what` names the config
/// field for the message.
pub(crate) fn check_output(height: u64, width: u64, what: &str) -> Result<()> {
    let pixels = height.saturating_mul(width);
    let limit = max_image_pixels()?;
    // Without a limit, still refuse what cannot be allocated (3 float channels).
    let max = limit.unwrap_or(isize::MAX as u64 / 12);
    if pixels > max {
        return Err(Error::Config(format!(
            "{what} gives a {height}x{width} image ({pixels} pixels), over the limit of {max} \
             pixels{}",
            if limit.is_some() {
                format!(" ({MAX_IMAGE_PIXELS_ENV})")
            } else {
                String::new()
            }
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_limit;

    #[test]
    fn limit_values() {
        assert_eq!(parse_limit("1000"), Some(Some(1000)));
        assert_eq!(parse_limit(" 89_478_485 "), Some(Some(89_478_485)));
        assert_eq!(parse_limit("None"), Some(None));
        assert_eq!(parse_limit("0"), None);
        assert_eq!(parse_limit("-5"), None);
        assert_eq!(parse_limit("lots"), None);
    }
}
