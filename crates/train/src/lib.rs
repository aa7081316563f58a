//! strata training: the losses of the Mine and Refine paper and the trainer.
//!
//! - [`losses`]: graded SupCon, multi-class circle, triplet and InfoNCE losses;
//! - [`config`]: the run configuration ([`TrainConfig`], TOML);
//! - [`instances`]: training instances (graded item sets per query), batch negatives and
//!   spelling variants applied to them;
//! - [`data`]: the training data of a run and its per-epoch instances;
//! - [`batch`]: length-sorted, deduplicated forward chunks of a batch of instances;
//! - [`step`]: the forward pass of a batch and the trained module;
//! - [`optim`]: AdamW, gradient accumulation and clipping, the learning-rate schedule;
//! - [`checkpoint`]: atomic checkpoints for resumable runs;
//! - [`dev`]: NDCG@10 on the development split;
//! - [`run_loop`]: the training loop every trainer runs (run directory, schedule, resume,
//!   checkpoints, metrics, best model), around a [`run_loop::TrainTask`];
//! - [`trainer`]: the retriever's task, [`train`] / [`train_with`];
//! - [`soup`]: several seeds of one configuration averaged into one model (`seeds = N`);
//! - [`bench`]: timing of one training step on a fixed batch.

pub mod batch;
pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod dev;
pub mod instances;
pub mod losses;
pub mod optim;
pub mod run_loop;
pub mod soup;
pub mod step;
pub mod trainer;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;

pub use config::TrainConfig;
pub use soup::can_resume;
pub use trainer::{TrainOptions, TrainSummary, train, train_with};
