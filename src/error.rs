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

    #[error("{path}: invalid JSON: {source}")]
    Json {
        path: PathBuf,
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

    #[error("{0}")]
    Msg(String),
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
