//! `strata pipeline`: the whole Mine and Refine run from one TOML config, resumable.
//!
//! 1. data: the given catalog and judgments (split by query, or given split), or the built-in
//!    synthetic marketplace;
//! 2. zero-shot evaluation of the starting model on the held-out queries;
//! 3. stage 1: graded SupCon training on the training queries;
//! 4. optionally (`[labeler]`), a cross-encoder labeler fine-tuned on the training queries'
//!    judgments and evaluated on the held-out ones; mining with the stage-1 model and
//!    relabeling of unjudged pairs (by that labeler, `data.labeler` or the marketplace's oracle);
//! 5. stage 2: multi-class circle-loss refinement from stage 1 on the merged data;
//! 6. evaluation of stage 1 and stage 2, and a comparison table against zero-shot.
//!
//! Every artifact lives in one run tree; a stage whose outputs exist is skipped, and a
//! training stage that was interrupted resumes from its last checkpoint.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use strata_data::labeler::CachedLabeler;
use strata_data::marketplace::{Marketplace, MarketplaceConfig, Oracle};
use strata_data::split::SplitConfig;
use strata_data::text::ItemTextConfig;
use strata_data::{CachedEncoder, Catalog, EmbeddingCache};
use strata_eval::{EvalOptions, System};
use strata_labeling::cross_encoder::LabelerTrainConfig;
use strata_mining::MineConfig;
use strata_model::{Embedder, LoadOptions};
use strata_train::TrainConfig;
use strata_train::checkpoint::write_atomic;

/// Labels for unjudged mined pairs: `oracle` (the synthetic marketplace's policy oracle,
/// only with the built-in data), `unjudged-zero` (every unjudged pair irrelevant),
/// `judged-only` (unjudged pairs stay unlabeled and are never selected) or
/// `cross-encoder=DIR` (a labeler trained by `strata labeler train`).
pub type LabelerKind = strata_data::LabelerSpec;

/// The labelers `data.labeler` accepts.
const PIPELINE_LABELERS: [&str; 4] = ["oracle", "unjudged-zero", "judged-only", "cross-encoder"];

/// Where the data comes from. With no catalog, the synthetic marketplace is generated.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataSection {
    pub catalog: Option<PathBuf>,
    /// All judgments, split by query with `split` into train, dev and test (instead of
    /// `train_judgments`, `dev_judgments` and `test_judgments`).
    pub judgments: Option<PathBuf>,
    pub train_judgments: Option<PathBuf>,
    pub dev_judgments: Option<PathBuf>,
    /// Held-out judgments for the final evaluations.
    pub test_judgments: Option<PathBuf>,
    pub labeler: Option<LabelerKind>,
    /// Synthetic marketplace size and seed (used when `catalog` is not set).
    pub items: usize,
    pub queries: usize,
    pub seed: u64,
    /// The split of the queries into train, dev and test (the synthetic marketplace's, or
    /// that of `judgments`).
    pub split: SplitConfig,
    /// Synthetic marketplace: judge every relevant item of the dev and test queries (see
    /// `MarketplaceConfig::complete_held_out`); training queries stay sparsely judged.
    pub complete_held_out: bool,
    /// The item text both stages train with and every evaluation and the mining use
    /// (default `name+taxonomy`: the name and two taxonomy levels, as in the paper).
    pub item_text: ItemTextConfig,
    /// Older configurations' form of the item text (taxonomy levels); read into `item_text`,
    /// never written.
    #[serde(skip_serializing)]
    pub taxonomy_depth: Option<usize>,
}

impl Default for DataSection {
    fn default() -> Self {
        DataSection {
            catalog: None,
            judgments: None,
            train_judgments: None,
            dev_judgments: None,
            test_judgments: None,
            labeler: None,
            items: 2_000,
            queries: 2_000,
            seed: 42,
            split: SplitConfig {
                train: 0.4,
                dev: 0.05,
                test: 0.55,
                seed: 42,
            },
            complete_held_out: true,
            item_text: ItemTextConfig::default(),
            taxonomy_depth: None,
        }
    }
}

/// The pipeline's configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// The run tree.
    pub out: PathBuf,
    /// The pretrained model to start from.
    pub model: PathBuf,
    pub data: DataSection,
    pub stage1: TrainConfig,
    /// A cross-encoder labeler to fine-tune on the training queries' judgments (its dev split
    /// is the pipeline's dev split) and to relabel the mined pairs with; the keys of
    /// `strata labeler train`'s configuration (`data` and `out` are the pipeline's). It is also
    /// evaluated on the held-out judgments (3-class and within-1 accuracy, against the
    /// majority and BM25-threshold references).
    pub labeler: Option<LabelerTrainConfig>,
    pub mine: MineConfig,
    pub stage2: TrainConfig,
    /// Also evaluate BM25 on the held-out queries.
    pub bm25: bool,
    /// Also evaluate the hybrid of the stage-2 model and BM25 (min-max normalised convex
    /// blend with this weight on the dense score, over the top 1,000 of each); off when unset.
    pub hybrid_alpha: Option<f32>,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        let mut stage1 = TrainConfig::default();
        stage1.model.projection_dim = Some(256);
        stage1.train.epochs = 1;
        stage1.train.batch_size = 16;
        stage1.train.lr = 5e-5;
        stage1.train.checkpoint_every = 20;
        // Grade-aware batch negatives in stage 1 (the trainer's own default stays the paper's,
        // off). Stage 2 refines on the mined hard pairs with 4 random catalog items as label 0
        // per instance: with batch negatives instead its margins stayed at zero-shot's, and with
        // hard pairs alone it gave back stage 1's recall (docs/design-decisions.md).
        stage1.data.batch_negatives = true;
        let mut stage2 = stage1.clone();
        stage2.data.batch_negatives = false;
        stage2.data.random_negatives = 4;
        stage2.loss = toml::from_str("kind = \"circle\"").expect("circle loss config");
        stage2.train.lr = 2e-5;
        stage2.train.head_lr = 2e-4;
        let mine = MineConfig {
            k: 100,
            ..MineConfig::default()
        };
        PipelineConfig {
            out: PathBuf::from("runs/pipeline"),
            model: PathBuf::from("models/all-MiniLM-L6-v2"),
            data: DataSection::default(),
            stage1,
            labeler: None,
            mine,
            stage2,
            bm25: true,
            hybrid_alpha: None,
        }
    }
}

impl PipelineConfig {
    /// Reads a TOML config (unknown keys are errors).
    pub fn from_toml_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read pipeline config {}", path.display()))?;
        let mut cfg: Self =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let d = &mut cfg.data;
        d.item_text = d
            .item_text
            .clone()
            .with_legacy_depth(d.taxonomy_depth.take(), "data")
            .with_context(|| format!("{}", path.display()))?;
        Ok(cfg)
    }

    /// The configuration as TOML, every key written (what `strata pipeline --print-config`
    /// prints and a run keeps as `pipeline.toml`); `from_toml_file` reads it back.
    pub fn to_toml(&self) -> anyhow::Result<String> {
        Ok(toml::to_string_pretty(self)?)
    }

    /// Checks `data.labeler` for the user's own data.
    fn validate_data_labeler(&self) -> anyhow::Result<()> {
        let d = &self.data;
        if let Some(l) = &d.labeler {
            l.expect("data.labeler", &PIPELINE_LABELERS)?;
        }
        if d.labeler == Some(LabelerKind::Oracle) {
            bail!("data.labeler: the oracle labels only the synthetic marketplace");
        }
        if let Some(LabelerKind::CrossEncoder(dir)) = &d.labeler
            && !strata_labeling::cross_encoder::store::is_labeler_dir(dir)
        {
            bail!(
                "data.labeler: {} is not a labeler directory (train one with `strata labeler train`)",
                dir.display()
            );
        }
        Ok(())
    }

    /// Checks the configuration before any work starts.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !self.model.is_dir() {
            bail!(
                "model {} does not exist (run scripts/setup.sh)",
                self.model.display()
            );
        }
        self.mine.validate()?;
        if let Some(a) = self.hybrid_alpha {
            anyhow::ensure!(
                (0.0..=1.0).contains(&a),
                "config field `hybrid_alpha` is {a}: must be in [0, 1]"
            );
        }
        let d = &self.data;
        let explicit = [&d.train_judgments, &d.dev_judgments, &d.test_judgments]
            .iter()
            .any(|p| p.is_some());
        match (&d.catalog, &d.judgments, explicit) {
            (None, None, false) => {
                anyhow::ensure!(
                    d.items >= 100 && d.queries >= 20,
                    "data: the synthetic marketplace needs at least 100 items and 20 queries"
                );
                d.split.validate().context("config field `data.split`")?;
                if let Some(l) = &d.labeler {
                    l.expect("data.labeler", &PIPELINE_LABELERS)?;
                }
                if d.labeler
                    .as_ref()
                    .is_some_and(|l| *l != LabelerKind::Oracle)
                {
                    bail!("data.labeler: the synthetic marketplace is labeled by its oracle");
                }
            }
            (Some(c), Some(j), false) => {
                for p in [c, j] {
                    if !p.is_file() {
                        bail!("data: file {} does not exist", p.display());
                    }
                }
                d.split.validate().context("config field `data.split`")?;
                anyhow::ensure!(
                    d.split.train > 0.0 && d.split.test > 0.0,
                    "config field `data.split`: the train and test fractions must be positive"
                );
                self.validate_data_labeler()?;
            }
            (Some(c), None, true) => {
                let (Some(t), Some(e)) = (&d.train_judgments, &d.test_judgments) else {
                    bail!(
                        "data: give train_judgments and test_judgments together (dev_judgments is optional)"
                    );
                };
                for p in [c, t, e].into_iter().chain(d.dev_judgments.as_ref()) {
                    if !p.is_file() {
                        bail!("data: file {} does not exist", p.display());
                    }
                }
                self.validate_data_labeler()?;
                if self.labeler.is_some() {
                    bail!(
                        "[labeler]: the labeler is trained and evaluated on the split of `data.judgments` (or the synthetic marketplace); with train_judgments and test_judgments, train it with `strata labeler train` and give `data.labeler = \"cross-encoder=DIR\"`"
                    );
                }
            }
            _ => bail!(
                "data: give catalog with judgments (split by `data.split`), or catalog, train_judgments and test_judgments (dev_judgments optional), or none of them for the synthetic marketplace"
            ),
        }
        if let Some(l) = &self.labeler {
            if d.labeler.is_some() {
                bail!(
                    "data.labeler and [labeler] both name the mining labeler: give one (the [labeler] section trains it)"
                );
            }
            let mut l = l.clone();
            l.data.split = d.split;
            l.validate().context("config section [labeler]")?;
        }
        Ok(())
    }
}

/// Paths of the pipeline's data once prepared.
struct Prepared {
    catalog: PathBuf,
    train: PathBuf,
    dev: Option<PathBuf>,
    test: PathBuf,
    /// All judgments and the split that gives train, dev and test (known for the synthetic
    /// marketplace and for `data.judgments`): the labeler stage trains and evaluates on it.
    split_source: Option<(PathBuf, SplitConfig)>,
    /// The synthetic marketplace's policy oracle.
    oracle: Option<Oracle>,
}

fn done(dir: &Path) -> bool {
    dir.join(".done").is_file()
}

fn mark_done(dir: &Path) -> anyhow::Result<()> {
    std::fs::write(dir.join(".done"), b"")
        .with_context(|| format!("cannot write {}", dir.display()))
}

fn prepare_data(cfg: &PipelineConfig) -> anyhow::Result<Prepared> {
    let d = &cfg.data;
    let dir = cfg.out.join("data");
    if let (Some(c), Some(t), Some(e)) = (&d.catalog, &d.train_judgments, &d.test_judgments) {
        return Ok(Prepared {
            catalog: c.clone(),
            train: t.clone(),
            dev: d.dev_judgments.clone(),
            test: e.clone(),
            split_source: None,
            oracle: None,
        });
    }
    if let (Some(c), Some(j)) = (&d.catalog, &d.judgments) {
        if !done(&dir) {
            let judgments = strata_data::load_judgments(j)?;
            let parts = d.split.split_judgments(&judgments);
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            for (name, part) in [
                ("train", &parts.train),
                ("dev", &parts.dev),
                ("test", &parts.test),
            ] {
                strata_data::write_judgments(dir.join(format!("{name}.jsonl")), part)?;
            }
            mark_done(&dir)?;
            tracing::info!(
                "{}: {} train, {} dev and {} test judgments (by query, seed {})",
                j.display(),
                parts.train.len(),
                parts.dev.len(),
                parts.test.len(),
                d.split.seed
            );
        }
        return Ok(Prepared {
            catalog: c.clone(),
            train: dir.join("train.jsonl"),
            dev: (d.split.dev > 0.0).then(|| dir.join("dev.jsonl")),
            test: dir.join("test.jsonl"),
            split_source: Some((j.clone(), d.split)),
            oracle: None,
        });
    }
    let mcfg = MarketplaceConfig {
        items: d.items,
        queries: d.queries,
        seed: d.seed,
        split: d.split,
        complete_held_out: d.complete_held_out,
        ..MarketplaceConfig::default()
    };
    let t = Instant::now();
    let m = Marketplace::generate(&mcfg)?;
    if !done(&dir) {
        m.write(
            &dir,
            strata_data::Format::Jsonl,
            &strata_data::progress::NoProgress,
        )?;
        mark_done(&dir)?;
        tracing::info!(
            "synthetic marketplace written to {} in {:.1}s",
            dir.display(),
            t.elapsed().as_secs_f64()
        );
    }
    Ok(Prepared {
        catalog: dir.join("catalog.jsonl"),
        train: dir.join("train.jsonl"),
        dev: Some(dir.join("dev.jsonl")),
        test: dir.join("test.jsonl"),
        split_source: Some((dir.join("judgments.jsonl"), d.split)),
        oracle: Some(m.oracle().clone()),
    })
}

/// The labeler of unjudged mined pairs: the labeler this run trained, else `data.labeler`,
/// else the marketplace's oracle, else "unjudged = irrelevant".
fn mining_labeler(
    cfg: &PipelineConfig,
    prep: &Prepared,
    catalog: &Catalog,
    trained: Option<&Path>,
) -> anyhow::Result<strata_labeling::BuiltLabeler> {
    let spec = match (trained, &cfg.data.labeler, &prep.oracle) {
        (Some(dir), _, _) => LabelerKind::CrossEncoder(dir.to_path_buf()),
        (None, Some(l), _) => l.clone(),
        (None, None, Some(_)) => LabelerKind::Oracle,
        (None, None, None) => LabelerKind::UnjudgedZero,
    };
    strata_labeling::build_labeler(
        &spec,
        "data.labeler",
        &PIPELINE_LABELERS,
        strata_labeling::LabelerInputs {
            catalog: Some(catalog),
            oracle: prep.oracle.clone(),
            progress: true,
            min_confidence: cfg.mine.min_confidence,
            ..Default::default()
        },
    )
}

fn item_text(cfg: &PipelineConfig) -> ItemTextConfig {
    cfg.data.item_text.clone()
}

/// Evaluates a model (or BM25; or the model blended with BM25 with `hybrid_alpha`) on the
/// held-out judgments into `dir` unless done already.
fn eval_into(
    dir: &Path,
    model: Option<&Path>,
    hybrid_alpha: Option<f32>,
    catalog: &Catalog,
    text: &ItemTextConfig,
    judgments_path: &Path,
    cache_root: &Path,
) -> anyhow::Result<()> {
    if dir.join("metrics.json").is_file() {
        tracing::info!("{}: evaluated already, skipping", dir.display());
        return Ok(());
    }
    let judgments = strata_data::load_judgments(judgments_path)?;
    let cat = strata_eval::Corpus::new(catalog.iter().map(|i| (i.id.clone(), text.render(i))))?;
    let q = strata_eval::from_data::qrels(&judgments)?;
    let opts = EvalOptions {
        progress: true,
        judgments_source: Some(judgments_path.display().to_string()),
        ..EvalOptions::default()
    };
    let result = match model {
        Some(m) => {
            let e = Embedder::load(m, &engine_f32())?.with_progress(true);
            let cached = with_item_cache(&e, m, cache_root)?;
            let system = match hybrid_alpha {
                Some(alpha) => System::Hybrid {
                    encoder: &cached,
                    fusion: strata_eval::Fusion::Convex { alpha },
                    candidates: 1000,
                },
                None => System::Dense(&cached),
            };
            strata_eval::evaluate(&cat, &q, system, &opts)?
        }
        None => strata_eval::evaluate(&cat, &q, System::Bm25, &opts)?,
    };
    strata_eval::write_run(dir, &result)?;
    let m = &result.metrics;
    tracing::info!(
        "{}: NDCG@10 {:.4} over {} queries",
        dir.display(),
        m.ndcg_10.unwrap_or(f64::NAN),
        m.n_queries
    );
    Ok(())
}

/// The model directory a finished training run produced.
fn run_model(run: &Path) -> Option<PathBuf> {
    let m = run.join("model");
    m.join("strata.json").is_file().then_some(m)
}

fn train_stage(
    stage: &TrainConfig,
    out: PathBuf,
    init: PathBuf,
    prep: &Prepared,
    train: PathBuf,
    text: &ItemTextConfig,
) -> anyhow::Result<PathBuf> {
    if let Some(m) = run_model(&out) {
        tracing::info!("{}: trained already, skipping", out.display());
        return Ok(m);
    }
    let mut c = stage.clone();
    c.out = out.clone();
    c.model.init = init;
    c.data.catalog = prep.catalog.clone();
    c.data.judgments = None;
    c.data.train_judgments = Some(train);
    c.data.dev_judgments = prep.dev.clone();
    c.data.item_text = text.clone();
    c.data.taxonomy_depth = None;
    let opts = strata_train::TrainOptions {
        resume: strata_train::can_resume(&c)?,
        progress: true,
        ..Default::default()
    };
    let summary = strata_train::train_with(&c, &opts)?;
    summary
        .model_dir
        .with_context(|| format!("{}: training stopped before its end", out.display()))
}

/// The outcome of a pipeline run.
#[derive(Debug, Serialize)]
pub struct PipelineSummary {
    pub out: PathBuf,
    pub comparison: String,
    pub seconds: f64,
}

/// Runs the pipeline.
pub fn run(cfg: &PipelineConfig) -> anyhow::Result<PipelineSummary> {
    cfg.validate()?;
    let start = Instant::now();
    std::fs::create_dir_all(&cfg.out)
        .with_context(|| format!("cannot create {}", cfg.out.display()))?;
    write_atomic(&cfg.out.join("pipeline.toml"), cfg.to_toml()?.as_bytes())?;
    let prep = prepare_data(cfg)?;
    let catalog = strata_data::load_catalog(&prep.catalog)?;
    let text = item_text(cfg);
    let runs = cfg.out.join("runs");
    // One item-embedding cache for the run: mining reads back the catalog vectors that the
    // stage-1 evaluation computed with the same model instead of embedding it again.
    let cache_root = cfg.out.join("cache");
    // Every evaluation: the held-out judgments over the whole catalog, into runs/<name>.
    let evaluate = |name: &str, model: Option<&Path>, hybrid_alpha: Option<f32>| {
        eval_into(
            &runs.join(name),
            model,
            hybrid_alpha,
            &catalog,
            &text,
            &prep.test,
            &cache_root,
        )
    };

    tracing::info!("[1/6] zero-shot evaluation");
    evaluate("eval-zero-shot", Some(&cfg.model), None)?;
    if cfg.bm25 {
        evaluate("eval-bm25", None, None)?;
    }

    tracing::info!("[2/6] stage 1: {} training", cfg.stage1.loss.name());
    let stage1 = train_stage(
        &cfg.stage1,
        runs.join("stage1"),
        cfg.model.clone(),
        &prep,
        prep.train.clone(),
        &text,
    )?;
    tracing::info!("[3/6] stage 1 evaluation");
    evaluate("eval-stage1", Some(&stage1), None)?;

    let trained_labeler = match &cfg.labeler {
        Some(l) => {
            tracing::info!("[4/6] labeler: fine-tuning a cross-encoder on the training queries");
            Some(labeler_stage(cfg, l, &prep, &text, &runs.join("labeler"))?)
        }
        None => None,
    };

    tracing::info!("[4/6] mining with the stage-1 model");
    let mine_dir = runs.join("mine");
    let mined = mine_dir.join("judgments.jsonl");
    if !done(&mine_dir) {
        std::fs::create_dir_all(&mine_dir)?;
        let train = strata_data::load_judgments(&prep.train)?;
        let built = mining_labeler(cfg, &prep, &catalog, trained_labeler.as_deref())?;
        let labeler = CachedLabeler::open(
            built.labeler.as_ref(),
            cfg.out.join("labels.jsonl"),
            &built.version,
        )?;
        let e = Embedder::load(&stage1, &engine_f32())?.with_progress(true);
        let cached = with_item_cache(&e, &stage1, &cache_root)?;
        let out = strata_mining::mine(&cached, &catalog, &text, &train, &labeler, &cfg.mine)?;
        let stats = cached.stats();
        tracing::info!(
            "mining: {} item embeddings from the run's cache, {} embedded",
            stats.hits,
            stats.embedded
        );
        strata_data::write_judgments(&mined, &out.judgments)?;
        let mut report = serde_json::to_value(&out.report)?;
        report["labeler_policy"] = serde_json::Value::String(built.policy.clone());
        report["labeler_cache_hits"] = labeler.hits().into();
        report["item_embeddings_from_cache"] = stats.hits.into();
        report["items_embedded"] = stats.embedded.into();
        write_atomic(
            &mine_dir.join("mining_report.json"),
            serde_json::to_string_pretty(&report)?.as_bytes(),
        )?;
        tracing::info!(
            "mined {} hard negatives and {} hard positives ({} pairs newly labeled; naive top-k/2 negatives would be {:.1}% false)",
            out.report.hard_negatives,
            out.report.hard_positives,
            out.report.newly_labeled,
            100.0 * out.report.naive_false_negative_rate
        );
        mark_done(&mine_dir)?;
    }

    tracing::info!("[5/6] stage 2: {} refinement", cfg.stage2.loss.name());
    let stage2 = train_stage(
        &cfg.stage2,
        runs.join("stage2"),
        runs.join("stage1"),
        &prep,
        mined,
        &text,
    )?;
    tracing::info!("[6/6] stage 2 evaluation and comparison");
    evaluate("eval-stage2", Some(&stage2), None)?;
    if let Some(alpha) = cfg.hybrid_alpha {
        evaluate("eval-hybrid", Some(&stage2), Some(alpha))?;
    }

    let mut rows = vec![];
    for name in ["eval-stage1", "eval-stage2", "eval-bm25", "eval-hybrid"] {
        let p = runs.join(name);
        if p.join("metrics.json").is_file() {
            rows.push(strata_eval::load_run(&p)?);
        }
    }
    let base = strata_eval::load_run(&runs.join("eval-zero-shot"))?;
    let metrics: Vec<String> = strata_eval::compare::DEFAULT_METRICS
        .iter()
        .map(|s| s.to_string())
        .collect();
    let rel = strata_eval::compare_runs(&rows, &base, &metrics, false);
    let abs = strata_eval::compare_runs(&rows, &base, &metrics, true);
    let policy = std::fs::read_to_string(mine_dir.join("mining_report.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|r| r["labeler_policy"].as_str().map(str::to_string))
        .unwrap_or_else(|| "(not recorded)".into());
    let labeler_line = match &trained_labeler {
        Some(_) => labeler_summary(&runs.join("labeler")),
        None => String::new(),
    };
    let comparison = format!(
        "# Mine and Refine: held-out evaluation\n\nRelative change against zero-shot:\n\n{}\n\nAbsolute values:\n\n{}\n\n{}\nMining labels: {policy}.\n{labeler_line}",
        rel.to_markdown(),
        abs.to_markdown(),
        paired_sections(&runs),
    );
    write_atomic(&cfg.out.join("comparison.md"), comparison.as_bytes())?;
    Ok(PipelineSummary {
        out: cfg.out.clone(),
        comparison,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Per-query comparisons with standard errors: every run against zero-shot, and stage 2
/// against stage 1 (retrieval metrics from `rankings.jsonl`, hard-pair margins from
/// `judged_scores.tsv`). Runs evaluated by an older strata lack per-query metrics: the section
/// then says so instead of failing the finished pipeline.
fn paired_sections(runs: &Path) -> String {
    let hard = strata_eval::EvalOptions::default().hard_overlap;
    let metrics = strata_eval::QueryScores::NAMES;
    let existing = |names: &[&str]| -> Vec<PathBuf> {
        names
            .iter()
            .map(|n| runs.join(n))
            .filter(|p| p.join("metrics.json").is_file())
            .collect()
    };
    let dense = existing(&["eval-stage1", "eval-stage2"]);
    let sections = [
        (
            "against zero-shot",
            runs.join("eval-zero-shot"),
            existing(&["eval-stage1", "eval-stage2", "eval-bm25", "eval-hybrid"]),
        ),
        (
            "stage 2 against stage 1",
            runs.join("eval-stage1"),
            existing(&["eval-stage2"]),
        ),
    ];
    let mut out = String::new();
    for (title, base, rows) in &sections {
        let paths: Vec<&Path> = rows.iter().map(PathBuf::as_path).collect();
        if paths.is_empty() || !base.join("metrics.json").is_file() {
            continue;
        }
        out.push_str(&format!(
            "Per query, {title} (mean difference ± standard error over the queries defined in both runs; `*`: beyond two standard errors):\n\n"
        ));
        match strata_eval::compare::paired_metrics(&paths, base, &metrics) {
            Ok(rows) => out.push_str(&strata_eval::compare::paired_metrics_markdown(&rows)),
            Err(e) => out.push_str(&format!("(not available: {e:#})\n")),
        }
        out.push('\n');
        let dense_paths: Vec<&Path> = paths
            .iter()
            .copied()
            .filter(|p| dense.iter().any(|d| d == p))
            .collect();
        if dense_paths.is_empty() {
            continue;
        }
        out.push_str(&format!(
            "Hard-pair margins per query, {title} (mean difference ± standard error over the queries that qualify in both runs; `*`: beyond two standard errors):\n\n"
        ));
        match strata_eval::compare::paired_margins(&dense_paths, base, hard) {
            Ok(rows) => out.push_str(&strata_eval::compare::paired_margins_markdown(&rows)),
            Err(e) => out.push_str(&format!("(not available: {e:#})\n")),
        }
        out.push('\n');
    }
    out
}

/// Fine-tunes the cross-encoder labeler of `[labeler]` on the training queries' judgments
/// (best by accuracy on the dev queries) into `out`, resuming an interrupted run, then
/// evaluates it on the held-out queries' judgments (`eval-test.json`); returns the labeler
/// directory. Both are skipped when done.
fn labeler_stage(
    cfg: &PipelineConfig,
    section: &LabelerTrainConfig,
    prep: &Prepared,
    text: &ItemTextConfig,
    out: &Path,
) -> anyhow::Result<PathBuf> {
    use strata_labeling::cross_encoder::{
        LabelerEvalConfig, eval::write_report, evaluate_labeler, train::resolve_labeler_dir,
        train_labeler,
    };
    let (judgments, split) = prep
        .split_source
        .clone()
        .context("[labeler]: the labeler needs the split of `data.judgments`")?;
    let mut l = section.clone();
    l.data.catalog = prep.catalog.clone();
    l.data.judgments = judgments;
    l.data.split = split;
    l.data.item_text = text.clone();
    l.data.taxonomy_depth = None;
    l.out = out.to_path_buf();
    if l.init == LabelerTrainConfig::default().init {
        l.init = cfg.model.clone();
    }
    if !out.join(strata_train::run_loop::SUMMARY_FILE).is_file() {
        let resume = strata_train::checkpoint::latest_checkpoint(out)?.is_some();
        let opts = strata_train::TrainOptions {
            resume,
            progress: true,
            ..Default::default()
        };
        let summary = train_labeler(&l, &opts)?;
        tracing::info!(
            "labeler: {} updates over {} training pairs; best dev accuracy {}",
            summary.steps,
            summary.train_pairs,
            summary
                .best
                .map_or_else(|| "n/a".to_string(), |b| format!("{:.4}", b.accuracy))
        );
    }
    let dir = resolve_labeler_dir(out);
    let report_path = out.join("eval-test.json");
    if !report_path.is_file() {
        let report = evaluate_labeler(&LabelerEvalConfig {
            labeler: dir.clone(),
            data: l.data.clone(),
            split: strata_data::split::Split::Test,
            max_pairs: 0,
            seed: l.seed,
            limits: strata_model::BatchLimits::default(),
            progress: true,
        })?;
        write_atomic(&out.join("eval-test.txt"), report.table().as_bytes())?;
        write_report(&report, &report_path)?;
    }
    Ok(dir)
}

/// One line on the trained labeler's held-out accuracy, from its `eval-test.json`.
fn labeler_summary(out: &Path) -> String {
    let read = || -> anyhow::Result<String> {
        let t = std::fs::read_to_string(out.join("eval-test.json"))?;
        let r: strata_labeling::cross_encoder::LabelerEvalReport = serde_json::from_str(&t)?;
        Ok(format!(
            "The labeler on the held-out judgments ({} pairs of {} queries): 3-class accuracy {:.4}, within-1 {:.4}, macro F1 {:.4} (majority level {}: {:.4}; BM25 thresholds: {:.4}).\n",
            r.pairs,
            r.queries,
            r.cross_encoder.accuracy,
            r.cross_encoder.within_1_accuracy,
            r.cross_encoder.macro_f1,
            r.majority.level,
            r.majority.metrics.accuracy,
            r.bm25.metrics.accuracy
        ))
    };
    read()
        .unwrap_or_else(|e| format!("The labeler's held-out evaluation is not available: {e:#}.\n"))
}

/// `e` (loaded from `model`) answering item texts from the run's cache under `root`.
fn with_item_cache<'a>(
    e: &'a Embedder,
    model: &Path,
    root: &Path,
) -> anyhow::Result<CachedEncoder<'a>> {
    let dir = strata_model::item_cache_dir(
        root,
        model,
        e.config().max_len,
        "cpu",
        strata_model::Precision::F32,
    )?;
    let dim = strata_data::TextEncoder::dim(e);
    CachedEncoder::new(e, EmbeddingCache::open(&dir, dim)?)
}

/// Inference options: strata's CPU engine at f32 (the tensor model's function, faster).
fn engine_f32() -> LoadOptions {
    LoadOptions {
        precision: Some(strata_model::Precision::F32),
        ..Default::default()
    }
}
