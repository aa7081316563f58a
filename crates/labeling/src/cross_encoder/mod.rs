//! The cross-encoder relevance labeler (paper section 3.1: a labeler fine-tuned on human
//! three-level labels), built on strata-model's BERT-family encoder.
//!
//! - [`model`]: [`CrossEncoder`] over `[CLS] query [SEP] item [SEP]` with token types, mean or
//!   `[CLS]` pooling, dropout and a three-level linear head;
//! - [`store`]: labeler directories (Hugging Face names, `labeler.json`, `tokenizer.json`) and
//!   batched inference;
//! - [`data`]: labeled pairs from any catalog and judgments strata-data reads, split by query;
//! - [`train`]: fine-tuning ([`train_labeler`], `strata labeler train`);
//! - [`metrics`]: accuracy, within-1 accuracy, per-class P/R/F1, the majority and
//!   score-threshold references;
//! - [`eval`]: held-out evaluation ([`evaluate_labeler`], `strata labeler eval`);
//! - [`labeler`]: [`CrossEncoderLabeler`], a [`strata_data::Labeler`].

pub mod data;
pub mod eval;
pub mod labeler;
pub mod metrics;
pub mod model;
pub mod store;
pub mod train;

#[cfg(test)]
mod tests;

pub use eval::{LabelerEvalConfig, LabelerEvalReport, evaluate_labeler};
pub use labeler::CrossEncoderLabeler;
pub use model::{CrossEncoder, CrossEncoderConfig, Pooling};
pub use store::{load_cross_encoder, save_cross_encoder};
pub use train::{LabelerTrainConfig, LabelerTrainOptions, LabelerTrainSummary, train_labeler};
