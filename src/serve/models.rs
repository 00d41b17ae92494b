//! The served models: each checkpoint loaded as its pipeline, with one batch queue per tower
//! (CLIP: `image` and `text`; a classifier: `image`; DETR: `detect`). Preprocessing (decode,
//! resize, normalise) happens before queueing, on the request's worker; the queue's model
//! thread only stacks tensors and runs the forward.
use super::batch::{BatchPolicy, BatchResult, Batcher};
use super::metrics::{Metrics, QueueLabels};
use crate::image::boxes::{post_process_object_detection, DetectedBox};
use crate::models::{Family, LoadOptions, Pretrained};
use crate::nn::Ctx;
use crate::pipelines::{ClipEmbedder, ImageClassification, ObjectDetection};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor, D};
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `--model [NAME=]SOURCE`: the name requests use (default: the hub id, or the directory's
/// name) and the checkpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    pub name: String,
    pub source: OsString,
}

impl ModelSpec {
    pub fn parse(s: impl AsRef<OsStr>) -> ModelSpec {
        let s = s.as_ref();
        if let Some((name, source)) = s.to_str().and_then(|t| t.split_once('=')) {
            if !name.is_empty() && !name.contains('/') {
                return ModelSpec {
                    name: name.to_string(),
                    source: source.into(),
                };
            }
        }
        let p = Path::new(s);
        let name = if p.exists() {
            std::fs::canonicalize(p)
                .ok()
                .and_then(|c| c.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| s.to_string_lossy().into_owned())
        } else {
            // A hub id: `owner/name[@revision]` is what clients send, as with infinity.
            s.to_string_lossy().into_owned()
        };
        ModelSpec {
            name,
            source: s.to_owned(),
        }
    }
}

/// How every model is loaded.
#[derive(Clone, Debug)]
pub struct LoadSettings {
    /// Where every model runs; requests are decoded and preprocessed on CPU threads and each
    /// batch is moved here once.
    pub device: Device,
    pub dtype: crate::nn::Precision,
    pub backend: Option<crate::image::Backend>,
    /// OpenAI's BPE merges, for CLIP checkpoints without vocab.json/merges.txt.
    pub bpe: PathBuf,
}

/// A CLIP model: image and text embeddings, zero-shot.
pub struct ClipModel {
    pub embedder: Arc<ClipEmbedder>,
    /// [1, 3, H, W] preprocessed images → normalised embeddings.
    pub images: Batcher<Tensor, Vec<f32>>,
    /// Texts → normalised embeddings.
    pub texts: Batcher<String, Vec<f32>>,
}

/// An image classifier (seed ViT or HF ViT with a head).
pub struct ClassifierModel {
    pub pipeline: Arc<ImageClassification>,
    /// [1, C, H, W] preprocessed images → class probabilities.
    pub images: Batcher<Tensor, Vec<f32>>,
}

/// One image for DETR: the processed pixels and the size its boxes are scaled to.
pub struct DetrInput {
    /// [1, 3, H, W] as the processor resized (and, with `pad_size`, padded) it.
    pub pixels: Tensor,
    /// [1, H, W] u8, 1 on real pixels.
    pub mask: Tensor,
    /// The padded input's size in the original image's pixels (what boxes are scaled by).
    pub target: (u32, u32),
}

/// A DETR detector.
pub struct DetectorModel {
    pub pipeline: Arc<ObjectDetection>,
    /// Every query's best box (threshold 0); requests apply their own threshold.
    pub images: Batcher<DetrInput, Vec<DetectedBox>>,
}

pub enum Served {
    Clip(ClipModel),
    Classifier(ClassifierModel),
    Detector(DetectorModel),
}

impl Served {
    /// The routes this model answers.
    pub fn tasks(&self) -> &'static [&'static str] {
        match self {
            Served::Clip(_) => &["embeddings", "zero-shot"],
            Served::Classifier(_) => &["classify"],
            Served::Detector(_) => &["detect"],
        }
    }

    pub fn family(&self) -> &'static str {
        match self {
            Served::Clip(_) => "clip",
            Served::Classifier(_) => "image-classification",
            Served::Detector(_) => "detr",
        }
    }

    /// Stops admitting and finishes what is queued.
    pub fn close(&self) {
        match self {
            Served::Clip(m) => {
                m.images.close();
                m.texts.close();
            }
            Served::Classifier(m) => m.images.close(),
            Served::Detector(m) => m.images.close(),
        }
    }

    /// Items queued over every tower.
    pub fn depth(&self) -> usize {
        match self {
            Served::Clip(m) => m.images.depth() + m.texts.depth(),
            Served::Classifier(m) => m.images.depth(),
            Served::Detector(m) => m.images.depth(),
        }
    }
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn labels(model: &str, queue: &str) -> QueueLabels {
    QueueLabels {
        model: model.into(),
        queue: queue.into(),
    }
}

fn thread_err(e: std::io::Error) -> Error {
    Error::Msg(format!("cannot start a model thread: {e}"))
}

/// Loads `spec` as the pipeline its config names and starts its queues.
pub fn load(
    spec: &ModelSpec,
    settings: &LoadSettings,
    policy: BatchPolicy,
    metrics: &Arc<Metrics>,
) -> Result<Served> {
    let opts = LoadOptions::default()
        .device(&settings.device)
        .dtype(settings.dtype);
    let dev = settings.device.clone();
    let ckpt = crate::models::AutoModel::read(&spec.source, &opts)?;
    let name = spec.name.as_str();
    let served = match Family::of(&ckpt.config)? {
        Family::Clip => {
            let mut e = ClipEmbedder::from_checkpoint(ckpt, &settings.bpe, &opts)?
                .with_processor_backend(settings.backend);
            e.batch_size = policy.max_batch;
            let e = Arc::new(e);
            let ie = e.clone();
            let d = dev.clone();
            let images =
                Batcher::start(labels(name, "image"), policy, metrics.clone(), move |px| {
                    let x = Tensor::cat(&px, 0)
                        .and_then(|x| x.to_device(&d))
                        .map_err(err)?;
                    let out = ie
                        .model
                        .image_embeds(&x, &mut Ctx::inference())
                        .map_err(err)?;
                    rows(&out)
                })
                .map_err(thread_err)?;
            let te = e.clone();
            let texts = Batcher::start(labels(name, "text"), policy, metrics.clone(), move |ts| {
                rows(&te.text_embeds(&ts).map_err(err)?)
            })
            .map_err(thread_err)?;
            Served::Clip(ClipModel {
                embedder: e,
                images,
                texts,
            })
        }
        Family::Detr => {
            let loaded = crate::models::detr::Detr::from_checkpoint(ckpt, &opts)?;
            let p = Arc::new(
                ObjectDetection::from_loaded(loaded, &opts.device)?
                    .with_processor_backend(settings.backend),
            );
            let pm = p.clone();
            let images =
                Batcher::start(labels(name, "detect"), policy, metrics.clone(), move |xs| {
                    detect_batch(&pm, xs).map_err(err)
                })
                .map_err(thread_err)?;
            Served::Detector(DetectorModel {
                pipeline: p,
                images,
            })
        }
        _ => {
            let loaded = crate::models::AutoModel::from_checkpoint(ckpt, &opts)?;
            let p = Arc::new(
                ImageClassification::from_loaded(loaded, &opts.device)?
                    .with_processor_backend(settings.backend),
            );
            let pm = p.clone();
            let images =
                Batcher::start(labels(name, "image"), policy, metrics.clone(), move |px| {
                    let x = Tensor::cat(&px, 0)
                        .and_then(|x| x.to_device(&dev))
                        .map_err(err)?;
                    rows(&pm.probabilities(&x, &mut Ctx::inference()).map_err(err)?)
                })
                .map_err(thread_err)?;
            Served::Classifier(ClassifierModel {
                pipeline: p,
                images,
            })
        }
    };
    Ok(served)
}

/// A [N, P] tensor's rows; NaN or infinite outputs fail the batch (never sent as scores).
fn rows(t: &Tensor) -> BatchResult<Vec<f32>> {
    let v = t
        .to_dtype(DType::F32)
        .map_err(err)?
        .to_vec2::<f32>()
        .map_err(err)?;
    if v.iter().flatten().any(|x| !x.is_finite()) {
        return Err("the model produced NaN or infinite values: check its weights".into());
    }
    Ok(v)
}

/// DETR over a queue batch. Images are batched only with others of the same processed size, so
/// that no image is padded: a request's boxes do not depend on what else was in the batch.
fn detect_batch(p: &ObjectDetection, xs: Vec<DetrInput>) -> Result<Vec<Vec<DetectedBox>>> {
    let mut groups: BTreeMap<Vec<usize>, Vec<usize>> = BTreeMap::new();
    for (i, x) in xs.iter().enumerate() {
        groups.entry(x.pixels.dims().to_vec()).or_default().push(i);
    }
    let mut out: Vec<Option<Vec<DetectedBox>>> = (0..xs.len()).map(|_| None).collect();
    for idx in groups.values() {
        let px = Tensor::cat(
            &idx.iter()
                .map(|&i| xs[i].pixels.clone())
                .collect::<Vec<_>>(),
            0,
        )?
        .to_device(&p.device)?;
        let mask = Tensor::cat(
            &idx.iter().map(|&i| xs[i].mask.clone()).collect::<Vec<_>>(),
            0,
        )?
        .to_device(&p.device)?;
        let o = p.model.forward(&px, &mask, &mut Ctx::inference())?;
        let targets: Vec<(u32, u32)> = idx.iter().map(|&i| xs[i].target).collect();
        let boxes = post_process_object_detection(&o.logits, &o.pred_boxes, 0.0, Some(&targets))?;
        for (&i, bx) in idx.iter().zip(boxes) {
            out[i] = Some(bx);
        }
    }
    Ok(out.into_iter().map(Option::unwrap_or_default).collect())
}

/// The preprocessed input of one decoded image for a model's image tower.
pub fn prepare_image(served: &Served, img: &image::DynamicImage) -> Result<PreparedImage> {
    let cpu = Device::Cpu;
    Ok(match served {
        Served::Clip(m) => PreparedImage::Pixels(
            m.embedder
                .processor
                .batch(std::slice::from_ref(img), &cpu)?,
        ),
        Served::Classifier(m) => {
            PreparedImage::Pixels(m.pipeline.inputs.batch(std::slice::from_ref(img), &cpu)?)
        }
        Served::Detector(m) => {
            let one = std::slice::from_ref(img);
            let b = m.pipeline.processor.batch_padded(one, &cpu)?;
            let target = crate::train::detr_train::padded_sizes(one, &b)?[0];
            PreparedImage::Detr(DetrInput {
                pixels: b.pixel_values,
                mask: b.pixel_mask,
                target,
            })
        }
    })
}

pub enum PreparedImage {
    Pixels(Tensor),
    Detr(DetrInput),
}

/// Runs one forward per queue on a dummy image, so the first request does not pay for lazy
/// initialisation (thread pools, packed weights); `/ready` answers 200 only after it.
pub fn warm_up(served: &Served) -> Result<()> {
    let img = image::DynamicImage::new_rgb8(64, 48);
    match (served, prepare_image(served, &img)?) {
        (Served::Clip(m), PreparedImage::Pixels(px)) => {
            wait_all(m.images.submit(vec![px]))?;
            wait_all(m.texts.submit(vec!["a photo".into()]))
        }
        (Served::Classifier(m), PreparedImage::Pixels(px)) => wait_all(m.images.submit(vec![px])),
        (Served::Detector(m), PreparedImage::Detr(x)) => wait_all(m.images.submit(vec![x])),
        _ => Err(Error::Msg(
            "internal: prepared image of the wrong kind".into(),
        )),
    }
}

/// Blocks until every item of a submission is answered (warm-up, outside the runtime).
fn wait_all<O>(
    r: std::result::Result<super::batch::Receivers<O>, super::batch::Overloaded>,
) -> Result<()> {
    let rxs = r.map_err(|_| Error::Msg("queue full during warm-up".into()))?;
    for rx in rxs {
        rx.blocking_recv()
            .map_err(|_| Error::Msg("the model thread stopped".into()))?
            .map_err(Error::Msg)?;
    }
    Ok(())
}

/// Softmax logits per row (zero-shot): `logit_scale · cos` over the labels.
pub fn zero_shot_probs(
    e: &ClipEmbedder,
    img: &[Vec<f32>],
    txt: &[Vec<f32>],
) -> Result<Vec<Vec<f32>>> {
    let dev = &e.device;
    let w = img.first().map_or(0, Vec::len);
    let i = Tensor::from_vec(img.concat(), (img.len(), w), dev)?;
    let t = Tensor::from_vec(txt.concat(), (txt.len(), w), dev)?;
    let logits = e.model.logits(&i, &t)?;
    Ok(candle_nn::ops::softmax(&logits, D::Minus1)?.to_vec2::<f32>()?)
}
