//! Score separability (the paper's Table 5 and Figures 2-3): margins between relevance labels
//! on lexically hard pairs, per-query margins between every pair of labels, and score
//! distributions per label.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::stats::Summary;

/// A judged (query, item) pair with the system's score and the pair's token overlap.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScoredPair {
    /// Query index (in resolved query order).
    pub query: u32,
    /// Item position in the catalog.
    pub item: u32,
    /// Relevance label (0, 1 or 2).
    pub label: u8,
    /// Similarity score (cosine for embedding systems, BM25 for the lexical one).
    pub score: f32,
    /// Token overlap of the query with the item text (see [`crate::tokens::token_overlap`]).
    pub overlap: f64,
}

/// One query's margins on hard pairs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueryMargin {
    pub query: u32,
    /// mean score(label 2) - mean score(label 0).
    pub average: f64,
    /// min score(label 2) - max score(label 0).
    pub worst: f64,
    /// Fraction of the query's (label 2, label 0) hard-pair combinations that the scores
    /// order correctly, ties counting half: the margins' scale-free counterpart (0.5 is chance,
    /// 1 means every relevant item outscores every irrelevant one, i.e. worst > 0).
    #[serde(default)]
    pub ordered: f64,
}

/// Margin metrics over lexically hard pairs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MarginReport {
    /// Mean over qualifying queries of the average margin.
    pub avg_margin: Option<f64>,
    /// Mean over qualifying queries of the worst-case margin.
    pub worst_margin: Option<f64>,
    /// Mean over qualifying queries of the fraction of (label 2, label 0) hard-pair
    /// combinations ordered correctly (a per-query AUC; ties count half).
    #[serde(default)]
    pub hard_pair_auc: Option<f64>,
    /// Queries with at least one label-2 and one label-0 hard pair.
    pub queries: usize,
    /// Judged pairs with overlap >= the threshold.
    pub hard_pairs: usize,
    /// Per qualifying query.
    pub per_query: Vec<QueryMargin>,
}

/// Margins between label 2 and label 0 on pairs with `overlap >= min_overlap`, for each query
/// that has at least one of each.
pub fn hard_pair_margins(pairs: &[ScoredPair], min_overlap: f64) -> MarginReport {
    let mut by_query: BTreeMap<u32, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    let mut hard_pairs = 0;
    for p in pairs.iter().filter(|p| p.overlap >= min_overlap) {
        hard_pairs += 1;
        let e = by_query.entry(p.query).or_default();
        match p.label {
            2 => e.0.push(p.score as f64),
            0 => e.1.push(p.score as f64),
            _ => {}
        }
    }
    let per_query: Vec<QueryMargin> = by_query
        .into_iter()
        .filter(|(_, (pos, neg))| !pos.is_empty() && !neg.is_empty())
        .map(|(query, (pos, neg))| QueryMargin {
            query,
            average: mean(&pos) - mean(&neg),
            worst: pos.iter().copied().fold(f64::INFINITY, f64::min)
                - neg.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            ordered: ordered_fraction(&pos, &neg),
        })
        .collect();
    let n = per_query.len();
    let avg = |f: fn(&QueryMargin) -> f64| {
        (n > 0).then(|| per_query.iter().map(f).sum::<f64>() / n as f64)
    };
    MarginReport {
        avg_margin: avg(|m| m.average),
        worst_margin: avg(|m| m.worst),
        hard_pair_auc: avg(|m| m.ordered),
        queries: n,
        hard_pairs,
        per_query,
    }
}

/// Per-query average margins `mean score(hi) - mean score(lo)` over all judged pairs, for the
/// label pairs (2, 0), (2, 1) and (1, 0); each over the queries holding both labels.
pub fn label_pair_margins(pairs: &[ScoredPair]) -> Vec<((u8, u8), Vec<f64>)> {
    let mut by_query: BTreeMap<u32, [Vec<f64>; 3]> = BTreeMap::new();
    for p in pairs {
        by_query.entry(p.query).or_default()[p.label.min(2) as usize].push(p.score as f64);
    }
    [(2u8, 0u8), (2, 1), (1, 0)]
        .into_iter()
        .map(|(hi, lo)| {
            let margins = by_query
                .values()
                .filter(|s| !s[hi as usize].is_empty() && !s[lo as usize].is_empty())
                .map(|s| mean(&s[hi as usize]) - mean(&s[lo as usize]))
                .collect();
            ((hi, lo), margins)
        })
        .collect()
}

/// Scores of all judged pairs grouped by label (index = label).
pub fn scores_by_label(pairs: &[ScoredPair]) -> [Vec<f64>; 3] {
    let mut out: [Vec<f64>; 3] = Default::default();
    for p in pairs {
        out[p.label.min(2) as usize].push(p.score as f64);
    }
    out
}

/// Summary per label ("0", "1", "2"); labels without pairs are absent.
pub fn score_summary_by_label(pairs: &[ScoredPair]) -> BTreeMap<String, Summary> {
    scores_by_label(pairs)
        .iter()
        .enumerate()
        .filter_map(|(l, v)| Summary::of(v).map(|s| (l.to_string(), s)))
        .collect()
}

/// Fraction of the (p, n) combinations with p > n, ties counting half (Mann-Whitney).
fn ordered_fraction(pos: &[f64], neg: &[f64]) -> f64 {
    let mut right = 0.0;
    for &p in pos {
        for &n in neg {
            right += if p > n {
                1.0
            } else if p == n {
                0.5
            } else {
                0.0
            };
        }
    }
    right / (pos.len() * neg.len()) as f64
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(query: u32, label: u8, score: f32, overlap: f64) -> ScoredPair {
        ScoredPair {
            query,
            item: 0,
            label,
            score,
            overlap,
        }
    }

    #[test]
    fn margins_on_hard_pairs_by_hand() {
        let pairs = [
            // Query 0: hard label-2 scores 0.9, 0.7; hard label-0 scores 0.5, 0.75; one easy
            // label-0 pair (overlap 0.5) at 0.95 that must be ignored; a label-1 pair.
            p(0, 2, 0.9, 1.0),
            p(0, 2, 0.7, 0.7),
            p(0, 0, 0.5, 0.8),
            p(0, 0, 0.75, 1.0),
            p(0, 0, 0.95, 0.5),
            p(0, 1, 0.1, 1.0),
            // Query 1: hard label-2 0.6 and label-0 0.2.
            p(1, 2, 0.6, 0.75),
            p(1, 0, 0.2, 1.0),
            // Query 2: no hard label-0 pair -> does not qualify.
            p(2, 2, 0.8, 1.0),
            p(2, 0, 0.1, 0.2),
        ];
        let m = hard_pair_margins(&pairs, 0.7);
        assert_eq!(m.queries, 2);
        assert_eq!(m.hard_pairs, 8);
        let q0_avg = 0.8 - 0.625;
        let q0_worst = 0.7 - 0.75;
        let (q1_avg, q1_worst) = (0.4, 0.4);
        assert!((m.per_query[0].average - q0_avg).abs() < 1e-6);
        assert!((m.per_query[0].worst - q0_worst).abs() < 1e-6);
        assert!((m.avg_margin.unwrap() - (q0_avg + q1_avg) / 2.0).abs() < 1e-6);
        assert!((m.worst_margin.unwrap() - (q0_worst + q1_worst) / 2.0).abs() < 1e-6);
        // Query 0 orders 3 of its 4 (label 2, label 0) combinations (0.7 < 0.75), query 1 all.
        assert_eq!(m.per_query[0].ordered, 0.75);
        assert_eq!(m.per_query[1].ordered, 1.0);
        assert_eq!(m.hard_pair_auc, Some(0.875));
        // A tie counts half: 0.5 vs {0.5, 0.4}.
        let tie = hard_pair_margins(
            &[p(0, 2, 0.5, 1.0), p(0, 0, 0.5, 1.0), p(0, 0, 0.4, 1.0)],
            0.7,
        );
        assert_eq!(tie.hard_pair_auc, Some(0.75));

        let none = hard_pair_margins(&pairs[8..], 0.7);
        assert_eq!(
            (
                none.queries,
                none.avg_margin,
                none.worst_margin,
                none.hard_pair_auc
            ),
            (0, None, None, None)
        );
    }

    #[test]
    fn label_pair_margins_use_all_pairs_of_queries_holding_both_labels() {
        let pairs = [
            p(0, 2, 0.9, 0.0),
            p(0, 1, 0.5, 0.0),
            p(0, 0, 0.1, 0.0),
            p(1, 2, 0.8, 0.0),
            p(1, 1, 0.6, 0.0),
        ];
        let m = label_pair_margins(&pairs);
        assert_eq!(m[0].0, (2, 0));
        assert_eq!(m[0].1.len(), 1);
        assert!((m[0].1[0] - 0.8).abs() < 1e-6);
        assert_eq!(m[1].1.len(), 2);
        assert!((m[1].1[1] - 0.2).abs() < 1e-6);
        assert_eq!(m[2].1.len(), 1);
        let s = score_summary_by_label(&pairs);
        assert_eq!(s["2"].count, 2);
        assert!((s["1"].mean - 0.55).abs() < 1e-6);
    }
}
