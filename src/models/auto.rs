//! `AutoModel`: the model a checkpoint's `config.json` names (`model_type`, else
//! `architectures`, else the layout of its fields), loaded through its own [`Pretrained`] impl.
use super::clip::Clip;
use super::load::{Checkpoint, LoadOptions, Loaded, Pretrained};
use super::perceiver::PerceiverClassifier;
use super::vit::{hf::HfVit, VisionTransformer};
use super::ImageClassifier;
use crate::nn::Precision;
use crate::{Error, Result};
use std::ffi::OsStr;

/// The model families tessera reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// The seed ViT (`model_type: tessera-vit`, what `tessera train` writes).
    SeedVit,
    /// Hugging Face `ViTModel` / `ViTForImageClassification` (`vit`).
    Vit,
    /// Hugging Face `CLIPModel` (`clip`).
    Clip,
    /// Hugging Face `DetrForObjectDetection` (`detr`): a detector, see [`crate::models::detr`].
    Detr,
    /// Hugging Face BLIP (`blip`): a captioner or VQA model, see [`crate::models::blip`].
    Blip,
    /// Hugging Face BLIP-2 with OPT (`blip-2`): a captioner, see [`crate::models::blip2`].
    Blip2,
    /// Hugging Face `OPTForCausalLM` (`opt`): a language model, see [`crate::models::opt`].
    Opt,
    /// Hugging Face Perceiver image classifiers (`perceiver`), see [`crate::models::perceiver`].
    Perceiver,
    /// Hugging Face LXMERT (`lxmert`): a two-stream vision-language encoder over detector region
    /// features, see [`crate::models::lxmert`].
    Lxmert,
    /// Hugging Face IDEFICS (`idefics`), Flamingo's reproduction: see [`crate::models::idefics`].
    Idefics,
}

impl Family {
    /// What people call it.
    pub fn name(self) -> &'static str {
        match self {
            Family::SeedVit => "tessera ViT",
            Family::Vit => "Hugging Face ViT",
            Family::Clip => "CLIP",
            Family::Detr => "DETR",
            Family::Blip => "BLIP",
            Family::Blip2 => "BLIP-2",
            Family::Opt => "OPT",
            Family::Perceiver => "Perceiver",
            Family::Lxmert => "LXMERT",
            Family::Idefics => "IDEFICS",
        }
    }

    /// The family of a `config.json`.
    pub fn of(config: &serde_json::Value) -> Result<Family> {
        let model_type = config.get("model_type").and_then(|v| v.as_str());
        let architecture = config
            .get("architectures")
            .and_then(|a| a.get(0))
            .and_then(|a| a.as_str());
        match (model_type, architecture) {
            (Some("tessera-vit"), _) => Ok(Family::SeedVit),
            (Some("vit"), _) => Ok(Family::Vit),
            (Some("clip"), _) => Ok(Family::Clip),
            (Some("detr"), _) => Ok(Family::Detr),
            (Some("blip"), _) => Ok(Family::Blip),
            (Some("blip-2"), _) => Ok(Family::Blip2),
            (Some("opt"), _) => Ok(Family::Opt),
            (Some("perceiver"), _) => Ok(Family::Perceiver),
            (Some("lxmert"), _) => Ok(Family::Lxmert),
            (Some("idefics"), _) => Ok(Family::Idefics),
            (None, Some(a)) if a.starts_with("Perceiver") => Ok(Family::Perceiver),
            (None, Some(a)) if a.starts_with("Lxmert") => Ok(Family::Lxmert),
            (None, Some(a)) if a.starts_with("ViT") => Ok(Family::Vit),
            (None, Some(a)) if a.starts_with("CLIP") => Ok(Family::Clip),
            (None, Some(a)) if a.starts_with("Detr") => Ok(Family::Detr),
            (None, Some(a)) if a.starts_with("Blip2") => Ok(Family::Blip2),
            (None, Some(a)) if a.starts_with("Blip") => Ok(Family::Blip),
            // Older tessera runs wrote no model_type; CLIP configs always have both towers.
            (None, None) if config.get("text_config").is_some() => Ok(Family::Clip),
            (None, None) => Ok(Family::SeedVit),
            (m, a) => Err(Error::Config(format!(
                "model_type {:?} is not a model tessera reads (tessera-vit, vit, clip, detr, blip, blip-2, opt, perceiver, lxmert, idefics)",
                m.or(a).unwrap_or("?")
            ))),
        }
    }
}

/// Any model tessera reads, as its `config.json` names it.
#[derive(Clone, Debug)]
pub enum AutoModel {
    SeedVit(VisionTransformer),
    Vit(HfVit),
    /// Boxed: a CLIP model is several times the size of the others' handles.
    Clip(Box<Clip>),
    /// A Perceiver image classifier (learned, Fourier or conv preprocessing).
    Perceiver(Box<PerceiverClassifier>),
}

/// Every hub file any family may want beyond `config.json` and the weights.
const EXTRA_FILES: &[&str] = &["preprocessor_config.json", "vocab.json", "merges.txt"];

impl AutoModel {
    /// Loads the model `source`'s `config.json` names (a directory or a hub id).
    pub fn load(source: impl AsRef<OsStr>, opts: &LoadOptions) -> Result<Loaded<AutoModel>> {
        Self::from_checkpoint(Self::read(source, opts)?, opts)
    }

    /// Reads `source` with every file any family may need fetched from the hub.
    pub fn read(source: impl AsRef<OsStr>, opts: &LoadOptions) -> Result<Checkpoint> {
        Checkpoint::read(source, EXTRA_FILES, &opts.device, &*opts.progress)
    }

    /// The model a checkpoint already read from disk names.
    pub fn from_checkpoint(ckpt: Checkpoint, opts: &LoadOptions) -> Result<Loaded<AutoModel>> {
        Ok(match Family::of(&ckpt.config)? {
            Family::SeedVit => {
                VisionTransformer::from_checkpoint(ckpt, opts)?.map(AutoModel::SeedVit)
            }
            Family::Vit => HfVit::from_checkpoint(ckpt, opts)?.map(AutoModel::Vit),
            Family::Clip => {
                Clip::from_checkpoint(ckpt, opts)?.map(|m| AutoModel::Clip(Box::new(m)))
            }
            Family::Perceiver => PerceiverClassifier::from_checkpoint(ckpt, opts)?
                .map(|m| AutoModel::Perceiver(Box::new(m))),
            Family::Detr => {
                return Err(Error::Config(format!(
                    "{} is a DETR object detector: use `tessera detect` (ObjectDetection)",
                    ckpt.dir.display()
                )))
            }
            Family::Opt => {
                return Err(Error::Config(format!(
                    "{} is an OPT language model: use models::opt::OptLm",
                    ckpt.dir.display()
                )))
            }
            Family::Idefics => {
                return Err(Error::Config(format!(
                    "{} is IDEFICS, an image-conditioned language model: use \
                     models::idefics::Idefics",
                    ckpt.dir.display()
                )))
            }
            Family::Lxmert => {
                return Err(Error::Config(format!(
                    "{} is LXMERT, which reads detector region features, not images: use \
                     models::lxmert::Lxmert",
                    ckpt.dir.display()
                )))
            }
            Family::Blip | Family::Blip2 => {
                return Err(Error::Config(format!(
                    "{} is a captioning/VQA model: use `tessera caption` / `tessera vqa` \
                     (pipelines::Captioning)",
                    ckpt.dir.display()
                )))
            }
        })
    }

    pub fn family(&self) -> Family {
        match self {
            AutoModel::SeedVit(_) => Family::SeedVit,
            AutoModel::Vit(_) => Family::Vit,
            AutoModel::Clip(_) => Family::Clip,
            AutoModel::Perceiver(_) => Family::Perceiver,
        }
    }

    /// The model as an image classifier, when it is one (the seed ViT, an HF ViT with a head).
    pub fn as_classifier(&self) -> Option<&dyn ImageClassifier> {
        match self {
            AutoModel::SeedVit(m) => Some(m),
            AutoModel::Vit(m @ HfVit::Classifier { .. }) => Some(m),
            AutoModel::Perceiver(m) => Some(m.as_ref()),
            _ => None,
        }
    }

    /// The model computing in `dtype` on the inference path (see [`Pretrained::with_dtype`]).
    pub fn with_dtype(&self, dtype: impl Into<Precision>) -> Result<AutoModel> {
        let dtype = dtype.into();
        Ok(match self {
            AutoModel::SeedVit(m) => AutoModel::SeedVit(m.with_dtype(dtype)?),
            AutoModel::Vit(m) => AutoModel::Vit(m.with_dtype(dtype)?),
            AutoModel::Clip(m) => AutoModel::Clip(Box::new(m.with_dtype(dtype)?)),
            AutoModel::Perceiver(m) => AutoModel::Perceiver(Box::new(m.with_dtype(dtype)?)),
        })
    }
}
