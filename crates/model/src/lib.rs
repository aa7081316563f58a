//! strata-model: the BERT-family encoder (burn), the two-tower retrieval model, tokenization,
//! model directories (strata format, Hugging Face folders, sentence-transformers export), weight
//! averaging and batched inference.

#[macro_use]
mod simd;

pub mod average;
pub mod bert;
pub mod config;
pub mod device;
pub mod embedder;
pub mod engine;
pub mod kernels;
pub mod store;
pub mod tokenize;
pub mod tower;

pub use average::{AverageReport, average_models};
pub use config::{EncoderConfig, EncoderFamily};
pub use device::{parse_device, with_seed};
pub use embedder::{BatchLimits, Embedder};
pub use engine::{FastTower, Precision};
pub use store::{
    CachePolicy, LoadOptions, LoadedModel, default_cache_root, export_sentence_transformers,
    item_cache_dir, item_text_for, load_model, model_fingerprint, recorded_item_text, save_model,
};
pub use tokenize::{TextTokenizer, TokenBatch};
pub use tower::{HeadInit, Side, TowerConfig, TwoTower};
