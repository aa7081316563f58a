//! Binary special cases of the graded losses on a full similarity matrix: the original circle
//! loss (Sun et al. 2020) and supervised contrastive loss (Khosla et al. 2020), one value per
//! anchor. They cross-check the graded losses against well-known formulations.
//!
//! Row `i` of the `[N, N]` similarity matrix is anchor `i`; its candidates are the other rows
//! (self excluded). Candidates sharing its class are positives, the rest negatives.

use burn::tensor::{Bool, Device, Tensor, TensorData};

use super::circle::{CircleSide, circle_log_sums};
use super::error::{LossError, check_dims, check_positive};
use super::masked::{masked_log_softmax, softplus};

/// `[N, N]` masks of (positives, negatives, candidates) for class labels `classes`.
fn anchor_masks(
    classes: &[u32],
    device: &Device,
) -> (Tensor<2, Bool>, Tensor<2, Bool>, Tensor<2, Bool>) {
    let n = classes.len();
    let mut pos = vec![false; n * n];
    let mut neg = vec![false; n * n];
    let mut other = vec![false; n * n];
    for i in 0..n {
        for j in 0..n {
            if i != j {
                other[i * n + j] = true;
                if classes[i] == classes[j] {
                    pos[i * n + j] = true;
                } else {
                    neg[i * n + j] = true;
                }
            }
        }
    }
    let make = |v: Vec<bool>| Tensor::<2, Bool>::from_data(TensorData::new(v, [n, n]), device);
    (make(pos), make(neg), make(other))
}

fn check_square(similarity: &Tensor<2>, classes: &[u32]) -> Result<usize, LossError> {
    let [n, cols] = similarity.dims();
    check_dims("similarity", [n, cols], [n, n])?;
    if classes.len() != n {
        return Err(LossError::LabelCount {
            actual: classes.len(),
            expected: n,
        });
    }
    if n == 0 {
        return Err(LossError::EmptyBatch);
    }
    Ok(n)
}

/// `[N, 1]` column, 1 where `keep(positives, negatives)` holds for the anchor, else 0.
fn anchor_flags(
    classes: &[u32],
    similarity: &Tensor<2>,
    keep: impl Fn(usize, usize) -> bool,
) -> Tensor<2> {
    let n = classes.len();
    let flags: Vec<f64> = (0..n)
        .map(|i| {
            let same = classes.iter().filter(|&&c| c == classes[i]).count() - 1;
            f64::from(u8::from(keep(same, n - 1 - same)))
        })
        .collect();
    Tensor::from_data(
        TensorData::new(flags, [n, 1]),
        (&similarity.device(), similarity.dtype()),
    )
}

/// Circle loss per anchor with relaxation `margin` and scale `gamma` (Sun et al. 2020):
/// `log[1 + Σ_n exp(γ α_n (s_n - m)) · Σ_p exp(-γ α_p (s_p - 1 + m))]`, with
/// `α_p = max(1 + m - s_p, 0)` and `α_n = max(s_n + m, 0)` detached. Shape `[N]`; an anchor
/// without positives or without negatives contributes 0.
pub fn pairwise_circle_loss(
    similarity: Tensor<2>,
    classes: &[u32],
    margin: f64,
    gamma: f64,
) -> Result<Tensor<1>, LossError> {
    check_positive("gamma", gamma)?;
    let n = check_square(&similarity, classes)?;
    let (pos, neg, _) = anchor_masks(classes, &similarity.device());
    let active = anchor_flags(classes, &similarity, |p, q| p > 0 && q > 0);
    let (lse_p, lse_n) = circle_log_sums(
        similarity,
        pos,
        neg,
        CircleSide::new(1.0 + margin, 1.0 - margin),
        CircleSide::new(-margin, margin),
        gamma,
    );
    Ok(softplus(lse_p.add(lse_n)).mul(active).reshape([n]))
}

/// Supervised contrastive loss per anchor at temperature `tau` (Khosla et al. 2020, L_out):
/// `-1/|P(i)| Σ_{p∈P(i)} log( exp(s_ip/τ) / Σ_{a≠i} exp(s_ia/τ) )`. Shape `[N]`; an anchor
/// without positives contributes 0.
pub fn pairwise_supcon(
    similarity: Tensor<2>,
    classes: &[u32],
    tau: f64,
) -> Result<Tensor<1>, LossError> {
    check_positive("tau", tau)?;
    let n = check_square(&similarity, classes)?;
    let (pos, _, other) = anchor_masks(classes, &similarity.device());
    let positives = anchor_flags(classes, &similarity, |p, _| p > 0);
    let dtype = similarity.dtype();
    let log_prob = masked_log_softmax(similarity.div_scalar(tau), other);
    let pos_weights = pos.float().cast(dtype);
    let counts = pos_weights.clone().sum_dim(1).clamp_min(1.0);
    Ok(log_prob
        .mul(pos_weights)
        .sum_dim(1)
        .div(counts)
        .neg()
        .mul(positives)
        .reshape([n]))
}
