//! COCO object-detection files: annotations (`instances_*.json`: images, annotations with
//! `[x, y, w, h]` boxes in pixels, categories) and results (`[{image_id, category_id, bbox,
//! score}]`), read with every reference checked and written atomically.
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::Path;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CocoImage {
    pub id: u64,
    pub width: u32,
    pub height: u32,
    pub file_name: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CocoAnnotation {
    pub id: u64,
    pub image_id: u64,
    pub category_id: u64,
    /// `[x, y, width, height]` in pixels, from the top-left corner.
    pub bbox: [f64; 4],
    /// COCO's area (of the segmentation, when there is one); the box area when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub area: Option<f64>,
    /// 0 or 1 (some writers use `false`/`true`).
    #[serde(default, deserialize_with = "zero_or_one")]
    pub iscrowd: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segmentation: Option<serde_json::Value>,
}

impl CocoAnnotation {
    /// The area COCO evaluation ranks by (`small` < 32², `large` > 96²).
    pub fn area(&self) -> f64 {
        self.area.unwrap_or(self.bbox[2] * self.bbox[3])
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CocoCategory {
    pub id: u64,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supercategory: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CocoDataset {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<serde_json::Value>,
    pub images: Vec<CocoImage>,
    #[serde(default)]
    pub annotations: Vec<CocoAnnotation>,
    pub categories: Vec<CocoCategory>,
}

/// One predicted box, in COCO's results format.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    pub image_id: u64,
    pub category_id: u64,
    pub bbox: [f64; 4],
    pub score: f64,
}

fn zero_or_one<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<u8, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Bool(b) => Ok(b as u8),
        serde_json::Value::Number(n) if n.as_u64() == Some(0) => Ok(0),
        serde_json::Value::Number(n) if n.as_u64() == Some(1) => Ok(1),
        v => Err(serde::de::Error::custom(format!(
            "iscrowd must be 0 or 1, got {v}"
        ))),
    }
}

fn bad_box(b: &[f64; 4]) -> bool {
    b.iter().any(|v| !v.is_finite()) || b[2] < 0.0 || b[3] < 0.0
}

impl CocoDataset {
    /// Reads and checks an annotation file: unique ids, every annotation's image and category
    /// present, finite boxes of non-negative size.
    pub fn load(path: &Path) -> Result<CocoDataset> {
        let d: CocoDataset = crate::util::read_json(path)?;
        d.check().map_err(|m| Error::data(path, m))?;
        Ok(d)
    }

    pub fn check(&self) -> std::result::Result<(), String> {
        let mut images = HashSet::new();
        for im in &self.images {
            if !images.insert(im.id) {
                return Err(format!("image id {} appears twice", im.id));
            }
        }
        let mut cats = HashSet::new();
        for c in &self.categories {
            if !cats.insert(c.id) {
                return Err(format!("category id {} appears twice", c.id));
            }
        }
        let mut ids = HashSet::new();
        for a in &self.annotations {
            if !ids.insert(a.id) {
                return Err(format!("annotation id {} appears twice", a.id));
            }
            if !images.contains(&a.image_id) {
                return Err(format!(
                    "annotation {} is on image {}, which is not listed",
                    a.id, a.image_id
                ));
            }
            if !cats.contains(&a.category_id) {
                return Err(format!(
                    "annotation {} has category {}, which is not listed",
                    a.id, a.category_id
                ));
            }
            if bad_box(&a.bbox) || a.area.is_some_and(|x| !x.is_finite() || x < 0.0) {
                return Err(format!(
                    "annotation {} has box {:?}: not finite, or negative size",
                    a.id, a.bbox
                ));
            }
        }
        Ok(())
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        crate::util::write_json(path, self)
    }
}

/// Reads a results file and checks it against the annotations it will be scored on: known
/// images, finite boxes and scores.
pub fn load_detections(path: &Path, gt: &CocoDataset) -> Result<Vec<Detection>> {
    let d: Vec<Detection> = crate::util::read_json(path)?;
    check_detections(&d, gt).map_err(|m| Error::data(path, m))?;
    Ok(d)
}

pub fn check_detections(d: &[Detection], gt: &CocoDataset) -> std::result::Result<(), String> {
    let images: HashSet<u64> = gt.images.iter().map(|i| i.id).collect();
    for (i, x) in d.iter().enumerate() {
        if !images.contains(&x.image_id) {
            return Err(format!(
                "detection {i} is on image {}, which the annotations do not list",
                x.image_id
            ));
        }
        if bad_box(&x.bbox) || !x.score.is_finite() {
            return Err(format!(
                "detection {i} has box {:?} and score {}: not finite, or negative size",
                x.bbox, x.score
            ));
        }
    }
    Ok(())
}
