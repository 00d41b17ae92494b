//! The library's error type. Library code returns [`Result`]; bad user data never panics.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Candle(#[from] candle_core::Error),

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}: cannot decode image: {msg}")]
    Image { path: PathBuf, msg: String },

    #[error("{}: {}{source}", path.display(), field_prefix(field))]
    Json {
        path: PathBuf,
        /// Where in the document (`text_config.hidden_act`), when the JSON parsed but a value
        /// did not fit.
        field: Option<String>,
        #[source]
        source: serde_json::Error,
    },

    #[error("invalid config: {0}")]
    Config(String),

    #[error("checkpoint {path}: {report}")]
    Checkpoint { path: PathBuf, report: String },

    #[error("dataset {path}: {msg}")]
    Data { path: PathBuf, msg: String },

    #[error("shape mismatch: {0}")]
    Shape(String),

    /// A hosted model's server refused or failed a request (after any retries).
    #[error("{0}")]
    Api(Box<ApiError>),

    #[error("{0}")]
    Msg(String),
}

/// What a model server answered when it refused a request: the HTTP status, the server's own
/// status or error code (`RESOURCE_EXHAUSTED`, `invalid_api_key`) and its message.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// Who answered: `Gemini API`, `OpenAI-compatible server at http://…`.
    pub service: String,
    /// None when no HTTP answer came (connection refused or reset, timeout, broken stream).
    pub status: Option<u16>,
    pub code: Option<String>,
    pub message: String,
    /// How many times the request was sent.
    pub attempts: u32,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.service)?;
        if let Some(s) = self.status {
            write!(f, ": HTTP {s}")?;
        }
        if let Some(c) = &self.code {
            write!(f, " {c}")?;
        }
        write!(f, ": {}", self.message)?;
        if self.attempts > 1 {
            write!(f, " (gave up after {} attempts)", self.attempts)?;
        }
        Ok(())
    }
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
    pub fn data(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Data {
            path: path.into(),
            msg: msg.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

fn field_prefix(field: &Option<String>) -> String {
    match field {
        Some(f) if !f.is_empty() && f != "." => format!("{f}: "),
        _ => "invalid JSON: ".into(),
    }
}

impl Error {
    /// A JSON document that did not parse as `T`, naming the field where it did not fit.
    pub fn json(
        path: impl Into<PathBuf>,
        e: serde_path_to_error::Error<serde_json::Error>,
    ) -> Self {
        let field = e.path().to_string();
        Error::Json {
            path: path.into(),
            field: Some(field),
            source: e.into_inner(),
        }
    }
}
