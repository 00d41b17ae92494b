//! Box formats and DETR's post-processing (`post_process_object_detection`), in float32 as
//! transformers computes them.
use crate::{Error, Result};
use candle_core::{DType, Tensor};

/// `(cx, cy, w, h)` → `(x0, y0, x1, y1)`, as `center_to_corners_format`.
pub fn center_to_corners(b: [f32; 4]) -> [f32; 4] {
    [
        b[0] - 0.5 * b[2],
        b[1] - 0.5 * b[3],
        b[0] + 0.5 * b[2],
        b[1] + 0.5 * b[3],
    ]
}

/// `(x0, y0, x1, y1)` → `(cx, cy, w, h)`, as `corners_to_center_format`.
pub fn corners_to_center(b: [f32; 4]) -> [f32; 4] {
    [
        (b[0] + b[2]) / 2.0,
        (b[1] + b[3]) / 2.0,
        b[2] - b[0],
        b[3] - b[1],
    ]
}

/// One kept detection.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct DetectedBox {
    pub score: f32,
    /// The class index (the model's `id2label` key).
    pub label: usize,
    /// `(x0, y0, x1, y1)`: in pixels of the target size when one was given, else relative.
    pub bbox: [f32; 4],
    /// The object query that predicted it.
    pub query: usize,
}

/// `DetrImageProcessor.post_process_object_detection(outputs, threshold, target_sizes)`:
/// per image, softmax over the classes, the best real class (the last is "no object") and
/// its probability, boxes as corners scaled by the target (height, width); kept where the
/// score is above `threshold`, in query order.
pub fn post_process_object_detection(
    logits: &Tensor,
    pred_boxes: &Tensor,
    threshold: f32,
    target_sizes: Option<&[(u32, u32)]>,
) -> Result<Vec<Vec<DetectedBox>>> {
    let (b, q, c) = logits.dims3()?;
    if pred_boxes.dims() != [b, q, 4] || c < 2 {
        return Err(Error::Shape(format!(
            "logits {:?} and pred_boxes {:?}: expected [B, Q, classes + 1] and [B, Q, 4]",
            logits.dims(),
            pred_boxes.dims()
        )));
    }
    if let Some(t) = target_sizes {
        if t.len() != b {
            return Err(Error::Shape(format!(
                "{} target sizes for a batch of {b}",
                t.len()
            )));
        }
    }
    if !threshold.is_finite() {
        return Err(Error::Config(format!(
            "threshold {threshold} is not finite"
        )));
    }
    let logits: Vec<Vec<Vec<f32>>> = logits.to_dtype(DType::F32)?.to_vec3()?;
    let boxes: Vec<Vec<Vec<f32>>> = pred_boxes.to_dtype(DType::F32)?.to_vec3()?;
    let mut out = vec![];
    for i in 0..b {
        let mut kept = vec![];
        for j in 0..q {
            let l = &logits[i][j];
            // torch's softmax: exp(x - max) / Σ.
            let m = l.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let e: Vec<f32> = l.iter().map(|x| (x - m).exp()).collect();
            let s: f32 = e.iter().sum();
            let (mut best, mut label) = (f32::NEG_INFINITY, 0);
            for (k, v) in e[..c - 1].iter().enumerate() {
                let p = v / s;
                if p > best {
                    (best, label) = (p, k);
                }
            }
            if !best.is_finite() {
                return Err(Error::Msg(format!(
                    "image {i}, query {j}: the class scores are not finite"
                )));
            }
            if best > threshold {
                let bx = &boxes[i][j];
                let mut bbox = center_to_corners([bx[0], bx[1], bx[2], bx[3]]);
                if let Some(t) = target_sizes {
                    let (h, w) = (t[i].0 as f32, t[i].1 as f32);
                    bbox = [bbox[0] * w, bbox[1] * h, bbox[2] * w, bbox[3] * h];
                }
                kept.push(DetectedBox {
                    score: best,
                    label,
                    bbox,
                    query: j,
                });
            }
        }
        out.push(kept);
    }
    Ok(out)
}
