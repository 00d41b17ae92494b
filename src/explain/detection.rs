//! What each detection looked at (the DETR paper's decoder-attention figure): the image through
//! a DETR with the forward traced; for every kept detection, its object query's cross-attention
//! in the last decoder layer over the encoder's feature map, heads fused.
use super::{render, HeadFusion};
use crate::nn::{Ctx, Trace};
use crate::pipelines::{Detection, ObjectDetection};
use crate::{Error, Result};
use candle_core::DType;
use image::{DynamicImage, RgbImage};

/// One detection and where its query looked.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DetectionAttention {
    pub detection: Detection,
    /// The feature map's (rows, cols).
    pub grid: (usize, usize),
    /// The query's attention over the map's cells, row-major, heads fused (sums to 1 over
    /// the cells for the mean).
    pub values: Vec<f32>,
}

/// Detections above `threshold` on `img` with their queries' last-layer cross-attention.
pub fn detection_attention(
    det: &ObjectDetection,
    img: &DynamicImage,
    threshold: f32,
    fusion: HeadFusion,
) -> Result<Vec<DetectionAttention>> {
    if !(0.0..1.0).contains(&threshold) {
        return Err(Error::Config(format!(
            "threshold {threshold} must be in [0, 1)"
        )));
    }
    let batch = det
        .processor
        .batch_padded(std::slice::from_ref(img), &det.device)?;
    let mut trace = Trace::default();
    let out = {
        let mut ctx = Ctx::eval();
        ctx.trace = Some(&mut trace);
        det.model
            .forward(&batch.pixel_values, &batch.pixel_mask, &mut ctx)?
    };
    let (rows, cols) = out.feature_size;
    let q = det.model.config.num_queries;
    // The decoder's last attention is its last layer's cross-attention: [1, H, Q, rows·cols].
    let cross = trace
        .attentions
        .last()
        .filter(|a| a.dims().len() == 4 && a.dims()[2] == q && a.dims()[3] == rows * cols)
        .ok_or_else(|| {
            Error::Msg("the trace holds no decoder cross-attention of the expected shape".into())
        })?;
    let cross = cross.get(0)?.to_dtype(DType::F32)?; // [H, Q, HW]
    let heads = cross.dim(0)?;
    let v = cross.flatten_all()?.to_vec1::<f32>()?;
    let n = rows * cols;
    let (oh, ow) = (img.height() as f32, img.width() as f32);
    let (_, _, ph, pw) = batch.pixel_values.dims4()?;
    let (rh, rw) = batch.sizes[0];
    // Boxes are relative to the padded input; in the image's pixels (as `detect` gives them).
    let target = (
        (oh * ph as f32 / rh as f32).round() as u32,
        (ow * pw as f32 / rw as f32).round() as u32,
    );
    let kept = crate::image::boxes::post_process_object_detection(
        &out.logits,
        &out.pred_boxes,
        threshold,
        Some(&[target]),
    )?;
    let mut res = vec![];
    for b in kept.into_iter().next().unwrap_or_default() {
        let values: Vec<f32> = (0..n)
            .map(|i| {
                let hs = (0..heads).map(|h| v[(h * q + b.query) * n + i]);
                match fusion {
                    HeadFusion::Mean => hs.sum::<f32>() / heads as f32,
                    HeadFusion::Max => hs.fold(f32::NEG_INFINITY, f32::max),
                    HeadFusion::Min => hs.fold(f32::INFINITY, f32::min),
                }
            })
            .collect();
        res.push(DetectionAttention {
            detection: Detection {
                label: det.model.config.label(b.label),
                index: b.label,
                score: b.score,
                bbox: b.bbox,
                query: b.query,
            },
            grid: (rows, cols),
            values,
        });
    }
    Ok(res)
}

/// One panel per detection: its attention over the image (the padded part of the map cut
/// away), its box and caption; three per row. The image alone when nothing was detected.
pub fn render_detection_attention(
    img: &DynamicImage,
    maps: &[DetectionAttention],
    det: &ObjectDetection,
) -> Result<RgbImage> {
    // Small inputs (the 128-pixel generated scenes) are enlarged by a whole factor so the
    // captions fit and the cells can be seen.
    let k = (256 / img.width().min(img.height()).max(1)).clamp(1, 8);
    let view = image::imageops::resize(
        &img.to_rgb8(),
        img.width() * k,
        img.height() * k,
        image::imageops::FilterType::Nearest,
    );
    if maps.is_empty() {
        return render::legend(&view, "no detection above the threshold");
    }
    // The map covers the padded input; a single image is padded by nothing, but keep the
    // arithmetic honest for any processor (cells past the resized image are dropped).
    let batch = det
        .processor
        .batch_padded(std::slice::from_ref(img), &candle_core::Device::Cpu)?;
    let (_, _, ph, pw) = batch.pixel_values.dims4()?;
    let (rh, rw) = batch.sizes[0];
    let mut panels = vec![];
    for m in maps {
        let (rows, cols) = m.grid;
        let keep_r = ((rows as f32 * rh as f32 / ph as f32).ceil() as usize).clamp(1, rows);
        let keep_c = ((cols as f32 * rw as f32 / pw as f32).ceil() as usize).clamp(1, cols);
        let cells: Vec<f32> = (0..keep_r)
            .flat_map(|r| m.values[r * cols..r * cols + keep_c].iter().copied())
            .collect();
        let heat = render::overlay_rect(&view, &cells, (keep_r, keep_c), 0.55)?;
        let d = &m.detection;
        let caption = format!("{} {:.2}", d.label, d.score);
        let bbox = d.bbox.map(|v| v * k as f32);
        let boxed = render::draw_boxes(&heat, &[(bbox, d.index, caption.clone())])?;
        panels.push(render::legend(
            &boxed,
            &format!("query {}: {caption}", d.query),
        )?);
    }
    Ok(render::grid(&panels, 3))
}
