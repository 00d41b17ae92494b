//! A localisation benchmark: a Fashion-MNIST item pasted at a random position on a larger
//! canvas, with clutter (fragments of other items, noise) elsewhere. The label is the item's
//! class; its box is known, so an explanation map can be scored by whether it points inside.
use super::InMemory;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Item boxes: (x, y, width, height) in canvas pixels.
pub type Box4 = (usize, usize, usize, usize);

/// `n` canvases of `size`×`size` built from `items` (28×28 grey, [0, 1]); returns the dataset
/// and each image's item box.
pub fn pasted(items: &InMemory, n: usize, size: usize, seed: u64) -> (InMemory, Vec<Box4>) {
    let (_, ih, iw) = items.dims;
    let item = |i: usize| &items.pixels[i * ih * iw..(i + 1) * ih * iw];
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut pixels = Vec::with_capacity(n * size * size);
    let (mut labels, mut boxes) = (vec![], vec![]);
    for _ in 0..n {
        let mut canvas: Vec<f32> = (0..size * size)
            .map(|_| rng.random_range(0.0..0.15))
            .collect();
        let k = rng.random_range(0..items.labels.len());
        let (x0, y0) = (
            rng.random_range(0..=size - iw),
            rng.random_range(0..=size - ih),
        );
        // Clutter: three 8×8 fragments of other items, outside the item's box.
        let mut placed = 0;
        while placed < 3 {
            let (fx, fy) = (
                rng.random_range(0..=size - 8),
                rng.random_range(0..=size - 8),
            );
            let overlaps = fx + 8 > x0 && fx < x0 + iw && fy + 8 > y0 && fy < y0 + ih;
            if overlaps {
                continue;
            }
            let other = item(rng.random_range(0..items.labels.len()));
            let (ox, oy) = (rng.random_range(6..14), rng.random_range(6..14));
            for y in 0..8 {
                for x in 0..8 {
                    let v = other[(oy + y) * iw + ox + x];
                    let c = &mut canvas[(fy + y) * size + fx + x];
                    *c = c.max(v);
                }
            }
            placed += 1;
        }
        let it = item(k);
        for y in 0..ih {
            for x in 0..iw {
                let c = &mut canvas[(y0 + y) * size + x0 + x];
                *c = c.max(it[y * iw + x]);
            }
        }
        pixels.extend(canvas);
        labels.push(items.labels[k]);
        boxes.push((x0, y0, iw, ih));
    }
    (
        InMemory {
            name: "pasted".into(),
            pixels,
            labels,
            dims: (1, size, size),
            classes: items.classes.clone(),
        },
        boxes,
    )
}

/// Whether patch `p` of a `side`×`side` grid over a `size` canvas lies inside `b` (its centre).
pub fn patch_in_box(p: usize, side: usize, size: usize, b: Box4) -> bool {
    let cell = size as f32 / side as f32;
    let (cx, cy) = (
        ((p % side) as f32 + 0.5) * cell,
        ((p / side) as f32 + 0.5) * cell,
    );
    cx >= b.0 as f32 && cx < (b.0 + b.2) as f32 && cy >= b.1 as f32 && cy < (b.1 + b.3) as f32
}
