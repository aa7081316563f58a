//! Similarity thresholds that separate the relevance strata, derived from judged pairs.
//!
//! Two boundaries between adjacent strata: "2|1" is fitted on the pairs labelled 2 (upper side)
//! or 1 (lower side), "1|0" on the pairs labelled 1 or 0. Each threshold maximises balanced
//! accuracy (or F1) of `score >= threshold` on its pairs, and sits halfway between the two
//! neighbouring observed scores (the highest such threshold on ties). A pair is then
//! classified 2 when its score reaches the upper threshold, 1 when it reaches the lower one,
//! 0 otherwise (the upper threshold is raised to the lower one if it came out below it).

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// What a threshold maximises.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Criterion {
    /// Mean of the true-positive and true-negative rates (insensitive to how many pairs each
    /// side has).
    #[default]
    BalancedAccuracy,
    /// F1 of the upper side.
    F1,
}

impl std::str::FromStr for Criterion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "f1" => Ok(Criterion::F1),
            "balanced-accuracy" => Ok(Criterion::BalancedAccuracy),
            o => Err(format!(
                "unknown threshold criterion {o:?} (expected f1 or balanced-accuracy)"
            )),
        }
    }
}

/// One boundary between strata.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Boundary {
    /// "2|1" or "1|0".
    pub name: String,
    /// Label of the upper side.
    pub upper: u8,
    /// Label of the lower side.
    pub lower: u8,
    /// Scores >= this are put on the upper side.
    pub threshold: f32,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub balanced_accuracy: f64,
    /// Pairs labelled `upper` / `lower`.
    pub positives: usize,
    pub negatives: usize,
}

/// Precision and recall of one label under the three-way classification.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassReport {
    pub label: u8,
    /// `None` when no pair was predicted with this label.
    pub precision: Option<f64>,
    /// `None` when no pair has this label.
    pub recall: Option<f64>,
    /// Pairs with this label.
    pub support: usize,
    /// Pairs predicted with this label.
    pub predicted: usize,
}

/// Thresholds and their quality on the judged pairs (written as `thresholds.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// What the scores are ("cosine" or "bm25").
    pub score_kind: String,
    /// The model the scores came from.
    pub model: Option<String>,
    pub criterion: Criterion,
    /// Judged pairs used.
    pub n_pairs: usize,
    /// "2|1" then "1|0".
    pub boundaries: Vec<Boundary>,
    /// Labels 0, 1, 2.
    pub classes: Vec<ClassReport>,
    /// `confusion[true label][predicted label]`.
    pub confusion: [[usize; 3]; 3],
}

/// Errors deriving thresholds.
#[derive(Debug, thiserror::Error)]
pub enum ThresholdError {
    #[error(
        "boundary {boundary}: needs judged pairs on both sides ({positives} above, {negatives} below)"
    )]
    OneSided {
        boundary: &'static str,
        positives: usize,
        negatives: usize,
    },
    #[error("a score is not finite")]
    NonFinite,
}

/// The pairs of one boundary: `(score, is upper)`, sorted by descending score.
fn side_pairs(pairs: &[(f32, u8)], upper: u8, lower: u8) -> Vec<(f32, bool)> {
    let mut v: Vec<(f32, bool)> = pairs
        .iter()
        .filter(|p| p.1 == upper || p.1 == lower)
        .map(|p| (p.0, p.1 == upper))
        .collect();
    v.sort_by(|a, b| b.0.total_cmp(&a.0));
    v
}

fn stats(pairs: &[(f32, bool)], t: f32) -> (f64, f64, f64, f64, usize, usize) {
    let (mut tp, mut fp, mut fnn, mut tn) = (0usize, 0usize, 0usize, 0usize);
    for &(s, up) in pairs {
        match (s >= t, up) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, true) => fnn += 1,
            (false, false) => tn += 1,
        }
    }
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let precision = ratio(tp, tp + fp);
    let recall = ratio(tp, tp + fnn);
    let f1 = if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    let bal = 0.5 * (recall + ratio(tn, tn + fp));
    (precision, recall, f1, bal, tp + fnn, tn + fp)
}

/// The threshold that maximises `criterion` (the highest threshold on ties).
fn best_threshold(sorted_desc: &[(f32, bool)], criterion: Criterion) -> f32 {
    let pos_total = sorted_desc.iter().filter(|p| p.1).count() as f64;
    let neg_total = sorted_desc.len() as f64 - pos_total;
    let (mut tp, mut fp) = (0f64, 0f64);
    let mut best = (f64::NEG_INFINITY, sorted_desc[0].0);
    let mut i = 0;
    while i < sorted_desc.len() {
        let s = sorted_desc[i].0;
        while i < sorted_desc.len() && sorted_desc[i].0 == s {
            if sorted_desc[i].1 {
                tp += 1.0
            } else {
                fp += 1.0
            }
            i += 1;
        }
        let value = match criterion {
            Criterion::F1 => 2.0 * tp / (2.0 * tp + fp + (pos_total - tp)),
            Criterion::BalancedAccuracy => 0.5 * (tp / pos_total + (neg_total - fp) / neg_total),
        };
        if value > best.0 {
            let t = if i < sorted_desc.len() {
                0.5 * (s + sorted_desc[i].0)
            } else {
                s
            };
            best = (value, t);
        }
    }
    best.1
}

/// Derives the thresholds from `(score, label)` pairs.
pub fn derive_thresholds(
    pairs: &[(f32, u8)],
    criterion: Criterion,
) -> Result<Thresholds, ThresholdError> {
    if pairs.iter().any(|p| !p.0.is_finite()) {
        return Err(ThresholdError::NonFinite);
    }
    const BOUNDARIES: [(&str, u8, u8); 2] = [("2|1", 2, 1), ("1|0", 1, 0)];
    let sides: Vec<Vec<(f32, bool)>> = BOUNDARIES
        .iter()
        .map(|&(_, u, l)| side_pairs(pairs, u, l))
        .collect();
    let mut thresholds = [0f32; 2];
    for (slot, (&(name, _, _), side)) in BOUNDARIES.iter().zip(&sides).enumerate() {
        let positives = side.iter().filter(|p| p.1).count();
        let negatives = side.len() - positives;
        if positives == 0 || negatives == 0 {
            return Err(ThresholdError::OneSided {
                boundary: name,
                positives,
                negatives,
            });
        }
        thresholds[slot] = best_threshold(side, criterion);
    }
    // The upper threshold never lies below the lower one.
    thresholds[0] = thresholds[0].max(thresholds[1]);
    let boundaries = BOUNDARIES
        .iter()
        .zip(&sides)
        .zip(thresholds)
        .map(|((&(name, upper, lower), side), t)| {
            let (precision, recall, f1, balanced_accuracy, positives, negatives) = stats(side, t);
            Boundary {
                name: name.to_string(),
                upper,
                lower,
                threshold: t,
                precision,
                recall,
                f1,
                balanced_accuracy,
                positives,
                negatives,
            }
        })
        .collect();
    let mut out = Thresholds {
        score_kind: String::new(),
        model: None,
        criterion,
        n_pairs: pairs.len(),
        boundaries,
        classes: Vec::new(),
        confusion: [[0; 3]; 3],
    };
    for &(s, l) in pairs {
        out.confusion[l.min(2) as usize][out.classify(s) as usize] += 1;
    }
    out.classes = (0..3u8)
        .map(|label| {
            let c = &out.confusion;
            let l = label as usize;
            let support: usize = c[l].iter().sum();
            let predicted: usize = (0..3).map(|t| c[t][l]).sum();
            ClassReport {
                label,
                precision: (predicted > 0).then(|| c[l][l] as f64 / predicted as f64),
                recall: (support > 0).then(|| c[l][l] as f64 / support as f64),
                support,
                predicted,
            }
        })
        .collect();
    Ok(out)
}

impl Thresholds {
    /// The label predicted for a score.
    pub fn classify(&self, score: f32) -> u8 {
        let t = |name: &str| {
            self.boundaries
                .iter()
                .find(|b| b.name == name)
                .map_or(f32::INFINITY, |b| b.threshold)
        };
        if score >= t("2|1") {
            2
        } else if score >= t("1|0") {
            1
        } else {
            0
        }
    }

    /// Reads a `thresholds.json`.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{}: not a thresholds file", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separable_strata_get_thresholds_between_them() {
        let pairs = [(0.9, 2), (0.85, 2), (0.6, 1), (0.55, 1), (0.2, 0), (0.1, 0)];
        let t = derive_thresholds(&pairs, Criterion::F1).unwrap();
        assert_eq!(t.boundaries[0].name, "2|1");
        assert!((t.boundaries[0].threshold - 0.725).abs() < 1e-6);
        assert!((t.boundaries[1].threshold - 0.375).abs() < 1e-6);
        for b in &t.boundaries {
            assert_eq!(
                (b.precision, b.recall, b.f1, b.balanced_accuracy),
                (1.0, 1.0, 1.0, 1.0)
            );
        }
        assert_eq!(t.confusion, [[2, 0, 0], [0, 2, 0], [0, 0, 2]]);
        assert!(
            t.classes
                .iter()
                .all(|c| c.precision == Some(1.0) && c.recall == Some(1.0))
        );
        assert_eq!(t.classify(0.8), 2);
        assert_eq!(t.classify(0.4), 1);
        assert_eq!(t.classify(0.3), 0);
    }

    #[test]
    fn overlapping_strata_by_hand() {
        // Boundary 1|0 uses labels 1 {0.8, 0.5, 0.4} and 0 {0.7, 0.3, 0.2}; label 2 is ignored.
        // Cut below 0.8: TP 1, FP 0 -> P 1, R 1/3, F1 0.5, BA 2/3.
        // Cut below 0.7: TP 1, FP 1 -> F1 1/3, BA 1/2.
        // Cut below 0.5: TP 2, FP 1 -> P 2/3, R 2/3, F1 2/3, BA 2/3.
        // Cut below 0.4: TP 3, FP 1 -> P 3/4, R 1, F1 6/7 (best F1), BA 5/6 (best BA).
        // Cut below 0.3: TP 3, FP 2 -> F1 0.75, BA 2/3.
        let pairs = [
            (0.9, 2),
            (0.1, 2),
            (0.8, 1),
            (0.7, 0),
            (0.5, 1),
            (0.4, 1),
            (0.3, 0),
            (0.2, 0),
        ];
        let t = derive_thresholds(&pairs, Criterion::F1).unwrap();
        let b = &t.boundaries[1];
        assert_eq!((b.upper, b.lower, b.positives, b.negatives), (1, 0, 3, 3));
        assert!((b.threshold - 0.35).abs() < 1e-6);
        assert!((b.f1 - 6.0 / 7.0).abs() < 1e-9);
        assert!((b.precision - 0.75).abs() < 1e-9);
        let t = derive_thresholds(&pairs, Criterion::BalancedAccuracy).unwrap();
        assert!((t.boundaries[1].threshold - 0.35).abs() < 1e-6);
        assert!((t.boundaries[1].balanced_accuracy - 5.0 / 6.0).abs() < 1e-9);
        // Boundary 2|1: labels 2 {0.9, 0.1} and 1 {0.8, 0.5, 0.4}. BA: below 0.9 -> 1/2 + 1/2
        // = 0.75 (TPR 1/2, TNR 1); below 0.1 -> 1/2.
        let b = &t.boundaries[0];
        assert!((b.threshold - 0.85).abs() < 1e-6);
        assert!((b.balanced_accuracy - 0.75).abs() < 1e-9);
        // Three-way classification: label 2 at 0.1 falls to class 0.
        assert_eq!(t.classify(0.1), 0);
        assert_eq!(t.confusion[2], [1, 0, 1]);
    }

    #[test]
    fn one_sided_pairs_are_an_error() {
        let e = derive_thresholds(&[(0.5, 2), (0.4, 2)], Criterion::F1).unwrap_err();
        assert!(e.to_string().contains("2|1"), "{e}");
        assert!(derive_thresholds(&[(f32::NAN, 2), (0.4, 0)], Criterion::F1).is_err());
        assert_eq!(
            "balanced-accuracy".parse::<Criterion>().unwrap(),
            Criterion::BalancedAccuracy
        );
        assert!("auc".parse::<Criterion>().is_err());
    }
}
