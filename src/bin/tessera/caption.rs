//! `tessera caption` and `tessera vqa`: BLIP and BLIP-2 captions and answers.
use anyhow::Result;
use clap::Parser;
use serde_json::json;
use std::ffi::OsString;
use tessera::nn::generate::{GenerationConfig, Sampling};
use tessera::pipelines::{Captioning, ImageSource};

/// Decoding settings shared by both commands (transformers' `generate` keywords).
#[derive(clap::Args)]
pub struct Decoding {
    /// Beam search with this many beams (1: greedy).
    #[arg(long, default_value_t = 1)]
    beams: usize,
    /// Most new tokens (transformers' default bounds prompt + new tokens by 20).
    #[arg(long)]
    max_new_tokens: Option<usize>,
    #[arg(long, default_value_t = 0)]
    min_new_tokens: usize,
    #[arg(long, default_value_t = 1.0)]
    repetition_penalty: f32,
    #[arg(long, default_value_t = 1.0)]
    length_penalty: f32,
    /// Sample instead of taking the most likely token (seeded).
    #[arg(long)]
    sample: bool,
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

impl Decoding {
    fn config(&self, base: GenerationConfig) -> GenerationConfig {
        GenerationConfig {
            num_beams: self.beams,
            max_new_tokens: self.max_new_tokens,
            min_new_tokens: self.min_new_tokens,
            repetition_penalty: self.repetition_penalty,
            length_penalty: self.length_penalty,
            sampling: self.sample.then_some(Sampling {
                temperature: self.temperature,
                top_k: self.top_k,
                top_p: self.top_p,
                seed: self.seed,
            }),
            ..base
        }
    }
}

#[derive(Parser)]
pub struct Args {
    #[command(flatten)]
    model: super::common::Model,
    /// Image files or http(s) URLs.
    #[arg(required = true)]
    images: Vec<OsString>,
    /// Text every caption starts with (conditional captioning), e.g. "a picture of".
    #[arg(long)]
    prompt: Option<String>,
    #[command(flatten)]
    decoding: Decoding,
    /// Each word with its map over the image patches (greedy or sampling): BLIP's
    /// cross-attention, BLIP-2's queries weighted by the word's attention to them.
    #[arg(long)]
    attention: bool,
    /// Writes each word's map over the image as a strip of panels (implies --attention); with
    /// several images, `NAME-<i>.png`.
    #[arg(long, value_name = "PNG")]
    explain: Option<std::path::PathBuf>,
    /// Also each word's gradient-weighted cross-attention (BLIP; --explain then draws it).
    #[arg(long)]
    relevance: bool,
    #[arg(long)]
    json: bool,
}

fn load(m: &super::common::Model) -> Result<Captioning> {
    let opts = m.dtype.options()?;
    Ok(Captioning::from_pretrained(&m.model, &opts)?.with_processor_backend(m.processor.backend))
}

pub fn run(a: Args) -> Result<()> {
    let pipe = load(&a.model)?;
    let cfg = a.decoding.config(pipe.defaults());
    let sources: Vec<ImageSource> = a.images.iter().map(ImageSource::parse).collect();
    let attention = a.attention || a.explain.is_some();
    let mut out = pipe.caption(&sources, a.prompt.as_deref(), &cfg, attention)?;
    if a.relevance {
        pipe.add_relevance(&sources, &mut out)?;
    }
    if let Some(path) = &a.explain {
        for (i, (s, caps)) in sources.iter().zip(&out).enumerate() {
            let target = if sources.len() == 1 {
                path.clone()
            } else {
                let stem = path.file_stem().unwrap_or_default().to_string_lossy();
                path.with_file_name(format!("{stem}-{i}.png"))
            };
            let img = s.load()?.to_rgb8();
            let mut shown = caps[0].clone();
            if a.relevance {
                for w in &mut shown.words {
                    w.attention = w.relevance.clone();
                }
            }
            let strip = tessera::explain::render_word_maps(&img, &shown, pipe.grid(), 8)?;
            tessera::explain::render::save_png(&strip, &target)?;
            eprintln!("wrote {}", target.display());
        }
    }
    if a.json {
        let v: Vec<_> = sources
            .iter()
            .zip(&out)
            .map(|(s, c)| json!({"image": s.name(), "captions": c}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for (s, caps) in sources.iter().zip(&out) {
            for c in caps {
                println!("{}\t{}", s.name(), c.text);
            }
        }
    }
    Ok(())
}

#[derive(Parser)]
pub struct VqaArgs {
    #[command(flatten)]
    model: super::common::Model,
    /// An image file or http(s) URL.
    image: OsString,
    question: String,
    #[command(flatten)]
    decoding: Decoding,
    #[arg(long)]
    json: bool,
}

pub fn run_vqa(a: VqaArgs) -> Result<()> {
    let pipe = load(&a.model)?;
    let cfg = a.decoding.config(pipe.defaults());
    let source = ImageSource::parse(&a.image);
    let out = pipe.answer(std::slice::from_ref(&source), &a.question, &cfg)?;
    let answers = out.into_iter().next().unwrap_or_default();
    if a.json {
        let v = json!({"image": source.name(), "question": a.question, "answers": answers});
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for c in &answers {
            println!("{}", c.text);
        }
    }
    Ok(())
}
