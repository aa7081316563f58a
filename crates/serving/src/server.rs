//! The HTTP server (axum): embeddings (TEI- and OpenAI-compatible), search over a
//! [`SearchBackend`], health, info and Prometheus metrics.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use strata_data::Side;
use strata_retrieval::Fusion;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::backend::{Mode, SearchBackend, SearchQuery};
use crate::encoder::{BatchConfig, Batcher, Lane, ServingEncoder};
use crate::metrics::Metrics;

/// Request limits.
#[derive(Clone, Debug, Serialize)]
pub struct Limits {
    /// Most inputs in one embedding request (413 above).
    pub max_client_batch: usize,
    /// Most characters in one input or query (413 above).
    pub max_input_chars: usize,
    /// Largest request body in bytes (413 above).
    pub max_body_bytes: usize,
    /// Largest `k` of a search (422 above).
    pub max_k: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_client_batch: 32,
            max_input_chars: 10_000,
            max_body_bytes: 2 << 20,
            max_k: 1000,
        }
    }
}

/// Server settings.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Address to bind (loopback by default).
    pub host: IpAddr,
    /// Port (0: any free port).
    pub port: u16,
    pub limits: Limits,
    pub batch: BatchConfig,
    /// Bearer token every route but `/health` requires, if set.
    pub api_key: Option<String>,
    /// Truncate over-long inputs when a request does not say (`truncate` field).
    pub auto_truncate: bool,
    /// Longest wait for a request's headers, from the connection's start or the end of its
    /// previous request: a client that sends nothing, sends half its headers, or keeps an
    /// idle keep-alive connection open longer is disconnected.
    pub header_timeout: Duration,
    /// Longest time to receive a request's body (408 past it): a slow upload cannot hold a
    /// connection.
    pub body_timeout: Duration,
    /// Most connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 8080,
            limits: Limits::default(),
            batch: BatchConfig::default(),
            api_key: None,
            auto_truncate: false,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 512,
        }
    }
}

/// The model the server embeds queries with.
pub struct ServedModel {
    pub encoder: Arc<dyn ServingEncoder>,
    /// Its name (path), reported by `/info` and the OpenAI endpoint.
    pub name: String,
    /// Its fingerprint ([`crate::model_fingerprint`]); checked against the backend's.
    pub fingerprint: String,
}

struct AppState {
    batcher: Batcher,
    encoder: Arc<dyn ServingEncoder>,
    model_name: String,
    model_fingerprint: String,
    backend: Arc<dyn SearchBackend>,
    metrics: Arc<Metrics>,
    config: ServerConfig,
}

/// Every error response: `{"error": ..., "error_type": ...}` with its HTTP status.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error_type: &'static str,
    pub message: String,
}

impl ApiError {
    fn new(status: StatusCode, error_type: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            error_type,
            message: message.into(),
        }
    }
    fn validation(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "validation", message)
    }
    fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "validation", message)
    }
    fn empty(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "empty", message)
    }
    /// A failure of the model or the index: the whole chain goes to the server's log, the
    /// client gets no internal detail (file paths, library messages).
    fn backend(e: anyhow::Error) -> Self {
        tracing::error!("request failed in the backend: {e:#}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "backend",
            "the model or the index failed on this request; the server log has the details",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": self.message, "error_type": self.error_type})),
        )
            .into_response()
    }
}

/// The server's body-read limit, attached to every request by a middleware layer.
#[derive(Clone, Copy)]
struct BodyTimeout(Duration);

/// A JSON body: malformed JSON is a 400, well-formed JSON of the wrong shape a 422, a body over
/// the limit a 413 (the content type is not checked).
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let limit = req.extensions().get::<BodyTimeout>().map(|t| t.0);
        let read = Bytes::from_request(req, state);
        let read = match limit {
            Some(d) => tokio::time::timeout(d, read).await.map_err(|_| {
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "timeout",
                    format!(
                        "the request body did not arrive within {} s",
                        d.as_secs_f64()
                    ),
                )
            })?,
            None => read.await,
        };
        let bytes = read.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::too_large(format!("request body too large: {}", r.body_text()))
            } else {
                ApiError::new(r.status(), "malformed_request", r.body_text())
            }
        })?;
        serde_json::from_slice(&bytes).map(ApiJson).map_err(|e| {
            use serde_json::error::Category;
            match e.classify() {
                Category::Data => ApiError::validation(format!("invalid request: {e}")),
                _ => ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "malformed_request",
                    format!("malformed JSON: {e}"),
                ),
            }
        })
    }
}

/// One text or a list of texts.
#[derive(Deserialize)]
#[serde(untagged)]
enum Inputs {
    One(String),
    Many(Vec<String>),
}

impl Inputs {
    fn into_vec(self) -> Vec<String> {
        match self {
            Inputs::One(s) => vec![s],
            Inputs::Many(v) => v,
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_side() -> Side {
    Side::Query
}

#[derive(Deserialize)]
struct EmbedRequest {
    inputs: Inputs,
    #[serde(default = "default_true")]
    normalize: bool,
    truncate: Option<bool>,
    #[serde(default = "default_side")]
    side: Side,
}

#[derive(Deserialize)]
struct OpenAiRequest {
    input: Inputs,
    model: Option<String>,
    encoding_format: Option<String>,
    dimensions: Option<usize>,
    #[allow(dead_code)]
    user: Option<String>,
}

/// How `/search` blends hybrid scores.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum FusionKind {
    Convex,
    Rrf,
}

fn default_k() -> usize {
    10
}

fn default_mode() -> Mode {
    Mode::Semantic
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchRequest {
    query: String,
    #[serde(default = "default_k")]
    k: usize,
    #[serde(default = "default_mode")]
    mode: Mode,
    alpha: Option<f32>,
    fusion: Option<FusionKind>,
    rrf_k: Option<f32>,
    #[serde(default)]
    min_stratum: u8,
}

/// One `/search` result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchResult {
    pub rank: usize,
    pub id: String,
    pub text: String,
    pub score: f32,
    pub semantic: Option<f32>,
    pub lexical: Option<f32>,
    /// Estimated relevance stratum (2, 1, 0) from the index thresholds, when it has them.
    pub stratum: Option<u8>,
}

/// The `/search` response.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchResponse {
    pub mode: Mode,
    pub k: usize,
    pub results: Vec<SearchResult>,
}

impl AppState {
    /// Checks a list of inputs against the limits; returns the prompt tokens.
    fn check_inputs(
        &self,
        texts: &[String],
        field: &str,
        truncate: bool,
    ) -> Result<usize, ApiError> {
        let l = &self.config.limits;
        if texts.is_empty() {
            return Err(ApiError::empty(format!("`{field}` cannot be empty")));
        }
        if texts.len() > l.max_client_batch {
            return Err(ApiError::too_large(format!(
                "batch size {} > maximum allowed batch size {}",
                texts.len(),
                l.max_client_batch
            )));
        }
        let mut tokens = 0;
        for (i, t) in texts.iter().enumerate() {
            if t.trim().is_empty() {
                return Err(ApiError::empty(format!("`{field}`[{i}] is empty")));
            }
            let chars = t.chars().count();
            if chars > l.max_input_chars {
                return Err(ApiError::too_large(format!(
                    "`{field}`[{i}] has {chars} characters, more than the limit of {}",
                    l.max_input_chars
                )));
            }
            let c = self.encoder.count_tokens(t).map_err(|e| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "tokenizer",
                    format!("{e:#}"),
                )
            })?;
            if c.truncated && !truncate {
                return Err(ApiError::too_large(format!(
                    "`{field}`[{i}] is longer than the model's {} tokens; send `truncate: true` to cut it",
                    self.encoder.max_tokens()
                )));
            }
            tokens += c.kept;
        }
        Ok(tokens)
    }
}

async fn embed(
    State(st): State<Arc<AppState>>,
    ApiJson(req): ApiJson<EmbedRequest>,
) -> Result<Json<Vec<Vec<f32>>>, ApiError> {
    if !req.normalize {
        return Err(ApiError::validation(
            "`normalize: false` is not supported: strata models produce L2-normalised embeddings",
        ));
    }
    let texts = req.inputs.into_vec();
    st.check_inputs(
        &texts,
        "inputs",
        req.truncate.unwrap_or(st.config.auto_truncate),
    )?;
    let v = st
        .batcher
        .embed(texts, req.side, Lane::Bulk)
        .await
        .map_err(ApiError::backend)?;
    Ok(Json(
        v.chunks_exact(st.batcher.dim())
            .map(<[f32]>::to_vec)
            .collect(),
    ))
}

async fn openai_embeddings(
    State(st): State<Arc<AppState>>,
    ApiJson(req): ApiJson<OpenAiRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if let Some(f) = &req.encoding_format
        && f != "float"
    {
        return Err(ApiError::validation(format!(
            "encoding_format {f:?} is not supported (only \"float\")"
        )));
    }
    let dim = st.batcher.dim();
    if let Some(d) = req.dimensions
        && d != dim
    {
        return Err(ApiError::validation(format!(
            "dimensions {d} is not supported: the model has {dim}"
        )));
    }
    let texts = req.input.into_vec();
    let tokens = st.check_inputs(&texts, "input", st.config.auto_truncate)?;
    let v = st
        .batcher
        .embed(texts, Side::Query, Lane::Bulk)
        .await
        .map_err(ApiError::backend)?;
    let data: Vec<serde_json::Value> = v
        .chunks_exact(dim)
        .enumerate()
        .map(|(i, e)| json!({"object": "embedding", "index": i, "embedding": e}))
        .collect();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": req.model.unwrap_or_else(|| st.model_name.clone()),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    })))
}

async fn search(
    State(st): State<Arc<AppState>>,
    ApiJson(req): ApiJson<SearchRequest>,
) -> Result<Response, ApiError> {
    let mut clock = Instant::now();
    let mut lap = |stage: &'static str| {
        let now = Instant::now();
        st.metrics.observe_stage(stage, (now - clock).as_secs_f64());
        clock = now;
    };
    let l = &st.config.limits;
    if req.query.trim().is_empty() {
        return Err(ApiError::empty("`query` cannot be empty"));
    }
    let chars = req.query.chars().count();
    if chars > l.max_input_chars {
        return Err(ApiError::too_large(format!(
            "`query` has {chars} characters, more than the limit of {}",
            l.max_input_chars
        )));
    }
    if req.k == 0 || req.k > l.max_k {
        return Err(ApiError::validation(format!(
            "`k` must lie in 1..={}, got {}",
            l.max_k, req.k
        )));
    }
    if req.min_stratum > 2 {
        return Err(ApiError::validation(format!(
            "`min_stratum` must be 0, 1 or 2, got {}",
            req.min_stratum
        )));
    }
    let alpha = req.alpha.unwrap_or(0.5);
    let fusion = match req.fusion.unwrap_or(FusionKind::Convex) {
        FusionKind::Convex => Fusion::Convex { alpha },
        FusionKind::Rrf => Fusion::Rrf {
            alpha,
            k: req.rrf_k.unwrap_or(60.0),
        },
    };
    fusion
        .validate()
        .map_err(|e| ApiError::validation(format!("`alpha`/`rrf_k`: {e}")))?;
    let info = st.backend.info();
    let thresholds = info.thresholds;
    if req.min_stratum > 0 && thresholds.is_none() {
        return Err(ApiError::validation(
            "`min_stratum` needs thresholds, and this index has none (build it with --thresholds)",
        ));
    }
    st.check_inputs(std::slice::from_ref(&req.query), "query", true)?;
    lap("validate");
    let embedding = st
        .batcher
        .embed(vec![req.query.clone()], Side::Query, Lane::Search)
        .await
        .map_err(ApiError::backend)?;
    lap("embed");
    let items = st
        .backend
        .search(SearchQuery {
            text: &req.query,
            embedding: &embedding,
            k: req.k,
            mode: req.mode,
            fusion,
        })
        .await
        .map_err(ApiError::backend)?;
    lap("search");
    let lexical_thresholds = thresholds.as_ref().is_some_and(|t| t.score_kind == "bm25");
    let results = items
        .into_iter()
        .enumerate()
        .map(|(i, it)| {
            let basis = if lexical_thresholds {
                it.lexical
            } else {
                it.semantic
            };
            let stratum = thresholds.as_ref().zip(basis).map(|(t, s)| t.classify(s));
            SearchResult {
                rank: i + 1,
                id: it.id,
                text: it.text,
                score: it.score,
                semantic: it.semantic,
                lexical: it.lexical,
                stratum,
            }
        })
        .filter(|r| req.min_stratum == 0 || r.stratum.is_some_and(|s| s >= req.min_stratum))
        .collect();
    let body = serde_json::to_vec(&SearchResponse {
        mode: req.mode,
        k: req.k,
        results,
    })
    .map_err(|e| ApiError::backend(e.into()))?;
    lap("respond");
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// The last component of a path, for `/info`: clients learn which model and index are
/// served, not where they lie on the server.
fn public_name(path: &str) -> String {
    std::path::Path::new(path)
        .file_name()
        .map_or_else(|| path.to_string(), |n| n.to_string_lossy().into_owned())
}

async fn info(State(st): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let mut index = st.backend.info();
    index.location = public_name(&index.location);
    Json(json!({
        "model": public_name(&st.model_name),
        "model_fingerprint": st.model_fingerprint,
        "dim": st.batcher.dim(),
        "max_input_tokens": st.encoder.max_tokens(),
        "query_precision": st.encoder.precision(),
        "index": index,
        "limits": st.config.limits,
        "max_batch": st.config.batch.max_batch,
        "max_batch_tokens": st.config.batch.max_batch_tokens,
        "max_wait_ms": st.config.batch.max_wait.as_secs_f64() * 1e3,
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    let mut r = st.metrics.render().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route",
    )
}

const ROUTES: [&str; 6] = [
    "/embed",
    "/v1/embeddings",
    "/search",
    "/health",
    "/info",
    "/metrics",
];

async fn observe(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let route = ROUTES
        .iter()
        .find(|r| **r == path)
        .copied()
        .unwrap_or("other");
    let t = Instant::now();
    let resp = next.run(req).await;
    st.metrics
        .observe_request(route, resp.status().as_u16(), t.elapsed().as_secs_f64());
    resp
}

async fn authorize(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if let Some(key) = &st.config.api_key
        && req.uri().path() != "/health"
    {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token);
        let ok = given.is_some_and(|g| keys_match(g, key));
        if !ok {
            let mut r = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or wrong API key (send `Authorization: Bearer <key>`)",
            )
            .into_response();
            // The body is never read, so the connection cannot serve another request: say so,
            // or a client may reuse it while the server closes it.
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return r;
        }
    }
    next.run(req).await
}

/// The token of an `Authorization: Bearer <token>` value (the scheme is case-insensitive,
/// RFC 9110 section 11.1).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Compares the SHA-256 digests of the two keys in constant time, so neither the key's
/// content nor its length shows in the response time.
fn keys_match(given: &str, key: &str) -> bool {
    use sha2::{Digest, Sha256};
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(key.as_bytes());
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

fn router(state: Arc<AppState>) -> Router {
    let body_limit = state.config.limits.max_body_bytes;
    Router::new()
        .route("/embed", post(embed))
        .route("/v1/embeddings", post(openai_embeddings))
        .route("/search", post(search))
        .route("/health", get(health))
        .route("/info", get(info))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::Extension(BodyTimeout(state.config.body_timeout)))
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// A server running on a tokio runtime.
pub struct RunningServer {
    /// The bound address.
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// Stops accepting connections, finishes in-flight requests and waits for the server.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.await.context("server task")??;
        Ok(())
    }

    /// Waits until the server stops (after Ctrl-C or SIGTERM when started with
    /// [`start`]`(.., true)`).
    pub async fn wait(mut self) -> anyhow::Result<()> {
        let tx = self.shutdown.take();
        let r = (&mut self.task).await;
        drop(tx);
        r.context("server task")??;
        Ok(())
    }
}

async fn signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Binds `config.host:config.port` and starts serving `backend` with `model` on the current
/// tokio runtime. With `on_signal`, Ctrl-C or SIGTERM also shut it down gracefully. Fails when
/// the backend's items were embedded with another model, or with another dimension.
pub async fn start(
    config: ServerConfig,
    model: ServedModel,
    backend: Arc<dyn SearchBackend>,
    on_signal: bool,
) -> anyhow::Result<RunningServer> {
    let info = backend.info();
    if info.model_fingerprint != model.fingerprint {
        bail!(
            "model/index mismatch: the items in {} were embedded with a model of fingerprint {}, the server loaded {} (fingerprint {}); rebuild the index with this model or serve the model it was built with",
            info.location,
            &info.model_fingerprint[..info.model_fingerprint.len().min(12)],
            model.name,
            &model.fingerprint[..model.fingerprint.len().min(12)]
        );
    }
    if info.dim != model.encoder.dim() {
        bail!(
            "model/index mismatch: the index has dimension {}, the model {}",
            info.dim,
            model.encoder.dim()
        );
    }
    let query_precision = model.encoder.precision();
    if info.item_precision != query_precision {
        tracing::warn!(
            "queries are embedded at {query_precision} precision, the items in {} at {}: scores mix two arithmetics (serve with --precision {} to match)",
            info.location,
            info.item_precision,
            info.item_precision
        );
    }
    let metrics = Arc::new(Metrics::new());
    let batcher = Batcher::spawn(model.encoder.clone(), config.batch, Some(metrics.clone()));
    let addr = SocketAddr::new(config.host, config.port);
    let config_header_timeout = config.header_timeout;
    let max_connections = config.max_connections;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() && config.api_key.is_none() {
        tracing::warn!(
            "serving on {addr}, reachable from other machines, without an API key: anyone who can reach it can use it (set --api-key-env)"
        );
    }
    let state = Arc::new(AppState {
        batcher,
        encoder: model.encoder,
        model_name: model.name,
        model_fingerprint: model.fingerprint,
        backend,
        metrics,
        config,
    });
    let http = {
        let mut b = hyper::server::conn::http1::Builder::new();
        b.timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(Some(config_header_timeout))
            .keep_alive(true);
        b
    };
    let app = router(state);
    let permits = Arc::new(tokio::sync::Semaphore::new(max_connections.max(1)));
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let stop = async move {
            if on_signal {
                tokio::select! {
                    _ = rx => {},
                    _ = signal() => {},
                }
            } else {
                let _ = rx.await;
            }
        };
        tokio::pin!(stop);
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        loop {
            let permit = tokio::select! {
                p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
                _ = &mut stop => break,
            };
            let stream = tokio::select! {
                r = listener.accept() => match r {
                    Ok((s, _)) => s,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!("accepting a connection failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = &mut stop => break,
            };
            let _ = stream.set_nodelay(true);
            let service = hyper_util::service::TowerToHyperService::new(app.clone());
            let conn = graceful
                .watch(http.serve_connection(hyper_util::rt::TokioIo::new(stream), service));
            tokio::spawn(async move {
                let _permit = permit;
                if let Err(e) = conn.await {
                    tracing::debug!("connection closed: {e}");
                }
            });
        }
        drop(listener);
        // In-flight requests finish; idle connections close.
        graceful.shutdown().await;
        Ok(())
    });
    Ok(RunningServer {
        addr,
        shutdown: Some(tx),
        task,
    })
}

/// Loads a model directory for serving (on `device`: cpu, cuda[:N], vulkan[:N], wgpu[:N]; with `limits`),
/// fingerprinted.
pub fn load_model(
    dir: &std::path::Path,
    opts: &strata_model::LoadOptions,
    device: &str,
    limits: strata_model::BatchLimits,
) -> anyhow::Result<ServedModel> {
    let fingerprint = crate::manifest::model_fingerprint(dir)?;
    let device = strata_model::parse_device(device)?;
    let embedder = strata_model::Embedder::load_on(dir, opts, &device)
        .with_context(|| format!("cannot load model {}", dir.display()))?
        .with_limits(limits);
    Ok(ServedModel {
        encoder: Arc::new(embedder),
        name: dir.display().to_string(),
        fingerprint,
    })
}

/// The multi-threaded tokio runtime the server runs on.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Serves until Ctrl-C or SIGTERM (graceful shutdown), calling `ready` with the bound address.
pub fn serve_blocking(
    config: ServerConfig,
    model: ServedModel,
    backend: Arc<dyn SearchBackend>,
    ready: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        let server = start(config, model, backend, true).await?;
        ready(server.addr);
        server.wait().await
    })
}

/// Starts a server, runs `f` with its address on the calling thread (e.g. a load generator),
/// then shuts the server down.
pub fn with_server<R>(
    config: ServerConfig,
    model: ServedModel,
    backend: Arc<dyn SearchBackend>,
    f: impl FnOnce(SocketAddr) -> R,
) -> anyhow::Result<R> {
    let rt = runtime()?;
    let server = rt.block_on(start(config, model, backend, false))?;
    let r = f(server.addr);
    rt.block_on(server.shutdown())?;
    Ok(r)
}
