//! `GET /metrics` in Prometheus' text format (the official `prometheus-client` crate):
//! requests and latencies by route and status, queue depth, batch sizes and durations, items
//! (images, texts) computed, and what was refused or dropped.
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteOnly {
    pub route: String,
}

/// One queue: a model's tower (`image`, `text`, `detect`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    pub model: String,
    pub queue: String,
}

type Hist<L> = Family<L, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    requests: Family<RouteLabels, Counter>,
    latency: Hist<RouteOnly>,
    depth: Family<QueueLabels, Gauge>,
    batch_size: Hist<QueueLabels>,
    batch_seconds: Hist<QueueLabels>,
    items: Family<QueueLabels, Counter>,
    per_second: Family<QueueLabels, Gauge<f64, AtomicU64>>,
    rejected: Family<QueueLabels, Counter>,
    cancelled: Family<QueueLabels, Counter>,
}

fn latency_buckets() -> Histogram {
    // 0.5 ms to about 65 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 18))
}

fn size_buckets() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 10))
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("tessera");
        let requests = Family::<RouteLabels, Counter>::default();
        registry.register(
            "requests",
            "HTTP requests by route and status (499: the client went away)",
            requests.clone(),
        );
        let latency: Hist<RouteOnly> = Family::new_with_constructor(latency_buckets);
        registry.register(
            "request_duration_seconds",
            "HTTP request latency by route",
            latency.clone(),
        );
        let depth = Family::<QueueLabels, Gauge>::default();
        registry.register("queue_depth", "Items waiting for a batch", depth.clone());
        let batch_size: Hist<QueueLabels> = Family::new_with_constructor(size_buckets);
        registry.register("batch_size", "Items per forward", batch_size.clone());
        let batch_seconds: Hist<QueueLabels> = Family::new_with_constructor(latency_buckets);
        registry.register(
            "batch_duration_seconds",
            "Forward time per batch",
            batch_seconds.clone(),
        );
        let items = Family::<QueueLabels, Counter>::default();
        registry.register(
            "items",
            "Images or texts computed (rate() gives images/s)",
            items.clone(),
        );
        let per_second = Family::<QueueLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "batch_items_per_second",
            "Items per second of the last batch's forward",
            per_second.clone(),
        );
        let rejected = Family::<QueueLabels, Counter>::default();
        registry.register(
            "rejected",
            "Requests refused because the queue was full (HTTP 429)",
            rejected.clone(),
        );
        let cancelled = Family::<QueueLabels, Counter>::default();
        registry.register(
            "cancelled_items",
            "Queued items dropped before the model because their client went away",
            cancelled.clone(),
        );
        Arc::new(Metrics {
            registry,
            requests,
            latency,
            depth,
            batch_size,
            batch_seconds,
            items,
            per_second,
            rejected,
            cancelled,
        })
    }

    pub fn request(&self, route: &str, status: u16, took: Duration) {
        self.requests
            .get_or_create(&RouteLabels {
                route: route.to_string(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteOnly {
                route: route.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    pub fn queue_depth(&self, q: &QueueLabels, n: usize) {
        self.depth.get_or_create(q).set(n as i64);
    }

    pub fn batch_done(&self, q: &QueueLabels, n: usize, took: Duration) {
        self.batch_size.get_or_create(q).observe(n as f64);
        self.batch_seconds
            .get_or_create(q)
            .observe(took.as_secs_f64());
        self.items.get_or_create(q).inc_by(n as u64);
        if took > Duration::ZERO {
            self.per_second
                .get_or_create(q)
                .set(n as f64 / took.as_secs_f64());
        }
    }

    pub fn rejected(&self, q: &QueueLabels) {
        self.rejected.get_or_create(q).inc();
    }

    pub fn cancelled(&self, q: &QueueLabels, n: usize) {
        if n > 0 {
            self.cancelled.get_or_create(q).inc_by(n as u64);
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
