//! Config checks every model's `validate` shares: each names the field, so a bad
//! `config.json` is one clear error before anything is allocated.
use crate::{Error, Result};

/// Dimensions past this are a config error, not a request for terabytes (the parameter store
/// also refuses what the machine's memory cannot hold).
const MAX_DIM: usize = 1 << 20;

/// Every `(field, value)` at least 1 and at most 2²⁰.
pub(crate) fn sizes(fields: &[(&str, usize)]) -> Result<()> {
    for &(field, v) in fields {
        if v == 0 || v > MAX_DIM {
            return Err(Error::Config(format!(
                "{field} {v} must be between 1 and {MAX_DIM}"
            )));
        }
    }
    Ok(())
}

/// Dropout probabilities in [0, 1).
pub(crate) fn probabilities(fields: &[(&str, f64)]) -> Result<()> {
    for &(field, p) in fields {
        if !(0.0..1.0).contains(&p) {
            return Err(Error::Config(format!("{field} {p} must be in [0, 1)")));
        }
    }
    Ok(())
}

/// Finite and at least 0 (LayerNorm's eps, an init's standard deviation).
pub(crate) fn non_negative(fields: &[(&str, f64)]) -> Result<()> {
    for &(field, v) in fields {
        if !(v.is_finite() && v >= 0.0) {
            return Err(Error::Config(format!(
                "{field} {v} must be a finite number >= 0"
            )));
        }
    }
    Ok(())
}
