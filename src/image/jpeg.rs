//! JPEG specifics: Pillow's truncation rule and the libjpeg-turbo decode.
use crate::{Error, Result};
use image::DynamicImage;
use std::path::Path;

const TRUNCATED: &str = "truncated JPEG (the data ends before the end-of-image marker)";

/// Whether the marker structure reaches the main image's end-of-image marker (EOI).
///
/// Pillow refuses a JPEG whose data runs out before libjpeg reaches EOI ("image file is
/// truncated", also when only the final FF D9 is missing); libjpeg itself only warns and pads
/// the rest of the image with grey. Searching the tail of the file for FF D9 is not enough:
/// a phone JPEG's EXIF thumbnail (inside APP1) carries its own SOI..EOI, so a file cut in the
/// middle of the main scan can still contain FF D9. Walking the segments by their lengths
/// skips the thumbnail, and inside entropy-coded data an FF byte is followed only by 00
/// (stuffing) or a restart marker, so the first other marker after the last scan is the real
/// one. Bytes after EOI are ignored, as libjpeg does.
pub(crate) fn check_complete(b: &[u8]) -> std::result::Result<(), &'static str> {
    if !b.starts_with(&[0xFF, 0xD8]) {
        return Err("not a JPEG (no start-of-image marker)");
    }
    let mut i = 2;
    let mut scans = 0;
    loop {
        // Up to the next marker: libjpeg skips (with a warning) stray bytes before it, and any
        // number of FF fill bytes.
        while i < b.len() && b[i] != 0xFF {
            i += 1;
        }
        while i < b.len() && b[i] == 0xFF {
            i += 1;
        }
        let Some(&marker) = b.get(i) else {
            return Err(TRUNCATED);
        };
        i += 1;
        match marker {
            0xD9 if scans > 0 => return Ok(()),
            0xD9 => return Err("corrupt JPEG (end-of-image before any image data)"),
            // Standalone markers (restart, TEM) and a stray stuffed zero: no length.
            0xD0..=0xD7 | 0x01 | 0x00 => {}
            _ => {
                let len = match b.get(i..i + 2) {
                    Some(l) => u16::from_be_bytes([l[0], l[1]]) as usize,
                    None => return Err(TRUNCATED),
                };
                if len < 2 {
                    return Err("corrupt JPEG (bad segment length)");
                }
                i += len;
                if i > b.len() {
                    return Err(TRUNCATED);
                }
                if marker == 0xDA {
                    scans += 1;
                    i = skip_entropy_coded(b, i).ok_or(TRUNCATED)?;
                }
            }
        }
    }
}

/// From the start of a scan's entropy-coded data to the FF of the marker that ends it.
fn skip_entropy_coded(b: &[u8], mut i: usize) -> Option<usize> {
    loop {
        i += b.get(i..)?.iter().position(|&x| x == 0xFF)?;
        let mut j = i + 1;
        while *b.get(j)? == 0xFF {
            j += 1;
        }
        match b[j] {
            0x00 | 0xD0..=0xD7 => i = j + 1,
            _ => return Some(i),
        }
    }
}

/// Grey JPEGs stay grey, colour ones become RGB, as Pillow's "L" and "RGB" modes. The header's
/// size is checked against `limit` before libjpeg allocates the image.
pub(crate) fn decode_libjpeg(
    bytes: &[u8],
    origin: &Path,
    limit: Option<u64>,
) -> Result<DynamicImage> {
    let err = |msg: String| Error::Image {
        path: origin.to_path_buf(),
        msg,
    };
    // libjpeg reports corrupt data by unwinding through its error handler (mozjpeg's
    // `unwinding` feature, `resume_unwind` with the message): catch it here.
    let run = std::panic::catch_unwind(|| -> Result<DynamicImage> {
        let io = |e: std::io::Error| err(format!("libjpeg: {e}"));
        let d = mozjpeg::Decompress::new_mem(bytes).map_err(io)?;
        let (w, h) = (d.width() as u32, d.height() as u32);
        super::limits::check_declared(w, h, origin, limit)?;
        match d.color_space() {
            mozjpeg::ColorSpace::JCS_GRAYSCALE => {
                let mut s = d.grayscale().map_err(io)?;
                let px: Vec<u8> = s.read_scanlines::<u8>().map_err(io)?;
                s.finish().map_err(io)?;
                image::GrayImage::from_raw(w, h, px).map(DynamicImage::ImageLuma8)
            }
            mozjpeg::ColorSpace::JCS_YCbCr | mozjpeg::ColorSpace::JCS_RGB => {
                let mut s = d.rgb().map_err(io)?;
                let px: Vec<u8> = s.read_scanlines::<u8>().map_err(io)?;
                s.finish().map_err(io)?;
                image::RgbImage::from_raw(w, h, px).map(DynamicImage::ImageRgb8)
            }
            mozjpeg::ColorSpace::JCS_CMYK | mozjpeg::ColorSpace::JCS_YCCK => {
                return Err(err(
                    "CMYK JPEG is not supported (Pillow's CMYK to RGB conversion is not \
                     reproduced); convert it to RGB first"
                        .into(),
                ))
            }
            other => return Err(err(format!("unsupported JPEG colour space {other:?}"))),
        }
        .ok_or_else(|| err("libjpeg returned fewer pixels than the header declares".into()))
    });
    match run {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "libjpeg failed".into());
            Err(err(msg))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check_complete;

    /// SOI, an APP1 holding a whole thumbnail JPEG (SOI..EOI), SOS with some data, EOI.
    fn with_thumbnail() -> Vec<u8> {
        let thumb = [0xFF, 0xD8, 0xFF, 0xDA, 0, 2, 1, 2, 3, 0xFF, 0xD9];
        let mut f = vec![0xFF, 0xD8, 0xFF, 0xE1];
        f.extend(((thumb.len() + 2) as u16).to_be_bytes());
        f.extend(thumb);
        f.extend([0xFF, 0xDA, 0, 2, 9, 0xFF, 0x00, 8, 0xFF, 0xD3, 7, 7, 7]);
        f.extend([0xFF, 0xD9]);
        f
    }

    #[test]
    fn only_the_main_eoi_counts() {
        let f = with_thumbnail();
        assert_eq!(check_complete(&f), Ok(()));
        let mut junk = f.clone();
        junk.extend(b"trailing junk");
        assert_eq!(check_complete(&junk), Ok(()));
        // Cut anywhere before the final EOI: truncated, though the thumbnail's FF D9 is there.
        for cut in 2..f.len() - 1 {
            assert!(check_complete(&f[..cut]).is_err(), "cut at {cut}");
        }
        assert!(check_complete(b"\xff\xd8\xff\xd9").is_err());
        assert!(check_complete(b"\xff\xd8\xff\xe0\x00\x01").is_err());
    }
}
