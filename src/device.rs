//! Where a model runs: `--device auto|cpu|cuda|cuda:N` and the dtype `auto` means there.
//!
//! The CPU runs tessera's own kernels; a GPU runs candle's CUDA backend (cuBLAS and candle's
//! kernels) through the same modules, whose composite path every op has (see
//! [`crate::nn::cpu::kernels_apply`]). CUDA exists only in a build with `--features cuda`.
use crate::{Error, Result};
use candle_core::Device;

/// A parsed `--device`: what the user asked for, before any GPU is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceSpec {
    /// The first GPU when this build has CUDA and one is present, else the CPU.
    Auto,
    Cpu,
    /// A CUDA GPU by ordinal (`cuda` is `cuda:0`).
    Cuda(usize),
}

impl std::str::FromStr for DeviceSpec {
    type Err = Error;

    fn from_str(s: &str) -> Result<DeviceSpec> {
        let t = s.trim().to_ascii_lowercase();
        match t.as_str() {
            "auto" => Ok(DeviceSpec::Auto),
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" | "gpu" => Ok(DeviceSpec::Cuda(0)),
            _ => {
                let n = t
                    .strip_prefix("cuda:")
                    .or_else(|| t.strip_prefix("gpu:"))
                    .and_then(|n| n.parse::<usize>().ok());
                n.map(DeviceSpec::Cuda).ok_or_else(|| {
                    Error::Config(format!(
                        "unknown device {s:?}: use auto, cpu, cuda or cuda:N"
                    ))
                })
            }
        }
    }
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceSpec::Auto => write!(f, "auto"),
            DeviceSpec::Cpu => write!(f, "cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// True when this build has CUDA (`--features cuda`).
pub fn cuda_built() -> bool {
    cfg!(feature = "cuda")
}

/// True when this build has CUDA and a GPU answers (the driver loads and device 0 opens).
pub fn cuda_available() -> bool {
    cuda_built() && candle_core::utils::cuda_is_available() && Device::new_cuda(0).is_ok()
}

impl DeviceSpec {
    /// Opens the device: `Auto` falls back to the CPU when no GPU is usable; an explicit
    /// `cuda` fails with the reason (no CUDA in this build, no driver, no such ordinal).
    pub fn open(self) -> Result<Device> {
        match self {
            DeviceSpec::Cpu => Ok(Device::Cpu),
            DeviceSpec::Auto if cuda_available() => Device::new_cuda(0).map_err(Error::from),
            DeviceSpec::Auto => Ok(Device::Cpu),
            DeviceSpec::Cuda(n) => {
                if !cuda_built() {
                    return Err(Error::Config(format!(
                        "--device cuda:{n}: this tessera was built without CUDA \
                         (rebuild with `cargo build --release --features cuda`; \
                         tools/setup_cuda.sh installs the toolchain)"
                    )));
                }
                Device::new_cuda(n).map_err(|e| {
                    Error::Config(format!("--device cuda:{n}: no usable GPU there ({e})"))
                })
            }
        }
    }
}

/// Opens the device named by `spec` (`auto`, `cpu`, `cuda`, `cuda:N`).
pub fn open(spec: &str) -> Result<Device> {
    spec.parse::<DeviceSpec>()?.open()
}

/// The inference dtype `name` means on `device`: `f32`, `bf16`, or `auto` = bf16 on a GPU
/// (tensor cores; linears autocast, norms and softmax in f32) and on a CPU with AVX512_BF16
/// dot products, else f32.
pub fn inference_dtype(name: &str, device: &Device) -> Result<crate::nn::Precision> {
    if name.eq_ignore_ascii_case("auto") && device.is_cuda() {
        return Ok(crate::nn::Precision::BF16);
    }
    crate::nn::inference_dtype(name)
}

/// A `--devices` list: `0,1,2,3` or `cuda:0,cuda:1` (GPUs), `cpu,cpu` (CPU processes).
pub fn parse_devices(list: &str) -> Result<Vec<DeviceSpec>> {
    let out = list
        .split(',')
        .map(|d| {
            let d = d.trim();
            match d.parse::<usize>() {
                Ok(n) => Ok(DeviceSpec::Cuda(n)),
                Err(_) => match d.parse::<DeviceSpec>()? {
                    DeviceSpec::Auto => Err(Error::Config(
                        "--devices lists devices: ordinals (0,1), cuda:N or cpu".into(),
                    )),
                    s => Ok(s),
                },
            }
        })
        .collect::<Result<Vec<_>>>()?;
    let gpus: Vec<_> = out
        .iter()
        .filter(|d| matches!(d, DeviceSpec::Cuda(_)))
        .collect();
    if gpus.len() != out.len() && !gpus.is_empty() {
        return Err(Error::Config(format!(
            "--devices {list}: all GPUs or all cpu, not a mix"
        )));
    }
    if (1..gpus.len()).any(|i| gpus[..i].contains(&gpus[i])) {
        return Err(Error::Config(format!(
            "--devices {list}: a GPU is listed twice"
        )));
    }
    Ok(out)
}

/// One line naming the device, for logs (`cpu`, `cuda:0`).
pub fn describe(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_spelling_and_rejects_the_rest() {
        for (s, want) in [
            ("auto", DeviceSpec::Auto),
            ("CPU", DeviceSpec::Cpu),
            ("cuda", DeviceSpec::Cuda(0)),
            ("cuda:3", DeviceSpec::Cuda(3)),
            (" gpu:1 ", DeviceSpec::Cuda(1)),
        ] {
            assert_eq!(s.parse::<DeviceSpec>().unwrap(), want, "{s}");
        }
        for bad in ["", "cuda:", "cuda:-1", "cuda:x", "tpu", "metal"] {
            let e = bad.parse::<DeviceSpec>().unwrap_err().to_string();
            assert!(e.contains("use auto, cpu, cuda or cuda:N"), "{bad}: {e}");
        }
        assert_eq!(DeviceSpec::Cuda(2).to_string(), "cuda:2");
    }

    #[test]
    fn device_lists_are_gpus_or_cpus() {
        use DeviceSpec::*;
        assert_eq!(
            parse_devices("0,1, 3").unwrap(),
            vec![Cuda(0), Cuda(1), Cuda(3)]
        );
        assert_eq!(
            parse_devices("cuda:2,cuda:0").unwrap(),
            vec![Cuda(2), Cuda(0)]
        );
        assert_eq!(parse_devices("cpu,cpu").unwrap(), vec![Cpu, Cpu]);
        for bad in ["", "0,0", "0,cpu", "auto", "0,x"] {
            assert!(parse_devices(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn auto_and_cpu_open_without_a_gpu() {
        assert!(open("cpu").unwrap().is_cpu());
        let d = open("auto").unwrap();
        assert_eq!(d.is_cuda(), cuda_available());
        assert_eq!(describe(&Device::Cpu), "cpu");
        assert_eq!(
            inference_dtype("f32", &d).unwrap(),
            crate::nn::Precision::F32
        );
        assert!(inference_dtype("f16", &d).is_err());
        assert_eq!(
            inference_dtype("int8", &Device::Cpu).unwrap(),
            crate::nn::Precision::Int8
        );
        // auto never picks int8 (it changes results more than bf16).
        assert_ne!(
            inference_dtype("auto", &Device::Cpu).unwrap(),
            crate::nn::Precision::Int8
        );
    }

    #[test]
    fn cuda_without_a_cuda_build_says_how_to_get_one() {
        if cuda_built() {
            return;
        }
        let e = open("cuda:1").unwrap_err().to_string();
        assert!(e.contains("built without CUDA"), "{e}");
        assert!(e.contains("--features cuda"), "{e}");
    }
}
