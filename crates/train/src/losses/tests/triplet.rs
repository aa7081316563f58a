//! Graded triplet baseline: hand-computed values and invariants.

use burn::tensor::DType;

use super::*;
use crate::losses::{Reduction, TripletConfig, graded_triplet, graded_triplet_per_instance};

fn batch() -> (GradedTargets, burn::tensor::Tensor<2>) {
    let labels = vec![vec![2, 1, 0], vec![2, 2, 0]];
    let targets = GradedTargets::new(&labels, &cpu()).unwrap();
    let rows = [vec![0.5, 0.45, 0.38], vec![0.6, 0.1, 0.3]];
    (targets, padded_scores(&rows, 3, 0.0, &cpu(), DType::F64))
}

#[test]
fn per_pair_hinges_match_hand_computation() {
    let (targets, scores) = batch();
    // Instance 0: (2,1) 0.1-(0.5-0.45)=0.05; (2,0) 0.2-(0.5-0.38)=0.08; (1,0) 0.1-(0.45-0.38)=0.03.
    // Instance 1: (2,0) pairs: 0.2-(0.6-0.3) -> 0 and 0.2-(0.1-0.3)=0.4.
    let sum_cfg = TripletConfig {
        pair_reduction: Reduction::Sum,
        ..Default::default()
    };
    let summed = graded_triplet_per_instance(scores.clone(), &targets, &sum_cfg).unwrap();
    assert_close(&values(summed), &[0.16, 0.4], 1e-12, "summed over pairs");
    let mean_cfg = TripletConfig::default();
    let averaged = graded_triplet_per_instance(scores.clone(), &targets, &mean_cfg).unwrap();
    assert_close(
        &values(averaged),
        &[0.16 / 3.0, 0.2],
        1e-12,
        "averaged over pairs",
    );
    let batch_mean = scalar(graded_triplet(scores.clone(), &targets, &mean_cfg).unwrap());
    assert!((batch_mean - (0.16 / 3.0 + 0.2) / 2.0).abs() < 1e-12);
    let batch_sum_cfg = TripletConfig {
        reduction: Reduction::Sum,
        ..sum_cfg
    };
    let batch_sum = scalar(graded_triplet(scores, &targets, &batch_sum_cfg).unwrap());
    assert!((batch_sum - 0.56).abs() < 1e-12);
}

#[test]
fn satisfied_margins_give_zero_loss_and_gradient() {
    let device = autodiff();
    let targets = GradedTargets::new(&[vec![0, 2, 1, 0]], &device).unwrap();
    let scores =
        padded_scores(&[vec![0.1, 0.9, 0.5, -0.3]], 4, 0.0, &device, DType::F64).require_grad();
    let loss = graded_triplet(scores.clone(), &targets, &TripletConfig::default()).unwrap();
    let grads = loss.backward();
    assert_eq!(scalar(loss), 0.0);
    assert!(
        values(scores.grad(&grads).unwrap())
            .iter()
            .all(|g| *g == 0.0)
    );
}
