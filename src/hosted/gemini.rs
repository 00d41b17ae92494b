//! Gemini's REST API (`v1beta`), as google-genai speaks it: the key in `x-goog-api-key` (never
//! in the URL), one `user` content with the images then the text, `systemInstruction` at the
//! top level, images inline or through the Files API's resumable upload.
use super::errors::snippet;
use super::http::{read_json, Failure, Http, Request};
use super::{
    base64, base64_len, load_media, Answer, Finish, Media, Question, Settings, Upload,
    UploadedFile, Usage,
};
use crate::{Error, Result};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const SERVICE: &str = "Gemini API";
/// The image types Gemini documents.
const ACCEPTED: &[&str] = &[
    "image/png",
    "image/jpeg",
    "image/webp",
    "image/heic",
    "image/heif",
];
/// What one part costs in the JSON besides its data.
const PART_OVERHEAD: usize = 128;

pub(super) fn ask(
    s: &Settings,
    q: &Question,
    on_text: Option<&mut dyn FnMut(&str)>,
) -> Result<Answer> {
    let g = Gemini {
        s,
        http: Http::new(SERVICE, s.retry.clone(), s.timeouts.clone()),
        key: s.api_key.clone().unwrap_or_default(),
        model: model_path(&s.model)?,
    };
    let media: Vec<Media> = q
        .images
        .iter()
        .map(|i| load_media(i, ACCEPTED, "Gemini"))
        .collect::<Result<_>>()?;
    let uploaded = g.plan(q, &media);
    let mut files: Vec<UploadedFile> = vec![];
    let answer = (|| {
        for (m, up) in media.iter().zip(&uploaded) {
            if *up {
                let (file, state) = g.upload(m)?;
                files.push(file);
                g.wait_active(files.last().expect("just pushed"), state)?;
            }
        }
        let body = g.body(q, &media, &uploaded, &files);
        g.generate(&body, on_text)
    })();
    if !s.keep_uploads {
        for f in &mut files {
            f.deleted = g.delete(&f.name).is_ok();
        }
    }
    let mut answer = answer?;
    answer.uploads = files;
    Ok(answer)
}

/// `models/gemini-2.5-flash` from `gemini-2.5-flash` (tuned models keep their own prefix).
fn model_path(model: &str) -> Result<String> {
    let m = model.trim();
    let ok = !m.is_empty()
        && m.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._/".contains(c))
        && !m.contains("..");
    if !ok {
        return Err(Error::Config(format!(
            "{model:?} is not a Gemini model name"
        )));
    }
    Ok(if m.contains('/') {
        m.to_string()
    } else {
        format!("models/{m}")
    })
}

struct Gemini<'a> {
    s: &'a Settings,
    http: Http,
    key: String,
    model: String,
}

impl Gemini<'_> {
    /// `{base}/v1beta/{path}` (a base given with its version keeps it).
    fn api(&self, path: &str) -> String {
        let base = self.s.base();
        let base = base.strip_suffix("/v1beta").unwrap_or(base);
        format!("{base}/v1beta/{path}")
    }

    fn authed(&self, method: &'static str, url: String) -> Request<'static> {
        Request::new(method, url).header("x-goog-api-key", self.key.clone())
    }

    /// Which images go through the Files API: all, none, or (auto) the largest until the
    /// inline request fits the limit.
    fn plan(&self, q: &Question, media: &[Media]) -> Vec<bool> {
        match self.s.upload {
            Upload::Always => vec![true; media.len()],
            Upload::Never => vec![false; media.len()],
            Upload::Auto => {
                let fixed = q.text.len()
                    + q.system.as_ref().map_or(0, String::len)
                    + q.json_schema.as_ref().map_or(0, |v| v.to_string().len())
                    + 1024;
                let inline = |m: &Media| base64_len(m.bytes.len()) + PART_OVERHEAD;
                let mut total = fixed + media.iter().map(inline).sum::<usize>();
                let mut order: Vec<usize> = (0..media.len()).collect();
                order.sort_by_key(|&i| std::cmp::Reverse(media[i].bytes.len()));
                let mut up = vec![false; media.len()];
                for i in order {
                    if total <= self.s.inline_limit {
                        break;
                    }
                    up[i] = true;
                    total = total - inline(&media[i]) + 2 * PART_OVERHEAD;
                }
                up
            }
        }
    }

    fn body(&self, q: &Question, media: &[Media], up: &[bool], files: &[UploadedFile]) -> Value {
        let mut files = files.iter();
        let mut parts: Vec<Value> = media
            .iter()
            .zip(up)
            .map(|(m, up)| match up.then(|| files.next()).flatten() {
                Some(f) => json!({"fileData": {"fileUri": f.uri, "mimeType": f.mime_type}}),
                None => json!({"inlineData": {"mimeType": m.mime, "data": base64(&m.bytes)}}),
            })
            .collect();
        if !q.text.is_empty() {
            parts.push(json!({ "text": q.text }));
        }
        let mut body = json!({"contents": [{"role": "user", "parts": parts}]});
        if let Some(sys) = &q.system {
            body["systemInstruction"] = json!({"parts": [{"text": sys}]});
        }
        let mut cfg = serde_json::Map::new();
        if let Some(t) = q.temperature {
            cfg.insert("temperature".into(), json!(t));
        }
        if let Some(n) = q.max_tokens {
            cfg.insert("maxOutputTokens".into(), json!(n));
        }
        if let Some(schema) = &q.json_schema {
            cfg.insert("responseMimeType".into(), json!("application/json"));
            cfg.insert("responseJsonSchema".into(), schema.clone());
        }
        if !cfg.is_empty() {
            body["generationConfig"] = Value::Object(cfg);
        }
        body
    }

    /// The resumable upload (start, then chunks with the last one finalizing), restarted from
    /// the beginning when any step fails in a retryable way. Returns the file and its state.
    fn upload(&self, m: &Media) -> Result<(UploadedFile, String)> {
        let file = self.http.retrying(|| self.upload_once(m))?;
        let text = |k: &str| file.get(k).and_then(Value::as_str).map(str::to_string);
        let (Some(name), Some(uri)) = (text("name"), text("uri")) else {
            return Err(Error::Msg(format!(
                "{SERVICE}: the finished upload of {} has no name or uri: {}",
                m.name,
                snippet(&file.to_string())
            )));
        };
        let uploaded = UploadedFile {
            name,
            uri,
            mime_type: text("mimeType").unwrap_or_else(|| m.mime.into()),
            deleted: false,
        };
        Ok((uploaded, text("state").unwrap_or_default()))
    }

    fn upload_once(&self, m: &Media) -> std::result::Result<Value, Failure> {
        let display: String = std::path::Path::new(&m.name)
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| m.name.clone())
            .chars()
            .take(512)
            .collect();
        let start_body = json!({"file": {"display_name": display}});
        let n = m.bytes.len();
        let start = self
            .authed("POST", format!("{}/upload/v1beta/files", self.s.base()))
            .header("X-Goog-Upload-Protocol", "resumable")
            .header("X-Goog-Upload-Command", "start")
            .header("X-Goog-Upload-Header-Content-Length", n.to_string())
            .header("X-Goog-Upload-Header-Content-Type", m.mime)
            .json(&start_body);
        let resp = self.http.send_once(&start)?;
        let Some(url) = resp.header("x-goog-upload-url").map(str::to_string) else {
            return Err(Failure::fatal(
                SERVICE,
                "the upload start answer has no x-goog-upload-url header",
            ));
        };
        let _ = read_json(SERVICE, resp);
        // The session URL authorises itself (google-genai sends no key with the chunks); it is
        // never shown, as it would let anyone append to the upload.
        let shown = format!("{}/upload/v1beta/files (upload session)", self.s.base());
        let mut offset = 0;
        loop {
            let end = (offset + self.s.upload_chunk).min(n);
            let last = end == n;
            let req = Request::new("POST", url.clone())
                .shown_as(shown.clone())
                .header(
                    "X-Goog-Upload-Command",
                    if last { "upload, finalize" } else { "upload" },
                )
                .header("X-Goog-Upload-Offset", offset.to_string())
                .bytes(&m.bytes[offset..end]);
            let resp = self.http.send_once(&req)?;
            let status = resp
                .header("x-goog-upload-status")
                .map(str::to_ascii_lowercase);
            let want = if last { "final" } else { "active" };
            if status.as_deref() != Some(want) {
                return Err(Failure::retryable(
                    SERVICE,
                    format!(
                        "uploading {} at offset {offset}: the server answered upload status {status:?}, not {want:?}",
                        m.name
                    ),
                ));
            }
            if last {
                let v = read_json(SERVICE, resp)?;
                return match v.get("file") {
                    Some(f) => Ok(f.clone()),
                    None => Err(Failure::fatal(
                        SERVICE,
                        format!(
                            "the finished upload answer holds no file: {}",
                            snippet(&v.to_string())
                        ),
                    )),
                };
            }
            let _ = read_json(SERVICE, resp);
            offset = end;
        }
    }

    /// Polls the file until it is `ACTIVE` (a `PROCESSING` file cannot be used yet).
    fn wait_active(&self, f: &UploadedFile, state: String) -> Result<()> {
        let until = Instant::now() + self.s.active_wait;
        let mut pause = Duration::from_millis(100);
        let mut state = state;
        loop {
            match state.as_str() {
                "ACTIVE" => return Ok(()),
                "FAILED" => {
                    return Err(Error::Msg(format!(
                        "{SERVICE}: processing the upload {} failed",
                        f.name
                    )))
                }
                _ => {}
            }
            if Instant::now() > until {
                return Err(Error::Msg(format!(
                    "{SERVICE}: the upload {} is still {state} after {} s",
                    f.name,
                    self.s.active_wait.as_secs()
                )));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(2));
            let v = self.http.json(&self.authed("GET", self.api(&f.name)))?;
            if v.get("state").and_then(Value::as_str) == Some("FAILED") {
                let why = v
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .unwrap_or("no reason given");
                return Err(Error::Msg(format!(
                    "{SERVICE}: processing the upload {} failed: {why}",
                    f.name
                )));
            }
            state = v
                .get("state")
                .and_then(Value::as_str)
                .unwrap_or("STATE_UNSPECIFIED")
                .to_string();
        }
    }

    fn delete(&self, name: &str) -> Result<()> {
        let req = self.authed("DELETE", self.api(name));
        self.http.retrying(|| self.http.send_once(&req).map(drop))
    }

    fn generate(&self, body: &Value, on_text: Option<&mut dyn FnMut(&str)>) -> Result<Answer> {
        let Some(cb) = on_text else {
            let url = self.api(&format!("{}:generateContent", self.model));
            let v = self.http.json(&self.authed("POST", url).json(body))?;
            let mut acc = Acc::default();
            acc.absorb(&v, &mut |_| {});
            return Ok(acc.finish()?);
        };
        let url = self.api(&format!("{}:streamGenerateContent?alt=sse", self.model));
        let req = self.authed("POST", url).json(body).streamed();
        self.http.stream(
            &req,
            self.s.timeouts.total,
            cb,
            |acc: &mut Acc, v, emit| acc.absorb(v, emit),
            Acc::finish,
        )
    }
}

/// A (possibly streamed, chunk by chunk) `GenerateContentResponse`, read leniently: a
/// candidate may lack `content`, a content may lack `parts`, any field may be missing.
#[derive(Default)]
struct Acc {
    text: String,
    thoughts: String,
    finish_reason: Option<String>,
    usage: Usage,
    model: Option<String>,
    blocked: Option<(String, Option<String>)>,
    candidates: bool,
}

impl Acc {
    fn absorb(&mut self, v: &Value, emit: &mut dyn FnMut(&str)) {
        let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        if let Some(pf) = v.get("promptFeedback") {
            if let Some(r) = s(pf, "blockReason").filter(|r| !r.is_empty()) {
                self.blocked = Some((r, s(pf, "blockReasonMessage")));
            }
        }
        if let Some(c) = v
            .get("candidates")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
        {
            self.candidates = true;
            let parts = c.pointer("/content/parts").and_then(Value::as_array);
            for p in parts.into_iter().flatten() {
                let Some(t) = p.get("text").and_then(Value::as_str) else {
                    continue;
                };
                if p.get("thought").and_then(Value::as_bool) == Some(true) {
                    self.thoughts.push_str(t);
                } else if !t.is_empty() {
                    self.text.push_str(t);
                    emit(t);
                }
            }
            if let Some(r) = s(c, "finishReason").filter(|r| !r.is_empty()) {
                self.finish_reason = Some(r);
            }
        }
        if let Some(u) = v.get("usageMetadata") {
            let n = |k: &str| u.get(k).and_then(Value::as_u64);
            self.usage = Usage {
                prompt_tokens: n("promptTokenCount"),
                output_tokens: n("candidatesTokenCount"),
                thoughts_tokens: n("thoughtsTokenCount"),
                total_tokens: n("totalTokenCount"),
            };
        }
        if let Some(m) = s(v, "modelVersion") {
            self.model = Some(m);
        }
    }

    fn finish(self) -> std::result::Result<Answer, Failure> {
        if !self.candidates {
            let mut f = match self.blocked {
                Some((reason, why)) => {
                    let mut f = Failure::fatal(
                        SERVICE,
                        format!(
                            "the prompt was blocked ({reason}); no answer was generated{}",
                            why.map(|w| format!(": {w}")).unwrap_or_default()
                        ),
                    );
                    f.error.code = Some(reason);
                    f
                }
                None => Failure::fatal(SERVICE, "the answer holds no candidates"),
            };
            f.error.attempts = 1;
            return Err(f);
        }
        let finish = match self.finish_reason.as_deref() {
            None => Finish::Unfinished,
            Some("STOP") => Finish::Stop,
            Some("MAX_TOKENS") => Finish::Length,
            Some(
                "SAFETY"
                | "RECITATION"
                | "BLOCKLIST"
                | "PROHIBITED_CONTENT"
                | "SPII"
                | "IMAGE_SAFETY"
                | "IMAGE_PROHIBITED_CONTENT"
                | "IMAGE_RECITATION"
                | "LANGUAGE",
            ) => Finish::Filtered,
            Some(_) => Finish::Other,
        };
        Ok(Answer {
            text: self.text,
            thoughts: self.thoughts,
            finish,
            finish_reason: self.finish_reason,
            usage: self.usage,
            model_version: self.model,
            provider: "gemini",
            uploads: vec![],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_answers() {
        let mut a = Acc::default();
        let chunk = json!({"candidates": [{"content": {"role": "model", "parts": [
            {"text": "thinking…", "thought": true}, {"text": "[cat, "}]}}]});
        let mut seen = vec![];
        a.absorb(&chunk, &mut |t| seen.push(t.to_string()));
        a.absorb(
            &json!({"candidates": [{"content": {"role": "model"}, "finishReason": "STOP"}],
                    "usageMetadata": {"promptTokenCount": 265, "candidatesTokenCount": 6, "totalTokenCount": 271},
                    "modelVersion": "gemini-2.5-flash"}),
            &mut |t| seen.push(t.to_string()),
        );
        let ans = a.finish().unwrap();
        assert_eq!(
            (ans.text.as_str(), ans.thoughts.as_str()),
            ("[cat, ", "thinking…")
        );
        assert_eq!(seen, ["[cat, "]);
        assert_eq!(ans.finish, Finish::Stop);
        assert_eq!(ans.usage.prompt_tokens, Some(265));
        let mut a = Acc::default();
        a.absorb(
            &json!({"candidates": [{"finishReason": "MALFORMED_FUNCTION_CALL", "index": 0}]}),
            &mut |_| {},
        );
        let ans = a.finish().unwrap();
        assert_eq!((ans.text.as_str(), ans.finish), ("", Finish::Other));
        let mut a = Acc::default();
        a.absorb(
            &json!({"promptFeedback": {"blockReason": "SAFETY"}}),
            &mut |_| {},
        );
        let e = a.finish().unwrap_err();
        assert_eq!(e.error.code.as_deref(), Some("SAFETY"));
        assert!(Acc::default().finish().is_err());
        assert_eq!(
            model_path("gemini-2.5-flash").unwrap(),
            "models/gemini-2.5-flash"
        );
        assert_eq!(
            model_path("models/gemini-2.5-flash").unwrap(),
            "models/gemini-2.5-flash"
        );
        assert!(model_path("gemini?key=1").is_err());
    }
}
