//! The one loading shape of every model: [`LoadOptions`] in, [`Loaded`] out.
use crate::nn::Precision;
use crate::nn::{LoadReport, ParamStore};
use crate::progress::{Observer, Progress};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::{de::DeserializeOwned, Serialize};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// What a load builds, as transformers' model classes and pipeline tasks name it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Task {
    /// What the checkpoint is (its `architectures`, or the head its tensors hold).
    #[default]
    AsSaved,
    /// With a classification head (`*ForImageClassification`).
    ImageClassification,
    /// The backbone's features only (`*Model`).
    FeatureExtraction,
}

/// How to load a model: `from_pretrained`'s keyword arguments.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub device: Device,
    /// Inference precision: `F32`, `BF16` or `Int8` packs every encoder linear once for
    /// tessera's kernels (bf16: AVX512_BF16, fp32 accumulation; int8: dynamic quantisation on
    /// AVX512_VNNI). `None` keeps the weights as loaded (training,
    /// tracing); inference then reads them in place.
    pub dtype: Option<Precision>,
    /// Parameters become trainable variables (for fine-tuning).
    pub trainable: bool,
    /// Parameter-name prefixes kept frozen when `trainable` (e.g. `vit.` for a linear probe).
    pub frozen: Vec<String>,
    /// A classification head of this many labels, fresh when the checkpoint's differs
    /// (transformers' `num_labels` with `ignore_mismatched_sizes`). Implies classification.
    pub num_labels: Option<usize>,
    pub task: Task,
    /// Random weights from the checkpoint's config instead of its weights (the from-scratch
    /// baseline of a fine-tuning run).
    pub random_init: bool,
    /// Seed of every freshly initialised tensor.
    pub seed: u64,
    /// Where hub downloads report their bytes.
    pub progress: Observer,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            device: Device::Cpu,
            dtype: None,
            trainable: false,
            frozen: vec![],
            num_labels: None,
            task: Task::AsSaved,
            random_init: false,
            seed: 0,
            progress: Observer::default(),
        }
    }
}

impl LoadOptions {
    pub fn device(self, device: &Device) -> Self {
        LoadOptions {
            device: device.clone(),
            ..self
        }
    }

    /// Loads for inference in `dtype` (a [`DType`] or a [`Precision`]).
    pub fn dtype(self, dtype: impl Into<Precision>) -> Self {
        LoadOptions {
            dtype: Some(dtype.into()),
            ..self
        }
    }

    pub fn trainable(self) -> Self {
        LoadOptions {
            trainable: true,
            ..self
        }
    }

    /// Keeps parameters under `prefix` out of training.
    pub fn freeze(mut self, prefix: &str) -> Self {
        self.frozen.push(prefix.to_string());
        self
    }

    pub fn num_labels(self, n: usize) -> Self {
        LoadOptions {
            num_labels: Some(n),
            task: Task::ImageClassification,
            ..self
        }
    }

    pub fn task(self, task: Task) -> Self {
        LoadOptions { task, ..self }
    }

    pub fn random_init(self) -> Self {
        LoadOptions {
            random_init: true,
            ..self
        }
    }

    pub fn seed(self, seed: u64) -> Self {
        LoadOptions { seed, ..self }
    }

    pub fn progress(self, progress: Observer) -> Self {
        LoadOptions { progress, ..self }
    }

    /// A parameter store answering from `tensors` as these options ask (trainable, frozen,
    /// seeded fresh tensors).
    pub fn store(&self, tensors: HashMap<String, Tensor>) -> ParamStore {
        ParamStore::with_source(tensors, self.seed, self.trainable, &self.device)
            .with_frozen(self.frozen.clone())
    }
}

/// A loaded model with its parameter store and what the load found.
pub struct Loaded<M> {
    pub model: M,
    /// The parameters by checkpoint name (what training updates and `save_pretrained` writes).
    pub store: ParamStore,
    pub report: LoadReport,
    /// Checkpoint tensors left unused by design (a pooler when classifying, an old head).
    pub ignored: Vec<String>,
    /// The checkpoint directory (`None` for fresh weights).
    pub dir: Option<PathBuf>,
}

impl<M> Loaded<M> {
    /// The same load around another model value (e.g. a family-specific model wrapped in
    /// [`super::AutoModel`]).
    pub fn map<N>(self, f: impl FnOnce(M) -> N) -> Loaded<N> {
        Loaded {
            model: f(self.model),
            store: self.store,
            report: self.report,
            ignored: self.ignored,
            dir: self.dir,
        }
    }

    /// Trainable parameter count.
    pub fn trainable_parameters(&self) -> usize {
        self.store.vars().iter().map(|(_, v)| v.elem_count()).sum()
    }
}

/// A checkpoint on disk: its directory, `config.json` and weights.
pub struct Checkpoint {
    pub dir: PathBuf,
    pub config: serde_json::Value,
    pub tensors: HashMap<String, Tensor>,
    /// The weights file read (`model.safetensors` or `pytorch_model.bin`).
    pub weights: PathBuf,
}

impl Checkpoint {
    /// Resolves `source` (a directory, or a hub id whose `extra` files are fetched when the
    /// repo has them) and reads `config.json` and the weights.
    pub fn read(
        source: impl AsRef<OsStr>,
        extra: &[&str],
        device: &Device,
        progress: &dyn Progress,
    ) -> Result<Self> {
        let dir = crate::hub::resolve(
            source.as_ref(),
            &["config.json"],
            &[&["model.safetensors", "pytorch_model.bin"]],
            extra,
            progress,
        )?;
        Self::read_dir(&dir, device)
    }

    /// Reads `config.json` and the weights of a local directory.
    pub fn read_dir(dir: &Path, device: &Device) -> Result<Self> {
        let config = crate::util::read_json(&dir.join("config.json"))?;
        let (tensors, weights) = crate::nn::store::load_weights(dir, device)?;
        Ok(Checkpoint {
            dir: dir.to_path_buf(),
            config,
            tensors,
            weights,
        })
    }

    /// `config.json` as `T`; errors name the file.
    pub fn config<T: DeserializeOwned>(&self) -> Result<T> {
        serde_path_to_error::deserialize(self.config.clone())
            .map_err(|e| Error::json(self.dir.join("config.json"), e))
    }

    /// Fails unless `config.json` names `family` (a CLIP checkpoint loaded as a ViT would
    /// otherwise fail with hundreds of missing tensors).
    pub fn expect(&self, family: super::Family) -> Result<()> {
        let found = super::Family::of(&self.config)?;
        if found != family {
            return Err(Error::Config(format!(
                "{}: this is a {} checkpoint, not a {} one",
                self.dir.join("config.json").display(),
                found.name(),
                family.name()
            )));
        }
        Ok(())
    }

    /// Fails with the load report unless `report` is clean.
    pub fn ensure_clean(&self, report: &LoadReport) -> Result<()> {
        if report.is_clean() {
            Ok(())
        } else {
            Err(Error::Checkpoint {
                path: self.weights.clone(),
                report: report.to_string(),
            })
        }
    }
}

/// A model with HF-style `config.json` + weights: one loading shape for every model.
pub trait Pretrained: Sized + Clone {
    type Config: Serialize + DeserializeOwned + Clone;
    /// Hub files fetched when present, besides `config.json` and the weights.
    const EXTRA_FILES: &'static [&'static str] = &["preprocessor_config.json"];

    /// Fresh weights from `config`, seeded by `opts.seed` (training from scratch).
    fn from_config(config: &Self::Config, opts: &LoadOptions) -> Result<Loaded<Self>>;

    /// The model of a checkpoint read from disk (see [`Pretrained::load`]).
    fn from_checkpoint(ckpt: Checkpoint, opts: &LoadOptions) -> Result<Loaded<Self>>;

    /// A checkpoint directory or hub id; any missing, unexpected or mis-shaped tensor is an
    /// error naming them (except what `opts` asks to be fresh, such as a new head).
    fn load(source: impl AsRef<OsStr>, opts: &LoadOptions) -> Result<Loaded<Self>> {
        Self::from_checkpoint(
            Checkpoint::read(source, Self::EXTRA_FILES, &opts.device, &*opts.progress)?,
            opts,
        )
    }

    /// The model computing in `dtype` on the inference path: `F32`, `BF16` or
    /// [`Precision::Int8`] packs every encoder linear once for tessera's kernels (LayerNorm,
    /// softmax, attention and activations stay fp32); a GPU keeps linear weights in a float
    /// dtype.
    fn with_dtype(&self, dtype: impl Into<Precision>) -> Result<Self> {
        self.with_precision(dtype.into())
    }

    /// [`Pretrained::with_dtype`], what each model implements.
    fn with_precision(&self, dtype: Precision) -> Result<Self>;

    /// The configuration `config.json` holds.
    fn config(&self) -> &Self::Config;

    /// `config.json` as transformers writes it for this model (with `architectures`).
    fn config_json(&self) -> Result<serde_json::Value> {
        serde_json::to_value(self.config()).map_err(|e| Error::Msg(e.to_string()))
    }

    /// Writes `model.safetensors` (checkpoint names, `format: pt`) and `config.json` into `dir`,
    /// which `from_pretrained(dir)` (transformers or tessera) loads.
    fn save_pretrained(&self, store: &ParamStore, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        store.save(&dir.join("model.safetensors"))?;
        crate::util::write_json(&dir.join("config.json"), &self.config_json()?)
    }
}

/// Fresh weights: `build` on a store that initialises every tensor (seeded by `opts.seed`).
pub(crate) fn fresh<M: Pretrained>(
    opts: &LoadOptions,
    build: impl FnOnce(VarBuilder) -> Result<M>,
) -> Result<Loaded<M>> {
    let store = opts.store(HashMap::new());
    let model = build(store.var_builder(DType::F32))?;
    finish(model, store, LoadReport::default(), vec![], None, opts)
}

/// A strict load: every tensor of `ckpt` that `keep` keeps must be one the model built by
/// `build` asks for, with its shape, and every one it asks for must be there. With
/// `opts.random_init`, fresh weights instead (the directory is kept: its processor still applies).
pub(crate) fn strict<M: Pretrained>(
    ckpt: Checkpoint,
    opts: &LoadOptions,
    keep: impl Fn(&str) -> bool,
    build: impl FnOnce(VarBuilder) -> Result<M>,
) -> Result<Loaded<M>> {
    strict_with_fresh(ckpt, opts, keep, |_| false, build)
}

/// [`strict`], except that tensors the model asks for and `fresh` names may be missing: they
/// are initialised (a new head; they stay listed as missing in the load report).
pub(crate) fn strict_with_fresh<M: Pretrained>(
    mut ckpt: Checkpoint,
    opts: &LoadOptions,
    keep: impl Fn(&str) -> bool,
    fresh_ok: impl Fn(&str) -> bool,
    build: impl FnOnce(VarBuilder) -> Result<M>,
) -> Result<Loaded<M>> {
    if opts.random_init {
        let loaded = fresh(opts, build)?;
        return Ok(Loaded {
            dir: Some(ckpt.dir),
            ..loaded
        });
    }
    let tensors = std::mem::take(&mut ckpt.tensors)
        .into_iter()
        .filter(|(k, _)| keep(k))
        .collect();
    let store = opts.store(tensors);
    let model = build(store.var_builder(DType::F32))?;
    let report = store.report();
    let mut fatal = report.clone();
    fatal.missing.retain(|k| !fresh_ok(k));
    ckpt.ensure_clean(&fatal)?;
    finish(model, store, report, vec![], Some(ckpt.dir), opts)
}

/// Finishes a load: the model in `opts.dtype`, with its store, report and directory.
pub(crate) fn finish<M: Pretrained>(
    model: M,
    store: ParamStore,
    report: LoadReport,
    ignored: Vec<String>,
    dir: Option<PathBuf>,
    opts: &LoadOptions,
) -> Result<Loaded<M>> {
    let model = match opts.dtype {
        Some(dtype) => model.with_dtype(dtype)?,
        None => model,
    };
    Ok(Loaded {
        model,
        store,
        report,
        ignored,
        dir,
    })
}
