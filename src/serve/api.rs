//! The wire format: request bodies, inputs (texts, images as data URIs or URLs, OpenAI content
//! parts), and errors as JSON in OpenAI's shape (`{"error": {"message", "type", "code"}}`).
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};

/// An HTTP error with its JSON body.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Seconds, for 429 and 503.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    fn kind(&self) -> &'static str {
        match self.status.as_u16() {
            401 => "authentication_error",
            404 => "not_found_error",
            429 => "overloaded_error",
            503 => "unavailable_error",
            504 => "timeout_error",
            400..=499 => "invalid_request_error",
            _ => "server_error",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {
            "message": self.message,
            "type": self.kind(),
            "code": self.status.as_u16(),
        }});
        let mut r = (self.status, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                r.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
            }
        }
        r
    }
}

/// A JSON body whose every failure (too large, not JSON, wrong fields) is an [`ApiError`]:
/// 413 past the payload limit, 400 for bad JSON, 422 for valid JSON of the wrong shape.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                let status = e.status();
                let msg = if status == StatusCode::PAYLOAD_TOO_LARGE {
                    "the request body is larger than the server's payload limit (--payload-limit)"
                        .to_string()
                } else {
                    format!("cannot read the request body: {e}")
                };
                ApiError::new(status, msg)
            })?;
        // One pass over the bytes; the path names the field a value did not fit.
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let v: std::result::Result<T, _> = serde_path_to_error::deserialize(&mut de);
        if v.is_ok() {
            de.end()
                .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
        }
        v.map(ApiJson).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if inner.classify() != serde_json::error::Category::Data {
                return ApiError::bad_request(format!("the body is not valid JSON: {inner}"));
            }
            if path == "." || path.is_empty() {
                ApiError::unprocessable(format!("invalid request: {inner}"))
            } else {
                ApiError::unprocessable(format!("invalid request at {path}: {inner}"))
            }
        })
    }
}

/// One input: a text, or an image given as a `data:` URI or an http(s) URL.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    Text(String),
    Image(ImageRef),
}

#[derive(Clone, Debug, PartialEq)]
pub enum ImageRef {
    Bytes(Vec<u8>),
    Url(String),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Modality {
    #[default]
    Text,
    Image,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EncodingFormat {
    #[default]
    Float,
    Base64,
}

/// `POST /v1/embeddings`: OpenAI's body plus infinity's `modality`.
#[derive(Debug, Deserialize)]
pub struct EmbeddingsRequest {
    pub model: Option<String>,
    pub input: Value,
    #[serde(default)]
    pub encoding_format: EncodingFormat,
    #[serde(default)]
    pub modality: Modality,
    /// OpenAI's truncation; CLIP embeddings have one width, so only that width is accepted.
    pub dimensions: Option<usize>,
    #[allow(dead_code)]
    pub user: Option<String>,
}

/// `POST /v1/zero-shot`.
#[derive(Debug, Deserialize)]
pub struct ZeroShotRequest {
    pub model: Option<String>,
    /// Images: data URIs, URLs or `image_url` content parts (one or a list).
    #[serde(alias = "input", alias = "image")]
    pub images: Value,
    #[serde(alias = "candidate_labels")]
    pub labels: Vec<String>,
    /// `{}` is replaced by each label (transformers' default template).
    #[serde(default = "default_template", alias = "hypothesis_template")]
    pub template: String,
    pub top_k: Option<usize>,
}

fn default_template() -> String {
    "This is a photo of {}.".into()
}

/// `POST /v1/classify`.
#[derive(Debug, Deserialize)]
pub struct ClassifyRequest {
    pub model: Option<String>,
    #[serde(alias = "input", alias = "image")]
    pub images: Value,
    /// transformers' pipeline default is 5.
    #[serde(default = "default_top_k")]
    pub top_k: Option<usize>,
}

fn default_top_k() -> Option<usize> {
    Some(5)
}

/// `POST /v1/detect`.
#[derive(Debug, Deserialize)]
pub struct DetectRequest {
    pub model: Option<String>,
    #[serde(alias = "input", alias = "image")]
    pub images: Value,
    /// `pipeline("object-detection")`'s default.
    #[serde(default = "default_threshold")]
    pub threshold: f32,
}

fn default_threshold() -> f32 {
    0.5
}

/// The inputs of `value`: one item or a list; each a string (a text under `Modality::Text`,
/// an image reference under `Modality::Image`) or an OpenAI content part (`{"type": "text",
/// "text"}` or `{"type": "image_url", "image_url": {"url"}}`), which says its own modality.
pub fn parse_inputs(
    value: &Value,
    modality: Modality,
    field: &str,
) -> Result<Vec<Input>, ApiError> {
    let items: Vec<&Value> = match value {
        Value::Array(a) => a.iter().collect(),
        v => vec![v],
    };
    if items.is_empty() {
        return Err(ApiError::unprocessable(format!("{field} is empty")));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            parse_one(v, modality)
                .map_err(|m| ApiError::unprocessable(format!("{field}[{i}]: {m}")))
        })
        .collect()
}

fn parse_one(v: &Value, modality: Modality) -> Result<Input, String> {
    match v {
        Value::String(s) => match modality {
            Modality::Text => Ok(Input::Text(s.clone())),
            Modality::Image => image_ref(s).map(Input::Image),
        },
        Value::Object(o) => match o.get("type").and_then(Value::as_str) {
            Some("text") => match o.get("text") {
                Some(Value::String(t)) => Ok(Input::Text(t.clone())),
                _ => Err("a text part needs a \"text\" string".into()),
            },
            Some("image_url") => {
                let url = match o.get("image_url") {
                    Some(Value::String(u)) => u,
                    Some(Value::Object(u)) => match u.get("url") {
                        Some(Value::String(u)) => u,
                        _ => return Err("image_url needs a \"url\" string".into()),
                    },
                    _ => return Err("an image_url part needs \"image_url\": {\"url\": …}".into()),
                };
                image_ref(url).map(Input::Image)
            }
            other => Err(format!(
                "content parts are {{\"type\": \"text\"}} or {{\"type\": \"image_url\"}}, got type {other:?}"
            )),
        },
        Value::Array(_) | Value::Number(_) => Err(
            "token arrays are not accepted: send texts (CLIP tokenizes them itself)".into(),
        ),
        _ => Err(format!("expected a string or a content part, got {v}")),
    }
}

/// A `data:[<mime>];base64,<data>` URI's bytes, or an http(s) URL.
pub fn image_ref(s: &str) -> Result<ImageRef, String> {
    if let Some(rest) = s.strip_prefix("data:") {
        let (meta, data) = rest
            .split_once(',')
            .ok_or("a data URI needs a comma before its data")?;
        if !meta.split(';').any(|p| p == "base64") {
            return Err("data URIs must be base64 (data:image/png;base64,…)".into());
        }
        let clean: String = data.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let b64 = base64::engine::general_purpose::STANDARD;
        let url_safe = base64::engine::general_purpose::URL_SAFE;
        let bytes = b64
            .decode(&clean)
            .or_else(|_| url_safe.decode(&clean))
            .map_err(|e| format!("the data URI is not valid base64: {e}"))?;
        if bytes.is_empty() {
            return Err("the data URI holds no bytes".into());
        }
        return Ok(ImageRef::Bytes(bytes));
    }
    if s.starts_with("http://") || s.starts_with("https://") {
        return Ok(ImageRef::Url(s.to_string()));
    }
    let shown: String = s.chars().take(40).collect();
    Err(format!(
        "an image is a data:image/…;base64, URI or an http(s) URL, got {shown:?}"
    ))
}

/// Little-endian f32 bytes in base64, as OpenAI's `encoding_format: "base64"`.
pub fn base64_f32(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_take_every_accepted_shape_and_name_what_is_wrong() {
        let png = base64::engine::general_purpose::STANDARD.encode([1u8, 2, 3]);
        let v = json!([
            "a cat",
            {"type": "text", "text": "a dog"},
            {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{png}")}},
            {"type": "image_url", "image_url": "https://example.com/x.jpg"},
        ]);
        let got = parse_inputs(&v, Modality::Text, "input").unwrap();
        assert_eq!(
            got,
            vec![
                Input::Text("a cat".into()),
                Input::Text("a dog".into()),
                Input::Image(ImageRef::Bytes(vec![1, 2, 3])),
                Input::Image(ImageRef::Url("https://example.com/x.jpg".into())),
            ]
        );
        let one = parse_inputs(&json!("http://h/i.png"), Modality::Image, "input").unwrap();
        assert_eq!(
            one,
            vec![Input::Image(ImageRef::Url("http://h/i.png".into()))]
        );
        for (bad, want) in [
            (json!([]), "input is empty"),
            (json!([[1, 2]]), "input[0]: token arrays"),
            (json!(["/etc/passwd"]), "input[0]: an image is a data:image"),
            (json!(["data:image/png,abc"]), "must be base64"),
            (json!(["data:image/png;base64,@@@"]), "not valid base64"),
            (json!([{"type": "audio"}]), "content parts are"),
        ] {
            let e = parse_inputs(&bad, Modality::Image, "input").unwrap_err();
            assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
            assert!(e.message.contains(want), "{} lacks {want}", e.message);
        }
    }

    #[test]
    fn base64_embeddings_are_little_endian_f32() {
        let s = base64_f32(&[1.0, -2.5]);
        let b = base64::engine::general_purpose::STANDARD.decode(s).unwrap();
        assert_eq!(b, [1.0f32.to_le_bytes(), (-2.5f32).to_le_bytes()].concat());
    }
}
