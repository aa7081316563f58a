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
    /// Compute device: cpu; cuda[:N], vulkan[:N] or wgpu[:N] in a build with that feature.
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
    /// The cache policy these flags name.
    pub fn policy(&self) -> strata_model::CachePolicy {
        match (&self.embedding_cache, self.no_embedding_cache) {
            (_, true) => strata_model::CachePolicy::Off,
            (Some(root), false) => strata_model::CachePolicy::Root(root.clone()),
            (None, false) => strata_model::CachePolicy::Default,
        }
    }
}

/// The inference flags of every command that embeds with a model (embed, eval, index, serve,
/// mine), defined once.
#[derive(Args, Clone, Debug)]
pub struct InferenceArgs {
    /// Compute device: cpu; cuda[:N], vulkan[:N] or wgpu[:N] in a build with that feature.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Most texts per forward pass.
    #[arg(long, default_value_t = BatchLimits::default().max_batch)]
    pub batch_size: usize,
    /// Most padded tokens per forward pass.
    #[arg(long, default_value_t = BatchLimits::default().max_tokens)]
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

/// The HNSW flags of `strata eval --ann`, `strata index build`, `strata index hnsw` and
/// `strata mine`, defined once. A flag left out keeps the command's library default
/// ([`strata_eval::HnswParams::default`]: 16, 128, 128; mining's `MineConfig`: 24, 200,
/// 400).
#[derive(Args, Clone, Debug, Default)]
pub struct HnswFlags {
    /// HNSW graph degree.
    #[arg(long)]
    pub hnsw_m: Option<usize>,
    /// HNSW candidate list size while building.
    #[arg(long)]
    pub hnsw_ef_construction: Option<usize>,
    /// HNSW candidate list size while searching.
    #[arg(long)]
    pub hnsw_ef_search: Option<usize>,
}

impl HnswFlags {
    /// `default` with the flags given applied.
    pub fn params(&self, default: strata_eval::HnswParams) -> strata_eval::HnswParams {
        strata_eval::HnswParams {
            connectivity: self.hnsw_m.unwrap_or(default.connectivity),
            expansion_add: self.hnsw_ef_construction.unwrap_or(default.expansion_add),
            expansion_search: self.hnsw_ef_search.unwrap_or(default.expansion_search),
        }
    }
}
