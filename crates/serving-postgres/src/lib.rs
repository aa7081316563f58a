//! Serving strata retrievers from PostgreSQL with the pgvector extension.
//!
//! Two halves:
//!
//! - [`export`] writes a catalog's items, item texts and (L2-normalised) embeddings into a
//!   table with binary `COPY`, then builds a pgvector HNSW index over the embeddings and a GIN
//!   full-text index over the text. Re-exporting into the same table replaces it atomically:
//!   the new rows and indexes are built in a staging table that is swapped in at the end, so
//!   searches keep running on the old data meanwhile.
//! - [`PgBackend`] searches such a table through a small connection pool:
//!   [`SearchMode::Semantic`] (HNSW nearest neighbours), [`SearchMode::Lexical`] (Postgres
//!   full-text search with OR semantics, ranked by `ts_rank_cd`) or [`SearchMode::Hybrid`]
//!   (the union of both candidate lists, every candidate scored on both sides and blended with
//!   [`strata_retrieval::hybrid::Fusion`]).
//!
//! # Table layout
//!
//! ```sql
//! CREATE TABLE <table> (
//!     id        text PRIMARY KEY,
//!     text      text NOT NULL,          -- the item text the embeddings were computed from
//!     name      text NOT NULL,
//!     taxonomy  text NOT NULL,          -- levels joined with " > "
//!     embedding vector(<dim>) NOT NULL,
//!     tsv       tsvector GENERATED ALWAYS AS (to_tsvector('simple', text)) STORED
//! );
//! CREATE INDEX <table>_hnsw ON <table> USING hnsw (embedding vector_cosine_ops) WITH (m, ef_construction);
//! CREATE INDEX <table>_fts ON <table> USING gin (tsv);
//! ```
//!
//! With [`Metric::InnerProduct`] the HNSW index uses `vector_ip_ops` instead; both rank
//! L2-normalised embeddings identically and the reported semantic score is the cosine.
//!
//! [`export_index`] and [`PgSearchBackend`] connect this crate to strata-serving: a table
//! exported from an index directory carries the index's model stamp and thresholds, and serves
//! the strata server's `/search` (`strata index export --to`, `strata serve --backend`).
//!
//! The `testing` feature adds [`testing::PgCluster`], a throwaway PostgreSQL cluster on
//! loopback for tests (see `scripts/setup-postgres.sh` for installing PostgreSQL and pgvector).

mod error;
mod export;
mod schema;
mod search;
mod serving;
#[cfg(feature = "testing")]
pub mod testing;

pub use error::Error;
pub use export::{ExportBatch, ExportOptions, ExportReport, export};
pub use schema::{Metric, PgHnswParams, TableInfo, validate_table_name};
pub use search::{BackendOptions, PgBackend, SearchHit, SearchMode};
pub use serving::{METADATA_KIND, PgSearchBackend, TableMetadata, export_index};
pub use strata_retrieval::hybrid::Fusion;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
