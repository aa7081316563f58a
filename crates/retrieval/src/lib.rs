//! strata retrieval: everything that finds items for a query, shared by evaluation, mining,
//! training, labeling and serving.
//!
//! - [`search`]: exact top-K search by blocked matrix multiplication, and HNSW search (feature
//!   `ann`) behind the same [`VectorSearch`] trait.
//! - [`bm25`]: the lexical retriever (tantivy), and [`hybrid`]: lexical/semantic fusion.
//! - [`thresholds`]: similarity thresholds that separate the relevance strata.
//! - [`tokens`]: the one tokenizer for lexical overlap (`strata_data::tokens`).

pub mod bm25;
pub mod hybrid;
pub mod search;
pub mod thresholds;

pub use strata_data::tokens;

pub use bm25::Bm25Index;
pub use hybrid::{FusedHit, Fusion, SearchMode, hybrid_rank};
pub use search::{ExactIndex, Hit, HnswParams, VectorSearch};
#[cfg(feature = "ann")]
pub use search::{HnswIndex, HnswSearch};
pub use thresholds::{Criterion, Thresholds, derive_thresholds};
