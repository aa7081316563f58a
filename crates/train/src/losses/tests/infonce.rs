//! InfoNCE baseline against a direct cross-entropy over the similarity matrix.

use burn::tensor::DType;

use super::*;
use crate::losses::{InfoNceConfig, Reduction, info_nce, info_nce_per_query};

/// Deterministic small embeddings.
pub fn rows(n: usize, dim: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            let raw: Vec<f64> = (0..dim)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
                })
                .collect();
            normalized(&raw)
        })
        .collect()
}

/// Cross-entropy of query `i` against candidates, target `i`, computed with plain floats.
fn direct(queries: &[Vec<f64>], candidates: &[Vec<f64>], scale: f64) -> Vec<f64> {
    queries
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let logits: Vec<f64> = candidates
                .iter()
                .map(|c| scale * q.iter().zip(c).map(|(a, b)| a * b).sum::<f64>())
                .collect();
            let max = logits.iter().cloned().fold(f64::MIN, f64::max);
            let lse = max + logits.iter().map(|l| (l - max).exp()).sum::<f64>().ln();
            lse - logits[i]
        })
        .collect()
}

fn tensor(rows: &[Vec<f64>]) -> burn::tensor::Tensor<2> {
    let dim = rows[0].len();
    matrix(rows.concat(), [rows.len(), dim], &cpu(), DType::F32)
}

#[test]
fn matches_direct_cross_entropy_with_and_without_hard_negatives() {
    let q = rows(4, 8, 1);
    let p = rows(4, 8, 2);
    let h = rows(3, 8, 3);
    let without = info_nce_per_query(tensor(&q), tensor(&p), None, 20.0).unwrap();
    assert_close(
        &values(without),
        &direct(&q, &p, 20.0),
        1e-4,
        "in-batch only",
    );
    let all: Vec<Vec<f64>> = p.iter().chain(&h).cloned().collect();
    let with = info_nce_per_query(tensor(&q), tensor(&p), Some(tensor(&h)), 20.0).unwrap();
    let expected = direct(&q, &all, 20.0);
    assert_close(&values(with), &expected, 1e-4, "with hard negatives");
    let mean = info_nce(
        tensor(&q),
        tensor(&p),
        Some(tensor(&h)),
        &InfoNceConfig::default(),
    );
    let expected_mean = expected.iter().sum::<f64>() / 4.0;
    assert!((scalar(mean.unwrap()) - expected_mean).abs() < 1e-4);
    let sum_cfg = InfoNceConfig {
        reduction: Reduction::Sum,
        ..Default::default()
    };
    let sum = info_nce(tensor(&q), tensor(&p), Some(tensor(&h)), &sum_cfg).unwrap();
    assert!((scalar(sum) - expected.iter().sum::<f64>()).abs() < 1e-4);
}

#[test]
fn mismatched_dimensions_are_rejected() {
    let err =
        info_nce_per_query(tensor(&rows(4, 8, 1)), tensor(&rows(3, 8, 2)), None, 20.0).unwrap_err();
    assert!(err.to_string().contains("positives"), "{err}");
}
