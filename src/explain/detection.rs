//! What each detection looked at (the DETR paper's decoder-attention figure): the image through
//! a DETR with the forward traced; for every kept detection, its object query's cross-attention
//! in the last decoder layer over the encoder's feature map, heads fused.
use super::{render, HeadFusion};
use crate::nn::{Ctx, Trace};
use crate::pipelines::{Detection, ObjectDetection};
use crate::{Error, Result};
use image::{DynamicImage, RgbImage};

/// One detection and where its query looked.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DetectionAttention {
    pub detection: Detection,
    /// The feature map's (rows, cols).
    pub grid: (usize, usize),
    /// The top-left (rows, cols) of it that cover the image (the rest covers padding).
    pub image_cells: (usize, usize),
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
    // [Q, HW], heads fused.
    let fused = super::fuse_heads(&cross.get(0)?, fusion)?;
    let n = rows * cols;
    let (_, _, ph, pw) = batch.pixel_values.dims4()?;
    let (rh, rw) = batch.sizes[0];
    let image_cells = (
        ((rows * rh as usize).div_ceil(ph)).clamp(1, rows),
        ((cols * rw as usize).div_ceil(pw)).clamp(1, cols),
    );
    let targets = crate::train::detr_train::padded_sizes(std::slice::from_ref(img), &batch)?;
    let kept = crate::image::boxes::post_process_object_detection(
        &out.logits,
        &out.pred_boxes,
        threshold,
        Some(&targets),
    )?;
    let mut res = vec![];
    for b in kept.into_iter().next().unwrap_or_default() {
        let values = fused[b.query * n..(b.query + 1) * n].to_vec();
        res.push(DetectionAttention {
            detection: Detection::from_box(b, &det.model.config),
            grid: (rows, cols),
            image_cells,
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
    let mut panels = vec![];
    for m in maps {
        // Only the cells over the image are drawn (padding has none of it).
        let ((keep_r, keep_c), cols) = (m.image_cells, m.grid.1);
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
