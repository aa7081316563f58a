//! An LLM relevance labeler over the OpenAI-compatible chat-completions API (OpenAI and its
//! fine-tuned models, vLLM, llama.cpp's `llama-server`, Ollama).
//!
//! Each (query, item) pair is one request: the guideline (the three-level policy) as the system
//! message, the query and the item text as the user message, and a structured answer, either a
//! `response_format` JSON schema `{"label": 0 | 1 | 2}` or a single digit, parsed strictly.
//! Requests run on a bounded pool of worker threads, with a timeout each; 429, 408, 5xx and
//! transport failures are retried with exponential backoff (honouring `Retry-After`); malformed
//! answers are retried and then left unlabeled (`None`), never guessed. A budget (pairs and
//! tokens) stops the run cleanly: pairs beyond it are left unlabeled. Token usage, cost and
//! retry counts accumulate in a [`RunReport`].
//!
//! ```no_run
//! use strata_data::Labeler;
//! use strata_labeling::llm::{Guideline, LlmConfig, LlmLabeler};
//!
//! let cfg = LlmConfig::new("http://127.0.0.1:8080/v1", "smollm2");
//! let items = [("A-1".to_string(), "Casa Bella Spaghetti 500 g".to_string())].into();
//! let labeler = LlmLabeler::new(cfg, Guideline::ecommerce(), items)?;
//! let labels = labeler.label(&[("spaghetti".into(), "A-1".into())])?;
//! println!("{labels:?} {}", serde_json::to_string(&labeler.report())?);
//! # anyhow::Ok(())
//! ```

pub mod protocol;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use strata_data::hash::{fnv1a64, mix64};
use strata_data::labeler::ScoredLabel;
use strata_data::{Catalog, ItemTextConfig, Labeler};

use protocol::{Malformed, Usage};

/// How the model is asked to answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutputMode {
    /// `response_format: json_schema` with `{"label": 0 | 1 | 2}` (OpenAI, vLLM, llama-server;
    /// constrained decoding where the server supports it).
    #[default]
    JsonSchema,
    /// A single digit in plain text, for servers without structured output.
    Digit,
}

impl std::str::FromStr for OutputMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "json" | "json-schema" => Ok(OutputMode::JsonSchema),
            "digit" => Ok(OutputMode::Digit),
            other => Err(format!(
                "unknown output mode {other:?} (expected json-schema or digit)"
            )),
        }
    }
}

/// Settings of an [`LlmLabeler`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LlmConfig {
    /// API base URL including the version path, e.g. `https://api.openai.com/v1` or
    /// `http://127.0.0.1:8080/v1`; requests go to `{base_url}/chat/completions`.
    pub base_url: String,
    pub model: String,
    /// Environment variable holding the API key (sent as a bearer token); `None` sends no key
    /// (local servers). A named variable that is unset is an error.
    pub api_key_env: Option<String>,
    pub output: OutputMode,
    /// Concurrent requests (worker threads).
    pub concurrency: usize,
    /// Whole-request timeout, seconds.
    pub timeout_secs: f64,
    /// Retries of one pair after 429, 408, 5xx, a timeout or a transport error.
    pub max_retries: u32,
    /// Retries of one pair after a malformed answer.
    pub malformed_retries: u32,
    /// First backoff, milliseconds; doubles per retry (with jitter), up to `backoff_max_ms`.
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// Stop the run with an error after this many pairs in a row failed on every retry (the
    /// server is down or overloaded; labels obtained so far are kept by the cache).
    pub max_consecutive_failures: u64,
    /// Longest wait a `Retry-After` header may impose, seconds.
    pub retry_after_max_secs: f64,
    /// Stop after this many pairs have been sent (the rest are left unlabeled).
    pub max_pairs: Option<u64>,
    /// Stop once this many tokens (prompt + completion) have been used. Requests already in
    /// flight finish, so the total may exceed it by up to `concurrency` requests.
    pub max_tokens: Option<u64>,
    /// `max_tokens` of each request (the answer is a few tokens).
    pub max_completion_tokens: u32,
    pub temperature: f32,
    /// Ask for token log-probabilities (`logprobs`, `top_logprobs`), which give per-class
    /// probabilities in [`Labeler::label_scored`].
    pub logprobs: bool,
    /// Price per 1,000 prompt tokens (any currency), for the report.
    pub price_prompt_per_1k: f64,
    /// Price per 1,000 completion tokens.
    pub price_completion_per_1k: f64,
}

impl Default for LlmConfig {
    fn default() -> Self {
        LlmConfig {
            base_url: "http://127.0.0.1:8080/v1".into(),
            model: "default".into(),
            api_key_env: None,
            output: OutputMode::JsonSchema,
            concurrency: 4,
            timeout_secs: 60.0,
            max_retries: 5,
            malformed_retries: 2,
            backoff_initial_ms: 500,
            backoff_max_ms: 30_000,
            max_consecutive_failures: 8,
            retry_after_max_secs: 120.0,
            max_pairs: None,
            max_tokens: None,
            max_completion_tokens: 16,
            temperature: 0.0,
            logprobs: false,
            price_prompt_per_1k: 0.0,
            price_completion_per_1k: 0.0,
        }
    }
}

impl LlmConfig {
    /// Defaults with a base URL and model.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        LlmConfig {
            base_url: base_url.into(),
            model: model.into(),
            ..LlmConfig::default()
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.base_url.starts_with("http://") || self.base_url.starts_with("https://"),
            "base_url {:?} must start with http:// or https://",
            self.base_url
        );
        anyhow::ensure!(!self.model.is_empty(), "model must not be empty");
        anyhow::ensure!(self.concurrency >= 1, "concurrency must be at least 1");
        anyhow::ensure!(
            self.max_consecutive_failures >= 1,
            "max_consecutive_failures must be at least 1"
        );
        anyhow::ensure!(
            self.timeout_secs > 0.0 && self.timeout_secs.is_finite(),
            "timeout_secs must be positive"
        );
        anyhow::ensure!(
            self.max_completion_tokens >= 1,
            "max_completion_tokens must be at least 1"
        );
        Ok(())
    }
}

/// The labeling guideline (the system prompt) and its version, part of the labeler identity
/// and cache keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Guideline {
    pub text: String,
    pub version: String,
}

/// The default e-commerce guideline shipped with strata.
pub const ECOMMERCE_GUIDELINE: &str = include_str!("../../guidelines/ecommerce-v1.md");

impl Guideline {
    /// A guideline whose version is a hash of its text.
    pub fn new(text: impl Into<String>) -> Self {
        let text = text.into();
        let version = format!("{:016x}", mix64(fnv1a64(text.as_bytes())));
        Guideline { text, version }
    }

    /// The default e-commerce guideline (2 exact, 1 substitute or complement, 0 irrelevant).
    pub fn ecommerce() -> Self {
        Guideline::new(ECOMMERCE_GUIDELINE)
    }

    /// Reads a guideline file (plain text or Markdown, used verbatim).
    pub fn read(path: impl AsRef<Path>) -> anyhow::Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading guideline {}", path.display()))?;
        anyhow::ensure!(
            !text.trim().is_empty(),
            "guideline {} is empty",
            path.display()
        );
        Ok(Guideline::new(text))
    }
}

/// Counts of one labeling run (the labeler's lifetime), written as the run report.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    pub model: String,
    pub base_url: String,
    pub output: OutputMode,
    pub guideline_version: String,
    /// Pairs handed to the labeler.
    pub pairs: u64,
    /// Pairs for which at least one request was sent.
    pub pairs_sent: u64,
    pub labeled: u64,
    /// Labels given, by level 0, 1, 2.
    pub label_counts: [u64; 3],
    /// Pairs left unlabeled after malformed answers on every try.
    pub unlabeled_malformed: u64,
    /// Pairs left unlabeled after retries on errors ran out.
    pub unlabeled_failed: u64,
    /// Pairs not sent because the budget was used up.
    pub skipped_budget: u64,
    pub budget_exhausted: bool,
    /// HTTP requests sent (including retries).
    pub requests: u64,
    pub retries_rate_limited: u64,
    pub retries_server_error: u64,
    pub retries_timeout: u64,
    pub retries_transport: u64,
    pub retries_malformed: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    pub price_prompt_per_1k: f64,
    pub price_completion_per_1k: f64,
    pub cost: f64,
    pub elapsed_secs: f64,
}

impl RunReport {
    /// Writes the report as pretty JSON.
    pub fn write(&self, path: impl AsRef<Path>) -> anyhow::Result<()> {
        let path = path.as_ref();
        std::fs::write(path, serde_json::to_string_pretty(self)?)
            .with_context(|| format!("writing {}", path.display()))
    }
}

/// What became of one pair.
enum Outcome {
    Label(ScoredLabel),
    Malformed,
    Failed,
    Skipped,
}

/// One failed attempt that may be retried.
enum Transient {
    RateLimited(Option<Duration>),
    ServerError(Option<Duration>),
    Timeout,
    Transport,
}

/// The LLM labeler. Implements [`Labeler`]; wrap it in a
/// [`CachedLabeler`](strata_data::labeler::CachedLabeler) so that no pair is paid for twice.
pub struct LlmLabeler {
    cfg: LlmConfig,
    guideline: Guideline,
    system: String,
    items: HashMap<String, String>,
    agent: ureq::Agent,
    url: String,
    auth: Option<String>,
    stats: Mutex<RunReport>,
    consecutive_failures: AtomicU64,
    started: Instant,
}

impl LlmLabeler {
    /// A labeler for items whose text is given by id (`items`: item id -> text).
    pub fn new(
        cfg: LlmConfig,
        guideline: Guideline,
        items: HashMap<String, String>,
    ) -> anyhow::Result<Self> {
        cfg.validate()?;
        let auth = match &cfg.api_key_env {
            Some(var) => {
                let key = std::env::var(var).with_context(|| {
                    format!("the API key variable {var} is not set (or not valid UTF-8)")
                })?;
                anyhow::ensure!(
                    !key.trim().is_empty(),
                    "the API key variable {var} is empty"
                );
                Some(format!("Bearer {}", key.trim()))
            }
            None => None,
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs_f64(cfg.timeout_secs)))
            .http_status_as_error(false)
            .user_agent("strata-labeling")
            .build()
            .into();
        let url = format!("{}/chat/completions", cfg.base_url.trim_end_matches('/'));
        let system = format!(
            "{}\n\n{}",
            guideline.text.trim_end(),
            protocol::answer_instruction(cfg.output)
        );
        let stats = RunReport {
            model: cfg.model.clone(),
            base_url: cfg.base_url.clone(),
            output: cfg.output,
            guideline_version: guideline.version.clone(),
            price_prompt_per_1k: cfg.price_prompt_per_1k,
            price_completion_per_1k: cfg.price_completion_per_1k,
            ..RunReport::default()
        };
        Ok(LlmLabeler {
            cfg,
            guideline,
            system,
            items,
            agent,
            url,
            auth,
            stats: Mutex::new(stats),
            consecutive_failures: AtomicU64::new(0),
            started: Instant::now(),
        })
    }

    /// A labeler for the items of a catalog, rendered with `text`.
    pub fn for_catalog(
        cfg: LlmConfig,
        guideline: Guideline,
        catalog: &Catalog,
        text: &ItemTextConfig,
    ) -> anyhow::Result<Self> {
        let items = catalog
            .iter()
            .map(|i| (i.id.clone(), text.render(i)))
            .collect();
        Self::new(cfg, guideline, items)
    }

    /// The guideline in use.
    pub fn guideline(&self) -> &Guideline {
        &self.guideline
    }

    /// The counts so far.
    pub fn report(&self) -> RunReport {
        let mut r = self.lock().clone();
        r.total_tokens = r.prompt_tokens + r.completion_tokens;
        r.cost = r.prompt_tokens as f64 / 1000.0 * r.price_prompt_per_1k
            + r.completion_tokens as f64 / 1000.0 * r.price_completion_per_1k;
        r.elapsed_secs = self.started.elapsed().as_secs_f64();
        r
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RunReport> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reserves a pair under the budget; false (and the budget marked used up) if none is left.
    fn reserve_pair(&self) -> bool {
        let mut s = self.lock();
        let over_pairs = self.cfg.max_pairs.is_some_and(|m| s.pairs_sent >= m);
        let over_tokens = self
            .cfg
            .max_tokens
            .is_some_and(|m| s.prompt_tokens + s.completion_tokens >= m);
        if over_pairs || over_tokens {
            s.budget_exhausted = true;
            s.skipped_budget += 1;
            return false;
        }
        s.pairs_sent += 1;
        true
    }

    fn tokens_left(&self) -> bool {
        let s = self.lock();
        self.cfg
            .max_tokens
            .is_none_or(|m| s.prompt_tokens + s.completion_tokens < m)
    }

    /// The wait before retry number `attempt` (1-based) of the pair with hash `h`: exponential
    /// with jitter in [50%, 100%], or the server's `Retry-After` (capped).
    fn backoff(&self, attempt: u32, h: u64, retry_after: Option<Duration>) -> Duration {
        if let Some(d) = retry_after {
            return d.min(Duration::from_secs_f64(self.cfg.retry_after_max_secs));
        }
        let base = self
            .cfg
            .backoff_initial_ms
            .saturating_mul(1u64 << (attempt - 1).min(20))
            .min(self.cfg.backoff_max_ms);
        let jitter = 0.5 + 0.5 * (mix64(h ^ u64::from(attempt)) >> 11) as f64 / (1u64 << 53) as f64;
        Duration::from_millis((base as f64 * jitter) as u64)
    }

    /// One HTTP request. `Ok(Ok(body))` on 200, `Ok(Err(transient))` on a retryable failure,
    /// `Err` on a failure that retrying cannot fix (a 4xx such as a bad key or model).
    fn send(&self, body: &str) -> anyhow::Result<Result<String, Transient>> {
        self.lock().requests += 1;
        let mut req = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/json");
        if let Some(a) = &self.auth {
            req = req.header("Authorization", a);
        }
        let mut resp = match req.send(body) {
            Ok(r) => r,
            Err(ureq::Error::Timeout(_)) => return Ok(Err(Transient::Timeout)),
            Err(ureq::Error::BadUri(e)) => anyhow::bail!("bad URL {}: {e}", self.url),
            Err(e) => {
                tracing::debug!("request to {} failed: {e}", self.url);
                return Ok(Err(Transient::Transport));
            }
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64);
        let text = match resp.body_mut().read_to_string() {
            Ok(t) => t,
            Err(ureq::Error::Timeout(_)) => return Ok(Err(Transient::Timeout)),
            Err(_) => return Ok(Err(Transient::Transport)),
        };
        match status {
            200..=299 => Ok(Ok(text)),
            429 => Ok(Err(Transient::RateLimited(retry_after))),
            408 => Ok(Err(Transient::Timeout)),
            500..=599 => Ok(Err(Transient::ServerError(retry_after))),
            _ => anyhow::bail!(
                "HTTP {status} from {}: {}",
                self.url,
                text.chars().take(300).collect::<String>()
            ),
        }
    }

    /// Labels one pair: retries transient failures and malformed answers within their limits.
    fn label_one(&self, query: &str, item_text: &str) -> anyhow::Result<Outcome> {
        if !self.reserve_pair() {
            return Ok(Outcome::Skipped);
        }
        let mut body = protocol::request_body(
            &self.cfg.model,
            &self.system,
            query,
            item_text,
            self.cfg.output,
            self.cfg.max_completion_tokens,
            self.cfg.temperature,
        );
        if self.cfg.logprobs {
            body["logprobs"] = true.into();
            body["top_logprobs"] = 5.into();
        }
        let body = body.to_string();
        let h = fnv1a64(query.as_bytes()) ^ mix64(fnv1a64(item_text.as_bytes()));
        let (mut transient, mut malformed) = (0u32, 0u32);
        loop {
            let failure = match self.send(&body)? {
                Ok(text) => match self.read_answer(&text) {
                    Ok(l) => return Ok(Outcome::Label(l)),
                    Err(m) => {
                        malformed += 1;
                        tracing::debug!("malformed answer for {query:?}: {m}");
                        if malformed > self.cfg.malformed_retries {
                            return Ok(Outcome::Malformed);
                        }
                        self.lock().retries_malformed += 1;
                        None
                    }
                },
                Err(t) => Some(t),
            };
            if let Some(t) = failure {
                transient += 1;
                if transient > self.cfg.max_retries {
                    return Ok(Outcome::Failed);
                }
                let retry_after = {
                    let mut s = self.lock();
                    match t {
                        Transient::RateLimited(ra) => {
                            s.retries_rate_limited += 1;
                            ra
                        }
                        Transient::ServerError(ra) => {
                            s.retries_server_error += 1;
                            ra
                        }
                        Transient::Timeout => {
                            s.retries_timeout += 1;
                            None
                        }
                        Transient::Transport => {
                            s.retries_transport += 1;
                            None
                        }
                    }
                };
                std::thread::sleep(self.backoff(transient, h, retry_after));
            }
            if !self.tokens_left() {
                let mut s = self.lock();
                s.budget_exhausted = true;
                return Ok(Outcome::Failed);
            }
        }
    }

    /// Accounts the usage of a 200 response and parses its label.
    fn read_answer(&self, text: &str) -> Result<ScoredLabel, Malformed> {
        let v: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| Malformed::NotACompletion(format!("body is not JSON ({e})")))?;
        let Usage {
            prompt_tokens,
            completion_tokens,
        } = protocol::parse_usage(&v);
        {
            let mut s = self.lock();
            s.prompt_tokens += prompt_tokens;
            s.completion_tokens += completion_tokens;
        }
        let label = protocol::parse_label(protocol::parse_content(&v)?, self.cfg.output)?;
        Ok(protocol::parse_label_probs(&v, label)
            .map(|probs| ScoredLabel { label, probs })
            .unwrap_or_else(|| ScoredLabel::certain(label)))
    }
}

impl Labeler for LlmLabeler {
    fn label(&self, pairs: &[(String, String)]) -> anyhow::Result<Vec<Option<u8>>> {
        Ok(self
            .label_scored(pairs)?
            .into_iter()
            .map(|s| s.map(|s| s.label))
            .collect())
    }

    /// With [`LlmConfig::logprobs`], the probabilities of the three label tokens at the answer
    /// position (renormalised); otherwise, or where the server sends none, certainty.
    fn label_scored(&self, pairs: &[(String, String)]) -> anyhow::Result<Vec<Option<ScoredLabel>>> {
        let texts: Vec<&str> = pairs
            .iter()
            .map(|(_, id)| {
                self.items
                    .get(id)
                    .map(String::as_str)
                    .with_context(|| format!("item {id:?} has no text (not in the catalog)"))
            })
            .collect::<anyhow::Result<_>>()?;
        self.lock().pairs += pairs.len() as u64;
        let out: Vec<Mutex<Option<ScoredLabel>>> =
            (0..pairs.len()).map(|_| Mutex::new(None)).collect();
        let next = AtomicUsize::new(0);
        let abort = AtomicBool::new(false);
        let error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
        let workers = self.cfg.concurrency.min(pairs.len()).max(1);
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| {
                    while !abort.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= pairs.len() {
                            break;
                        }
                        let result = self.label_one(&pairs[i].0, texts[i]).and_then(|o| {
                            if matches!(o, Outcome::Failed) {
                                let n =
                                    self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
                                if n >= self.cfg.max_consecutive_failures {
                                    anyhow::bail!(
                                        "{n} pairs in a row failed after {} retries each; is the \
                                         server at {} up?",
                                        self.cfg.max_retries,
                                        self.url
                                    );
                                }
                            } else if !matches!(o, Outcome::Skipped) {
                                self.consecutive_failures.store(0, Ordering::Relaxed);
                            }
                            Ok(o)
                        });
                        match result {
                            Ok(outcome) => {
                                let mut s = self.lock();
                                match outcome {
                                    Outcome::Label(l) => {
                                        s.labeled += 1;
                                        s.label_counts[usize::from(l.label)] += 1;
                                        *out[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(l);
                                    }
                                    Outcome::Malformed => s.unlabeled_malformed += 1,
                                    Outcome::Failed => s.unlabeled_failed += 1,
                                    Outcome::Skipped => {}
                                }
                            }
                            Err(e) => {
                                abort.store(true, Ordering::Relaxed);
                                error
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .get_or_insert(e);
                            }
                        }
                    }
                });
            }
        });
        if let Some(e) = error.into_inner().unwrap_or_else(|e| e.into_inner()) {
            return Err(e.context(format!("labeling with {}", self.identity())));
        }
        Ok(out
            .into_iter()
            .map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
            .collect())
    }

    /// The model, answer format, temperature and guideline version; not the server address
    /// (the same model behind another address or port keeps its cached labels).
    fn identity(&self) -> String {
        format!(
            "llm model={} output={} temperature={} guideline={}",
            self.cfg.model,
            match self.cfg.output {
                OutputMode::JsonSchema => "json-schema",
                OutputMode::Digit => "digit",
            },
            self.cfg.temperature,
            self.guideline.version
        )
    }
}
