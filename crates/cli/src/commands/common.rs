//! Argument groups shared by the training commands (`strata train`, `strata labeler train`).

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use strata_model::{BatchLimits, LoadOptions};
use strata_serving::server::load_model;

/// The run directory and how to treat it.
#[derive(Args, Debug, Default)]
pub struct RunDirArgs {
    /// Configuration file (every key optional; `--print-config` shows them all). Flags
    /// override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Run directory (configuration, metrics.jsonl, checkpoints/, best/, model/, summary.json).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in --out from its newest checkpoint (with its saved configuration).
    #[arg(long)]
    pub resume: bool,
    /// Start again in a run directory that already holds a run.
    #[arg(long, conflicts_with = "resume")]
    pub overwrite: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Print the resolved configuration and exit.
    #[arg(long)]
    pub print_config: bool,
}

/// The optimiser, schedule and bookkeeping flags both trainers take.
#[derive(Args, Debug, Default)]
pub struct OptimArgs {
    /// Passes over the training data.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Instances (or pairs) per micro-batch.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Encoder learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Head learning rate.
    #[arg(long)]
    pub head_lr: Option<f64>,
    /// Warmup as a fraction of the updates.
    #[arg(long)]
    pub warmup_ratio: Option<f64>,
    /// Global gradient-norm bound (0: off).
    #[arg(long)]
    pub grad_clip: Option<f64>,
    /// AdamW weight decay.
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// AdamW epsilon.
    #[arg(long)]
    pub adam_epsilon: Option<f64>,
    /// Stop after this many updates (0: all epochs).
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// Checkpoint every this many updates.
    #[arg(long)]
    pub checkpoint_every: Option<u64>,
    /// Dev evaluation every this many updates (0: each epoch end).
    #[arg(long)]
    pub eval_every: Option<u64>,
    /// Seed of initialisation, sampling and data order.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Compute device: cpu, or cuda[:N] in a CUDA build.
    #[arg(long)]
    pub device: Option<String>,
}

/// The persistent cache of item embeddings (`strata eval`, `strata mine`).
#[derive(Args, Debug, Default)]
pub struct EmbeddingCacheArgs {
    /// Root of the item-embedding cache: item vectors are kept per model (SHA-256 of its
    /// files), truncation length and device, so a later run with the same model embeds only
    /// items it has not seen (default: $STRATA_CACHE, else $XDG_CACHE_HOME/strata, else
    /// ~/.cache/strata).
    #[arg(long)]
    pub embedding_cache: Option<PathBuf>,
    /// Embed every item afresh and leave the cache alone.
    #[arg(long, conflicts_with = "embedding_cache")]
    pub no_embedding_cache: bool,
}

impl EmbeddingCacheArgs {
    /// The cache directory for `model` (None when disabled or no root can be found).
    pub fn dir(
        &self,
        model: &std::path::Path,
        max_len: usize,
        device: &str,
        precision: strata_model::Precision,
    ) -> anyhow::Result<Option<PathBuf>> {
        if self.no_embedding_cache {
            return Ok(None);
        }
        let root = match &self.embedding_cache {
            Some(r) => r.clone(),
            None => match strata_model::default_cache_root() {
                Some(r) => r,
                None => return Ok(None),
            },
        };
        Ok(Some(strata_model::item_cache_dir(
            &root, model, max_len, device, precision,
        )?))
    }
}

/// Wraps `model` with the item-embedding cache in `dir` (if any), logging where it is.
pub fn cached_encoder<'a>(
    model: &'a dyn strata_data::TextEncoder,
    dir: Option<&std::path::Path>,
) -> anyhow::Result<Option<strata_data::CachedEncoder<'a>>> {
    let Some(dir) = dir else { return Ok(None) };
    let cache = strata_data::EmbeddingCache::open(dir, model.dim())?;
    tracing::info!(
        "item-embedding cache {} holds {} items",
        dir.display(),
        cache.len()
    );
    Ok(Some(strata_data::CachedEncoder::new(model, cache)?))
}

/// The inference flags of every command that embeds with a model (embed, eval, index, serve,
/// mine), defined once.
#[derive(Args, Clone, Debug)]
pub struct InferenceArgs {
    /// Compute device: cpu, cuda, cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Most texts per forward pass.
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Most padded tokens per forward pass.
    #[arg(long, default_value_t = 4096)]
    pub max_tokens: usize,
    /// Truncation length (tokens) for a Hugging Face folder.
    #[arg(long)]
    pub max_len: Option<usize>,
    /// Inference arithmetic on the CPU: f32, or int8 (dynamically quantized linear layers,
    /// ~1.8x faster item embedding; README "CPU inference engine and int8" gives its
    /// accuracy cost).
    #[arg(long, default_value = "f32")]
    pub precision: strata_model::Precision,
}

impl InferenceArgs {
    fn load_options(&self) -> LoadOptions {
        LoadOptions {
            max_len: self.max_len,
            precision: Some(self.precision),
            ..Default::default()
        }
    }

    fn limits(&self) -> BatchLimits {
        BatchLimits {
            max_batch: self.batch_size,
            max_tokens: self.max_tokens,
        }
    }

    /// `model` as an embedder on this device, with these batch limits and precision.
    pub fn embedder(&self, model: &std::path::Path) -> anyhow::Result<strata_model::Embedder> {
        let device = strata_model::parse_device(&self.device)?;
        Ok(
            strata_model::Embedder::load_on(model, &self.load_options(), &device)
                .with_context(|| format!("cannot load model {}", model.display()))?
                .with_limits(self.limits()),
        )
    }

    /// `model` as the server holds it (with its fingerprint).
    pub fn served(&self, model: &std::path::Path) -> anyhow::Result<strata_serving::ServedModel> {
        load_model(model, &self.load_options(), &self.device, self.limits())
    }
}

/// `--model` and the inference flags (index, serve, mine).
#[derive(Args, Clone)]
pub struct ModelArgs {
    /// Model directory: a strata model or a Hugging Face folder.
    #[arg(long)]
    pub model: PathBuf,
    #[command(flatten)]
    pub run: InferenceArgs,
}

impl ModelArgs {
    /// The model as an embedder.
    pub fn embedder(&self) -> anyhow::Result<strata_model::Embedder> {
        self.run.embedder(&self.model)
    }

    /// The model as the server holds it.
    pub fn load(&self) -> anyhow::Result<strata_serving::ServedModel> {
        self.run.served(&self.model)
    }
}
