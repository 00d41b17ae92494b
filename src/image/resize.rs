//! Pillow's resampling, reproduced exactly for 8-bit images (`Image.resize` in Pillow's
//! `Resample.c`): separable convolution, horizontal pass then vertical, coefficients normalised
//! in double precision and rounded to 22-bit fixed point, each pass rounding and clipping to
//! uint8. HF image processors resize with Pillow, so matching it bit for bit is what makes
//! tessera's pixel values equal HF's.

/// Pillow's resampling filters (`PIL.Image.Resampling` values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filter {
    Nearest = 0,
    Lanczos = 1,
    Bilinear = 2,
    Bicubic = 3,
    Box = 4,
    Hamming = 5,
}

impl Filter {
    /// From HF's `resample` integer (PIL enum).
    pub fn from_pil(v: u32) -> Option<Filter> {
        Some(match v {
            0 => Filter::Nearest,
            1 => Filter::Lanczos,
            2 => Filter::Bilinear,
            3 => Filter::Bicubic,
            4 => Filter::Box,
            5 => Filter::Hamming,
            _ => return None,
        })
    }

    fn support(self) -> f64 {
        match self {
            Filter::Nearest | Filter::Box => 0.5,
            Filter::Bilinear | Filter::Hamming => 1.0,
            Filter::Bicubic => 2.0,
            Filter::Lanczos => 3.0,
        }
    }

    fn eval(self, x: f64) -> f64 {
        fn sinc(x: f64) -> f64 {
            if x == 0.0 {
                1.0
            } else {
                let x = x * std::f64::consts::PI;
                x.sin() / x
            }
        }
        match self {
            Filter::Nearest | Filter::Box => {
                if x > -0.5 && x <= 0.5 {
                    1.0
                } else {
                    0.0
                }
            }
            Filter::Bilinear => {
                let x = x.abs();
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
            Filter::Hamming => {
                let x = x.abs();
                if x == 0.0 {
                    1.0
                } else if x >= 1.0 {
                    0.0
                } else {
                    let xp = x * std::f64::consts::PI;
                    // Pillow writes these constants as C floats.
                    xp.sin() / xp * (0.54f32 as f64 + 0.46f32 as f64 * xp.cos())
                }
            }
            Filter::Bicubic => {
                const A: f64 = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            Filter::Lanczos => {
                if (-3.0..3.0).contains(&x) {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Per output pixel: first source index, count, and fixed-point weights (`ksize` each).
struct Coeffs {
    ksize: usize,
    bounds: Vec<(usize, usize)>,
    k: Vec<i32>,
}

fn precompute(in_size: usize, in0: f64, in1: f64, out_size: usize, filter: Filter) -> Coeffs {
    let scale = (in1 - in0) / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut k = vec![0i32; out_size * ksize];
    let mut w = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = in0 + (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C's (int) truncates toward zero.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let xmax = xmax.saturating_sub(xmin);
        let mut ww = 0.0;
        for (x, wx) in w.iter_mut().enumerate().take(xmax) {
            *wx = filter.eval((x as f64 + xmin as f64 - center + 0.5) * ss);
            ww += *wx;
        }
        for x in 0..xmax {
            let v = if ww != 0.0 { w[x] / ww } else { w[x] };
            let f = v * (1u64 << PRECISION_BITS) as f64;
            k[xx * ksize + x] = if v < 0.0 {
                (f - 0.5) as i32
            } else {
                (f + 0.5) as i32
            };
        }
        bounds.push((xmin, xmax));
    }
    Coeffs { ksize, bounds, k }
}

#[inline]
fn clip8(v: i64) -> u8 {
    let v = v >> PRECISION_BITS;
    v.clamp(0, 255) as u8
}

/// Resizes an interleaved 8-bit image (`channels` per pixel) from `w`×`h` to `ow`×`oh` exactly
/// as Pillow's `Image.resize(size, resample)` (no `box`, no `reducing_gap`).
pub fn resize_u8(
    src: &[u8],
    w: usize,
    h: usize,
    channels: usize,
    ow: usize,
    oh: usize,
    filter: Filter,
) -> Vec<u8> {
    if filter == Filter::Nearest {
        return nearest(src, w, h, channels, ow, oh);
    }
    if w == ow && h == oh {
        return src.to_vec();
    }
    let c = channels;
    // Pillow 13 runs the reducing pass first when one axis grows and the other shrinks
    // (measured against Pillow: vertical first exactly when width grows and height shrinks).
    if w != ow && h != oh && ow > w && oh < h {
        let tmp = vertical(src, w, h, c, oh, filter);
        return horizontal(&tmp, w, oh, c, ow, filter, 0, oh);
    }
    let vert = precompute(h, 0.0, h as f64, oh, filter);
    // Horizontal pass over only the rows the vertical pass reads.
    let (first, last) = (
        vert.bounds[0].0,
        vert.bounds[oh - 1].0 + vert.bounds[oh - 1].1,
    );
    if w == ow {
        return vertical(src, w, h, c, oh, filter);
    }
    let tmp = horizontal(src, w, h, c, ow, filter, first, last - first);
    if h == oh {
        return tmp;
    }
    vertical_with(&tmp, ow, c, &vert, first, oh)
}

/// Horizontal pass over source rows `row0 .. row0 + rows`.
#[allow(clippy::too_many_arguments)]
fn horizontal(
    src: &[u8],
    w: usize,
    _h: usize,
    c: usize,
    ow: usize,
    filter: Filter,
    row0: usize,
    rows: usize,
) -> Vec<u8> {
    let horiz = precompute(w, 0.0, w as f64, ow, filter);
    let mut tmp = vec![0u8; rows * ow * c];
    for y in 0..rows {
        let srow = &src[(y + row0) * w * c..(y + row0 + 1) * w * c];
        for xx in 0..ow {
            let (xmin, xmax) = horiz.bounds[xx];
            let k = &horiz.k[xx * horiz.ksize..xx * horiz.ksize + xmax];
            for ch in 0..c {
                let mut ss: i64 = 1 << (PRECISION_BITS - 1);
                for (x, kx) in k.iter().enumerate() {
                    ss += srow[(x + xmin) * c + ch] as i64 * *kx as i64;
                }
                tmp[(y * ow + xx) * c + ch] = clip8(ss);
            }
        }
    }
    tmp
}

fn vertical(src: &[u8], w: usize, h: usize, c: usize, oh: usize, filter: Filter) -> Vec<u8> {
    let vert = precompute(h, 0.0, h as f64, oh, filter);
    vertical_with(src, w, c, &vert, 0, oh)
}

/// Vertical pass; `src` starts at source row `row0`.
fn vertical_with(src: &[u8], w: usize, c: usize, vert: &Coeffs, row0: usize, oh: usize) -> Vec<u8> {
    let mut out = vec![0u8; oh * w * c];
    for yy in 0..oh {
        let (ymin, ymax) = vert.bounds[yy];
        let ymin = ymin - row0;
        let k = &vert.k[yy * vert.ksize..yy * vert.ksize + ymax];
        for xx in 0..w {
            for ch in 0..c {
                let mut ss: i64 = 1 << (PRECISION_BITS - 1);
                for (y, ky) in k.iter().enumerate() {
                    ss += src[((y + ymin) * w + xx) * c + ch] as i64 * *ky as i64;
                }
                out[(yy * w + xx) * c + ch] = clip8(ss);
            }
        }
    }
    out
}

/// Pillow's nearest-neighbour resize (`ImagingScaleAffine`): source positions accumulate in
/// double precision pixel by pixel, as Pillow does, so boundary cases round the same way.
fn nearest(src: &[u8], w: usize, h: usize, c: usize, ow: usize, oh: usize) -> Vec<u8> {
    let (sx, sy) = (w as f64 / ow as f64, h as f64 / oh as f64);
    let table = |n: usize, step: f64, limit: usize| -> Vec<usize> {
        let mut pos = step * 0.5;
        (0..n)
            .map(|_| {
                let i = if pos < 0.0 {
                    0
                } else {
                    (pos as usize).min(limit - 1)
                };
                pos += step;
                i
            })
            .collect()
    };
    let (xs, ys) = (table(ow, sx, w), table(oh, sy, h));
    let mut out = vec![0u8; ow * oh * c];
    for (y, &yi) in ys.iter().enumerate() {
        for (x, &xi) in xs.iter().enumerate() {
            out[(y * ow + x) * c..(y * ow + x + 1) * c]
                .copy_from_slice(&src[(yi * w + xi) * c..(yi * w + xi + 1) * c]);
        }
    }
    out
}
