//! `tessera::hosted` and `tessera ask` against loopback fakes of Gemini (inline images, the
//! Files API, SSE) and of OpenAI-compatible servers (OpenAI, Ollama, old vLLM error shapes),
//! which enforce the protocol and answer off-protocol requests with the real error bodies.
//! Run with `--nocapture` to see the exact requests the client sent.
#[path = "support/fake_hosted.rs"]
mod fake;

use fake::{FakeGemini, FakeOpenAi, Fault, Flavor, GEMINI_KEY, OPENAI_KEY};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tessera::hosted::{Finish, Provider, Question, RetryPolicy, Settings, Upload};
use tessera::Error;

const QUESTION: &str = "What animal and how many? Format: [animal, number]";
const ANSWER: &str = "[cat, 2]";

fn photo(dir: &Path, name: &str, w: u32, h: u32) -> PathBuf {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 7) as u8, (y * 5) as u8, ((x ^ y) * 3) as u8])
    });
    let p = dir.join(name);
    let f = std::fs::File::create(&p).unwrap();
    if name.ends_with(".png") {
        image::DynamicImage::ImageRgb8(img)
            .write_to(&mut std::io::BufWriter::new(f), image::ImageFormat::Png)
            .unwrap();
    } else {
        image::codecs::jpeg::JpegEncoder::new_with_quality(std::io::BufWriter::new(f), 90)
            .encode_image(&img)
            .unwrap();
    }
    p
}

fn quick() -> RetryPolicy {
    RetryPolicy {
        retries: 4,
        initial: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        max_wait: Duration::from_secs(120),
    }
}

fn gemini(fake: &FakeGemini) -> Settings {
    let mut s = Settings::from_vars(Some(Provider::Gemini), Some(&fake.server.url), |k| {
        (k == "GEMINI_API_KEY").then(|| GEMINI_KEY.to_string())
    })
    .unwrap();
    s.retry = quick();
    s
}

fn openai(fake: &FakeOpenAi, key: Option<&str>) -> Settings {
    let base = format!("{}/v1", fake.server.url);
    let mut s = Settings::from_vars(Some(Provider::OpenAi), Some(&base), |k| {
        (k == "OPENAI_API_KEY")
            .then(|| key.map(str::to_string))
            .flatten()
    })
    .unwrap();
    s.model = "fake-vlm".into();
    s.retry = quick();
    s
}

fn api_error(e: Error) -> tessera::error::ApiError {
    match e {
        Error::Api(a) => *a,
        other => panic!("not an API error: {other}"),
    }
}

fn show(title: &str, reqs: &[fake::HttpRequest]) {
    eprintln!("--- {title}: {} request(s)", reqs.len());
    for r in reqs {
        eprintln!("{}", r.show());
    }
}

#[test]
fn gemini_inline_request_is_the_documented_shape() {
    let dir = tempfile::tempdir().unwrap();
    let cats = photo(dir.path(), "cats.jpg", 64, 48);
    let fake = FakeGemini::start(ANSWER, 0);
    let s = gemini(&fake);
    let mut q = Question::new(QUESTION).image(cats.clone());
    let a = s.ask(&q).unwrap();
    assert_eq!((a.text.as_str(), a.finish), (ANSWER, Finish::Stop));
    assert_eq!(a.usage.prompt_tokens, Some(270));
    assert_eq!(a.model_version.as_deref(), Some("gemini-2.5-flash"));
    let reqs = fake.server.requests();
    show("gemini inline", &reqs);
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(
        (r.method.as_str(), r.target.as_str()),
        ("POST", "/v1beta/models/gemini-2.5-flash:generateContent")
    );
    assert_eq!(r.header("x-goog-api-key"), Some(GEMINI_KEY));
    assert!(r.header("authorization").is_none());
    let body = r.json().unwrap();
    assert_eq!(body["contents"][0]["role"], "user");
    assert_eq!(
        body["contents"][0]["parts"][0]["inlineData"]["mimeType"],
        "image/jpeg"
    );
    assert_eq!(body["contents"][0]["parts"][1], json!({"text": QUESTION}));
    assert!(body.get("generationConfig").is_none() && body.get("systemInstruction").is_none());
    // The server decoded exactly the file's bytes.
    assert_eq!(
        fake.state.lock().unwrap().images,
        vec![("image/jpeg".to_string(), std::fs::read(&cats).unwrap())]
    );

    fake.server.clear();
    q.system = Some("Answer tersely.".into());
    q.temperature = Some(0.2);
    q.max_tokens = Some(64);
    q.json_schema = Some(json!({"type": "array", "items": {"type": ["string", "integer"]}}));
    s.ask(&q).unwrap();
    let body = fake.server.requests()[0].json().unwrap();
    assert_eq!(
        body["systemInstruction"],
        json!({"parts": [{"text": "Answer tersely."}]})
    );
    assert_eq!(body["generationConfig"]["temperature"], json!(0.2));
    assert_eq!(body["generationConfig"]["maxOutputTokens"], json!(64));
    assert_eq!(
        body["generationConfig"]["responseMimeType"],
        "application/json"
    );
    assert_eq!(
        body["generationConfig"]["responseJsonSchema"]["type"],
        "array"
    );
}

#[test]
fn gemini_files_api_upload_wait_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let cats = photo(dir.path(), "cats.jpg", 160, 120);
    let small = photo(dir.path(), "small.png", 8, 8);
    let fake = FakeGemini::start(ANSWER, 2);
    let mut s = gemini(&fake);
    s.upload = Upload::Always;
    s.upload_chunk = 1000;
    let q = Question::new(QUESTION).image(cats.clone());
    let a = s.ask(&q).unwrap();
    assert_eq!(a.text, ANSWER);
    assert_eq!(a.uploads.len(), 1);
    assert!(a.uploads[0].deleted);
    let reqs = fake.server.requests();
    show("gemini Files API", &reqs);
    let start = &reqs[0];
    assert_eq!(
        (start.method.as_str(), start.target.as_str()),
        ("POST", "/upload/v1beta/files")
    );
    assert_eq!(start.header("X-Goog-Upload-Protocol"), Some("resumable"));
    assert_eq!(start.header("X-Goog-Upload-Command"), Some("start"));
    let n = std::fs::read(&cats).unwrap().len();
    assert!(n > 3000, "several chunks: {n} bytes");
    assert_eq!(
        start.header("X-Goog-Upload-Header-Content-Length"),
        Some(n.to_string().as_str())
    );
    assert_eq!(
        start.header("X-Goog-Upload-Header-Content-Type"),
        Some("image/jpeg")
    );
    assert_eq!(
        start.json().unwrap(),
        json!({"file": {"display_name": "cats.jpg"}})
    );
    let chunks: Vec<_> = reqs
        .iter()
        .filter(|r| r.target.contains("upload_id="))
        .collect();
    assert_eq!(chunks.len(), n.div_ceil(1000));
    for (i, c) in chunks.iter().enumerate() {
        assert_eq!(
            c.header("X-Goog-Upload-Offset"),
            Some((i * 1000).to_string().as_str())
        );
        let last = i + 1 == chunks.len();
        assert_eq!(
            c.header("X-Goog-Upload-Command"),
            Some(if last { "upload, finalize" } else { "upload" })
        );
        assert!(
            c.header("x-goog-api-key").is_none(),
            "the session URL authorises itself"
        );
    }
    // Polled until ACTIVE (the fake needs 2 GETs), used by URI, then deleted.
    let rest: Vec<String> = reqs
        .iter()
        .skip(1 + chunks.len())
        .map(|r| format!("{} {}", r.method, r.path()))
        .collect();
    assert_eq!(
        rest,
        [
            "GET /v1beta/files/fu0",
            "GET /v1beta/files/fu0",
            "POST /v1beta/models/gemini-2.5-flash:generateContent",
            "DELETE /v1beta/files/fu0"
        ]
    );
    let body = reqs[reqs.len() - 2].json().unwrap();
    assert_eq!(
        body["contents"][0]["parts"][0]["fileData"],
        json!({"fileUri": format!("{}/v1beta/files/fu0", fake.server.url), "mimeType": "image/jpeg"})
    );
    assert_eq!(fake.live_files(), 0);
    assert_eq!(
        fake.state.lock().unwrap().images[0].1,
        std::fs::read(&cats).unwrap()
    );

    // Kept when asked.
    s.keep_uploads = true;
    let a = s.ask(&q).unwrap();
    assert!(!a.uploads[0].deleted);
    assert_eq!(fake.live_files(), 1);

    // Auto: only what does not fit goes up, largest first.
    fake.server.clear();
    s.keep_uploads = false;
    s.upload = Upload::Auto;
    s.inline_limit = 2000 + n / 2;
    let q2 = Question::new(QUESTION)
        .image(small.clone())
        .image(cats.clone());
    s.ask(&q2).unwrap();
    let gen = fake
        .server
        .requests()
        .into_iter()
        .find(|r| r.path().ends_with(":generateContent"))
        .unwrap();
    let parts = gen.json().unwrap()["contents"][0]["parts"].clone();
    assert!(
        parts[0].get("inlineData").is_some(),
        "the small PNG stays inline"
    );
    assert!(
        parts[1].get("fileData").is_some(),
        "the large JPEG is uploaded: {}",
        fake::HttpRequest::show(&gen)
    );
    s.inline_limit = usize::MAX;
    fake.server.clear();
    s.ask(&q2).unwrap();
    assert_eq!(
        fake.server.requests().len(),
        1,
        "everything fits inline: no upload"
    );
}

#[test]
fn the_fake_gemini_enforces_the_protocol() {
    // Requests a wrong client would send, straight over HTTP: each answered with the error
    // the real service gives.
    let dir = tempfile::tempdir().unwrap();
    let cats = photo(dir.path(), "cats.jpg", 32, 32);
    let png = photo(dir.path(), "x.png", 8, 8);
    let fake = FakeGemini::start(ANSWER, 5);
    let url = &fake.server.url;
    let gen = format!("{url}/v1beta/models/gemini-2.5-flash:generateContent");
    let b64 = |p: &Path| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(p).unwrap())
    };
    let call = |r: ureq::Request, body: &Value| -> (u16, String) {
        match r.send_string(&body.to_string()) {
            Ok(resp) => (resp.status(), resp.into_string().unwrap()),
            Err(ureq::Error::Status(c, resp)) => (c, resp.into_string().unwrap()),
            Err(e) => panic!("{e}"),
        }
    };
    let body = |mime: &str, data: String| json!({"contents": [{"role": "user", "parts": [{"inlineData": {"mimeType": mime, "data": data}}, {"text": "q"}]}]});
    let ok = body("image/jpeg", b64(&cats));
    let cases: Vec<(&str, ureq::Request, Value, u16, &str)> = vec![
        (
            "right",
            ureq::post(&gen)
                .set("x-goog-api-key", GEMINI_KEY)
                .set("Content-Type", "application/json"),
            ok.clone(),
            200,
            ANSWER,
        ),
        (
            "snake_case fields",
            ureq::post(&gen)
                .set("x-goog-api-key", GEMINI_KEY)
                .set("Content-Type", "application/json"),
            json!({"contents": [{"parts": [{"inline_data": {"mime_type": "image/jpeg", "data": b64(&cats)}}, {"text": "q"}]}]}),
            200,
            ANSWER,
        ),
        (
            "no key",
            ureq::post(&gen).set("Content-Type", "application/json"),
            ok.clone(),
            403,
            "unregistered callers",
        ),
        (
            "wrong key",
            ureq::post(&gen)
                .set("x-goog-api-key", "nope")
                .set("Content-Type", "application/json"),
            ok.clone(),
            400,
            "API_KEY_INVALID",
        ),
        (
            "key in the URL",
            ureq::post(&format!("{gen}?key={GEMINI_KEY}")).set("Content-Type", "application/json"),
            ok.clone(),
            400,
            "never in the URL",
        ),
        (
            "wrong path",
            ureq::post(&format!("{url}/v1/models/gemini-2.5-flash:generateContent"))
                .set("x-goog-api-key", GEMINI_KEY),
            ok.clone(),
            404,
            "Error 404 (Not Found)",
        ),
        (
            "unknown model",
            ureq::post(&format!("{url}/v1beta/models/gemini-9:generateContent"))
                .set("x-goog-api-key", GEMINI_KEY)
                .set("Content-Type", "application/json"),
            ok.clone(),
            404,
            "is not found for API version v1beta",
        ),
        (
            "PNG declared as JPEG",
            ureq::post(&gen)
                .set("x-goog-api-key", GEMINI_KEY)
                .set("Content-Type", "application/json"),
            body("image/jpeg", b64(&png)),
            400,
            "Unable to process input image",
        ),
        (
            "not base64",
            ureq::post(&gen)
                .set("x-goog-api-key", GEMINI_KEY)
                .set("Content-Type", "application/json"),
            body("image/jpeg", "@@@".into()),
            400,
            "Base64 decoding failed",
        ),
        (
            "two data fields in a part",
            ureq::post(&gen)
                .set("x-goog-api-key", GEMINI_KEY)
                .set("Content-Type", "application/json"),
            json!({"contents": [{"parts": [{"text": "a", "inlineData": {"mimeType": "image/jpeg", "data": b64(&cats)}}]}]}),
            400,
            "oneof field 'data'",
        ),
        (
            "systemInstruction inside generationConfig",
            ureq::post(&gen)
                .set("x-goog-api-key", GEMINI_KEY)
                .set("Content-Type", "application/json"),
            json!({"contents": [{"parts": [{"text": "a"}]}], "generationConfig": {"systemInstruction": {"parts": [{"text": "s"}]}}}),
            400,
            "systemInstruction\\\" at 'generation_config': Cannot find field",
        ),
        (
            "schema without JSON mime type",
            ureq::post(&gen)
                .set("x-goog-api-key", GEMINI_KEY)
                .set("Content-Type", "application/json"),
            json!({"contents": [{"parts": [{"text": "a"}]}], "generationConfig": {"responseJsonSchema": {"type": "string"}}}),
            400,
            "response_mime_type",
        ),
        (
            "upload start without its headers",
            ureq::post(&format!("{url}/upload/v1beta/files"))
                .set("x-goog-api-key", GEMINI_KEY)
                .set("Content-Type", "application/json")
                .set("X-Goog-Upload-Protocol", "resumable"),
            json!({"file": {}}),
            400,
            "lacks the X-Goog-Upload-Command header",
        ),
    ];
    for (what, req, body, status, needle) in cases {
        let (got, text) = call(req, &body);
        assert_eq!(got, status, "{what}: {text}");
        assert!(text.contains(needle), "{what}: {text}");
    }
    // An upload with a wrong offset, one finalized short, and a file used while PROCESSING.
    let start = |len: usize| {
        ureq::post(&format!("{url}/upload/v1beta/files"))
            .set("x-goog-api-key", GEMINI_KEY)
            .set("Content-Type", "application/json")
            .set("X-Goog-Upload-Protocol", "resumable")
            .set("X-Goog-Upload-Command", "start")
            .set("X-Goog-Upload-Header-Content-Length", &len.to_string())
            .set("X-Goog-Upload-Header-Content-Type", "image/jpeg")
            .send_string("{\"file\":{}}")
            .unwrap()
            .header("x-goog-upload-url")
            .unwrap()
            .to_string()
    };
    let bytes = std::fs::read(&cats).unwrap();
    let chunk = |u: &str, cmd: &str, off: usize, b: &[u8]| match ureq::post(u)
        .set("X-Goog-Upload-Command", cmd)
        .set("X-Goog-Upload-Offset", &off.to_string())
        .send_bytes(b)
    {
        Ok(r) => (
            r.status(),
            r.header("x-goog-upload-status").unwrap_or("").to_string(),
            r.into_string().unwrap(),
        ),
        Err(ureq::Error::Status(c, r)) => (c, String::new(), r.into_string().unwrap()),
        Err(e) => panic!("{e}"),
    };
    let u = start(bytes.len());
    let (c, st, _) = chunk(&u, "upload", 0, &bytes[..100]);
    assert_eq!((c, st.as_str()), (200, "active"));
    let (c, _, t) = chunk(&u, "upload, finalize", 50, &bytes[100..]);
    assert_eq!(c, 400, "{t}");
    assert!(
        t.contains("upload offset 50, but 100 bytes were received"),
        "{t}"
    );
    let u = start(bytes.len());
    let (c, _, t) = chunk(&u, "upload, finalize", 0, &bytes[..100]);
    assert!(c == 400 && t.contains("finalized with 100 bytes"), "{t}");
    let u = start(bytes.len());
    let (c, st, t) = chunk(&u, "upload, finalize", 0, &bytes);
    assert_eq!((c, st.as_str()), (200, "final"));
    let file: Value = serde_json::from_str(&t).unwrap();
    assert_eq!(file["file"]["state"], "PROCESSING");
    assert_eq!(file["file"]["sizeBytes"], bytes.len().to_string());
    let use_it = json!({"contents": [{"parts": [{"fileData": {"fileUri": file["file"]["uri"], "mimeType": "image/jpeg"}}, {"text": "q"}]}]});
    let (c, t) = call(
        ureq::post(&gen)
            .set("x-goog-api-key", GEMINI_KEY)
            .set("Content-Type", "application/json"),
        &use_it,
    );
    assert!(
        c == 400 && t.contains("is not in an ACTIVE state and usage is not allowed"),
        "{t}"
    );
    let gone = json!({"contents": [{"parts": [{"fileData": {"fileUri": format!("{url}/v1beta/files/nope"), "mimeType": "image/jpeg"}}]}]});
    let (c, t) = call(
        ureq::post(&gen)
            .set("x-goog-api-key", GEMINI_KEY)
            .set("Content-Type", "application/json"),
        &gone,
    );
    assert!(
        c == 403 && t.contains("You do not have permission to access the File nope"),
        "{t}"
    );
}

#[test]
fn gemini_errors_are_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let cats = photo(dir.path(), "cats.jpg", 16, 16);
    let fake = FakeGemini::start(ANSWER, 0);
    let q = Question::new(QUESTION).image(cats.clone());
    let mut s = gemini(&fake);
    s.api_key = Some("wrong".into());
    let e = s.ask(&q).unwrap_err().to_string();
    assert_eq!(
        e,
        "Gemini API: HTTP 400 INVALID_ARGUMENT: API key not valid. Please pass a valid API key."
    );
    let mut s = gemini(&fake);
    s.base_url = format!("{}/nothing-here", fake.server.url);
    let e = s.ask(&q).unwrap_err().to_string();
    assert!(e.starts_with("Gemini API: HTTP 404: Error 404 (Not Found)!!1 404. That’s an error. The requested URL"), "{e}");
    let mut s = gemini(&fake);
    s.model = "gemini-9".into();
    let e = s.ask(&q).unwrap_err().to_string();
    assert!(
        e.contains("HTTP 404 NOT_FOUND: models/gemini-9 is not found"),
        "{e}"
    );
    // Nothing listens on port 9.
    let mut s = gemini(&fake);
    s.base_url = "http://127.0.0.1:9".into();
    let e = s.ask(&q).unwrap_err().to_string();
    assert!(e.starts_with("Gemini API: cannot connect to http://127.0.0.1:9/v1beta/models/gemini-2.5-flash:generateContent"), "{e}");
    // A GIF is not a type Gemini takes; text is not an image.
    let gif = dir.path().join("a.gif");
    std::fs::write(&gif, b"GIF89a\x01\x00\x01\x00\x00\x00\x00;").unwrap();
    let e = gemini(&fake)
        .ask(&Question::new("q").image(gif))
        .unwrap_err()
        .to_string();
    assert!(e.ends_with("a.gif: image/gif is not an image type Gemini takes (image/png, image/jpeg, image/webp, image/heic, image/heif)"), "{e}");
    let txt = dir.path().join("notes.jpg");
    std::fs::write(&txt, "hello").unwrap();
    let e = gemini(&fake)
        .ask(&Question::new("q").image(txt))
        .unwrap_err()
        .to_string();
    assert!(e.contains("notes.jpg: not an image Gemini takes"), "{e}");
    assert!(!e.contains('\n'));
}

#[test]
fn retries_wait_as_the_server_asks_and_stop_when_they_should() {
    let dir = tempfile::tempdir().unwrap();
    let cats = photo(dir.path(), "cats.jpg", 16, 16);
    let q = Question::new(QUESTION).image(cats);
    let fake = FakeGemini::start(ANSWER, 0);
    let s = gemini(&fake);
    let calls = || std::mem::take(&mut fake.state.lock().unwrap().generate_calls);

    // 429 with RetryInfo.retryDelay 1s: waits at least 1 s (the backoff here is 20 ms), then succeeds.
    fake.script(&[Fault::TooMany("1s")]);
    let t = Instant::now();
    assert_eq!(s.ask(&q).unwrap().text, ANSWER);
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    assert_eq!(calls(), 2);
    eprintln!(
        "429 retryDelay 1s: answered after {:.2} s, 2 calls",
        waited.as_secs_f64()
    );

    // 503 twice and a reset connection: backoff, then the answer.
    fake.script(&[Fault::Overloaded, Fault::Reset, Fault::Overloaded]);
    assert_eq!(s.ask(&q).unwrap().text, ANSWER);
    assert_eq!(calls(), 4);

    // 400 is never retried.
    fake.script(&[Fault::BadRequest]);
    let e = api_error(s.ask(&q).unwrap_err());
    assert_eq!((e.status, e.attempts, calls()), (Some(400), 1, 1));
    assert_eq!(
        e.to_string(),
        "Gemini API: HTTP 400 INVALID_ARGUMENT: Request contains an invalid argument."
    );

    // A quota of 0 cannot be waited out.
    fake.script(&[Fault::QuotaZero]);
    let e = s.ask(&q).unwrap_err().to_string();
    assert!(
        e.contains("limit: 0") && e.ends_with("(the quota is 0: waiting cannot help)"),
        "{e}"
    );
    assert_eq!(calls(), 1);

    // A wait longer than the client's limit gives up at once with the server's message.
    fake.script(&[Fault::TooMany("300s")]);
    let t = Instant::now();
    let e = s.ask(&q).unwrap_err().to_string();
    assert!(t.elapsed() < Duration::from_secs(1));
    assert!(
        e.contains("HTTP 429 RESOURCE_EXHAUSTED: You exceeded your current quota")
            && e.contains("asks to wait 300 s, longer than the 120 s"),
        "{e}"
    );
    assert_eq!(calls(), 1);

    // Spent retries: the last error, with the count.
    let mut s2 = s.clone();
    s2.retry.retries = 2;
    fake.script(&[Fault::Overloaded, Fault::Overloaded, Fault::Overloaded]);
    let e = s2.ask(&q).unwrap_err().to_string();
    assert_eq!(e, "Gemini API: HTTP 503 UNAVAILABLE: The model is overloaded. Please try again later. (gave up after 3 attempts)");
    assert_eq!(calls(), 3);
}

#[test]
fn timeouts_per_read_and_total() {
    let fake = FakeGemini::start(ANSWER, 0);
    let mut s = gemini(&fake);
    s.retry.retries = 0;
    s.timeouts.total = Duration::from_millis(500);
    s.timeouts.read = Duration::from_millis(500);
    let q = Question::new(QUESTION);
    fake.script(&[Fault::Stall]);
    let t = Instant::now();
    let e = s.ask(&q).unwrap_err().to_string();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(
        e.starts_with("Gemini API: the answer did not arrive in time: timed out"),
        "{e}"
    );
    // A stream that goes silent after its first chunk: the read timeout ends it, and it is
    // not retried (text was shown).
    s.retry.retries = 3;
    fake.script(&[Fault::Stall]);
    let mut shown = String::new();
    let t = Instant::now();
    let e = s
        .ask_streaming(&q, &mut |x| shown.push_str(x))
        .unwrap_err()
        .to_string();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(shown, "[cat, ");
    assert!(e.starts_with("Gemini API: the stream broke off:"), "{e}");
    assert_eq!(fake.state.lock().unwrap().generate_calls, 2);
}

#[test]
fn lenient_parsing_of_real_world_answers() {
    let fake = FakeGemini::start(ANSWER, 0);
    let s = gemini(&fake);
    let q = Question::new(QUESTION);
    fake.script(&[Fault::NoContent]);
    let a = s.ask(&q).unwrap();
    assert_eq!(
        (a.text.as_str(), a.finish, a.finish_reason.as_deref()),
        ("", Finish::Other, Some("MALFORMED_FUNCTION_CALL"))
    );
    fake.script(&[Fault::NoParts]);
    let a = s.ask(&q).unwrap();
    assert_eq!((a.text.as_str(), a.finish), ("", Finish::Stop));
    fake.script(&[Fault::Thoughts]);
    let a = s.ask(&q).unwrap();
    assert_eq!(
        (a.text.as_str(), a.thoughts.as_str()),
        (ANSWER, "Two tabby cats on a sofa.")
    );
    fake.script(&[Fault::MaxTokens]);
    let a = s.ask(&q).unwrap();
    assert_eq!((a.text.as_str(), a.finish), ("[cat", Finish::Length));
    fake.script(&[Fault::ContentFilter]);
    assert_eq!(s.ask(&q).unwrap().finish, Finish::Filtered);
    fake.script(&[Fault::Blocked]);
    let e = api_error(s.ask(&q).unwrap_err());
    assert_eq!(e.code.as_deref(), Some("SAFETY"));
    assert_eq!(
        e.to_string(),
        "Gemini API SAFETY: the prompt was blocked (SAFETY); no answer was generated"
    );
}

#[test]
fn gemini_streams() {
    let fake = FakeGemini::start(ANSWER, 0);
    let s = gemini(&fake);
    let q = Question::new(QUESTION);
    let calls = || std::mem::take(&mut fake.state.lock().unwrap().generate_calls);
    let mut pieces = vec![];
    let a = s
        .ask_streaming(&q, &mut |t| pieces.push(t.to_string()))
        .unwrap();
    assert_eq!((a.text.as_str(), a.finish), (ANSWER, Finish::Stop));
    assert_eq!(pieces, ["[ca", "t, ", "2]"]);
    assert_eq!(a.usage.total_tokens, Some(18));
    let r = &fake.server.requests()[0];
    assert_eq!(
        r.target,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    );
    calls();

    fake.script(&[Fault::PingsCrlf]);
    let a = s.ask_streaming(&q, &mut |_| {}).unwrap();
    assert_eq!(a.text, ANSWER);
    fake.script(&[Fault::Thoughts]);
    let mut shown = String::new();
    let a = s.ask_streaming(&q, &mut |t| shown.push_str(t)).unwrap();
    assert_eq!(
        (shown.as_str(), a.thoughts.as_str()),
        (ANSWER, "Two tabby cats on a sofa.")
    );
    calls();

    // An error before any text: retried. After text was shown: not retried.
    fake.script(&[Fault::ErrorBeforeText]);
    assert_eq!(s.ask_streaming(&q, &mut |_| {}).unwrap().text, ANSWER);
    assert_eq!(calls(), 2);
    fake.script(&[Fault::ErrorMidStream]);
    let mut shown = String::new();
    let e = s
        .ask_streaming(&q, &mut |t| shown.push_str(t))
        .unwrap_err()
        .to_string();
    assert_eq!(shown, "[ca");
    assert!(e.starts_with("Gemini API: HTTP 500 INTERNAL: the stream broke off with an error: An internal error has occurred."), "{e}");
    assert_eq!(calls(), 1);
    fake.script(&[Fault::Blocked]);
    let e = s.ask_streaming(&q, &mut |_| {}).unwrap_err().to_string();
    assert!(e.contains("the prompt was blocked (SAFETY)"), "{e}");
}

#[test]
fn openai_compatible_servers() {
    let dir = tempfile::tempdir().unwrap();
    let cats = photo(dir.path(), "cats.jpg", 32, 24);
    let q = Question::new(QUESTION).image(cats.clone());

    // A key-checking server (OpenAI).
    let fake = FakeOpenAi::start(ANSWER, Some(OPENAI_KEY), Flavor::OpenAi);
    let s = openai(&fake, Some(OPENAI_KEY));
    let a = s.ask(&q).unwrap();
    assert_eq!(
        (a.text.as_str(), a.finish, a.usage.total_tokens),
        (ANSWER, Finish::Stop, Some(118))
    );
    let reqs = fake.server.requests();
    show("openai-compatible", &reqs);
    let r = &reqs[0];
    assert_eq!(
        (r.method.as_str(), r.target.as_str()),
        ("POST", "/v1/chat/completions")
    );
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {OPENAI_KEY}").as_str())
    );
    let body = r.json().unwrap();
    let part = &body["messages"][0]["content"][0];
    assert_eq!(part["type"], "image_url");
    assert!(part["image_url"]["url"]
        .as_str()
        .unwrap()
        .starts_with("data:image/jpeg;base64,/9j/"));
    assert_eq!(
        body["messages"][0]["content"][1],
        json!({"type": "text", "text": QUESTION})
    );
    assert_eq!(
        fake.state.lock().unwrap().images[0].1,
        std::fs::read(&cats).unwrap()
    );
    let e = openai(&fake, Some("sk-wrong"))
        .ask(&q)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with(&format!("OpenAI-compatible server at {}/v1: HTTP 401 invalid_api_key: Incorrect API key provided", fake.server.url)), "{e}");
    let e = openai(&fake, None).ask(&q).unwrap_err().to_string();
    assert!(
        e.contains("HTTP 401 invalid_request_error: You didn't provide an API key"),
        "{e}"
    );

    // Options in the request.
    fake.server.clear();
    let mut q2 = q.clone();
    q2.system = Some("Answer tersely.".into());
    q2.max_tokens = Some(32);
    q2.temperature = Some(0.0);
    q2.json_schema = Some(json!({"type": "object", "properties": {"animal": {"type": "string"}}}));
    s.ask(&q2).unwrap();
    let body = fake.server.requests()[0].json().unwrap();
    assert_eq!(
        body["messages"][0],
        json!({"role": "system", "content": "Answer tersely."})
    );
    assert_eq!(
        (body["max_tokens"].clone(), body["temperature"].clone()),
        (json!(32), json!(0.0))
    );
    assert_eq!(body["response_format"]["type"], "json_schema");
    assert_eq!(
        body["response_format"]["json_schema"]["schema"]["properties"]["animal"]["type"],
        "string"
    );

    // Streaming: a ping comment, an empty finish reason, a usage chunk without choices, [DONE].
    let mut pieces = vec![];
    let a = s
        .ask_streaming(&q, &mut |t| pieces.push(t.to_string()))
        .unwrap();
    assert_eq!(
        (pieces.concat().as_str(), a.finish, a.usage.total_tokens),
        (ANSWER, Finish::Stop, Some(118))
    );
    let body = fake.server.requests().last().unwrap().json().unwrap();
    assert_eq!(
        (body["stream"].clone(), body["stream_options"].clone()),
        (json!(true), json!({"include_usage": true}))
    );
    fake.script(&[Fault::PingsCrlf]);
    assert_eq!(s.ask_streaming(&q, &mut |_| {}).unwrap().text, ANSWER);
    fake.script(&[Fault::ErrorMidStream]);
    let e = s.ask_streaming(&q, &mut |_| {}).unwrap_err().to_string();
    assert!(
        e.contains(
            "HTTP 500 server_error: the stream broke off with an error: The server had an error"
        ),
        "{e}"
    );
    fake.script(&[Fault::ErrorBeforeText]);
    assert_eq!(s.ask_streaming(&q, &mut |_| {}).unwrap().text, ANSWER);

    // Retry-After, finish reasons, refusals.
    let calls = || std::mem::take(&mut fake.state.lock().unwrap().calls);
    calls();
    fake.script(&[Fault::TooMany("1s")]);
    let t = Instant::now();
    s.ask(&q).unwrap();
    assert!(t.elapsed() >= Duration::from_secs(1));
    assert_eq!(calls(), 2);
    fake.script(&[Fault::BadRequest]);
    assert!(s.ask(&q).is_err());
    assert_eq!(calls(), 1);
    fake.script(&[Fault::MaxTokens]);
    assert_eq!(s.ask(&q).unwrap().finish, Finish::Length);
    fake.script(&[Fault::ContentFilter]);
    assert_eq!(s.ask(&q).unwrap().finish, Finish::Filtered);
    fake.script(&[Fault::Refusal]);
    let a = s.ask(&q).unwrap();
    assert_eq!(
        (a.text.as_str(), a.finish),
        ("I'm sorry, I can't help with that.", Finish::Filtered)
    );

    // A local server with no key: no Authorization header; a bare host gets /v1.
    let local = FakeOpenAi::start(ANSWER, None, Flavor::OpenAi);
    let mut s = openai(&local, None);
    s.base_url = local.server.url.clone();
    assert_eq!(s.ask(&q).unwrap().text, ANSWER);
    let r = &local.server.requests()[0];
    assert!(r.header("authorization").is_none());
    assert_eq!(r.target, "/v1/chat/completions");
    // URLs pass through.
    let url = Question::new(QUESTION).image(tessera::pipelines::ImageSource::Url(
        "https://example.com/cats.jpg".into(),
    ));
    s.ask(&url).unwrap();
    assert_eq!(
        local.state.lock().unwrap().urls,
        ["https://example.com/cats.jpg"]
    );

    // Ollama's and old vLLM's error shapes.
    let ollama = FakeOpenAi::start(ANSWER, None, Flavor::Ollama);
    let e = openai(&ollama, None).ask(&url).unwrap_err().to_string();
    assert!(
        e.ends_with("HTTP 400: image URLs are not supported, send the image as base64 data"),
        "{e}"
    );
    let vllm = FakeOpenAi::start(ANSWER, None, Flavor::OldVllm);
    vllm.script(&[Fault::BadRequest]);
    let e = openai(&vllm, None).ask(&q).unwrap_err().to_string();
    assert!(
        e.ends_with("HTTP 400 invalid_request_error: Invalid request."),
        "{e}"
    );
    let mut wrong = openai(&vllm, None);
    wrong.base_url = format!("{}/api", vllm.server.url);
    let e = wrong.ask(&q).unwrap_err().to_string();
    assert!(
        e.contains(
            "HTTP 404 invalid_request_error: Unknown request URL: POST /api/chat/completions"
        ),
        "{e}"
    );
}

/// `tessera ask` as a user types it, with the environment the SDKs read.
fn tessera_ask(env: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tessera"));
    c.arg("ask").args(args);
    for k in [
        "GOOGLE_API_KEY",
        "GEMINI_API_KEY",
        "GOOGLE_GEMINI_BASE_URL",
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
    ] {
        c.env_remove(k);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn tessera_ask_against_each_fake() {
    let dir = tempfile::tempdir().unwrap();
    let cats = photo(dir.path(), "cats.jpg", 64, 48);
    let cats = cats.to_str().unwrap();
    let gem = FakeGemini::start(ANSWER, 1);
    let genv = [
        ("GEMINI_API_KEY", GEMINI_KEY),
        ("GOOGLE_GEMINI_BASE_URL", gem.server.url.as_str()),
    ];
    let transcript = |what: &str, env: &[(&str, &str)], args: &[&str]| {
        let (code, out, err) = tessera_ask(env, args);
        eprintln!(
            "$ tessera ask {}   # {what}\n{out}{err}(exit {code})",
            args.iter()
                .map(|a| if a.contains(' ') {
                    format!("{a:?}")
                } else {
                    a.to_string()
                })
                .collect::<Vec<_>>()
                .join(" ")
        );
        (code, out, err)
    };
    let (code, out, _) = transcript("fake Gemini, inline", &genv, &[cats, QUESTION]);
    assert_eq!((code, out.as_str()), (0, "[cat, 2]\n"));
    show("tessera ask, Gemini inline", &gem.server.requests());
    gem.server.clear();
    let (code, out, _) = transcript(
        "fake Gemini, Files API",
        &genv,
        &["--upload", "always", cats, QUESTION],
    );
    assert_eq!((code, out.as_str()), (0, "[cat, 2]\n"));
    show("tessera ask, Gemini Files API", &gem.server.requests());
    assert_eq!(gem.live_files(), 0);
    let (code, out, _) = transcript("streamed", &genv, &["--stream", cats, QUESTION]);
    assert_eq!((code, out.as_str()), (0, "[cat, 2]\n"));
    let (code, out, _) = transcript("JSON", &genv, &["--json", cats, QUESTION]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (
            v["text"].clone(),
            v["finish"].clone(),
            v["usage"]["prompt_tokens"].clone()
        ),
        (json!(ANSWER), json!("stop"), json!(270))
    );

    let oai = FakeOpenAi::start(ANSWER, None, Flavor::OpenAi);
    let base = format!("{}/v1", oai.server.url);
    let oenv = [("OPENAI_BASE_URL", base.as_str())];
    let (code, out, _) = transcript(
        "fake OpenAI-compatible (local, no key)",
        &oenv,
        &["--model", "fake-vlm", cats, QUESTION],
    );
    assert_eq!((code, out.as_str()), (0, "[cat, 2]\n"));
    show("tessera ask, OpenAI-compatible", &oai.server.requests());

    // Failures: one line each, non-zero.
    gem.script(&[Fault::Blocked]);
    let schema = dir.path().join("schema.json");
    std::fs::write(&schema, r#"{"type": "array"}"#).unwrap();
    for (what, env, args, needle) in [
        ("no provider", &[][..], vec![cats, QUESTION], "error: invalid config: no model provider configured: set GOOGLE_API_KEY or GEMINI_API_KEY"),
        ("gemini without key", &[("OPENAI_API_KEY", "x")][..], vec!["--provider", "gemini", cats, QUESTION], "error: invalid config: no Gemini API key: set GOOGLE_API_KEY or GEMINI_API_KEY"),
        ("blocked", &genv[..], vec![cats, QUESTION], "error: Gemini API SAFETY: the prompt was blocked (SAFETY)"),
        ("wrong key", &[("GEMINI_API_KEY", "nope"), ("GOOGLE_GEMINI_BASE_URL", gem.server.url.as_str())][..], vec![cats, QUESTION], "error: Gemini API: HTTP 400 INVALID_ARGUMENT: API key not valid."),
        ("no question", &genv[..], vec![cats], "error: no question: give it after the images"),
        ("bad temperature", &genv[..], vec!["--temperature", "-1", cats, QUESTION], "error: invalid config: temperature must be in [0, 2], got -1"),
        ("bad upload mode", &genv[..], vec!["--upload", "sometimes", cats, QUESTION], "error: invalid config: unknown upload mode \"sometimes\""),
        ("schema answered with non-JSON", &genv[..], vec!["--json-schema", schema.to_str().unwrap(), cats, QUESTION], "error: the answer is not the JSON asked for"),
        ("missing image", &genv[..], vec!["/nonexistent/cats.jpg", QUESTION], "error: /nonexistent/cats.jpg: No such file or directory"),
    ] {
        let (code, _, err) = transcript(what, env, &args);
        assert_ne!(code, 0, "{what}");
        assert_eq!(err.lines().count(), 1, "{what}: {err}");
        assert!(err.starts_with(needle), "{what}: {err}");
    }
    // A cut answer is printed, and said to be cut.
    gem.script(&[Fault::MaxTokens]);
    let (code, out, err) = transcript("cut at the token limit", &genv, &[cats, QUESTION]);
    assert_eq!(
        (code, out.as_str(), err.trim()),
        (
            0,
            "[cat\n",
            "warning: the answer was cut at the token limit (MAX_TOKENS)"
        )
    );
}
