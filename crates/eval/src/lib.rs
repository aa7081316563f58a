//! strata evaluation: the protocol of `EVALUATION.md` as a library.
//!
//! - [`input`]: the catalog and graded judgments, resolved against each other with explicit
//!   counts of everything left out.
//! - [`metrics`]: NDCG, recall (lenient and strict), precision and rerank NDCG with linear gains.
//! - [`margins`]: token overlap, lexically hard pairs, margin metrics and score distributions.
//! - [`search`], [`bm25`], [`hybrid`], [`thresholds`]: re-exported from strata-retrieval, which
//!   owns them (exact and HNSW search, the lexical baseline, lexical/semantic fusion, the
//!   relevance-stratum thresholds that `evaluate` derives).
//! - [`evaluate()`]: one full evaluation run; [`report`] writes it to a run directory
//!   (`metrics.json`, Markdown and HTML reports, plots, thresholds).
//! - [`compare`]: the paper-style table of relative changes against a baseline run.
//! - [`from_data`]: conversion from strata-data's records.

pub mod compare;
pub mod evaluate;
pub mod from_data;
pub mod input;
pub mod margins;
pub mod metrics;
pub mod plots;
pub mod report;
pub mod stats;

pub use strata_retrieval::{bm25, hybrid, search, thresholds, tokens};

pub use bm25::Bm25Index;
pub use compare::{CompareTable, compare_runs, load_run};
pub use evaluate::{EvalOptions, EvalResult, Metrics, QueryScores, System, evaluate};
pub use hybrid::{FusedHit, Fusion, hybrid_rank};
pub use input::{Corpus, Judgment, LeftOut, Qrels, UnknownItems};
pub use margins::ScoredPair;
pub use report::{RunFiles, write_run};
pub use search::{ExactIndex, Hit, HnswParams, VectorSearch};
#[cfg(feature = "ann")]
pub use search::{HnswIndex, HnswSearch};
pub use thresholds::{Criterion, Thresholds, derive_thresholds};
