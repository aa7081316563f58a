//! `strata serve`: the embedding and search server (strata-serving).

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use strata_serving::server::serve_blocking;
use strata_serving::{BatchConfig, IndexBackend, ItemIndex, Limits, ServerConfig};

use super::index::ModelArgs;

#[derive(Args, Clone)]
pub struct ServeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Index directory built by `strata index build` with the same model.
    #[arg(long, required_unless_present = "backend", conflicts_with = "backend")]
    pub index: Option<PathBuf>,
    /// Serve from PostgreSQL + pgvector instead: a postgres:// URL holding a table written
    /// by `strata index export` with the same model.
    #[arg(long)]
    pub backend: Option<String>,
    /// Table of the PostgreSQL backend.
    #[arg(long, default_value = "strata_items")]
    pub table: String,
    /// Connections the PostgreSQL backend keeps open.
    #[arg(long, default_value_t = 8)]
    pub pg_pool: usize,
    /// pgvector's hnsw.ef_search for the PostgreSQL backend.
    #[arg(long, default_value_t = 100)]
    pub pg_ef_search: u32,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Server settings shared by `strata serve` and `strata bench serve`.
#[derive(Args, Clone)]
pub struct ServerArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port to listen on (0: any free port).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Most texts per embedding batch (dynamic batching).
    #[arg(long, default_value_t = 32)]
    pub max_batch: usize,
    /// Most tokens per embedding call: bulk requests of long texts run in several calls, with
    /// waiting searches served between them.
    #[arg(long, default_value_t = 2048)]
    pub max_batch_tokens: usize,
    /// Longest wait for more requests before a batch runs, in milliseconds (0: a batch runs
    /// as soon as the model is free, and the requests that arrive meanwhile form the next).
    #[arg(long, default_value_t = 0)]
    pub max_wait_ms: u64,
    /// Most inputs in one embedding request (413 above).
    #[arg(long, default_value_t = 32)]
    pub max_client_batch: usize,
    /// Most characters in one input or query (413 above).
    #[arg(long, default_value_t = 10_000)]
    pub max_input_chars: usize,
    /// Largest request body in bytes (413 above).
    #[arg(long, default_value_t = 2 << 20)]
    pub max_body_bytes: usize,
    /// Largest search depth k (422 above).
    #[arg(long, default_value_t = 1000)]
    pub max_k: usize,
    /// Truncate over-long inputs unless a request says `truncate: false`.
    #[arg(long)]
    pub auto_truncate: bool,
    /// Require `Authorization: Bearer <key>` with the key read from this environment variable.
    #[arg(long)]
    pub api_key_env: Option<String>,
    /// Hybrid search: candidates from each retriever (as `strata eval --candidates`).
    #[arg(long, default_value_t = 1000)]
    pub candidates: usize,
    /// Answer semantic searches exactly instead of with the HNSW graph.
    #[arg(long)]
    pub exact: bool,
    /// HNSW candidates per semantic search (the beam width `ef`), instead of the index's
    /// `ef_search`: lower is faster, higher finds more of the exact top k (below 64 acts as 64). The index files are
    /// not changed (`strata index hnsw --hnsw-ef-search` changes the stored value).
    #[arg(long, conflicts_with = "exact", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub ef_search: Option<u64>,
    /// Seconds a client has to send a request's headers (also the idle keep-alive limit).
    #[arg(long, default_value_t = 10.0)]
    pub header_timeout_secs: f64,
    /// Seconds a client has to send a request's body (408 past it).
    #[arg(long, default_value_t = 30.0)]
    pub body_timeout_secs: f64,
    /// Most connections served at once (further ones wait in the listen backlog).
    #[arg(long, default_value_t = 512)]
    pub max_connections: usize,
}

fn seconds(flag: &str, v: f64) -> anyhow::Result<Duration> {
    anyhow::ensure!(
        v.is_finite() && v > 0.0 && v <= 86_400.0,
        "{flag} must lie in (0, 86400] seconds, got {v}"
    );
    Ok(Duration::from_secs_f64(v))
}

impl ServerArgs {
    pub fn config(&self) -> anyhow::Result<ServerConfig> {
        let api_key = match &self.api_key_env {
            Some(var) => {
                let k = std::env::var(var)
                    .with_context(|| format!("--api-key-env {var}: the variable is not set"))?;
                anyhow::ensure!(!k.is_empty(), "--api-key-env {var}: the variable is empty");
                Some(k)
            }
            None => None,
        };
        anyhow::ensure!(
            self.max_connections > 0,
            "--max-connections must be at least 1"
        );
        Ok(ServerConfig {
            host: self.host,
            port: self.port,
            limits: Limits {
                max_client_batch: self.max_client_batch,
                max_input_chars: self.max_input_chars,
                max_body_bytes: self.max_body_bytes,
                max_k: self.max_k,
            },
            batch: BatchConfig {
                max_batch: self.max_batch,
                max_batch_tokens: self.max_batch_tokens.max(1),
                max_wait: Duration::from_millis(self.max_wait_ms),
            },
            api_key,
            auto_truncate: self.auto_truncate,
            header_timeout: seconds("--header-timeout-secs", self.header_timeout_secs)?,
            body_timeout: seconds("--body-timeout-secs", self.body_timeout_secs)?,
            max_connections: self.max_connections,
        })
    }

    /// Opens the index as a search backend, refusing an index built with another model.
    pub fn backend(
        &self,
        index: &std::path::Path,
        model: &strata_serving::ServedModel,
    ) -> anyhow::Result<Arc<IndexBackend>> {
        let mut idx = ItemIndex::open(index)?;
        idx.manifest()
            .check_model(&model.name, &model.fingerprint)?;
        if let Some(ef) = self.ef_search {
            idx.set_ef_search(ef as usize)?;
        }
        let mut b = IndexBackend::new(idx);
        b.candidates = self.candidates;
        b.exact_semantic = self.exact;
        Ok(Arc::new(b))
    }
}

pub fn run(a: ServeArgs) -> anyhow::Result<()> {
    let config = a.server.config()?;
    let model = a.model.load()?;
    if let Some(url) = &a.backend {
        return serve_postgres(&a, url, config, model);
    }
    let index = a.index.as_deref().context("give --index or --backend")?;
    let backend = a.server.backend(index, &model)?;
    let items = backend.index().len();
    serve_blocking(config, model, backend, |addr| {
        eprintln!("serving {items} items on http://{addr} (Ctrl-C to stop)");
    })
}

/// `strata serve --backend postgres://...`: the pool is opened on the server's runtime,
/// whose tasks drive its connections.
fn serve_postgres(
    a: &ServeArgs,
    url: &str,
    config: strata_serving::ServerConfig,
    model: strata_serving::ServedModel,
) -> anyhow::Result<()> {
    use strata_serving_postgres::{BackendOptions, PgSearchBackend};
    anyhow::ensure!(
        !a.server.exact,
        "--exact applies to an index directory; the PostgreSQL backend searches its HNSW index"
    );
    anyhow::ensure!(
        a.server.ef_search.is_none(),
        "--ef-search applies to an index directory; give the PostgreSQL backend --pg-ef-search"
    );
    let options = BackendOptions {
        pool_size: a.pg_pool,
        ef_search: a.pg_ef_search,
        hybrid_candidates: a.server.candidates.min(1000),
        ..Default::default()
    };
    strata_serving::server::runtime()?.block_on(async move {
        let backend = PgSearchBackend::connect(url, &a.table, options)
            .await
            .with_context(|| format!("opening table {} of the PostgreSQL backend", a.table))?;
        let items = strata_serving::SearchBackend::info(&backend).items;
        let server = strata_serving::server::start(config, model, Arc::new(backend), true).await?;
        eprintln!(
            "serving {items} items from PostgreSQL table {} on http://{} (Ctrl-C to stop)",
            a.table, server.addr
        );
        server.wait().await
    })
}

/// `strata bench serve`.
#[derive(Args, Clone)]
pub struct ServeBenchArgs {
    /// A running server to load (loopback only); without it a server is started in-process
    /// from --model and --index (on a free port).
    #[arg(long)]
    pub url: Option<String>,
    /// Model directory for the in-process server.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Index directory for the in-process server.
    #[arg(long)]
    pub index: Option<PathBuf>,
    /// Compute device for the in-process server.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Inference arithmetic on the CPU: f32, or int8 (dynamically quantized linear layers,
    /// ~1.8x faster item embedding; README "CPU inference engine and int8" gives its
    /// accuracy cost).
    #[arg(long, default_value = "f32")]
    pub precision: strata_model::Precision,
    #[command(flatten)]
    pub server: ServerArgs,
    /// Endpoint under load.
    #[arg(long, value_enum, default_value = "search")]
    pub endpoint: Endpoint,
    /// Query texts, one per line.
    #[arg(long)]
    pub queries: Option<PathBuf>,
    /// Judgments file whose distinct queries are sent (instead of --queries).
    #[arg(long)]
    pub judgments: Option<PathBuf>,
    /// Requests per run.
    #[arg(long, default_value_t = 1000)]
    pub requests: usize,
    /// Duration cap per run, in seconds.
    #[arg(long, default_value_t = 60.0)]
    pub max_seconds: f64,
    /// Target rate in requests per second (open loop); without it, as fast as possible.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Concurrent connections.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Search mode: semantic, lexical or hybrid.
    #[arg(long, default_value = "semantic")]
    pub mode: strata_serving::Mode,
    /// Search depth.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Rates to sweep (comma-separated, ascending); stops at the first with p99 over --p99-ms
    /// or any error, and reports the highest rate that held.
    #[arg(long, value_delimiter = ',')]
    pub sweep: Vec<f64>,
    /// p99 latency bound of the sweep, in milliseconds.
    #[arg(long, default_value_t = 50.0)]
    pub p99_ms: f64,
    /// Write the reports as JSON here.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Endpoint {
    Search,
    Embed,
}

fn bench_queries(a: &ServeBenchArgs) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    if let Some(j) = &a.judgments {
        let mut seen = std::collections::HashSet::new();
        for r in strata_data::load_judgments(j)? {
            if seen.insert(r.query.clone()) {
                out.push(r.query);
            }
        }
    } else if let Some(q) = &a.queries {
        let text =
            std::fs::read_to_string(q).with_context(|| format!("cannot read {}", q.display()))?;
        out.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string),
        );
    } else {
        anyhow::bail!("give the query texts with --queries or --judgments");
    }
    anyhow::ensure!(!out.is_empty(), "no queries found");
    Ok(out)
}

fn load_runs(
    a: &ServeBenchArgs,
    url: &str,
    queries: Vec<String>,
) -> anyhow::Result<Vec<strata_serving::loadgen::LoadReport>> {
    use strata_serving::loadgen::{LoadConfig, Target, run};
    let api_key = match &a.server.api_key_env {
        Some(v) => Some(std::env::var(v).with_context(|| format!("{v} is not set"))?),
        None => None,
    };
    let mut cfg = LoadConfig {
        url: url.to_string(),
        target: match a.endpoint {
            Endpoint::Search => Target::Search,
            Endpoint::Embed => Target::Embed,
        },
        requests: a.requests,
        max_duration: Duration::from_secs_f64(a.max_seconds),
        rate: a.rate,
        concurrency: a.concurrency,
        queries,
        mode: a.mode,
        k: a.k,
        api_key,
    };
    let mut reports = Vec::new();
    if a.sweep.is_empty() {
        let r = run(&cfg)?;
        outln!("{r}");
        reports.push(r);
        return Ok(reports);
    }
    let mut best: Option<(f64, f64)> = None;
    for &rate in &a.sweep {
        cfg.rate = Some(rate);
        let r = run(&cfg)?;
        outln!("{r}");
        let held = r.errors == 0 && r.p99_ms <= a.p99_ms;
        if held {
            best = Some((rate, r.qps));
        }
        reports.push(r);
        if !held {
            break;
        }
    }
    match best {
        Some((rate, qps)) => outln!(
            "max rate with p99 <= {} ms: {rate} qps target ({qps:.1} qps achieved)",
            a.p99_ms
        ),
        None => outln!("no swept rate kept p99 <= {} ms", a.p99_ms),
    }
    Ok(reports)
}

pub fn bench(a: ServeBenchArgs) -> anyhow::Result<()> {
    let queries = bench_queries(&a)?;
    let reports = match (&a.url, &a.model, &a.index) {
        (Some(url), None, None) => {
            let url = strata_serving::loadgen::check_loopback(url)?;
            load_runs(&a, &url, queries)?
        }
        (None, Some(model), Some(index)) => {
            anyhow::ensure!(
                a.server.host.is_loopback(),
                "the in-process server listens on a loopback address only"
            );
            let served = super::common::InferenceArgs {
                device: a.device.clone(),
                batch_size: 128,
                max_tokens: 4096,
                max_len: None,
                precision: a.precision,
            }
            .served(model)?;
            let backend = a.server.backend(index, &served)?;
            let mut config = a.server.config()?;
            config.port = 0;
            strata_serving::server::with_server(config, served, backend, |addr| {
                load_runs(&a, &format!("http://{addr}"), queries)
            })??
        }
        _ => anyhow::bail!("give either --url, or --model and --index"),
    };
    if let Some(out) = &a.out {
        std::fs::write(out, serde_json::to_string_pretty(&reports)?)
            .with_context(|| format!("cannot write {}", out.display()))?;
    }
    Ok(())
}
