//! Multi-class circle loss (eqs. 3-5) against REFERENCE.md.

use burn::tensor::DType;

use super::*;
use crate::losses::{
    CircleConfig, Reduction, multiclass_circle, multiclass_circle_cases,
    multiclass_circle_per_instance,
};

/// (γ, case I, case II, case III, sum) from REFERENCE.md.
const EXPECTED: [(f64, [f64; 4]); 3] = [
    (16.0, [1.021978651, 2.659212058, 0.619053571, 4.300244280]),
    (32.0, [1.211239938, 4.987241914, 0.317935866, 6.516417718]),
    (64.0, [1.880989021, 10.228076994, 0.072440617, 12.181506631]),
];

fn config(gamma: f64) -> CircleConfig {
    CircleConfig {
        gamma,
        ..Default::default()
    }
}

#[test]
fn defaults_are_the_paper_values() {
    let c = CircleConfig::default();
    assert_eq!(
        [c.delta_2p, c.delta_1n, c.delta_1p, c.delta_0n],
        [0.75, 0.6, 0.4, 0.25]
    );
    assert_eq!(
        [c.optimum_2p, c.optimum_1n, c.optimum_1p, c.optimum_0n],
        [1.25, 0.3, 0.6, -0.25]
    );
}

#[test]
fn each_case_and_the_sum_match_reference() {
    for dtype in [DType::F32, DType::F64] {
        let (targets, scores) = reference_batch(&[&[0, 1, 2, 3, 4, 5]], 6, &cpu(), dtype);
        for (gamma, [c1, c2, c3, sum]) in EXPECTED {
            let cases = multiclass_circle_cases(scores.clone(), &targets, &config(gamma)).unwrap();
            let what = format!("gamma {gamma} {dtype:?}");
            assert_close(&values(cases.two_vs_zero.clone()), &[c1], 1e-5, &what);
            assert_close(&values(cases.one_vs_zero.clone()), &[c2], 1e-5, &what);
            assert_close(&values(cases.two_vs_one.clone()), &[c3], 1e-5, &what);
            assert_close(&values(cases.total()), &[sum], 1e-5, &what);
        }
    }
}

#[test]
fn two_label_instances_contribute_their_one_case_in_a_padded_batch() {
    // Instances: all six; labels {2,0}; labels {1,0}; labels {2,1}. Each two-label instance
    // holds exactly the items its case uses in the six-item instance.
    let instances: [&[usize]; 4] = [
        &[0, 1, 2, 3, 4, 5],
        &[0, 4, 1, 5],
        &[2, 3, 4, 5],
        &[0, 2, 1, 3],
    ];
    let (targets, scores) = reference_batch(&instances, 6, &cpu(), DType::F32);
    for (gamma, [c1, c2, c3, sum]) in EXPECTED {
        let cfg = config(gamma);
        let per = multiclass_circle_per_instance(scores.clone(), &targets, &cfg).unwrap();
        assert_close(
            &values(per),
            &[sum, c1, c2, c3],
            1e-5,
            &format!("gamma {gamma}"),
        );
        let cases = multiclass_circle_cases(scores.clone(), &targets, &cfg).unwrap();
        // Case I is absent from the {1,0} and {2,1} instances.
        assert_close(
            &values(cases.two_vs_zero),
            &[c1, c1, 0.0, 0.0],
            1e-5,
            "case I",
        );
        let total = scalar(multiclass_circle(scores.clone(), &targets, &cfg).unwrap());
        assert!(
            (total - (sum + c1 + c2 + c3)).abs() < 1e-4,
            "sum reduction {total}"
        );
        let mean_cfg = CircleConfig {
            reduction: Reduction::Mean,
            ..cfg
        };
        let mean = scalar(multiclass_circle(scores.clone(), &targets, &mean_cfg).unwrap());
        assert!(
            (mean - (sum + c1 + c2 + c3) / 4.0).abs() < 1e-5,
            "mean reduction {mean}"
        );
    }
}

#[test]
fn items_past_their_optimum_get_no_gradient_and_signs_follow_the_labels() {
    let device = autodiff();
    let labels = vec![vec![2, 2, 1, 0, 0]];
    let targets = GradedTargets::new(&labels, &device).unwrap();
    // d0 is above O_2p = 1.25 and d4 below O_0n = -0.25: their adaptive weights are zero.
    let row = vec![1.3, 0.5, 0.45, 0.2, -0.4];
    let scores = padded_scores(&[row], 5, 0.0, &device, DType::F64).require_grad();
    let loss = multiclass_circle(scores.clone(), &targets, &config(32.0)).unwrap();
    let grad = values(scores.grad(&loss.backward()).unwrap());
    assert_eq!(grad[0], 0.0, "{grad:?}");
    assert_eq!(grad[4], 0.0, "{grad:?}");
    assert!(
        grad[1] < 0.0,
        "a label-2 item below its optimum is pulled up: {grad:?}"
    );
    assert!(
        grad[3] > 0.0,
        "a label-0 item above its optimum is pushed down: {grad:?}"
    );
}

#[test]
fn invalid_gamma_is_rejected_by_name() {
    let targets = GradedTargets::new(&[vec![2, 0]], &cpu()).unwrap();
    let scores = padded_scores(&[vec![0.5, 0.1]], 2, 0.0, &cpu(), DType::F32);
    let err = multiclass_circle(scores, &targets, &config(0.0)).unwrap_err();
    assert!(err.to_string().contains("gamma"), "{err}");
}
