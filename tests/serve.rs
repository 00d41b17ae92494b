//! `tessera serve` end to end over loopback: every route answers what the pipelines answer
//! directly, bad requests get 4xx with a JSON error, the key is enforced, a full queue sheds
//! with 429, and shutdown drains in-flight work. (Throughput, a soak and infinity side by side
//! are `tools/serve_load.sh`.)
mod common;
use base64::Engine as _;
use candle_core::DType;
use common::{bpe, tiny_clip};
use serde_json::{json, Value};
use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::time::Duration;
use tessera::models::LoadOptions;
use tessera::pipelines::{
    ClipEmbedder, ImageClassification, ImageSource, ObjectDetection, ZeroShotClassifier,
};
use tessera::serve::models::ModelSpec;
use tessera::serve::{LoadSettings, ServeConfig, Server};

fn png(rgb: [u8; 3], w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            rgb[0].wrapping_add((x * 3) as u8),
            rgb[1],
            rgb[2].wrapping_add(y as u8),
        ])
    });
    let mut out = std::io::Cursor::new(vec![]);
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn data_uri(bytes: &[u8]) -> String {
    format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

struct Running {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<std::thread::JoinHandle<tessera::Result<()>>>,
}

impl Running {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends the shutdown signal and waits for `run` to return.
    fn stop(mut self) -> tessera::Result<()> {
        let _ = self.stop.take().unwrap().send(());
        self.done.take().unwrap().join().unwrap()
    }
}

fn start(config: ServeConfig) -> Running {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let done = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let server = Server::bind("127.0.0.1:0".parse().unwrap(), config).await?;
            let mut ready = server.ready();
            let addr = server.local_addr()?;
            tokio::spawn(async move {
                let _ = ready.wait_for(|r| *r).await;
                let _ = addr_tx.send(addr);
            });
            server
                .run(async move {
                    let _ = stop_rx.await;
                })
                .await
        })
    });
    let addr = addr_rx
        .recv_timeout(Duration::from_secs(120))
        .expect("server ready");
    Running {
        addr,
        stop: Some(stop),
        done: Some(done),
    }
}

/// (status, JSON body, headers we look at) of a request; 4xx/5xx are answers too.
fn call(
    method: &str,
    url: &str,
    body: Option<&Value>,
    key: Option<&str>,
) -> (u16, Value, Option<String>) {
    let mut req = ureq::request(method, url).timeout(Duration::from_secs(60));
    if let Some(k) = key {
        req = req.set("Authorization", &format!("Bearer {k}"));
    }
    let r = match body {
        Some(b) => req.send_json(b.clone()),
        None => req.call(),
    };
    let resp = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{url}: {e}"),
    };
    let status = resp.status();
    let retry = resp.header("Retry-After").map(str::to_string);
    let text = resp.into_string().unwrap();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, v, retry)
}

fn post(r: &Running, path: &str, body: Value) -> (u16, Value) {
    let (s, v, _) = call("POST", &r.url(path), Some(&body), None);
    (s, v)
}

fn raw_post(addr: SocketAddr, path: &str, body: &[u8]) -> (u16, Value) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    let _ = s.write_all(body);
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status: u16 = out.split(' ').nth(1).unwrap().parse().unwrap();
    let json = out.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(json).unwrap_or(Value::Null))
}

fn error_message(v: &Value) -> &str {
    v["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("not a JSON error: {v}"))
}

fn settings() -> LoadSettings {
    LoadSettings {
        device: candle_core::Device::Cpu,
        dtype: DType::F32.into(),
        backend: None,
        bpe: bpe(),
    }
}

fn vec_f32(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn assert_close(a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= tol, "{x} vs {y}");
    }
}

#[test]
fn every_route_answers_what_the_pipelines_answer() {
    let d = tempfile::tempdir().unwrap();
    let clip_dir = d.path().join("clip");
    tiny_clip(&clip_dir);
    let vit = common::fixture("hf_vit_cls");
    let detr = common::fixture("detection/detr_hf");
    let mut c = ServeConfig::new(
        vec![
            ModelSpec::parse(&clip_dir),
            ModelSpec::parse(format!("vit={}", vit.display())),
            ModelSpec::parse(format!("detr={}", detr.display())),
        ],
        settings(),
    );
    c.max_client_batch = 8;
    let r = start(c);

    let imgs = [
        png([200, 30, 30], 50, 40),
        png([10, 30, 220], 37, 61),
        png([90, 200, 20], 64, 64),
    ];
    let uris: Vec<String> = imgs.iter().map(|b| data_uri(b)).collect();
    let sources: Vec<ImageSource> = imgs.iter().map(|b| ImageSource::Bytes(b.clone())).collect();
    let decoded: Vec<_> = sources.iter().map(|s| s.load().unwrap()).collect();

    // Embeddings: images (infinity's modality), texts, content parts mixed; float and base64.
    let e = ClipEmbedder::from_pretrained(&clip_dir, &bpe(), &LoadOptions::default()).unwrap();
    let want_img = e.image_embeds(&decoded).unwrap().to_vec2::<f32>().unwrap();
    let texts = vec!["a red square".to_string(), "a photo of a dog".to_string()];
    let want_txt = e.text_embeds(&texts).unwrap().to_vec2::<f32>().unwrap();
    let (s, v) = post(
        &r,
        "/v1/embeddings",
        json!({"model": "clip", "modality": "image", "input": uris}),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], "clip");
    for (i, want) in want_img.iter().enumerate() {
        assert_eq!(v["data"][i]["index"], i);
        assert_eq!(v["data"][i]["object"], "embedding");
        assert_close(&vec_f32(&v["data"][i]["embedding"]), want, 1e-5);
    }
    let (s, v) = post(
        &r,
        "/v1/embeddings",
        json!({"input": texts, "encoding_format": "base64"}),
    );
    assert_eq!(s, 200, "{v}");
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() >= 8);
    for (i, want) in want_txt.iter().enumerate() {
        let b = base64::engine::general_purpose::STANDARD
            .decode(v["data"][i]["embedding"].as_str().unwrap())
            .unwrap();
        let got: Vec<f32> = b
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_close(&got, want, 1e-5);
    }
    let (s, v) = post(
        &r,
        "/v1/embeddings",
        json!({"input": [{"type": "image_url", "image_url": {"url": uris[1]}}, {"type": "text", "text": texts[0]}]}),
    );
    assert_eq!(s, 200, "{v}");
    assert_close(&vec_f32(&v["data"][0]["embedding"]), &want_img[1], 1e-5);
    assert_close(&vec_f32(&v["data"][1]["embedding"]), &want_txt[0], 1e-5);

    // Zero-shot equals the pipeline's scores, sorted.
    let labels: Vec<String> = ["cat", "dog", "ladybug"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let want = ZeroShotClassifier::new(e)
        .classify(&sources, &labels, "a photo of a {}.")
        .unwrap();
    let (s, v) = post(
        &r,
        "/v1/zero-shot",
        json!({"images": uris, "labels": labels, "template": "a photo of a {}."}),
    );
    assert_eq!(s, 200, "{v}");
    for (i, w) in want.iter().enumerate() {
        let got = v["data"][i]["scores"].as_array().unwrap();
        assert_eq!(got.len(), 3);
        for (g, w) in got.iter().zip(w) {
            assert_eq!(g["label"], w.label.as_str());
            assert!((g["score"].as_f64().unwrap() as f32 - w.score).abs() < 1e-5);
        }
    }

    // Classification: top_k as the pipeline's.
    let cls = ImageClassification::from_pretrained(&vit, &LoadOptions::default().dtype(DType::F32))
        .unwrap();
    let want = cls.classify(&sources, Some(2)).unwrap();
    let (s, v) = post(
        &r,
        "/v1/classify",
        json!({"model": "vit", "images": uris, "top_k": 2}),
    );
    assert_eq!(s, 200, "{v}");
    for (i, w) in want.iter().enumerate() {
        let got = v["data"][i]["scores"].as_array().unwrap();
        assert_eq!(got.len(), 2);
        for (g, w) in got.iter().zip(w) {
            assert_eq!(g["label"], w.label.as_str());
            assert!((g["score"].as_f64().unwrap() as f32 - w.score).abs() < 1e-5);
        }
    }

    // Detection: the pipeline's boxes, in transformers' {score, label, box} shape.
    let det =
        ObjectDetection::from_pretrained(&detr, &LoadOptions::default().dtype(DType::F32)).unwrap();
    // Each image alone: the server never pads an image for a batch neighbour's sake.
    let want: Vec<_> = sources
        .iter()
        .map(|s| det.detect(std::slice::from_ref(s), 0.1).unwrap().remove(0))
        .collect();
    assert!(want.iter().any(|w| !w.is_empty()));
    let (s, v) = post(
        &r,
        "/v1/detect",
        json!({"model": "detr", "images": uris, "threshold": 0.1}),
    );
    assert_eq!(s, 200, "{v}");
    for (i, w) in want.iter().enumerate() {
        let got = v["data"][i]["detections"].as_array().unwrap();
        assert_eq!(got.len(), w.len(), "image {i}");
        for (g, w) in got.iter().zip(w) {
            assert_eq!(g["label"], w.label.as_str());
            assert!((g["score"].as_f64().unwrap() as f32 - w.score).abs() < 1e-4);
            let b = [
                &g["box"]["xmin"],
                &g["box"]["ymin"],
                &g["box"]["xmax"],
                &g["box"]["ymax"],
            ];
            for (x, y) in b.iter().zip(w.bbox) {
                assert!((x.as_f64().unwrap() as f32 - y).abs() < 1e-2, "{x} vs {y}");
            }
        }
    }

    // Listing, probes and metrics.
    let (s, v, _) = call("GET", &r.url("/v1/models"), None, None);
    assert_eq!(s, 200);
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["clip", "detr", "vit"]);
    assert_eq!(call("GET", &r.url("/health"), None, None).0, 200);
    assert_eq!(call("GET", &r.url("/ready"), None, None).0, 200);
    let (s, m, _) = call("GET", &r.url("/metrics"), None, None);
    assert_eq!(s, 200);
    let m = m.as_str().unwrap().to_string();
    for want in [
        "tessera_requests_total{route=\"/v1/embeddings\",status=\"200\"} 3",
        "tessera_request_duration_seconds_bucket{le=",
        "tessera_batch_size_count{model=\"clip\",queue=\"image\"}",
        "tessera_items_total{model=\"detr\",queue=\"detect\"}",
        "tessera_queue_depth{model=\"vit\",queue=\"image\"} 0",
    ] {
        assert!(m.contains(want), "metrics lack {want}:\n{m}");
    }
    r.stop().unwrap();
}

#[test]
fn bad_requests_get_4xx_with_a_json_error_and_good_ones_still_succeed() {
    let d = tempfile::tempdir().unwrap();
    let clip_dir = d.path().join("clip");
    tiny_clip(&clip_dir);
    let mut c = ServeConfig::new(
        vec![ModelSpec::parse(format!("clip={}", clip_dir.display()))],
        settings(),
    );
    c.payload_limit = 64 << 10;
    c.max_client_batch = 4;
    c.max_image_pixels = 10_000;
    c.allow_urls = false;
    let r = start(c);
    let good = json!({"modality": "image", "input": [data_uri(&png([1, 2, 3], 20, 20))]});
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (b"{not json".to_vec(), 400, "not valid JSON"),
        (br#"{"input": 5}"#.to_vec(), 422, "token arrays"),
        (
            br#"{"inputs": ["x"]}"#.to_vec(),
            422,
            "missing field `input`",
        ),
        (
            json!({"modality": "image", "input": ["data:image/png;base64,aGVsbG8gd29ybGQ="]})
                .to_string()
                .into_bytes(),
            422,
            "input[0]: <data URI>: cannot decode image",
        ),
        (
            json!({"modality": "image", "input": [data_uri(&png([1, 2, 3], 200, 200))]})
                .to_string()
                .into_bytes(),
            422,
            "input[0]",
        ),
        (
            json!({"modality": "image", "input": ["https://example.com/a.png"]})
                .to_string()
                .into_bytes(),
            422,
            "data URIs only",
        ),
        (
            json!({"input": ["a", "b", "c", "d", "e"]})
                .to_string()
                .into_bytes(),
            422,
            "at most 4",
        ),
        (
            json!({"model": "nope", "input": ["a"]})
                .to_string()
                .into_bytes(),
            404,
            "served: clip",
        ),
        (
            json!({"input": ["a"], "dimensions": 3})
                .to_string()
                .into_bytes(),
            422,
            "16-wide",
        ),
        (
            json!({"input": "x".repeat(100 << 10)})
                .to_string()
                .into_bytes(),
            413,
            "payload limit",
        ),
        (
            json!({"images": [], "labels": ["a"]})
                .to_string()
                .into_bytes(),
            422,
            "images is empty",
        ),
    ];
    for (body, status, want) in cases {
        let path = if body.starts_with(b"{\"images\"") {
            "/v1/zero-shot"
        } else {
            "/v1/embeddings"
        };
        let (s, v) = raw_post(r.addr, path, &body);
        assert_eq!(
            s,
            status,
            "{}: {v}",
            String::from_utf8_lossy(&body[..body.len().min(80)])
        );
        assert!(
            error_message(&v).contains(want),
            "{} lacks {want:?}",
            error_message(&v)
        );
        // A good request right after every bad one.
        assert_eq!(post(&r, "/v1/embeddings", good.clone()).0, 200);
    }
    let (s, v) = post(
        &r,
        "/v1/classify",
        json!({"images": [data_uri(&png([1, 2, 3], 8, 8))]}),
    );
    assert_eq!(s, 404, "{v}");
    let (s, v) = post(
        &r,
        "/v1/zero-shot",
        json!({"images": [data_uri(&png([1, 2, 3], 8, 8))], "labels": ["a"], "template": "no slot"}),
    );
    assert_eq!(s, 422, "{v}");
    assert!(error_message(&v).contains("has no {}"));
    let (s, v, _) = call("GET", &r.url("/v2/nothing"), None, None);
    assert_eq!((s, error_message(&v)), (404, "no such route"));
    // A client that sends half a body and hangs up leaves the server serving.
    {
        let mut s = std::net::TcpStream::connect(r.addr).unwrap();
        write!(
            s,
            "POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{{\"input\":"
        )
        .unwrap();
    }
    assert_eq!(post(&r, "/v1/embeddings", good).0, 200);
    r.stop().unwrap();
}

#[test]
fn the_api_key_is_required_everywhere_but_the_probes() {
    let d = tempfile::tempdir().unwrap();
    tiny_clip(&d.path().join("clip"));
    let mut c = ServeConfig::new(vec![ModelSpec::parse(d.path().join("clip"))], settings());
    c.api_key = Some("s3cret".into());
    let r = start(c);
    let body = json!({"input": ["a cat"]});
    for key in [None, Some("wrong"), Some("s3cret-and-more")] {
        let (s, v, _) = call("POST", &r.url("/v1/embeddings"), Some(&body), key);
        assert_eq!(s, 401, "{key:?}: {v}");
        assert!(error_message(&v).contains("API key"));
        assert_eq!(call("GET", &r.url("/metrics"), None, key).0, 401);
    }
    assert_eq!(
        call(
            "POST",
            &r.url("/v1/embeddings"),
            Some(&body),
            Some("s3cret")
        )
        .0,
        200
    );
    assert_eq!(call("GET", &r.url("/health"), None, None).0, 200);
    assert_eq!(call("GET", &r.url("/ready"), None, None).0, 200);
    r.stop().unwrap();
}

#[test]
fn a_full_queue_sheds_with_429_and_shutdown_drains_what_was_admitted() {
    let d = tempfile::tempdir().unwrap();
    tiny_clip(&d.path().join("clip"));
    let mut c = ServeConfig::new(vec![ModelSpec::parse(d.path().join("clip"))], settings());
    c.policy.max_batch = 1;
    c.policy.max_queue = 8;
    c.max_client_batch = 8;
    let r = start(c);
    let img = data_uri(&png([9, 9, 9], 300, 300));
    let body = json!({"modality": "image", "input": vec![img; 8]});
    let url = r.url("/v1/embeddings");
    let clients: Vec<_> = (0..12)
        .map(|_| {
            let (url, body) = (url.clone(), body.clone());
            std::thread::spawn(move || call("POST", &url, Some(&body), None))
        })
        .collect();
    let results: Vec<_> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let ok: Vec<_> = results.iter().filter(|r| r.0 == 200).collect();
    let shed: Vec<_> = results.iter().filter(|r| r.0 == 429).collect();
    assert_eq!(ok.len() + shed.len(), results.len(), "only 200 or 429");
    assert!(
        !ok.is_empty() && !shed.is_empty(),
        "{} ok, {} shed",
        ok.len(),
        shed.len()
    );
    for (_, v, retry) in &shed {
        assert_eq!(retry.as_deref(), Some("1"));
        assert!(error_message(v).contains("overloaded"));
    }
    for (_, v, _) in &ok {
        let first = vec_f32(&v["data"][0]["embedding"]);
        assert_close(&vec_f32(&v["data"][7]["embedding"]), &first, 1e-6);
    }
    // Shutdown while a request is queued: it is answered, then run returns.
    let inflight = {
        let (url, body) = (url.clone(), body.clone());
        std::thread::spawn(move || call("POST", &url, Some(&body), None))
    };
    // Stop once the request is admitted (its first image computed or queued).
    let before = items_done(&r);
    let t0 = std::time::Instant::now();
    while items_done(&r) == before && !inflight.is_finished() {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the request never ran"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    r.stop().unwrap();
    assert_eq!(inflight.join().unwrap().0, 200);
}

/// Images the CLIP image tower has computed, from /metrics.
fn items_done(r: &Running) -> u64 {
    let (_, m, _) = call("GET", &r.url("/metrics"), None, None);
    m.as_str()
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("tessera_items_total{model=\"clip\",queue=\"image\"} "))
        .map_or(0, |n| n.trim().parse().unwrap())
}

#[test]
fn the_cli_serves_until_sigterm_and_exits_zero() {
    let d = tempfile::tempdir().unwrap();
    tiny_clip(&d.path().join("clip"));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["serve", "--port", "0", "--bpe"])
        .arg(bpe())
        .arg("--model")
        .arg(d.path().join("clip"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    use std::io::BufRead as _;
    err.read_line(&mut line).unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    line.clear();
    err.read_line(&mut line).unwrap();
    assert!(line.starts_with("ready: clip"), "{line}");
    let (s, v, _) = call(
        "POST",
        &format!("http://{addr}/v1/embeddings"),
        Some(&json!({"input": "a dog"})),
        None,
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 16);
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    let mut rest = String::new();
    err.read_to_string(&mut rest).unwrap();
    assert!(status.success(), "{status}: {rest}");
    assert!(rest.contains("stopped"), "{rest}");
}
