//! Argument groups shared by the training commands (`strata train`, `strata labeler train`).

use std::path::PathBuf;

use clap::Args;

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
