//! scikit-learn's digits, embedded in the binary (BSD-3-Clause; see data/DIGITS_LICENSE.txt).
use super::InMemory;
use crate::{Error, Result};
use std::io::Read;

static DIGITS_CSV_GZ: &[u8] = include_bytes!("../../data/digits.csv.gz");

/// The 1797 8×8 grayscale digits (values 0..16 scaled to [0, 1]), 10 classes.
pub fn digits() -> Result<InMemory> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(DIGITS_CSV_GZ)
        .read_to_string(&mut text)
        .map_err(|e| Error::data("<embedded digits.csv.gz>", e.to_string()))?;
    let mut pixels = Vec::with_capacity(1797 * 64);
    let mut labels = Vec::with_capacity(1797);
    for (ln, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let vals: Vec<f32> = line
            .split(',')
            .map(|v| v.trim().parse::<f32>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| {
                Error::data("<embedded digits.csv.gz>", format!("line {}: {e}", ln + 1))
            })?;
        if vals.len() != 65 {
            return Err(Error::data(
                "<embedded digits.csv.gz>",
                format!("line {}: {} values, expected 65", ln + 1, vals.len()),
            ));
        }
        pixels.extend(vals[..64].iter().map(|v| v / 16.0));
        labels.push(vals[64] as u32);
    }
    Ok(InMemory {
        name: "digits".into(),
        pixels,
        labels,
        dims: (1, 8, 8),
        classes: (0..10).map(|d| d.to_string()).collect(),
    })
}
