//! Graded SupCon (eq. 2) against REFERENCE.md.

use burn::tensor::DType;

use super::*;
use crate::losses::{Reduction, TemperatureConfig, graded_supcon, graded_supcon_per_instance};

const ALL: &[usize] = &[0, 1, 2, 3, 4, 5];
const TWO_ZERO: &[usize] = &[0, 4];
const TWO_ONE: &[usize] = &[0, 2];

/// (tau, all six, (q,d2,d0), (q,d2,d1)) from REFERENCE.md.
const EXPECTED: [(f64, [f64; 3]); 2] = [
    (0.05, [5.920942796, 0.000000000, 5.340986895]),
    (0.1, [3.190812251, 0.000007965, 2.670824971]),
];

fn tau(value: f64, dtype: DType) -> burn::tensor::Tensor<1> {
    tau_on(value, &cpu(), dtype)
}

fn tau_on(value: f64, device: &Device, dtype: DType) -> burn::tensor::Tensor<1> {
    TemperatureConfig {
        initial: value,
        ..Default::default()
    }
    .init((device, dtype))
    .unwrap()
    .tau()
}

#[test]
fn instance_scores_are_the_reference_cosines() {
    let (_, scores) = reference_batch(&[ALL, TWO_ZERO, TWO_ONE], 6, &cpu(), DType::F32);
    let v = values(scores);
    assert_close(&v[0..6], &COSINES, 1e-6, "all six");
    assert_close(
        &v[6..12],
        &[COSINES[0], COSINES[4], 0.0, 0.0, 0.0, 0.0],
        1e-6,
        "d0,d4",
    );
    assert_close(
        &v[12..18],
        &[COSINES[0], COSINES[2], 0.0, 0.0, 0.0, 0.0],
        1e-6,
        "d0,d2",
    );
}

#[test]
fn padded_batch_matches_reference_per_instance_and_reduced() {
    for dtype in [DType::F32, DType::F64] {
        let (targets, scores) = reference_batch(&[ALL, TWO_ZERO, TWO_ONE], 6, &cpu(), dtype);
        for (t, expected) in EXPECTED {
            let per = graded_supcon_per_instance(scores.clone(), &targets, tau(t, dtype)).unwrap();
            assert_close(&values(per), &expected, 1e-5, &format!("tau {t} {dtype:?}"));
            let sum = graded_supcon(scores.clone(), &targets, tau(t, dtype), Reduction::Sum);
            let mean = graded_supcon(scores.clone(), &targets, tau(t, dtype), Reduction::Mean);
            let total: f64 = expected.iter().sum();
            assert_close(&[scalar(sum.unwrap())], &[total], 1e-5, "sum");
            assert_close(&[scalar(mean.unwrap())], &[total / 3.0], 1e-5, "mean");
        }
    }
}

#[test]
fn label_zero_items_push_the_loss_up_and_a_common_shift_changes_nothing() {
    let device = autodiff();
    let labels = vec![vec![2, 1, 0, 0, 1]];
    let targets = GradedTargets::new(&labels, &device).unwrap();
    let base = vec![0.3, 0.5, 0.6, -0.2, 0.1];
    let scores =
        padded_scores(std::slice::from_ref(&base), 5, 0.0, &device, DType::F64).require_grad();
    let loss = graded_supcon(
        scores.clone(),
        &targets,
        tau_on(0.1, &device, DType::F64),
        Reduction::Sum,
    )
    .unwrap();
    let grad = values(scores.grad(&loss.backward()).unwrap());
    // dL/ds_j = p_j / tau > 0 for every item outside P(q).
    assert!(grad[2] > 0.0 && grad[3] > 0.0, "{grad:?}");
    // Softmax is shift invariant, so the gradient sums to zero...
    assert!(grad.iter().sum::<f64>().abs() < 1e-9, "{grad:?}");
    // ...and adding a constant to every score leaves the loss unchanged.
    let shifted: Vec<f64> = base.iter().map(|s| s + 0.3).collect();
    let value = |row: Vec<f64>| {
        let s = padded_scores(&[row], 5, 0.0, &cpu(), DType::F64);
        let t = GradedTargets::new(&labels, &cpu()).unwrap();
        scalar(graded_supcon(s, &t, tau(0.1, DType::F64), Reduction::Sum).unwrap())
    };
    assert!((value(base.clone()) - value(shifted)).abs() < 1e-12);
}

#[test]
fn raising_the_single_positive_lowers_the_loss() {
    let labels = vec![vec![0, 1, 0]];
    let targets = GradedTargets::new(&labels, &cpu()).unwrap();
    let loss_at = |positive: f64| {
        let s = padded_scores(&[vec![0.2, positive, 0.4]], 3, 0.0, &cpu(), DType::F64);
        scalar(graded_supcon(s, &targets, tau(0.1, DType::F64), Reduction::Sum).unwrap())
    };
    let losses: Vec<f64> = [-0.5, 0.0, 0.3, 0.6, 0.9]
        .iter()
        .map(|&s| loss_at(s))
        .collect();
    assert!(losses.windows(2).all(|w| w[1] < w[0]), "{losses:?}");
}

#[test]
fn scores_of_the_wrong_shape_are_rejected() {
    let targets = GradedTargets::new(&[vec![2, 0]], &cpu()).unwrap();
    let scores = padded_scores(&[vec![0.1, 0.2, 0.3]], 3, 0.0, &cpu(), DType::F32);
    let err = graded_supcon(scores, &targets, tau(0.1, DType::F32), Reduction::Sum).unwrap_err();
    assert!(err.to_string().contains("scores"), "{err}");
}
