//! Padded query–item similarity matrices, the input of the graded losses.

use burn::tensor::{Bool, Int, Tensor};

use super::error::{LossError, check_dims};

/// Computes `s[i, j] = <query_emb[i], item_emb[item_index[i, j]]>` for a padded batch.
///
/// - `query_emb`: `[n, D]`, one L2-normalised query embedding per instance;
/// - `item_emb`: `[m, D]`, L2-normalised item embeddings;
/// - `item_index`: `[n, width]`, row of `item_emb` for each column (padding must still hold an
///   in-range row, e.g. as built by [`GradedTargets`](super::GradedTargets));
/// - `mask`: `[n, width]`, true for real items.
///
/// The result is `[n, width]`, differentiable with respect to both embedding matrices, and 0
/// in padded columns (which receive no gradient). With normalised inputs the entries are the
/// cosine similarities of the paper's losses.
pub fn instance_scores(
    query_emb: Tensor<2>,
    item_emb: Tensor<2>,
    item_index: Tensor<2, Int>,
    mask: Tensor<2, Bool>,
) -> Result<Tensor<2>, LossError> {
    let [n, dim] = query_emb.dims();
    let [m, item_dim] = item_emb.dims();
    let [n_index, width] = item_index.dims();
    check_dims("item_emb", [m, item_dim], [m, dim])?;
    check_dims("item_index", [n_index, width], [n, width])?;
    check_dims("mask", mask.dims(), [n, width])?;
    if m == 0 {
        return Err(LossError::Shape {
            name: "item_emb",
            actual: vec![m, item_dim],
            expected: "at least one row".to_string(),
        });
    }
    // Reading the range back waits for the device; the losses' own batches skip it
    // (`targets_scores`), their indices are in range by construction.
    let (lowest, highest) = (
        item_index.clone().min().into_scalar::<i64>(),
        item_index.clone().max().into_scalar::<i64>(),
    );
    if lowest < 0 || highest >= m as i64 {
        return Err(LossError::Shape {
            name: "item_index",
            actual: vec![n, width],
            expected: format!("entries in 0..{m}, found {lowest}..={highest}"),
        });
    }
    Ok(gather_scores(query_emb, item_emb, item_index, mask))
}

/// [`instance_scores`] of a batch's [`GradedTargets`](super::GradedTargets), whose item
/// indices are in range by construction once `item_emb` has one row per item: no value is
/// read back from the device.
pub(crate) fn targets_scores(
    query_emb: Tensor<2>,
    item_emb: Tensor<2>,
    targets: &super::GradedTargets,
) -> Result<Tensor<2>, LossError> {
    let [n, dim] = query_emb.dims();
    check_dims("query_emb", [n, dim], [targets.n_instances(), dim])?;
    check_dims("item_emb", item_emb.dims(), [targets.n_items(), dim])?;
    Ok(gather_scores(
        query_emb,
        item_emb,
        targets.item_index(),
        targets.mask(),
    ))
}

fn gather_scores(
    query_emb: Tensor<2>,
    item_emb: Tensor<2>,
    item_index: Tensor<2, Int>,
    mask: Tensor<2, Bool>,
) -> Tensor<2> {
    let [n, dim] = query_emb.dims();
    let [_, width] = item_index.dims();
    let gathered = item_emb
        .select(0, item_index.reshape([n * width]))
        .reshape([n, width, dim]);
    let queries = query_emb.reshape([n, 1, dim]);
    let scores = gathered.mul(queries).sum_dim(2).reshape([n, width]);
    scores.mask_fill(mask.bool_not(), 0.0)
}
