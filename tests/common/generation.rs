//! Reading transformers' `generate` references: id rows and keyword arguments.
use serde_json::Value;
use tessera::nn::generate::{EarlyStopping, GenerationConfig, Prompts};

pub fn rows(v: &Value) -> Vec<Vec<u32>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect()
        })
        .collect()
}

/// transformers' keyword arguments as a [`GenerationConfig`] on top of a model's defaults.
pub fn settings(base: GenerationConfig, s: &Value) -> GenerationConfig {
    let mut c = base;
    for (k, v) in s.as_object().unwrap() {
        match k.as_str() {
            "max_new_tokens" => c.max_new_tokens = Some(v.as_u64().unwrap() as usize),
            "min_new_tokens" => c.min_new_tokens = v.as_u64().unwrap() as usize,
            "num_beams" => c.num_beams = v.as_u64().unwrap() as usize,
            "num_return_sequences" => c.num_return_sequences = v.as_u64().unwrap() as usize,
            "repetition_penalty" => c.repetition_penalty = v.as_f64().unwrap() as f32,
            "length_penalty" => c.length_penalty = v.as_f64().unwrap() as f32,
            "early_stopping" => {
                c.early_stopping = match v {
                    Value::Bool(true) => EarlyStopping::Yes,
                    Value::Bool(false) => EarlyStopping::Heuristic,
                    _ => EarlyStopping::Never,
                }
            }
            other => panic!("setting {other} not mapped"),
        }
    }
    c
}

/// The prompts and their mask as a reference file stores them.
pub fn prompts(ids: &Value, mask: &Value) -> Prompts {
    Prompts {
        ids: rows(ids),
        mask: rows(mask)
            .into_iter()
            .map(|r| r.into_iter().map(|x| x as u8).collect())
            .collect(),
    }
}
