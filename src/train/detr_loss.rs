//! DETR's set prediction loss as transformers computes it (`ForObjectDetectionLoss`,
//! `HungarianMatcher`, `ImageLoss`): each image's predictions are matched one to one with its
//! targets by the Hungarian algorithm on `bbox_cost·L1 + class_cost·(−p[class]) +
//! giou_cost·(−GIoU)`; then cross-entropy over every query (unmatched ones labelled "no
//! object", weighted `eos_coefficient`), L1 and 1−GIoU over the matched boxes divided by the
//! number of target boxes, and, with auxiliary outputs, the same on every other decoder layer.
use super::matching::linear_sum_assignment;
use crate::{Error, Result};
use candle_core::{DType, IndexOp, Tensor, D};
use std::collections::BTreeMap;

/// The loss's part of `DetrConfig`, with transformers' defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct DetrLossConfig {
    pub num_labels: usize,
    pub class_cost: f32,
    pub bbox_cost: f32,
    pub giou_cost: f32,
    pub eos_coefficient: f32,
    pub bbox_loss_coefficient: f32,
    pub giou_loss_coefficient: f32,
}

impl DetrLossConfig {
    pub fn new(num_labels: usize) -> Self {
        DetrLossConfig {
            num_labels,
            class_cost: 1.0,
            bbox_cost: 5.0,
            giou_cost: 2.0,
            eos_coefficient: 0.1,
            bbox_loss_coefficient: 5.0,
            giou_loss_coefficient: 2.0,
        }
    }

    /// The costs and coefficients a `DetrConfig` holds (transformers reads them from there),
    /// transformers' defaults where it has none.
    pub fn from_config(c: &crate::models::detr::DetrConfig) -> Result<Self> {
        let d = DetrLossConfig::new(c.num_labels());
        let get = |k: &str, default: f32| -> Result<f32> {
            match c.extra.get(k) {
                None | Some(serde_json::Value::Null) => Ok(default),
                Some(v) => match v.as_f64() {
                    Some(x) if x.is_finite() && x >= 0.0 => Ok(x as f32),
                    _ => Err(Error::Config(format!(
                        "{k} {v}: expected a non-negative number"
                    ))),
                },
            }
        };
        Ok(DetrLossConfig {
            num_labels: d.num_labels,
            class_cost: get("class_cost", d.class_cost)?,
            bbox_cost: get("bbox_cost", d.bbox_cost)?,
            giou_cost: get("giou_cost", d.giou_cost)?,
            eos_coefficient: get("eos_coefficient", d.eos_coefficient)?,
            bbox_loss_coefficient: get("bbox_loss_coefficient", d.bbox_loss_coefficient)?,
            giou_loss_coefficient: get("giou_loss_coefficient", d.giou_loss_coefficient)?,
        })
    }
}

/// One image's targets: class indices in `[0, num_labels)` and boxes `(cx, cy, w, h)`
/// normalised to the (padded) image.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Target {
    pub class_labels: Vec<u32>,
    pub boxes: Vec<[f32; 4]>,
}

/// Per image, the matched (prediction, target) index pairs, predictions ascending.
pub type Matching = Vec<(Vec<usize>, Vec<usize>)>;

fn corners(b: &[f32; 4]) -> [f32; 4] {
    [
        b[0] - 0.5 * b[2],
        b[1] - 0.5 * b[3],
        b[0] + 0.5 * b[2],
        b[1] + 0.5 * b[3],
    ]
}

/// GIoU of corner boxes, in f32 as torch computes it.
fn giou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let area = |x: &[f32; 4]| (x[2] - x[0]) * (x[3] - x[1]);
    let (a1, a2) = (area(a), area(b));
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let union = a1 + a2 - inter;
    let iou = inter / union;
    let ew = (a[2].max(b[2]) - a[0].min(b[0])).max(0.0);
    let eh = (a[3].max(b[3]) - a[1].min(b[1])).max(0.0);
    let enclosing = ew * eh;
    iou - (enclosing - union) / enclosing
}

fn check(
    logits: &Tensor,
    boxes: &Tensor,
    targets: &[Target],
    cfg: &DetrLossConfig,
) -> Result<(usize, usize, usize)> {
    let (b, q, c) = logits.dims3()?;
    if boxes.dims() != [b, q, 4] {
        return Err(Error::Shape(format!(
            "pred_boxes {:?} for logits {:?}",
            boxes.dims(),
            logits.dims()
        )));
    }
    if c != cfg.num_labels + 1 {
        return Err(Error::Shape(format!(
            "logits have {c} classes; num_labels + 1 = {}",
            cfg.num_labels + 1
        )));
    }
    if targets.len() != b {
        return Err(Error::Shape(format!(
            "{} targets for a batch of {b}",
            targets.len()
        )));
    }
    for (i, t) in targets.iter().enumerate() {
        if t.class_labels.len() != t.boxes.len() {
            return Err(Error::Msg(format!(
                "target {i}: {} labels for {} boxes",
                t.class_labels.len(),
                t.boxes.len()
            )));
        }
        if let Some(l) = t
            .class_labels
            .iter()
            .find(|&&l| l as usize >= cfg.num_labels)
        {
            return Err(Error::Msg(format!(
                "target {i}: class {l} is not below num_labels {}",
                cfg.num_labels
            )));
        }
        if let Some(bx) = t
            .boxes
            .iter()
            .find(|bx| bx.iter().any(|v| !v.is_finite()) || bx[2] < 0.0 || bx[3] < 0.0)
        {
            return Err(Error::Msg(format!(
                "target {i}: box {bx:?} is not a finite (cx, cy, w, h) with w, h ≥ 0"
            )));
        }
    }
    Ok((b, q, c))
}

/// `HungarianMatcher.forward`: no gradient; NaN and ±inf costs become f32::MAX, so invalid
/// predictions are matched only when nothing else can be.
pub fn hungarian_match(
    logits: &Tensor,
    pred_boxes: &Tensor,
    targets: &[Target],
    cfg: &DetrLossConfig,
) -> Result<Matching> {
    let (_b, q, c) = check(logits, pred_boxes, targets, cfg)?;
    let prob = candle_nn::ops::softmax_last_dim(&logits.detach().to_dtype(DType::F32)?)?;
    let prob: Vec<Vec<Vec<f32>>> = prob.to_vec3()?;
    let boxes: Vec<Vec<Vec<f32>>> = pred_boxes.detach().to_dtype(DType::F32)?.to_vec3()?;
    let _ = c;
    let mut out = vec![];
    for (bi, t) in targets.iter().enumerate() {
        let n = t.boxes.len();
        let mut cost = vec![0f64; q * n];
        for qi in 0..q {
            let pb: [f32; 4] = [
                boxes[bi][qi][0],
                boxes[bi][qi][1],
                boxes[bi][qi][2],
                boxes[bi][qi][3],
            ];
            let pc = corners(&pb);
            for (ti, tb) in t.boxes.iter().enumerate() {
                let l1 = (pb[0] - tb[0]).abs()
                    + (pb[1] - tb[1]).abs()
                    + (pb[2] - tb[2]).abs()
                    + (pb[3] - tb[3]).abs();
                let class = -prob[bi][qi][t.class_labels[ti] as usize];
                let g = -giou(&pc, &corners(tb));
                let v = cfg.bbox_cost * l1 + cfg.class_cost * class + cfg.giou_cost * g;
                cost[qi * n + ti] = if v.is_finite() {
                    v as f64
                } else {
                    f32::MAX as f64
                };
            }
        }
        out.push(linear_sum_assignment(&cost, q, n, false)?);
    }
    Ok(out)
}

/// The differentiable losses of one decoder layer's outputs, given a matching.
struct LayerLoss {
    ce: Tensor,
    bbox: Tensor,
    giou: Tensor,
    cardinality: f32,
}

fn layer_loss(
    logits: &Tensor,
    pred_boxes: &Tensor,
    targets: &[Target],
    m: &Matching,
    cfg: &DetrLossConfig,
    num_boxes: f32,
) -> Result<LayerLoss> {
    let (b, q, c) = logits.dims3()?;
    let dev = logits.device();
    // Classes per query: the matched target's, else "no object" (index num_labels).
    let mut classes = vec![cfg.num_labels as u32; b * q];
    let (mut src, mut tgt) = (vec![], vec![]);
    for (bi, ((qs, ts), t)) in m.iter().zip(targets).enumerate() {
        for (&qi, &ti) in qs.iter().zip(ts) {
            classes[bi * q + qi] = t.class_labels[ti];
            src.push((bi * q + qi) as u32);
            tgt.push(t.boxes[ti]);
        }
    }
    // Weighted cross-entropy, as `F.cross_entropy(weight=empty_weight)`: Σ w·nll / Σ w.
    let w: Vec<f32> = classes
        .iter()
        .map(|&k| {
            if k as usize == cfg.num_labels {
                cfg.eos_coefficient
            } else {
                1.0
            }
        })
        .collect();
    let wsum: f32 = w.iter().sum();
    let logp = candle_nn::ops::log_softmax(&logits.reshape((b * q, c))?, D::Minus1)?;
    let picked = logp
        .gather(&Tensor::from_vec(classes.clone(), (b * q, 1), dev)?, 1)?
        .squeeze(1)?;
    let ce = (picked
        .mul(&Tensor::from_vec(w, b * q, dev)?.to_dtype(logp.dtype())?)?
        .sum_all()?
        .neg()?
        / wsum as f64)?;
    // Cardinality error (logged): predicted non-empty boxes vs targets, mean |Δ|.
    let arg: Vec<u32> = logits
        .detach()
        .argmax(D::Minus1)?
        .flatten_all()?
        .to_vec1()?;
    let mut card = 0f32;
    for (bi, t) in targets.iter().enumerate() {
        let pred = arg[bi * q..(bi + 1) * q]
            .iter()
            .filter(|&&a| a as usize != c - 1)
            .count();
        card += (pred as f32 - t.boxes.len() as f32).abs();
    }
    let cardinality = card / b as f32;
    let zero = Tensor::zeros((), logits.dtype(), dev)?;
    if src.is_empty() {
        // Nothing matched: the box losses are empty sums. Keep them attached to the graph.
        let z = (pred_boxes.sum_all()? * 0.0)?;
        return Ok(LayerLoss {
            ce,
            bbox: z.clone(),
            giou: z,
            cardinality,
        });
    }
    let n = src.len();
    let s = pred_boxes
        .reshape((b * q, 4))?
        .index_select(&Tensor::from_vec(src, n, dev)?, 0)?; // [n, 4]
    let t = Tensor::from_vec(
        tgt.iter().flatten().copied().collect::<Vec<f32>>(),
        (n, 4),
        dev,
    )?
    .to_dtype(s.dtype())?;
    let bbox = ((&s - &t)?.abs()?.sum_all()? / num_boxes as f64)?;
    // GIoU of each matched pair (the diagonal of `generalized_box_iou`).
    let to_corners = |x: &Tensor| -> Result<(Tensor, Tensor, Tensor, Tensor)> {
        let (cx, cy, w, h) = (x.i((.., 0))?, x.i((.., 1))?, x.i((.., 2))?, x.i((.., 3))?);
        let (hw, hh) = ((&w * 0.5)?, (&h * 0.5)?);
        Ok(((&cx - &hw)?, (&cy - &hh)?, (&cx + &hw)?, (&cy + &hh)?))
    };
    let (ax0, ay0, ax1, ay1) = to_corners(&s)?;
    let (bx0, by0, bx1, by1) = to_corners(&t)?;
    let area_a = ((&ax1 - &ax0)? * (&ay1 - &ay0)?)?;
    let area_b = ((&bx1 - &bx0)? * (&by1 - &by0)?)?;
    let iw = (ax1.minimum(&bx1)? - ax0.maximum(&bx0)?)?.maximum(&zero.broadcast_as(n)?)?;
    let ih = (ay1.minimum(&by1)? - ay0.maximum(&by0)?)?.maximum(&zero.broadcast_as(n)?)?;
    let inter = (iw * ih)?;
    let union = ((area_a + area_b)? - &inter)?;
    let iou = (&inter / &union)?;
    let ew = (ax1.maximum(&bx1)? - ax0.minimum(&bx0)?)?.maximum(&zero.broadcast_as(n)?)?;
    let eh = (ay1.maximum(&by1)? - ay0.minimum(&by0)?)?.maximum(&zero.broadcast_as(n)?)?;
    let enclosing = (ew * eh)?;
    let g = (iou - ((&enclosing - &union)? / &enclosing)?)?;
    let giou = ((1.0 - g)?.sum_all()? / num_boxes as f64)?;
    Ok(LayerLoss {
        ce,
        bbox,
        giou,
        cardinality,
    })
}

/// The weighted total, and every term by transformers' names (`loss_ce`, `loss_bbox`,
/// `loss_giou`, `cardinality_error`, then `…_0`, `…_1`, … for the auxiliary layers).
pub struct DetrLoss {
    pub total: Tensor,
    pub terms: BTreeMap<String, f32>,
    /// The final layer's matching.
    pub matching: Matching,
}

/// `ForObjectDetectionLoss`: `logits [B, Q, num_labels+1]` and `pred_boxes [B, Q, 4]` of the
/// last decoder layer, `aux` the (logits, boxes) of the earlier layers (empty without
/// auxiliary loss).
pub fn detr_loss(
    logits: &Tensor,
    pred_boxes: &Tensor,
    aux: &[(Tensor, Tensor)],
    targets: &[Target],
    cfg: &DetrLossConfig,
) -> Result<DetrLoss> {
    let matching = hungarian_match(logits, pred_boxes, targets, cfg)?;
    let num_boxes = (targets.iter().map(|t| t.boxes.len()).sum::<usize>() as f32).max(1.0);
    let mut terms = BTreeMap::new();
    let mut total: Option<Tensor> = None;
    let mut add = |suffix: String, l: LayerLoss| -> Result<()> {
        let weighted = ((&l.ce + (&l.bbox * cfg.bbox_loss_coefficient as f64)?)?
            + (&l.giou * cfg.giou_loss_coefficient as f64)?)?;
        for (k, v) in [
            ("loss_ce", &l.ce),
            ("loss_bbox", &l.bbox),
            ("loss_giou", &l.giou),
        ] {
            terms.insert(
                format!("{k}{suffix}"),
                v.to_dtype(DType::F32)?.to_scalar::<f32>()?,
            );
        }
        terms.insert(format!("cardinality_error{suffix}"), l.cardinality);
        total = Some(match total.take() {
            Some(t) => (t + weighted)?,
            None => weighted,
        });
        Ok(())
    };
    add(
        String::new(),
        layer_loss(logits, pred_boxes, targets, &matching, cfg, num_boxes)?,
    )?;
    for (i, (l, b)) in aux.iter().enumerate() {
        let m = hungarian_match(l, b, targets, cfg)?;
        add(
            format!("_{i}"),
            layer_loss(l, b, targets, &m, cfg, num_boxes)?,
        )?;
    }
    let total = total.ok_or_else(|| Error::Msg("no loss terms".into()))?;
    if !total.to_dtype(DType::F32)?.to_scalar::<f32>()?.is_finite() {
        return Err(Error::Msg("the DETR loss is not finite".into()));
    }
    Ok(DetrLoss {
        total,
        terms,
        matching,
    })
}
