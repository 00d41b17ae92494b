//! `tessera ask`: a question about images to Gemini or an OpenAI-compatible server.
use anyhow::{bail, Result};
use clap::Parser;
use std::ffi::OsString;
use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::time::Duration;
use tessera::hosted::{Finish, Provider, Question, Settings, Upload};
use tessera::pipelines::ImageSource;

#[derive(Parser)]
pub struct Args {
    /// Image files or http(s) URLs, then the question.
    #[arg(required = true, value_name = "IMAGE... QUESTION")]
    inputs: Vec<OsString>,
    /// gemini or openai (any OpenAI-compatible server). Default: gemini when GOOGLE_API_KEY or
    /// GEMINI_API_KEY is set, else openai when OPENAI_BASE_URL or OPENAI_API_KEY is set.
    #[arg(long)]
    provider: Option<String>,
    /// Default: gemini-2.5-flash (Gemini), gpt-4o-mini (OpenAI).
    #[arg(long)]
    model: Option<String>,
    /// The API's base URL (default: GOOGLE_GEMINI_BASE_URL / OPENAI_BASE_URL, else the
    /// provider's own), e.g. http://localhost:8080/v1 for llama-server.
    #[arg(long)]
    base_url: Option<String>,
    /// A system instruction.
    #[arg(long)]
    system: Option<String>,
    #[arg(long, allow_negative_numbers = true)]
    temperature: Option<f64>,
    #[arg(long)]
    max_tokens: Option<u32>,
    /// A JSON Schema the answer must follow (structured output); the answer is checked to be JSON.
    #[arg(long, value_name = "FILE")]
    json_schema: Option<PathBuf>,
    /// Gemini: send images through the Files API: auto (when the request would pass 20 MB),
    /// always, never.
    #[arg(long, default_value = "auto")]
    upload: String,
    /// Keep Files API uploads (they expire after 48 h) instead of deleting them.
    #[arg(long)]
    keep_upload: bool,
    /// Print the answer as it arrives (the default when stdout is a terminal).
    #[arg(long, conflicts_with = "no_stream")]
    stream: bool,
    #[arg(long)]
    no_stream: bool,
    /// Print text, finish reason, token usage and model version as JSON.
    #[arg(long, conflicts_with = "stream")]
    json: bool,
    /// Print the model's thoughts (when it sends them) to stderr.
    #[arg(long)]
    show_thinking: bool,
    /// Retries after 408/429/5xx answers and broken connections.
    #[arg(long, default_value_t = 4)]
    retries: u32,
    /// The longest one request may take, in seconds.
    #[arg(long, default_value_t = 600.0)]
    timeout: f64,
}

pub fn run(a: Args) -> Result<()> {
    let Some((question, images)) = a.inputs.split_last() else {
        bail!("nothing to ask");
    };
    let Some(text) = question.to_str() else {
        bail!("the question (the last argument) is not valid UTF-8");
    };
    if images.is_empty() && std::path::Path::new(question).is_file() {
        bail!("no question: give it after the images (tessera ask IMAGE... \"QUESTION\")");
    }
    if a.retries > 10 {
        bail!("--retries must be at most 10, got {}", a.retries);
    }
    if !(a.timeout.is_finite() && a.timeout > 0.0 && a.timeout <= 86400.0) {
        bail!("--timeout must be in (0, 86400] seconds, got {}", a.timeout);
    }
    let provider = a
        .provider
        .as_deref()
        .map(str::parse::<Provider>)
        .transpose()?;
    let mut s = Settings::from_env(provider, a.base_url.as_deref())?;
    if let Some(m) = a.model {
        s.model = m;
    }
    s.upload = a.upload.parse::<Upload>()?;
    s.keep_uploads = a.keep_upload;
    s.retry.retries = a.retries;
    s.timeouts.total = Duration::from_secs_f64(a.timeout);
    let json_schema = match &a.json_schema {
        Some(p) => Some(tessera::util::read_json::<serde_json::Value>(p)?),
        None => None,
    };
    let q = Question {
        images: images.iter().map(ImageSource::parse).collect(),
        text: text.to_string(),
        system: a.system,
        temperature: a.temperature,
        max_tokens: a.max_tokens,
        json_schema,
    };
    let stream = a.stream || (!a.no_stream && !a.json && std::io::stdout().is_terminal());
    let answer = if stream {
        let mut out = std::io::stdout().lock();
        let r = s.ask_streaming(&q, &mut |t| {
            let _ = out.write_all(t.as_bytes());
            let _ = out.flush();
        });
        let _ = writeln!(out);
        r?
    } else {
        s.ask(&q)?
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else if !stream {
        println!("{}", answer.text);
    }
    if a.show_thinking && !answer.thoughts.is_empty() {
        eprintln!("thoughts: {}", answer.thoughts.trim());
    }
    for f in &answer.uploads {
        if s.keep_uploads {
            eprintln!("kept upload {} ({}; it expires after 48 h)", f.name, f.uri);
        } else if !f.deleted {
            eprintln!("warning: could not delete the upload {}", f.name);
        }
    }
    let reason = answer.finish_reason.as_deref().unwrap_or("none");
    match answer.finish {
        Finish::Stop => {}
        Finish::Length => eprintln!("warning: the answer was cut at the token limit ({reason})"),
        Finish::Unfinished => {
            eprintln!("warning: the server sent no finish reason: the answer may be incomplete")
        }
        Finish::Filtered => bail!("the answer was stopped by a content filter ({reason})"),
        Finish::Other => bail!("the model stopped early ({reason})"),
    }
    if q.json_schema.is_some() {
        answer.json()?;
    }
    Ok(())
}
