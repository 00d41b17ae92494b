//! The blocking HTTP layer under both providers: ureq 2 agents with connect, per-read and total
//! timeouts, one retry policy, and lenient reading of the error bodies real servers send
//! (Google's `google.rpc.Status`, OpenAI's `{"error":{…}}`, Ollama's `{"error":"…"}`, old vLLM's
//! flat `{"message":…}`, HTML and empty bodies).
use super::errors::{parse_error_body, retry_after, snippet};
use crate::error::ApiError;
use crate::{Error, Result};
use serde_json::Value;
use std::io::Read as _;
use std::time::{Duration, Instant};

/// A JSON answer larger than this is refused (a text answer is kilobytes).
const MAX_ANSWER: u64 = 64 << 20;
/// Error bodies are read up to this much.
const MAX_ERROR_BODY: u64 = 1 << 20;

/// Connect, per-read (streams) and total (one non-streaming request) limits.
#[derive(Clone, Debug)]
pub struct Timeouts {
    pub connect: Duration,
    /// The longest a stream may stay silent (llama-server pings every 30 s).
    pub read: Duration,
    /// The longest one request may take, streamed or not (a local CPU server may spend minutes
    /// on an image's prefill; openai-python's default is the same 600 s).
    pub total: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            read: Duration::from_secs(120),
            total: Duration::from_secs(600),
        }
    }
}

/// When to send a request again: after 408/429/500/502/503/504, a connection reset or a
/// timeout, waiting what the server asks (`RetryInfo.retryDelay`, `retry-after-ms`,
/// `Retry-After`) or else `initial · 2^n` (capped at `max_backoff`) plus jitter. Never after
/// 400/401/402/403/404, never when the server asks for more than `max_wait`, never when a 429
/// says the quota is 0.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub retries: u32,
    pub initial: Duration,
    pub max_backoff: Duration,
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retries: 4,
            initial: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            max_wait: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry `n` (0-based) without a server hint: exponential with up to
    /// `min(initial, 1 s)` of jitter, so clients that failed together do not retry together.
    pub fn backoff(&self, n: u32) -> Duration {
        let base = self
            .initial
            .saturating_mul(1u32 << n.min(20))
            .min(self.max_backoff);
        let jitter = self
            .initial
            .min(Duration::from_secs(1))
            .mul_f64(rand::random::<f64>());
        base + jitter
    }
}

/// A request body.
pub(crate) enum Body<'a> {
    Empty,
    Json(&'a Value),
    Bytes(&'a [u8]),
}

pub(crate) struct Request<'a> {
    pub method: &'static str,
    pub url: String,
    /// The URL as error messages show it (upload URLs carry their authorisation: not shown).
    pub shown: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Body<'a>,
    /// Streamed answers have no total timeout on the agent (the reader enforces it).
    pub stream: bool,
}

impl<'a> Request<'a> {
    pub fn new(method: &'static str, url: String) -> Self {
        Request {
            method,
            shown: url.clone(),
            url,
            headers: vec![],
            body: Body::Empty,
            stream: false,
        }
    }
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
    pub fn json(mut self, v: &'a Value) -> Self {
        self.body = Body::Json(v);
        self.header("Content-Type", "application/json")
    }
    pub fn bytes(mut self, b: &'a [u8]) -> Self {
        self.body = Body::Bytes(b);
        self
    }
    pub fn streamed(mut self) -> Self {
        self.stream = true;
        self
    }
    pub fn shown_as(mut self, s: impl Into<String>) -> Self {
        self.shown = s.into();
        self
    }
}

/// Whether a failed attempt may be sent again, and after how long the server asked.
#[derive(Debug)]
pub(crate) enum Retry {
    No,
    /// With the server's hint, if it gave one.
    After(Option<Duration>),
}

/// One failed attempt.
#[derive(Debug)]
pub(crate) struct Failure {
    pub error: ApiError,
    pub retry: Retry,
}

impl Failure {
    pub fn fatal(service: &str, message: impl Into<String>) -> Self {
        Failure {
            error: ApiError {
                service: service.into(),
                status: None,
                code: None,
                message: message.into(),
                attempts: 1,
            },
            retry: Retry::No,
        }
    }
    pub fn retryable(service: &str, message: impl Into<String>) -> Self {
        Failure {
            retry: Retry::After(None),
            ..Failure::fatal(service, message)
        }
    }
}

impl From<Failure> for Error {
    fn from(f: Failure) -> Self {
        Error::Api(Box::new(f.error))
    }
}

pub(crate) struct Http {
    pub service: String,
    agent: ureq::Agent,
    stream_agent: ureq::Agent,
    pub retry: RetryPolicy,
}

impl Http {
    pub fn new(service: impl Into<String>, retry: RetryPolicy, timeouts: Timeouts) -> Self {
        let ua = concat!("tessera/", env!("CARGO_PKG_VERSION"));
        let agent = ureq::AgentBuilder::new()
            .user_agent(ua)
            .timeout_connect(timeouts.connect)
            .timeout(timeouts.total)
            .build();
        let stream_agent = ureq::AgentBuilder::new()
            .user_agent(ua)
            .timeout_connect(timeouts.connect)
            .timeout_read(timeouts.read)
            .build();
        Http {
            service: service.into(),
            agent,
            stream_agent,
            retry,
        }
    }

    /// Sends `req` once: a 2xx answer, or the failure classified for [`Http::retrying`].
    pub fn send_once(&self, req: &Request) -> std::result::Result<ureq::Response, Failure> {
        let agent = if req.stream {
            &self.stream_agent
        } else {
            &self.agent
        };
        let mut r = agent.request(req.method, &req.url);
        for (k, v) in &req.headers {
            r = r.set(k, v);
        }
        let sent = match req.body {
            Body::Empty if req.method == "POST" => r.send_bytes(&[]),
            Body::Empty => r.call(),
            Body::Json(v) => r.send_bytes(&serde_json::to_vec(v).unwrap_or_default()),
            Body::Bytes(b) => r.send_bytes(b),
        };
        match sent {
            Ok(resp) => Ok(resp),
            Err(ureq::Error::Status(code, resp)) => Err(status_failure(&self.service, code, resp)),
            Err(ureq::Error::Transport(t)) => Err(self.transport_failure(&req.shown, &t)),
        }
    }

    fn transport_failure(&self, shown: &str, t: &ureq::Transport) -> Failure {
        use std::error::Error as _;
        let why = t
            .source()
            .map(|e| e.to_string())
            .or_else(|| t.message().map(str::to_string))
            .unwrap_or_else(|| t.kind().to_string());
        match t.kind() {
            ureq::ErrorKind::Io => {
                let timed_out = t
                    .source()
                    .and_then(|e| e.downcast_ref::<std::io::Error>())
                    .is_some_and(|e| {
                        matches!(
                            e.kind(),
                            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                        )
                    });
                let why = if timed_out {
                    format!("no answer from {shown} in time ({why})")
                } else {
                    format!("{shown}: {why}")
                };
                Failure::retryable(&self.service, why)
            }
            ureq::ErrorKind::ConnectionFailed | ureq::ErrorKind::Dns => Failure::fatal(
                &self.service,
                format!(
                    "cannot connect to {shown}: {why} (is the server running, and the URL right?)"
                ),
            ),
            _ => Failure::fatal(&self.service, format!("{shown}: {why}")),
        }
    }

    /// Runs `attempt` until it succeeds, fails for good, or the retries are spent.
    pub fn retrying<T>(
        &self,
        mut attempt: impl FnMut() -> std::result::Result<T, Failure>,
    ) -> Result<T> {
        let mut n = 1u32;
        loop {
            let fail = match attempt() {
                Ok(v) => return Ok(v),
                Err(f) => f,
            };
            let mut error = fail.error;
            error.attempts = n;
            let hint = match fail.retry {
                Retry::No => return Err(Error::Api(Box::new(error))),
                Retry::After(hint) => hint,
            };
            if n > self.retry.retries {
                return Err(Error::Api(Box::new(error)));
            }
            let wait = match hint {
                Some(h) if h > self.retry.max_wait => {
                    error.message = format!(
                        "{} (the server asks to wait {:.0} s, longer than the {} s this client waits)",
                        error.message,
                        h.as_secs_f64(),
                        self.retry.max_wait.as_secs()
                    );
                    return Err(Error::Api(Box::new(error)));
                }
                Some(h) => h,
                None => self.retry.backoff(n - 1),
            };
            std::thread::sleep(wait);
            n += 1;
        }
    }

    /// A streamed (SSE) JSON answer: each chunk goes to `absorb`, which hands its text to the
    /// emitter (and so to `on_text`); `[DONE]` or the end of the stream ends it; an
    /// `{"error": …}` chunk fails it; `finish` makes the answer of what was absorbed. Retried
    /// as [`Http::retrying`] does, but never once text was handed out.
    pub fn stream<A: Default, T>(
        &self,
        req: &Request,
        total: Duration,
        on_text: &mut dyn FnMut(&str),
        absorb: impl Fn(&mut A, &Value, &mut dyn FnMut(&str)),
        finish: impl Fn(A) -> std::result::Result<T, Failure>,
    ) -> Result<T> {
        let service = self.service.as_str();
        let mut delivered = false;
        self.retrying(|| {
            let resp = self.send_once(req)?;
            let started = Instant::now();
            let mut events = super::sse::Events::new(std::io::BufReader::new(resp.into_reader()));
            let mut acc = A::default();
            loop {
                if started.elapsed() > total {
                    let m = format!("the answer took longer than {} s", total.as_secs());
                    return Err(Failure::fatal(service, m));
                }
                let ev = match events.next_event() {
                    Ok(Some(ev)) => ev,
                    Ok(None) => break,
                    Err(e) => {
                        let m = format!("the stream broke off: {e}");
                        return Err(if delivered {
                            Failure::fatal(service, m)
                        } else {
                            Failure::retryable(service, m)
                        });
                    }
                };
                if ev.trim() == "[DONE]" {
                    break;
                }
                let v: Value = serde_json::from_str(&ev).map_err(|e| {
                    let m = format!("a streamed chunk is not JSON ({e}): {}", snippet(&ev));
                    Failure::fatal(service, m)
                })?;
                if v.get("error").is_some() {
                    return Err(stream_error(service, &ev, delivered));
                }
                absorb(&mut acc, &v, &mut |t| {
                    delivered = true;
                    on_text(t)
                });
            }
            finish(acc)
        })
    }

    /// A non-streaming JSON call, retried.
    pub fn json(&self, req: &Request) -> Result<Value> {
        self.retrying(|| read_json(&self.service, self.send_once(req)?))
    }
}

/// The JSON body of a 2xx answer (a broken connection mid-body may be retried).
pub(crate) fn read_json(
    service: &str,
    resp: ureq::Response,
) -> std::result::Result<Value, Failure> {
    let mut body = vec![];
    resp.into_reader()
        .take(MAX_ANSWER + 1)
        .read_to_end(&mut body)
        .map_err(|e| {
            let what = match e.kind() {
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
                    "the answer did not arrive in time"
                }
                _ => "the answer broke off",
            };
            Failure::retryable(service, format!("{what}: {e}"))
        })?;
    if body.len() as u64 > MAX_ANSWER {
        return Err(Failure::fatal(service, "the answer is larger than 64 MB"));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&body).map_err(|e| {
        Failure::fatal(
            service,
            format!(
                "the answer is not JSON ({e}): {}",
                snippet(&String::from_utf8_lossy(&body))
            ),
        )
    })
}

/// Retryable HTTP statuses (google-genai's and openai-python's set, without 409).
pub(crate) fn retryable_status(code: u16) -> bool {
    matches!(code, 408 | 429 | 500 | 502 | 503 | 504)
}

fn status_failure(service: &str, code: u16, resp: ureq::Response) -> Failure {
    let header_hint = retry_after(&resp);
    let reason = resp.status_text().to_string();
    let mut body = String::new();
    let _ = resp
        .into_reader()
        .take(MAX_ERROR_BODY)
        .read_to_string(&mut body);
    let parsed = parse_error_body(&body);
    let message = parsed.message.unwrap_or_else(|| {
        if reason.is_empty() {
            "(no message)".into()
        } else {
            reason
        }
    });
    let mut error = ApiError {
        service: service.into(),
        status: Some(code),
        code: parsed.code,
        message,
        attempts: 1,
    };
    let retry = if !retryable_status(code) {
        Retry::No
    } else if code == 429 && error.message.contains("limit: 0") {
        error
            .message
            .push_str(" (the quota is 0: waiting cannot help)");
        Retry::No
    } else {
        Retry::After(parsed.retry_delay.or(header_hint))
    };
    Failure { error, retry }
}

/// An error document that arrived inside a 2xx stream (`{"error": {…}}`): retried like the
/// status it names, unless text was already handed out.
pub(crate) fn stream_error(service: &str, doc: &str, delivered: bool) -> Failure {
    let parsed = parse_error_body(doc);
    let status = serde_json::from_str::<Value>(doc)
        .ok()
        .and_then(|v| v.pointer("/error/code").and_then(Value::as_u64))
        .and_then(|c| u16::try_from(c).ok());
    let error = ApiError {
        service: service.into(),
        status,
        code: parsed.code,
        message: format!(
            "the stream broke off with an error: {}",
            parsed.message.unwrap_or_default()
        ),
        attempts: 1,
    };
    let retry = match status {
        Some(c) if retryable_status(c) && !delivered => Retry::After(parsed.retry_delay),
        _ => Retry::No,
    };
    Failure { error, retry }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy::default();
        let w: Vec<f64> = (0..8).map(|n| p.backoff(n).as_secs_f64()).collect();
        for (n, w) in w.iter().enumerate() {
            let base = (1u64 << n).min(60) as f64;
            assert!(*w >= base && *w <= base + 1.0, "retry {n}: {w}");
        }
    }
}
