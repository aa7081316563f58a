//! Three-level labeling metrics (accuracy, within-1 accuracy, per-class precision, recall and
//! F1 from a confusion matrix) and the two trivial references: the majority class and two
//! thresholds on a score (BM25) fitted for accuracy.

use serde::{Deserialize, Serialize};

use super::model::NUM_LABELS;

/// Counts of (true level, predicted level): `counts[truth][predicted]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfusionMatrix {
    pub counts: [[u64; NUM_LABELS]; NUM_LABELS],
}

/// Precision, recall and F1 of one level (0 where undefined: no prediction or no truth).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassScores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Pairs whose true level this is.
    pub support: u64,
}

/// Every metric of one labeler on one set of pairs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabelMetrics {
    pub pairs: u64,
    pub accuracy: f64,
    pub within_1_accuracy: f64,
    pub macro_f1: f64,
    pub per_class: [ClassScores; NUM_LABELS],
    pub confusion: ConfusionMatrix,
}

impl ConfusionMatrix {
    /// The matrix of paired truths and predictions (levels above 2 are an error).
    pub fn from_pairs(truth: &[u8], predicted: &[u8]) -> anyhow::Result<Self> {
        anyhow::ensure!(
            truth.len() == predicted.len(),
            "{} true levels but {} predictions",
            truth.len(),
            predicted.len()
        );
        let mut m = ConfusionMatrix::default();
        for (k, (&t, &p)) in truth.iter().zip(predicted).enumerate() {
            anyhow::ensure!(
                (t as usize) < NUM_LABELS && (p as usize) < NUM_LABELS,
                "pair {k}: level out of range (truth {t}, prediction {p})"
            );
            m.counts[t as usize][p as usize] += 1;
        }
        Ok(m)
    }

    /// Number of pairs.
    pub fn total(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }

    /// Share of pairs predicted exactly.
    pub fn accuracy(&self) -> f64 {
        let hit: u64 = (0..NUM_LABELS).map(|k| self.counts[k][k]).sum();
        ratio(hit, self.total())
    }

    /// Share of pairs predicted within one level of the truth (only 0 <-> 2 counts wrong).
    pub fn within_1_accuracy(&self) -> f64 {
        let mut hit = 0;
        for t in 0..NUM_LABELS {
            for p in 0..NUM_LABELS {
                if t.abs_diff(p) <= 1 {
                    hit += self.counts[t][p];
                }
            }
        }
        ratio(hit, self.total())
    }

    /// Precision, recall and F1 of level `k`.
    pub fn class_scores(&self, k: usize) -> ClassScores {
        let tp = self.counts[k][k];
        let predicted: u64 = (0..NUM_LABELS).map(|t| self.counts[t][k]).sum();
        let support: u64 = self.counts[k].iter().sum();
        let precision = ratio(tp, predicted);
        let recall = ratio(tp, support);
        let f1 = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        ClassScores {
            precision,
            recall,
            f1,
            support,
        }
    }

    /// All metrics.
    pub fn metrics(&self) -> LabelMetrics {
        let per_class = [
            self.class_scores(0),
            self.class_scores(1),
            self.class_scores(2),
        ];
        LabelMetrics {
            pairs: self.total(),
            accuracy: self.accuracy(),
            within_1_accuracy: self.within_1_accuracy(),
            macro_f1: per_class.iter().map(|c| c.f1).sum::<f64>() / NUM_LABELS as f64,
            per_class,
            confusion: *self,
        }
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Pairs per level.
pub fn level_counts(levels: &[u8]) -> [u64; NUM_LABELS] {
    let mut c = [0u64; NUM_LABELS];
    for &l in levels {
        if (l as usize) < NUM_LABELS {
            c[l as usize] += 1;
        }
    }
    c
}

/// The most frequent level (ties go to the higher level, the common case of relevance data).
pub fn majority_level(levels: &[u8]) -> anyhow::Result<u8> {
    anyhow::ensure!(!levels.is_empty(), "no levels to take the majority of");
    let c = level_counts(levels);
    let mut best = NUM_LABELS - 1;
    for k in (0..NUM_LABELS).rev() {
        if c[k] > c[best] {
            best = k;
        }
    }
    Ok(best as u8)
}

/// Two score thresholds: level 0 below `low`, 1 from `low` to below `high`, 2 from `high`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoreThresholds {
    pub low: f64,
    pub high: f64,
}

impl ScoreThresholds {
    /// The level of a score.
    pub fn classify(&self, score: f64) -> u8 {
        if score >= self.high {
            2
        } else if score >= self.low {
            1
        } else {
            0
        }
    }

    /// Thresholds that maximise accuracy on (score, level) pairs, in O(n log n): over the
    /// pairs sorted by score, accuracy with cuts at positions `i <= j` is
    /// `A0(i) + (A1(j) - A1(i)) + (N2 - A2(j))` for prefix counts `Ak`, maximised for each `j`
    /// with the best `i <= j` so far. Cuts fall between distinct scores (at their midpoint);
    /// among equally accurate cuts the first found wins.
    pub fn fit(scores: &[f64], levels: &[u8]) -> anyhow::Result<Self> {
        anyhow::ensure!(
            scores.len() == levels.len(),
            "{} scores but {} levels",
            scores.len(),
            levels.len()
        );
        anyhow::ensure!(!scores.is_empty(), "no scores to fit thresholds on");
        if let Some(k) = scores.iter().position(|s| !s.is_finite()) {
            anyhow::bail!("score {k} is {}", scores[k]);
        }
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
        // Cut candidates: before the first pair, between distinct scores, after the last.
        let n = order.len();
        let first = scores[order[0]];
        let last = scores[order[n - 1]];
        let mut cuts: Vec<(usize, f64)> = vec![(0, first - 1.0)];
        for p in 1..n {
            let (a, b) = (scores[order[p - 1]], scores[order[p]]);
            if b > a {
                cuts.push((p, a + (b - a) / 2.0));
            }
        }
        cuts.push((n, last + 1.0));
        // Prefix counts per level at every position.
        let mut prefix = vec![[0i64; NUM_LABELS]; n + 1];
        for (p, &i) in order.iter().enumerate() {
            prefix[p + 1] = prefix[p];
            let l = levels[i] as usize;
            anyhow::ensure!(l < NUM_LABELS, "level {l} of pair {i} is not 0, 1 or 2");
            prefix[p + 1][l] += 1;
        }
        let n2 = prefix[n][2];
        let mut best_low: Option<(i64, f64)> = None;
        let mut best: Option<(i64, f64, f64)> = None;
        for &(pos, value) in &cuts {
            let a = prefix[pos];
            let low_term = a[0] - a[1];
            if best_low.is_none_or(|(v, _)| low_term > v) {
                best_low = Some((low_term, value));
            }
            let (lt, low) = best_low.expect("set above");
            let total = lt + a[1] - a[2] + n2;
            if best.is_none_or(|(v, _, _)| total > v) {
                best = Some((total, low, value));
            }
        }
        let (_, low, high) = best.expect("at least two cuts");
        Ok(ScoreThresholds { low, high })
    }
}

/// Prints a metrics table: one row per system.
pub fn format_table(rows: &[(&str, &LabelMetrics)]) -> String {
    let mut out = format!(
        "{:<24} {:>8} {:>8} {:>9} {:>8} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7}\n",
        "system", "pairs", "acc", "within-1", "macroF1", "P0", "R0", "P1", "R1", "P2", "R2"
    );
    for (name, m) in rows {
        let c = &m.per_class;
        out.push_str(&format!(
            "{:<24} {:>8} {:>8.4} {:>9.4} {:>8.4} {:>7.3} {:>7.3} {:>7.3} {:>7.3} {:>7.3} {:>7.3}\n",
            name,
            m.pairs,
            m.accuracy,
            m.within_1_accuracy,
            m.macro_f1,
            c[0].precision,
            c[0].recall,
            c[1].precision,
            c[1].recall,
            c[2].precision,
            c[2].recall
        ));
    }
    out
}

/// The thresholds of a labeler evaluation's confidence table.
pub const CONFIDENCE_THRESHOLDS: [f64; 6] = [0.5, 0.6, 0.7, 0.8, 0.9, 0.95];

/// What a confidence threshold keeps of a labeler's answers and how good they are: the
/// metrics over the pairs whose most probable level has at least `min_confidence`
/// (`strata mine --min-confidence` leaves the others unlabeled).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConfidenceRow {
    pub min_confidence: f64,
    /// Share of the pairs kept.
    pub coverage: f64,
    pub metrics: LabelMetrics,
}

/// One [`ConfidenceRow`] per threshold, from the true levels and the per-class probabilities
/// (the prediction is the most probable level, as the labeler answers).
pub fn by_confidence(
    truth: &[u8],
    probs: &[[f32; NUM_LABELS]],
    thresholds: &[f64],
) -> anyhow::Result<Vec<ConfidenceRow>> {
    anyhow::ensure!(
        truth.len() == probs.len(),
        "{} true levels but {} probability rows",
        truth.len(),
        probs.len()
    );
    let predicted = super::store::argmax(probs);
    thresholds
        .iter()
        .map(|&min| {
            let (t, p): (Vec<u8>, Vec<u8>) = truth
                .iter()
                .zip(&predicted)
                .zip(probs)
                .filter(|((_, p), pr)| pr[**p as usize] >= min as f32)
                .map(|((&t, &p), _)| (t, p))
                .unzip();
            Ok(ConfidenceRow {
                min_confidence: min,
                coverage: ratio(t.len() as u64, truth.len() as u64),
                metrics: ConfusionMatrix::from_pairs(&t, &p)?.metrics(),
            })
        })
        .collect()
}

/// Prints a confidence table: one row per threshold.
pub fn format_confidence(rows: &[ConfidenceRow]) -> String {
    let mut out = format!(
        "{:>14} {:>8} {:>8} {:>8} {:>9} {:>7} {:>7} {:>7}\n",
        "min confidence", "kept", "coverage", "acc", "within-1", "P0", "P1", "P2"
    );
    for r in rows {
        let m = &r.metrics;
        out.push_str(&format!(
            "{:>14} {:>8} {:>8.4} {:>8.4} {:>9.4} {:>7.3} {:>7.3} {:>7.3}\n",
            r.min_confidence,
            m.pairs,
            r.coverage,
            m.accuracy,
            m.within_1_accuracy,
            m.per_class[0].precision,
            m.per_class[1].precision,
            m.per_class[2].precision
        ));
    }
    out
}

/// Prints a confusion matrix (rows: truth, columns: prediction).
pub fn format_confusion(m: &ConfusionMatrix) -> String {
    let mut out = String::from("truth\\pred        0        1        2\n");
    for (t, row) in m.counts.iter().enumerate() {
        out.push_str(&format!(
            "{t:<10} {:>8} {:>8} {:>8}\n",
            row[0], row[1], row[2]
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confidence_rows_keep_the_sure_pairs() {
        // Predictions 0 (0.9), 2 (0.6), 1 (0.5), 2 (0.95); truths 0, 1, 1, 2.
        let probs = [
            [0.9, 0.05, 0.05],
            [0.1, 0.3, 0.6],
            [0.3, 0.5, 0.2],
            [0.0, 0.05, 0.95],
        ];
        let truth = [0u8, 1, 1, 2];
        let rows = by_confidence(&truth, &probs, &[0.5, 0.6, 0.9, 0.99]).unwrap();
        let kept: Vec<u64> = rows.iter().map(|r| r.metrics.pairs).collect();
        assert_eq!(kept, [4, 3, 2, 0]);
        assert!((rows[0].coverage - 1.0).abs() < 1e-12);
        assert!((rows[0].metrics.accuracy - 0.75).abs() < 1e-12);
        // At 0.6 the pair predicted 1 is dropped: two right of three.
        assert!((rows[1].metrics.accuracy - 2.0 / 3.0).abs() < 1e-12);
        assert!((rows[1].metrics.per_class[2].precision - 0.5).abs() < 1e-12);
        assert!((rows[2].metrics.accuracy - 1.0).abs() < 1e-12);
        assert!((rows[2].coverage - 0.5).abs() < 1e-12);
        assert_eq!(rows[3].coverage, 0.0);
        let table = format_confidence(&rows);
        assert_eq!(table.lines().count(), 5, "{table}");
        assert!(by_confidence(&truth, &probs[..3], &[0.5]).is_err());
    }

    #[test]
    fn hand_computed_confusion_matrix() {
        // truth:     0 0 0 1 1 2 2 2 2 2
        // predicted: 0 1 2 1 0 2 2 1 0 2
        let truth = [0u8, 0, 0, 1, 1, 2, 2, 2, 2, 2];
        let pred = [0u8, 1, 2, 1, 0, 2, 2, 1, 0, 2];
        let m = ConfusionMatrix::from_pairs(&truth, &pred).unwrap();
        assert_eq!(m.counts, [[1, 1, 1], [1, 1, 0], [1, 1, 3]]);
        assert_eq!(m.total(), 10);
        assert!((m.accuracy() - 0.5).abs() < 1e-12);
        // Wrong by two levels: (0 -> 2) once and (2 -> 0) once.
        assert!((m.within_1_accuracy() - 0.8).abs() < 1e-12);
        let c0 = m.class_scores(0);
        assert!((c0.precision - 1.0 / 3.0).abs() < 1e-12);
        assert!((c0.recall - 1.0 / 3.0).abs() < 1e-12);
        let c1 = m.class_scores(1);
        assert!((c1.precision - 1.0 / 3.0).abs() < 1e-12);
        assert!((c1.recall - 0.5).abs() < 1e-12);
        assert!((c1.f1 - 0.4).abs() < 1e-12);
        let c2 = m.class_scores(2);
        assert!((c2.precision - 0.75).abs() < 1e-12);
        assert!((c2.recall - 0.6).abs() < 1e-12);
        assert_eq!(c2.support, 5);
        let all = m.metrics();
        let f2 = 2.0 * 0.75 * 0.6 / 1.35;
        assert!((all.macro_f1 - (1.0 / 3.0 + 0.4 + f2) / 3.0).abs() < 1e-12);
        assert!(ConfusionMatrix::from_pairs(&[3], &[0]).is_err());
        assert!(ConfusionMatrix::from_pairs(&[0, 1], &[0]).is_err());
    }

    #[test]
    fn undefined_precision_is_zero() {
        let m = ConfusionMatrix::from_pairs(&[0, 1, 2], &[2, 2, 2]).unwrap();
        assert_eq!(m.class_scores(0).precision, 0.0);
        assert_eq!(m.class_scores(0).f1, 0.0);
        assert!((m.class_scores(2).precision - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(m.class_scores(2).recall, 1.0);
    }

    #[test]
    fn majority_level_and_its_accuracy() {
        assert_eq!(majority_level(&[2, 1, 2, 0, 1, 2]).unwrap(), 2);
        assert_eq!(majority_level(&[0, 0, 1]).unwrap(), 0);
        // A tie goes to the higher level.
        assert_eq!(majority_level(&[0, 1, 1, 0]).unwrap(), 1);
        assert!(majority_level(&[]).is_err());
        let truth = [2u8, 1, 2, 0, 1, 2];
        let m = ConfusionMatrix::from_pairs(&truth, &[2; 6]).unwrap();
        assert!((m.accuracy() - 0.5).abs() < 1e-12);
        assert!((m.within_1_accuracy() - 5.0 / 6.0).abs() < 1e-12);
    }

    #[test]
    fn thresholds_separate_separable_scores() {
        let scores = [0.5, 1.0, 2.0, 3.0, 4.5, 5.0, 7.0, 8.0];
        let levels = [0u8, 0, 1, 1, 1, 2, 2, 2];
        let t = ScoreThresholds::fit(&scores, &levels).unwrap();
        assert_eq!(
            t,
            ScoreThresholds {
                low: 1.5,
                high: 4.75
            }
        );
        let pred: Vec<u8> = scores.iter().map(|&s| t.classify(s)).collect();
        assert_eq!(pred, levels);
    }

    #[test]
    fn thresholds_maximise_accuracy_against_brute_force() {
        // Overlapping classes with tied scores; compare with every pair of cut values.
        let scores = [1.0, 1.0, 2.0, 2.0, 2.0, 3.0, 3.0, 4.0, 5.0, 5.0, 6.0, 0.0];
        let levels = [0u8, 1, 0, 1, 1, 2, 0, 1, 2, 2, 1, 0];
        let t = ScoreThresholds::fit(&scores, &levels).unwrap();
        let acc = |t: &ScoreThresholds| {
            scores
                .iter()
                .zip(&levels)
                .filter(|&(&s, &l)| t.classify(s) == l)
                .count()
        };
        let mut cands: Vec<f64> = vec![-1.0, 7.0];
        cands.extend(scores.iter().map(|s| s + 0.5));
        let mut best = 0;
        for &low in &cands {
            for &high in &cands {
                if low <= high {
                    best = best.max(acc(&ScoreThresholds { low, high }));
                }
            }
        }
        assert_eq!(acc(&t), best);
        assert!(t.low <= t.high);
        // A single class: everything goes to it.
        let t = ScoreThresholds::fit(&[1.0, 2.0, 3.0], &[1, 1, 1]).unwrap();
        assert!((1..=3).all(|s| t.classify(s as f64) == 1));
        assert!(ScoreThresholds::fit(&[1.0], &[0, 1]).is_err());
        assert!(ScoreThresholds::fit(&[f64::NAN], &[0]).is_err());
    }
}
