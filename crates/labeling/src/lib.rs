//! strata's labeling stage (paper section 3.1): relevance labelers that grade (query, item)
//! pairs 0 (irrelevant), 1 (substitute or complement) or 2 (relevant).
//!
//! - [`cross_encoder`]: a BERT-family cross-encoder fine-tuned on human three-level labels,
//!   its training, evaluation and the [`strata_data::Labeler`] it provides.

pub mod cross_encoder;
