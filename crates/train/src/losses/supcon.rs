//! Graded supervised contrastive loss (paper section 4.3, eq. 2).
//!
//! For an instance anchored at query `q` with items `d_1..d_N` and labels `r_j`:
//!
//! ```text
//! L_q = -1 / Σ_{i∈P(q)} r_i · Σ_{i∈P(q)} r_i · log( exp(s_i/τ) / Σ_{j=1..N} exp(s_j/τ) )
//! ```
//!
//! with `P(q)` the items with label > 0 and `s_j = <e_q, e_{d_j}>`. The denominator runs over
//! the instance's own items only: no in-batch negatives (section 4.4).

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::error::{LossError, check_dims};
use super::masked::masked_log_softmax;
use super::reduction::Reduction;
use super::targets::GradedTargets;
use super::temperature::TemperatureConfig;

/// Hyper-parameters of the graded SupCon loss.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SupConConfig {
    /// Temperature τ (learnable by default).
    pub temperature: TemperatureConfig,
    /// Reduction over instances; the paper uses `Sum`.
    pub reduction: Reduction,
}

impl SupConConfig {
    /// Checks the temperature bounds.
    pub fn validate(&self) -> Result<(), LossError> {
        self.temperature.validate()
    }
}

/// Per-instance graded SupCon losses (eq. 2), shape `[n]`.
///
/// `scores` is the padded `[n, width]` similarity matrix and `tau` a `[1]` temperature, e.g.
/// [`LearnableTemperature::tau`](super::LearnableTemperature::tau).
pub fn graded_supcon_per_instance(
    scores: Tensor<2>,
    targets: &GradedTargets,
    tau: Tensor<1>,
) -> Result<Tensor<1>, LossError> {
    targets.check_scores(&scores)?;
    check_dims("tau", tau.dims(), [1])?;
    let n = targets.n_instances();
    let weights = targets.label_values(scores.dtype());
    let logits = scores.div(tau.reshape([1, 1]));
    let log_prob = masked_log_softmax(logits, targets.mask());
    let weighted = log_prob.mul(weights.clone()).sum_dim(1);
    // Every instance holds a positive (validated by `GradedTargets`), so the sum is > 0.
    let total = weights.sum_dim(1);
    Ok(weighted.div(total).neg().reshape([n]))
}

/// Graded SupCon loss (eq. 2) reduced over the batch, shape `[1]`.
pub fn graded_supcon(
    scores: Tensor<2>,
    targets: &GradedTargets,
    tau: Tensor<1>,
    reduction: Reduction,
) -> Result<Tensor<1>, LossError> {
    Ok(reduction.apply(graded_supcon_per_instance(scores, targets, tau)?))
}
