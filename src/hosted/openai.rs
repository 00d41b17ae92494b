//! OpenAI-compatible chat completions with images: OpenAI itself and the local servers
//! (llama.cpp's `llama-server --mmproj`, Ollama's `/v1`, vLLM). Images go as `image_url`
//! parts holding data URIs (Ollama takes nothing else); URLs are passed through.
use super::http::{stream_error, Failure, Http, Request};
use super::{base64, is_openai, load_media, Answer, Finish, Question, Settings, Usage};
use crate::pipelines::ImageSource;
use crate::Result;
use serde_json::{json, Value};

pub(super) fn ask(
    s: &Settings,
    q: &Question,
    on_text: Option<&mut dyn FnMut(&str)>,
) -> Result<Answer> {
    let base = base_v1(s.base());
    let official = is_openai(&base);
    let service = if official {
        "OpenAI API".to_string()
    } else {
        format!("OpenAI-compatible server at {base}")
    };
    // OpenAI documents PNG, JPEG, WebP and GIF; local servers decode with stb_image, which
    // also reads BMP.
    let mut accepted = vec!["image/png", "image/jpeg", "image/webp", "image/gif"];
    if !official {
        accepted.push("image/bmp");
    }
    let mut content = vec![];
    for img in &q.images {
        let url = match img {
            ImageSource::Url(u) => u.clone(),
            other => {
                let m = load_media(other, &accepted, &service)?;
                format!("data:{};base64,{}", m.mime, base64(&m.bytes))
            }
        };
        content.push(json!({"type": "image_url", "image_url": {"url": url}}));
    }
    if !q.text.is_empty() {
        content.push(json!({"type": "text", "text": q.text}));
    }
    let mut messages = vec![];
    if let Some(sys) = &q.system {
        messages.push(json!({"role": "system", "content": sys}));
    }
    messages.push(json!({"role": "user", "content": content}));
    let mut body = json!({"model": s.model.trim(), "messages": messages});
    if let Some(t) = q.temperature {
        body["temperature"] = json!(t);
    }
    if let Some(n) = q.max_tokens {
        // OpenAI deprecated max_tokens (its reasoning models refuse it); the local servers
        // have long read max_tokens and not all read the new name.
        let k = if official {
            "max_completion_tokens"
        } else {
            "max_tokens"
        };
        body[k] = json!(n);
    }
    if let Some(schema) = &q.json_schema {
        body["response_format"] = json!({"type": "json_schema",
            "json_schema": {"name": "answer", "schema": schema, "strict": true}});
    }
    let http = Http::new(service.clone(), s.retry.clone(), s.timeouts.clone());
    let url = format!("{base}/chat/completions");
    let auth = |r: Request<'static>| match &s.api_key {
        Some(k) => r.header("Authorization", format!("Bearer {k}")),
        None => r,
    };
    let Some(cb) = on_text else {
        let req = auth(Request::new("POST", url)).json(&body);
        let v = http.json(&req)?;
        if v.get("error").is_some() {
            return Err(stream_error(&service, &v.to_string(), false).into());
        }
        let mut acc = Acc::default();
        acc.absorb(&v, &mut |_| {});
        return Ok(acc.finish(&service)?);
    };
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let req = auth(Request::new("POST", url)).json(&body).streamed();
    http.stream(
        &req,
        s.timeouts.total,
        cb,
        |acc: &mut Acc, v, emit| acc.absorb(v, emit),
        |acc| acc.finish(&service),
    )
}

/// `http://localhost:8080` → `http://localhost:8080/v1` (a bare host means the standard
/// path; a base with a path is used as given, as the OpenAI SDK does).
fn base_v1(base: &str) -> String {
    let rest = base.split_once("://").map_or(base, |(_, r)| r);
    if rest.contains('/') {
        base.to_string()
    } else {
        format!("{base}/v1")
    }
}

/// A `chat.completion` or its streamed chunks, read leniently (no field is required).
#[derive(Default)]
struct Acc {
    text: String,
    thoughts: String,
    finish_reason: Option<String>,
    refusal: Option<String>,
    usage: Usage,
    model: Option<String>,
    choices: bool,
}

impl Acc {
    fn absorb(&mut self, v: &Value, emit: &mut dyn FnMut(&str)) {
        let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        if let Some(c) = v
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
        {
            self.choices = true;
            // `message` in an answer, `delta` in a chunk.
            let m = c
                .get("message")
                .or_else(|| c.get("delta"))
                .unwrap_or(&Value::Null);
            match m.get("content") {
                Some(Value::String(t)) if !t.is_empty() => {
                    self.text.push_str(t);
                    emit(t);
                }
                Some(Value::Array(parts)) => {
                    for t in parts
                        .iter()
                        .filter_map(|p| p.get("text").and_then(Value::as_str))
                    {
                        self.text.push_str(t);
                        emit(t);
                    }
                }
                _ => {}
            }
            for k in ["reasoning_content", "reasoning"] {
                if let Some(t) = m.get(k).and_then(Value::as_str) {
                    self.thoughts.push_str(t);
                }
            }
            if let Some(r) = s(m, "refusal").filter(|r| !r.is_empty()) {
                self.refusal.get_or_insert_with(String::new).push_str(&r);
            }
            if let Some(r) = s(c, "finish_reason").filter(|r| !r.is_empty()) {
                self.finish_reason = Some(r);
            }
        }
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            let n = |p: &str| u.pointer(p).and_then(Value::as_u64);
            self.usage = Usage {
                prompt_tokens: n("/prompt_tokens"),
                output_tokens: n("/completion_tokens"),
                thoughts_tokens: n("/completion_tokens_details/reasoning_tokens"),
                total_tokens: n("/total_tokens"),
            };
        }
        if let Some(m) = s(v, "model") {
            self.model = Some(m);
        }
    }

    fn finish(mut self, service: &str) -> std::result::Result<Answer, Failure> {
        if !self.choices {
            return Err(Failure::fatal(service, "the answer holds no choices"));
        }
        let mut finish = match self.finish_reason.as_deref() {
            None => Finish::Unfinished,
            Some("stop") => Finish::Stop,
            Some("length") => Finish::Length,
            Some("content_filter") => Finish::Filtered,
            Some(_) => Finish::Other,
        };
        if let Some(r) = self.refusal.take() {
            // A refusal is the model declining: its text is the answer, marked as filtered.
            if self.text.is_empty() {
                self.text = r;
            }
            finish = Finish::Filtered;
            self.finish_reason = Some("refusal".into());
        }
        Ok(Answer {
            text: self.text,
            thoughts: self.thoughts,
            finish,
            finish_reason: self.finish_reason,
            usage: self.usage,
            model_version: self.model,
            provider: "openai",
            uploads: vec![],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_chunks_and_bases() {
        let mut a = Acc::default();
        let mut seen = String::new();
        for c in [
            json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": ""}]}),
            json!({"choices": [{"delta": {"reasoning_content": "hmm"}}]}),
            json!({"choices": [{"delta": {"content": "[cat, 2]"}, "finish_reason": null}]}),
            json!({"choices": [{"delta": {}, "finish_reason": "stop"}], "model": "llava"}),
            json!({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}),
        ] {
            a.absorb(&c, &mut |t| seen.push_str(t));
        }
        let ans = a.finish("x").unwrap();
        assert_eq!(
            (ans.text.as_str(), seen.as_str(), ans.thoughts.as_str()),
            ("[cat, 2]", "[cat, 2]", "hmm")
        );
        assert_eq!(
            (ans.finish, ans.usage.total_tokens),
            (Finish::Stop, Some(8))
        );
        assert_eq!(ans.model_version.as_deref(), Some("llava"));
        assert!(Acc::default().finish("x").is_err());
        assert_eq!(base_v1("http://localhost:8080"), "http://localhost:8080/v1");
        assert_eq!(
            base_v1("http://localhost:11434/v1"),
            "http://localhost:11434/v1"
        );
        assert_eq!(
            base_v1("https://example.com/api/openai"),
            "https://example.com/api/openai"
        );
    }
}
