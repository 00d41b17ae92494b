//! The gradient-free inference linear: weights packed once for tessera's GEMMs (fp32 or bf16
//! panels, [`PackedWeight`]), or read in place through the `gemm` crate, and each output written
//! once with its bias, activation and residual applied while the rows are hot (measured: bias
//! adds, erf-GELU and residual adds as separate candle ops cost more than the matmul epilogue).
//! No autograd: callers reach this only through [`super::Path::Inference`].
use super::activation::{bias_act, bias_act_rows, Activation};
use super::cpu::{matmul_into, threads, with_f32};
use super::math::add_into;
use candle_core::{DType, Device, Result, Tensor};

/// What a prepared model computes its linear layers in ([`super::Linear::prepare`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    /// Weights in this float dtype: F32 or BF16 packed for tessera's CPU kernels (bf16 with
    /// fp32 accumulation); on a GPU, a copy of the weight in the dtype (BF16, F16).
    Float(DType),
    /// Dynamic int8 quantisation, as ONNX Runtime's `quantize_dynamic`: weights int8 per
    /// output channel (symmetric) once, each input int8 per row (asymmetric) on every call,
    /// i32 sums (AVX512_VNNI; [`crate::kernels::int8`]). CPU only.
    Int8,
}

impl From<DType> for Precision {
    fn from(d: DType) -> Self {
        Precision::Float(d)
    }
}

impl Precision {
    pub const F32: Precision = Precision::Float(DType::F32);
    pub const BF16: Precision = Precision::Float(DType::BF16);
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Precision::Float(d) => write!(f, "{}", d.as_str()),
            Precision::Int8 => f.write_str("int8"),
        }
    }
}

/// The inference precision named `f32`, `bf16`, `int8` or `auto` (bf16 where the CPU has
/// AVX512_BF16 dot products, else f32; never int8, which changes results more).
pub fn inference_dtype(name: &str) -> crate::Result<Precision> {
    match name.to_ascii_lowercase().as_str() {
        "f32" | "float32" | "fp32" => Ok(Precision::F32),
        "bf16" | "bfloat16" => Ok(Precision::BF16),
        "int8" | "i8" | "qint8" => Ok(Precision::Int8),
        "auto" => Ok(if crate::kernels::bf16::has_avx512_bf16() {
            Precision::BF16
        } else {
            Precision::F32
        }),
        other => Err(crate::Error::Config(format!(
            "unknown dtype {other:?}: use f32, bf16, int8 or auto"
        ))),
    }
}

/// A linear layer's weight packed once for tessera's inference GEMMs.
#[derive(Debug)]
pub enum PackedWeight {
    /// fp32 panels for the AVX-512 FMA kernel (`kernels::f32`): no per-call weight packing.
    F32(crate::kernels::f32::PackedF32),
    /// bf16 panels for the AVX512_BF16 kernel (`kernels::bf16`), fp32 accumulation.
    Bf16(crate::kernels::bf16::PackedBf16),
    /// int8 panels, per-channel scales and column sums for the AVX512_VNNI kernel
    /// (`kernels::int8`).
    Int8(crate::kernels::int8::PackedI8),
}

impl PackedWeight {
    /// Packs `w` [N, K] for `dtype` (F32, BF16 or int8).
    pub fn new(w: &Tensor, dtype: Precision) -> Result<PackedWeight> {
        let (n, k) = w.dims2()?;
        let w = w.to_dtype(DType::F32)?;
        let err = |e: crate::Error| candle_core::Error::Msg(e.to_string());
        with_f32(&w, |w| match dtype {
            Precision::F32 => Ok(PackedWeight::F32(
                crate::kernels::f32::PackedF32::pack(w, n, k).map_err(err)?,
            )),
            Precision::BF16 => Ok(PackedWeight::Bf16(
                crate::kernels::bf16::PackedBf16::pack(w, n, k).map_err(err)?,
            )),
            Precision::Int8 => Ok(PackedWeight::Int8(
                crate::kernels::int8::PackedI8::pack(w, n, k).map_err(err)?,
            )),
            other => {
                candle_core::bail!(
                    "inference dtype {other} is not supported on the CPU (f32, bf16, int8)"
                )
            }
        })
    }

    pub fn n(&self) -> usize {
        match self {
            PackedWeight::F32(p) => p.n(),
            PackedWeight::Bf16(p) => p.n(),
            PackedWeight::Int8(p) => p.n(),
        }
    }

    pub fn k(&self) -> usize {
        match self {
            PackedWeight::F32(p) => p.k(),
            PackedWeight::Bf16(p) => p.k(),
            PackedWeight::Int8(p) => p.k(),
        }
    }

    /// `c [m, n] = a [m, k] · Wᵀ + bias`, then `epilogue` on finished blocks of rows.
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        &self,
        a: &[f32],
        m: usize,
        bias: Option<&[f32]>,
        c: &mut [f32],
        epilogue: Option<crate::kernels::bf16::Epilogue>,
    ) -> Result<()> {
        let k = self.k();
        let r = match self {
            PackedWeight::F32(p) => {
                crate::kernels::f32::gemm_f32_packed(a, m, k, p, bias, c, epilogue, threads())
            }
            PackedWeight::Bf16(p) => {
                crate::kernels::bf16::gemm_bf16(a, m, k, p, bias, c, epilogue, threads())
            }
            PackedWeight::Int8(p) => {
                crate::kernels::int8::gemm_i8(a, m, k, p, bias, c, epilogue, threads())
            }
        };
        r.map_err(|e| candle_core::Error::Msg(e.to_string()))
    }
}

/// A linear layer's weight as the inference linear reads it.
#[derive(Clone, Copy)]
pub(crate) enum Weight<'a> {
    /// [N, K] f32 in PyTorch layout, read in place by the `gemm` crate (which packs it per call).
    Unpacked(&'a Tensor),
    /// Packed once ([`PackedWeight`]).
    Packed(&'a PackedWeight),
}

impl Weight<'_> {
    /// Output features.
    fn n(&self) -> Result<usize> {
        match self {
            Weight::Unpacked(w) => Ok(w.dims2()?.0),
            Weight::Packed(p) => Ok(p.n()),
        }
    }
}

/// `residual + act(x · Wᵀ + b)` over the last dimension of `x`, written once. The blocks use
/// the residual only without an activation (the residual stream).
pub(crate) fn linear(
    x: &Tensor,
    w: Weight,
    bias: Option<&Tensor>,
    act: Option<Activation>,
    residual: Option<&Tensor>,
) -> Result<Tensor> {
    let n = w.n()?;
    let dims = x.dims().to_vec();
    let k = *dims.last().unwrap_or(&0);
    let rows = x.elem_count() / k.max(1);
    let mut out_dims = dims;
    if let Some(l) = out_dims.last_mut() {
        *l = n;
    }
    let bias_v = bias
        .map(|b| b.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>())
        .transpose()?;
    if bias_v.as_ref().is_some_and(|b| b.len() != n) {
        candle_core::bail!("bias does not match the layer's {n} outputs")
    }
    if residual.is_some_and(|r| r.elem_count() != rows * n) {
        candle_core::bail!("residual does not match the output [{rows}, {n}]")
    }
    let out = match w {
        Weight::Packed(p) => {
            if p.k() != k {
                candle_core::bail!("packed weight takes {} inputs, x has {k}", p.k())
            }
            // Bias inside the kernel; the activation and the residual add in the epilogue, on
            // each finished block of rows while it is hot in cache (the kernel overwrites its
            // output).
            let mut out = vec![0f32; rows * n];
            // The epilogue sees a sub-slice of `out`; its offset locates the matching residual rows.
            let base = out.as_ptr() as usize;
            let mut run = |res: Option<&[f32]>| -> Result<()> {
                let epi = |block: &mut [f32]| {
                    bias_act_rows(block, None, act, n);
                    if let Some(r) = res {
                        let off = (block.as_ptr() as usize - base) / std::mem::size_of::<f32>();
                        add_into(block, &r[off..off + block.len()]);
                    }
                };
                let use_epi = act.is_some() || res.is_some();
                with_f32(x, |a| {
                    p.gemm(
                        a,
                        rows,
                        bias_v.as_deref(),
                        &mut out,
                        use_epi.then_some(&epi as &(dyn Fn(&mut [f32]) + Sync)),
                    )
                })
            };
            match residual {
                Some(r) => with_f32(r, |r| run(Some(r)))?,
                None => run(None)?,
            }
            out
        }
        Weight::Unpacked(w) => {
            // A residual without an activation is C's start value (with the bias), and the
            // matmul accumulates into it: one pass over the output.
            let start = residual.filter(|_| act.is_none());
            let mut out = match start {
                Some(r) => {
                    let mut o = r.flatten_all()?.to_vec1::<f32>()?;
                    bias_act(&mut o, bias_v.as_deref(), None, n);
                    o
                }
                None => vec![0f32; rows * n],
            };
            with_f32(x, |a| {
                with_f32(w, |w| {
                    matmul_into(a, rows, k, w, n, &mut out, n, 0, start.is_some())
                })
            })?;
            if start.is_none() {
                bias_act(&mut out, bias_v.as_deref(), act, n);
                if let Some(r) = residual {
                    with_f32(r, |r| {
                        add_into(&mut out, r);
                        Ok(())
                    })?;
                }
            }
            out
        }
    };
    Tensor::from_vec(out, out_dims, &Device::Cpu)
}

/// Separate q, k, v projections (`(weight, bias)` each) of `x` [.., K] side by side in one
/// buffer [.., Dq+Dk+Dv]: each matmul writes its own column block, so no concatenation or
/// head-split copies.
pub(crate) fn qkv_separate(x: &Tensor, lins: [(&Tensor, Option<&Tensor>); 3]) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let k = *dims.last().unwrap_or(&0);
    let rows = x.elem_count() / k.max(1);
    let mut total = 0;
    for (w, _) in lins {
        total += w.dims2()?.0;
    }
    let mut out = vec![0f32; rows * total];
    let mut bias = Vec::with_capacity(total);
    with_f32(x, |a| {
        let mut col = 0;
        for (w, b) in lins {
            let n = w.dims2()?.0;
            with_f32(w, |w| {
                matmul_into(a, rows, k, w, n, &mut out, total, col, false)
            })?;
            match b {
                Some(b) => bias.extend(b.flatten_all()?.to_vec1::<f32>()?),
                None => bias.extend(std::iter::repeat_n(0f32, n)),
            }
            col += n;
        }
        Ok(())
    })?;
    if bias.len() != total {
        candle_core::bail!("q/k/v biases do not match their weights")
    }
    bias_act(&mut out, Some(&bias), None, total);
    let mut out_dims = dims;
    if let Some(l) = out_dims.last_mut() {
        *l = total;
    }
    Tensor::from_vec(out, out_dims, &Device::Cpu)
}
