//! Numerically stable reductions over masked (padded) score matrices.

use burn::tensor::activation::relu;
use burn::tensor::{Bool, Tensor};

/// Value written into masked entries before a max / log-sum-exp. Large enough that
/// `exp(FILL - max)` underflows to zero for any realistic logit, small enough to stay finite
/// in every float format wider than f16.
pub const MASK_FILL: f64 = -1.0e9;

/// Row-wise `log Σ_{j: mask} exp(x_j)` of a `[n, m]` matrix, returned as `[n, 1]`.
///
/// The row maximum is subtracted first (and detached, which leaves the value and gradient
/// unchanged). Masked entries receive no gradient. A row with no unmasked entry yields about
/// [`MASK_FILL`], a finite stand-in for `-inf`.
pub fn masked_logsumexp(x: Tensor<2>, mask: Tensor<2, Bool>) -> Tensor<2> {
    let filled = x.mask_fill(mask.bool_not(), MASK_FILL);
    let max = filled.clone().max_dim(1).detach();
    filled.sub(max.clone()).exp().sum_dim(1).log().add(max)
}

/// Row-wise log-softmax over the unmasked entries of a `[n, m]` matrix; masked entries are 0.
pub fn masked_log_softmax(x: Tensor<2>, mask: Tensor<2, Bool>) -> Tensor<2> {
    let lse = masked_logsumexp(x.clone(), mask.clone());
    x.sub(lse).mask_fill(mask.bool_not(), 0.0)
}

/// `log(1 + exp(x))` computed as `max(x, 0) + log1p(exp(-|x|))`, stable for any `x`.
pub fn softplus<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    relu(x.clone()).add(x.abs().neg().exp().log1p())
}
