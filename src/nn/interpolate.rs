//! PyTorch's `F.interpolate(..., align_corners=False)` on one f32 plane: bilinear and bicubic.
//! Leaf module (slices in, slices out).

/// Bilinear resize of one plane, with PyTorch's `align_corners=False` sampling.
pub fn bilinear(src: &[f32], h: usize, w: usize, oh: usize, ow: usize) -> Vec<f32> {
    let mut out = vec![0f32; oh * ow];
    let (sy, sx) = (h as f32 / oh as f32, w as f32 / ow as f32);
    for y in 0..oh {
        let fy = ((y as f32 + 0.5) * sy - 0.5).max(0.0);
        let y0 = (fy as usize).min(h - 1);
        let y1 = (y0 + 1).min(h - 1);
        let ly = fy - y0 as f32;
        for x in 0..ow {
            let fx = ((x as f32 + 0.5) * sx - 0.5).max(0.0);
            let x0 = (fx as usize).min(w - 1);
            let x1 = (x0 + 1).min(w - 1);
            let lx = fx - x0 as f32;
            let top = src[y0 * w + x0] * (1.0 - lx) + src[y0 * w + x1] * lx;
            let bot = src[y1 * w + x0] * (1.0 - lx) + src[y1 * w + x1] * lx;
            out[y * ow + x] = top * (1.0 - ly) + bot * ly;
        }
    }
    out
}

/// PyTorch's cubic convolution weights (A = -0.75) for offset `t` in [0, 1).
fn cubic_weights(t: f32) -> [f32; 4] {
    const A: f32 = -0.75;
    let near = |x: f32| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let far = |x: f32| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]
}

/// Bicubic resize of one plane as `F.interpolate(mode="bicubic", align_corners=False)`
/// (A = -0.75, source indices clamped at the border).
pub fn bicubic(src: &[f32], h: usize, w: usize, oh: usize, ow: usize) -> Vec<f32> {
    let (sy, sx) = (h as f32 / oh as f32, w as f32 / ow as f32);
    let at = |y: i64, x: i64| {
        src[(y.clamp(0, h as i64 - 1) as usize) * w + x.clamp(0, w as i64 - 1) as usize]
    };
    let mut out = vec![0f32; oh * ow];
    for oy in 0..oh {
        let fy = (oy as f32 + 0.5) * sy - 0.5;
        let y0 = fy.floor();
        let wy = cubic_weights(fy - y0);
        for ox in 0..ow {
            let fx = (ox as f32 + 0.5) * sx - 0.5;
            let x0 = fx.floor();
            let wx = cubic_weights(fx - x0);
            let mut acc = 0f32;
            for (i, wyi) in wy.iter().enumerate() {
                let yy = y0 as i64 - 1 + i as i64;
                let row: f32 = wx
                    .iter()
                    .enumerate()
                    .map(|(j, wxj)| wxj * at(yy, x0 as i64 - 1 + j as i64))
                    .sum();
                acc += wyi * row;
            }
            out[oy * ow + ox] = acc;
        }
    }
    out
}
