//! Training losses of the Mine and Refine paper and their baselines.
//!
//! All graded losses take a padded `[n_instances, width]` matrix of query–item cosine
//! similarities (see [`instance_scores`]) together with [`GradedTargets`], so a whole batch of
//! instances (paper eq. 1) is one vectorised computation:
//!
//! - [`supcon`]: graded supervised contrastive loss (eq. 2) with a [`LearnableTemperature`];
//! - [`circle`]: multi-class circle loss (eqs. 3-5);
//! - [`triplet`]: graded triplet baseline;
//! - [`infonce`]: InfoNCE baseline with in-batch negatives;
//! - [`binary`]: the binary circle and SupCon losses on a full similarity matrix;
//! - [`config`]: the serde [`LossConfig`] and the [`GradedLoss`] module that evaluates it.

pub mod binary;
pub mod circle;
pub mod config;
pub mod error;
pub mod infonce;
pub mod masked;
pub mod reduction;
pub mod scores;
pub mod supcon;
pub mod targets;
pub mod temperature;
pub mod triplet;

#[cfg(test)]
mod tests;

pub use binary::{pairwise_circle_loss, pairwise_supcon};
pub use circle::{
    CircleCases, CircleConfig, CircleSide, multiclass_circle, multiclass_circle_cases,
    multiclass_circle_per_instance,
};
pub use config::{GradedLoss, LossConfig, LossInputs};
pub use error::LossError;
pub use infonce::{InfoNceConfig, info_nce, info_nce_per_query};
pub use reduction::Reduction;
pub use scores::instance_scores;
pub use supcon::{SupConConfig, graded_supcon, graded_supcon_per_instance};
pub use targets::{GradedTargets, NUM_LABELS};
pub use temperature::{LearnableTemperature, TemperatureConfig};
pub use triplet::{TripletConfig, graded_triplet, graded_triplet_per_instance};
