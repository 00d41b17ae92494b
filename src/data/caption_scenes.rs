//! Generated scenes for training a captioner from scratch: one to three coloured shapes in a
//! row or a column, each caption naming every object in reading order with the relation that
//! orders them ("a red circle left of a blue square", "a green ring above a white cross above a
//! cyan diamond"). The caption is a function of the image, so exact-caption rate is a fair
//! score; each object keeps its pixel mask, so a word's attention map can be checked against
//! the object it names (the pointing game). Colour–shape pairs can be held out of training.
use super::shape_scenes::{grey_noise, paint, COLORS, SHAPES};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How objects are ordered in a caption: left to right, or top to bottom.
pub const RELATIONS: [&str; 2] = ["left of", "above"];

/// Every word a caption can use, in a fixed order (the captioner's vocabulary after its
/// special tokens).
pub fn words() -> Vec<&'static str> {
    let mut w = vec!["a", "left", "of", "above"];
    w.extend(COLORS.iter().map(|(c, _)| *c));
    w.extend(SHAPES);
    w
}

/// One drawn object: indices into [`COLORS`] and [`SHAPES`], and its pixels.
#[derive(Clone, Debug, PartialEq)]
pub struct Placed {
    pub color: usize,
    pub shape: usize,
    /// `size`×`size`, row-major: whether the pixel is this object's.
    pub mask: Vec<bool>,
}

#[derive(Clone, Debug)]
pub struct CaptionScene {
    /// HWC RGB.
    pub rgb: Vec<u8>,
    pub size: usize,
    /// In reading order (the caption's order).
    pub objects: Vec<Placed>,
    /// Index into [`RELATIONS`] (0 for a single object).
    pub relation: usize,
    pub caption: String,
}

impl CaptionScene {
    /// Whether patch (`row`, `col`) of a `grid`×`grid` patching touches object `k`.
    pub fn patch_on(&self, k: usize, grid: usize, row: usize, col: usize) -> bool {
        let p = self.size / grid;
        let mask = &self.objects[k].mask;
        (row * p..(row + 1) * p).any(|y| (col * p..(col + 1) * p).any(|x| mask[y * self.size + x]))
    }

    /// The fraction of patches touching object `k`: a random patch's chance in the pointing
    /// game.
    pub fn patch_fraction(&self, k: usize, grid: usize) -> f64 {
        let hits = (0..grid * grid)
            .filter(|i| self.patch_on(k, grid, i / grid, i % grid))
            .count();
        hits as f64 / (grid * grid) as f64
    }
}

/// The caption of `objects` (colour, shape) in reading order joined by `relation`.
pub fn caption(objects: &[(usize, usize)], relation: usize) -> String {
    objects
        .iter()
        .map(|&(c, s)| format!("a {} {}", COLORS[c].0, SHAPES[s]))
        .collect::<Vec<_>>()
        .join(&format!(" {} ", RELATIONS[relation]))
}

/// Draws one scene of `objects` (colour, shape), in a row (`relation` 0) or a column (1):
/// evenly spaced centres with jitter, radii that keep neighbours apart, grey-noise background.
pub fn render(
    size: usize,
    objects: &[(usize, usize)],
    relation: usize,
    rng: &mut ChaCha8Rng,
) -> CaptionScene {
    let s = size as f32;
    let n = objects.len().max(1);
    let mut rgb = grey_noise(size, rng);
    let slot = s / n as f32;
    let placed = objects
        .iter()
        .enumerate()
        .map(|(i, &(color, shape))| {
            let r = (slot * 0.36).min(s * 0.22) * rng.random_range(0.8..1.0);
            let along = slot * (i as f32 + 0.5) + rng.random_range(-0.08..0.08) * slot;
            let across = s * 0.5 + rng.random_range(-0.15..0.15) * s;
            let (cx, cy) = if relation == 0 {
                (along, across)
            } else {
                (across, along)
            };
            let mask = paint(&mut rgb, size, shape, COLORS[color].1, (cx, cy), r, rng);
            Placed { color, shape, mask }
        })
        .collect();
    CaptionScene {
        rgb,
        size,
        objects: placed,
        relation: if n > 1 { relation } else { 0 },
        caption: caption(objects, relation),
    }
}

/// `n` scenes of one to three objects (30% / 40% / 30%), distinct colour–shape pairs within a
/// scene. `held` lists held-out (colour, shape) pairs: with `unseen` false no object is one;
/// with `unseen` true every scene has at least one.
pub fn scenes(
    n: usize,
    size: usize,
    held: &[(usize, usize)],
    unseen: bool,
    seed: u64,
) -> Vec<CaptionScene> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let k = match rng.random_range(0..10) {
            0..=2 => 1,
            3..=6 => 2,
            _ => 3,
        };
        let objects: Vec<(usize, usize)> = (0..k)
            .map(|_| {
                (
                    rng.random_range(0..COLORS.len()),
                    rng.random_range(0..SHAPES.len()),
                )
            })
            .collect();
        let distinct = (0..k).all(|i| (0..i).all(|j| objects[i] != objects[j]));
        let has_held = objects.iter().any(|o| held.contains(o));
        if !distinct || has_held != unseen {
            continue;
        }
        let relation = rng.random_range(0..RELATIONS.len());
        out.push(render(size, &objects, relation, &mut rng));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::shape_scenes::HELD_OUT;

    #[test]
    fn captions_name_every_object_in_reading_order() {
        let train = scenes(300, 64, &HELD_OUT, false, 1);
        let unseen = scenes(100, 64, &HELD_OUT, true, 2);
        let vocab = words();
        for s in &train {
            assert!(s
                .objects
                .iter()
                .all(|o| !HELD_OUT.contains(&(o.color, o.shape))));
            assert!(
                s.caption.split(' ').all(|w| vocab.contains(&w)),
                "{}",
                s.caption
            );
            let pairs: Vec<_> = s.objects.iter().map(|o| (o.color, o.shape)).collect();
            assert_eq!(s.caption, caption(&pairs, s.relation));
            // Reading order: centroids increase along the relation's axis, objects apart.
            let centre = |o: &Placed| {
                let (mut sx, mut sy, mut n) = (0.0, 0.0, 0.0);
                for (i, _) in o.mask.iter().enumerate().filter(|(_, &m)| m) {
                    sx += (i % 64) as f64;
                    sy += (i / 64) as f64;
                    n += 1.0;
                }
                assert!(n > 10.0, "an object of {n} pixels");
                (sx / n, sy / n)
            };
            for w in s.objects.windows(2) {
                let (a, b) = (centre(&w[0]), centre(&w[1]));
                let gap = if s.relation == 0 {
                    b.0 - a.0
                } else {
                    b.1 - a.1
                };
                assert!(gap > 8.0, "{} {gap}", s.caption);
                assert!(!w[0].mask.iter().zip(&w[1].mask).any(|(x, y)| *x && *y));
            }
        }
        assert!(unseen.iter().all(|s| s
            .objects
            .iter()
            .any(|o| HELD_OUT.contains(&(o.color, o.shape)))));
        let counts: Vec<usize> = (1..=3)
            .map(|k| train.iter().filter(|s| s.objects.len() == k).count())
            .collect();
        assert!(counts.iter().all(|&c| c > 40), "{counts:?}");
        // The pointing game's chance: an object covers some of the 8×8 patches, never all.
        let f = train[0].patch_fraction(0, 8);
        assert!(f > 0.0 && f < 0.6, "{f}");
    }
}
