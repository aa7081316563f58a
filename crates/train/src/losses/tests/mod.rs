//! Tests of the losses against /work/shared/REFERENCE.md, finite differences and invariants.

mod binary;
mod circle;
mod config;
mod gradients;
mod infonce;
mod padding;
mod supcon;
mod targets;
mod triplet;

use burn::tensor::{DType, Device, Int, Tensor, TensorData};

use super::{GradedTargets, instance_scores};

/// The reference query.
pub const QUERY: [f64; 4] = [1.0, 0.2, 0.0, -0.1];

/// The six reference items d0..d5.
pub const ITEMS: [[f64; 4]; 6] = [
    [0.9, 0.3, 0.1, 0.0],
    [0.7, 0.5, 0.2, 0.1],
    [0.0, 1.0, 0.2, 0.1],
    [0.1, 0.8, -0.3, 0.2],
    [-0.2, 0.1, 1.0, 0.3],
    [0.3, 0.0, 0.7, -0.5],
];

/// Labels of d0..d5.
pub const LABELS: [u8; 6] = [2, 2, 1, 1, 0, 0];

/// Reference cosines <q, d_i>.
pub const COSINES: [f64; 6] = [
    0.982100399,
    0.867398958,
    0.180952381,
    0.265197418,
    -0.191942974,
    0.374916323,
];

/// The plain CPU device.
pub fn cpu() -> Device {
    Device::flex()
}

/// The CPU device with autodiff.
pub fn autodiff() -> Device {
    Device::flex().autodiff()
}

/// L2-normalised copy of `v`.
pub fn normalized(v: &[f64]) -> Vec<f64> {
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    v.iter().map(|x| x / norm).collect()
}

/// A `[rows, cols]` float tensor of `dtype`.
pub fn matrix(values: Vec<f64>, shape: [usize; 2], device: &Device, dtype: DType) -> Tensor<2> {
    Tensor::from_data(TensorData::new(values, shape), (device, dtype))
}

/// Row-major `[len(rows), D]` tensor of the normalised rows.
pub fn embeddings(rows: &[&[f64]], device: &Device, dtype: DType) -> Tensor<2> {
    let dim = rows[0].len();
    let values: Vec<f64> = rows.iter().flat_map(|r| normalized(r)).collect();
    matrix(values, [rows.len(), dim], device, dtype)
}

/// The values of any float tensor as f64.
pub fn values<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    t.into_data().iter::<f64>().collect()
}

/// The single value of a `[1]` tensor.
pub fn scalar(t: Tensor<1>) -> f64 {
    t.into_scalar::<f64>()
}

/// Asserts `|actual - expected| <= tol` elementwise.
pub fn assert_close(actual: &[f64], expected: &[f64], tol: f64, what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: lengths differ");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            (a - e).abs() <= tol,
            "{what}[{i}]: got {a}, expected {e} (tolerance {tol})"
        );
    }
}

/// A batch of instances over the reference items: `instances[i]` lists item indices into
/// [`ITEMS`]; every instance is anchored at [`QUERY`]. Returns the targets and the padded
/// cosine matrix computed by [`instance_scores`].
pub fn reference_batch(
    instances: &[&[usize]],
    width: usize,
    device: &Device,
    dtype: DType,
) -> (GradedTargets, Tensor<2>) {
    let labels: Vec<Vec<u8>> = instances
        .iter()
        .map(|items| items.iter().map(|&i| LABELS[i]).collect())
        .collect();
    let targets = GradedTargets::with_width(&labels, width, device).unwrap();
    let queries: Vec<&[f64]> = vec![&QUERY; instances.len()];
    let items: Vec<&[f64]> = instances
        .iter()
        .flat_map(|items| items.iter().map(|&i| &ITEMS[i][..]))
        .collect();
    let scores = instance_scores(
        embeddings(&queries, device, dtype),
        embeddings(&items, device, dtype),
        targets.item_index(),
        targets.mask(),
    )
    .unwrap();
    (targets, scores)
}

/// A padded score matrix built directly from per-instance score rows (padding holds `fill`).
pub fn padded_scores(
    rows: &[Vec<f64>],
    width: usize,
    fill: f64,
    device: &Device,
    dtype: DType,
) -> Tensor<2> {
    let mut values = vec![fill; rows.len() * width];
    for (r, row) in rows.iter().enumerate() {
        values[r * width..r * width + row.len()].copy_from_slice(row);
    }
    matrix(values, [rows.len(), width], device, dtype)
}

/// Central finite-difference gradient of `f` at `x` (f64).
pub fn finite_difference(x: &[f64], step: f64, f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    (0..x.len())
        .map(|i| {
            let mut plus = x.to_vec();
            let mut minus = x.to_vec();
            plus[i] += step;
            minus[i] -= step;
            (f(&plus) - f(&minus)) / (2.0 * step)
        })
        .collect()
}

/// Asserts the autodiff gradient of `loss(x)` matches central finite differences, both in f64.
pub fn check_gradient(x: &[f64], shape: [usize; 2], loss: impl Fn(Tensor<2>) -> Tensor<1>) {
    let device = autodiff();
    let input = matrix(x.to_vec(), shape, &device, DType::F64).require_grad();
    let out = loss(input.clone());
    let grads = out.backward();
    let analytic = values(input.grad(&grads).expect("input takes part in the loss"));
    let numeric = finite_difference(x, 1e-6, |v| {
        scalar(loss(matrix(v.to_vec(), shape, &device, DType::F64)))
    });
    for (i, (a, n)) in analytic.iter().zip(&numeric).enumerate() {
        assert!(
            (a - n).abs() <= 1e-6 + 1e-5 * n.abs(),
            "gradient[{i}]: autodiff {a}, finite difference {n}"
        );
    }
    assert!(
        analytic.iter().any(|g| g.abs() > 1e-6),
        "the check needs a non-trivial gradient"
    );
}

/// `[len]` Int tensor.
pub fn int_vector(values: Vec<i64>, device: &Device) -> Tensor<1, Int> {
    let len = values.len();
    Tensor::from_data(TensorData::new(values, [len]), device)
}
