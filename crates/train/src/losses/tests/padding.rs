//! Padding invariance: an instance gives the same loss and gradients at any padded width.

use burn::tensor::DType;

use super::infonce::rows;
use super::*;
use crate::losses::{CircleConfig, LossConfig, LossInputs, SupConConfig, TripletConfig};

/// Loss and gradients (queries, items) of one batch at a given padded width.
fn evaluate(config: &LossConfig, labels: &[Vec<u8>], width: usize) -> (f64, Vec<f64>, Vec<f64>) {
    let device = autodiff();
    let targets = GradedTargets::with_width(labels, width, &device).unwrap();
    let n_items = targets.n_items();
    let queries = matrix(
        rows(labels.len(), 4, 41).concat(),
        [labels.len(), 4],
        &device,
        DType::F64,
    )
    .require_grad();
    let items = matrix(
        rows(n_items, 4, 42).concat(),
        [n_items, 4],
        &device,
        DType::F64,
    )
    .require_grad();
    let loss = config
        .init((&device, DType::F64))
        .unwrap()
        .forward(LossInputs {
            queries: queries.clone(),
            items: items.clone(),
            targets: &targets,
        })
        .unwrap();
    let grads = loss.backward();
    (
        scalar(loss),
        values(queries.grad(&grads).unwrap()),
        values(items.grad(&grads).unwrap()),
    )
}

#[test]
fn graded_losses_ignore_padding() {
    let configs = [
        LossConfig::Supcon(SupConConfig::default()),
        LossConfig::Circle(CircleConfig::default()),
        LossConfig::Triplet(TripletConfig::default()),
    ];
    let single = vec![vec![2, 1, 0, 0]];
    let batch = vec![vec![1, 0], vec![2, 1, 0, 0], vec![2, 2, 1]];
    for config in configs {
        for labels in [&single, &batch] {
            let (loss, dq, di) = evaluate(&config, labels, 4);
            for width in [5, 9] {
                let (padded_loss, padded_dq, padded_di) = evaluate(&config, labels, width);
                let what = format!("{} width {width}", config.name());
                assert_close(&[padded_loss], &[loss], 1e-12, &what);
                assert_close(&padded_dq, &dq, 1e-12, &what);
                assert_close(&padded_di, &di, 1e-12, &what);
            }
            assert!(loss > 0.0, "{}: a non-trivial loss", config.name());
        }
    }
}
