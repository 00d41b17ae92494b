//! The parameter store behind every model's `VarBuilder`.
//!
//! Load equals construct: a model asks for each tensor by its construction path (which *is*
//! the checkpoint key). The store answers from a loaded checkpoint when it has the name, or
//! initialises a fresh tensor from a seeded RNG (so training from scratch is reproducible,
//! which candle's own CPU RNG is not). Afterwards [`ParamStore::report`] lists what was
//! missing, unexpected or mis-shaped, by name.
use crate::{Error, Result};
use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::init::NormalOrUniform;
use candle_nn::{Init, VarBuilder};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// What a load found, HF-style.
#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    /// Asked for by the model but absent from the checkpoint (freshly initialised).
    pub missing: Vec<String>,
    /// Present in the checkpoint but never asked for.
    pub unexpected: Vec<String>,
    /// Present with another shape: (name, model shape, checkpoint shape); freshly initialised.
    pub mismatched: Vec<(String, Vec<usize>, Vec<usize>)>,
}

impl LoadReport {
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.mismatched.is_empty()
    }
}

/// How many names of each kind a report spells out (a mismatched layout can list thousands).
const SHOWN: usize = 3;

/// `n` names: the first [`SHOWN`], then how many more.
fn some(names: &[String]) -> String {
    let mut s = names
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        s.push_str(&format!(", … and {} more", names.len() - SHOWN));
    }
    s
}

/// The distinct leading name segments (`vision_model.`, `model.`) of `names`, for saying what a
/// checkpoint looks like instead.
fn prefixes(names: &[String]) -> Vec<String> {
    let mut p: Vec<String> = names
        .iter()
        .map(|n| {
            // Two segments where there are more (`vit.model.*`): a re-keyed prefix alone says
            // little.
            let parts: Vec<&str> = n.split('.').collect();
            match parts.len() {
                0 | 1 => n.clone(),
                2 => format!("{}.*", parts[0]),
                _ => format!("{}.{}.*", parts[0], parts[1]),
            }
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    p.truncate(6);
    p
}

impl std::fmt::Display for LoadReport {
    /// One line: counts, the first few names of each kind, and — when the model and the
    /// checkpoint disagree on names — what the checkpoint holds instead.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = vec![];
        if !self.missing.is_empty() {
            parts.push(format!(
                "{} missing tensors ({})",
                self.missing.len(),
                some(&self.missing)
            ));
        }
        if !self.unexpected.is_empty() {
            parts.push(format!(
                "{} unexpected tensors ({})",
                self.unexpected.len(),
                some(&self.unexpected)
            ));
        }
        if !self.mismatched.is_empty() {
            let shown: Vec<String> = self
                .mismatched
                .iter()
                .take(SHOWN)
                .map(|(n, want, got)| format!("{n}: model wants {want:?}, checkpoint has {got:?}"))
                .collect();
            let more = self.mismatched.len().saturating_sub(SHOWN);
            parts.push(format!(
                "{} mis-shaped tensors ({}{})",
                self.mismatched.len(),
                shown.join("; "),
                if more > 0 {
                    format!("; … and {more} more")
                } else {
                    String::new()
                }
            ));
        }
        if !self.missing.is_empty() && !self.unexpected.is_empty() {
            parts.push(format!(
                "the checkpoint's own tensors are under {} (another model or layout?)",
                prefixes(&self.unexpected).join(", ")
            ));
        }
        if parts.is_empty() {
            write!(f, "all tensors matched")
        } else {
            write!(f, "{}", parts.join("; "))
        }
    }
}

struct Inner {
    vars: BTreeMap<String, Tensor>,
    order: Vec<String>,
    used: BTreeSet<String>,
    missing: Vec<String>,
    mismatched: Vec<(String, Vec<usize>, Vec<usize>)>,
    rng: ChaCha8Rng,
    /// Bytes of the freshly initialised tensors so far.
    fresh_bytes: u64,
    /// The memory available when the first fresh tensor was made: what all of them together
    /// may take (available memory shrinks as they are allocated, so each is not checked against
    /// what is left).
    fresh_budget: Option<u64>,
}

/// Parameters of one model, keyed by checkpoint name.
#[derive(Clone)]
pub struct ParamStore {
    inner: Arc<Mutex<Inner>>,
    source: Arc<HashMap<String, Tensor>>,
    trainable: bool,
    /// Names starting with one of these are created frozen (no gradient), e.g. a backbone
    /// for a linear probe.
    frozen: Arc<Vec<String>>,
    device: Device,
}

impl ParamStore {
    /// A store that initialises every tensor from `seed` (training from scratch).
    /// Where this store's tensors live.
    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn fresh(seed: u64, trainable: bool, device: &Device) -> Self {
        Self::with_source(HashMap::new(), seed, trainable, device)
    }

    /// A store that answers from `tensors` and initialises the rest from `seed`.
    pub fn with_source(
        tensors: HashMap<String, Tensor>,
        seed: u64,
        trainable: bool,
        device: &Device,
    ) -> Self {
        crate::keep_freed_memory();
        ParamStore {
            inner: Arc::new(Mutex::new(Inner {
                vars: BTreeMap::new(),
                order: vec![],
                used: BTreeSet::new(),
                missing: vec![],
                mismatched: vec![],
                rng: ChaCha8Rng::seed_from_u64(seed),
                fresh_bytes: 0,
                fresh_budget: None,
            })),
            source: Arc::new(tensors),
            trainable,
            frozen: Arc::new(vec![]),
            device: device.clone(),
        }
    }

    /// Freezes every parameter whose name starts with one of `prefixes` (call before building
    /// the model).
    pub fn with_frozen(mut self, prefixes: Vec<String>) -> Self {
        self.frozen = Arc::new(prefixes);
        self
    }

    /// Reads a safetensors file into a store.
    pub fn from_safetensors(
        path: &Path,
        seed: u64,
        trainable: bool,
        device: &Device,
    ) -> Result<Self> {
        let tensors = load_safetensors(path, device)?;
        Ok(Self::with_source(tensors, seed, trainable, device))
    }

    pub fn var_builder(&self, dtype: DType) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self.clone()), dtype, self.device.clone())
    }

    /// The load report, computed after the model was constructed.
    pub fn report(&self) -> LoadReport {
        let inner = self.inner.lock().expect("param store lock");
        let mut unexpected: Vec<String> = self
            .source
            .keys()
            .filter(|k| !inner.used.contains(*k))
            .cloned()
            .collect();
        unexpected.sort();
        LoadReport {
            missing: inner.missing.clone(),
            unexpected,
            mismatched: inner.mismatched.clone(),
        }
    }

    /// Fails with the full report unless every tensor matched.
    pub fn ensure_clean(&self, path: &Path) -> Result<()> {
        let report = self.report();
        if report.is_clean() {
            Ok(())
        } else {
            Err(Error::Checkpoint {
                path: path.to_path_buf(),
                report: report.to_string(),
            })
        }
    }

    /// All parameters in construction order.
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let inner = self.inner.lock().expect("param store lock");
        inner
            .order
            .iter()
            .map(|n| (n.clone(), inner.vars[n].clone()))
            .collect()
    }

    /// Trainable variables in construction order (empty for a frozen store).
    pub fn vars(&self) -> Vec<(String, Var)> {
        self.named_tensors()
            .into_iter()
            .filter(|(_, t)| t.is_variable())
            // `from_tensor` on a variable shares it (no copy).
            .filter_map(|(n, t)| Var::from_tensor(&t).ok().map(|v| (n, v)))
            .collect()
    }

    /// Saves every parameter to a safetensors file (atomically) under its checkpoint name.
    pub fn save(&self, path: &Path) -> Result<()> {
        save_safetensors(path, &self.named_tensors())
    }

    fn init(
        &self,
        inner: &mut Inner,
        name: &str,
        shape: &Shape,
        h: Init,
        dtype: DType,
    ) -> Result<Tensor> {
        let n = shape.elem_count();
        // A config with absurd sizes must be an error here, not an allocation failure (which
        // aborts the process): fresh tensors are counted against the memory the machine has.
        let bytes = (n as u64).saturating_mul(4);
        inner.fresh_bytes = inner.fresh_bytes.saturating_add(bytes);
        if inner.fresh_budget.is_none() {
            inner.fresh_budget = crate::util::available_memory();
        }
        if let Some(budget) = inner.fresh_budget.filter(|&b| inner.fresh_bytes > b) {
            return Err(Error::Config(format!(
                "the model's parameters (up to {name} {shape:?}, {}; check the config's sizes) \
                 would need {} of memory; {} was available",
                crate::util::human_bytes(bytes),
                crate::util::human_bytes(inner.fresh_bytes),
                crate::util::human_bytes(budget)
            )));
        }
        let data: Vec<f32> = match h {
            Init::Const(c) => vec![c as f32; n],
            Init::Uniform { lo, up } => {
                if !(lo.is_finite() && up.is_finite() && lo < up) {
                    return Err(Error::Config(format!(
                        "cannot initialise a {shape:?} tensor uniformly in [{lo}, {up}) (a zero size in the config?)"
                    )));
                }
                (0..n)
                    .map(|_| inner.rng.random_range(lo..up) as f32)
                    .collect()
            }
            Init::Randn { mean, stdev } => normal(&mut inner.rng, n, mean, stdev),
            Init::Kaiming {
                dist,
                fan,
                non_linearity,
            } => {
                let fan = fan.for_shape(shape) as f64;
                let gain = non_linearity.gain();
                let std = gain / fan.sqrt();
                match dist {
                    NormalOrUniform::Normal => normal(&mut inner.rng, n, 0.0, std),
                    NormalOrUniform::Uniform => {
                        let bound = 3f64.sqrt() * std;
                        (0..n)
                            .map(|_| inner.rng.random_range(-bound..bound) as f32)
                            .collect()
                    }
                }
            }
        };
        Ok(Tensor::from_vec(data, shape.clone(), &self.device)?.to_dtype(dtype)?)
    }
}

fn normal(rng: &mut ChaCha8Rng, n: usize, mean: f64, std: f64) -> Vec<f32> {
    // Box-Muller: two uniforms give two independent normals.
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let u1: f64 = rng.random_range(f64::EPSILON..1.0);
        let u2: f64 = rng.random_range(0.0..1.0);
        let r = (-2.0 * u1.ln()).sqrt();
        let t = 2.0 * std::f64::consts::PI * u2;
        out.push((mean + std * r * t.cos()) as f32);
        if out.len() < n {
            out.push((mean + std * r * t.sin()) as f32);
        }
    }
    out
}

impl candle_nn::var_builder::SimpleBackend for ParamStore {
    fn get(
        &self,
        s: Shape,
        name: &str,
        h: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let mut inner = self.inner.lock().expect("param store lock");
        if let Some(t) = inner.vars.get(name) {
            // Shared parameters (asked twice) resolve to the same tensor.
            if t.shape() != &s {
                candle_core::bail!(
                    "parameter {name} requested with shapes {:?} and {s:?}",
                    t.shape()
                )
            }
            return Ok(t.clone());
        }
        let loaded = match self.source.get(name) {
            Some(t) if t.shape() == &s => {
                inner.used.insert(name.to_string());
                Some(t.to_dtype(dtype)?.to_device(dev)?)
            }
            Some(t) => {
                inner.used.insert(name.to_string());
                inner
                    .mismatched
                    .push((name.to_string(), s.dims().to_vec(), t.dims().to_vec()));
                None
            }
            None => {
                if !self.source.is_empty() {
                    inner.missing.push(name.to_string());
                }
                None
            }
        };
        let t = match loaded {
            Some(t) => t,
            None => self
                .init(&mut inner, name, &s, h, dtype)
                .map_err(|e| candle_core::Error::Msg(e.to_string()))?,
        };
        let t = if self.trainable && !self.frozen.iter().any(|p| name.starts_with(p.as_str())) {
            Var::from_tensor(&t)?.as_tensor().clone()
        } else {
            t.detach()
        };
        inner.vars.insert(name.to_string(), t.clone());
        inner.order.push(name.to_string());
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        match self.source.get(name) {
            Some(t) => t.to_dtype(dtype)?.to_device(dev),
            None => candle_core::bail!("cannot find tensor {name}"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.source.contains_key(name)
    }
}

/// Reads every tensor of a safetensors file, with a clear error for a missing or corrupt file.
pub fn load_safetensors(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    candle_core::safetensors::load_buffer(&bytes, device).map_err(|e| Error::Checkpoint {
        path: path.to_path_buf(),
        report: format!("not a valid safetensors file: {e}"),
    })
}

/// Writes named tensors to a safetensors file atomically.
pub fn save_safetensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    save_safetensors_with(path, tensors, HashMap::new())
}

/// [`save_safetensors`] with extra string metadata in the file's header (next to `format: pt`,
/// the metadata PyTorch/`transformers` writes and checks for).
pub fn save_safetensors_with(
    path: &Path,
    tensors: &[(String, Tensor)],
    mut metadata: HashMap<String, String>,
) -> Result<()> {
    let map: HashMap<String, Tensor> = tensors
        .iter()
        .map(|(n, t)| Ok((n.clone(), t.detach().contiguous()?)))
        .collect::<Result<_>>()?;
    metadata.insert("format".to_string(), "pt".to_string());
    let mut entries: Vec<(&String, &Tensor)> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    crate::util::atomic_write_with(path, |tmp| {
        safetensors::tensor::serialize_to_file(entries, Some(metadata), tmp)
            .map_err(|e| Error::Msg(format!("writing {}: {e}", tmp.display())))
    })
}

/// The largest `data.pkl` read (a state dict's pickle is kilobytes; the tensors are apart).
const MAX_PICKLE: u64 = 64 << 20;

/// What candle's pickle reader would allocate, bounded before it runs: every string and
/// integer the pickle declares fits in the pickle, and every tensor fits in its data entry
/// (and, stored uncompressed as torch writes them, in the file).
fn check_pytorch_bin(path: &Path) -> Result<()> {
    use std::io::Read as _;
    let bad = |m: String| Error::Msg(m);
    let file_len = std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .len();
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| bad(format!("invalid zip archive: {e}")))?;
    // name -> (uncompressed size, stored)
    let mut entries = HashMap::new();
    for i in 0..zip.len() {
        let f = zip
            .by_index(i)
            .map_err(|e| bad(format!("zip entry {i}: {e}")))?;
        let name = f
            .name()
            .map_err(|e| bad(format!("zip entry {i}: {e}")))?
            .into_owned();
        let stored = f.compression() == zip::CompressionMethod::Stored;
        entries.insert(name, (f.size(), stored));
    }
    for (name, &(size, _)) in entries.iter().filter(|(n, _)| n.ends_with("data.pkl")) {
        if size > MAX_PICKLE {
            return Err(bad(format!(
                "{name} claims {size} bytes: not a state dict's pickle"
            )));
        }
        let mut pkl = vec![];
        zip.by_name(name)
            .map_err(|e| bad(format!("{name}: {e}")))?
            .take(MAX_PICKLE)
            .read_to_end(&mut pkl)
            .map_err(|e| bad(format!("{name}: {e}")))?;
        check_pickle(&pkl).map_err(|m| bad(format!("{name}: {m}")))?;
    }
    let infos = candle_core::pickle::read_pth_tensor_info(path, false, None)?;
    for t in infos {
        let bytes = (t.layout.shape().elem_count() as u64 + t.layout.start_offset() as u64)
            .saturating_mul(t.dtype.size_in_bytes() as u64);
        let entry = t.path.as_str();
        let Some(&(size, stored)) = entries.get(entry) else {
            return Err(bad(format!(
                "tensor {}: its data {entry} is not in the archive",
                t.name
            )));
        };
        if bytes > size || (stored && bytes > file_len) {
            return Err(bad(format!(
                "tensor {} of shape {:?} needs {bytes} bytes; its data holds {size}",
                t.name,
                t.layout.shape().dims()
            )));
        }
        crate::util::check_alloc(bytes, &format!("tensor {}", t.name))?;
    }
    Ok(())
}

/// Walks a pickle's opcodes (the ones candle's reader knows) checking that each argument
/// fits in what is left; an opcode it does not know ends the walk (candle reports it).
fn check_pickle(p: &[u8]) -> std::result::Result<(), String> {
    let mut i = 0usize;
    let need = |i: usize, n: u64, what: &str| -> std::result::Result<usize, String> {
        let left = (p.len() - i) as u64;
        if n > left {
            Err(format!(
                "{what} at byte {i} claims {n} bytes, {left} are left"
            ))
        } else {
            Ok(i + n as usize)
        }
    };
    let le = |b: &[u8]| b.iter().rev().fold(0u64, |a, &x| (a << 8) | x as u64);
    while i < p.len() {
        let op = p[i];
        i += 1;
        i = match op {
            0x80 | b'K' | b'h' | b'q' => need(i, 1, "an opcode argument")?,
            b'M' => need(i, 2, "an opcode argument")?,
            b'J' | b'j' | b'r' => need(i, 4, "an opcode argument")?,
            b'G' => need(i, 8, "a float")?,
            b'X' => {
                let j = need(i, 4, "a string length")?;
                need(j, le(&p[i..j]), "a string")?
            }
            0x8a => {
                let j = need(i, 1, "a long's length")?;
                let n = p[i] as u64;
                if n > 8 {
                    return Err(format!("a {n}-byte integer at byte {i}: more than 64 bits"));
                }
                need(j, n, "a long")?
            }
            b'c' => {
                // module and class names, each up to a newline
                let mut j = i;
                for _ in 0..2 {
                    let nl = p[j..]
                        .iter()
                        .position(|&b| b == b'\n')
                        .ok_or("an unterminated global name")?;
                    j += nl + 1;
                }
                j
            }
            b'.' => return Ok(()),
            b')' | b'R' | b'(' | b't' | b'Q' | 0x85 | 0x86 | 0x87 | 0x88 | 0x89 | b'N' | b's'
            | b'u' | b'}' | b'd' | b'b' | 0x81 | b']' | b'a' | b'e' => i,
            _ => return Ok(()),
        };
    }
    Ok(())
}

/// The string metadata of a safetensors file's header.
pub fn safetensors_metadata(path: &Path) -> Result<HashMap<String, String>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let (_, meta) =
        safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| Error::Checkpoint {
            path: path.to_path_buf(),
            report: format!("not a valid safetensors file: {e}"),
        })?;
    Ok(meta.metadata().clone().unwrap_or_default())
}

/// Reads a checkpoint's weights from `dir`: `model.safetensors`, else PyTorch's
/// `pytorch_model.bin` (zip/pickle). Returns the tensors and the file read. A file without a
/// single tensor, or with NaN or infinite values, is an error naming the file (and the tensor):
/// a model built from it would silently be random or print NaN scores.
pub fn load_weights(
    dir: &Path,
    device: &Device,
) -> Result<(HashMap<String, Tensor>, std::path::PathBuf)> {
    let st = dir.join("model.safetensors");
    let bin = dir.join("pytorch_model.bin");
    let (tensors, path) = if st.exists() {
        (load_safetensors(&st, device)?, st)
    } else if bin.exists() {
        // candle's pickle reader panics on some malformed files, and allocates what a
        // malformed file claims (gigabytes from a 2 KB file): both found by fuzzing.
        let tensors = crate::util::contain_panics("pytorch_model.bin", || {
            check_pytorch_bin(&bin)?;
            candle_core::pickle::read_all(&bin).map_err(Error::from)
        })
        .map_err(|e| Error::Checkpoint {
            path: bin.clone(),
            report: format!("not a readable PyTorch checkpoint: {e}"),
        })?;
        let map = tensors
            .into_iter()
            .map(|(k, t)| Ok((k, t.to_device(device)?)))
            .collect::<Result<HashMap<_, _>>>()?;
        (map, bin)
    } else {
        return Err(Error::data(
            dir,
            "no model.safetensors or pytorch_model.bin",
        ));
    };
    check_weights(&tensors, &path)?;
    Ok((tensors, path))
}

/// Refuses an empty checkpoint and non-finite float values (the first offending tensor, by
/// name order, is named).
pub fn check_weights(tensors: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
    let bad = |report: String| Error::Checkpoint {
        path: path.to_path_buf(),
        report,
    };
    if tensors.is_empty() {
        return Err(bad("holds no tensors".into()));
    }
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    for name in names {
        let t = &tensors[name];
        if !t.dtype().is_float() || t.elem_count() == 0 {
            continue;
        }
        let finite = t
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?
            .iter()
            .all(|v| v.is_finite());
        if !finite {
            return Err(bad(format!("tensor {name} has NaN or infinite values")));
        }
    }
    Ok(())
}
