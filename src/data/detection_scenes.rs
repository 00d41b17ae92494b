//! Generated detection scenes, the offline default for training a detector: 1–6 shapes (the
//! six of [`SHAPES`], one category each) of widely varied size in any of the eight colours on
//! a noisy grey background, later shapes drawn over earlier ones (partial occlusion, at most
//! half of any shape hidden). Boxes are COCO's: the tight `[x, y, w, h]` of what stays
//! visible, `area` the visible pixel count. [`write_coco`] writes a COCO directory
//! (`images/*.png` + `annotations.json`) that loads as any user's dataset.
use super::coco::{CocoAnnotation, CocoCategory, CocoDataset, CocoImage};
use super::shape_scenes::{inside, COLORS, SHAPES};
use crate::{Error, Result};
use image::ImageEncoder as _;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::Path;

/// One visible object: its category (index into [`SHAPES`]) and COCO box.
#[derive(Clone, Debug, PartialEq)]
pub struct SceneBox {
    pub category: usize,
    /// `[x, y, w, h]` in pixels.
    pub bbox: [f64; 4],
    /// Visible pixels.
    pub area: f64,
}

#[derive(Clone, Debug)]
pub struct DetectionScene {
    pub width: usize,
    pub height: usize,
    /// RGB, row-major.
    pub rgb: Vec<u8>,
    pub boxes: Vec<SceneBox>,
}

/// A shape's pixels in a `w`×`h` image: centre, radius.
fn footprint(shape: usize, cx: f32, cy: f32, r: f32, w: usize, h: usize) -> Vec<usize> {
    let (x0, x1) = (
        ((cx - r).floor().max(0.0)) as usize,
        ((cx + r).ceil() as usize).min(w),
    );
    let (y0, y1) = (
        ((cy - r).floor().max(0.0)) as usize,
        ((cy + r).ceil() as usize).min(h),
    );
    let mut px = vec![];
    for y in y0..y1 {
        for x in x0..x1 {
            if inside(shape, x as f32 + 0.5 - cx, y as f32 + 0.5 - cy, r) {
                px.push(y * w + x);
            }
        }
    }
    px
}

/// One scene of `width`×`height`.
pub fn detection_scene(width: usize, height: usize, rng: &mut ChaCha8Rng) -> DetectionScene {
    let g = rng.random_range(60..=180);
    let bg: [i32; 3] = [0, 1, 2].map(|_| g + rng.random_range(-20..=20));
    let mut rgb: Vec<u8> = (0..width * height)
        .flat_map(|_| {
            let n = rng.random_range(-15..=15);
            bg.map(|c| (c + n).clamp(0, 255) as u8)
        })
        .collect();
    let mut owner = vec![usize::MAX; width * height];
    let mut drawn: Vec<(usize, usize)> = vec![]; // (shape, pixels drawn)
    let side = width.min(height) as f32;
    let k = rng.random_range(1..=6);
    for _ in 0..k {
        for _attempt in 0..20 {
            let shape = rng.random_range(0..SHAPES.len());
            // Log-uniform radius: small, medium and large boxes in one set.
            let r =
                side * (0.03f32.ln() + rng.random::<f32>() * (0.32f32.ln() - 0.03f32.ln())).exp();
            let cx = rng.random_range(r * 0.8..(width as f32 - r * 0.8).max(r * 0.8 + 1.0));
            let cy = rng.random_range(r * 0.8..(height as f32 - r * 0.8).max(r * 0.8 + 1.0));
            let px = footprint(shape, cx, cy, r, width, height);
            if px.len() < 24 {
                continue;
            }
            // Visible pixels each earlier object keeps under this one.
            let mut visible = vec![0usize; drawn.len()];
            for &o in owner.iter().filter(|&&o| o != usize::MAX) {
                visible[o] += 1;
            }
            let mut covered = vec![0usize; drawn.len()];
            for &p in &px {
                if owner[p] != usize::MAX {
                    covered[owner[p]] += 1;
                }
            }
            let keeps = drawn
                .iter()
                .enumerate()
                .all(|(i, &(_, n))| (visible[i] - covered[i]) * 2 >= n);
            if !keeps {
                continue;
            }
            let c = COLORS[rng.random_range(0..COLORS.len())].1;
            let id = drawn.len();
            for &p in &px {
                owner[p] = id;
                for ch in 0..3 {
                    rgb[p * 3 + ch] =
                        (c[ch] as i32 + rng.random_range(-15..=15)).clamp(0, 255) as u8;
                }
            }
            drawn.push((shape, px.len()));
            break;
        }
    }
    let mut boxes = vec![];
    for (id, &(shape, _)) in drawn.iter().enumerate() {
        let (mut x0, mut y0, mut x1, mut y1, mut n) = (usize::MAX, usize::MAX, 0, 0, 0usize);
        for (p, _) in owner.iter().enumerate().filter(|(_, &o)| o == id) {
            let (x, y) = (p % width, p / width);
            x0 = x0.min(x);
            y0 = y0.min(y);
            x1 = x1.max(x + 1);
            y1 = y1.max(y + 1);
            n += 1;
        }
        if n > 0 {
            boxes.push(SceneBox {
                category: shape,
                bbox: [x0 as f64, y0 as f64, (x1 - x0) as f64, (y1 - y0) as f64],
                area: n as f64,
            });
        }
    }
    DetectionScene {
        width,
        height,
        rgb,
        boxes,
    }
}

/// COCO categories of the scenes: ids 1–6, named by shape.
pub fn categories() -> Vec<CocoCategory> {
    SHAPES
        .iter()
        .enumerate()
        .map(|(i, s)| CocoCategory {
            id: i as u64 + 1,
            name: s.to_string(),
            supercategory: Some("shape".into()),
        })
        .collect()
}

/// Writes `n` scenes (seeded) as a COCO directory: `dir/images/000000.png`… and
/// `dir/annotations.json`. Returns the annotations.
pub fn write_coco(
    dir: &Path,
    n: usize,
    width: usize,
    height: usize,
    seed: u64,
) -> Result<CocoDataset> {
    if n == 0 || width < 32 || height < 32 || width > 4096 || height > 4096 {
        return Err(Error::Config(format!(
            "detection scenes: {n} images of {width}×{height}: need at least one image, sides in [32, 4096]"
        )));
    }
    let images_dir = dir.join("images");
    std::fs::create_dir_all(&images_dir).map_err(|e| Error::io(&images_dir, e))?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut ds = CocoDataset {
        info: Some(
            serde_json::json!({"description": "tessera generated detection scenes", "seed": seed}),
        ),
        categories: categories(),
        ..CocoDataset::default()
    };
    for i in 0..n {
        let s = detection_scene(width, height, &mut rng);
        let name = format!("{i:06}.png");
        let mut png = vec![];
        image::codecs::png::PngEncoder::new(&mut png)
            .write_image(
                &s.rgb,
                width as u32,
                height as u32,
                image::ExtendedColorType::Rgb8,
            )
            .map_err(|e| Error::Msg(format!("encoding {name}: {e}")))?;
        crate::util::atomic_write(&images_dir.join(&name), &png)?;
        let image_id = i as u64 + 1;
        ds.images.push(CocoImage {
            id: image_id,
            width: width as u32,
            height: height as u32,
            file_name: name,
        });
        for b in s.boxes {
            ds.annotations.push(CocoAnnotation {
                id: ds.annotations.len() as u64 + 1,
                image_id,
                category_id: b.category as u64 + 1,
                bbox: b.bbox,
                area: Some(b.area),
                iscrowd: 0,
                segmentation: None,
            });
        }
    }
    ds.save(&dir.join("annotations.json"))?;
    Ok(ds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_hold_exactly_the_visible_pixels() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (mut total, mut small, mut large) = (0, 0, 0);
        for _ in 0..60 {
            let s = detection_scene(256, 224, &mut rng);
            assert!((1..=6).contains(&s.boxes.len()));
            for b in &s.boxes {
                let [x, y, w, h] = b.bbox;
                assert!(
                    x >= 0.0 && y >= 0.0 && x + w <= 256.0 && y + h <= 224.0 && b.area <= w * h
                );
                total += 1;
                small += (b.area < 32.0 * 32.0) as usize;
                large += (b.area > 96.0 * 96.0) as usize;
            }
        }
        // COCO's three size classes all occur (small < 32², large > 96²).
        assert!(
            total > 150 && small > 30 && large > 3,
            "{total} {small} {large}"
        );
    }
}
