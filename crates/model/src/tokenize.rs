//! Tokenization with the `tokenizers` crate: dynamic padding to the longest sequence of each
//! batch (fixed padding stored in a tokenizer.json is turned off) and truncation at a
//! configurable length.

use std::path::Path;

use anyhow::{Context, anyhow};
use rayon::prelude::*;
use tokenizers::{Tokenizer, TruncationParams, TruncationStrategy};

/// A tokenizer configured for strata: no built-in padding, truncation at `max_len`.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    max_len: usize,
    pad_id: u32,
}

/// Token ids of a batch, padded to its longest sequence (row-major `[batch, len]`).
#[derive(Clone, Debug, PartialEq)]
pub struct TokenBatch {
    pub ids: Vec<i64>,
    pub mask: Vec<f32>,
    pub batch: usize,
    pub len: usize,
}

impl TextTokenizer {
    /// Loads `tokenizer.json`, switching off its padding and setting truncation to `max_len`.
    pub fn from_file(path: &Path, max_len: usize, default_pad_id: u32) -> anyhow::Result<Self> {
        let inner = Tokenizer::from_file(path)
            .map_err(|e| anyhow!("cannot load tokenizer {}: {e}", path.display()))?;
        Self::new(inner, max_len, default_pad_id)
            .with_context(|| format!("tokenizer {}", path.display()))
    }

    /// Wraps an existing tokenizer.
    pub fn new(mut inner: Tokenizer, max_len: usize, default_pad_id: u32) -> anyhow::Result<Self> {
        anyhow::ensure!(max_len >= 2, "max_len must be at least 2, got {max_len}");
        let pad_id = inner
            .get_padding()
            .map(|p| p.pad_id)
            .unwrap_or(default_pad_id);
        inner.with_padding(None);
        inner
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                ..Default::default()
            }))
            .map_err(|e| anyhow!("cannot set truncation: {e}"))?;
        Ok(TextTokenizer {
            inner,
            max_len,
            pad_id,
        })
    }

    pub fn max_len(&self) -> usize {
        self.max_len
    }

    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// The wrapped tokenizer (e.g. to save it).
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }

    /// Token ids of one text (with special tokens, truncated).
    pub fn ids(&self, text: &str) -> anyhow::Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, true)
            .map_err(|e| anyhow!("cannot tokenize {text:?}: {e}"))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Token ids of many texts, in parallel.
    pub fn ids_many(&self, texts: &[&str]) -> anyhow::Result<Vec<Vec<u32>>> {
        texts.par_iter().map(|t| self.ids(t)).collect()
    }

    /// Token ids of a (query, item) pair for a cross-encoder.
    pub fn pair_ids(&self, a: &str, b: &str) -> anyhow::Result<Vec<u32>> {
        let enc = self
            .inner
            .encode((a, b), true)
            .map_err(|e| anyhow!("cannot tokenize pair ({a:?}, {b:?}): {e}"))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Token ids and token type ids (0 for `a` and its special tokens, 1 for `b`) of a pair
    /// encoded as one sequence (`[CLS] a [SEP] b [SEP]` for BERT), truncated longest-first.
    pub fn pair_ids_with_types(&self, a: &str, b: &str) -> anyhow::Result<(Vec<u32>, Vec<u32>)> {
        let enc = self
            .inner
            .encode((a, b), true)
            .map_err(|e| anyhow!("cannot tokenize pair ({a:?}, {b:?}): {e}"))?;
        Ok((enc.get_ids().to_vec(), enc.get_type_ids().to_vec()))
    }

    /// Pads already-tokenized sequences to the longest of them.
    pub fn pad(&self, seqs: &[&[u32]]) -> TokenBatch {
        let len = seqs.iter().map(|s| s.len()).max().unwrap_or(0).max(1);
        let batch = seqs.len();
        let mut ids = vec![self.pad_id as i64; batch * len];
        let mut mask = vec![0.0f32; batch * len];
        for (row, s) in seqs.iter().enumerate() {
            for (j, &t) in s.iter().enumerate() {
                ids[row * len + j] = t as i64;
                mask[row * len + j] = 1.0;
            }
        }
        TokenBatch {
            ids,
            mask,
            batch,
            len,
        }
    }

    /// Tokenizes and pads a batch of texts.
    pub fn batch(&self, texts: &[&str]) -> anyhow::Result<TokenBatch> {
        let seqs = self.ids_many(texts)?;
        let refs: Vec<&[u32]> = seqs.iter().map(|s| s.as_slice()).collect();
        Ok(self.pad(&refs))
    }
}

/// Groups sequence indices into batches of similar length (longest first) so that little
/// compute is spent on padding. Each batch holds at most `max_batch` sequences and at most
/// `max_tokens` padded tokens (a single over-long sequence still gets its own batch).
pub fn length_batches(lengths: &[usize], max_batch: usize, max_tokens: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by(|&a, &b| lengths[b].cmp(&lengths[a]).then(a.cmp(&b)));
    let mut out = Vec::new();
    let mut cur: Vec<usize> = Vec::new();
    let mut cur_len = 0usize;
    for i in order {
        let l = lengths[i].max(1);
        let new_len = cur_len.max(l);
        if !cur.is_empty()
            && (cur.len() >= max_batch.max(1) || new_len * (cur.len() + 1) > max_tokens)
        {
            out.push(std::mem::take(&mut cur));
            cur_len = 0;
        }
        cur_len = cur_len.max(l);
        cur.push(i);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_cover_every_index_once_and_respect_limits() {
        let lengths = vec![5, 30, 7, 7, 12, 1, 64, 3, 3, 9];
        let batches = length_batches(&lengths, 3, 40);
        let mut seen: Vec<usize> = batches.iter().flatten().copied().collect();
        seen.sort();
        assert_eq!(seen, (0..lengths.len()).collect::<Vec<_>>());
        for b in &batches {
            assert!(b.len() <= 3);
            let maxl = b.iter().map(|&i| lengths[i]).max().unwrap();
            assert!(b.len() == 1 || maxl * b.len() <= 40, "{b:?}");
        }
        // Longest first.
        assert_eq!(batches[0], vec![6]);
    }
}
