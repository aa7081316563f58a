//! Prometheus metrics of the server: request counts by route and status, request latency by
//! route, embedding batch sizes, the time embedding requests wait in each lane's queue, and
//! the time a successful `/search` spends in each of its stages.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// The server's metrics registry.
pub struct Metrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    latency: Family<Labels, Histogram>,
    batch: Histogram,
    queue: Family<Labels, Histogram>,
    stages: Family<Labels, Histogram>,
}

/// The stages of a `/search`, in order; their times add up to the handler's time.
pub const SEARCH_STAGES: [&str; 4] = [
    // Request checks, including counting the query's tokens.
    "validate",
    // The query embedding: the wait in the search lane, then the model call (tokenizer and
    // query tower) of the batch it joined.
    "embed",
    // Retrieval in the backend (HNSW or exact, BM25, fusion) and the scores of each hit.
    "search", // Strata of the hits and the JSON body.
    "respond",
];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("strata");
        let requests = Family::<Labels, Counter>::default();
        let latency = Family::<Labels, Histogram>::new_with_constructor(|| {
            // 0.1 ms .. ~3.3 s.
            Histogram::new(exponential_buckets(0.0001, 2.0, 16))
        });
        let batch = Histogram::new(exponential_buckets(1.0, 2.0, 10));
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            latency.clone(),
        );
        registry.register(
            "embed_batch_size",
            "Texts per embedding batch",
            batch.clone(),
        );
        let queue = Family::<Labels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 16))
        });
        registry.register(
            "embed_queue_seconds",
            "Time an embedding request waits before its model run, by lane (search, bulk)",
            queue.clone(),
        );
        let stages = Family::<Labels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.00005, 2.0, 16))
        });
        registry.register(
            "search_stage_seconds",
            "Time a successful /search spends in each stage (validate, embed, search, respond)",
            stages.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            batch,
            queue,
            stages,
        }
    }

    /// Records one request.
    pub fn observe_request(&self, route: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&vec![
                ("route", route.to_string()),
                ("status", status.to_string()),
            ])
            .inc();
        self.latency
            .get_or_create(&vec![("route", route.to_string())])
            .observe(seconds);
    }

    /// Records the size of one embedding batch.
    pub fn observe_batch(&self, texts: usize) {
        self.batch.observe(texts as f64);
    }

    /// Records how long a request waited in `lane`'s queue.
    pub fn observe_queue(&self, lane: &'static str, seconds: f64) {
        self.queue
            .get_or_create(&vec![("lane", lane.to_string())])
            .observe(seconds);
    }

    /// Records the time one `/search` spent in `stage` (one of [`SEARCH_STAGES`]).
    pub fn observe_stage(&self, stage: &'static str, seconds: f64) {
        self.stages
            .get_or_create(&vec![("stage", stage.to_string())])
            .observe(seconds);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
