//! What model servers answer when they refuse: error bodies of every shape (Google's
//! `google.rpc.Status`, OpenAI's `{"error":{…}}`, Ollama's `{"error":"…"}`, old vLLM's flat
//! `{"message":…}`, HTML pages, empty bodies) and their retry hints (`RetryInfo.retryDelay`,
//! `retry-after-ms`, `Retry-After` in seconds or as an HTTP date).
use serde_json::Value;
use std::time::{Duration, SystemTime};

/// What an error body says, whatever its shape.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct ErrorBody {
    pub code: Option<String>,
    pub message: Option<String>,
    /// Google's `RetryInfo.retryDelay`.
    pub retry_delay: Option<Duration>,
}

pub(crate) fn parse_error_body(body: &str) -> ErrorBody {
    let text = |v: &Value| {
        v.as_str()
            .map(str::to_string)
            .or_else(|| v.as_i64().map(|i| i.to_string()))
    };
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        let plain = strip_html(body);
        return ErrorBody {
            message: (!plain.is_empty()).then(|| snippet(&plain)),
            ..ErrorBody::default()
        };
    };
    // A JSON array holding one error (Gemini's non-SSE streams answer so).
    let v = match v {
        Value::Array(mut a) if !a.is_empty() => a.swap_remove(0),
        v => v,
    };
    let (obj, code) = match v.get("error") {
        Some(e @ Value::Object(_)) => {
            // Google: status is the name (RESOURCE_EXHAUSTED), code the number; OpenAI: code
            // is a name (invalid_api_key) or null, type the class.
            let code = e
                .get("status")
                .and_then(text)
                .or_else(|| e.get("code").filter(|c| c.is_string()).and_then(text))
                .or_else(|| e.get("type").and_then(text));
            (e, code)
        }
        Some(Value::String(s)) => {
            return ErrorBody {
                message: Some(snippet(s)),
                ..ErrorBody::default()
            }
        }
        _ => {
            let code = v
                .get("type")
                .and_then(text)
                .or_else(|| v.get("code").and_then(text));
            (&v, code)
        }
    };
    let message = obj
        .get("message")
        .and_then(text)
        .or_else(|| obj.get("detail").and_then(text))
        .map(|m| snippet(&m))
        .or_else(|| Some(snippet(&v.to_string())));
    let retry_delay = obj
        .get("details")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|d| {
            d.get("@type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.ends_with("RetryInfo"))
        })
        .find_map(|d| {
            d.get("retryDelay")
                .and_then(Value::as_str)
                .and_then(parse_duration)
        });
    ErrorBody {
        code,
        message,
        retry_delay,
    }
}

/// A protobuf `Duration` in JSON: `"53s"`, `"1.5s"`.
pub(crate) fn parse_duration(s: &str) -> Option<Duration> {
    let secs: f64 = s.trim().strip_suffix('s')?.parse().ok()?;
    (0.0..1e9)
        .contains(&secs)
        .then(|| Duration::from_secs_f64(secs))
}

/// `retry-after-ms` (openai-python's), else `Retry-After` in seconds or as an HTTP date.
pub(crate) fn retry_after(resp: &ureq::Response) -> Option<Duration> {
    let finite = |x: f64| (0.0..1e9).contains(&x).then_some(x);
    if let Some(ms) = resp
        .header("retry-after-ms")
        .and_then(|h| h.trim().parse::<f64>().ok())
        .and_then(finite)
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let h = resp.header("retry-after")?.trim();
    if let Some(s) = h.parse::<f64>().ok().and_then(finite) {
        return Some(Duration::from_secs_f64(s));
    }
    let at = parse_http_date(h)?;
    Some(at.duration_since(SystemTime::now()).unwrap_or_default())
}

/// An IMF-fixdate (`Wed, 21 Oct 2015 07:28:00 GMT`), the form HTTP servers send.
pub(crate) fn parse_http_date(s: &str) -> Option<SystemTime> {
    let mut it = s.split_whitespace();
    let _weekday = it.next()?;
    let day: u32 = it.next()?.parse().ok()?;
    let month = match it.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = it.next()?.parse().ok()?;
    let hms: Vec<u64> = it
        .next()?
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    if it.next() != Some("GMT") || hms.len() != 3 || !(1..=31).contains(&day) {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m as i64 + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    let secs = days * 86400 + (hms[0] * 3600 + hms[1] * 60 + hms[2]) as i64;
    u64::try_from(secs)
        .ok()
        .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s))
}

/// Text of an HTML error page (Google's front end answers unknown paths so), whitespace folded.
fn strip_html(s: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    let mut skip = false; // inside <style> or <script>
    let lower = s.to_ascii_lowercase();
    let mut i = 0;
    let b = s.as_bytes();
    while i < b.len() {
        if in_tag {
            if b[i] == b'>' {
                in_tag = false;
            }
            i += 1;
            continue;
        }
        if b[i] == b'<' {
            let rest = &lower[i..];
            if rest.starts_with("<style") || rest.starts_with("<script") {
                skip = true;
            } else if rest.starts_with("</style") || rest.starts_with("</script") {
                skip = false;
            }
            in_tag = true;
            out.push(' ');
            i += 1;
            continue;
        }
        let ch = s[i..].chars().next().unwrap_or(' ');
        if !skip {
            out.push(ch);
        }
        i += ch.len_utf8();
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// One line, at most 300 characters.
pub(crate) fn snippet(s: &str) -> String {
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() > 300 {
        format!("{}…", one.chars().take(300).collect::<String>())
    } else {
        one
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_of_every_shape() {
        let g = r#"{"error":{"code":429,"message":"You exceeded your current quota. Please retry in 53.01s.","status":"RESOURCE_EXHAUSTED",
          "details":[{"@type":"type.googleapis.com/google.rpc.Help","links":[]},
                     {"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"53s"}]}}"#;
        let e = parse_error_body(g);
        assert_eq!(e.code.as_deref(), Some("RESOURCE_EXHAUSTED"));
        assert_eq!(e.retry_delay, Some(Duration::from_secs(53)));
        assert!(e.message.unwrap().starts_with("You exceeded"));
        let o = r#"{"error":{"message":"Incorrect API key provided: sk-abc.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#;
        let e = parse_error_body(o);
        assert_eq!(e.code.as_deref(), Some("invalid_api_key"));
        assert_eq!(
            e.message.as_deref(),
            Some("Incorrect API key provided: sk-abc.")
        );
        let e = parse_error_body(r#"{"error":"model \"llava\" not found, try pulling it first"}"#);
        assert_eq!(
            e.message.as_deref(),
            Some("model \"llava\" not found, try pulling it first")
        );
        let e = parse_error_body(
            r#"{"object":"error","message":"The model `x` does not exist.","type":"NotFoundError","param":null,"code":404}"#,
        );
        assert_eq!(e.code.as_deref(), Some("NotFoundError"));
        assert_eq!(e.message.as_deref(), Some("The model `x` does not exist."));
        let html = "<!DOCTYPE html><html><head><style>a{b:c}</style><title>Error 404 (Not Found)!!1</title></head><body><p><b>404.</b> That’s an error.</p></body></html>";
        let e = parse_error_body(html);
        assert_eq!(
            e.message.as_deref(),
            Some("Error 404 (Not Found)!!1 404. That’s an error.")
        );
        assert_eq!(parse_error_body(""), ErrorBody::default());
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration("5"), None);
    }

    #[test]
    fn http_dates() {
        let t = parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        assert_eq!(
            t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(),
            1445412480
        );
        assert_eq!(parse_http_date("Wed, 21 Foo 2015 07:28:00 GMT"), None);
        assert_eq!(parse_http_date("soon"), None);
    }
}
