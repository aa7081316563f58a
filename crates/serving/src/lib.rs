//! strata serving: the item index, the HTTP server and a loopback load generator.
//!
//! - [`index`]: an index directory built from a catalog with a model (item embeddings,
//!   memory-mapped; an HNSW graph; a BM25 index; item metadata; thresholds), opened
//!   memory-mapped, and updated in place ([`ItemIndex::update`]).
//! - [`backend`]: the [`SearchBackend`] trait behind `/search`, and [`IndexBackend`].
//! - [`encoder`]: the serving model ([`ServingEncoder`]) and dynamic batching ([`Batcher`]).
//! - [`server`]: the axum server ([`server::start`]): `/embed` (text-embeddings-inference),
//!   `/v1/embeddings` (OpenAI), `/search`, `/health`, `/info`, `/metrics`.
//! - [`loadgen`]: a bounded load generator for loopback servers.
//!
//! The `testing` feature adds `testing`: fixture models, catalogs and a loopback test server.

pub mod backend;
pub mod encoder;
pub mod generation;
pub mod index;
pub mod loadgen;
pub mod manifest;
pub mod metrics;
pub mod reuse;
pub mod server;
#[cfg(feature = "testing")]
pub mod testing;

pub use backend::{BackendInfo, IndexBackend, Mode, ScoredItem, SearchBackend, SearchQuery};
pub use encoder::{BatchConfig, Batcher, Lane, ServingEncoder, TokenCount};
pub use index::{
    BuildOptions, ItemIndex, ItemMeta, RepairReport, Update, UpdateReport, VerifyReport,
};
pub use manifest::{FORMAT_VERSION, Manifest, ModelStamp, Quantization, model_fingerprint};
pub use reuse::{IndexedItems, ItemVectors};
pub use server::{Limits, RunningServer, SearchResponse, SearchResult, ServedModel, ServerConfig};
