//! Autodiff gradients against central finite differences, in f64.

use burn::tensor::{DType, Tensor};

use super::infonce::rows;
use super::*;
use crate::losses::{
    CircleConfig, InfoNceConfig, Reduction, TemperatureConfig, TripletConfig, graded_supcon,
    graded_triplet, info_nce, multiclass_circle, pairwise_supcon,
};

const LABELS_2X4: [&[u8]; 2] = [&[2, 1, 0, 0], &[0, 2]];

fn targets(device: &Device) -> GradedTargets {
    let labels: Vec<Vec<u8>> = LABELS_2X4.iter().map(|l| l.to_vec()).collect();
    GradedTargets::new(&labels, device).unwrap()
}

/// Scores of the two instances: row 0 has four items, row 1 two items and two padding
/// columns (which the losses must ignore).
fn scores() -> Vec<f64> {
    vec![0.62, 0.41, 0.18, -0.07, 0.33, 0.71, 0.9, -0.8]
}

fn tau(value: f64, device: &Device) -> Tensor<1> {
    TemperatureConfig {
        initial: value,
        ..Default::default()
    }
    .init((device, DType::F64))
    .unwrap()
    .tau()
}

#[test]
fn supcon_gradient_through_query_and_item_embeddings() {
    let device = autodiff();
    let t = targets(&device);
    let queries = rows(2, 3, 11).concat();
    let items = rows(6, 3, 12).concat();
    let loss_from = |q: Tensor<2>, i: Tensor<2>| {
        let s = instance_scores(q, i, t.item_index(), t.mask()).unwrap();
        graded_supcon(s, &t, tau(0.1, &device), Reduction::Sum).unwrap()
    };
    let fixed_items = || matrix(items.clone(), [6, 3], &device, DType::F64);
    check_gradient(&queries, [2, 3], |q| loss_from(q, fixed_items()));
    let fixed_queries = || matrix(queries.clone(), [2, 3], &device, DType::F64);
    check_gradient(&items, [6, 3], |i| loss_from(fixed_queries(), i));
}

#[test]
fn supcon_gradient_of_the_temperature() {
    let device = autodiff();
    let t = targets(&device);
    let s = || matrix(scores(), [2, 4], &device, DType::F64);
    let log_tau = 0.08f64.ln();
    let temperature = TemperatureConfig {
        initial: log_tau.exp(),
        ..Default::default()
    }
    .init((&device, DType::F64))
    .unwrap();
    let loss = graded_supcon(s(), &t, temperature.tau(), Reduction::Sum).unwrap();
    let grads = loss.backward();
    let analytic = values(temperature.log_tau.val().grad(&grads).unwrap())[0];
    let numeric = finite_difference(&[log_tau], 1e-6, |v| {
        scalar(graded_supcon(s(), &t, tau(v[0].exp(), &device), Reduction::Sum).unwrap())
    })[0];
    assert!(analytic.abs() > 1e-3, "{analytic}");
    assert!(
        (analytic - numeric).abs() <= 1e-6 + 1e-5 * numeric.abs(),
        "{analytic} vs {numeric}"
    );
}

#[test]
fn clamped_or_frozen_temperature_gets_no_gradient() {
    let device = autodiff();
    let t = targets(&device);
    let s = || matrix(scores(), [2, 4], &device, DType::F64);
    // log τ beyond the upper bound, as an optimiser step could leave it.
    let clamped = crate::losses::LearnableTemperature {
        log_tau: burn::module::Param::from_tensor(
            matrix(vec![0.5f64.ln() + 1.0], [1, 1], &device, DType::F64).reshape([1]),
        ),
        min_tau: 0.01,
        max_tau: 0.5,
    };
    assert!((clamped.value() - 0.5).abs() < 1e-12);
    let grads = graded_supcon(s(), &t, clamped.tau(), Reduction::Sum)
        .unwrap()
        .backward();
    assert_eq!(values(clamped.log_tau.val().grad(&grads).unwrap()), [0.0]);

    let frozen = TemperatureConfig {
        learnable: false,
        ..Default::default()
    }
    .init((&device, DType::F64))
    .unwrap();
    let scores = s().require_grad();
    let grads = graded_supcon(scores.clone(), &t, frozen.tau(), Reduction::Sum)
        .unwrap()
        .backward();
    assert!(scores.grad(&grads).is_some());
    assert!(frozen.log_tau.val().grad(&grads).is_none());
}

/// Circle loss of one score row with the adaptive weights frozen at `base`, in plain floats.
fn circle_frozen(s: &[f64], base: &[f64], labels: &[u8], c: &CircleConfig) -> f64 {
    let cases = [
        (2, 0, c.optimum_2p, c.delta_2p, c.optimum_0n, c.delta_0n),
        (1, 0, c.optimum_1p, c.delta_1p, c.optimum_0n, c.delta_0n),
        (2, 1, c.optimum_2p, c.delta_2p, c.optimum_1n, c.delta_1n),
    ];
    let mut total = 0.0;
    for (a, b, op, dp, on, dn) in cases {
        let pos: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == a).collect();
        let neg: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == b).collect();
        if pos.is_empty() || neg.is_empty() {
            continue;
        }
        let sp: f64 = pos
            .iter()
            .map(|&i| (-c.gamma * (op - base[i]).max(0.0) * (s[i] - dp)).exp())
            .sum();
        let sn: f64 = neg
            .iter()
            .map(|&j| (c.gamma * (base[j] - on).max(0.0) * (s[j] - dn)).exp())
            .sum();
        total += (1.0 + sp * sn / neg.len() as f64).ln();
    }
    total
}

#[test]
fn circle_gradient_matches_finite_differences_with_frozen_weights() {
    let device = autodiff();
    let t = targets(&device);
    let cfg = CircleConfig {
        gamma: 16.0,
        ..Default::default()
    };
    let base = scores();
    let input = matrix(base.clone(), [2, 4], &device, DType::F64).require_grad();
    let loss = multiclass_circle(input.clone(), &t, &cfg).unwrap();
    let total = |s: &[f64]| {
        circle_frozen(&s[0..4], &base[0..4], LABELS_2X4[0], &cfg)
            + circle_frozen(&s[4..6], &base[4..6], LABELS_2X4[1], &cfg)
    };
    assert!((scalar(loss.clone()) - total(&base)).abs() < 1e-12);
    let analytic = values(input.grad(&loss.backward()).unwrap());
    let numeric = finite_difference(&base, 1e-6, total);
    assert_close(&analytic[6..], &[0.0, 0.0], 0.0, "padding");
    for (a, n) in analytic.iter().zip(&numeric) {
        assert!(
            (a - n).abs() <= 1e-6 + 1e-5 * n.abs(),
            "{analytic:?} vs {numeric:?}"
        );
    }
}

#[test]
fn triplet_gradient_matches_finite_differences() {
    let device = autodiff();
    let t = targets(&device);
    // Several hinges active, every one at least 0.05 away from its kink.
    let s = [0.45, 0.40, 0.38, 0.20, 0.5, 0.6, 0.9, -0.8];
    check_gradient(&s, [2, 4], |s| {
        graded_triplet(s, &t, &TripletConfig::default()).unwrap()
    });
}

#[test]
fn infonce_gradient_matches_finite_differences() {
    let device = autodiff();
    let q = rows(3, 4, 21).concat();
    let p = rows(3, 4, 22).concat();
    let h = rows(2, 4, 23).concat();
    let cfg = InfoNceConfig::default();
    let m = |v: &Vec<f64>, n| matrix(v.clone(), [n, 4], &device, DType::F64);
    check_gradient(&q, [3, 4], |x| {
        info_nce(x, m(&p, 3), Some(m(&h, 2)), &cfg).unwrap()
    });
    check_gradient(&p, [3, 4], |x| {
        info_nce(m(&q, 3), x, Some(m(&h, 2)), &cfg).unwrap()
    });
    check_gradient(&h, [2, 4], |x| {
        info_nce(m(&q, 3), m(&p, 3), Some(x), &cfg).unwrap()
    });
}

#[test]
fn binary_supcon_gradient_matches_finite_differences() {
    let sim = rows(5, 5, 31).concat();
    check_gradient(&sim, [5, 5], |s| {
        pairwise_supcon(s, &[0, 0, 1, 1, 1], 0.1).unwrap().sum()
    });
}
