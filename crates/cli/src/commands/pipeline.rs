//! `strata pipeline` and `strata mine`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use strata_data::LabelerSpec;
use strata_data::labeler::CachedLabeler;
use strata_data::text::ItemTextConfig;
use strata_mining::{Corpus, MineConfig, SearchChoice};
use strata_pipeline::PipelineConfig;

#[derive(Args)]
pub struct PipelineArgs {
    /// Pipeline config (TOML). Without one, the built-in synthetic marketplace is used.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Run tree (overrides the config's `out`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Pretrained model to start from (overrides the config's `model`).
    #[arg(long, env = "STRATA_MODEL")]
    pub model: Option<PathBuf>,
    /// Print the resolved configuration (every key, the defaults included) and exit.
    #[arg(long)]
    pub print_config: bool,
}

pub fn run(a: PipelineArgs) -> anyhow::Result<()> {
    let mut cfg = match &a.config {
        Some(p) => PipelineConfig::from_toml_file(p)?,
        None => PipelineConfig::default(),
    };
    if let Some(o) = a.out {
        cfg.out = o;
    }
    if let Some(m) = a.model {
        cfg.model = m;
    } else if a.config.is_none()
        && let Some(dir) = std::env::var_os("STRATA_MODELS")
    {
        cfg.model = PathBuf::from(dir).join("all-MiniLM-L6-v2");
    }
    if a.print_config {
        out!("{}", cfg.to_toml()?);
        return Ok(());
    }
    let summary = strata_pipeline::run(&cfg)?;
    outln!("{}", summary.comparison);
    outln!(
        "pipeline finished in {:.0}s; every artifact is under {}",
        summary.seconds,
        summary.out.display()
    );
    Ok(())
}

#[derive(Args)]
pub struct MineArgs {
    /// The model to mine with (`--model`: a stage-1 or stage-2 strata model, or a run's
    /// `model/`), and its device, batch limits and precision.
    #[command(flatten)]
    pub model: super::common::ModelArgs,
    /// Catalog file.
    #[arg(long)]
    pub catalog: PathBuf,
    /// Training judgments: every query among them is mined; all of them are kept.
    #[arg(long)]
    pub judgments: PathBuf,
    /// Output directory: `judgments.jsonl` (merged) and `mining_report.json`.
    #[arg(long)]
    pub out: PathBuf,
    /// Items retrieved per query.
    #[arg(long, default_value_t = MineConfig::default().k)]
    pub k: usize,
    /// Rank split between hard negatives and hard positives (default k/2).
    #[arg(long)]
    pub split: Option<usize>,
    /// Hard negatives are taken from this rank on (1 keeps the hardest).
    #[arg(long, default_value_t = MineConfig::default().negatives_from_rank)]
    pub negatives_from_rank: usize,
    /// Search the whole catalog instead of the training items.
    #[arg(long)]
    pub whole_catalog: bool,
    /// Search: exact (blocked matrix product), hnsw, or auto (exact while queries x items
    /// stays under 4e9, i.e. a few seconds here; HNSW beyond).
    #[arg(long, default_value = "auto")]
    pub search: SearchChoice,
    /// Labels for unjudged pairs: `unjudged-zero` (label 0), `judged-only` (left unlabeled),
    /// or `cross-encoder=DIR` (a labeler trained by `strata labeler train`).
    #[arg(long, default_value = "unjudged-zero")]
    pub labeler: LabelerSpec,
    /// Leave unjudged pairs unlabeled when the labeler's probability for its label is below
    /// this (a cross-encoder's softmax; other labelers are certain).
    #[arg(long)]
    pub min_confidence: Option<f32>,
    /// Reuse the item embeddings of an index built by `strata index build` with the same
    /// model and item text (skips embedding the items).
    #[arg(long)]
    pub item_embeddings: Option<PathBuf>,
    #[command(flatten)]
    pub hnsw: super::common::HnswFlags,
    /// Queries on which HNSW is checked against exact search (0: none).
    #[arg(long, default_value_t = MineConfig::default().recall_check_queries)]
    pub recall_check_queries: usize,
    /// Label cache (JSONL); default `<out>/../labels.jsonl`.
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Item text, as `strata eval --item-text` (default: the item text the model was trained
    /// with, else name+taxonomy).
    #[arg(long)]
    pub item_text: Option<ItemTextConfig>,
    /// Taxonomy levels in the item text: `--item-text name+taxonomy:N`.
    #[arg(long, conflicts_with = "item_text")]
    pub taxonomy_depth: Option<usize>,
    #[command(flatten)]
    pub embedding_cache: super::common::EmbeddingCacheArgs,
}

/// The labelers `strata mine` accepts.
const MINE_LABELERS: [&str; 3] = ["unjudged-zero", "judged-only", "cross-encoder"];

pub fn mine(a: MineArgs) -> anyhow::Result<()> {
    let catalog = strata_data::load_catalog(&a.catalog)?;
    let train = strata_data::load_judgments(&a.judgments)?;
    let cfg = MineConfig {
        k: a.k,
        split: a.split,
        negatives_from_rank: a.negatives_from_rank,
        corpus: if a.whole_catalog {
            Corpus::Catalog
        } else {
            Corpus::TrainingItems
        },
        ann: a.search,
        hnsw: a.hnsw.params(MineConfig::default().hnsw),
        recall_check_queries: a.recall_check_queries,
        min_confidence: a.min_confidence,
        ..MineConfig::default()
    };
    cfg.validate()?;
    // The labeler is built (or refused) before anything is written.
    let built = strata_labeling::build_labeler(
        &a.labeler,
        "--labeler",
        &MINE_LABELERS,
        strata_labeling::LabelerInputs {
            catalog: Some(&catalog),
            progress: true,
            min_confidence: cfg.min_confidence,
            ..Default::default()
        },
    )?;
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    let cache = a
        .cache
        .clone()
        .unwrap_or_else(|| a.out.join("labels.jsonl"));
    let labeler = CachedLabeler::open(built.labeler, &cache, &built.version)?;
    let text = strata_model::item_text_for(
        Some(&a.model.model),
        a.item_text
            .clone()
            .or(a.taxonomy_depth.map(ItemTextConfig::with_taxonomy_levels)),
    )?;
    let e = a.model.embedder()?.with_progress(true);
    let vectors = strata_serving::ItemVectors::open(
        &e,
        &a.model.model,
        &text,
        a.item_embeddings.as_deref(),
        &a.embedding_cache.policy(),
        &a.model.run.device,
        a.model.run.precision,
    )?;
    let encoder = vectors.encoder();
    let out = strata_mining::mine(encoder, &catalog, &text, &train, &labeler, &cfg)?;
    strata_data::write_judgments(a.out.join("judgments.jsonl"), &out.judgments)?;
    let mut report = serde_json::to_value(&out.report)?;
    report["labeler_policy"] = serde_json::Value::String(a.labeler.to_string());
    report["min_confidence"] = serde_json::json!(a.min_confidence);
    std::fs::write(
        a.out.join("mining_report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    outln!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
