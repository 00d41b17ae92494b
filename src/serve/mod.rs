//! `tessera serve`: an HTTP model server (axum on tokio, TEI's stack) for every loaded model by
//! name, with dynamic batching ([`batch`]), Prometheus metrics ([`metrics`]) and OpenAI-shaped
//! JSON ([`api`]).
//!
//! Routes: `POST /v1/embeddings` (OpenAI's body; images with infinity's `"modality": "image"` or
//! as `image_url` content parts), `POST /v1/zero-shot`, `POST /v1/classify`, `POST /v1/detect`,
//! `GET /v1/models`, `GET /health`, `GET /ready` (200 once every model is loaded and warmed up),
//! `GET /metrics`.
//!
//! A request is validated, its images decoded and preprocessed on a bounded worker pool, and its
//! items queued on the model's tower; a full queue answers 429 with `Retry-After` at once. Each
//! request has a deadline (504 past it); a client that disconnects drops its queued items.
//! Shutdown (the future given to [`Server::run`]) stops accepting, finishes in-flight requests,
//! drains the queues and returns.
pub mod api;
pub mod batch;
pub mod metrics;
pub mod models;

use crate::{Error, Result};
use api::{ApiError, ApiJson, ImageRef, Input};
use axum::extract::{MatchedPath, State};
use axum::http::{header, Request, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use batch::BatchPolicy;
use metrics::Metrics;
use models::{ModelSpec, PreparedImage, Served};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, Semaphore};

pub use models::LoadSettings;

/// Everything `tessera serve` is configured with.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub models: Vec<ModelSpec>,
    pub load: LoadSettings,
    pub policy: BatchPolicy,
    /// Request bodies larger than this are refused with 413.
    pub payload_limit: usize,
    /// Inputs per request, at most (422 past it).
    pub max_client_batch: usize,
    /// Images declaring more pixels are refused (422) before they are decoded.
    pub max_image_pixels: u64,
    /// A request not answered within this gets 504 and its queued items are dropped.
    pub timeout: Duration,
    /// When set, every route but `/health` and `/ready` needs `Authorization: Bearer KEY`.
    pub api_key: Option<String>,
    /// Origins allowed to call from a browser (CORS); empty: CORS off.
    pub cors_origins: Vec<String>,
    /// Whether inputs may be http(s) URLs the server downloads (off: data URIs only).
    pub allow_urls: bool,
    /// Images decoded and preprocessed at once.
    pub workers: usize,
}

impl ServeConfig {
    /// Defaults as TEI and infinity choose them, scaled to images.
    pub fn new(models: Vec<ModelSpec>, load: LoadSettings) -> ServeConfig {
        ServeConfig {
            models,
            load,
            policy: BatchPolicy {
                max_batch: 32,
                max_wait: Duration::from_millis(5),
                max_queue: 512,
            },
            payload_limit: 32 << 20,
            max_client_batch: 64,
            max_image_pixels: 2 * crate::image::limits::DEFAULT_MAX_IMAGE_PIXELS,
            timeout: Duration::from_secs(60),
            api_key: None,
            cors_origins: vec![],
            allow_urls: true,
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }

    fn check(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::Config(m.into()));
        if self.models.is_empty() {
            return bad("serve needs at least one --model");
        }
        let mut names: Vec<&str> = self.models.iter().map(|m| m.name.as_str()).collect();
        names.sort();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::Config(format!(
                "two models are named {:?}: name them with --model NAME=SOURCE",
                w[0]
            )));
        }
        if self.policy.max_batch == 0 || self.policy.max_queue == 0 {
            return bad("--max-batch and --max-queue must be at least 1");
        }
        if self.policy.max_queue < self.max_client_batch {
            return bad(
                "--max-queue must be at least --max-client-batch (else a full request never fits)",
            );
        }
        if self.max_client_batch == 0 || self.workers == 0 || self.payload_limit == 0 {
            return bad("--max-client-batch, --workers and --payload-limit must be at least 1");
        }
        if self.timeout.is_zero() {
            return bad("--timeout-ms must be at least 1");
        }
        if self.api_key.as_deref().is_some_and(|k| k.trim().is_empty()) {
            return bad("the API key is empty");
        }
        Ok(())
    }
}

/// What every handler shares.
struct AppState {
    config: ServeConfig,
    /// Set once every model is loaded and warmed up.
    models: OnceLock<BTreeMap<String, Arc<Served>>>,
    metrics: Arc<Metrics>,
    workers: Semaphore,
}

type Shared = Arc<AppState>;

/// A handler's outcome: a value or an HTTP error.
type Reply<T> = std::result::Result<T, ApiError>;

/// A bound server: models load once [`Server::run`] starts, while `/health` already answers.
pub struct Server {
    listener: tokio::net::TcpListener,
    state: Shared,
    ready_tx: tokio::sync::watch::Sender<bool>,
}

impl Server {
    /// Binds `addr` (port 0: any free port, see [`Server::local_addr`]).
    pub async fn bind(addr: SocketAddr, config: ServeConfig) -> Result<Server> {
        config.check()?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Error::Msg(format!("cannot listen on {addr}: {e}")))?;
        let state = Arc::new(AppState {
            workers: Semaphore::new(config.workers),
            config,
            models: OnceLock::new(),
            metrics: Metrics::new(),
        });
        Ok(Server {
            listener,
            state,
            ready_tx: tokio::sync::watch::channel(false).0,
        })
    }

    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener
            .local_addr()
            .map_err(|e| Error::Msg(format!("listening socket: {e}")))
    }

    /// Turns true once every model is loaded and warmed up (what `/ready` reports).
    pub fn ready(&self) -> tokio::sync::watch::Receiver<bool> {
        self.ready_tx.subscribe()
    }

    /// Loads the models, serves until `shutdown` completes (or loading fails), then finishes
    /// in-flight requests and drains every queue.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let Server {
            listener,
            state,
            ready_tx,
        } = self;
        let failed: Arc<Mutex<Option<Error>>> = Arc::default();
        let stop = Arc::new(tokio::sync::Notify::new());
        {
            let (state, failed, stop) = (state.clone(), failed.clone(), stop.clone());
            tokio::task::spawn_blocking(move || match load_all(&state) {
                Ok(m) => {
                    let _ = state.models.set(m);
                    let _ = ready_tx.send(true);
                }
                Err(e) => {
                    *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    stop.notify_one();
                }
            });
        }
        let app = router(state.clone());
        let signal = async move {
            tokio::select! {
                _ = shutdown => {}
                _ = stop.notified() => {}
            }
        };
        axum::serve(listener, app)
            .with_graceful_shutdown(signal)
            .await
            .map_err(|e| Error::Msg(format!("server: {e}")))?;
        // Every connection is done: what is still queued belongs to nobody, but finishing
        // it keeps the model threads' shutdown simple.
        if let Some(models) = state.models.get() {
            let models: Vec<Arc<Served>> = models.values().cloned().collect();
            let _ =
                tokio::task::spawn_blocking(move || models.iter().for_each(|m| m.close())).await;
        }
        let e = failed.lock().unwrap_or_else(|p| p.into_inner()).take();
        match e {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

fn load_all(state: &AppState) -> Result<BTreeMap<String, Arc<Served>>> {
    let c = &state.config;
    let mut out = BTreeMap::new();
    for spec in &c.models {
        let m = models::load(spec, &c.load, c.policy, &state.metrics).map_err(|e| {
            Error::Msg(format!(
                "model {} ({}): {e}",
                spec.name,
                spec.source.to_string_lossy()
            ))
        })?;
        models::warm_up(&m)
            .map_err(|e| Error::Msg(format!("model {}: warm-up failed: {e}", spec.name)))?;
        out.insert(spec.name.clone(), Arc::new(m));
    }
    Ok(out)
}

fn router(state: Shared) -> Router {
    let mut app = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics_text))
        .route("/v1/models", get(list_models))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/zero-shot", post(zero_shot))
        .route("/v1/classify", post(classify))
        .route("/v1/detect", post(detect))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .layer(axum::extract::DefaultBodyLimit::max(
            state.config.payload_limit,
        ))
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth))
        .layer(axum::middleware::from_fn_with_state(state.clone(), record));
    if !state.config.cors_origins.is_empty() {
        let origins: Vec<header::HeaderValue> = state
            .config
            .cors_origins
            .iter()
            .filter_map(|o| header::HeaderValue::from_str(o).ok())
            .collect();
        app = app.layer(
            tower_http::cors::CorsLayer::new()
                .allow_origin(origins)
                .allow_methods([axum::http::Method::GET, axum::http::Method::POST])
                .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE]),
        );
    }
    app.with_state(state)
}

/// Counts every request by route and status with its latency; a request whose client went
/// away before the answer is counted as 499 (nginx's "client closed request").
async fn record(State(s): State<Shared>, req: Request<axum::body::Body>, next: Next) -> Response {
    struct Guard {
        metrics: Arc<Metrics>,
        route: String,
        t0: Instant,
        status: Option<u16>,
    }
    impl Drop for Guard {
        fn drop(&mut self) {
            self.metrics
                .request(&self.route, self.status.unwrap_or(499), self.t0.elapsed());
        }
    }
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched".to_string(), |p| p.as_str().to_string());
    let mut g = Guard {
        metrics: s.metrics.clone(),
        route,
        t0: Instant::now(),
        status: None,
    };
    let r = next.run(req).await;
    g.status = Some(r.status().as_u16());
    r
}

/// `Authorization: Bearer KEY`, compared in constant time, on every route but the probes.
async fn auth(State(s): State<Shared>, req: Request<axum::body::Body>, next: Next) -> Response {
    let Some(key) = &s.config.api_key else {
        return next.run(req).await;
    };
    if matches!(req.uri().path(), "/health" | "/ready")
        || req.method() == axum::http::Method::OPTIONS
    {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !keys_match(given, key) {
        let mut r = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing or wrong API key: send Authorization: Bearer <key>",
        )
        .into_response();
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return r;
    }
    next.run(req).await
}

/// Constant time in the key's content (hashing first makes the lengths equal too).
fn keys_match(given: &str, key: &str) -> bool {
    use sha2::Digest as _;
    use subtle::ConstantTimeEq;
    let h = |s: &str| sha2::Sha256::digest(s.as_bytes());
    h(given).as_slice().ct_eq(h(key).as_slice()).into()
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn ready(State(s): State<Shared>) -> Response {
    match s.models.get() {
        Some(m) => {
            Json(json!({"status": "ready", "models": m.keys().collect::<Vec<_>>()})).into_response()
        }
        None => {
            let mut e = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "models are loading");
            e.retry_after = Some(1);
            e.into_response()
        }
    }
}

async fn metrics_text(State(s): State<Shared>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
        .into_response()
}

async fn list_models(State(s): State<Shared>) -> Reply<Json<Value>> {
    let models = loaded(&s)?;
    let data: Vec<Value> = models
        .iter()
        .map(|(name, m)| {
            json!({
                "id": name,
                "object": "model",
                "owned_by": "tessera",
                "family": m.family(),
                "tasks": m.tasks(),
                "queued": m.depth(),
            })
        })
        .collect();
    Ok(Json(json!({"object": "list", "data": data})))
}

fn loaded(s: &AppState) -> Reply<&BTreeMap<String, Arc<Served>>> {
    s.models.get().ok_or_else(|| {
        let mut e = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "models are loading");
        e.retry_after = Some(1);
        e
    })
}

/// The model a request names, which must do `task`; without a name, the only model that does.
fn pick(s: &AppState, name: Option<&str>, task: &str) -> Reply<(String, Arc<Served>)> {
    let models = loaded(s)?;
    let doing: Vec<&String> = models
        .iter()
        .filter(|(_, m)| m.tasks().contains(&task))
        .map(|(n, _)| n)
        .collect();
    match name {
        Some(n) => match models.get(n) {
            Some(m) if m.tasks().contains(&task) => Ok((n.to_string(), m.clone())),
            Some(m) => Err(ApiError::bad_request(format!(
                "model {n:?} does not do {task} (it does {})",
                m.tasks().join(", ")
            ))),
            None => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!(
                    "model {n:?} is not served here; served: {}",
                    models.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )),
        },
        None => match doing.as_slice() {
            [one] => Ok(((*one).clone(), models[*one].clone())),
            [] => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no served model does {task}"),
            )),
            many => Err(ApiError::unprocessable(format!(
                "several models do {task}: name one in \"model\" ({})",
                many.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        },
    }
}

fn check_count(s: &AppState, n: usize) -> Reply<()> {
    if n > s.config.max_client_batch {
        return Err(ApiError::unprocessable(format!(
            "{n} inputs in one request; the server takes at most {} (--max-client-batch)",
            s.config.max_client_batch
        )));
    }
    Ok(())
}

fn overloaded(o: batch::Overloaded) -> ApiError {
    let mut e = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!(
            "the model is overloaded ({} of {} queue slots taken): retry later",
            o.queued, o.capacity
        ),
    );
    e.retry_after = Some(1);
    e
}

/// Awaits every item's answer within the request's deadline. Dropping the receivers (timeout,
/// or the client going away, which drops this future) tells the batcher to skip them.
async fn answers<O>(
    s: &AppState,
    deadline: Instant,
    rxs: Vec<oneshot::Receiver<std::result::Result<O, String>>>,
) -> Reply<Vec<O>> {
    let all = async {
        let mut out = Vec::with_capacity(rxs.len());
        for rx in rxs {
            match rx.await {
                Ok(Ok(o)) => out.push(o),
                Ok(Err(m)) => return Err(ApiError::internal(format!("inference failed: {m}"))),
                Err(_) => {
                    return Err(ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the server is shutting down",
                    ))
                }
            }
        }
        Ok(out)
    };
    match tokio::time::timeout_at(deadline.into(), all).await {
        Ok(r) => r,
        Err(_) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "the request did not finish within {} ms (--timeout-ms)",
                s.config.timeout.as_millis()
            ),
        )),
    }
}

/// Decodes and preprocesses every image on the worker pool (at most `--workers` at once),
/// failing on the first bad one with 422 naming it.
async fn prepare(
    s: &Shared,
    served: &Arc<Served>,
    images: Vec<(usize, ImageRef)>,
    field: &str,
    deadline: Instant,
) -> Reply<Vec<PreparedImage>> {
    let mut tasks = Vec::with_capacity(images.len());
    for (i, r) in images {
        if matches!(r, ImageRef::Url(_)) && !s.config.allow_urls {
            return Err(ApiError::unprocessable(format!(
                "{field}[{i}]: this server takes images as data URIs only (URL inputs are off)"
            )));
        }
        let (s, served) = (s.clone(), served.clone());
        tasks.push((
            i,
            tokio::spawn(async move {
                let _permit = s
                    .workers
                    .acquire()
                    .await
                    .map_err(|_| "the server is shutting down".to_string())?;
                let limit = s.config.max_image_pixels.div_ceil(2);
                tokio::task::spawn_blocking(
                    move || -> std::result::Result<PreparedImage, String> {
                        let (bytes, origin) = match r {
                            ImageRef::Bytes(b) => (b, "<data URI>".to_string()),
                            ImageRef::Url(u) => (
                                crate::pipelines::ImageSource::Url(u.clone())
                                    .bytes()
                                    .map_err(|e| e.to_string())?,
                                u,
                            ),
                        };
                        let img = crate::image::decode_with_limit(
                            &bytes,
                            Path::new(&origin),
                            Some(limit),
                        )
                        .map_err(|e| e.to_string())?;
                        models::prepare_image(&served, &img).map_err(|e| e.to_string())
                    },
                )
                .await
                .map_err(|_| "image preprocessing failed".to_string())?
            }),
        ));
    }
    let mut out = Vec::with_capacity(tasks.len());
    for (i, t) in tasks {
        let r = tokio::time::timeout_at(deadline.into(), t)
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "decoding the images took past the deadline",
                )
            })?;
        match r {
            Ok(Ok(p)) => out.push(p),
            Ok(Err(m)) => return Err(ApiError::unprocessable(format!("{field}[{i}]: {m}"))),
            Err(_) => return Err(ApiError::internal("image preprocessing failed")),
        }
    }
    Ok(out)
}

fn pixels(p: Vec<PreparedImage>) -> Reply<Vec<candle_core::Tensor>> {
    p.into_iter()
        .map(|x| match x {
            PreparedImage::Pixels(t) => Ok(t),
            PreparedImage::Detr(_) => Err(ApiError::internal("internal: DETR input for a ViT")),
        })
        .collect()
}

/// Images of a request whose every input must be an image.
fn only_images(value: &Value, field: &str) -> Reply<Vec<(usize, ImageRef)>> {
    api::parse_inputs(value, api::Modality::Image, field)?
        .into_iter()
        .enumerate()
        .map(|(i, x)| match x {
            Input::Image(r) => Ok((i, r)),
            Input::Text(_) => Err(ApiError::unprocessable(format!(
                "{field}[{i}]: expected an image"
            ))),
        })
        .collect()
}

async fn embeddings(
    State(s): State<Shared>,
    ApiJson(req): ApiJson<api::EmbeddingsRequest>,
) -> Reply<Json<Value>> {
    let deadline = Instant::now() + s.config.timeout;
    let inputs = api::parse_inputs(&req.input, req.modality, "input")?;
    check_count(&s, inputs.len())?;
    let (name, served) = pick(&s, req.model.as_deref(), "embeddings")?;
    let Served::Clip(clip) = &*served else {
        return Err(ApiError::internal(
            "internal: embeddings from a non-CLIP model",
        ));
    };
    let width = clip.embedder.model.config.projection_dim;
    if let Some(d) = req.dimensions.filter(|&d| d != width) {
        return Err(ApiError::unprocessable(format!(
            "dimensions {d}: {name} gives {width}-wide embeddings only"
        )));
    }
    let mut texts = vec![];
    let mut images = vec![];
    for (i, x) in inputs.iter().enumerate() {
        match x {
            Input::Text(t) => texts.push((i, t.clone())),
            Input::Image(r) => images.push((i, r.clone())),
        }
    }
    let mut tokens = 0usize;
    if !texts.is_empty() {
        let refs: Vec<&str> = texts.iter().map(|(_, t)| t.as_str()).collect();
        let max = clip.embedder.model.text.config.max_position_embeddings;
        let (_, mask) = clip.embedder.tokenizer.encode_batch(&refs, max);
        tokens = mask.iter().flatten().map(|&m| m as usize).sum();
    }
    // Slots first: a full queue refuses before any image is decoded.
    let img_slots = clip.images.reserve(images.len()).map_err(overloaded)?;
    let txt_slots = clip.texts.reserve(texts.len()).map_err(overloaded)?;
    let img_idx: Vec<usize> = images.iter().map(|(i, _)| *i).collect();
    let px = pixels(prepare(&s, &served, images, "input", deadline).await?)?;
    // Both towers are queued before either is awaited: they run at the same time.
    let img_rx = img_slots.submit(px).map_err(overloaded)?;
    let txt_rx = txt_slots
        .submit(texts.iter().map(|(_, t)| t.clone()).collect())
        .map_err(overloaded)?;
    let img = answers(&s, deadline, img_rx).await?;
    let txt = answers(&s, deadline, txt_rx).await?;
    let mut rows: Vec<Option<Vec<f32>>> = vec![None; inputs.len()];
    for (i, v) in img_idx.into_iter().zip(img) {
        rows[i] = Some(v);
    }
    for ((i, _), v) in texts.iter().zip(txt) {
        rows[*i] = Some(v);
    }
    let data: Vec<Value> = rows
        .into_iter()
        .enumerate()
        .map(|(index, v)| {
            let v = v.unwrap_or_default();
            let embedding = match req.encoding_format {
                api::EncodingFormat::Float => json!(v),
                api::EncodingFormat::Base64 => json!(api::base64_f32(&v)),
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": name,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    })))
}

/// Per image, its labels sorted by probability (the pipelines' ranking: NaN is an error).
fn scores_reply(
    model: &str,
    probs: Vec<Vec<f32>>,
    label: impl Fn(usize) -> String,
    top_k: Option<usize>,
) -> Reply<Json<Value>> {
    let ranked = crate::pipelines::ranked(probs, label, top_k)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let data: Vec<Value> = ranked
        .into_iter()
        .enumerate()
        .map(|(index, scores)| json!({"index": index, "scores": scores}))
        .collect();
    Ok(Json(
        json!({"object": "list", "model": model, "data": data}),
    ))
}

async fn zero_shot(
    State(s): State<Shared>,
    ApiJson(req): ApiJson<api::ZeroShotRequest>,
) -> Reply<Json<Value>> {
    let deadline = Instant::now() + s.config.timeout;
    let images = only_images(&req.images, "images")?;
    check_count(&s, images.len())?;
    if req.labels.is_empty() {
        return Err(ApiError::unprocessable("labels is empty"));
    }
    check_count(&s, req.labels.len())?;
    if let Some(l) = req.labels.iter().find(|l| l.trim().is_empty()) {
        return Err(ApiError::unprocessable(format!("empty label {l:?}")));
    }
    if req.top_k == Some(0) {
        return Err(ApiError::unprocessable("top_k must be at least 1"));
    }
    let prompts: Vec<String> = req
        .labels
        .iter()
        .map(|l| crate::pipelines::fill_template(&req.template, l))
        .collect::<Result<_>>()
        .map_err(|e| ApiError::unprocessable(e.to_string()))?;
    let (name, served) = pick(&s, req.model.as_deref(), "zero-shot")?;
    let Served::Clip(clip) = &*served else {
        return Err(ApiError::internal(
            "internal: zero-shot from a non-CLIP model",
        ));
    };
    let img_slots = clip.images.reserve(images.len()).map_err(overloaded)?;
    let txt_slots = clip.texts.reserve(prompts.len()).map_err(overloaded)?;
    let px = pixels(prepare(&s, &served, images, "images", deadline).await?)?;
    let img_rx = img_slots.submit(px).map_err(overloaded)?;
    let txt_rx = txt_slots.submit(prompts).map_err(overloaded)?;
    let img = answers(&s, deadline, img_rx).await?;
    let txt = answers(&s, deadline, txt_rx).await?;
    let probs = models::zero_shot_probs(&clip.embedder, &img, &txt)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    scores_reply(&name, probs, |i| req.labels[i].clone(), req.top_k)
}

async fn classify(
    State(s): State<Shared>,
    ApiJson(req): ApiJson<api::ClassifyRequest>,
) -> Reply<Json<Value>> {
    let deadline = Instant::now() + s.config.timeout;
    let images = only_images(&req.images, "images")?;
    check_count(&s, images.len())?;
    if req.top_k == Some(0) {
        return Err(ApiError::unprocessable("top_k must be at least 1"));
    }
    let (name, served) = pick(&s, req.model.as_deref(), "classify")?;
    let Served::Classifier(c) = &*served else {
        return Err(ApiError::internal(
            "internal: classify from a non-classifier",
        ));
    };
    let slots = c.images.reserve(images.len()).map_err(overloaded)?;
    let px = pixels(prepare(&s, &served, images, "images", deadline).await?)?;
    let rx = slots.submit(px).map_err(overloaded)?;
    let probs = answers(&s, deadline, rx).await?;
    let head = c.pipeline.classifier();
    scores_reply(&name, probs, |i| head.label(i), req.top_k)
}

async fn detect(
    State(s): State<Shared>,
    ApiJson(req): ApiJson<api::DetectRequest>,
) -> Reply<Json<Value>> {
    let deadline = Instant::now() + s.config.timeout;
    if !(0.0..1.0).contains(&req.threshold) {
        return Err(ApiError::unprocessable(format!(
            "threshold {} must be in [0, 1)",
            req.threshold
        )));
    }
    let images = only_images(&req.images, "images")?;
    check_count(&s, images.len())?;
    let (name, served) = pick(&s, req.model.as_deref(), "detect")?;
    let Served::Detector(d) = &*served else {
        return Err(ApiError::internal("internal: detect from a non-detector"));
    };
    let slots = d.images.reserve(images.len()).map_err(overloaded)?;
    let xs: Vec<models::DetrInput> = prepare(&s, &served, images, "images", deadline)
        .await?
        .into_iter()
        .filter_map(|p| match p {
            PreparedImage::Detr(x) => Some(x),
            PreparedImage::Pixels(_) => None,
        })
        .collect();
    let rx = slots.submit(xs).map_err(overloaded)?;
    let boxes = answers(&s, deadline, rx).await?;
    let config = &d.pipeline.model.config;
    let data: Vec<Value> = boxes
        .into_iter()
        .enumerate()
        .map(|(index, bs)| {
            let dets: Vec<Value> = bs
                .into_iter()
                .filter(|b| b.score > req.threshold && b.score.is_finite())
                .map(|b| {
                    let [x0, y0, x1, y1] = b.bbox;
                    json!({
                        "label": config.label(b.label),
                        "index": b.label,
                        "score": b.score,
                        "box": {"xmin": x0, "ymin": y0, "xmax": x1, "ymax": y1},
                        "query": b.query,
                    })
                })
                .collect();
            json!({"index": index, "detections": dets})
        })
        .collect();
    Ok(Json(json!({"object": "list", "model": name, "data": data})))
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_compare_by_content() {
        assert!(super::keys_match("s3cret", "s3cret"));
        assert!(!super::keys_match("s3cres", "s3cret"));
        assert!(!super::keys_match("", "s3cret"));
        assert!(!super::keys_match("s3cret-and-more", "s3cret"));
    }
}
