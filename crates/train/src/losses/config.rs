//! The configured training loss: a serde enum for run configs and the module that evaluates it
//! on a batch.
//!
//! In TOML:
//!
//! ```toml
//! [loss]
//! kind = "circle"
//! gamma = 32.0
//! ```

use burn::module::Module;
use burn::tensor::{Int, Tensor, TensorCreationOptions, TensorData};
use serde::{Deserialize, Serialize};

use super::circle::{CircleConfig, multiclass_circle};
use super::error::LossError;
use super::infonce::{InfoNceConfig, info_nce};
use super::supcon::{SupConConfig, graded_supcon};
use super::targets::GradedTargets;
use super::temperature::LearnableTemperature;
use super::triplet::{TripletConfig, graded_triplet};

/// Which loss to train with, and its hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum LossConfig {
    /// Graded supervised contrastive loss (paper eq. 2), stage 1.
    Supcon(SupConConfig),
    /// Multi-class circle loss (paper eqs. 3-5), stage 2.
    Circle(CircleConfig),
    /// Graded triplet baseline.
    Triplet(TripletConfig),
    /// InfoNCE baseline with in-batch negatives.
    Infonce(InfoNceConfig),
}

impl Default for LossConfig {
    fn default() -> Self {
        LossConfig::Supcon(SupConConfig::default())
    }
}

impl LossConfig {
    /// Name of the loss as written in configs.
    pub fn name(&self) -> &'static str {
        match self {
            LossConfig::Supcon(_) => "supcon",
            LossConfig::Circle(_) => "circle",
            LossConfig::Triplet(_) => "triplet",
            LossConfig::Infonce(_) => "infonce",
        }
    }

    /// Checks every hyper-parameter.
    pub fn validate(&self) -> Result<(), LossError> {
        match self {
            LossConfig::Supcon(c) => c.validate(),
            LossConfig::Circle(c) => c.validate(),
            LossConfig::Triplet(c) => c.validate(),
            LossConfig::Infonce(c) => c.validate(),
        }
    }

    /// Builds the loss module; its temperature (SupCon only) is a trainable parameter created
    /// with `options` (a device, optionally with a float dtype).
    pub fn init(&self, options: impl Into<TensorCreationOptions>) -> Result<GradedLoss, LossError> {
        self.validate()?;
        let temperature = match self {
            LossConfig::Supcon(c) => Some(c.temperature.init(options)?),
            _ => None,
        };
        Ok(GradedLoss {
            temperature,
            config: *self,
        })
    }
}

/// Embeddings of a batch of instances.
///
/// `items` holds every item of the batch, instance after instance in the order of
/// `targets.labels()`; row `i` of `queries` is instance `i`'s query. Both are L2-normalised.
#[derive(Debug, Clone)]
pub struct LossInputs<'a> {
    /// `[n, D]` query embeddings.
    pub queries: Tensor<2>,
    /// `[targets.n_items(), D]` item embeddings.
    pub items: Tensor<2>,
    /// Labels and padding of the batch.
    pub targets: &'a GradedTargets,
}

/// A configured loss, ready to evaluate; a module so that the trainer optimises the SupCon
/// temperature together with the encoder.
#[derive(Module, Debug)]
pub struct GradedLoss {
    /// Learnable temperature, present for SupCon.
    pub temperature: Option<LearnableTemperature>,
    #[module(skip)]
    config: LossConfig,
}

impl GradedLoss {
    /// The configuration this loss was built from.
    pub fn config(&self) -> &LossConfig {
        &self.config
    }

    /// Evaluates the configured loss on a batch, returning a `[1]` tensor.
    ///
    /// The graded losses score each instance's own items; InfoNCE takes each instance's
    /// highest-labelled item as its positive, the other instances' positives as in-batch
    /// negatives and, with `hard_negatives`, every label-0 item of the batch.
    pub fn forward(&self, inputs: LossInputs<'_>) -> Result<Tensor<1>, LossError> {
        let LossInputs {
            queries,
            items,
            targets,
        } = inputs;
        let [n, dim] = queries.dims();
        super::error::check_dims("queries", [n, dim], [targets.n_instances(), dim])?;
        super::error::check_dims("items", items.dims(), [targets.n_items(), dim])?;
        let scores = |queries: Tensor<2>, items: Tensor<2>| {
            super::scores::targets_scores(queries, items, targets)
        };
        match &self.config {
            LossConfig::Supcon(c) => {
                let tau = self
                    .temperature
                    .as_ref()
                    .ok_or(LossError::InvalidConfig {
                        field: "temperature",
                        value: f64::NAN,
                        reason: "the SupCon loss was built without a temperature",
                    })?
                    .tau();
                graded_supcon(scores(queries, items)?, targets, tau, c.reduction)
            }
            LossConfig::Circle(c) => multiclass_circle(scores(queries, items)?, targets, c),
            LossConfig::Triplet(c) => graded_triplet(scores(queries, items)?, targets, c),
            LossConfig::Infonce(c) => {
                let device = items.device();
                let rows = |r: Vec<usize>| {
                    let len = r.len();
                    let r: Vec<i64> = r.into_iter().map(|x| x as i64).collect();
                    Tensor::<1, Int>::from_data(TensorData::new(r, [len]), &device)
                };
                let positives = items.clone().select(0, rows(targets.best_item_rows()));
                let negative_rows = targets.irrelevant_item_rows();
                let negatives = (c.hard_negatives && !negative_rows.is_empty())
                    .then(|| items.select(0, rows(negative_rows)));
                info_nce(queries, positives, negatives, c)
            }
        }
    }
}
