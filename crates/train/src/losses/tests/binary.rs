//! Binary special cases (REFERENCE.md): circle loss (Sun et al. 2020) and SupCon (Khosla et
//! al. 2020) per anchor on a full similarity matrix.

use burn::tensor::{DType, Tensor};

use super::*;
use crate::losses::{pairwise_circle_loss, pairwise_supcon};

const ROWS: [[f64; 4]; 6] = [
    [1.0, 0.2, 0.0, -0.1],
    [0.9, 0.3, 0.1, 0.0],
    [0.0, 1.0, 0.2, 0.1],
    [0.1, 0.8, -0.3, 0.2],
    [-0.2, 0.1, 1.0, 0.3],
    [0.3, 0.0, 0.7, -0.5],
];
const CLASSES: [u32; 6] = [0, 0, 1, 1, 2, 2];

fn similarity(dtype: DType) -> Tensor<2> {
    let rows: Vec<&[f64]> = ROWS.iter().map(|r| &r[..]).collect();
    let x = embeddings(&rows, &cpu(), dtype);
    x.clone().matmul(x.transpose())
}

fn mean(t: Tensor<1>) -> f64 {
    scalar(t.mean())
}

#[test]
fn circle_loss_matches_reference() {
    // The reference rounds to 6 decimals; γ = 256 amplifies f32 rounding, so check in f64.
    let s = similarity(DType::F64);
    for (margin, gamma, expected) in [(0.4, 80.0, 1.390313), (0.25, 256.0, 24.188411)] {
        let per = pairwise_circle_loss(s.clone(), &CLASSES, margin, gamma).unwrap();
        assert_close(
            &[mean(per)],
            &[expected],
            1e-5,
            &format!("m {margin} gamma {gamma}"),
        );
    }
    let per = pairwise_circle_loss(s, &CLASSES, 0.25, 64.0).unwrap();
    let expected = [1.335195, 2.153811, 1.179950, 1.955501, 13.647410, 17.930457];
    assert_close(
        &values(per.clone()),
        &expected,
        1e-5,
        "per anchor, m 0.25 gamma 64",
    );
    assert_close(&[mean(per)], &[6.367054], 1e-5, "mean, m 0.25 gamma 64");
}

#[test]
fn circle_loss_in_f32_matches_at_moderate_scale() {
    let per = pairwise_circle_loss(similarity(DType::F32), &CLASSES, 0.4, 80.0).unwrap();
    assert_close(&[mean(per)], &[1.390313], 2e-5, "f32 m 0.4 gamma 80");
}

#[test]
fn supcon_matches_reference() {
    for dtype in [DType::F32, DType::F64] {
        let s = similarity(dtype);
        for (tau, expected) in [(0.07, 0.061147), (0.1, 0.107262), (0.05, 0.030754)] {
            let per = pairwise_supcon(s.clone(), &CLASSES, tau).unwrap();
            assert_close(
                &[mean(per)],
                &[expected],
                1e-5,
                &format!("tau {tau} {dtype:?}"),
            );
        }
    }
}

#[test]
fn anchors_without_positives_contribute_zero() {
    let s = similarity(DType::F64);
    let classes = [0, 0, 1, 1, 2, 3];
    let supcon = values(pairwise_supcon(s.clone(), &classes, 0.1).unwrap());
    let circle = values(pairwise_circle_loss(s, &classes, 0.25, 64.0).unwrap());
    assert_eq!(supcon[4..], [0.0, 0.0]);
    assert_eq!(circle[4..], [0.0, 0.0]);
    assert!(supcon[..4].iter().all(|v| *v > 0.0));
    assert!(circle[..4].iter().all(|v| *v > 0.0));
}

#[test]
fn label_count_mismatch_is_an_error() {
    let err = pairwise_supcon(similarity(DType::F32), &CLASSES[..5], 0.1).unwrap_err();
    assert!(err.to_string().contains("labels"), "{err}");
}
