//! strata labeling stage (paper section 3): an LLM labeler over OpenAI-compatible APIs and the
//! engagement audit that sends label/engagement disagreements to a second labeler.

pub mod audit;
pub mod llm;
pub mod pairs;
