//! Where a model looked: an image through a classifier (the seed ViT, an HF ViT classifier) or
//! CLIP (against a text), with the forward traced, and the chosen map read from the trace.
use super::{argmax, cls_attention, cls_attention_head, cls_attention_per_layer, grid_side};
use super::{relevance, render, rollout, HeadFusion};
use crate::models::{AutoModel, Family, LoadOptions};
use crate::nn::{Ctx, Trace};
use crate::pipelines::{ClipEmbedder, ImageClassification, ObjectDetection};
use crate::{Error, Result};
use image::{DynamicImage, RgbImage};
use std::ffi::OsStr;
use std::path::Path;

/// Heat maps drawn over small inputs (8×8 digits) are upscaled to at least this many pixels a
/// side, so the patches can be seen.
const MIN_VIEW_SIDE: u32 = 224;

/// Which map to compute.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Method {
    /// The class token's attention in `layer` (default: the last), heads fused, or `head` alone.
    Attention {
        layer: Option<usize>,
        head: Option<usize>,
    },
    /// Attention rollout, dropping the lowest `discard_ratio` ∈ [0, 1) of each layer's fused
    /// attentions.
    Rollout { discard_ratio: f32 },
    /// Gradient-weighted relevance of the explained score (a class logit, or CLIP's cosine).
    Relevance,
}

/// What to explain and how.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: Method,
    pub fusion: HeadFusion,
    /// For a classifier: the class (name or index); default the top prediction.
    pub label: Option<String>,
    /// For CLIP: the text whose match is explained (required for relevance).
    pub text: Option<String>,
}

impl Request {
    /// Refuses settings no model can honour (checked again by [`Explainer::explain`]; call it
    /// to fail before loading a model).
    pub fn validate(&self) -> Result<()> {
        if let Method::Rollout { discard_ratio: r } = self.method {
            if !(r.is_finite() && (0.0..1.0).contains(&r)) {
                return Err(Error::Config(format!(
                    "discard ratio {r} must be in [0, 1)"
                )));
            }
        }
        Ok(())
    }
}

/// A map over the image's patch grid, with what it explains.
pub struct Explanation {
    /// One value per patch, row-major, `side`×`side`.
    pub values: Vec<f32>,
    pub side: usize,
    /// The explained score: label and probability, or the text and its cosine.
    pub legend: String,
    /// The image as the model saw it (upscaled to at least 224 px a side).
    pub view: RgbImage,
    /// Each layer's class-token attention, heads fused as asked (for the per-layer grid).
    pub layers: Vec<Vec<f32>>,
}

impl Explanation {
    /// The patch with the highest value.
    pub fn hottest(&self) -> usize {
        argmax(&self.values)
    }

    /// The map over the view, with the legend.
    pub fn heatmap(&self) -> Result<RgbImage> {
        let heat = render::overlay(&self.view, &self.values, self.side, 0.5)?;
        if self.legend.is_empty() {
            Ok(heat)
        } else {
            render::legend(&heat, &self.legend)
        }
    }

    /// Every layer's class-token attention over the view, four per row.
    pub fn layer_grid(&self) -> Result<RgbImage> {
        let maps: Vec<RgbImage> = self
            .layers
            .iter()
            .enumerate()
            .map(|(l, v)| {
                render::overlay(&self.view, v, self.side, 0.5)
                    .and_then(|o| render::legend(&o, &format!("layer {l}")))
            })
            .collect::<Result<_>>()?;
        Ok(render::grid(&maps, 4))
    }
}

/// A model that can be explained.
pub enum Explainer {
    Classifier(Box<ImageClassification>),
    Clip(Box<ClipEmbedder>),
    /// DETR: explained per detection ([`super::detection_attention`]), not by [`Explainer::explain`].
    Detector(Box<ObjectDetection>),
}

impl Explainer {
    /// A tessera ViT run, an HF ViT classifier or a CLIP checkpoint (directory or hub id);
    /// `bpe_gz` is CLIP's merges for checkpoints without `vocab.json`.
    pub fn from_pretrained(
        source: impl AsRef<OsStr>,
        bpe_gz: &Path,
        opts: &LoadOptions,
    ) -> Result<Self> {
        let ckpt = AutoModel::read(source, opts)?;
        if Family::of(&ckpt.config)? == Family::Detr {
            let loaded = <crate::models::detr::Detr as crate::models::Pretrained>::from_checkpoint(
                ckpt, opts,
            )?;
            return Ok(Explainer::Detector(Box::new(ObjectDetection::from_loaded(
                loaded,
                &opts.device,
            )?)));
        }
        if Family::of(&ckpt.config)? == Family::Clip {
            return Ok(Explainer::Clip(Box::new(ClipEmbedder::from_checkpoint(
                ckpt, bpe_gz, opts,
            )?)));
        }
        Ok(Explainer::Classifier(Box::new(
            ImageClassification::from_loaded(
                AutoModel::from_checkpoint(ckpt, opts)?,
                &opts.device,
            )?,
        )))
    }

    /// Preprocesses as `backend` instead of what the processor config chooses (`None`: the
    /// config's choice).
    pub fn with_processor_backend(self, backend: Option<crate::image::Backend>) -> Self {
        match self {
            Explainer::Classifier(p) => {
                Explainer::Classifier(Box::new(p.with_processor_backend(backend)))
            }
            Explainer::Clip(e) => Explainer::Clip(Box::new(e.with_processor_backend(backend))),
            Explainer::Detector(d) => {
                Explainer::Detector(Box::new(d.with_processor_backend(backend)))
            }
        }
    }

    /// Runs the model on `img` and computes the map `req` asks for.
    pub fn explain(&self, img: &DynamicImage, req: &Request) -> Result<Explanation> {
        req.validate()?;
        let mut trace = if req.method == Method::Relevance {
            Trace::with_gradients()
        } else {
            Trace::default()
        };
        let (view, legend, grads) = match self {
            Explainer::Classifier(p) => classifier_forward(p, img, req, &mut trace)?,
            Explainer::Clip(e) => clip_forward(e, img, req, &mut trace)?,
            Explainer::Detector(_) => return Err(Error::Config(
                "a detector is explained per detection (detection_attention), not by one class map"
                    .into(),
            )),
        };
        let layers = trace.attentions.len();
        let values = match req.method {
            Method::Attention { layer, head } => {
                let l = layer.unwrap_or(layers.saturating_sub(1));
                if l >= layers {
                    return Err(Error::Config(format!(
                        "layer {l} does not exist: the model has {layers} layers"
                    )));
                }
                match head {
                    Some(h) => cls_attention_head(&trace, l, 0, h)?,
                    None => cls_attention(&trace, l, 0, req.fusion)?,
                }
            }
            Method::Rollout { discard_ratio } => rollout(&trace, 0, req.fusion, discard_ratio)?,
            Method::Relevance => relevance(
                &trace,
                grads
                    .as_ref()
                    .ok_or_else(|| Error::Msg("relevance needs the score's gradients".into()))?,
                0,
            )?,
        };
        if values.iter().any(|v| !v.is_finite()) {
            return Err(Error::Msg(
                "the map has non-finite values (NaN or inf): check the model's weights".into(),
            ));
        }
        Ok(Explanation {
            side: grid_side(values.len())?,
            values,
            legend,
            view: upscale(view),
            layers: cls_attention_per_layer(&trace, 0, req.fusion)?,
        })
    }
}

type Forward = (RgbImage, String, Option<candle_core::backprop::GradStore>);

fn classifier_forward(
    p: &ImageClassification,
    img: &DynamicImage,
    req: &Request,
    trace: &mut Trace,
) -> Result<Forward> {
    let x = p.inputs.batch(std::slice::from_ref(img), &p.device)?;
    let c = p.classifier();
    let logits = c.logits(&x, &mut Ctx::eval().with_trace(trace))?;
    let probs = candle_nn::ops::softmax(&logits, candle_core::D::Minus1)?
        .get(0)?
        .to_vec1::<f32>()?;
    let k = probs.len();
    let target = match &req.label {
        None => argmax(&probs),
        Some(l) => match l.parse::<usize>() {
            Ok(i) if i < k => i,
            _ => (0..k).find(|&i| c.label(i) == *l).ok_or_else(|| {
                Error::Config(format!("label {l:?} is not one of the model's {k} labels"))
            })?,
        },
    };
    let grads = if req.method == Method::Relevance {
        Some(logits.get(0)?.get(target)?.backward()?)
    } else {
        None
    };
    let legend = format!("{}  {:.3}", c.label(target), probs[target]);
    Ok((p.inputs.view(img)?, legend, grads))
}

fn clip_forward(
    e: &ClipEmbedder,
    img: &DynamicImage,
    req: &Request,
    trace: &mut Trace,
) -> Result<Forward> {
    let (px, h, w) = e.processor.pixels_u8(img)?;
    let view = RgbImage::from_raw(w, h, px)
        .ok_or_else(|| Error::Shape("processed image has the wrong size".into()))?;
    let x = e.processor.batch(std::slice::from_ref(img), &e.device)?;
    let ie = e
        .model
        .image_embeds(&x, &mut Ctx::eval().with_trace(trace))?;
    let Some(text) = &req.text else {
        if req.method == Method::Relevance {
            return Err(Error::Config(
                "CLIP relevance needs a text, e.g. --text \"a ladybug\"".into(),
            ));
        }
        return Ok((view, String::new(), None));
    };
    // The text side untraced: only the image's attention maps are explained.
    let (ids, mask) = e.tokenize(&[text.as_str()])?;
    let te = e.model.text_embeds(&ids, Some(&mask), &mut Ctx::eval())?;
    let sim = (&ie * &te)?.sum_all()?;
    let grads = if req.method == Method::Relevance {
        Some(sim.backward()?)
    } else {
        None
    };
    Ok((
        view,
        format!("\"{text}\"  cos {:.3}", sim.to_scalar::<f32>()?),
        grads,
    ))
}

/// `view` scaled up by a whole factor (nearest) until its short side is at least
/// [`MIN_VIEW_SIDE`].
fn upscale(view: RgbImage) -> RgbImage {
    let short = view.width().min(view.height()).max(1);
    let f = MIN_VIEW_SIDE.div_ceil(short);
    if f <= 1 {
        return view;
    }
    image::imageops::resize(
        &view,
        view.width() * f,
        view.height() * f,
        image::imageops::FilterType::Nearest,
    )
}
