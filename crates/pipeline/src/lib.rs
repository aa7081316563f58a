//! `strata pipeline`: the whole Mine and Refine run from one TOML config, resumable.
//!
//! 1. data: the given catalog and judgments, or the built-in synthetic marketplace;
//! 2. zero-shot evaluation of the starting model on the held-out queries;
//! 3. stage 1: graded SupCon training on the training queries;
//! 4. mining with the stage-1 model and relabeling of unjudged pairs;
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
use strata_data::marketplace::{Marketplace, MarketplaceConfig};
use strata_data::split::SplitConfig;
use strata_data::text::ItemTextConfig;
use strata_data::{CachedEncoder, Catalog, EmbeddingCache};
use strata_eval::{EvalOptions, System};
use strata_mining::MineConfig;
use strata_model::{Embedder, LoadOptions};
use strata_train::TrainConfig;

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
    pub train_judgments: Option<PathBuf>,
    pub dev_judgments: Option<PathBuf>,
    /// Held-out judgments for the final evaluations.
    pub test_judgments: Option<PathBuf>,
    pub labeler: Option<LabelerKind>,
    /// Synthetic marketplace size and seed (used when `catalog` is not set).
    pub items: usize,
    pub queries: usize,
    pub seed: u64,
    /// Synthetic marketplace: the split of its queries into train, dev and test.
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
    pub mine: MineConfig,
    pub stage2: TrainConfig,
    /// Also evaluate BM25 on the held-out queries.
    pub bm25: bool,
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
            mine,
            stage2,
            bm25: true,
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

    /// Checks the configuration before any work starts.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !self.model.is_dir() {
            bail!(
                "model {} does not exist (run scripts/setup.sh)",
                self.model.display()
            );
        }
        self.mine.validate()?;
        let d = &self.data;
        match (&d.catalog, &d.train_judgments, &d.test_judgments) {
            (None, None, None) => {
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
            (Some(c), Some(t), Some(e)) => {
                for p in [c, t, e].into_iter().chain(d.dev_judgments.as_ref()) {
                    if !p.is_file() {
                        bail!("data: file {} does not exist", p.display());
                    }
                }
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
            }
            _ => bail!(
                "data: give catalog, train_judgments and test_judgments together (or none for the synthetic marketplace)"
            ),
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
    /// The labeler of unjudged mined pairs, its label-cache version and policy.
    labeler: strata_labeling::BuiltLabeler,
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
    if let (Some(c), Some(t), Some(e)) = (&d.catalog, &d.train_judgments, &d.test_judgments) {
        let kind = d.labeler.clone().unwrap_or(LabelerKind::UnjudgedZero);
        let catalog = match kind {
            LabelerKind::CrossEncoder(_) => Some(strata_data::load_catalog(c)?),
            _ => None,
        };
        let labeler = strata_labeling::build_labeler(
            &kind,
            "data.labeler",
            &PIPELINE_LABELERS,
            strata_labeling::LabelerInputs {
                catalog: catalog.as_ref(),
                progress: true,
                ..Default::default()
            },
        )?;
        return Ok(Prepared {
            catalog: c.clone(),
            train: t.clone(),
            dev: d.dev_judgments.clone(),
            test: e.clone(),
            labeler,
        });
    }
    let dir = cfg.out.join("data");
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
        labeler: strata_labeling::build_labeler(
            &LabelerKind::Oracle,
            "data.labeler",
            &PIPELINE_LABELERS,
            strata_labeling::LabelerInputs {
                catalog: Some(&m.catalog),
                oracle: Some(m.oracle().clone()),
                ..Default::default()
            },
        )?,
    })
}

fn item_text(cfg: &PipelineConfig) -> ItemTextConfig {
    cfg.data.item_text.clone()
}

/// Evaluates a model (or BM25) on the held-out judgments into `dir` unless done already.
fn eval_into(
    dir: &Path,
    model: Option<&Path>,
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
            strata_eval::evaluate(&cat, &q, System::Dense(&cached), &opts)?
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
    let resume = strata_train::checkpoint::latest_checkpoint(&out)?.is_some();
    let opts = strata_train::TrainOptions {
        resume,
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
    std::fs::write(cfg.out.join("pipeline.toml"), toml::to_string_pretty(cfg)?)?;
    let prep = prepare_data(cfg)?;
    let catalog = strata_data::load_catalog(&prep.catalog)?;
    let text = item_text(cfg);
    let runs = cfg.out.join("runs");
    // One item-embedding cache for the run: mining reads back the catalog vectors that the
    // stage-1 evaluation computed with the same model instead of embedding it again.
    let cache_root = cfg.out.join("cache");

    tracing::info!("[1/6] zero-shot evaluation");
    eval_into(
        &runs.join("eval-zero-shot"),
        Some(&cfg.model),
        &catalog,
        &text,
        &prep.test,
        &cache_root,
    )?;
    if cfg.bm25 {
        eval_into(
            &runs.join("eval-bm25"),
            None,
            &catalog,
            &text,
            &prep.test,
            &cache_root,
        )?;
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
    eval_into(
        &runs.join("eval-stage1"),
        Some(&stage1),
        &catalog,
        &text,
        &prep.test,
        &cache_root,
    )?;

    tracing::info!("[4/6] mining with the stage-1 model");
    let mine_dir = runs.join("mine");
    let mined = mine_dir.join("judgments.jsonl");
    if !done(&mine_dir) {
        std::fs::create_dir_all(&mine_dir)?;
        let train = strata_data::load_judgments(&prep.train)?;
        let labeler = CachedLabeler::open(
            prep.labeler.labeler.as_ref(),
            cfg.out.join("labels.jsonl"),
            &prep.labeler.version,
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
        report["labeler_policy"] = serde_json::Value::String(prep.labeler.policy.clone());
        report["labeler_cache_hits"] = labeler.hits().into();
        report["item_embeddings_from_cache"] = stats.hits.into();
        report["items_embedded"] = stats.embedded.into();
        std::fs::write(
            mine_dir.join("mining_report.json"),
            serde_json::to_string_pretty(&report)?,
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
    eval_into(
        &runs.join("eval-stage2"),
        Some(&stage2),
        &catalog,
        &text,
        &prep.test,
        &cache_root,
    )?;

    let mut rows = vec![];
    for name in ["eval-stage1", "eval-stage2", "eval-bm25"] {
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
    let comparison = format!(
        "# Mine and Refine: held-out evaluation\n\nRelative change against zero-shot:\n\n{}\n\nAbsolute values:\n\n{}\n\n{}\nMining labels: {}.\n",
        rel.to_markdown(),
        abs.to_markdown(),
        paired_sections(&runs),
        prep.labeler.policy
    );
    std::fs::write(cfg.out.join("comparison.md"), &comparison)?;
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
            existing(&["eval-stage1", "eval-stage2", "eval-bm25"]),
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
