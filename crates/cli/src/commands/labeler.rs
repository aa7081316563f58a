//! `strata labeler train|eval`: fine-tunes a cross-encoder relevance labeler on human
//! three-level judgments and evaluates it on a held-out split against the majority-level and
//! BM25-threshold references.

use std::path::PathBuf;

use super::common::{OptimArgs, RunDirArgs};
use anyhow::bail;
use clap::{Args, Subcommand};
use strata_data::split::{Split, SplitConfig};
use strata_labeling::cross_encoder::data::PairSource;
use strata_labeling::cross_encoder::eval::write_report;
use strata_labeling::cross_encoder::train::CONFIG_FILE;
use strata_labeling::cross_encoder::{
    LabelerEvalConfig, LabelerTrainConfig, LabelerTrainOptions, Pooling, evaluate_labeler,
    train_labeler,
};
use strata_model::BatchLimits;

#[derive(Subcommand)]
pub enum LabelerCommand {
    /// Fine-tune a cross-encoder labeler on human judgments (split by query).
    Train(Box<TrainArgs>),
    /// Evaluate a labeler on a held-out split against the majority and BM25 references.
    Eval(Box<EvalArgs>),
}

/// Where the judged pairs come from and how they are split.
#[derive(Args, Debug, Default)]
pub struct DataArgs {
    /// Catalog file.
    #[arg(long)]
    pub catalog: Option<PathBuf>,
    /// Human judgments (levels 0, 1, 2, or Home Depot style average ratings).
    #[arg(long)]
    pub judgments: Option<PathBuf>,
    /// Train, dev and test fractions of the split by query, e.g. 0.8,0.1,0.1.
    #[arg(long, value_delimiter = ',')]
    pub split: Option<Vec<f64>>,
    /// Seed of the split.
    #[arg(long)]
    pub split_seed: Option<u64>,
    /// Item text (data.item_text): name, name+taxonomy (the name and two taxonomy levels),
    /// name+taxonomy:DEPTH or template:DEPTH:TEMPLATE.
    #[arg(long)]
    pub item_text: Option<strata_data::ItemTextConfig>,
    /// Taxonomy levels appended to item names (0: name only): `--item-text name+taxonomy:N`.
    #[arg(long, conflicts_with = "item_text")]
    pub taxonomy_depth: Option<usize>,
}

impl DataArgs {
    fn apply(&self, src: &mut PairSource) -> anyhow::Result<()> {
        if let Some(p) = &self.catalog {
            src.catalog = p.clone();
        }
        if let Some(p) = &self.judgments {
            src.judgments = p.clone();
        }
        if let Some(f) = &self.split {
            let [train, dev, test] = f.as_slice() else {
                bail!("--split takes three fractions (train,dev,test), got {f:?}");
            };
            src.split = SplitConfig::new(*train, *dev, *test, src.split.seed)?;
        }
        if let Some(s) = self.split_seed {
            src.split.seed = s;
        }
        if let Some(t) = &self.item_text {
            src.item_text = t.clone();
            src.taxonomy_depth = None;
        }
        if let Some(d) = self.taxonomy_depth {
            src.item_text = strata_data::ItemTextConfig::with_taxonomy_levels(d);
            src.taxonomy_depth = None;
        }
        Ok(())
    }
}

#[derive(Args, Debug, Default)]
#[command(allow_negative_numbers = true)]
pub struct TrainArgs {
    #[command(flatten)]
    pub run: RunDirArgs,
    #[command(flatten)]
    pub optim: OptimArgs,
    #[command(flatten)]
    pub data: DataArgs,
    /// Starting encoder: a Hugging Face folder, a strata model or a labeler directory.
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Truncation length of a (query, item) pair in tokens.
    #[arg(long)]
    pub max_len: Option<usize>,
    /// Pooling: mean or cls.
    #[arg(long)]
    pub pooling: Option<Pooling>,
    /// Encoder dropout (embeddings and residual outputs).
    #[arg(long)]
    pub dropout: Option<f64>,
    /// Dropout before the head.
    #[arg(long)]
    pub head_dropout: Option<f64>,
    /// Cross-entropy weights of levels 0,1,2.
    #[arg(long, value_delimiter = ',')]
    pub class_weights: Option<Vec<f64>>,
    /// Most training pairs (a seeded sample; 0: all).
    #[arg(long)]
    pub max_train_pairs: Option<usize>,
    /// Most dev pairs evaluated (0: all).
    #[arg(long)]
    pub max_dev_pairs: Option<usize>,
}

/// The default starting model: `$STRATA_MODELS/all-MiniLM-L6-v2`, else `models/...`.
fn default_init() -> PathBuf {
    std::env::var_os("STRATA_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("models"))
        .join("all-MiniLM-L6-v2")
}

fn set<T>(slot: &mut T, v: Option<T>) {
    if let Some(v) = v {
        *slot = v;
    }
}

fn train_config(a: &TrainArgs) -> anyhow::Result<LabelerTrainConfig> {
    let mut cfg = if let Some(p) = &a.run.config {
        LabelerTrainConfig::read(p)?
    } else if a.run.resume {
        let Some(out) = &a.run.out else {
            bail!("--resume needs --out RUN_DIR");
        };
        LabelerTrainConfig::read(&out.join(CONFIG_FILE))?
    } else {
        LabelerTrainConfig {
            init: default_init(),
            ..Default::default()
        }
    };
    set(&mut cfg.out, a.run.out.clone());
    a.data.apply(&mut cfg.data)?;
    set(&mut cfg.init, a.init.clone());
    set(&mut cfg.max_len, a.max_len);
    set(&mut cfg.pooling, a.pooling);
    set(&mut cfg.dropout, a.dropout);
    set(&mut cfg.head_dropout, a.head_dropout);
    set(&mut cfg.epochs, a.optim.epochs);
    set(&mut cfg.batch_size, a.optim.batch_size);
    set(&mut cfg.lr, a.optim.lr);
    set(&mut cfg.head_lr, a.optim.head_lr);
    set(&mut cfg.adamw.epsilon, a.optim.adam_epsilon);
    set(&mut cfg.adamw.weight_decay, a.optim.weight_decay);
    set(&mut cfg.warmup_ratio, a.optim.warmup_ratio);
    set(&mut cfg.grad_clip, a.optim.grad_clip);
    if let Some(w) = &a.class_weights {
        let [w0, w1, w2] = w.as_slice() else {
            bail!("--class-weights takes three numbers (levels 0,1,2), got {w:?}");
        };
        cfg.class_weights = Some([*w0, *w1, *w2]);
    }
    set(&mut cfg.max_train_pairs, a.max_train_pairs);
    set(&mut cfg.max_dev_pairs, a.max_dev_pairs);
    set(&mut cfg.max_steps, a.optim.max_steps);
    set(&mut cfg.eval_every, a.optim.eval_every);
    set(&mut cfg.checkpoint_every, a.optim.checkpoint_every);
    set(&mut cfg.seed, a.optim.seed);
    set(&mut cfg.device, a.optim.device.clone());
    cfg.validate()?;
    Ok(cfg)
}

fn train(a: &TrainArgs) -> anyhow::Result<()> {
    let cfg = train_config(a)?;
    if a.run.print_config {
        outln!("{}", serde_json::to_string_pretty(&cfg)?);
        return Ok(());
    }
    let opts = LabelerTrainOptions {
        resume: a.run.resume,
        overwrite: a.run.overwrite,
        progress: !a.run.quiet,
        stop_after: None,
    };
    let s = train_labeler(&cfg, &opts)?;
    outln!(
        "{} updates over {} pairs (a sample of {} of the {} train-split pairs) in {:.0}s ({:.1} pairs/s), final loss {}",
        s.steps,
        s.pairs_seen,
        s.train_pairs,
        s.train_pairs_available,
        s.train_seconds,
        s.pairs_per_second,
        s.final_loss.map_or("-".into(), |l| format!("{l:.4}"))
    );
    if let Some(b) = s.best {
        outln!(
            "best dev accuracy {:.4} (within-1 {:.4}) at update {} over {} pairs",
            b.accuracy,
            b.within_1_accuracy,
            b.step,
            b.pairs
        );
    }
    outln!("run directory: {}", s.run_dir.display());
    Ok(())
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// A labeler directory, or a run directory (its best/, else model/).
    #[arg(long)]
    pub labeler: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    /// Take catalog, judgments, split and item text from a training run's config.json
    /// (flags override them).
    #[arg(long)]
    pub run: Option<PathBuf>,
    /// The held-out split evaluated.
    #[arg(long, default_value = "test")]
    pub on: Split,
    /// Most evaluated pairs (a seeded sample; 0: all).
    #[arg(long, default_value_t = 0)]
    pub max_pairs: usize,
    /// Seed of that sample.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Pairs per inference batch.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Report file (JSON).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

fn eval(a: &EvalArgs) -> anyhow::Result<()> {
    let mut data = match &a.run {
        Some(run) => LabelerTrainConfig::read(&run.join(CONFIG_FILE))?.data,
        None => PairSource::default(),
    };
    a.data.apply(&mut data)?;
    let cfg = LabelerEvalConfig {
        labeler: a.labeler.clone(),
        data,
        split: a.on,
        max_pairs: a.max_pairs,
        seed: a.seed,
        limits: BatchLimits {
            max_batch: a.batch.max(1),
            max_tokens: 4096.max(a.batch),
        },
        progress: !a.quiet,
    };
    let report = evaluate_labeler(&cfg)?;
    out!("{}", report.table());
    if let Some(p) = &a.out {
        write_report(&report, p)?;
        outln!("report: {}", p.display());
    }
    Ok(())
}

pub fn run(c: LabelerCommand) -> anyhow::Result<()> {
    match c {
        LabelerCommand::Train(a) => train(&a),
        LabelerCommand::Eval(a) => eval(&a),
    }
}
