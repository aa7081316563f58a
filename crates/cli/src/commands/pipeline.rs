//! `strata pipeline` and `strata mine`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use strata_data::Labeler;
use strata_data::LabelerSpec;
use strata_data::labeler::{CachedLabeler, JudgmentLookupLabeler, UnknownPair};
use strata_data::text::ItemTextConfig;
use strata_labeling::cross_encoder::CrossEncoderLabeler;
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
    let summary = strata_pipeline::run(&cfg)?;
    println!("{}", summary.comparison);
    println!(
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
    #[arg(long, default_value_t = 150)]
    pub k: usize,
    /// Rank split between hard negatives and hard positives (default k/2).
    #[arg(long)]
    pub split: Option<usize>,
    /// Hard negatives are taken from this rank on (1 keeps the hardest).
    #[arg(long, default_value_t = 1)]
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
    /// Reuse the item embeddings of an index built by `strata index build` with the same
    /// model (skips embedding the items; the item text must match: name + 2 taxonomy levels).
    #[arg(long)]
    pub item_embeddings: Option<PathBuf>,
    /// HNSW graph degree.
    #[arg(long, default_value_t = 24)]
    pub hnsw_m: usize,
    /// HNSW candidate list size while building.
    #[arg(long, default_value_t = 200)]
    pub hnsw_ef_construction: usize,
    /// HNSW candidate list size while searching (raised to k when lower).
    #[arg(long, default_value_t = 400)]
    pub hnsw_ef_search: usize,
    /// Queries on which HNSW is checked against exact search (0: none).
    #[arg(long, default_value_t = 1000)]
    pub recall_check_queries: usize,
    /// Label cache (JSONL); default `<out>/../labels.jsonl`.
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Taxonomy levels in the item text (default: the item text the model was trained with,
    /// else 2).
    #[arg(long)]
    pub taxonomy_depth: Option<usize>,
    #[command(flatten)]
    pub embedding_cache: super::common::EmbeddingCacheArgs,
}

/// The labelers `strata mine` accepts.
const MINE_LABELERS: [&str; 3] = ["unjudged-zero", "judged-only", "cross-encoder"];

pub fn mine(a: MineArgs) -> anyhow::Result<()> {
    a.labeler.expect("--labeler", &MINE_LABELERS)?;
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
        hnsw: strata_eval::HnswParams {
            connectivity: a.hnsw_m,
            expansion_add: a.hnsw_ef_construction,
            expansion_search: a.hnsw_ef_search,
        },
        recall_check_queries: a.recall_check_queries,
        ..MineConfig::default()
    };
    cfg.validate()?;
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    let cache = a
        .cache
        .clone()
        .unwrap_or_else(|| a.out.join("labels.jsonl"));
    let (inner, version): (Box<dyn Labeler>, String) = match &a.labeler {
        // Mining keeps the label of every judged pair itself, so these policies only answer
        // unjudged pairs (and do not need the judgments, which may hold conflicting labels
        // for case variants of a query, as Home Depot's do).
        LabelerSpec::UnjudgedZero => (
            Box::new(JudgmentLookupLabeler::new(&[], UnknownPair::Fixed(0))?),
            "v1".into(),
        ),
        LabelerSpec::JudgedOnly => (
            Box::new(JudgmentLookupLabeler::new(&[], UnknownPair::Abstain)?),
            "v1".into(),
        ),
        LabelerSpec::CrossEncoder(dir) => {
            let l = CrossEncoderLabeler::load(dir, &catalog)?;
            let version = format!("cross-encoder-{:016x}", l.fingerprint());
            (Box::new(l), version)
        }
        other => {
            return Err(other.rejected("--labeler", &MINE_LABELERS));
        }
    };
    let labeler = CachedLabeler::open(inner, &cache, &version)?;
    let text = strata_model::item_text_for(
        Some(&a.model.model),
        a.taxonomy_depth.map(ItemTextConfig::with_taxonomy_levels),
    )?;
    let e = a.model.embedder()?.with_progress(true);
    let model_dir = &a.model.model;
    let index = match &a.item_embeddings {
        Some(dir) => {
            let idx = strata_serving::ItemIndex::open(dir)?;
            let fp = strata_model::model_fingerprint(model_dir)?;
            idx.manifest()
                .check_model(&model_dir.display().to_string(), &fp)?;
            Some(idx)
        }
        None => None,
    };
    let indexed = match &index {
        Some(idx) => Some(strata_serving::IndexedItems::new(idx, &e)?),
        None => None,
    };
    let cached = match &indexed {
        None => {
            let dir = a.embedding_cache.dir(
                model_dir,
                e.config().max_len,
                &a.model.run.device,
                a.model.run.precision,
            )?;
            super::common::cached_encoder(&e, dir.as_deref())?
        }
        Some(_) => None,
    };
    let encoder: &dyn strata_data::TextEncoder = match (&indexed, &cached) {
        (Some(i), _) => i,
        (None, Some(c)) => c,
        (None, None) => &e,
    };
    let out = strata_mining::mine(encoder, &catalog, &text, &train, &labeler, &cfg)?;
    strata_data::write_judgments(a.out.join("judgments.jsonl"), &out.judgments)?;
    let mut report = serde_json::to_value(&out.report)?;
    report["labeler_policy"] = serde_json::Value::String(a.labeler.to_string());
    std::fs::write(
        a.out.join("mining_report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
