//! Asking a hosted or local multimodal model about images, as the chapter ends by doing with
//! Gemini: one [`Question`] (images as paths, bytes or URLs, text, an optional system
//! instruction, temperature, token limit and JSON schema), two providers:
//!
//! - [`Provider::Gemini`]: `v1beta/models/{model}:generateContent` (and
//!   `:streamGenerateContent?alt=sse`), images inline as base64 while the request stays under
//!   [`Settings::inline_limit`], otherwise (or with [`Upload::Always`]) through the Files API's
//!   resumable upload, waiting for `ACTIVE` and deleting the file afterwards.
//! - [`Provider::OpenAi`]: `{base}/chat/completions` with `image_url` data-URI parts: OpenAI
//!   itself and the servers people run locally (llama.cpp's `llama-server --mmproj`, Ollama,
//!   vLLM), with SSE streaming.
//!
//! Keys and endpoints come from the variables the official SDKs read ([`Settings::from_env`]).
//! Answers are parsed leniently (the text is the first candidate's text parts, thoughts
//! skipped, as the SDK's `response.text`); blocked prompts are errors and non-STOP finishes are
//! reported in [`Answer::finish`]. Failed requests are retried by [`RetryPolicy`].
mod errors;
mod gemini;
pub mod http;
mod openai;
mod sse;

pub use http::{RetryPolicy, Timeouts};

use crate::pipelines::ImageSource;
use crate::{Error, Result};
use std::time::Duration;

/// Gemini's documented (and every proxy's) safe inline size for a whole request.
pub const GEMINI_INLINE_LIMIT: usize = 20_000_000;
/// The Files API's limit per file.
const GEMINI_MAX_FILE: u64 = 2 << 30;
/// The upload chunk google-genai uses.
const UPLOAD_CHUNK: usize = 8 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    Gemini,
    OpenAi,
}

impl std::str::FromStr for Provider {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "gemini" | "google" => Ok(Provider::Gemini),
            "openai" | "openai-compatible" => Ok(Provider::OpenAi),
            _ => Err(Error::Config(format!(
                "unknown provider {s:?}: expected gemini or openai"
            ))),
        }
    }
}

/// When Gemini images go through the Files API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upload {
    /// Only what does not fit inline (largest images first).
    Auto,
    Always,
    Never,
}

impl std::str::FromStr for Upload {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Upload::Auto),
            "always" => Ok(Upload::Always),
            "never" => Ok(Upload::Never),
            _ => Err(Error::Config(format!(
                "unknown upload mode {s:?}: expected auto, always or never"
            ))),
        }
    }
}

/// What to ask.
#[derive(Clone, Debug, Default)]
pub struct Question {
    /// Sent before the text, in order (the chapter's `contents=[photo, "question"]`).
    pub images: Vec<ImageSource>,
    pub text: String,
    pub system: Option<String>,
    pub temperature: Option<f64>,
    pub max_tokens: Option<u32>,
    /// Structured output: Gemini `responseJsonSchema`, OpenAI `response_format.json_schema`.
    pub json_schema: Option<serde_json::Value>,
}

impl Question {
    pub fn new(text: impl Into<String>) -> Self {
        Question {
            text: text.into(),
            ..Question::default()
        }
    }
    pub fn image(mut self, image: impl Into<ImageSource>) -> Self {
        self.images.push(image.into());
        self
    }

    fn check(&self) -> Result<()> {
        if self.text.trim().is_empty() && self.images.is_empty() {
            return Err(Error::Config("nothing to ask: no text and no image".into()));
        }
        if let Some(t) = self.temperature {
            if !(0.0..=2.0).contains(&t) {
                return Err(Error::Config(format!(
                    "temperature must be in [0, 2], got {t}"
                )));
            }
        }
        if self.max_tokens == Some(0) {
            return Err(Error::Config("max tokens must be at least 1".into()));
        }
        if let Some(s) = &self.json_schema {
            if !s.is_object() {
                return Err(Error::Config(
                    "the JSON schema must be a JSON object".into(),
                ));
            }
        }
        Ok(())
    }
}

/// How the answer ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Finish {
    /// The model finished (Gemini `STOP`, OpenAI `stop`).
    Stop,
    /// Cut at the token limit (`MAX_TOKENS`, `length`).
    Length,
    /// Stopped by a safety or content filter (`SAFETY`, `RECITATION`, `content_filter`, …).
    Filtered,
    /// Another reason (tool calls, malformed function call, …): see `finish_reason`.
    Other,
    /// No finish reason came (a stream that ended early).
    Unfinished,
}

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Usage {
    pub prompt_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub thoughts_tokens: Option<u64>,
    pub total_tokens: Option<u64>,
}

/// A file the Files API held for this question.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct UploadedFile {
    /// `files/abc123`.
    pub name: String,
    pub uri: String,
    pub mime_type: String,
    /// Whether it was deleted after the answer (false when kept, or the delete failed).
    pub deleted: bool,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Answer {
    /// The concatenated text parts of the first candidate, thoughts skipped.
    pub text: String,
    /// Thought parts (`thought: true`, `reasoning_content`), when the model sent them.
    pub thoughts: String,
    pub finish: Finish,
    /// The finish reason as the server spelled it.
    pub finish_reason: Option<String>,
    pub usage: Usage,
    /// The model that answered (`modelVersion`, `model`).
    pub model_version: Option<String>,
    pub provider: &'static str,
    pub uploads: Vec<UploadedFile>,
}

impl Answer {
    /// The text as JSON (for structured output), a clear error when it is not JSON.
    pub fn json(&self) -> Result<serde_json::Value> {
        let t = self.text.trim();
        // Some servers fence JSON in Markdown even when asked for JSON.
        let t = t
            .strip_prefix("```json")
            .or_else(|| t.strip_prefix("```"))
            .and_then(|x| x.strip_suffix("```"))
            .unwrap_or(t);
        serde_json::from_str(t.trim()).map_err(|e| {
            let cut = if self.finish == Finish::Length {
                " (the answer was cut at the token limit)"
            } else {
                ""
            };
            Error::Msg(format!("the answer is not the JSON asked for{cut}: {e}"))
        })
    }
}

/// Who to ask and how.
#[derive(Clone, Debug)]
pub struct Settings {
    pub provider: Provider,
    /// `https://generativelanguage.googleapis.com` (the API version is added), or an
    /// OpenAI-compatible base such as `https://api.openai.com/v1`, `http://localhost:8080/v1`.
    pub base_url: String,
    pub api_key: Option<String>,
    pub model: String,
    pub upload: Upload,
    /// Keep Files API uploads (they expire after 48 h) instead of deleting them.
    pub keep_uploads: bool,
    /// Gemini: the largest request sent with inline images.
    pub inline_limit: usize,
    pub upload_chunk: usize,
    /// The longest to wait for an uploaded file to become `ACTIVE`.
    pub active_wait: Duration,
    pub retry: RetryPolicy,
    pub timeouts: Timeouts,
}

pub const GEMINI_BASE: &str = "https://generativelanguage.googleapis.com";
pub const OPENAI_BASE: &str = "https://api.openai.com/v1";
pub const GEMINI_MODEL: &str = "gemini-2.5-flash";
pub const OPENAI_MODEL: &str = "gpt-4o-mini";

impl Settings {
    /// Settings from the environment, as the official SDKs read it: `GOOGLE_API_KEY` then
    /// `GEMINI_API_KEY`, `GOOGLE_GEMINI_BASE_URL`; `OPENAI_API_KEY`, `OPENAI_BASE_URL`. Without
    /// a provider: Gemini when a Gemini key is set, else OpenAI-compatible when either OpenAI
    /// variable is set.
    pub fn from_env(provider: Option<Provider>, base_url: Option<&str>) -> Result<Settings> {
        Settings::from_vars(provider, base_url, |k| std::env::var(k).ok())
    }

    /// [`Settings::from_env`] over any variable lookup.
    pub fn from_vars(
        provider: Option<Provider>,
        base_url: Option<&str>,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Settings> {
        let var = |k: &str| {
            var(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let gemini_key = var("GOOGLE_API_KEY").or_else(|| var("GEMINI_API_KEY"));
        let provider = match provider {
            Some(p) => p,
            None if gemini_key.is_some() => Provider::Gemini,
            None if var("OPENAI_BASE_URL").is_some() || var("OPENAI_API_KEY").is_some() => {
                Provider::OpenAi
            }
            None => {
                return Err(Error::Config(
                    "no model provider configured: set GOOGLE_API_KEY or GEMINI_API_KEY for \
                     Gemini, or OPENAI_API_KEY / OPENAI_BASE_URL (a local server needs only the \
                     URL) for an OpenAI-compatible endpoint"
                        .into(),
                ))
            }
        };
        let (base, api_key, model) = match provider {
            Provider::Gemini => {
                let Some(key) = gemini_key else {
                    return Err(Error::Config(
                        "no Gemini API key: set GOOGLE_API_KEY or GEMINI_API_KEY".into(),
                    ));
                };
                let base = base_url
                    .map(str::to_string)
                    .or_else(|| var("GOOGLE_GEMINI_BASE_URL"))
                    .unwrap_or_else(|| GEMINI_BASE.into());
                (base, Some(key), GEMINI_MODEL)
            }
            Provider::OpenAi => {
                let base = base_url
                    .map(str::to_string)
                    .or_else(|| var("OPENAI_BASE_URL"))
                    .unwrap_or_else(|| OPENAI_BASE.into());
                (base, var("OPENAI_API_KEY"), OPENAI_MODEL)
            }
        };
        let s = Settings {
            provider,
            base_url: base,
            api_key,
            model: model.into(),
            upload: Upload::Auto,
            keep_uploads: false,
            inline_limit: GEMINI_INLINE_LIMIT,
            upload_chunk: UPLOAD_CHUNK,
            active_wait: Duration::from_secs(120),
            retry: RetryPolicy::default(),
            timeouts: Timeouts::default(),
        };
        s.check()?;
        Ok(s)
    }

    fn check(&self) -> Result<()> {
        let b = self.base_url.trim();
        if !(b.starts_with("http://") || b.starts_with("https://")) || b.len() < "http://x".len() {
            return Err(Error::Config(format!(
                "base URL {b:?} is not an http(s) URL"
            )));
        }
        if let Some(k) = &self.api_key {
            if !k.bytes().all(|c| c.is_ascii_graphic()) {
                return Err(Error::Config(
                    "the API key holds characters that cannot go in an HTTP header".into(),
                ));
            }
        }
        if self.provider == Provider::OpenAi && self.api_key.is_none() && is_openai(b) {
            return Err(Error::Config(
                "no OpenAI API key: set OPENAI_API_KEY (local servers need none: point \
                 OPENAI_BASE_URL or --base-url at them)"
                    .into(),
            ));
        }
        if self.model.trim().is_empty() {
            return Err(Error::Config("the model name is empty".into()));
        }
        if self.upload_chunk == 0 {
            return Err(Error::Config(
                "the upload chunk size must be positive".into(),
            ));
        }
        Ok(())
    }

    /// Asks and waits for the whole answer.
    pub fn ask(&self, q: &Question) -> Result<Answer> {
        self.run(q, None)
    }

    /// Asks and hands each piece of text to `on_text` as it streams in. A stream that fails
    /// after text was handed out is not retried (the text cannot be taken back).
    pub fn ask_streaming(&self, q: &Question, on_text: &mut dyn FnMut(&str)) -> Result<Answer> {
        self.run(q, Some(on_text))
    }

    fn run(&self, q: &Question, on_text: Option<&mut dyn FnMut(&str)>) -> Result<Answer> {
        self.check()?;
        q.check()?;
        match self.provider {
            Provider::Gemini => gemini::ask(self, q, on_text),
            Provider::OpenAi => openai::ask(self, q, on_text),
        }
    }

    fn base(&self) -> &str {
        self.base_url.trim().trim_end_matches('/')
    }
}

fn is_openai(base: &str) -> bool {
    let host = base
        .split_once("://")
        .map(|(_, r)| r)
        .unwrap_or(base)
        .split(['/', ':'])
        .next()
        .unwrap_or("");
    host.eq_ignore_ascii_case("api.openai.com")
}

/// An image's bytes and type, ready to send.
struct Media {
    name: String,
    bytes: Vec<u8>,
    mime: &'static str,
}

/// The image type from its first bytes (the file name can lie).
pub fn sniff_mime(b: &[u8]) -> Option<&'static str> {
    if b.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Some("image/jpeg");
    }
    if b.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Some("image/png");
    }
    if b.starts_with(b"GIF87a") || b.starts_with(b"GIF89a") {
        return Some("image/gif");
    }
    if b.len() >= 12 && &b[..4] == b"RIFF" && &b[8..12] == b"WEBP" {
        return Some("image/webp");
    }
    if b.starts_with(b"BM") && b.len() >= 26 {
        return Some("image/bmp");
    }
    if b.len() >= 12 && &b[4..8] == b"ftyp" {
        return match &b[8..12] {
            b"heic" | b"heix" | b"hevc" | b"hevx" | b"heim" | b"heis" => Some("image/heic"),
            b"mif1" | b"msf1" | b"heif" => Some("image/heif"),
            b"avif" | b"avis" => Some("image/avif"),
            _ => None,
        };
    }
    None
}

/// Reads an image's bytes (downloading URLs) and finds its type among `accepted`.
fn load_media(src: &ImageSource, accepted: &[&str], who: &str) -> Result<Media> {
    if let ImageSource::Path(p) = src {
        let len = std::fs::metadata(p).map_err(|e| Error::io(p, e))?.len();
        if len > GEMINI_MAX_FILE {
            return Err(Error::Msg(format!(
                "{}: {len} bytes, larger than the 2 GB a request or upload takes",
                p.display()
            )));
        }
    }
    let bytes = src.bytes()?;
    let name = src.name();
    let Some(mime) = sniff_mime(&bytes) else {
        return Err(Error::Msg(format!(
            "{name}: not an image {who} takes ({}); its first bytes match none",
            accepted.join(", ")
        )));
    };
    if !accepted.contains(&mime) {
        return Err(Error::Msg(format!(
            "{name}: {mime} is not an image type {who} takes ({})",
            accepted.join(", ")
        )));
    }
    Ok(Media { name, bytes, mime })
}

/// Standard base64 with padding (what both APIs document).
fn base64(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn base64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn keys_and_providers_as_the_sdks_read_them() {
        let s = Settings::from_vars(
            None,
            None,
            vars(&[("GEMINI_API_KEY", "g2"), ("GOOGLE_API_KEY", " g1 ")]),
        )
        .unwrap();
        assert_eq!(
            (s.provider, s.api_key.as_deref()),
            (Provider::Gemini, Some("g1"))
        );
        assert_eq!(s.base_url, GEMINI_BASE);
        assert_eq!(s.model, GEMINI_MODEL);
        let s = Settings::from_vars(None, None, vars(&[("GEMINI_API_KEY", "g2")])).unwrap();
        assert_eq!(s.api_key.as_deref(), Some("g2"));
        // A local server needs no key.
        let s = Settings::from_vars(
            None,
            None,
            vars(&[("OPENAI_BASE_URL", "http://localhost:8080/v1")]),
        )
        .unwrap();
        assert_eq!((s.provider, s.api_key.as_deref()), (Provider::OpenAi, None));
        // OpenAI itself does.
        let e = Settings::from_vars(Some(Provider::OpenAi), None, vars(&[])).unwrap_err();
        assert!(e.to_string().contains("OPENAI_API_KEY"), "{e}");
        let e = Settings::from_vars(
            Some(Provider::Gemini),
            None,
            vars(&[("OPENAI_API_KEY", "x")]),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("GOOGLE_API_KEY or GEMINI_API_KEY"),
            "{e}"
        );
        let e = Settings::from_vars(None, None, vars(&[])).unwrap_err();
        assert!(
            e.to_string().contains("GEMINI_API_KEY") && e.to_string().contains("OPENAI_BASE_URL"),
            "{e}"
        );
        let e = Settings::from_vars(
            None,
            Some("localhost:8080"),
            vars(&[("GOOGLE_API_KEY", "k")]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("not an http(s) URL"), "{e}");
        let e = Settings::from_vars(None, None, vars(&[("GOOGLE_API_KEY", "a b")])).unwrap_err();
        assert!(e.to_string().contains("HTTP header"), "{e}");
    }

    #[test]
    fn image_types_from_their_bytes() {
        assert_eq!(sniff_mime(&[0xFF, 0xD8, 0xFF, 0xE0]), Some("image/jpeg"));
        assert_eq!(sniff_mime(b"\x89PNG\r\n\x1a\n...."), Some("image/png"));
        assert_eq!(sniff_mime(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(
            sniff_mime(b"\0\0\0\x18ftypheic\0\0\0\0"),
            Some("image/heic")
        );
        assert_eq!(sniff_mime(b"GIF89a"), Some("image/gif"));
        assert_eq!(sniff_mime(b"hello"), None);
        assert_eq!(sniff_mime(b""), None);
    }

    #[test]
    fn json_answers() {
        let mut a = Answer {
            text: "```json\n[\"cat\", 2]\n```".into(),
            thoughts: String::new(),
            finish: Finish::Stop,
            finish_reason: Some("STOP".into()),
            usage: Usage::default(),
            model_version: None,
            provider: "gemini",
            uploads: vec![],
        };
        assert_eq!(a.json().unwrap(), serde_json::json!(["cat", 2]));
        a.text = "{\"animal\": \"ca".into();
        a.finish = Finish::Length;
        assert!(a.json().unwrap_err().to_string().contains("token limit"));
    }
}
