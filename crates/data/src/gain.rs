//! The graded-relevance arithmetic of EVALUATION.md that training's dev evaluation shares with
//! the evaluation crate: linear gains (label 2 -> 1, 1 -> 0.5, 0 -> 0) and NDCG with a
//! `log2(rank + 1)` discount.

/// The linear gain of a label: 2 -> 1.0, 1 -> 0.5, 0 -> 0.0.
pub fn gain(label: u8) -> f64 {
    match label {
        2 => 1.0,
        1 => 0.5,
        _ => 0.0,
    }
}

/// Discounted cumulative gain of the first `k` gains.
pub fn dcg(gains: &[f64], k: usize) -> f64 {
    gains
        .iter()
        .take(k)
        .enumerate()
        .map(|(r, g)| g / ((r + 2) as f64).log2())
        .sum()
}

/// NDCG@k of ranked gains against the query's judged gains (the ideal ranking is the judged
/// gains sorted in descending order, truncated at `k`). `None` when every judged gain is 0.
pub fn ndcg_at_k(ranked_gains: &[f64], judged_gains: &[f64], k: usize) -> Option<f64> {
    let mut ideal = judged_gains.to_vec();
    ideal.sort_by(|a, b| b.total_cmp(a));
    let idcg = dcg(&ideal, k);
    if idcg <= 0.0 {
        return None;
    }
    Some(dcg(ranked_gains, k) / idcg)
}
