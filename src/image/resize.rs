//! The two resamplers transformers' image processors use, reproduced exactly for 8-bit images.
//!
//! * Pillow's `Image.resize` (`Resample.c`), what the Pil backend (`ViTImageProcessorPil`)
//!   calls: separable convolution, coefficients normalised in double precision and rounded to
//!   22-bit fixed point.
//! * PyTorch's antialiased uint8 interpolation (`F.interpolate(..., antialias=True)` on a uint8
//!   tensor, `aten/src/ATen/native/cpu/UpSampleKernel.cpp` and its AVX2 kernels in
//!   `UpSampleKernelAVXAntialias.h`), what the torchvision backend (`ViTImageProcessor`, the
//!   transformers 5 default) calls through `torchvision.transforms.v2.functional.resize`. It is a
//!   port of Pillow-SIMD: the same support, centres and double-precision weights, but the
//!   weights are rounded to int16 with a per-axis precision (the largest that keeps the biggest
//!   weight under 2^15, about 14 bits), Keys' cubic is evaluated in another form, and the
//!   horizontal pass always runs first. That is where the one-level differences come from.
//!
//! Both are a horizontal and a vertical pass, each accumulating `pixel * weight` in integers
//! from a rounding offset and clipping `>> precision` to 0..=255; only the coefficients and the
//! pass order differ, so one pair of pass functions serves both.

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

/// Pillow's fixed-point precision for 8-bit resampling (`PRECISION_BITS` in `Resample.c`).
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Per output pixel: first source index, count, and fixed-point weights (`ksize` each), with
/// the number of fractional bits the weights carry.
struct Coeffs {
    ksize: usize,
    bounds: Vec<(usize, usize)>,
    k: Vec<i32>,
    precision: u32,
}

/// Rounds a normalised weight to fixed point as both Pillow and PyTorch do: half away from
/// zero, then C's truncating `(int)`.
fn fixed(v: f64, precision: u32) -> i32 {
    let f = v * (1u64 << precision) as f64;
    if f < 0.0 {
        (f - 0.5) as i32
    } else {
        (f + 0.5) as i32
    }
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc`.
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
            k[xx * ksize + x] = fixed(v, PRECISION_BITS);
        }
        bounds.push((xmin, xmax));
    }
    Coeffs {
        ksize,
        bounds,
        k,
        precision: PRECISION_BITS,
    }
}

/// PyTorch's `_compute_index_ranges_weights` (antialias) + `_compute_index_ranges_int16_weights`
/// for uint8 input, as the AVX2 kernel uses them (`align_i32` only pads the rows).
fn precompute_torch(in_size: usize, out_size: usize, filter: TorchFilter) -> Coeffs {
    // area_pixel_compute_scale<double> without a scale factor (torchvision passes a size).
    let scale = in_size as f64 / out_size as f64;
    let interp_size = match filter {
        TorchFilter::Bilinear => 2.0,
        TorchFilter::Bicubic => 4.0,
    };
    let (support, invscale) = if scale >= 1.0 {
        (interp_size * 0.5 * scale, 1.0 / scale)
    } else {
        (interp_size * 0.5, 1.0)
    };
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut wts = vec![0f64; out_size * ksize];
    let mut wt_max = 0f64;
    for i in 0..out_size {
        let center = scale * (i as f64 + 0.5);
        let xmin = ((center - support + 0.5) as i64).max(0);
        let xsize = (((center + support + 0.5) as i64).min(in_size as i64) - xmin)
            // "rare cases when due to precision xsize can be larger than max_interp_size by one"
            .clamp(0, ksize as i64) as usize;
        let w = &mut wts[i * ksize..i * ksize + xsize];
        let mut total = 0.0;
        for (j, wj) in w.iter_mut().enumerate() {
            *wj = filter.eval(((j as i64 + xmin) as f64 - center + 0.5) * invscale);
            total += *wj;
        }
        if total != 0.0 {
            for wj in w.iter_mut() {
                *wj /= total;
                wt_max = wt_max.max(*wj);
            }
        }
        bounds.push((xmin as usize, xsize));
    }
    // The largest precision (at most 22 bits) at which the biggest weight stays below 2^15,
    // so that weights fit int16 for `_mm256_madd_epi16`.
    let mut precision = 0;
    while precision < 22 {
        let next = (0.5 + wt_max * (1i64 << (precision + 1)) as f64) as i64;
        if next >= 1 << 15 {
            break;
        }
        precision += 1;
    }
    let k = wts
        .iter()
        // The C code stores `(int)` results into int16_t.
        .map(|&v| fixed(v, precision) as i16 as i32)
        .collect();
    Coeffs {
        ksize,
        bounds,
        k,
        precision,
    }
}

#[inline]
fn clip8(v: i64, precision: u32) -> u8 {
    (v >> precision).clamp(0, 255) as u8
}

/// Resizes an interleaved 8-bit image (`channels` per pixel) from `w`×`h` to `ow`×`oh` exactly
/// as Pillow's `Image.resize(size, resample)` (no `box`, no `reducing_gap`).
///
/// `src` must hold `w * h * channels` bytes; an empty input or output size gives zeros / an
/// empty buffer (callers such as [`crate::image::ProcessorConfig`] reject those first).
pub fn resize_u8(
    src: &[u8],
    w: usize,
    h: usize,
    channels: usize,
    ow: usize,
    oh: usize,
    filter: Filter,
) -> Vec<u8> {
    if let Some(out) = degenerate(src, w, h, channels, ow, oh) {
        return out;
    }
    if filter == Filter::Nearest {
        return nearest(src, w, h, channels, ow, oh);
    }
    if w == ow && h == oh {
        return src.to_vec();
    }
    let c = channels;
    let horiz = || precompute(w, 0.0, w as f64, ow, filter);
    let vert = precompute(h, 0.0, h as f64, oh, filter);
    // Pillow 13 runs the reducing pass first when one axis grows and the other shrinks
    // (measured against Pillow: vertical first exactly when width grows and height shrinks).
    if ow > w && oh < h {
        let tmp = vertical(src, w, c, &vert, 0, oh);
        return horizontal(&tmp, w, c, &horiz(), 0, oh);
    }
    separable(src, w, h, c, ow, oh, horiz, &vert)
}

/// The filters torchvision's tensor resize runs with `antialias=True` on uint8 images
/// (`InterpolationMode.BILINEAR` / `BICUBIC`, Keys' cubic with a = -0.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TorchFilter {
    Bilinear,
    Bicubic,
}

impl TorchFilter {
    /// From HF's `resample` integer (PIL enum), through transformers'
    /// `pil_torch_interpolation_mapping`; `None` for modes tessera's torchvision backend does
    /// not reproduce (nearest-exact, lanczos) or torchvision cannot run (box, hamming).
    pub fn from_pil(v: u32) -> Option<TorchFilter> {
        match v {
            2 => Some(TorchFilter::Bilinear),
            3 => Some(TorchFilter::Bicubic),
            _ => None,
        }
    }

    fn eval(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            // HelperInterpLinear::aa_filter
            TorchFilter::Bilinear => {
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
            // HelperInterpCubic::aa_filter with a = -0.5: cubic_convolution1/2 from
            // UpSample.h, whose operation order differs from Pillow's `bicubic_filter`.
            TorchFilter::Bicubic => {
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A
                } else {
                    0.0
                }
            }
        }
    }
}

/// Resizes an interleaved 8-bit image exactly as torchvision's
/// `resize(tensor_uint8, (oh, ow), interpolation, antialias=True)` does on an x86-64 CPU with
/// AVX2 (PyTorch's `upsample_avx_bilinear_bicubic_uint8`; the AVX-512 build runs the same
/// kernel). Measured bit-identical on random sizes; PyTorch's non-AVX fallback agrees except
/// for some one-pixel-wide outputs.
///
/// Same preconditions as [`resize_u8`].
pub fn resize_u8_torchvision(
    src: &[u8],
    w: usize,
    h: usize,
    channels: usize,
    ow: usize,
    oh: usize,
    filter: TorchFilter,
) -> Vec<u8> {
    if let Some(out) = degenerate(src, w, h, channels, ow, oh) {
        return out;
    }
    if w == ow && h == oh {
        return src.to_vec();
    }
    let vert = precompute_torch(h, oh, filter);
    // Always horizontal first (`upsample_avx_bilinear_bicubic_uint8`).
    separable(
        src,
        w,
        h,
        channels,
        ow,
        oh,
        || precompute_torch(w, ow, filter),
        &vert,
    )
}

/// Empty sizes and short buffers: no panic, no allocation beyond the (empty or zeroed) output.
fn degenerate(src: &[u8], w: usize, h: usize, c: usize, ow: usize, oh: usize) -> Option<Vec<u8>> {
    let n_out = ow.checked_mul(oh)?.checked_mul(c)?;
    if n_out == 0 {
        return Some(vec![]);
    }
    let n_in = w.checked_mul(h).and_then(|n| n.checked_mul(c));
    if n_in.is_none_or(|n| n == 0 || src.len() < n) {
        return Some(vec![0; n_out]);
    }
    None
}

/// Horizontal pass (when the width changes) over only the rows the vertical pass reads, then
/// the vertical pass (when the height changes).
#[allow(clippy::too_many_arguments)]
fn separable(
    src: &[u8],
    w: usize,
    h: usize,
    c: usize,
    ow: usize,
    oh: usize,
    horiz: impl FnOnce() -> Coeffs,
    vert: &Coeffs,
) -> Vec<u8> {
    if w == ow {
        return vertical(src, w, c, vert, 0, oh);
    }
    let (first, last) = if h == oh {
        (0, h)
    } else {
        let (lo, _) = vert.bounds[0];
        let (hi, n) = vert.bounds[oh - 1];
        (lo, hi + n)
    };
    let tmp = horizontal(src, w, c, &horiz(), first, last - first);
    if h == oh {
        return tmp;
    }
    vertical(&tmp, ow, c, vert, first, oh)
}

/// Horizontal pass over source rows `row0 .. row0 + rows`.
fn horizontal(src: &[u8], w: usize, c: usize, horiz: &Coeffs, row0: usize, rows: usize) -> Vec<u8> {
    let ow = horiz.bounds.len();
    let mut tmp = vec![0u8; rows * ow * c];
    let half: i64 = 1 << (horiz.precision - 1);
    for y in 0..rows {
        let srow = &src[(y + row0) * w * c..(y + row0 + 1) * w * c];
        for xx in 0..ow {
            let (xmin, xmax) = horiz.bounds[xx];
            let k = &horiz.k[xx * horiz.ksize..xx * horiz.ksize + xmax];
            for ch in 0..c {
                let mut ss = half;
                for (x, kx) in k.iter().enumerate() {
                    ss += srow[(x + xmin) * c + ch] as i64 * *kx as i64;
                }
                tmp[(y * ow + xx) * c + ch] = clip8(ss, horiz.precision);
            }
        }
    }
    tmp
}

/// Vertical pass to `oh` rows; `src` (`w` pixels wide) starts at source row `row0`.
fn vertical(src: &[u8], w: usize, c: usize, vert: &Coeffs, row0: usize, oh: usize) -> Vec<u8> {
    let mut out = vec![0u8; oh * w * c];
    let half: i64 = 1 << (vert.precision - 1);
    for yy in 0..oh {
        let (ymin, ymax) = vert.bounds[yy];
        let ymin = ymin - row0;
        let k = &vert.k[yy * vert.ksize..yy * vert.ksize + ymax];
        for xx in 0..w {
            for ch in 0..c {
                let mut ss = half;
                for (y, ky) in k.iter().enumerate() {
                    ss += src[((y + ymin) * w + xx) * c + ch] as i64 * *ky as i64;
                }
                out[(yy * w + xx) * c + ch] = clip8(ss, vert.precision);
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
