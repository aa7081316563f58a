//! The search seam of the server: [`SearchBackend`], implemented here by the on-disk
//! [`ItemIndex`] ([`IndexBackend`]); other stores (e.g. PostgreSQL with pgvector) implement the
//! same trait and plug into the same `/search` handler.

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};
use strata_retrieval::{Fusion, Thresholds};

use crate::index::ItemIndex;

/// A boxed future, as returned by [`SearchBackend::search`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Which retriever answers a search (strata-retrieval's [`strata_retrieval::SearchMode`]).
pub use strata_retrieval::SearchMode as Mode;

/// One search.
#[derive(Clone, Copy, Debug)]
pub struct SearchQuery<'a> {
    /// The query text.
    pub text: &'a str,
    /// Its L2-normalised embedding (query tower).
    pub embedding: &'a [f32],
    /// Results wanted.
    pub k: usize,
    pub mode: Mode,
    /// How hybrid mode blends the two scores.
    pub fusion: Fusion,
}

/// One result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoredItem {
    pub id: String,
    pub text: String,
    /// The score the results are ranked by (cosine, BM25 or fused, by mode).
    pub score: f32,
    /// Cosine similarity with the query, when the backend computes it.
    pub semantic: Option<f32>,
    /// BM25 score, when the backend computes it.
    pub lexical: Option<f32>,
}

/// What a backend reports about itself for `/info`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackendInfo {
    /// Backend kind ("index", "pgvector", ...).
    pub kind: String,
    /// Where the items live (a directory, a table).
    pub location: String,
    /// Items that can be found.
    pub items: usize,
    pub dim: usize,
    /// The fingerprint of the model the item embeddings were made with.
    pub model_fingerprint: String,
    /// The arithmetic the item embeddings were computed with.
    #[serde(default)]
    pub item_precision: strata_model::Precision,
    pub thresholds: Option<Thresholds>,
}

/// A store of items that answers searches.
pub trait SearchBackend: Send + Sync + 'static {
    /// Describes the backend.
    fn info(&self) -> BackendInfo;
    /// The `query.k` best items for the query, best first.
    fn search<'a>(
        &'a self,
        query: SearchQuery<'a>,
    ) -> BoxFuture<'a, anyhow::Result<Vec<ScoredItem>>>;
}

/// The on-disk index as a backend: semantic search on the HNSW graph (or exact search when
/// `exact_semantic`), lexical on BM25, hybrid exactly as the evaluation ranks it.
pub struct IndexBackend {
    index: ItemIndex,
    /// Hybrid candidates taken from each retriever.
    pub candidates: usize,
    /// Answer semantic searches exactly instead of with the HNSW graph.
    pub exact_semantic: bool,
}

impl IndexBackend {
    /// Wraps an opened index (1000 hybrid candidates, HNSW semantic search).
    pub fn new(index: ItemIndex) -> Self {
        IndexBackend {
            index,
            candidates: 1000,
            exact_semantic: false,
        }
    }

    pub fn index(&self) -> &ItemIndex {
        &self.index
    }

    /// The search, computed synchronously (it is CPU-bound and takes milliseconds).
    pub fn search_now(&self, q: &SearchQuery<'_>) -> anyhow::Result<Vec<ScoredItem>> {
        self.search_with(q, self.exact_semantic)
    }

    /// [`Self::search_now`], answering semantic searches exactly or not as `exact_semantic`
    /// says (instead of the backend's setting).
    pub fn search_with(
        &self,
        q: &SearchQuery<'_>,
        exact_semantic: bool,
    ) -> anyhow::Result<Vec<ScoredItem>> {
        let idx = &self.index;
        let item = |slot: u32, score: f32, semantic: f32, lexical: f32| {
            let m = idx.item(slot);
            ScoredItem {
                id: m.id.clone(),
                text: m.text.clone(),
                score,
                semantic: Some(semantic),
                lexical: Some(lexical),
            }
        };
        match q.mode {
            Mode::Semantic | Mode::Lexical => {
                let hits = match q.mode {
                    Mode::Semantic if exact_semantic => idx.exact(q.embedding, q.k)?,
                    Mode::Semantic => idx.approximate(q.embedding, q.k)?,
                    _ => idx.lexical(q.text, q.k)?,
                };
                let slots: Vec<u32> = hits.iter().map(|h| h.item).collect();
                let lex = idx.lexical_scores(q.text, &slots)?;
                Ok(hits
                    .iter()
                    .zip(lex)
                    .map(|(h, l)| {
                        let s = idx.semantic_score(q.embedding, h.item);
                        item(h.item, h.score, s, l)
                    })
                    .collect())
            }
            Mode::Hybrid => Ok(idx
                .hybrid(q.text, q.embedding, q.k, q.fusion, self.candidates.max(q.k))?
                .into_iter()
                .map(|h| item(h.item, h.score, h.semantic, h.lexical))
                .collect()),
        }
    }
}

impl SearchBackend for IndexBackend {
    fn info(&self) -> BackendInfo {
        let m = self.index.manifest();
        BackendInfo {
            kind: "index".into(),
            location: self.index.dir().display().to_string(),
            items: self.index.len(),
            dim: m.dim,
            model_fingerprint: m.model.fingerprint.clone(),
            item_precision: m.model.precision,
            thresholds: m.thresholds.clone(),
        }
    }

    fn search<'a>(
        &'a self,
        query: SearchQuery<'a>,
    ) -> BoxFuture<'a, anyhow::Result<Vec<ScoredItem>>> {
        Box::pin(std::future::ready(self.search_now(&query)))
    }
}
