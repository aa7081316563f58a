//! The forward pass of a training batch: both towers over the batch's chunks, the graded loss
//! over the instances, and the module the optimizer updates (the two-tower model together with
//! the loss's learnable temperature).

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Device, Int, Tensor, TensorData};
use strata_model::{Side, TwoTower};

use crate::batch::{BatchPlan, SideLayout};
use crate::losses::{GradedLoss, GradedTargets, LossInputs};

/// Everything that trains: the retriever and the loss (its temperature, for SupCon).
#[derive(Module, Debug)]
pub struct TrainModule {
    /// The two-tower retriever.
    pub tower: TwoTower,
    /// The configured loss.
    pub loss: GradedLoss,
}

/// Top-level module path of the query and item projection heads.
pub const HEAD_PATHS: [&str; 2] = ["tower.query_head", "tower.item_head"];
/// Top-level module path of the loss parameters (the temperature).
pub const LOSS_PATH: &str = "loss";

/// Gives every float parameter of `module` its own autodiff leaf (a copy of its values with
/// the same id and gradient setting). Parameters created as copies of another
/// (`strata_model::tower::fresh_copy`, used for the projection heads and the asymmetric item
/// encoder) otherwise share the original's graph node, and their gradients merge until the
/// first update.
pub fn fresh_params<M: Module>(module: M) -> M {
    struct Fresh;
    impl ModuleMapper for Fresh {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let (id, tensor, mapper) = param.consume();
            let require_grad = tensor.is_require_grad();
            let mut t = Tensor::<D>::from_data(tensor.to_data(), &tensor.device());
            if require_grad {
                t = t.require_grad();
            }
            Param::from_mapped_value(id, t, mapper)
        }
    }
    module.map(&mut Fresh)
}

/// Embeddings of one side's chunks, concatenated in chunk order (`[texts, dim]`).
pub fn embed_side(model: &TwoTower, side: Side, layout: &SideLayout, device: &Device) -> Tensor<2> {
    let parts: Vec<Tensor<2>> = layout
        .chunks
        .iter()
        .map(|c| {
            let ids = Tensor::<2, Int>::from_data(
                TensorData::new(c.ids.clone(), [c.batch, c.len]),
                device,
            );
            let mask =
                Tensor::<2>::from_data(TensorData::new(c.mask.clone(), [c.batch, c.len]), device);
            model.embed(side, ids, mask)
        })
        .collect();
    if parts.len() == 1 {
        parts.into_iter().next().expect("one part")
    } else {
        Tensor::cat(parts, 0)
    }
}

fn rows(rows: &[usize], device: &Device) -> Tensor<1, Int> {
    let v: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
    Tensor::from_data(TensorData::new(v, [rows.len()]), device)
}

/// Query embeddings (one row per instance) and item embeddings (one row per item slot,
/// instance after instance) of a batch.
pub fn embed_batch(model: &TwoTower, plan: &BatchPlan, device: &Device) -> (Tensor<2>, Tensor<2>) {
    let q = embed_side(model, Side::Query, &plan.queries, device);
    let d = embed_side(model, Side::Item, &plan.items, device);
    let q = gather(q, &plan.query_rows, device);
    let d = gather(d, &plan.item_rows, device);
    (q, d)
}

/// Rows `r` of `x`, skipped when `r` is the identity.
fn gather(x: Tensor<2>, r: &[usize], device: &Device) -> Tensor<2> {
    let identity = r.len() == x.dims()[0] && r.iter().enumerate().all(|(i, &j)| i == j);
    if identity {
        x
    } else {
        x.select(0, rows(r, device))
    }
}

/// The loss of a batch (a `[1]` tensor) and its targets.
pub fn batch_loss(
    module: &TrainModule,
    plan: &BatchPlan,
    device: &Device,
) -> anyhow::Result<Tensor<1>> {
    let targets = GradedTargets::new(&plan.labels, device)?;
    let (queries, items) = embed_batch(&module.tower, plan, device);
    let loss = module.loss.forward(LossInputs {
        queries,
        items,
        targets: &targets,
    })?;
    Ok(loss)
}
