//! The server's embedding model and dynamic batching of concurrent requests.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use strata_data::{Side, TextEncoder};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;

/// Token counts of one input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenCount {
    /// Tokens the model sees (after truncation).
    pub kept: usize,
    /// Whether the input was longer than the model's maximum length.
    pub truncated: bool,
}

/// What the server embeds with: a [`TextEncoder`] that can also count tokens.
pub trait ServingEncoder: TextEncoder {
    /// The model's maximum input length in tokens.
    fn max_tokens(&self) -> usize;
    /// Counts the tokens of `text`.
    fn count_tokens(&self, text: &str) -> anyhow::Result<TokenCount>;
    /// Arithmetic of the embeddings (recorded in an index's manifest).
    fn precision(&self) -> strata_model::Precision {
        strata_model::Precision::F32
    }
}

impl ServingEncoder for strata_model::Embedder {
    fn precision(&self) -> strata_model::Precision {
        strata_model::Embedder::precision(self).unwrap_or_default()
    }

    fn max_tokens(&self) -> usize {
        self.config().max_len
    }

    fn count_tokens(&self, text: &str) -> anyhow::Result<TokenCount> {
        let enc = self
            .tokenizer()
            .inner()
            .encode(text, true)
            .map_err(|e| anyhow::anyhow!("tokenizer: {e}"))?;
        Ok(TokenCount {
            kept: enc.get_ids().len(),
            truncated: !enc.get_overflowing().is_empty(),
        })
    }
}

/// Dynamic batching settings.
#[derive(Clone, Copy, Debug)]
pub struct BatchConfig {
    /// Most texts embedded in one call (a larger single request is embedded alone).
    pub max_batch: usize,
    /// How long the first request of a batch waits for others.
    pub max_wait: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_batch: 32,
            max_wait: Duration::from_millis(2),
        }
    }
}

struct Job {
    texts: Vec<String>,
    side: Side,
    reply: oneshot::Sender<anyhow::Result<Vec<f32>>>,
}

/// Collects concurrent embedding requests into batches and runs them on a blocking thread.
#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::Sender<Job>,
    dim: usize,
}

impl Batcher {
    /// Starts the batching task on the current tokio runtime.
    pub fn spawn(
        encoder: Arc<dyn ServingEncoder>,
        config: BatchConfig,
        metrics: Option<Arc<Metrics>>,
    ) -> Self {
        let (tx, rx) = mpsc::channel(1024);
        let dim = encoder.dim();
        tokio::spawn(run(encoder, config, rx, metrics));
        Batcher { tx, dim }
    }

    /// Embedding dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Embeds `texts` (row-major, L2-normalised), batched with other concurrent calls.
    pub async fn embed(&self, texts: Vec<String>, side: Side) -> anyhow::Result<Vec<f32>> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job { texts, side, reply })
            .await
            .map_err(|_| anyhow::anyhow!("the embedding worker has stopped"))?;
        rx.await
            .context("the embedding worker dropped the request")?
    }
}

async fn run(
    encoder: Arc<dyn ServingEncoder>,
    config: BatchConfig,
    mut rx: mpsc::Receiver<Job>,
    metrics: Option<Arc<Metrics>>,
) {
    let max_batch = config.max_batch.max(1);
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        let mut n = jobs[0].texts.len();
        let deadline = tokio::time::Instant::now() + config.max_wait;
        while n < max_batch {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(job)) => {
                    n += job.texts.len();
                    jobs.push(job);
                }
                _ => break,
            }
        }
        for side in [Side::Query, Side::Item] {
            let group: Vec<Job> = {
                let (g, rest): (Vec<Job>, Vec<Job>) =
                    jobs.into_iter().partition(|j| j.side == side);
                jobs = rest;
                g
            };
            if group.is_empty() {
                continue;
            }
            let texts: Vec<String> = group.iter().flat_map(|j| j.texts.iter().cloned()).collect();
            if let Some(m) = &metrics {
                m.observe_batch(texts.len());
            }
            let enc = encoder.clone();
            let result = tokio::task::spawn_blocking(move || {
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                enc.encode(&refs, side)
            })
            .await
            .unwrap_or_else(|e| Err(anyhow::anyhow!("the embedding task failed: {e}")));
            match result {
                Ok(v) => {
                    let dim = encoder.dim();
                    let mut off = 0;
                    for j in group {
                        let len = j.texts.len() * dim;
                        let part = v
                            .get(off..off + len)
                            .map(<[f32]>::to_vec)
                            .ok_or_else(|| anyhow::anyhow!("the encoder returned too few values"));
                        off += len;
                        let _ = j.reply.send(part);
                    }
                }
                Err(e) => {
                    let msg = format!("{e:#}");
                    for j in group {
                        let _ = j.reply.send(Err(anyhow::anyhow!("{msg}")));
                    }
                }
            }
        }
    }
}
