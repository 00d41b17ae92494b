//! What the subcommands share: progress bars on stderr, the inference-dtype option, model
//! loading options, and one-line error text.
use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Mutex;
use tessera::models::LoadOptions;
use tessera::nn::Precision;
use tessera::progress::{Observer, Progress};

/// indicatif bars on stderr: one bar per phase, notes printed above it.
#[derive(Default)]
pub struct Bars {
    bar: Mutex<Option<ProgressBar>>,
}

impl Bars {
    fn begin(&self, what: &str, total: Option<u64>, template: &str) {
        let pb = match total {
            Some(n) => ProgressBar::new(n),
            None => ProgressBar::new_spinner(),
        };
        pb.set_style(
            ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        pb.set_prefix(what.to_string());
        if let Ok(mut b) = self.bar.lock() {
            *b = Some(pb);
        }
    }
}

impl Progress for Bars {
    fn start(&self, what: &str, total: Option<u64>) {
        self.begin(
            what,
            total,
            "{prefix} {bar:30} {pos}/{len} {msg} [{elapsed}<{eta}]",
        );
    }

    fn start_bytes(&self, what: &str, total: u64) {
        self.begin(
            what,
            Some(total),
            "{prefix} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} [{elapsed}<{eta}]",
        );
    }

    fn advance(&self, n: u64, status: &str) {
        if let Ok(b) = self.bar.lock() {
            if let Some(pb) = b.as_ref() {
                pb.inc(n);
                if !status.is_empty() {
                    pb.set_message(status.to_string());
                }
            }
        }
    }

    fn finish(&self) {
        if let Ok(mut b) = self.bar.lock() {
            if let Some(pb) = b.take() {
                pb.finish_and_clear();
            }
        }
    }

    fn note(&self, message: &str) {
        match self.bar.lock().ok().as_ref().and_then(|b| b.as_ref()) {
            Some(pb) => pb.println(message),
            None => eprintln!("{message}"),
        }
    }
}

/// The shared observer every subcommand reports to.
pub fn bars() -> Observer {
    Observer::new(Bars::default())
}

/// `--dtype f32|bf16|int8|auto` on `device`, with a warning when bf16 or int8 would run on
/// the CPU's slow portable kernel.
pub fn dtype(name: &str, device: &candle_core::Device) -> Result<Precision> {
    let dtype = tessera::device::inference_dtype(name, device)?;
    if device.is_cpu() {
        if dtype == Precision::BF16 && !tessera::kernels::bf16::has_avx512_bf16() {
            eprintln!(
                "warning: this CPU has no AVX512_BF16; bf16 runs on the (slow) portable kernel"
            );
        }
        if dtype == Precision::Int8 && !tessera::kernels::int8::has_avx512_vnni() {
            eprintln!(
                "warning: this CPU has no AVX512_VNNI; int8 runs on the (slow) portable kernel"
            );
        }
    }
    Ok(dtype)
}

/// Loading for inference on `device`: downloads drawn as bars.
pub fn inference_load(device: &candle_core::Device) -> LoadOptions {
    LoadOptions::default().device(device).progress(bars())
}

/// `--device`: where a command's model runs (and trains).
#[derive(clap::Args, Clone)]
pub struct Device {
    /// auto (the first GPU in a CUDA build when one is present, else the CPU), cpu, cuda or
    /// cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
}

impl Device {
    /// Opens the device (auto falls back to the CPU; an explicit cuda fails with the reason).
    pub fn open(&self) -> Result<candle_core::Device> {
        Ok(tessera::device::open(&self.device)?)
    }
}

/// `--device` and `--dtype`: where and in which precision an inference command runs.
#[derive(clap::Args)]
pub struct Dtype {
    /// Inference dtype: f32 (exact), bf16 (bf16 linears, fp32 accumulation; AVX512_BF16 on a
    /// CPU), int8 (dynamically quantised linears, CPU only; AVX512_VNNI) or auto (bf16 on a GPU
    /// and where the CPU has native bf16 dot products, else f32).
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    #[command(flatten)]
    pub device: Device,
}

impl Dtype {
    /// Loading for inference on this device in this dtype.
    pub fn options(&self) -> Result<LoadOptions> {
        let device = self.device.open()?;
        Ok(inference_load(&device).dtype(dtype(&self.dtype, &device)?))
    }
}

/// `--processor-backend`.
#[derive(clap::Args)]
pub struct Processor {
    /// Image processor backend: torchvision (transformers' default) or pil; default: what the
    /// checkpoint's processor config chooses.
    #[arg(long = "processor-backend")]
    pub backend: Option<tessera::image::Backend>,
}

/// `--model`, `--dtype` and `--processor-backend`: the checkpoint an inference command runs.
#[derive(clap::Args)]
pub struct Model {
    /// The checkpoint: a local directory or a hub id (`owner/name[@revision]`).
    #[arg(long)]
    pub model: OsString,
    #[command(flatten)]
    pub dtype: Dtype,
    #[command(flatten)]
    pub processor: Processor,
}

/// `--bpe`: OpenAI's BPE merges, for CLIP checkpoints without vocab.json/merges.txt.
#[derive(clap::Args)]
pub struct Bpe {
    /// OpenAI's BPE merges, for CLIP checkpoints without vocab.json/merges.txt.
    #[arg(long, default_value_os_t = default_bpe())]
    pub bpe: PathBuf,
}

/// The `--bpe` default: OpenAI's merges where `tools/fetch_clip_bpe.sh` puts them.
pub fn default_bpe() -> PathBuf {
    PathBuf::from(tessera::pipelines::embed::DEFAULT_BPE)
}

/// An error and its causes on one line, each cause once (an I/O error's text is often
/// repeated by the layer that wraps it).
pub fn one_line(e: &anyhow::Error) -> String {
    let mut out: Vec<String> = vec![];
    for cause in e.chain() {
        let s = cause.to_string();
        if out.iter().any(|o| o.contains(&s)) {
            continue;
        }
        out.push(s);
    }
    out.join(": ").replace('\n', " ")
}
