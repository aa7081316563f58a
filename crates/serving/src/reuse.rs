//! Reusing an index's item embeddings elsewhere: [`IndexedItems`] is a [`TextEncoder`] whose
//! item side reads the vectors an index already holds, so that an evaluation or a mining run
//! over the indexed catalog does not embed it again (the item tower is the expensive part of
//! both on a CPU).

use std::collections::HashMap;

use strata_data::{Side, TextEncoder};

use crate::index::ItemIndex;

/// Item texts found in the index are answered from its stored embeddings; query texts and
/// item texts the index does not hold go to the model. The caller checks that the model is
/// the one the index was built with ([`crate::Manifest::check_model`]).
pub struct IndexedItems<'a> {
    index: &'a ItemIndex,
    model: &'a dyn TextEncoder,
    by_text: HashMap<&'a str, u32>,
}

impl<'a> IndexedItems<'a> {
    /// Wraps `model` with the live items of `index`.
    pub fn new(index: &'a ItemIndex, model: &'a dyn TextEncoder) -> anyhow::Result<Self> {
        anyhow::ensure!(
            model.dim() == index.dim(),
            "the model embeds to {} dimensions, the index {} holds {}",
            model.dim(),
            index.dir().display(),
            index.dim()
        );
        let by_text = index
            .live_items()
            .map(|(slot, m)| (m.text.as_str(), slot))
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
            .filter(|t| self.by_text.contains_key(*t))
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
            match self.by_text.get(t) {
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
