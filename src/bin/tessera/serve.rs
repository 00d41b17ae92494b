//! `tessera serve`: every `--model` behind one HTTP server (see `tessera::serve`).
use anyhow::{bail, Result};
use clap::Parser;
use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tessera::serve::batch::BatchPolicy;
use tessera::serve::models::ModelSpec;
use tessera::serve::{LoadSettings, ServeConfig, Server};

/// Where the API key is read from when `--api-key` is not given.
const API_KEY_ENV: &str = "TESSERA_API_KEY";

#[derive(Parser)]
pub struct Args {
    /// A checkpoint to serve, `[NAME=]DIR|HUB_ID` (repeatable); requests name it by NAME
    /// (default: the hub id or the directory's name).
    #[arg(long = "model", required = true)]
    models: Vec<OsString>,
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// 0: any free port (the one chosen is printed).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Items (images or texts) per forward, at most.
    #[arg(long, default_value_t = 32)]
    max_batch: usize,
    /// How long a batch waits to fill after its first item, in milliseconds.
    #[arg(long, default_value_t = 5)]
    max_wait_ms: u64,
    /// Items queued per model tower; past it requests get 429 with Retry-After.
    #[arg(long, default_value_t = 512)]
    max_queue: usize,
    /// Largest request body in bytes (413 past it).
    #[arg(long, default_value_t = 32 << 20)]
    payload_limit: usize,
    /// Inputs per request, at most (422 past it).
    #[arg(long, default_value_t = 64)]
    max_client_batch: usize,
    /// Images declaring more pixels are refused before decoding (default: Pillow's
    /// decompression-bomb error threshold).
    #[arg(long, default_value_t = 2 * tessera::image::limits::DEFAULT_MAX_IMAGE_PIXELS)]
    max_image_pixels: u64,
    /// Per-request deadline in milliseconds (504 past it; queued work is dropped).
    #[arg(long, default_value_t = 60_000)]
    timeout_ms: u64,
    /// Require `Authorization: Bearer KEY` (else the TESSERA_API_KEY environment variable;
    /// unset: no key). /health and /ready stay open for probes.
    #[arg(long)]
    api_key: Option<String>,
    /// Allow browsers from this origin (CORS; repeatable). Default: CORS off.
    #[arg(long = "cors-allow-origin")]
    cors: Vec<String>,
    /// Take images as data URIs only, never downloading http(s) URLs.
    #[arg(long)]
    no_url_inputs: bool,
    /// Images decoded and preprocessed at once (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
    #[command(flatten)]
    dtype: super::common::Dtype,
    #[command(flatten)]
    processor: super::common::Processor,
    #[command(flatten)]
    bpe: super::common::Bpe,
}

pub fn run(a: Args) -> Result<()> {
    if a.max_wait_ms > 10_000 {
        bail!(
            "--max-wait-ms {} is more than 10 s: batches would wait too long",
            a.max_wait_ms
        );
    }
    let api_key = a
        .api_key
        .clone()
        .or_else(|| std::env::var(API_KEY_ENV).ok());
    let device = a.dtype.device.open()?;
    let load = LoadSettings {
        dtype: super::common::dtype(&a.dtype.dtype, &device)?,
        device,
        backend: a.processor.backend,
        bpe: a.bpe.bpe.clone(),
    };
    let mut c = ServeConfig::new(a.models.iter().map(ModelSpec::parse).collect(), load);
    c.policy = BatchPolicy {
        max_batch: a.max_batch,
        max_wait: Duration::from_millis(a.max_wait_ms),
        max_queue: a.max_queue,
    };
    c.payload_limit = a.payload_limit;
    c.max_client_batch = a.max_client_batch;
    c.max_image_pixels = a.max_image_pixels;
    c.timeout = Duration::from_millis(a.timeout_ms);
    c.api_key = api_key;
    c.cors_origins = a.cors.clone();
    c.allow_urls = !a.no_url_inputs;
    if let Some(w) = a.workers {
        c.workers = w;
    }
    let names: Vec<String> = c.models.iter().map(|m| m.name.clone()).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tessera-http")
        .build()?;
    rt.block_on(async move {
        let server = Server::bind(SocketAddr::new(a.host, a.port), c).await?;
        eprintln!(
            "listening on http://{} (loading {})",
            server.local_addr()?,
            names.join(", ")
        );
        let mut ready = server.ready();
        tokio::spawn(async move {
            if ready.wait_for(|r| *r).await.is_ok() {
                eprintln!("ready: {}", names.join(", "));
            }
        });
        server.run(shutdown_signal()).await?;
        eprintln!("stopped: every request answered, queues drained");
        Ok(())
    })
}

/// SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    eprintln!("shutting down: finishing in-flight requests");
}
