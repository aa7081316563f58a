//! Hybrid retrieval: blending a semantic (cosine) and a lexical (BM25) score for the same
//! candidate items.
//!
//! - Convex: each score min-max normalised over the candidates, then
//!   `alpha * semantic + (1 - alpha) * lexical`.
//! - Reciprocal rank fusion: `alpha / (k + rank_semantic) + (1 - alpha) / (k + rank_lexical)`
//!   with ranks from 1 over the candidates; an item matching no query token (BM25 score 0)
//!   gets no lexical term.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::bm25::{Bm25Error, Bm25Index};
use crate::search::Hit;

/// Which retriever answers a search: written `semantic`, `lexical` or `hybrid` (in
/// `/search` bodies, `strata bench serve --mode` and the PostgreSQL backend alike).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchMode {
    /// Cosine similarity of embeddings.
    Semantic,
    /// BM25 (or the store's full-text ranking) over item texts.
    Lexical,
    /// Both, fused.
    Hybrid,
}

impl std::str::FromStr for SearchMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "semantic" => Ok(SearchMode::Semantic),
            "lexical" => Ok(SearchMode::Lexical),
            "hybrid" => Ok(SearchMode::Hybrid),
            _ => Err(format!(
                "unknown search mode {s:?}: expected semantic, lexical or hybrid"
            )),
        }
    }
}

impl std::fmt::Display for SearchMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SearchMode::Semantic => "semantic",
            SearchMode::Lexical => "lexical",
            SearchMode::Hybrid => "hybrid",
        })
    }
}

/// How to blend the two scores. `alpha` weighs the semantic side (1 = semantic only).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "fusion", rename_all = "lowercase")]
pub enum Fusion {
    /// Min-max normalised convex combination.
    Convex { alpha: f32 },
    /// Weighted reciprocal rank fusion with constant `k` (commonly 60).
    Rrf { alpha: f32, k: f32 },
}

/// Largest RRF constant accepted: at k = 1e6 the reciprocal ranks 1/(k + r) of the first
/// thousand ranks still differ in f32; far beyond it they collapse to one value and every
/// ranking degenerates to catalog order.
pub const MAX_RRF_K: f32 = 1e6;

impl Fusion {
    /// Checks `alpha` lies in [0, 1] and the RRF constant is positive.
    pub fn validate(&self) -> Result<(), String> {
        let (alpha, k) = match *self {
            Fusion::Convex { alpha } => (alpha, 1.0),
            Fusion::Rrf { alpha, k } => (alpha, k),
        };
        if !(0.0..=1.0).contains(&alpha) {
            return Err(format!("alpha must lie in [0, 1], got {alpha}"));
        }
        if !(k > 0.0 && k <= MAX_RRF_K) {
            return Err(format!(
                "the RRF constant must lie in (0, {MAX_RRF_K}], got {k}"
            ));
        }
        Ok(())
    }

    /// The blended score of each candidate; `semantic[i]` and `lexical[i]` belong to
    /// `items[i]` (item positions break rank ties).
    pub fn fuse(&self, items: &[u32], semantic: &[f32], lexical: &[f32]) -> Vec<f32> {
        assert!(
            items.len() == semantic.len() && items.len() == lexical.len(),
            "one score of each kind per item"
        );
        match *self {
            Fusion::Convex { alpha } => {
                let s = min_max(semantic);
                let l = min_max(lexical);
                s.iter()
                    .zip(&l)
                    .map(|(s, l)| alpha * s + (1.0 - alpha) * l)
                    .collect()
            }
            Fusion::Rrf { alpha, k } => {
                let rs = ranks(items, semantic);
                let rl = ranks(items, lexical);
                (0..items.len())
                    .map(|i| {
                        let lex = if lexical[i] > 0.0 {
                            (1.0 - alpha) / (k + rl[i] as f32)
                        } else {
                            0.0
                        };
                        alpha / (k + rs[i] as f32) + lex
                    })
                    .collect()
            }
        }
    }
}

/// One item of a hybrid ranking, with the scores it was ranked by.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FusedHit {
    /// Item position.
    pub item: u32,
    /// The fused score.
    pub score: f32,
    /// Cosine similarity with the query.
    pub semantic: f32,
    /// BM25 score (0 when the item matches no query token).
    pub lexical: f32,
}

/// The hybrid ranking of one query, exactly as `strata eval --system hybrid` ranks it and the
/// server's hybrid search answers it.
///
/// Candidates are the semantic hits (`semantic`, best first, typically the exact top
/// `candidates`) followed by the top `candidates` BM25 hits not among them. Every candidate is
/// scored on both sides (`semantic_score(item)`, the query-item cosine; BM25 from `bm25`),
/// blended by `fusion`, sorted by fused score (ties by item position) and cut to `k`.
pub fn hybrid_rank(
    query: &str,
    semantic: &[Hit],
    semantic_score: impl Fn(u32) -> f32,
    bm25: &Bm25Index,
    candidates: usize,
    fusion: Fusion,
    k: usize,
) -> Result<Vec<FusedHit>, Bm25Error> {
    let lex = bm25.search(query, candidates)?;
    let mut seen = HashSet::new();
    let items: Vec<u32> = semantic
        .iter()
        .chain(&lex)
        .map(|h| h.item)
        .filter(|i| seen.insert(*i))
        .collect();
    let s: Vec<f32> = items.iter().map(|&i| semantic_score(i)).collect();
    let l = bm25.score_items(query, &items)?;
    let f = fusion.fuse(&items, &s, &l);
    let mut fused: Vec<FusedHit> = (0..items.len())
        .map(|i| FusedHit {
            item: items[i],
            score: f[i],
            semantic: s[i],
            lexical: l[i],
        })
        .collect();
    fused.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.item.cmp(&b.item)));
    fused.truncate(k);
    Ok(fused)
}

/// Scores rescaled to [0, 1] by the candidates' minimum and maximum; all 0 when they are equal.
pub fn min_max(scores: &[f32]) -> Vec<f32> {
    let lo = scores.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater) {
        return vec![0.0; scores.len()];
    }
    scores.iter().map(|s| (s - lo) / (hi - lo)).collect()
}

/// 1-based rank of each candidate by descending score, ties by item position.
fn ranks(items: &[u32], scores: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|&a, &b| {
        scores[b]
            .total_cmp(&scores[a])
            .then(items[a].cmp(&items[b]))
    });
    let mut r = vec![0; items.len()];
    for (rank, &i) in order.iter().enumerate() {
        r[i] = rank + 1;
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-6, "{a:?} != {b:?}");
        }
    }

    #[test]
    fn convex_fusion_normalises_each_side() {
        let items = [10, 11, 12];
        let sem = [0.9, 0.5, 0.7];
        let lex = [0.0, 12.0, 6.0];
        // semantic -> [1, 0, 0.5]; lexical -> [0, 1, 0.5].
        close(
            &Fusion::Convex { alpha: 0.75 }.fuse(&items, &sem, &lex),
            &[0.75, 0.25, 0.5],
        );
        close(
            &Fusion::Convex { alpha: 1.0 }.fuse(&items, &sem, &lex),
            &[1.0, 0.0, 0.5],
        );
        close(
            &Fusion::Convex { alpha: 0.0 }.fuse(&items, &sem, &lex),
            &[0.0, 1.0, 0.5],
        );
        close(&min_max(&[3.0, 3.0]), &[0.0, 0.0]);
    }

    #[test]
    fn rrf_uses_ranks_and_skips_unmatched_lexical_items() {
        let items = [10, 11, 12];
        let sem = [0.9, 0.5, 0.5];
        let lex = [0.0, 12.0, 6.0];
        // Semantic ranks: 10 -> 1, 11 -> 2 (tie with 12, lower item first), 12 -> 3.
        // Lexical ranks: 11 -> 1, 12 -> 2; item 10 has no lexical match.
        let f = Fusion::Rrf {
            alpha: 0.5,
            k: 60.0,
        }
        .fuse(&items, &sem, &lex);
        close(
            &f,
            &[0.5 / 61.0, 0.5 / 62.0 + 0.5 / 61.0, 0.5 / 63.0 + 0.5 / 62.0],
        );
    }

    #[test]
    fn fusion_parameters_are_checked() {
        assert!(Fusion::Convex { alpha: 1.5 }.validate().is_err());
        assert!(Fusion::Rrf { alpha: 0.5, k: 0.0 }.validate().is_err());
        assert!(
            Fusion::Rrf {
                alpha: 0.5,
                k: 60.0
            }
            .validate()
            .is_ok()
        );
    }
}
