//! Generated image–caption pairs: coloured shapes at positions, captioned "a red circle on the
//! left". Attribute combinations can be held out of training, so zero-shot accuracy on them
//! measures whether a CLIP model composes "red" and "circle" rather than memorising pairs.
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub const COLORS: [(&str, [u8; 3]); 4] = [
    ("red", [220, 30, 30]),
    ("green", [30, 180, 40]),
    ("blue", [40, 60, 230]),
    ("yellow", [230, 210, 30]),
];
pub const SHAPES: [&str; 3] = ["circle", "square", "triangle"];
pub const POSITIONS: [&str; 4] = ["on the left", "on the right", "at the top", "at the bottom"];

/// One scene: RGB pixels (HWC), its attributes and caption.
#[derive(Clone, Debug)]
pub struct Scene {
    pub rgb: Vec<u8>,
    pub color: usize,
    pub shape: usize,
    pub position: usize,
    pub caption: String,
}

fn inside(shape: usize, dx: f32, dy: f32, r: f32) -> bool {
    match shape {
        0 => dx * dx + dy * dy <= r * r,
        1 => dx.abs() <= r * 0.85 && dy.abs() <= r * 0.85,
        _ => {
            // upward triangle: apex at top
            let t = (dy + r) / (2.0 * r); // 0 at top, 1 at bottom
            (0.0..=1.0).contains(&t) && dx.abs() <= t * r
        }
    }
}

/// Renders a `size`×`size` scene: grey-noise background, the shape centred in its half.
pub fn render(
    size: usize,
    color: usize,
    shape: usize,
    position: usize,
    rng: &mut ChaCha8Rng,
) -> Scene {
    let s = size as f32;
    let r = s * rng.random_range(0.16..0.22);
    let jitter = |rng: &mut ChaCha8Rng| rng.random_range(-0.06..0.06) * s;
    let (cx, cy) = match position {
        0 => (s * 0.27 + jitter(rng), s * 0.5 + jitter(rng)),
        1 => (s * 0.73 + jitter(rng), s * 0.5 + jitter(rng)),
        2 => (s * 0.5 + jitter(rng), s * 0.27 + jitter(rng)),
        _ => (s * 0.5 + jitter(rng), s * 0.73 + jitter(rng)),
    };
    let c = COLORS[color].1;
    let mut rgb = vec![0u8; size * size * 3];
    for y in 0..size {
        for x in 0..size {
            let i = (y * size + x) * 3;
            let (dx, dy) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
            if inside(shape, dx, dy, r) {
                for k in 0..3 {
                    rgb[i + k] = (c[k] as i32 + rng.random_range(-15..=15)).clamp(0, 255) as u8;
                }
            } else {
                let g = rng.random_range(90..150u8);
                rgb[i..i + 3].copy_from_slice(&[g, g, g]);
            }
        }
    }
    // Captions name all attributes or a subset ("a red shape", "a circle on the left"), as
    // real alt-text does; attribute-level captions push the embeddings to keep colour and shape
    // separable, which is what composing unseen pairs needs.
    let (c, sh, p) = (COLORS[color].0, SHAPES[shape], POSITIONS[position]);
    let caption = match rng.random_range(0..6) {
        0 | 1 => format!("a {c} {sh} {p}"),
        2 => format!("a {c} {sh}"),
        3 => format!("a {c} shape {p}"),
        4 => format!("a {sh} {p}"),
        _ => {
            if rng.random::<bool>() {
                format!("a {c} shape")
            } else {
                format!("a {sh}")
            }
        }
    };
    Scene {
        rgb,
        color,
        shape,
        position,
        caption,
    }
}

/// `n` scenes whose (color, shape) pair is (or, with `held_out = false`, is not) in `held`.
pub fn scenes(
    n: usize,
    size: usize,
    held: &[(usize, usize)],
    held_out: bool,
    seed: u64,
) -> Vec<Scene> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let (c, s, p) = (
            rng.random_range(0..COLORS.len()),
            rng.random_range(0..SHAPES.len()),
            rng.random_range(0..POSITIONS.len()),
        );
        if held.contains(&(c, s)) == held_out {
            out.push(render(size, c, s, p, &mut rng));
        }
    }
    out
}

/// The default held-out (color, shape) pairs: each colour and each shape still appears in
/// training, just never together.
pub const HELD_OUT: [(usize, usize); 4] = [(0, 0), (1, 1), (2, 2), (3, 0)];

/// A two-object scene: `a` (colour, shape) on one side and `b` on the other (left/right chosen
/// by `a_left`), both with the same size range as training scenes. For explanations: which
/// object does a text light up?
pub fn two_objects(
    size: usize,
    a: (usize, usize),
    b: (usize, usize),
    a_left: bool,
    rng: &mut ChaCha8Rng,
) -> Vec<u8> {
    let s = size as f32;
    let mut rgb: Vec<u8> = (0..size * size)
        .flat_map(|_| {
            let g = rng.random_range(90..150u8);
            [g, g, g]
        })
        .collect();
    for (k, (color, shape)) in [a, b].into_iter().enumerate() {
        let left = (k == 0) == a_left;
        let r = s * rng.random_range(0.16..0.2);
        let (cx, cy) = (
            if left { s * 0.27 } else { s * 0.73 },
            s * 0.5 + rng.random_range(-0.06..0.06) * s,
        );
        let c = COLORS[color].1;
        for y in 0..size {
            for x in 0..size {
                if inside(shape, x as f32 + 0.5 - cx, y as f32 + 0.5 - cy, r) {
                    let i = (y * size + x) * 3;
                    for ch in 0..3 {
                        rgb[i + ch] =
                            (c[ch] as i32 + rng.random_range(-15..=15)).clamp(0, 255) as u8;
                    }
                }
            }
        }
    }
    rgb
}
