//! Loopback fakes of Gemini's REST API (generateContent, SSE streaming, the Files API's
//! resumable upload) and of an OpenAI-compatible chat server, for the `ask` tests. They
//! enforce the protocol as the real services do and answer off-protocol requests with the real
//! error bodies; faults are scripted per call. Bounded: 127.0.0.1 only, requests up to 64 MB,
//! 10 s socket timeouts, stopped on drop.
#![allow(dead_code)]
use base64::Engine as _;
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const MAX_REQUEST: usize = 64 << 20;

#[derive(Clone, Debug)]
pub struct HttpRequest {
    pub method: String,
    /// With the query string.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
    pub fn query(&self, key: &str) -> Option<&str> {
        let q = self.target.split_once('?')?.1;
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
    /// The request as a reader compares it with the API docs: base64 image data shortened.
    pub fn show(&self) -> String {
        let mut s = format!("{} {}\n", self.method, self.target);
        for (k, v) in &self.headers {
            let lk = k.to_ascii_lowercase();
            if ["host", "accept-encoding", "accept", "connection"].contains(&lk.as_str()) {
                continue;
            }
            s.push_str(&format!("{k}: {v}\n"));
        }
        if let Some(mut v) = self.json() {
            shorten(&mut v);
            s.push_str(&serde_json::to_string(&v).unwrap());
            s.push('\n');
        } else if !self.body.is_empty() {
            s.push_str(&format!("<{} bytes>\n", self.body.len()));
        }
        s
    }
}

fn shorten(v: &mut Value) {
    match v {
        Value::String(s) if s.len() > 80 => {
            let n = s.len();
            *s = format!("{}…({n} chars)", &s[..40]);
        }
        Value::Array(a) => a.iter_mut().for_each(shorten),
        Value::Object(o) => o.values_mut().for_each(shorten),
        _ => {}
    }
}

pub enum Body {
    Full(Vec<u8>),
    /// Written piece by piece with a pause before each, then the connection closes.
    Stream(Vec<(Duration, Vec<u8>)>),
    /// The connection closes without an answer.
    Reset,
}

pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

impl HttpResponse {
    pub fn json(status: u16, v: &Value) -> Self {
        HttpResponse {
            status,
            headers: vec![(
                "Content-Type".into(),
                "application/json; charset=UTF-8".into(),
            )],
            body: Body::Full(serde_json::to_vec(v).unwrap()),
        }
    }
    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
    pub fn sse(events: Vec<String>) -> Self {
        HttpResponse {
            status: 200,
            headers: vec![("Content-Type".into(), "text/event-stream".into())],
            body: Body::Stream(
                events
                    .into_iter()
                    .map(|e| (Duration::from_millis(5), e.into_bytes()))
                    .collect(),
            ),
        }
    }
}

type Handler = Arc<dyn Fn(&HttpRequest) -> HttpResponse + Send + Sync>;

/// An HTTP/1.1 server on 127.0.0.1 (one thread per connection, `Connection: close`).
pub struct Server {
    pub url: String,
    pub log: Arc<Mutex<Vec<HttpRequest>>>,
    stop: Arc<AtomicBool>,
    port: u16,
}

impl Server {
    pub fn start(handler: Handler) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(vec![]));
        let stop = Arc::new(AtomicBool::new(false));
        let (log2, stop2) = (log.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (h, log) = (handler.clone(), log2.clone());
                std::thread::spawn(move || handle(conn, &*h, &log));
            }
        });
        Server {
            url: format!("http://127.0.0.1:{port}"),
            log,
            stop,
            port,
        }
    }
    pub fn requests(&self) -> Vec<HttpRequest> {
        self.log.lock().unwrap().clone()
    }
    pub fn clear(&self) {
        self.log.lock().unwrap().clear();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn handle(
    conn: TcpStream,
    h: &(dyn Fn(&HttpRequest) -> HttpResponse + Send + Sync),
    log: &Mutex<Vec<HttpRequest>>,
) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = conn.set_write_timeout(Some(Duration::from_secs(10)));
    let mut r = BufReader::new(conn.try_clone().unwrap());
    let Some(req) = read_request(&mut r) else {
        return;
    };
    log.lock().unwrap().push(req.clone());
    let resp = h(&req);
    let mut w = conn;
    let reason = match resp.status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let mut head = format!("HTTP/1.1 {} {reason}\r\nConnection: close\r\n", resp.status);
    for (k, v) in &resp.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    match resp.body {
        Body::Reset => {}
        Body::Full(b) => {
            head.push_str(&format!("Content-Length: {}\r\n\r\n", b.len()));
            let _ = w.write_all(head.as_bytes());
            let _ = w.write_all(&b);
        }
        Body::Stream(pieces) => {
            head.push_str("\r\n");
            let _ = w.write_all(head.as_bytes());
            let _ = w.flush();
            for (pause, p) in pieces {
                std::thread::sleep(pause);
                if w.write_all(&p).is_err() || w.flush().is_err() {
                    break;
                }
            }
        }
    }
    let _ = w.shutdown(std::net::Shutdown::Both);
}

fn read_request(r: &mut BufReader<TcpStream>) -> Option<HttpRequest> {
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut it = line.split_whitespace();
    let (method, target) = (it.next()?.to_string(), it.next()?.to_string());
    let mut headers = vec![];
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
        if headers.len() > 100 {
            return None;
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    if len > MAX_REQUEST {
        return None;
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some(HttpRequest {
        method,
        target,
        headers,
        body,
    })
}

fn sniff(b: &[u8]) -> Option<&'static str> {
    if b.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if b.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if b.len() >= 12 && &b[..4] == b"RIFF" && &b[8..12] == b"WEBP" {
        Some("image/webp")
    } else if b.starts_with(b"GIF8") {
        Some("image/gif")
    } else {
        None
    }
}

/// proto3 JSON `bytes`: standard or URL-safe base64, padded or not.
fn unbase64(s: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|e| e.decode(s).ok())
}

/// A scripted deviation for the next generate / chat call.
#[derive(Clone, Debug)]
pub enum Fault {
    /// 429 with `RetryInfo.retryDelay` (Gemini) or `Retry-After` (OpenAI).
    TooMany(&'static str),
    /// A 429 whose quota is 0.
    QuotaZero,
    Overloaded,
    BadRequest,
    /// Close the connection without answering.
    Reset,
    /// A candidate with a finish reason and no content.
    NoContent,
    /// A content with a role and no parts.
    NoParts,
    Blocked,
    Thoughts,
    MaxTokens,
    ContentFilter,
    Refusal,
    /// Streams: text, then an error document, then EOF.
    ErrorMidStream,
    /// Streams: an error document before any text (retryable: nothing was shown).
    ErrorBeforeText,
    /// Streams: `: ping` comments and `\r\n` line ends.
    PingsCrlf,
    /// Silence for 3 s: before the body (whole answers) or after the first chunk (streams).
    Stall,
}

/// Holds everything after the first piece back by 3 s.
fn stall(mut r: HttpResponse) -> HttpResponse {
    r.body = match r.body {
        Body::Full(b) => Body::Stream(vec![(Duration::from_secs(3), b)]),
        Body::Stream(mut p) => {
            if let Some(x) = p.get_mut(2) {
                x.0 = Duration::from_secs(3);
            }
            Body::Stream(p)
        }
        b => b,
    };
    r
}

struct FileRec {
    mime: String,
    bytes: Vec<u8>,
    polls_left: u32,
    deleted: bool,
}

struct Session {
    declared: usize,
    mime: String,
    name: String,
    received: Vec<u8>,
    done: bool,
}

/// What the fake Gemini saw and holds.
#[derive(Default)]
pub struct GeminiState {
    pub images: Vec<(String, Vec<u8>)>,
    files: HashMap<String, FileRec>,
    sessions: HashMap<String, Session>,
    pub script: VecDeque<Fault>,
    pub generate_calls: usize,
    pub deleted: Vec<String>,
}

pub struct FakeGemini {
    pub server: Server,
    pub state: Arc<Mutex<GeminiState>>,
}

pub const GEMINI_KEY: &str = "test-gemini-key";
pub const OPENAI_KEY: &str = "sk-test-openai-key";

fn gerr(code: u16, status: &str, message: &str) -> HttpResponse {
    gerr_details(code, status, message, json!([]))
}

fn gerr_details(code: u16, status: &str, message: &str, details: Value) -> HttpResponse {
    let mut e = json!({"code": code, "message": message, "status": status});
    if details.as_array().is_some_and(|a| !a.is_empty()) {
        e["details"] = details;
    }
    HttpResponse::json(code, &json!({ "error": e }))
}

fn google_404(req: &HttpRequest) -> HttpResponse {
    let html = format!("<!DOCTYPE html>\n<html lang=en>\n  <meta charset=utf-8>\n  <title>Error 404 (Not Found)!!1</title>\n  <style>*{{margin:0}}</style>\n  <p><b>404.</b> <ins>That’s an error.</ins>\n  <p>The requested URL <code>{}</code> was not found on this server.  <ins>That’s all we know.</ins>\n", req.path());
    HttpResponse {
        status: 404,
        headers: vec![("Content-Type".into(), "text/html; charset=UTF-8".into())],
        body: Body::Full(html.into_bytes()),
    }
}

impl FakeGemini {
    /// A fake holding `models`, answering `answer`; uploaded files become ACTIVE after
    /// `polls` GETs.
    pub fn start(answer: &str, polls: u32) -> FakeGemini {
        let state = Arc::new(Mutex::new(GeminiState::default()));
        let st = state.clone();
        let answer = answer.to_string();
        let base: Arc<Mutex<String>> = Arc::new(Mutex::new(String::new()));
        let base2 = base.clone();
        let counter = Arc::new(AtomicUsize::new(0));
        let server = Server::start(Arc::new(move |req: &HttpRequest| {
            let base = base2.lock().unwrap().clone();
            gemini_handle(req, &st, &answer, polls, &base, &counter)
        }));
        *base.lock().unwrap() = server.url.clone();
        FakeGemini { server, state }
    }
    pub fn script(&self, faults: &[Fault]) {
        self.state
            .lock()
            .unwrap()
            .script
            .extend(faults.iter().cloned());
    }
    pub fn live_files(&self) -> usize {
        self.state
            .lock()
            .unwrap()
            .files
            .values()
            .filter(|f| !f.deleted)
            .count()
    }
}

fn key_check(req: &HttpRequest) -> Option<HttpResponse> {
    match req.header("x-goog-api-key") {
        None => Some(gerr(403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.")),
        Some(k) if k != GEMINI_KEY => Some(gerr_details(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.",
            json!([{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"}}]))),
        _ => None,
    }
}

fn file_json(id: &str, f: &FileRec, base: &str) -> Value {
    let state = if f.polls_left > 0 {
        "PROCESSING"
    } else {
        "ACTIVE"
    };
    json!({"name": format!("files/{id}"), "displayName": "upload", "mimeType": f.mime,
           "sizeBytes": f.bytes.len().to_string(), "createTime": "2026-12-01T00:00:00.000000Z",
           "updateTime": "2026-12-01T00:00:00.000000Z", "expirationTime": "2026-12-03T00:00:00.000000Z",
           "sha256Hash": "ZmFrZQ==", "uri": format!("{base}/v1beta/files/{id}"), "state": state, "source": "UPLOADED"})
}

fn gemini_handle(
    req: &HttpRequest,
    st: &Mutex<GeminiState>,
    answer: &str,
    polls: u32,
    base: &str,
    counter: &AtomicUsize,
) -> HttpResponse {
    if req.query("key").is_some() {
        return gerr(400, "INVALID_ARGUMENT", "fake server policy: the API key belongs in the x-goog-api-key header, never in the URL");
    }
    let path = req.path().to_string();
    if path == "/upload/v1beta/files" && req.method == "POST" {
        return match req.query("upload_id") {
            Some(id) => upload_chunk(req, st, id, polls, base),
            None => upload_start(req, st, base, counter),
        };
    }
    let Some(rest) = path.strip_prefix("/v1beta/") else {
        return google_404(req);
    };
    if let Some(r) = key_check(req) {
        return r;
    }
    if let Some(id) = rest.strip_prefix("files/") {
        let mut s = st.lock().unwrap();
        let Some(f) = s.files.get_mut(id).filter(|f| !f.deleted) else {
            return gerr(
                403,
                "PERMISSION_DENIED",
                &format!("You do not have permission to access the File {id} or it may not exist."),
            );
        };
        return match req.method.as_str() {
            "GET" => {
                f.polls_left = f.polls_left.saturating_sub(1);
                HttpResponse::json(200, &file_json(id, f, base))
            }
            "DELETE" => {
                f.deleted = true;
                s.deleted.push(format!("files/{id}"));
                HttpResponse::json(200, &json!({}))
            }
            _ => google_404(req),
        };
    }
    let Some(rest) = rest.strip_prefix("models/") else {
        return google_404(req);
    };
    let (model, stream) = if let Some(m) = rest.strip_suffix(":generateContent") {
        (m, false)
    } else if let Some(m) = rest.strip_suffix(":streamGenerateContent") {
        (m, true)
    } else {
        return google_404(req);
    };
    if req.method != "POST" {
        return google_404(req);
    }
    if !["gemini-2.5-flash", "gemini-2.5-pro"].contains(&model) {
        return gerr(404, "NOT_FOUND", &format!("models/{model} is not found for API version v1beta, or is not supported for generateContent. Call ListModels to see the list of available models and their supported methods."));
    }
    if stream && req.query("alt") != Some("sse") {
        return gerr(
            400,
            "INVALID_ARGUMENT",
            "fake server: streams are served as SSE only (alt=sse)",
        );
    }
    if req
        .header("content-type")
        .map(|c| c.starts_with("application/json"))
        != Some(true)
    {
        return gerr(
            400,
            "INVALID_ARGUMENT",
            "Invalid JSON payload received. Content-Type must be application/json.",
        );
    }
    let Some(body) = req.json() else {
        return gerr(
            400,
            "INVALID_ARGUMENT",
            "Invalid JSON payload received. Unexpected token.",
        );
    };
    let images = match validate_generate(&body, st) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let fault = {
        let mut s = st.lock().unwrap();
        s.generate_calls += 1;
        s.images.extend(images.iter().cloned());
        s.script.pop_front()
    };
    let usage = json!({"promptTokenCount": 258 * images.len() + 12, "candidatesTokenCount": 6,
                       "totalTokenCount": 258 * images.len() + 18,
                       "promptTokensDetails": [{"modality": "IMAGE", "tokenCount": 258 * images.len()}]});
    let candidate = |parts: Value, reason: &str| json!({"content": {"role": "model", "parts": parts}, "finishReason": reason, "index": 0});
    let whole = |c: Value| json!({"candidates": [c], "usageMetadata": usage, "modelVersion": model, "responseId": "fake-response"});
    let full = match &fault {
        Some(Fault::TooMany(delay)) => return gerr_details(429, "RESOURCE_EXHAUSTED", "You exceeded your current quota, please check your plan and billing details.",
            json!([{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests", "quotaValue": "10"}]},
                   {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}])),
        Some(Fault::QuotaZero) => return gerr(429, "RESOURCE_EXHAUSTED", "You exceeded your current quota. Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 0, model: gemini-2.5-pro"),
        Some(Fault::Overloaded) => return gerr(503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
        Some(Fault::BadRequest) => return gerr(400, "INVALID_ARGUMENT", "Request contains an invalid argument."),
        Some(Fault::Reset) => return HttpResponse { status: 200, headers: vec![], body: Body::Reset },
        Some(Fault::NoContent) => whole(json!({"finishReason": "MALFORMED_FUNCTION_CALL", "index": 0})),
        Some(Fault::NoParts) => whole(json!({"content": {"role": "model"}, "finishReason": "STOP", "index": 0})),
        Some(Fault::Blocked) => json!({"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}]},
                                       "usageMetadata": usage, "modelVersion": model}),
        Some(Fault::Thoughts) => whole(candidate(json!([{"text": "Two tabby cats on a sofa.", "thought": true}, {"text": answer}]), "STOP")),
        Some(Fault::MaxTokens) => whole(candidate(json!([{"text": &answer[..answer.len() / 2]}]), "MAX_TOKENS")),
        Some(Fault::ContentFilter) => whole(json!({"finishReason": "SAFETY", "index": 0})),
        _ => whole(candidate(json!([{"text": answer}]), "STOP")),
    };
    let stalled = matches!(fault, Some(Fault::Stall));
    if !stream {
        let r = HttpResponse::json(200, &full);
        return if stalled { stall(r) } else { r };
    }
    // The answer in 3-character chunks; the last chunk carries the finish reason and usage.
    let err = json!({"error": {"code": 500, "message": "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting", "status": "INTERNAL"}});
    let crlf = matches!(fault, Some(Fault::PingsCrlf));
    let nl = if crlf { "\r\n" } else { "\n" };
    let ev = |v: &Value| format!("data: {}{nl}{nl}", serde_json::to_string(v).unwrap());
    let mut events = vec![];
    if matches!(fault, Some(Fault::ErrorBeforeText)) {
        events.push(format!("{}\n", serde_json::to_string_pretty(&err).unwrap()));
        return HttpResponse::sse(events);
    }
    let texts: Vec<String> = match full
        .pointer("/candidates/0/content/parts")
        .and_then(Value::as_array)
    {
        Some(parts) => parts.iter().map(|p| p.clone().to_string()).collect(),
        None => vec![],
    };
    let mut chunks: Vec<Value> = vec![];
    for p in &texts {
        let p: Value = serde_json::from_str(p).unwrap();
        let t = p["text"].as_str().unwrap_or("").to_string();
        let chars: Vec<char> = t.chars().collect();
        for piece in chars.chunks(3) {
            let mut q = p.clone();
            q["text"] = json!(piece.iter().collect::<String>());
            chunks.push(json!({"candidates": [{"content": {"role": "model", "parts": [q]}, "index": 0}], "modelVersion": model}));
        }
    }
    let mut last = full.clone();
    if let Some(c) = last.pointer_mut("/candidates/0") {
        if let Some(content) = c.get_mut("content") {
            if content.get("parts").is_some() {
                content["parts"] = json!([{"text": ""}]);
            }
        }
    }
    for (i, c) in chunks.iter().enumerate() {
        if crlf {
            events.push(format!(": ping{nl}"));
        }
        events.push(ev(c));
        if i == 0 && matches!(fault, Some(Fault::ErrorMidStream)) {
            events.push(format!("{}\n", serde_json::to_string_pretty(&err).unwrap()));
            return HttpResponse::sse(events);
        }
    }
    events.push(ev(&last));
    let r = HttpResponse::sse(events);
    if stalled {
        stall(r)
    } else {
        r
    }
}

/// The request checks: parts shaped as the proto says, images that decode to their type,
/// files that exist and are ACTIVE, generation config fields that exist.
fn validate_generate(
    body: &Value,
    st: &Mutex<GeminiState>,
) -> Result<Vec<(String, Vec<u8>)>, HttpResponse> {
    let bad = |m: &str| Err(gerr(400, "INVALID_ARGUMENT", m));
    let obj = body.as_object().ok_or_else(|| {
        gerr(
            400,
            "INVALID_ARGUMENT",
            "Invalid JSON payload received. Expected an object.",
        )
    })?;
    const TOP: &[&str] = &[
        "contents",
        "systemInstruction",
        "system_instruction",
        "generationConfig",
        "generation_config",
        "safetySettings",
        "safety_settings",
        "tools",
        "toolConfig",
        "cachedContent",
    ];
    for k in obj.keys() {
        if !TOP.contains(&k.as_str()) {
            return bad(&format!(
                "Invalid JSON payload received. Unknown name \"{k}\": Cannot find field."
            ));
        }
    }
    let Some(contents) = obj
        .get("contents")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
    else {
        return bad("* GenerateContentRequest.contents: contents is not specified");
    };
    let get = |v: &Value, camel: &str, snake: &str| v.get(camel).or_else(|| v.get(snake)).cloned();
    let mut images = vec![];
    for (i, c) in contents.iter().enumerate() {
        if let Some(r) = c.get("role").and_then(Value::as_str) {
            if r != "user" && r != "model" {
                return bad(&format!(
                    "Please use a valid role: user, model. (contents[{i}].role {r:?})"
                ));
            }
        }
        let Some(parts) = c
            .get("parts")
            .and_then(Value::as_array)
            .filter(|p| !p.is_empty())
        else {
            return bad(&format!(
                "* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty."
            ));
        };
        for (j, p) in parts.iter().enumerate() {
            let text = p.get("text");
            let inline = get(p, "inlineData", "inline_data");
            let file = get(p, "fileData", "file_data");
            if [text.is_some(), inline.is_some(), file.is_some()]
                .iter()
                .filter(|x| **x)
                .count()
                != 1
            {
                return bad(&format!("* GenerateContentRequest.contents[{i}].parts[{j}].data: required oneof field 'data' must have one initialized field"));
            }
            if let Some(d) = inline {
                let mime = get(&d, "mimeType", "mime_type")
                    .and_then(|m| m.as_str().map(str::to_string))
                    .unwrap_or_default();
                if ![
                    "image/png",
                    "image/jpeg",
                    "image/webp",
                    "image/heic",
                    "image/heif",
                ]
                .contains(&mime.as_str())
                {
                    return bad(&format!("Unsupported MIME type: {mime}"));
                }
                let Some(bytes) = d.get("data").and_then(Value::as_str).and_then(unbase64) else {
                    return bad(&format!("Invalid value at 'contents[{i}].parts[{j}].inline_data.data' (TYPE_BYTES), Base64 decoding failed"));
                };
                if sniff(&bytes) != Some(mime.as_str()) {
                    return bad("Unable to process input image. Please retry or report in https://developers.generativeai.google/guide/troubleshooting");
                }
                images.push((mime, bytes));
            }
            if let Some(f) = file {
                let uri = get(&f, "fileUri", "file_uri")
                    .and_then(|m| m.as_str().map(str::to_string))
                    .unwrap_or_default();
                let id = uri
                    .rsplit_once("/files/")
                    .map(|(_, id)| id.to_string())
                    .unwrap_or_default();
                let s = st.lock().unwrap();
                let Some(rec) = s.files.get(&id).filter(|f| !f.deleted) else {
                    return Err(gerr(403, "PERMISSION_DENIED", &format!("You do not have permission to access the File {id} or it may not exist.")));
                };
                if rec.polls_left > 0 {
                    return Err(gerr(
                        400,
                        "FAILED_PRECONDITION",
                        &format!(
                            "The File {id} is not in an ACTIVE state and usage is not allowed."
                        ),
                    ));
                }
                let mime = get(&f, "mimeType", "mime_type")
                    .and_then(|m| m.as_str().map(str::to_string))
                    .unwrap_or_default();
                if mime != rec.mime {
                    return bad(&format!(
                        "fake server: fileData.mimeType {mime} differs from the file's {}",
                        rec.mime
                    ));
                }
                images.push((mime, rec.bytes.clone()));
            }
        }
    }
    if let Some(cfg) = get(body, "generationConfig", "generation_config") {
        const CFG: &[&str] = &[
            "temperature",
            "maxOutputTokens",
            "max_output_tokens",
            "topP",
            "topK",
            "candidateCount",
            "stopSequences",
            "responseMimeType",
            "response_mime_type",
            "responseJsonSchema",
            "response_json_schema",
            "responseSchema",
            "thinkingConfig",
            "seed",
        ];
        for k in cfg
            .as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
        {
            if !CFG.contains(&k.as_str()) {
                return bad(&format!("Invalid JSON payload received. Unknown name \"{k}\" at 'generation_config': Cannot find field."));
            }
        }
        let schema = get(&cfg, "responseJsonSchema", "response_json_schema");
        let mime = get(&cfg, "responseMimeType", "response_mime_type");
        if schema.is_some() && mime.as_ref().and_then(Value::as_str) != Some("application/json") {
            return bad("* GenerateContentRequest.generation_config.response_mime_type: a response schema needs response_mime_type application/json");
        }
        if let Some(t) = cfg.get("temperature").and_then(Value::as_f64) {
            if !(0.0..=2.0).contains(&t) {
                return bad(
                    "* GenerateContentRequest.generation_config.temperature: must be in [0.0, 2.0]",
                );
            }
        }
    }
    Ok(images)
}

fn upload_start(
    req: &HttpRequest,
    st: &Mutex<GeminiState>,
    base: &str,
    counter: &AtomicUsize,
) -> HttpResponse {
    if let Some(r) = key_check(req) {
        return r;
    }
    let need = |h: &str, want: Option<&str>| -> Option<HttpResponse> {
        match (req.header(h), want) {
            (None, _) => Some(gerr(
                400,
                "INVALID_ARGUMENT",
                &format!("fake server: the upload start lacks the {h} header"),
            )),
            (Some(v), Some(w)) if !v.eq_ignore_ascii_case(w) => Some(gerr(
                400,
                "INVALID_ARGUMENT",
                &format!("fake server: {h} must be {w}, got {v}"),
            )),
            _ => None,
        }
    };
    for (h, w) in [
        ("X-Goog-Upload-Protocol", Some("resumable")),
        ("X-Goog-Upload-Command", Some("start")),
        ("X-Goog-Upload-Header-Content-Length", None),
        ("X-Goog-Upload-Header-Content-Type", None),
    ] {
        if let Some(r) = need(h, w) {
            return r;
        }
    }
    let Some(declared) = req
        .header("X-Goog-Upload-Header-Content-Length")
        .and_then(|v| v.parse::<usize>().ok())
    else {
        return gerr(
            400,
            "INVALID_ARGUMENT",
            "fake server: X-Goog-Upload-Header-Content-Length is not a number",
        );
    };
    let Some(meta) = req.json() else {
        return gerr(
            400,
            "INVALID_ARGUMENT",
            "Invalid JSON payload received. Unexpected token.",
        );
    };
    let name = meta
        .pointer("/file/display_name")
        .or_else(|| meta.pointer("/file/displayName"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let id = format!("u{}", counter.fetch_add(1, Ordering::SeqCst));
    st.lock().unwrap().sessions.insert(
        id.clone(),
        Session {
            declared,
            mime: req
                .header("X-Goog-Upload-Header-Content-Type")
                .unwrap_or("")
                .to_string(),
            name,
            received: vec![],
            done: false,
        },
    );
    HttpResponse::json(200, &json!({}))
        .header(
            "x-goog-upload-url",
            &format!("{base}/upload/v1beta/files?upload_id={id}&upload_protocol=resumable"),
        )
        .header("x-goog-upload-status", "active")
        .header("x-goog-upload-chunk-granularity", "8388608")
}

fn upload_chunk(
    req: &HttpRequest,
    st: &Mutex<GeminiState>,
    id: &str,
    polls: u32,
    base: &str,
) -> HttpResponse {
    let mut s = st.lock().unwrap();
    let Some(sess) = s.sessions.get_mut(id).filter(|s| !s.done) else {
        return gerr(404, "NOT_FOUND", "fake server: no such upload session");
    };
    let cmd = req
        .header("X-Goog-Upload-Command")
        .unwrap_or("")
        .to_ascii_lowercase();
    let cmd: Vec<&str> = cmd.split(',').map(str::trim).collect();
    if !cmd.contains(&"upload") {
        return gerr(
            400,
            "INVALID_ARGUMENT",
            "fake server: X-Goog-Upload-Command must be upload or \"upload, finalize\"",
        );
    }
    let Some(offset) = req
        .header("X-Goog-Upload-Offset")
        .and_then(|v| v.parse::<usize>().ok())
    else {
        return gerr(
            400,
            "INVALID_ARGUMENT",
            "fake server: the chunk lacks X-Goog-Upload-Offset",
        );
    };
    if offset != sess.received.len() {
        return gerr(
            400,
            "INVALID_ARGUMENT",
            &format!(
                "fake server: upload offset {offset}, but {} bytes were received",
                sess.received.len()
            ),
        );
    }
    sess.received.extend_from_slice(&req.body);
    if sess.received.len() > sess.declared {
        return gerr(
            400,
            "INVALID_ARGUMENT",
            &format!(
                "fake server: {} bytes received, {} declared",
                sess.received.len(),
                sess.declared
            ),
        );
    }
    if !cmd.contains(&"finalize") {
        return HttpResponse::json(200, &json!({})).header("x-goog-upload-status", "active");
    }
    if sess.received.len() != sess.declared {
        return gerr(
            400,
            "INVALID_ARGUMENT",
            &format!(
                "fake server: finalized with {} bytes, {} declared",
                sess.received.len(),
                sess.declared
            ),
        );
    }
    if sniff(&sess.received) != Some(sess.mime.as_str()) {
        return gerr(
            400,
            "INVALID_ARGUMENT",
            "fake server: the uploaded bytes are not the declared type",
        );
    }
    sess.done = true;
    let _ = &sess.name;
    let rec = FileRec {
        mime: sess.mime.clone(),
        bytes: std::mem::take(&mut sess.received),
        polls_left: polls,
        deleted: false,
    };
    let fid = format!("f{id}");
    let v = json!({"file": file_json(&fid, &rec, base)});
    s.files.insert(fid, rec);
    HttpResponse::json(200, &v).header("x-goog-upload-status", "final")
}

/// How a fake OpenAI-compatible server shapes its errors.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Flavor {
    OpenAi,
    /// `{"error": "message"}`; image URLs refused (data URIs only).
    Ollama,
    /// Old vLLM: `{"object": "error", "message": …}`.
    OldVllm,
}

#[derive(Default)]
pub struct OpenAiState {
    pub images: Vec<(String, Vec<u8>)>,
    pub urls: Vec<String>,
    pub script: VecDeque<Fault>,
    pub calls: usize,
}

pub struct FakeOpenAi {
    pub server: Server,
    pub state: Arc<Mutex<OpenAiState>>,
}

impl FakeOpenAi {
    /// `key`: the bearer token demanded (None: like a local server, no key needed).
    pub fn start(answer: &str, key: Option<&str>, flavor: Flavor) -> FakeOpenAi {
        let state = Arc::new(Mutex::new(OpenAiState::default()));
        let st = state.clone();
        let answer = answer.to_string();
        let key = key.map(str::to_string);
        let server = Server::start(Arc::new(move |req: &HttpRequest| {
            openai_handle(req, &st, &answer, key.as_deref(), flavor)
        }));
        FakeOpenAi { server, state }
    }
    pub fn script(&self, faults: &[Fault]) {
        self.state
            .lock()
            .unwrap()
            .script
            .extend(faults.iter().cloned());
    }
}

fn oerr(
    flavor: Flavor,
    status: u16,
    message: &str,
    kind: &str,
    code: Option<&str>,
) -> HttpResponse {
    let v = match flavor {
        Flavor::OpenAi => {
            json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
        }
        Flavor::Ollama => json!({"error": message}),
        Flavor::OldVllm => {
            json!({"object": "error", "message": message, "type": kind, "param": null, "code": status})
        }
    };
    HttpResponse::json(status, &v)
}

fn openai_handle(
    req: &HttpRequest,
    st: &Mutex<OpenAiState>,
    answer: &str,
    key: Option<&str>,
    flavor: Flavor,
) -> HttpResponse {
    if let Some(k) = key {
        match req.header("authorization").and_then(|a| a.strip_prefix("Bearer ")) {
            None => return oerr(flavor, 401, "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).", "invalid_request_error", None),
            Some(got) if got != k => return oerr(flavor, 401, "Incorrect API key provided: sk-****. You can find your API key at https://platform.openai.com/account/api-keys.", "invalid_request_error", Some("invalid_api_key")),
            _ => {}
        }
    }
    if req.path() == "/v1/models" && req.method == "GET" {
        return HttpResponse::json(
            200,
            &json!({"object": "list", "data": [{"id": "fake-vlm", "object": "model", "owned_by": "fake",
            "architecture": {"input_modalities": ["text", "image"]}}]}),
        );
    }
    if req.path() != "/v1/chat/completions" || req.method != "POST" {
        return oerr(flavor, 404, &format!("Unknown request URL: {} {}. Please check the URL for typos, or see the docs at https://platform.openai.com/docs/api-reference/.", req.method, req.path()), "invalid_request_error", Some("unknown_url"));
    }
    let bad = |m: &str| oerr(flavor, 400, m, "invalid_request_error", None);
    let Some(body) = req.json() else {
        return bad("We could not parse the JSON body of your request.");
    };
    const TOP: &[&str] = &[
        "model",
        "messages",
        "temperature",
        "max_tokens",
        "max_completion_tokens",
        "stream",
        "stream_options",
        "response_format",
        "top_p",
        "seed",
        "n",
        "stop",
    ];
    for k in body
        .as_object()
        .map(|o| o.keys().cloned().collect::<Vec<_>>())
        .unwrap_or_default()
    {
        if !TOP.contains(&k.as_str()) {
            return bad(&format!("Unrecognized request argument supplied: {k}"));
        }
    }
    let Some(model) = body
        .get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
    else {
        return bad("you must provide a model parameter");
    };
    let Some(messages) = body
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
    else {
        return bad("[] is too short - 'messages'");
    };
    let mut images = vec![];
    let mut urls = vec![];
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        if !["system", "user", "assistant", "developer"].contains(&role) {
            return bad(&format!("Invalid value: '{role}'. Supported values are: 'system', 'assistant', 'user', 'developer'. (messages[{i}].role)"));
        }
        let Some(parts) = m.get("content").and_then(Value::as_array) else {
            if m.get("content").is_some_and(Value::is_string) {
                continue;
            }
            return bad(&format!("Invalid type for 'messages[{i}].content'"));
        };
        for (j, p) in parts.iter().enumerate() {
            match p.get("type").and_then(Value::as_str) {
                Some("text") if p.get("text").is_some_and(Value::is_string) => {}
                Some("image_url") => {
                    let Some(url) = p.pointer("/image_url/url").and_then(Value::as_str) else {
                        return bad(&format!("Missing required parameter: 'messages[{i}].content[{j}].image_url.url'."));
                    };
                    if let Some(rest) = url.strip_prefix("data:") {
                        let Some((mime, data)) = rest.split_once(";base64,") else {
                            return bad("Invalid image URL: the data URI must be data:<type>;base64,<data>.");
                        };
                        let Some(bytes) = unbase64(data) else {
                            return bad("Invalid base64 image_url.");
                        };
                        if sniff(&bytes) != Some(mime) {
                            return bad(&format!("You uploaded an unsupported image. Please make sure your image is valid and of type {mime}."));
                        }
                        images.push((mime.to_string(), bytes));
                    } else if url.starts_with("http://") || url.starts_with("https://") {
                        if flavor == Flavor::Ollama {
                            return bad("image URLs are not supported, send the image as base64 data");
                        }
                        urls.push(url.to_string());
                    } else {
                        return bad(&format!("Invalid 'messages[{i}].content[{j}].image_url.url': Expected a base64-encoded data URL with an image MIME type or a valid URL."));
                    }
                }
                _ => return bad(&format!("Invalid value at 'messages[{i}].content[{j}]': expected a text or image_url part")),
            }
        }
    }
    if let Some(rf) = body.get("response_format") {
        let ok = match rf.get("type").and_then(Value::as_str) {
            Some("json_schema") => {
                rf.pointer("/json_schema/schema")
                    .is_some_and(Value::is_object)
                    && rf
                        .pointer("/json_schema/name")
                        .is_some_and(Value::is_string)
            }
            Some("json_object" | "text") => true,
            _ => false,
        };
        if !ok {
            return bad(
                "Invalid 'response_format': expected json_schema with a name and a schema object",
            );
        }
    }
    let stream = body.get("stream").and_then(Value::as_bool) == Some(true);
    let fault = {
        let mut s = st.lock().unwrap();
        s.calls += 1;
        s.images.extend(images.iter().cloned());
        s.urls.extend(urls);
        s.script.pop_front()
    };
    let usage = json!({"prompt_tokens": 100 * images.len() + 12, "completion_tokens": 6, "total_tokens": 100 * images.len() + 18});
    let (text, reason, refusal) = match &fault {
        Some(Fault::TooMany(secs)) => {
            return oerr(
                flavor,
                429,
                "Rate limit reached for requests. Please try again later.",
                "requests",
                Some("rate_limit_exceeded"),
            )
            .header("retry-after", secs.trim_end_matches('s'))
        }
        Some(Fault::QuotaZero) => {
            return oerr(
                flavor,
                429,
                "You exceeded your current quota, limit: 0.",
                "insufficient_quota",
                Some("insufficient_quota"),
            )
        }
        Some(Fault::Overloaded) => {
            return oerr(
                flavor,
                503,
                "The server is overloaded or not ready yet.",
                "server_error",
                None,
            )
        }
        Some(Fault::BadRequest) => return bad("Invalid request."),
        Some(Fault::Reset) => {
            return HttpResponse {
                status: 200,
                headers: vec![],
                body: Body::Reset,
            }
        }
        Some(Fault::MaxTokens) => (answer[..answer.len() / 2].to_string(), "length", None),
        Some(Fault::ContentFilter) => (String::new(), "content_filter", None),
        Some(Fault::Refusal) => (
            String::new(),
            "stop",
            Some("I'm sorry, I can't help with that."),
        ),
        _ => (answer.to_string(), "stop", None),
    };
    if !stream {
        return HttpResponse::json(
            200,
            &json!({"id": "chatcmpl-fake", "object": "chat.completion", "created": 1764547200, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": if refusal.is_some() { Value::Null } else { json!(text) }, "refusal": refusal}, "finish_reason": reason, "logprobs": null}],
            "usage": usage}),
        );
    }
    let crlf = matches!(fault, Some(Fault::PingsCrlf));
    let nl = if crlf { "\r\n" } else { "\n" };
    let chunk = |delta: Value, fr: Value| {
        format!(
            "data: {}{nl}{nl}",
            json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1764547200, "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": fr}]})
        )
    };
    let err = json!({"error": {"message": "The server had an error while processing your request.", "type": "server_error", "code": 500}});
    let mut events = vec![format!(": ping - 2026-12-01 00:00:00{nl}{nl}")];
    if matches!(fault, Some(Fault::ErrorBeforeText)) {
        events.push(format!("data: {err}{nl}{nl}"));
        return HttpResponse::sse(events);
    }
    // llama-server's first chunk: the role, an empty content and an empty finish reason.
    events.push(chunk(
        json!({"role": "assistant", "content": ""}),
        json!(""),
    ));
    let chars: Vec<char> = text.chars().collect();
    for (i, piece) in chars.chunks(3).enumerate() {
        if crlf {
            events.push(format!(": ping{nl}"));
        }
        events.push(chunk(
            json!({"content": piece.iter().collect::<String>()}),
            Value::Null,
        ));
        if i == 0 && matches!(fault, Some(Fault::ErrorMidStream)) {
            events.push(format!("data: {err}{nl}{nl}"));
            return HttpResponse::sse(events);
        }
    }
    if let Some(r) = refusal {
        events.push(chunk(json!({"refusal": r}), Value::Null));
    }
    events.push(chunk(json!({}), json!(reason)));
    events.push(format!("data: {}{nl}{nl}", json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": model, "choices": [], "usage": usage})));
    events.push(format!("data: [DONE]{nl}{nl}"));
    HttpResponse::sse(events)
}
