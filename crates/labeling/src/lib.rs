//! strata's labeling stage (paper section 3): relevance labelers that grade (query, item)
//! pairs 0 (irrelevant), 1 (substitute or complement) or 2 (relevant), and the engagement
//! audit.
//!
//! - [`cross_encoder`]: a BERT-family cross-encoder fine-tuned on human three-level labels,
//!   its training, evaluation and the [`strata_data::Labeler`] it provides.
//! - [`llm`]: an LLM labeler over OpenAI-compatible chat-completions APIs.
//! - [`audit`]: the engagement audit that sends label/engagement disagreements to a second
//!   labeler.
//! - [`pairs`]: reading (query, item) pair files to label.
//! - [`spec`]: the labeler a [`strata_data::LabelerSpec`] names, built ([`build_labeler`]).

pub mod audit;
pub mod cross_encoder;
pub mod llm;
pub mod pairs;
pub mod spec;

pub use spec::{BuiltLabeler, LabelerInputs, LlmSetup, build_labeler};
