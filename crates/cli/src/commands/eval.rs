//! `strata eval`: evaluates an embedding model, BM25 or a hybrid of both on judged queries
//! over the whole catalog (EVALUATION.md), writing a run directory; `strata compare`: the
//! paper-style table of relative changes against a baseline run.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use strata_eval::compare::{DEFAULT_METRICS, compare_runs, load_run};
use strata_eval::from_data::{ItemTextConfig, catalog, qrels};
use strata_eval::{
    Criterion, EvalOptions, Fusion, HnswParams, System, UnknownItems, evaluate, write_run,
};

/// The system evaluated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SystemKind {
    /// Embedding retrieval with `--model`.
    Dense,
    /// BM25 over item texts.
    Bm25,
    /// BM25 and `--model` blended (`--fusion`, `--alpha`).
    Hybrid,
}

/// How hybrid scores are blended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FusionKind {
    /// Min-max normalised convex combination.
    Convex,
    /// Reciprocal rank fusion.
    Rrf,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Catalog file (any format strata-data reads: TSV, CSV, JSONL, Parquet).
    #[arg(long)]
    pub catalog: PathBuf,
    /// Judgments file (query, item id, label or relevance).
    #[arg(long)]
    pub judgments: PathBuf,
    /// Model directory: a strata model or a Hugging Face folder (dense and hybrid systems).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Reuse the item embeddings of an index built by `strata index build` with the same
    /// model and item text (skips embedding the catalog; items it lacks are embedded).
    #[arg(long)]
    pub item_embeddings: Option<PathBuf>,
    /// System to evaluate (default: dense with --model).
    #[arg(long, value_enum)]
    pub system: Option<SystemKind>,
    /// Run directory to write (metrics.json, reports, plots, thresholds.json).
    #[arg(long)]
    pub out: PathBuf,
    /// Hybrid: weight of the semantic score, in [0, 1].
    #[arg(long, default_value_t = 0.5)]
    pub alpha: f32,
    /// Hybrid: how the two scores are blended.
    #[arg(long, value_enum, default_value = "convex")]
    pub fusion: FusionKind,
    /// Hybrid: the RRF constant k.
    #[arg(long, default_value_t = 60.0)]
    pub rrf_k: f32,
    /// Hybrid: candidates taken from each retriever before blending (at least 100).
    #[arg(long, default_value_t = 1000)]
    pub candidates: usize,
    /// Also search with an HNSW index and report its recall against exact search.
    #[arg(long)]
    pub ann: bool,
    #[command(flatten)]
    pub hnsw: super::common::HnswFlags,
    /// Token overlap at or above which a judged pair is lexically hard.
    #[arg(long, default_value_t = EvalOptions::default().hard_overlap)]
    pub hard_overlap: f64,
    /// What the strata thresholds maximise: balanced-accuracy or f1.
    #[arg(long, default_value = "balanced-accuracy")]
    pub threshold_criterion: Criterion,
    /// Fail on judgments naming items that are not in the catalog (default: count them).
    #[arg(long)]
    pub strict: bool,
    /// Item text: name+taxonomy (name and the first two taxonomy levels; the name alone for
    /// items without a taxonomy), name, name+taxonomy:DEPTH (3, all, last:1) or
    /// template:DEPTH:TEMPLATE. Default: the item text the model was trained with (recorded
    /// in a strata model directory), else name+taxonomy.
    #[arg(long)]
    pub item_text: Option<ItemTextConfig>,
    #[command(flatten)]
    pub run: super::common::InferenceArgs,
    #[command(flatten)]
    pub cache: super::common::EmbeddingCacheArgs,
}

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Run directories (or their metrics.json files) to compare.
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// The run every other run is compared with.
    #[arg(long)]
    pub baseline: PathBuf,
    /// Show absolute values instead of relative changes in percent.
    #[arg(long)]
    pub absolute: bool,
    /// Metrics to show, comma-separated (default: NDCG, recall, precision at 10/50/100,
    /// strict recall, rerank NDCG and the margins).
    #[arg(long, value_delimiter = ',')]
    pub metrics: Vec<String>,
    /// Print a Markdown table.
    #[arg(long)]
    pub markdown: bool,
    /// Instead of the metric table, compare the per-query margins of each run with the
    /// baseline's on the queries qualifying in both (from `judged_scores.tsv`): mean difference
    /// with its standard error, queries up/down, and the worst-case margin in units of the
    /// run's score standard deviation.
    #[arg(long)]
    pub paired_margins: bool,
    /// Instead of the metric table, compare each run with the baseline query by query:
    /// NDCG@10, NDCG@100 and recall@100 (from `rankings.jsonl`), then the margins as
    /// `--paired-margins` does; mean differences with standard errors, `*` beyond two.
    #[arg(long)]
    pub paired: bool,
}

pub fn run(a: EvalArgs) -> anyhow::Result<()> {
    let kind = match (a.system, &a.model) {
        (Some(k), _) => k,
        (None, Some(_)) => SystemKind::Dense,
        (None, None) => bail!("give --model DIR (embedding retrieval) or --system bm25"),
    };
    match (kind, &a.model) {
        (SystemKind::Bm25, Some(m)) => {
            bail!("--system bm25 takes no model (got --model {})", m.display())
        }
        (SystemKind::Dense | SystemKind::Hybrid, None) => {
            bail!(
                "--system {} needs --model DIR",
                if kind == SystemKind::Dense {
                    "dense"
                } else {
                    "hybrid"
                }
            )
        }
        _ => {}
    }
    if a.ann && kind == SystemKind::Bm25 {
        bail!("--ann needs an embedding model (it does not apply to --system bm25)");
    }

    let t = Instant::now();
    let data_catalog = strata_data::load_catalog(&a.catalog)?;
    let judgments = strata_data::load_judgments(&a.judgments)?;
    let item_text = strata_model::item_text_for(a.model.as_deref(), a.item_text.clone())?;
    let cat =
        catalog(&data_catalog, &item_text).with_context(|| format!("{}", a.catalog.display()))?;
    drop(data_catalog);
    let q = qrels(&judgments).with_context(|| format!("{}", a.judgments.display()))?;
    tracing::info!(
        "read {} items and {} judgments over {} queries in {:.2}s",
        cat.len(),
        q.n_judgments(),
        q.len(),
        t.elapsed().as_secs_f64()
    );

    if a.item_embeddings.is_some() && a.model.is_none() {
        bail!("--item-embeddings needs --model (the model the index was built with)");
    }
    let embedder = match &a.model {
        Some(m) => Some(a.run.embedder(m)?),
        None => None,
    };
    let vectors = match (&embedder, &a.model) {
        (Some(e), Some(m)) => Some(strata_serving::ItemVectors::open(
            e,
            m,
            &item_text,
            a.item_embeddings.as_deref(),
            &a.cache.policy(),
            &a.run.device,
            a.run.precision,
        )?),
        _ => None,
    };
    let embedder = vectors.as_ref().map(|v| v.encoder());
    let system = match (kind, embedder) {
        (SystemKind::Bm25, _) => System::Bm25,
        (SystemKind::Dense, Some(e)) => System::Dense(e),
        (SystemKind::Hybrid, Some(e)) => System::Hybrid {
            encoder: e,
            fusion: match a.fusion {
                FusionKind::Convex => Fusion::Convex { alpha: a.alpha },
                FusionKind::Rrf => Fusion::Rrf {
                    alpha: a.alpha,
                    k: a.rrf_k,
                },
            },
            candidates: a.candidates,
        },
        (_, None) => unreachable!("checked above: dense and hybrid have a model"),
    };
    let opts = EvalOptions {
        hard_overlap: a.hard_overlap,
        ann: a.ann.then_some(a.hnsw.params(HnswParams::default())),
        unknown_items: if a.strict {
            UnknownItems::Error
        } else {
            UnknownItems::Count
        },
        progress: true,
        threshold_criterion: a.threshold_criterion,
        catalog_source: Some(a.catalog.display().to_string()),
        judgments_source: Some(a.judgments.display().to_string()),
        ..EvalOptions::default()
    };
    let result = evaluate(&cat, &q, system, &opts)?;
    let files = write_run(&a.out, &result)?;
    let m = &result.metrics;
    let f = |v: Option<f64>| v.map_or_else(|| "n/a".to_string(), |v| format!("{v:.4}"));
    outln!(
        "{} on {} queries x {} items: NDCG@10 {}  @50 {}  @100 {}",
        m.system,
        m.n_queries,
        m.n_items,
        f(m.ndcg_10),
        f(m.ndcg_50),
        f(m.ndcg_100)
    );
    outln!(
        "recall@100 {} (strict {})  precision@10 {}  rerank NDCG {}",
        f(m.recall_100),
        f(m.recall_strict_100),
        f(m.precision_10),
        f(m.rerank_ndcg)
    );
    outln!(
        "{} margins on hard pairs: average {}  worst {}  over {} queries",
        m.score_kind,
        f(m.avg_margin),
        f(m.worst_margin),
        m.margin_queries
    );
    if let Some(ann) = &m.ann {
        outln!(
            "HNSW recall against exact: @10 {:.4}  @100 {:.4} (build {:.1}s, search {:.1}s)",
            ann.recall_10,
            ann.recall_100,
            ann.build_seconds,
            ann.search_seconds
        );
    }
    if let Some((st, cached)) = vectors.as_ref().and_then(|v| v.cache_stats()) {
        outln!(
            "item embeddings: {} from the cache, {} embedded (cache: {} items)",
            st.hits,
            st.embedded,
            cached
        );
    }
    let lo = &m.left_out;
    if lo.unknown_item_judgments + lo.queries_without_judgments + lo.duplicate_judgments > 0 {
        outln!(
            "left out: {} judgments naming unknown items, {} queries without judgments, {} repeated judgments",
            lo.unknown_item_judgments,
            lo.queries_without_judgments,
            lo.duplicate_judgments
        );
    }
    if let Err(e) = &result.thresholds {
        outln!("no thresholds: {e}");
    }
    outln!(
        "wrote {} and the reports in {}",
        files.metrics.display(),
        a.out.display()
    );
    Ok(())
}

pub fn compare(a: CompareArgs) -> anyhow::Result<()> {
    if a.paired_margins || a.paired {
        let dir = |p: &std::path::Path| -> std::path::PathBuf {
            if p.is_dir() {
                p.to_path_buf()
            } else {
                p.parent().unwrap_or(p).to_path_buf()
            }
        };
        let base = dir(&a.baseline);
        let base_c = base.canonicalize().ok();
        let runs: Vec<std::path::PathBuf> = a
            .runs
            .iter()
            .map(|p| dir(p))
            .filter(|p| base_c.is_none() || p.canonicalize().ok() != base_c)
            .collect();
        let refs: Vec<&std::path::Path> = runs.iter().map(|p| p.as_path()).collect();
        if a.paired {
            let rows = strata_eval::compare::paired_metrics(
                &refs,
                &base,
                &strata_eval::QueryScores::NAMES,
            )?;
            outln!("{}", strata_eval::compare::paired_metrics_markdown(&rows));
        }
        let hard = strata_eval::EvalOptions::default().hard_overlap;
        let rows = strata_eval::compare::paired_margins(&refs, &base, hard)?;
        out!("{}", strata_eval::compare::paired_margins_markdown(&rows));
        return Ok(());
    }
    let baseline = load_run(&a.baseline)?;
    let base_path = a.baseline.canonicalize().ok();
    let mut runs = Vec::new();
    for p in &a.runs {
        if base_path.is_some() && p.canonicalize().ok() == base_path {
            continue;
        }
        runs.push(load_run(p)?);
    }
    let metrics: Vec<String> = if a.metrics.is_empty() {
        DEFAULT_METRICS.iter().map(|s| s.to_string()).collect()
    } else {
        a.metrics.clone()
    };
    for m in &metrics {
        let known = std::iter::once(&baseline)
            .chain(&runs)
            .any(|r| r.values.get(m).is_some());
        if !known {
            bail!("no run has a metric named {m:?}");
        }
    }
    let table = compare_runs(&runs, &baseline, &metrics, a.absolute);
    out!(
        "{}",
        if a.markdown {
            table.to_markdown()
        } else {
            table.to_text()
        }
    );
    Ok(())
}
