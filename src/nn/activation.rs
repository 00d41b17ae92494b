//! The activation functions every model names, parsed from one table of Hugging Face names, with
//! their scalar forms and derivatives (inlined into the vectorised kernels) and the bias +
//! activation pass over rows that the linear kernels end with.
use super::math::{erf, exp, multiversion};
use rayon::prelude::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// Exact GELU with erf (PyTorch `gelu`, HF `gelu`).
    Gelu,
    /// tanh approximation (HF `gelu_new`, `gelu_pytorch_tanh`, `gelu_fast`, `gelu_accurate`).
    GeluTanh,
    /// x * sigmoid(1.702 x), OpenAI CLIP.
    QuickGelu,
    Relu,
}

/// `hidden_act` names (transformers' `ACT2FN` keys, plus tessera's own older `gelu_tanh`) and
/// what they compute. The first name of each activation is the one written to `config.json`.
const NAMES: &[(&str, Activation)] = &[
    ("gelu", Activation::Gelu),
    ("gelu_pytorch_tanh", Activation::GeluTanh),
    ("gelu_new", Activation::GeluTanh),
    ("gelu_fast", Activation::GeluTanh),
    ("gelu_accurate", Activation::GeluTanh),
    ("gelu_tanh", Activation::GeluTanh),
    ("quick_gelu", Activation::QuickGelu),
    ("relu", Activation::Relu),
];

impl Activation {
    /// The activation a `config.json` names; unknown names list the supported ones.
    pub fn from_hf(name: &str) -> crate::Result<Activation> {
        NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, a)| *a)
            .ok_or_else(|| {
                crate::Error::Config(format!(
                    "unsupported hidden_act {name:?} (supported: {})",
                    NAMES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                ))
            })
    }

    /// The name transformers reads back as the same function.
    pub fn hf_name(self) -> &'static str {
        NAMES
            .iter()
            .find(|(_, a)| *a == self)
            .map_or("gelu", |(n, _)| n)
    }

    /// act(v).
    #[inline(always)]
    pub fn apply(self, v: f32) -> f32 {
        match self {
            Activation::Gelu => 0.5 * v * (1.0 + erf(v * std::f32::consts::FRAC_1_SQRT_2)),
            Activation::GeluTanh => {
                // 0.5 v (1 + tanh(u)) = v * sigmoid(2u), u = √(2/π) (v + 0.044715 v³)
                let u = 0.797_884_6 * (v + 0.044_715 * v * v * v);
                v / (1.0 + exp(-2.0 * u))
            }
            Activation::QuickGelu => v / (1.0 + exp(-1.702 * v)),
            Activation::Relu => v.max(0.0),
        }
    }

    /// d act(x) / dx.
    #[inline(always)]
    pub fn grad(self, x: f32) -> f32 {
        match self {
            Activation::Gelu => {
                // Φ(x) + x φ(x)
                let cdf = 0.5 * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
                let pdf = 0.398_942_3 * exp(-0.5 * x * x);
                cdf + x * pdf
            }
            Activation::GeluTanh => {
                // y = x s(2u), s = sigmoid: y' = s + x s (1 - s) 2u'
                let u = 0.797_884_6 * (x + 0.044_715 * x * x * x);
                let du = 0.797_884_6 * (1.0 + 3.0 * 0.044_715 * x * x);
                let s = 1.0 / (1.0 + exp(-2.0 * u));
                s + x * s * (1.0 - s) * 2.0 * du
            }
            Activation::QuickGelu => {
                let s = 1.0 / (1.0 + exp(-1.702 * x));
                s + x * 1.702 * s * (1.0 - s)
            }
            Activation::Relu => {
                if x > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
        }
    }
}

impl serde::Serialize for Activation {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.hf_name())
    }
}

impl<'de> serde::Deserialize<'de> for Activation {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Activation::from_hf(&name).map_err(serde::de::Error::custom)
    }
}

/// `row += bias` then the activation, for every row of `out` ([rows, n]).
#[inline(always)]
fn bias_act_body(out: &mut [f32], bias: Option<&[f32]>, act: Option<Activation>, n: usize) {
    // Plain `for` loops: a closure passed to a library `for_each` can stay outlined, compiled
    // without the caller's AVX-512 (measured: the GELU epilogue ran scalar).
    for row in out.chunks_exact_mut(n) {
        match (bias, act) {
            (Some(b), Some(a)) => {
                for (v, b) in row.iter_mut().zip(b) {
                    *v = a.apply(*v + b);
                }
            }
            (Some(b), None) => {
                for (v, b) in row.iter_mut().zip(b) {
                    *v += b;
                }
            }
            (None, Some(a)) => {
                for v in row.iter_mut() {
                    *v = a.apply(*v);
                }
            }
            (None, None) => {}
        }
    }
}

multiversion! {
    /// Bias and activation over the rows of `out` ([rows, n]) on the calling thread.
    pub(crate) fn bias_act_rows(out: &mut [f32], bias: Option<&[f32]>, act: Option<Activation>, n: usize) {
        bias_act_body(out, bias, act, n)
    }
}

/// Bias and activation over [rows, n] on all threads.
pub(crate) fn bias_act(out: &mut [f32], bias: Option<&[f32]>, act: Option<Activation>, n: usize) {
    if bias.is_none() && act.is_none() || n == 0 {
        return;
    }
    let rows = out.len() / n;
    let per = (32768 / n).clamp(1, rows.max(1));
    out.par_chunks_mut(per * n)
        .for_each(|c| bias_act_rows(c, bias, act, n));
}

multiversion! {
    /// `dx = g · act'(x)`, elementwise.
    pub(crate) fn act_bwd(dx: &mut [f32], x: &[f32], g: &[f32], act: Activation) {
        for ((d, &x), &g) in dx.iter_mut().zip(x).zip(g) {
            *d = g * act.grad(x);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_hf_name_round_trips() {
        for (name, act) in NAMES {
            assert_eq!(Activation::from_hf(name).unwrap(), *act);
            assert_eq!(Activation::from_hf(act.hf_name()).unwrap(), *act);
            let json = serde_json::to_string(act).unwrap();
            assert_eq!(serde_json::from_str::<Activation>(&json).unwrap(), *act);
        }
        let e = Activation::from_hf("swishy").unwrap_err().to_string();
        assert!(e.contains("swishy") && e.contains("quick_gelu"), "{e}");
        assert!(serde_json::from_str::<Activation>("\"swishy\"").is_err());
    }
}
