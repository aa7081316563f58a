//! Graded triplet loss, a baseline in the style of embedding-based retrieval at Facebook
//! (Huang et al. 2020), adapted to three relevance levels.
//!
//! For every ordered label pair `(a, b)` in `{(2, 1), (2, 0), (1, 0)}` and every item `i` with
//! label `a` and item `j` with label `b` of the same instance, the hinge
//! `max(0, m_ab - (s_i - s_j))` asks the better item to score at least `m_ab` higher.

use burn::tensor::activation::relu;
use burn::tensor::{Bool, Tensor};
use serde::{Deserialize, Serialize};

use super::error::{LossError, check_finite};
use super::reduction::Reduction;
use super::targets::GradedTargets;

/// Hyper-parameters of the graded triplet loss.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TripletConfig {
    /// Margin between a label-2 and a label-1 item.
    pub margin_21: f64,
    /// Margin between a label-2 and a label-0 item.
    pub margin_20: f64,
    /// Margin between a label-1 and a label-0 item.
    pub margin_10: f64,
    /// How the pairs of one instance combine (`Mean` averages over its pairs).
    pub pair_reduction: Reduction,
    /// Reduction over instances.
    pub reduction: Reduction,
}

impl Default for TripletConfig {
    fn default() -> Self {
        Self {
            margin_21: 0.1,
            margin_20: 0.2,
            margin_10: 0.1,
            pair_reduction: Reduction::Mean,
            reduction: Reduction::Mean,
        }
    }
}

impl TripletConfig {
    /// Checks that the margins are finite.
    pub fn validate(&self) -> Result<(), LossError> {
        check_finite("margin_21", self.margin_21)?;
        check_finite("margin_20", self.margin_20)?;
        check_finite("margin_10", self.margin_10)
    }

    fn pairs(&self) -> [(usize, usize, f64); 3] {
        [
            (2, 1, self.margin_21),
            (2, 0, self.margin_20),
            (1, 0, self.margin_10),
        ]
    }
}

/// `[n, m, m]` mask of pairs `(i, j)` with `i` in `rows` and `j` in `cols`.
fn pair_mask(rows: Tensor<2, Bool>, cols: Tensor<2, Bool>) -> Tensor<3, Bool> {
    let [n, m] = rows.dims();
    let rows: Tensor<3, Bool> = rows.reshape([n, m, 1]).expand([n, m, m]);
    let cols: Tensor<3, Bool> = cols.reshape([n, 1, m]).expand([n, m, m]);
    rows.bool_and(cols)
}

/// Per-instance graded triplet losses, shape `[n]`.
pub fn graded_triplet_per_instance(
    scores: Tensor<2>,
    targets: &GradedTargets,
    config: &TripletConfig,
) -> Result<Tensor<1>, LossError> {
    config.validate()?;
    targets.check_scores(&scores)?;
    let [n, m] = scores.dims();
    // diff[i, a, b] = s[i, a] - s[i, b]
    let diff = scores
        .clone()
        .reshape([n, m, 1])
        .sub(scores.reshape([n, 1, m]));
    let mut total = Tensor::<3>::zeros([n, 1, 1], (&diff.device(), diff.dtype()));
    for (a, b, margin) in config.pairs() {
        let mask = pair_mask(targets.label_mask(a), targets.label_mask(b));
        let hinge = relu(diff.clone().neg().add_scalar(margin)).mask_fill(mask.bool_not(), 0.0);
        let summed = hinge.sum_dim(2).sum_dim(1);
        total = total.add(summed);
    }
    let per_instance = total.reshape([n]);
    Ok(match config.pair_reduction {
        Reduction::Sum => per_instance,
        Reduction::Mean => {
            // Two distinct labels per instance (validated) give at least one pair.
            let pairs = targets.per_instance(per_instance.dtype(), |c| {
                (c[2] * c[1] + c[2] * c[0] + c[1] * c[0]) as f64
            });
            per_instance.div(pairs.reshape([n]))
        }
    })
}

/// Graded triplet loss reduced over the batch with `config.reduction`, shape `[1]`.
pub fn graded_triplet(
    scores: Tensor<2>,
    targets: &GradedTargets,
    config: &TripletConfig,
) -> Result<Tensor<1>, LossError> {
    Ok(config
        .reduction
        .apply(graded_triplet_per_instance(scores, targets, config)?))
}
