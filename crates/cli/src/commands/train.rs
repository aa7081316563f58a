//! `strata train`: trains a retriever (stage 1 SupCon, stage 2 circle loss, or a baseline
//! loss) from a TOML configuration and/or flags; flags override the file. With `--resume` the
//! run continues from its newest checkpoint, reading the run's saved `config.toml` unless a
//! `--config` is given.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};

use super::common::{OptimArgs, RunDirArgs};
use strata_train::config::CONFIG_FILE;
use strata_train::losses::{CircleConfig, InfoNceConfig, LossConfig, SupConConfig, TripletConfig};
use strata_train::{TrainConfig, TrainOptions, train_with};

/// Training losses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LossKind {
    /// Graded supervised contrastive loss (paper eq. 2), stage 1.
    Supcon,
    /// Multi-class circle loss (paper eqs. 3-5), stage 2.
    Circle,
    /// Graded triplet baseline.
    Triplet,
    /// InfoNCE baseline with in-batch negatives.
    Infonce,
}

#[derive(Args, Debug, Default)]
#[command(allow_negative_numbers = true)]
pub struct TrainArgs {
    #[command(flatten)]
    pub run: RunDirArgs,
    #[command(flatten)]
    pub optim: OptimArgs,

    /// Train this many runs, with seeds --seed, --seed + 1, ..., each in OUT/seed-<S>/, and
    /// average their final models into OUT/model (a weight soup).
    #[arg(long)]
    pub seeds: Option<usize>,
    /// Loss (stage): supcon (stage 1), circle (stage 2), triplet or infonce.
    #[arg(long, value_enum)]
    pub loss: Option<LossKind>,
    /// SupCon: initial temperature.
    #[arg(long)]
    pub temperature: Option<f64>,
    /// SupCon: keep the temperature fixed.
    #[arg(long)]
    pub fixed_temperature: bool,
    /// Circle loss: scale factor gamma.
    #[arg(long)]
    pub gamma: Option<f64>,

    /// Catalog file.
    #[arg(long)]
    pub catalog: Option<PathBuf>,
    /// Judgments, split by query into train and dev (--dev-fraction).
    #[arg(long)]
    pub judgments: Option<PathBuf>,
    /// Explicit training judgments (instead of --judgments).
    #[arg(long, conflicts_with = "judgments")]
    pub train_judgments: Option<PathBuf>,
    /// Explicit development judgments (with --train-judgments).
    #[arg(long, conflicts_with = "judgments")]
    pub dev_judgments: Option<PathBuf>,
    /// Fraction of queries held out for development (with --judgments).
    #[arg(long)]
    pub dev_fraction: Option<f64>,
    /// Seed of the train/dev split.
    #[arg(long)]
    pub split_seed: Option<u64>,
    /// Items per label 0,1,2 in each instance, e.g. 4,2,2.
    #[arg(long, value_delimiter = ',')]
    pub items_per_label: Option<Vec<usize>>,
    /// Most instances per query and epoch.
    #[arg(long)]
    pub instances_per_query: Option<usize>,
    /// Unjudged catalog items added to each instance as label 0 (data.random_negatives).
    #[arg(long)]
    pub random_negatives: Option<usize>,
    /// Grade-aware batch negatives: the other instances' items join each instance as label 0
    /// unless its query judges them (data.batch_negatives).
    #[arg(long)]
    pub batch_negatives: bool,
    /// Most batch negatives per instance, 0 for all (data.batch_negatives_max).
    #[arg(long)]
    pub batch_negatives_max: Option<usize>,
    /// Fraction of training queries with an added misspelled anchor (0 disables).
    #[arg(long)]
    pub spelling_ratio: Option<f64>,
    /// Item text (data.item_text): name, name+taxonomy (the name and two taxonomy levels),
    /// name+taxonomy:DEPTH or template:DEPTH:TEMPLATE.
    #[arg(long)]
    pub item_text: Option<strata_data::ItemTextConfig>,
    /// Taxonomy levels appended to item names (0: name only): `--item-text name+taxonomy:N`.
    #[arg(long, conflicts_with = "item_text")]
    pub taxonomy_depth: Option<usize>,

    /// Model to start from: a Hugging Face folder, a strata model, or a strata run directory
    /// (its best/ model, else model/).
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Projection head dimension of a new model.
    #[arg(long)]
    pub projection_dim: Option<usize>,
    /// How a new model's projection heads start: random, or identity (square heads that keep
    /// the pretrained embeddings at the first step).
    #[arg(long)]
    pub head_init: Option<strata_model::HeadInit>,
    /// Untied query and item encoders (new model).
    #[arg(long)]
    pub asymmetric: bool,
    /// Truncation length in tokens.
    #[arg(long)]
    pub max_len: Option<usize>,
    /// Dropout as the encoder config sets it (default: off).
    #[arg(long)]
    pub dropout: bool,

    /// Micro-batches per update (gradient accumulation).
    #[arg(long)]
    pub accumulation: Option<usize>,
    /// Temperature learning rate.
    #[arg(long)]
    pub temperature_lr: Option<f64>,
    /// Warmup in updates (overrides --warmup-ratio).
    #[arg(long)]
    pub warmup_steps: Option<u64>,
    /// Checkpoints kept.
    #[arg(long)]
    pub keep_checkpoints: Option<usize>,
    /// Most padded tokens per forward chunk (default: by device, 1,024 on the CPU, 32,768 on
    /// a GPU).
    #[arg(long)]
    pub chunk_tokens: Option<usize>,
    /// Most texts per forward chunk (default: by device, 256 on the CPU, 1,024 on a GPU).
    #[arg(long)]
    pub chunk_texts: Option<usize>,
    /// Also evaluate the starting model.
    #[arg(long)]
    pub eval_at_start: bool,
    /// Evaluate at most this many dev queries (0: all).
    #[arg(long)]
    pub eval_max_queries: Option<usize>,
}

/// The thread count given with the global `--threads` flag or `STRATA_THREADS`, if any.
fn global_threads() -> Option<usize> {
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--threads" {
            return args.next().and_then(|v| v.parse().ok());
        }
        if let Some(v) = a.strip_prefix("--threads=") {
            return v.parse().ok();
        }
    }
    std::env::var("STRATA_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
}

/// The default starting model: `$STRATA_MODELS/all-MiniLM-L6-v2`, else `models/...`.
fn default_init() -> PathBuf {
    std::env::var_os("STRATA_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("models"))
        .join("all-MiniLM-L6-v2")
}

/// Reads the base configuration: `--config`, else (on resume) the run's saved config, else
/// the defaults.
fn base_config(a: &TrainArgs) -> anyhow::Result<TrainConfig> {
    if let Some(p) = &a.run.config {
        return TrainConfig::from_toml_file(p);
    }
    if a.run.resume {
        let Some(out) = &a.run.out else {
            bail!("--resume needs --out RUN_DIR (or --config naming the run's out)");
        };
        let saved = out.join(CONFIG_FILE);
        if saved.is_file() {
            return TrainConfig::from_toml_file(&saved);
        }
        bail!("cannot resume: {} does not exist", saved.display());
    }
    Ok(TrainConfig {
        model: strata_train::config::ModelConfig {
            init: default_init(),
            ..Default::default()
        },
        ..Default::default()
    })
}

fn set<T>(slot: &mut T, v: Option<T>) {
    if let Some(v) = v {
        *slot = v;
    }
}

/// Applies the flags over `cfg`.
pub fn apply_flags(cfg: &mut TrainConfig, a: &TrainArgs) -> anyhow::Result<()> {
    set(&mut cfg.out, a.run.out.clone());
    set(&mut cfg.seed, a.optim.seed);
    set(&mut cfg.seeds, a.seeds);
    set(&mut cfg.device, a.optim.device.clone());
    if let Some(n) = global_threads() {
        cfg.threads = n;
    }

    if let Some(kind) = a.loss {
        let same = matches!(
            (kind, &cfg.loss),
            (LossKind::Supcon, LossConfig::Supcon(_))
                | (LossKind::Circle, LossConfig::Circle(_))
                | (LossKind::Triplet, LossConfig::Triplet(_))
                | (LossKind::Infonce, LossConfig::Infonce(_))
        );
        if !same {
            cfg.loss = match kind {
                LossKind::Supcon => LossConfig::Supcon(SupConConfig::default()),
                LossKind::Circle => LossConfig::Circle(CircleConfig::default()),
                LossKind::Triplet => LossConfig::Triplet(TripletConfig::default()),
                LossKind::Infonce => LossConfig::Infonce(InfoNceConfig::default()),
            };
        }
    }
    match &mut cfg.loss {
        LossConfig::Supcon(c) => {
            if let Some(t) = a.temperature {
                c.temperature.initial = t;
            }
            if a.fixed_temperature {
                c.temperature.learnable = false;
            }
        }
        _ if a.temperature.is_some() || a.fixed_temperature => {
            bail!("--temperature and --fixed-temperature apply to the supcon loss only")
        }
        _ => {}
    }
    match &mut cfg.loss {
        LossConfig::Circle(c) => set(&mut c.gamma, a.gamma),
        _ if a.gamma.is_some() => bail!("--gamma applies to the circle loss only"),
        _ => {}
    }

    let d = &mut cfg.data;
    set(&mut d.catalog, a.catalog.clone());
    if let Some(j) = &a.judgments {
        d.judgments = Some(j.clone());
        d.train_judgments = None;
        d.dev_judgments = None;
    }
    if let Some(j) = &a.train_judgments {
        d.train_judgments = Some(j.clone());
        d.judgments = None;
    }
    if let Some(j) = &a.dev_judgments {
        d.dev_judgments = Some(j.clone());
    }
    set(&mut d.dev_fraction, a.dev_fraction);
    set(&mut d.split_seed, a.split_seed);
    if let Some(v) = &a.items_per_label {
        let [l0, l1, l2] = v[..] else {
            bail!("--items-per-label takes three numbers (labels 0,1,2), e.g. 4,2,2; got {v:?}");
        };
        d.items_per_label = [l0, l1, l2];
    }
    set(&mut d.instances_per_query, a.instances_per_query);
    set(&mut d.random_negatives, a.random_negatives);
    d.batch_negatives |= a.batch_negatives;
    set(&mut d.batch_negatives_max, a.batch_negatives_max);
    set(&mut d.spelling_ratio, a.spelling_ratio);
    set(&mut d.item_text, a.item_text.clone());
    set(
        &mut d.item_text,
        a.taxonomy_depth
            .map(strata_data::ItemTextConfig::with_taxonomy_levels),
    );

    let m = &mut cfg.model;
    set(&mut m.init, a.init.clone());
    if a.projection_dim.is_some() {
        m.projection_dim = a.projection_dim;
    }
    set(&mut m.head_init, a.head_init);
    m.asymmetric |= a.asymmetric;
    if a.max_len.is_some() {
        m.max_len = a.max_len;
    }
    m.dropout |= a.dropout;

    let t = &mut cfg.train;
    set(&mut t.epochs, a.optim.epochs);
    set(&mut t.batch_size, a.optim.batch_size);
    set(&mut t.accumulation, a.accumulation);
    set(&mut t.lr, a.optim.lr);
    set(&mut t.head_lr, a.optim.head_lr);
    set(&mut t.temperature_lr, a.temperature_lr);
    set(&mut t.warmup_ratio, a.optim.warmup_ratio);
    if a.warmup_steps.is_some() {
        t.warmup_steps = a.warmup_steps;
    }
    set(&mut t.grad_clip, a.optim.grad_clip);
    set(&mut t.weight_decay, a.optim.weight_decay);
    set(&mut t.adam_epsilon, a.optim.adam_epsilon);
    set(&mut t.max_steps, a.optim.max_steps);
    set(&mut t.checkpoint_every, a.optim.checkpoint_every);
    set(&mut t.keep_checkpoints, a.keep_checkpoints);
    if a.chunk_tokens.is_some() {
        t.chunk_tokens = a.chunk_tokens;
    }
    if a.chunk_texts.is_some() {
        t.chunk_texts = a.chunk_texts;
    }

    let e = &mut cfg.eval;
    set(&mut e.every, a.optim.eval_every);
    e.at_start |= a.eval_at_start;
    set(&mut e.max_queries, a.eval_max_queries);
    Ok(())
}

/// Resolves the configuration (file, saved run config, flags) with absolute paths.
pub fn resolve(a: &TrainArgs) -> anyhow::Result<TrainConfig> {
    let mut cfg = base_config(a)?;
    apply_flags(&mut cfg, a)?;
    cfg.absolutize()?;
    Ok(cfg)
}

pub fn run(a: TrainArgs) -> anyhow::Result<()> {
    let cfg = resolve(&a)?;
    if a.run.print_config {
        out!("{}", cfg.to_toml()?);
        return Ok(());
    }
    cfg.validate().context("invalid training configuration")?;
    let opts = TrainOptions {
        resume: a.run.resume,
        overwrite: a.run.overwrite,
        progress: !a.run.quiet,
        stop_after: None,
    };
    let summary = train_with(&cfg, &opts).context("training failed")?;
    outln!("{}", serde_json::to_string_pretty(&summary)?);
    if let Some(best) = summary.best {
        eprintln!(
            "best dev NDCG@10 {:.4} at update {} -> {}",
            best.score.ndcg_at_10,
            best.step,
            summary.run_dir.join("best").display()
        );
    }
    if let Some(m) = &summary.model_dir {
        eprintln!("final model: {}", display(m));
    }
    Ok(())
}

fn display(p: &Path) -> String {
    p.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: TrainArgs,
    }

    fn parse(args: &[&str]) -> TrainArgs {
        let mut all = vec!["strata-train"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).unwrap().args
    }

    #[test]
    fn flags_override_the_file_and_keep_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("run.toml");
        std::fs::write(
            &file,
            "out = \"o\"\n[train]\nbatch_size = 8\nlr = 1e-5\n[loss]\nkind = \"circle\"\ngamma = 64.0\n",
        )
        .unwrap();
        let f = file.to_str().unwrap();
        let a = parse(&["--config", f, "--lr", "3e-5", "--items-per-label", "2,1,1"]);
        let cfg = resolve(&a).unwrap();
        assert_eq!(cfg.train.lr, 3e-5);
        assert_eq!(cfg.train.batch_size, 8);
        assert_eq!(cfg.data.items_per_label, [2, 1, 1]);
        assert!(cfg.out.is_absolute() && cfg.out.ends_with("o"));
        // The same loss keeps its parameters from the file; another loss starts from defaults.
        match cfg.loss {
            LossConfig::Circle(c) => assert_eq!(c.gamma, 64.0),
            other => panic!("{other:?}"),
        }
        let cfg = resolve(&parse(&[
            "--config", f, "--loss", "circle", "--gamma", "16",
        ]))
        .unwrap();
        assert!(matches!(cfg.loss, LossConfig::Circle(c) if c.gamma == 16.0));
        let cfg = resolve(&parse(&[
            "--config",
            f,
            "--loss",
            "supcon",
            "--temperature",
            "0.1",
        ]))
        .unwrap();
        assert!(matches!(cfg.loss, LossConfig::Supcon(c) if c.temperature.initial == 0.1));
        // Flags that do not fit the loss are refused.
        let e = resolve(&parse(&["--config", f, "--temperature", "0.1"])).unwrap_err();
        assert!(format!("{e:#}").contains("supcon"), "{e:#}");
        // A negative learning rate parses (validation then refuses it, naming `train.lr`).
        let cfg = resolve(&parse(&["--config", f, "--lr", "-1"])).unwrap();
        assert_eq!(cfg.train.lr, -1.0);
    }

    #[test]
    fn resume_reads_the_saved_config() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        std::fs::create_dir_all(&run).unwrap();
        let mut saved = TrainConfig::default();
        saved.train.epochs = 3;
        std::fs::write(run.join(CONFIG_FILE), saved.to_toml().unwrap()).unwrap();
        let r = run.to_str().unwrap();
        let cfg = resolve(&parse(&["--resume", "--out", r, "--max-steps", "7"])).unwrap();
        assert_eq!(cfg.train.epochs, 3);
        assert_eq!(cfg.train.max_steps, 7);
        let e = resolve(&parse(&[
            "--resume",
            "--out",
            dir.path().join("none").to_str().unwrap(),
        ]))
        .unwrap_err();
        assert!(format!("{e:#}").contains("config.toml"), "{e:#}");
        let e = resolve(&parse(&["--items-per-label", "1,2"])).unwrap_err();
        assert!(format!("{e:#}").contains("three numbers"), "{e:#}");
        let e = Cli::try_parse_from(["x", "--bogus"]).err().unwrap();
        assert!(e.to_string().contains("--bogus"));
    }
}
