//! InfoNCE / multiple-negatives ranking loss with in-batch negatives, the usual binary
//! baseline (as in sentence-transformers' `MultipleNegativesRankingLoss`).
//!
//! Query `i` is scored against every positive of the batch and every extra hard negative;
//! its own positive is the target of a cross-entropy over `scale · <q_i, c_j>`.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::error::{LossError, check_dims, check_positive};
use super::reduction::Reduction;

/// Hyper-parameters of the InfoNCE baseline.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InfoNceConfig {
    /// Multiplier of the cosine similarities (inverse temperature); 20 as in
    /// sentence-transformers.
    pub scale: f64,
    /// Whether the label-0 items of the batch join the candidates as hard negatives.
    pub hard_negatives: bool,
    /// Reduction over queries.
    pub reduction: Reduction,
}

impl Default for InfoNceConfig {
    fn default() -> Self {
        Self {
            scale: 20.0,
            hard_negatives: true,
            reduction: Reduction::Mean,
        }
    }
}

impl InfoNceConfig {
    /// Checks that the scale is positive.
    pub fn validate(&self) -> Result<(), LossError> {
        check_positive("scale", self.scale)
    }
}

/// Per-query InfoNCE losses, shape `[B]`.
///
/// - `queries`: `[B, D]` L2-normalised query embeddings;
/// - `positives`: `[B, D]`, row `i` the positive item of query `i` (and an in-batch negative of
///   every other query);
/// - `hard_negatives`: optional `[K, D]` items appended as negatives of every query.
pub fn info_nce_per_query(
    queries: Tensor<2>,
    positives: Tensor<2>,
    hard_negatives: Option<Tensor<2>>,
    scale: f64,
) -> Result<Tensor<1>, LossError> {
    check_positive("scale", scale)?;
    let [b, dim] = queries.dims();
    if b == 0 {
        return Err(LossError::EmptyBatch);
    }
    check_dims("positives", positives.dims(), [b, dim])?;
    let candidates = match hard_negatives {
        Some(negatives) => {
            let [k, neg_dim] = negatives.dims();
            check_dims("hard_negatives", [k, neg_dim], [k, dim])?;
            Tensor::cat(vec![positives, negatives], 0)
        }
        None => positives,
    };
    let device = queries.device();
    let logits = queries.matmul(candidates.transpose()).mul_scalar(scale);
    let log_prob = log_softmax(logits, 1);
    let targets = Tensor::<2, Int>::from_data(
        TensorData::new((0..b as i64).collect::<Vec<_>>(), [b, 1]),
        &device,
    );
    Ok(log_prob.gather(1, targets).neg().reshape([b]))
}

/// InfoNCE reduced over queries, shape `[1]`.
pub fn info_nce(
    queries: Tensor<2>,
    positives: Tensor<2>,
    hard_negatives: Option<Tensor<2>>,
    config: &InfoNceConfig,
) -> Result<Tensor<1>, LossError> {
    Ok(config.reduction.apply(info_nce_per_query(
        queries,
        positives,
        hard_negatives,
        config.scale,
    )?))
}
