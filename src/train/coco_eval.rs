//! COCO box evaluation as `pycocotools.cocoeval.COCOeval(gt, dt, "bbox")` computes it:
//! per image and category, detections sorted by score (stably) are matched greedily to the
//! best-IoU unmatched ground truth at each of ten IoU thresholds (crowd boxes match many and
//! are ignored, as are boxes outside the area range); precision is interpolated at 101 recall
//! points; the twelve numbers of `summarize()` follow. Same arithmetic in f64, same orders.
use crate::data::coco::{check_detections, CocoDataset, Detection};
use crate::{Error, Result};
use std::collections::BTreeMap;

/// `summarize()`'s twelve numbers; -1 where nothing could be scored, as pycocotools prints.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CocoStats {
    /// AP at IoU .50:.05:.95, all areas, 100 detections.
    pub ap: f64,
    pub ap50: f64,
    pub ap75: f64,
    pub ap_small: f64,
    pub ap_medium: f64,
    pub ap_large: f64,
    pub ar1: f64,
    pub ar10: f64,
    pub ar100: f64,
    pub ar_small: f64,
    pub ar_medium: f64,
    pub ar_large: f64,
}

impl CocoStats {
    /// In `COCOeval.stats` order.
    pub fn to_array(&self) -> [f64; 12] {
        [
            self.ap,
            self.ap50,
            self.ap75,
            self.ap_small,
            self.ap_medium,
            self.ap_large,
            self.ar1,
            self.ar10,
            self.ar100,
            self.ar_small,
            self.ar_medium,
            self.ar_large,
        ]
    }
}

const MAX_DETS: [usize; 3] = [1, 10, 100];
const AREAS: [(f64, f64); 4] = [(0.0, 1e10), (0.0, 1024.0), (1024.0, 9216.0), (9216.0, 1e10)];

/// numpy's `linspace(start, stop, num)`: `i·step + start`, the last value exactly `stop`.
fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    let step = (stop - start) / (num - 1) as f64;
    let mut v: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
    v[num - 1] = stop;
    v
}

struct Gt {
    bbox: [f64; 4],
    area: f64,
    crowd: bool,
}

struct Dt {
    bbox: [f64; 4],
    area: f64,
    score: f64,
}

/// `maskUtils.iou` on boxes: intersection over union, or over the detection's area for a
/// crowd ground truth.
fn iou(d: &[f64; 4], g: &[f64; 4], crowd: bool) -> f64 {
    let w = (d[0] + d[2]).min(g[0] + g[2]) - d[0].max(g[0]);
    if w <= 0.0 {
        return 0.0;
    }
    let h = (d[1] + d[3]).min(g[1] + g[3]) - d[1].max(g[1]);
    if h <= 0.0 {
        return 0.0;
    }
    let i = w * h;
    let da = d[2] * d[3];
    let u = if crowd { da } else { da + g[2] * g[3] - i };
    i / u
}

/// One (image, category, area range)'s matches, `evaluateImg`'s dictionary.
struct ImgEval {
    scores: Vec<f64>,
    /// [threshold][detection]: matched to a ground truth.
    matched: Vec<Vec<bool>>,
    /// [threshold][detection]: ignored (matched to an ignored ground truth, or unmatched and
    /// outside the area range).
    ignored: Vec<Vec<bool>>,
    gt_ignored: Vec<bool>,
}

/// Stable order of descending score (numpy's `argsort(-s, kind="mergesort")`).
fn by_score(scores: &[f64]) -> Vec<usize> {
    let mut o: Vec<usize> = (0..scores.len()).collect();
    o.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    o
}

fn evaluate_img(
    gt: &[Gt],
    dt: &[Dt],
    ious: &[Vec<f64>],
    area: (f64, f64),
    thrs: &[f64],
) -> Option<ImgEval> {
    if gt.is_empty() && dt.is_empty() {
        return None;
    }
    let ig: Vec<bool> = gt
        .iter()
        .map(|g| g.crowd || g.area < area.0 || g.area > area.1)
        .collect();
    // Ground truth not ignored first (stable).
    let mut gind: Vec<usize> = (0..gt.len()).collect();
    gind.sort_by_key(|&i| ig[i]);
    let dind = by_score(&dt.iter().map(|d| d.score).collect::<Vec<_>>());
    let dind: Vec<usize> = dind.into_iter().take(MAX_DETS[2]).collect();
    let gt_ig: Vec<bool> = gind.iter().map(|&i| ig[i]).collect();
    let crowd: Vec<bool> = gind.iter().map(|&i| gt[i].crowd).collect();
    let t = thrs.len();
    let mut gtm = vec![vec![false; gind.len()]; t];
    let mut dtm = vec![vec![false; dind.len()]; t];
    let mut dt_ig = vec![vec![false; dind.len()]; t];
    if !gt.is_empty() && !dt.is_empty() {
        for (ti, &thr) in thrs.iter().enumerate() {
            for (di, _) in dind.iter().enumerate() {
                let mut best = thr.min(1.0 - 1e-10);
                let mut m: Option<usize> = None;
                for (gi, &g) in gind.iter().enumerate() {
                    if gtm[ti][gi] && !crowd[gi] {
                        continue;
                    }
                    // Once matched to a regular ground truth, ignored ones come after: stop.
                    if m.is_some_and(|m| !gt_ig[m]) && gt_ig[gi] {
                        break;
                    }
                    let o = ious[di][g];
                    if o < best {
                        continue;
                    }
                    best = o;
                    m = Some(gi);
                }
                if let Some(m) = m {
                    dt_ig[ti][di] = gt_ig[m];
                    dtm[ti][di] = true;
                    gtm[ti][m] = true;
                }
            }
        }
    }
    for (di, &d) in dind.iter().enumerate() {
        let out = dt[d].area < area.0 || dt[d].area > area.1;
        for ti in 0..t {
            dt_ig[ti][di] = dt_ig[ti][di] || (!dtm[ti][di] && out);
        }
    }
    Some(ImgEval {
        scores: dind.iter().map(|&d| dt[d].score).collect(),
        matched: dtm,
        ignored: dt_ig,
        gt_ignored: gt_ig,
    })
}

/// Scores `dets` against `gt` as `COCOeval(gt, gt.loadRes(dets), "bbox")` then `evaluate()`,
/// `accumulate()`, `summarize()`.
pub fn evaluate(gt: &CocoDataset, dets: &[Detection]) -> Result<CocoStats> {
    gt.check()
        .map_err(|m| Error::Msg(format!("ground truth: {m}")))?;
    check_detections(dets, gt).map_err(|m| Error::Msg(format!("detections: {m}")))?;
    let mut img_ids: Vec<u64> = gt.images.iter().map(|i| i.id).collect();
    img_ids.sort_unstable();
    img_ids.dedup();
    let mut cat_ids: Vec<u64> = gt.categories.iter().map(|c| c.id).collect();
    cat_ids.sort_unstable();
    // Per (image, category), in file order.
    let mut gts: BTreeMap<(u64, u64), Vec<Gt>> = BTreeMap::new();
    for a in &gt.annotations {
        gts.entry((a.image_id, a.category_id))
            .or_default()
            .push(Gt {
                bbox: a.bbox,
                area: a.area(),
                crowd: a.iscrowd != 0,
            });
    }
    let mut dts: BTreeMap<(u64, u64), Vec<Dt>> = BTreeMap::new();
    for d in dets {
        dts.entry((d.image_id, d.category_id))
            .or_default()
            .push(Dt {
                bbox: d.bbox,
                area: d.bbox[2] * d.bbox[3],
                score: d.score,
            });
    }
    let thrs = linspace(0.5, 0.95, 10);
    let rec_thrs = linspace(0.0, 1.0, 101);
    let (t, r, k, a, m) = (
        thrs.len(),
        rec_thrs.len(),
        cat_ids.len(),
        AREAS.len(),
        MAX_DETS.len(),
    );
    // precision[t][r][k][a][m], recall[t][k][a][m], flattened.
    let mut precision = vec![-1f64; t * r * k * a * m];
    let mut recall = vec![-1f64; t * k * a * m];
    let empty_g: Vec<Gt> = vec![];
    let empty_d: Vec<Dt> = vec![];
    for (ki, &cat) in cat_ids.iter().enumerate() {
        // evaluateImg for every image and area range of this category.
        let mut evals: Vec<Vec<Option<ImgEval>>> = (0..a).map(|_| Vec::new()).collect();
        for &img in &img_ids {
            let g = gts.get(&(img, cat)).unwrap_or(&empty_g);
            let d = dts.get(&(img, cat)).unwrap_or(&empty_d);
            // computeIoU: detections by score, at most 100; [detection][ground truth].
            let order: Vec<usize> = by_score(&d.iter().map(|x| x.score).collect::<Vec<_>>())
                .into_iter()
                .take(MAX_DETS[2])
                .collect();
            let ious: Vec<Vec<f64>> = order
                .iter()
                .map(|&di| {
                    g.iter()
                        .map(|gg| iou(&d[di].bbox, &gg.bbox, gg.crowd))
                        .collect()
                })
                .collect();
            for (ai, &rng) in AREAS.iter().enumerate() {
                evals[ai].push(evaluate_img(g, d, &ious, rng, &thrs));
            }
        }
        for (ai, area_evals) in evals.iter().enumerate() {
            for (mi, &max_det) in MAX_DETS.iter().enumerate() {
                let es: Vec<&ImgEval> = area_evals.iter().flatten().collect();
                if es.is_empty() {
                    continue;
                }
                let mut scores = vec![];
                let mut matched: Vec<Vec<bool>> = vec![vec![]; t];
                let mut ignored: Vec<Vec<bool>> = vec![vec![]; t];
                let mut npig = 0usize;
                for e in &es {
                    let n = e.scores.len().min(max_det);
                    scores.extend_from_slice(&e.scores[..n]);
                    for ti in 0..t {
                        matched[ti].extend_from_slice(&e.matched[ti][..n]);
                        ignored[ti].extend_from_slice(&e.ignored[ti][..n]);
                    }
                    npig += e.gt_ignored.iter().filter(|x| !**x).count();
                }
                if npig == 0 {
                    continue;
                }
                let order = by_score(&scores);
                for ti in 0..t {
                    let (mut tp, mut fp) = (0f64, 0f64);
                    let mut rc = Vec::with_capacity(order.len());
                    let mut pr = Vec::with_capacity(order.len());
                    for &o in &order {
                        let (mt, ig) = (matched[ti][o], ignored[ti][o]);
                        if mt && !ig {
                            tp += 1.0;
                        }
                        if !mt && !ig {
                            fp += 1.0;
                        }
                        rc.push(tp / npig as f64);
                        pr.push(tp / (fp + tp + f64::EPSILON));
                    }
                    let nd = rc.len();
                    recall[((ti * k + ki) * a + ai) * m + mi] =
                        if nd > 0 { rc[nd - 1] } else { 0.0 };
                    // Precision made monotone from the right.
                    for i in (1..nd).rev() {
                        if pr[i] > pr[i - 1] {
                            pr[i - 1] = pr[i];
                        }
                    }
                    for (ri, &thr) in rec_thrs.iter().enumerate() {
                        // searchsorted(rc, thr, side="left"); past the end stays 0.
                        let pi = rc.partition_point(|&x| x < thr);
                        let q = if pi < nd { pr[pi] } else { 0.0 };
                        precision[(((ti * r + ri) * k + ki) * a + ai) * m + mi] = q;
                        if pi >= nd {
                            // pycocotools' loop stops at the first index past the end.
                            for rj in ri + 1..r {
                                precision[(((ti * r + rj) * k + ki) * a + ai) * m + mi] = 0.0;
                            }
                            break;
                        }
                    }
                }
            }
        }
    }
    let mean = |vals: &mut dyn Iterator<Item = f64>| {
        let (mut s, mut n) = (0f64, 0usize);
        for v in vals.filter(|v| *v > -1.0) {
            s += v;
            n += 1;
        }
        if n == 0 {
            -1.0
        } else {
            s / n as f64
        }
    };
    let thr_index = |x: f64| thrs.iter().position(|&t| t == x);
    let ap = |thr: Option<f64>, ai: usize, mi: usize| {
        let ts: Vec<usize> = match thr {
            Some(x) => thr_index(x).into_iter().collect(),
            None => (0..t).collect(),
        };
        let mut it = ts.into_iter().flat_map(|ti| {
            let precision = &precision;
            (0..r).flat_map(move |ri| {
                (0..k).map(move |ki| precision[(((ti * r + ri) * k + ki) * a + ai) * m + mi])
            })
        });
        mean(&mut it)
    };
    let ar = |ai: usize, mi: usize| {
        let mut it = (0..t).flat_map(|ti| {
            let recall = &recall;
            (0..k).map(move |ki| recall[((ti * k + ki) * a + ai) * m + mi])
        });
        mean(&mut it)
    };
    Ok(CocoStats {
        ap: ap(None, 0, 2),
        ap50: ap(Some(0.5), 0, 2),
        ap75: ap(Some(0.75), 0, 2),
        ap_small: ap(None, 1, 2),
        ap_medium: ap(None, 2, 2),
        ap_large: ap(None, 3, 2),
        ar1: ar(0, 0),
        ar10: ar(0, 1),
        ar100: ar(0, 2),
        ar_small: ar(1, 2),
        ar_medium: ar(2, 2),
        ar_large: ar(3, 2),
    })
}
