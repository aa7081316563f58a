//! Graded retrieval metrics (EVALUATION.md): linear gains (label 2 -> 1, 1 -> 0.5, 0 -> 0),
//! `log2(rank + 1)` discount; unjudged items have gain 0 and are not relevant.
//!
//! Per-query functions return `None` when the query is left out of a metric (no positive
//! gain for NDCG and lenient recall, no label-2 item for strict recall); [`MeanMetric`]
//! keeps the number of queries behind each mean.

use serde::{Deserialize, Serialize};

use crate::input::{ResolvedQuery, gain};

pub use strata_data::gain::{dcg, ndcg_at_k};

/// Gains of a ranked list of item positions for one query.
pub fn ranked_gains(ranked: &[u32], query: &ResolvedQuery) -> Vec<f64> {
    ranked
        .iter()
        .map(|&i| query.label(i).map_or(0.0, gain))
        .collect()
}

/// Judged gains of a query.
pub fn judged_gains(query: &ResolvedQuery) -> Vec<f64> {
    query.judged.iter().map(|&(_, l)| gain(l)).collect()
}

/// Recall@k: judged items with label >= `min_label` among the first `k`, over all judged items
/// with label >= `min_label`. `None` when the query has none.
pub fn recall_at_k(ranked: &[u32], query: &ResolvedQuery, k: usize, min_label: u8) -> Option<f64> {
    let total = query.count_at_least(min_label);
    if total == 0 {
        return None;
    }
    Some(hits_at_k(ranked, query, k, min_label) as f64 / total as f64)
}

/// Precision@k: judged items with label >= 1 among the first `k`, divided by `k` (also when
/// fewer than `k` items were retrieved).
pub fn precision_at_k(ranked: &[u32], query: &ResolvedQuery, k: usize) -> f64 {
    hits_at_k(ranked, query, k, 1) as f64 / k as f64
}

fn hits_at_k(ranked: &[u32], query: &ResolvedQuery, k: usize, min_label: u8) -> usize {
    ranked
        .iter()
        .take(k)
        .filter(|&&i| query.label(i).is_some_and(|l| l >= min_label))
        .count()
}

/// Rerank NDCG: the query's judged items ranked by `scores` (parallel to `query.judged`),
/// NDCG over the whole judged list. Ties in score keep catalog order. `None` when every
/// judged gain is 0.
pub fn rerank_ndcg(query: &ResolvedQuery, scores: &[f32]) -> Option<f64> {
    assert_eq!(
        scores.len(),
        query.judged.len(),
        "one score per judged item"
    );
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| {
        scores[b]
            .total_cmp(&scores[a])
            .then(query.judged[a].0.cmp(&query.judged[b].0))
    });
    let ranked: Vec<f64> = order.iter().map(|&p| gain(query.judged[p].1)).collect();
    ndcg_at_k(&ranked, &judged_gains(query), ranked.len())
}

/// A mean over the queries a metric applies to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MeanMetric {
    /// The mean (`None` when no query qualified).
    pub mean: Option<f64>,
    /// Queries averaged.
    pub n: usize,
}

/// Accumulates per-query values into a [`MeanMetric`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Mean {
    sum: f64,
    n: usize,
}

impl Mean {
    /// Adds a value; `None` (query left out) is skipped.
    pub fn add(&mut self, v: Option<f64>) {
        if let Some(v) = v {
            self.sum += v;
            self.n += 1;
        }
    }

    /// The mean and its count.
    pub fn finish(&self) -> MeanMetric {
        MeanMetric {
            mean: (self.n > 0).then(|| self.sum / self.n as f64),
            n: self.n,
        }
    }
}

/// Per-query retrieval metrics at one cutoff.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QueryMetricsAtK {
    pub ndcg: Option<f64>,
    pub recall: Option<f64>,
    pub recall_strict: Option<f64>,
    pub precision: f64,
}

/// All retrieval metrics of one query at cutoff `k`.
pub fn query_metrics(ranked: &[u32], query: &ResolvedQuery, k: usize) -> QueryMetricsAtK {
    let gains = ranked_gains(ranked, query);
    QueryMetricsAtK {
        ndcg: ndcg_at_k(&gains, &judged_gains(query), k),
        recall: recall_at_k(ranked, query, k, 1),
        recall_strict: recall_at_k(ranked, query, k, 2),
        precision: precision_at_k(ranked, query, k),
    }
}

/// Mean retrieval metrics at one cutoff.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RetrievalAtK {
    pub k: usize,
    pub ndcg: MeanMetric,
    pub recall: MeanMetric,
    pub recall_strict: MeanMetric,
    pub precision: MeanMetric,
}

/// Mean retrieval metrics over queries for each cutoff in `ks`; `runs[q]` is query `q`'s
/// ranked item positions.
pub fn retrieval_metrics(
    runs: &[Vec<u32>],
    queries: &[ResolvedQuery],
    ks: &[usize],
) -> Vec<RetrievalAtK> {
    assert_eq!(runs.len(), queries.len(), "one ranked list per query");
    ks.iter()
        .map(|&k| {
            let (mut nd, mut re, mut rs, mut pr) = (
                Mean::default(),
                Mean::default(),
                Mean::default(),
                Mean::default(),
            );
            for (ranked, q) in runs.iter().zip(queries) {
                let m = query_metrics(ranked, q, k);
                nd.add(m.ndcg);
                re.add(m.recall);
                rs.add(m.recall_strict);
                pr.add(Some(m.precision));
            }
            RetrievalAtK {
                k,
                ndcg: nd.finish(),
                recall: re.finish(),
                recall_strict: rs.finish(),
                precision: pr.finish(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-6, "{a} != {b}");
    }

    fn query(judged: &[(u32, u8)]) -> ResolvedQuery {
        let mut judged = judged.to_vec();
        judged.sort_unstable();
        ResolvedQuery {
            text: "q".into(),
            judged,
        }
    }

    #[test]
    fn graded_ndcg_matches_reference() {
        // REFERENCE.md "Graded NDCG".
        let ranked = [0.5, 1.0, 0.0, 1.0, 0.5, 0.0, 0.0, 1.0];
        let judged = [1.0, 1.0, 1.0, 0.5, 0.5, 0.0, 0.0, 0.0];
        assert!((ndcg_at_k(&ranked, &judged, 3).unwrap() - 0.530721).abs() < 1e-5);
        assert!((ndcg_at_k(&ranked, &judged, 5).unwrap() - 0.691041).abs() < 1e-5);
        assert!((ndcg_at_k(&ranked, &judged, 10).unwrap() - 0.815255).abs() < 1e-5);
    }

    #[test]
    fn graded_ndcg_through_item_positions() {
        // The same example as ranked catalog items: item i at rank i+1, labels chosen to give
        // the reference gains; items 20..22 are judged but never retrieved.
        let q = query(&[
            (0, 1),
            (1, 2),
            (2, 0),
            (3, 2),
            (4, 1),
            (7, 2),
            (20, 0),
            (21, 0),
        ]);
        let ranked: Vec<u32> = (0..10).collect();
        let m = query_metrics(&ranked, &q, 10);
        close(m.ndcg.unwrap(), 0.815255);
        // 5 relevant judged items, all 5 retrieved in the top 10; 3 of 3 label-2 items.
        close(m.recall.unwrap(), 1.0);
        close(m.recall_strict.unwrap(), 1.0);
        close(m.precision, 0.5);
        let m5 = query_metrics(&ranked, &q, 5);
        close(m5.recall.unwrap(), 4.0 / 5.0);
        close(m5.recall_strict.unwrap(), 2.0 / 3.0);
        close(m5.precision, 4.0 / 5.0);
    }

    #[test]
    fn unjudged_items_count_as_irrelevant() {
        // Item 9 is unjudged and retrieved first; item 5 (label 2) second.
        let q = query(&[(5, 2), (6, 1), (7, 0)]);
        let ranked = [9, 5, 7, 6];
        let m = query_metrics(&ranked, &q, 2);
        // DCG = 1/log2(3); IDCG = 1 + 0.5/log2(3).
        close(
            m.ndcg.unwrap(),
            (1.0 / 3f64.log2()) / (1.0 + 0.5 / 3f64.log2()),
        );
        close(m.recall.unwrap(), 0.5);
        close(m.recall_strict.unwrap(), 1.0);
        close(m.precision, 0.5);
    }

    #[test]
    fn queries_without_relevant_items_are_left_out() {
        let zero = query(&[(1, 0), (2, 0)]);
        let m = query_metrics(&[1, 2], &zero, 10);
        assert_eq!(m.ndcg, None);
        assert_eq!(m.recall, None);
        assert_eq!(m.recall_strict, None);
        close(m.precision, 0.0);
        assert_eq!(rerank_ndcg(&zero, &[0.3, 0.1]), None);

        let only_ones = query(&[(1, 1), (2, 0)]);
        let m = query_metrics(&[1], &only_ones, 10);
        assert_eq!(m.recall_strict, None);
        close(m.recall.unwrap(), 1.0);
        close(m.precision, 0.1); // divided by k even when fewer items were retrieved

        let good = query(&[(1, 2)]);
        let agg = retrieval_metrics(
            &[vec![1, 2], vec![1], vec![3, 1]],
            &[zero, only_ones, good],
            &[1],
        );
        assert_eq!(agg[0].ndcg.n, 2);
        close(agg[0].ndcg.mean.unwrap(), 0.5); // only_ones: 1.0, good: 0.0
        assert_eq!(agg[0].recall_strict.n, 1);
        assert_eq!(agg[0].precision.n, 3);
        close(agg[0].precision.mean.unwrap(), 1.0 / 3.0);
    }

    #[test]
    fn rerank_ndcg_orders_judged_items_by_score_with_catalog_order_on_ties() {
        let q = query(&[(1, 0), (2, 1), (3, 2)]);
        close(rerank_ndcg(&q, &[0.1, 0.5, 0.9]).unwrap(), 1.0);
        // Reverse order: gains [0, 0.5, 1].
        let idcg = 1.0 + 0.5 / 3f64.log2();
        close(
            rerank_ndcg(&q, &[0.9, 0.5, 0.1]).unwrap(),
            (0.5 / 3f64.log2() + 1.0 / 2.0) / idcg,
        );
        // All tied: catalog order 1, 2, 3 -> same as reverse order.
        close(
            rerank_ndcg(&q, &[0.4, 0.4, 0.4]).unwrap(),
            (0.5 / 3f64.log2() + 1.0 / 2.0) / idcg,
        );
    }

    #[test]
    fn ties_in_the_ranked_list_keep_the_given_order() {
        // Metrics take the ranking as given; search breaks score ties by catalog position.
        let q = query(&[(1, 2), (2, 0)]);
        close(query_metrics(&[1, 2], &q, 1).ndcg.unwrap(), 1.0);
        close(query_metrics(&[2, 1], &q, 1).ndcg.unwrap(), 0.0);
    }
}
