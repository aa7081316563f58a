//! The bridge to strata-serving: export an index directory ([`export_index`]) and serve an
//! exported table through the server's [`SearchBackend`] seam ([`PgSearchBackend`]), so that
//! `strata serve --backend postgres://...` answers the same `/search` as an on-disk index.
//!
//! The table's metadata ([`ExportOptions::metadata`]) holds a [`TableMetadata`]: the model the
//! embeddings were made with (its fingerprint, checked by the server against the model it
//! loads) and the score thresholds of the index, so that the stratum of each result is the
//! same as from the index directory.

use serde::{Deserialize, Serialize};
use strata_data::Item;
use strata_data::progress::Progress;
use strata_retrieval::Thresholds;
use strata_serving::backend::BoxFuture;
use strata_serving::{BackendInfo, ItemIndex, ModelStamp, ScoredItem, SearchBackend, SearchQuery};

use crate::export;
use crate::{BackendOptions, Error, ExportBatch, ExportOptions, ExportReport, PgBackend, Result};

/// What [`TableMetadata::kind`] holds in a table exported from a strata index.
pub const METADATA_KIND: &str = "strata-index";

/// The metadata stored with a table exported from an index directory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableMetadata {
    /// Always [`METADATA_KIND`].
    pub kind: String,
    /// strata version that exported the table.
    pub strata_version: String,
    /// The model the item embeddings were made with.
    pub model: ModelStamp,
    /// How item text was built ("name+taxonomy" or "name").
    pub item_text: String,
    /// The index's thresholds between relevance strata, if any.
    pub thresholds: Option<Thresholds>,
    /// The index directory the table was exported from (informational).
    pub source: String,
}

impl TableMetadata {
    /// Parses a table's stored metadata, failing with a message that names the table when it
    /// is missing or not a strata index export.
    pub fn parse(table: &str, metadata: Option<&str>) -> Result<TableMetadata> {
        let text = metadata.ok_or_else(|| {
            Error::Schema(format!(
                "table {table:?} carries no strata metadata (no table comment): export it with `strata index export`"
            ))
        })?;
        let m: TableMetadata = serde_json::from_str(text).map_err(|e| {
            Error::Schema(format!(
                "table {table:?}: its comment is not strata index metadata ({e}); export it with `strata index export`"
            ))
        })?;
        if m.kind != METADATA_KIND {
            return Err(Error::Schema(format!(
                "table {table:?}: metadata kind {:?}, expected {METADATA_KIND:?}",
                m.kind
            )));
        }
        Ok(m)
    }
}

/// Exports the live items of `index` (ids, texts, names, taxonomies and the stored f32
/// embeddings, so no model is run) into `options.table`, with the index's model stamp and
/// thresholds as the table's metadata (any `options.metadata` is replaced).
pub async fn export_index(
    url: &str,
    index: &ItemIndex,
    options: &ExportOptions,
    progress: &dyn Progress,
) -> Result<ExportReport> {
    let manifest = index.manifest();
    let n = index.len();
    let mut items = Vec::with_capacity(n);
    let mut texts = Vec::with_capacity(n);
    let mut embeddings = Vec::with_capacity(n * manifest.dim);
    for (slot, meta) in index.live_items() {
        let mut item = Item::new(meta.id.clone(), meta.name.clone());
        item.taxonomy = meta.taxonomy.clone();
        items.push(item);
        texts.push(meta.text.clone());
        embeddings.extend_from_slice(index.vector(slot));
    }
    let metadata = TableMetadata {
        kind: METADATA_KIND.into(),
        strata_version: env!("CARGO_PKG_VERSION").into(),
        model: manifest.model.clone(),
        item_text: manifest.item_text.clone(),
        thresholds: manifest.thresholds.clone(),
        source: index.dir().display().to_string(),
    };
    let mut options = options.clone();
    options.metadata = Some(
        serde_json::to_string(&metadata)
            .map_err(|e| Error::InvalidInput(format!("cannot serialise the metadata: {e}")))?,
    );
    let batch = ExportBatch::new(&items, &texts, &embeddings)?;
    export(url, &batch, &options, progress).await
}

/// An exported table as a [`SearchBackend`] of the strata server: semantic search through
/// pgvector's HNSW index, lexical search through PostgreSQL full-text search (`ts_rank_cd`,
/// OR semantics; not BM25, so lexical and hybrid rankings differ from an index directory's),
/// hybrid as [`PgBackend::search`] blends them.
pub struct PgSearchBackend {
    backend: PgBackend,
    info: BackendInfo,
    metadata: TableMetadata,
}

impl PgSearchBackend {
    /// Connects to `url`, checks that `table` is a strata index export and reads its
    /// metadata. Call it on the tokio runtime that will serve: the pooled connections are
    /// driven by tasks spawned on it.
    pub async fn connect(url: &str, table: &str, options: BackendOptions) -> Result<Self> {
        let backend = PgBackend::connect_with(url, table, options).await?;
        let t = backend.info().await?;
        let metadata = TableMetadata::parse(table, t.metadata.as_deref())?;
        let info = BackendInfo {
            kind: "pgvector".into(),
            location: format!("PostgreSQL table {table}"),
            items: t.items as usize,
            dim: t.dim,
            model_fingerprint: metadata.model.fingerprint.clone(),
            item_precision: metadata.model.precision,
            thresholds: metadata.thresholds.clone(),
        };
        Ok(PgSearchBackend {
            backend,
            info,
            metadata,
        })
    }

    /// The table's metadata.
    pub fn metadata(&self) -> &TableMetadata {
        &self.metadata
    }

    /// The underlying pooled backend.
    pub fn backend(&self) -> &PgBackend {
        &self.backend
    }
}

impl SearchBackend for PgSearchBackend {
    fn info(&self) -> BackendInfo {
        self.info.clone()
    }

    fn search<'a>(
        &'a self,
        query: SearchQuery<'a>,
    ) -> BoxFuture<'a, anyhow::Result<Vec<ScoredItem>>> {
        Box::pin(async move {
            let hits = self
                .backend
                .search(
                    query.text,
                    Some(query.embedding),
                    query.k,
                    query.mode,
                    query.fusion,
                )
                .await?;
            Ok(hits
                .into_iter()
                .map(|h| ScoredItem {
                    id: h.id,
                    text: h.text,
                    score: h.score,
                    semantic: h.semantic,
                    lexical: Some(h.lexical),
                })
                .collect())
        })
    }
}
