//! Fixtures for serving tests (feature `testing`): tiny seeded models over the fixture
//! vocabulary of `strata-testkit`, the fixture catalog and queries, index builds, and
//! [`TestServer`], a real server on loopback with a blocking client. Used by this crate's tests
//! and by strata-serving-postgres's (the pgvector parity test).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use burn::tensor::Device;
use serde_json::Value;
use strata_data::Item;
use strata_model::{LoadOptions, TwoTower};
use strata_retrieval::{Criterion, HnswParams, Thresholds, derive_thresholds};
use strata_testkit::{COLOURS, EXTRA, THINGS, fixture_words as words};

use crate::server::{self, load_model};
use crate::{
    BuildOptions, IndexBackend, ItemIndex, ModelStamp, RunningServer, SearchBackend,
    SearchResponse, ServedModel, ServerConfig,
};

/// A tiny random strata model directory (seeded), truncating at 16 tokens.
pub fn tiny_model(root: &Path, name: &str, seed: u64) -> PathBuf {
    let dir = root.join(name);
    let device = Device::flex();
    device.seed(seed);
    let cfg = strata_testkit::tiny_tower(strata_testkit::vocab_size(&words()), Some(16));
    let model = TwoTower::init(&cfg, &device);
    let tok = strata_testkit::word_tokenizer(&words(), 16);
    strata_model::save_model(&dir, &model, &cfg, &tok).unwrap();
    dir
}

/// Items "<extra> <colour> <thing>" and "<colour> <thing>", taxonomy "tools > <thing>s".
pub fn fixture_items() -> Vec<Item> {
    let mut out = Vec::new();
    for (c, colour) in COLOURS.iter().enumerate() {
        for (t, thing) in THINGS.iter().enumerate() {
            for (v, extra) in [None, Some(EXTRA[(c + t) % EXTRA.len()])]
                .iter()
                .enumerate()
            {
                let name = match extra {
                    Some(e) => format!("{e} {colour} {thing}"),
                    None => format!("{colour} {thing}"),
                };
                let mut it = Item::new(format!("i{c}{t}{v}"), name);
                it.taxonomy = vec!["tools".into(), format!("{thing}s")];
                out.push(it);
            }
        }
    }
    out
}

/// Queries over the fixture vocabulary: colour + thing, "cordless <thing>", and three extra words.
pub fn fixture_queries() -> Vec<String> {
    let mut q = Vec::new();
    for (i, c) in COLOURS.iter().enumerate() {
        q.push(format!("{c} {}", THINGS[i]));
        q.push(format!("cordless {}", THINGS[(i + 2) % THINGS.len()]));
    }
    q.push("heavy duty steel".into());
    q
}

/// The model stamp an index built with `model` records.
pub fn stamp(model: &ServedModel) -> ModelStamp {
    ModelStamp {
        path: model.name.clone(),
        fingerprint: model.fingerprint.clone(),
        precision: model.encoder.precision(),
    }
}

/// The model directory `dir` loaded for serving on the CPU.
pub fn served(dir: &Path) -> ServedModel {
    load_model(
        dir,
        &LoadOptions::default(),
        "cpu",
        strata_model::BatchLimits::default(),
    )
    .unwrap()
}

/// Exact search: ANN parameters large enough to search the whole small graph.
pub fn exhaustive_hnsw() -> HnswParams {
    HnswParams {
        connectivity: 16,
        expansion_add: 200,
        expansion_search: 200,
    }
}

/// Builds an index of `items` at `dir` with `model`.
pub fn build_index(
    dir: &Path,
    model: &ServedModel,
    items: &[Item],
    opts: &BuildOptions,
) -> ItemIndex {
    ItemIndex::build(dir, items, &*model.encoder, stamp(model), opts).unwrap()
}

/// Thresholds derived from six labeled scores (balanced accuracy).
pub fn fixture_thresholds() -> Thresholds {
    derive_thresholds(
        &[(0.9, 2), (0.8, 2), (0.5, 1), (0.4, 1), (0.1, 0), (-0.2, 0)],
        Criterion::BalancedAccuracy,
    )
    .unwrap()
}

/// A two-worker tokio runtime.
pub fn test_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A server on 127.0.0.1 (ephemeral port) with a blocking HTTP client; shut down on drop.
pub struct TestServer {
    /// The runtime the server (and its backend's connections) run on.
    pub rt: tokio::runtime::Runtime,
    server: Option<RunningServer>,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// A client that returns error statuses as responses.
    pub agent: ureq::Agent,
    /// The API key sent with [`TestServer::post`] and [`TestServer::get`].
    pub key: Option<String>,
}

impl TestServer {
    /// Serves `backend` on a new [`test_runtime`].
    pub fn start(model: ServedModel, backend: IndexBackend, cfg: ServerConfig) -> Self {
        Self::start_on(test_runtime(), model, Arc::new(backend), cfg)
    }

    /// Serves `backend` on `rt` (the runtime whose tasks drive the backend's connections).
    pub fn start_on(
        rt: tokio::runtime::Runtime,
        model: ServedModel,
        backend: Arc<dyn SearchBackend>,
        cfg: ServerConfig,
    ) -> Self {
        let key = cfg.api_key.clone();
        let server = rt
            .block_on(server::start(cfg, model, backend, false))
            .unwrap();
        assert!(server.addr.ip().is_loopback());
        let base = format!("http://{}", server.addr);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        TestServer {
            rt,
            server: Some(server),
            base,
            agent,
            key,
        }
    }

    /// POSTs `body` as JSON to `path` with an optional API key: the status and the JSON (or text) answer.
    pub fn post_raw(&self, path: &str, body: &str, key: Option<&str>) -> (u16, Value) {
        let mut req = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json");
        if let Some(k) = key {
            req = req.header("authorization", &format!("Bearer {k}"));
        }
        let mut r = req.send(body).unwrap();
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// POSTs `body` with the server's key.
    pub fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.post_raw(path, &body.to_string(), self.key.as_deref())
    }

    /// GETs `path` with the server's key: status and body text.
    pub fn get(&self, path: &str) -> (u16, String) {
        let mut req = self.agent.get(format!("{}{path}", self.base));
        if let Some(k) = &self.key {
            req = req.header("authorization", &format!("Bearer {k}"));
        }
        let mut r = req.call().unwrap();
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    }

    /// `/search` with `body`; asserts a 200.
    pub fn search(&self, body: Value) -> SearchResponse {
        let (s, v) = self.post("/search", body);
        assert_eq!(s, 200, "{v}");
        serde_json::from_value(v).unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            self.rt.block_on(s.shutdown()).unwrap();
        }
    }
}
