//! Reduction of per-instance losses to one batch loss.

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

/// How per-instance (or per-pair) losses combine.
///
/// The paper (section 4.3) reports that `Sum` trains SupCon more stably than `Mean`, as it
/// reflects the varying instance sizes across batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reduction {
    /// Sum over instances.
    #[default]
    Sum,
    /// Mean over instances.
    Mean,
}

impl Reduction {
    /// Reduces a `[n]` vector of losses to a `[1]` tensor.
    pub fn apply(self, losses: Tensor<1>) -> Tensor<1> {
        match self {
            Reduction::Sum => losses.sum(),
            Reduction::Mean => losses.mean(),
        }
    }
}
