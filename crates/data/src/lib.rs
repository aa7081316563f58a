//! strata data layer: catalogs and relevance judgments, their file formats and validation,
//! item text, query splits, spelling and synthetic-query augmentation,
//! labelers, the synthetic marketplace and summary statistics.
//!
//! ```no_run
//! use strata_data::marketplace::{Marketplace, MarketplaceConfig};
//! use strata_data::split::Split;
//!
//! let m = Marketplace::generate(&MarketplaceConfig::default())?;
//! let train = m.judgments_in(Split::Train);
//! assert!(!train.is_empty());
//! # anyhow::Ok(())
//! ```

pub mod adapters;
pub mod embedding_cache;
pub mod encoder;
pub mod gain;
pub mod hash;
pub mod io;
pub mod labeler;
pub mod marketplace;
pub mod progress;
pub mod record;
pub mod spelling;
pub mod split;
pub mod stats;
pub mod synth;
pub mod text;
pub mod tokens;
pub mod validate;

pub use embedding_cache::{CacheStats, CachedEncoder, EmbeddingCache};
pub use encoder::{Side, TextEncoder};
pub use io::{
    Format, ReadOptions, RelevanceThresholds, load_catalog, load_catalog_with, load_dataset,
    load_judgments, load_judgments_with, write_catalog, write_catalog_as, write_judgments,
    write_judgments_as,
};
pub use labeler::{Labeler, LabelerSpec};
pub use record::{Catalog, Dataset, Engagement, Item, Judgment, MAX_LABEL, Source};
pub use text::{ItemTextConfig, TaxonomyDepth};
pub use validate::{InvalidRows, OnInvalid, ReadReport, RowError};
