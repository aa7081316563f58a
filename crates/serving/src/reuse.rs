//! Where an evaluation's or a mining run's item vectors come from ([`ItemVectors`]): an index
//! built with the same model and item text ([`IndexedItems`], a [`TextEncoder`] whose item side
//! reads the vectors the index already holds), else the persistent item-embedding cache, else
//! the model. The item tower is the expensive part of both on a CPU; `strata eval` and
//! `strata mine` build their encoder here.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use strata_data::{CacheStats, CachedEncoder, EmbeddingCache, ItemTextConfig, Side, TextEncoder};
use strata_model::{CachePolicy, Embedder, Precision};

use crate::index::ItemIndex;

/// Item texts found in the index are answered from its stored embeddings; query texts and
/// item texts the index does not hold go to the model. The caller checks that the model is
/// the one the index was built with ([`crate::Manifest::check_model`]).
pub struct IndexedItems<'a> {
    index: ItemIndex,
    model: &'a dyn TextEncoder,
    by_text: HashMap<String, u32>,
}

impl<'a> IndexedItems<'a> {
    /// Wraps `model` with the live items of `index`.
    pub fn new(index: ItemIndex, model: &'a dyn TextEncoder) -> anyhow::Result<Self> {
        anyhow::ensure!(
            model.dim() == index.dim(),
            "the model embeds to {} dimensions, the index {} holds {}",
            model.dim(),
            index.dir().display(),
            index.dim()
        );
        let by_text = index
            .live_items()
            .map(|(slot, m)| (m.text.clone(), slot))
            .collect();
        Ok(IndexedItems {
            index,
            model,
            by_text,
        })
    }

    /// How many of `texts` the index holds.
    pub fn hits(&self, texts: &[&str]) -> usize {
        texts
            .iter()
            .filter(|t| self.by_text.contains_key(**t))
            .count()
    }
}

impl TextEncoder for IndexedItems<'_> {
    fn dim(&self) -> usize {
        self.model.dim()
    }

    fn name(&self) -> String {
        self.model.name()
    }

    fn encode(&self, texts: &[&str], side: Side) -> anyhow::Result<Vec<f32>> {
        if side == Side::Query {
            return self.model.encode(texts, side);
        }
        let dim = self.dim();
        let mut out = vec![0f32; texts.len() * dim];
        let mut missing = Vec::new();
        for (i, t) in texts.iter().enumerate() {
            match self.by_text.get(*t) {
                Some(&slot) => out[i * dim..(i + 1) * dim].copy_from_slice(self.index.vector(slot)),
                None => missing.push(i),
            }
        }
        if !missing.is_empty() {
            let miss: Vec<&str> = missing.iter().map(|&i| texts[i]).collect();
            let v = self.model.encode(&miss, side)?;
            for (j, &i) in missing.iter().enumerate() {
                out[i * dim..(i + 1) * dim].copy_from_slice(&v[j * dim..(j + 1) * dim]);
            }
        }
        Ok(out)
    }
}

/// The item vectors of an evaluation or a mining run: read from an index, answered by the
/// item-embedding cache, or embedded by the model. Queries always go to the model.
pub enum ItemVectors<'a> {
    /// An index built with the same model and item text.
    Index(Box<IndexedItems<'a>>),
    /// The persistent cache of this model's item embeddings.
    Cache(CachedEncoder<'a>),
    /// The model alone.
    Model(&'a Embedder),
}

impl<'a> ItemVectors<'a> {
    /// Item vectors for `model` (loaded from `model_dir`, embedding `item_text`): from the
    /// index at `index` when given (it must have been built with the same model and item
    /// text), else from the cache `cache` names (keyed by model, truncation length, `device`
    /// and `precision`), else from the model.
    pub fn open(
        model: &'a Embedder,
        model_dir: &Path,
        item_text: &ItemTextConfig,
        index: Option<&Path>,
        cache: &CachePolicy,
        device: &str,
        precision: Precision,
    ) -> anyhow::Result<Self> {
        if let Some(dir) = index {
            let idx = ItemIndex::open(dir)?;
            let fp = strata_model::model_fingerprint(model_dir)?;
            idx.manifest()
                .check_model(&model_dir.display().to_string(), &fp)?;
            let want = item_text.to_string();
            anyhow::ensure!(
                idx.manifest().item_text == want,
                "item embeddings {}: the index embedded item text {:?}, this run uses {want:?}",
                dir.display(),
                idx.manifest().item_text
            );
            return Ok(ItemVectors::Index(Box::new(IndexedItems::new(idx, model)?)));
        }
        let Some(dir) = cache.dir(model_dir, model.config().max_len, device, precision)? else {
            return Ok(ItemVectors::Model(model));
        };
        let dim = TextEncoder::dim(model);
        let store = EmbeddingCache::open(&dir, dim)
            .with_context(|| format!("item-embedding cache {}", dir.display()))?;
        tracing::info!(
            "item-embedding cache {} holds {} items",
            dir.display(),
            store.len()
        );
        Ok(ItemVectors::Cache(CachedEncoder::new(model, store)?))
    }

    /// The cache's counts (None unless the vectors come from the cache).
    pub fn cache_stats(&self) -> Option<(CacheStats, usize)> {
        match self {
            ItemVectors::Cache(c) => Some((c.stats(), c.cached())),
            _ => None,
        }
    }

    /// The encoder to evaluate or mine with.
    pub fn encoder(&self) -> &dyn TextEncoder {
        match self {
            ItemVectors::Index(i) => i.as_ref(),
            ItemVectors::Cache(c) => c,
            ItemVectors::Model(m) => *m,
        }
    }
}
