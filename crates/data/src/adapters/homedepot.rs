//! Home Depot product search relevance: `products.tsv` (`product_uid`, `product_title`) and
//! `judgments.tsv` (`query`, `product_uid`, `relevance`, `label`).
//!
//! The generic readers recognise these files by their header, so
//! [`load_catalog`](crate::load_catalog) and [`load_judgments`](crate::load_judgments) work on
//! them directly; this adapter reads both and checks that every judged product exists.

use std::path::Path;

use crate::io::{ReadOptions, RelevanceThresholds, load_dataset};
use crate::record::Dataset;
use crate::validate::ReadReport;

/// How labels are obtained.
#[derive(Clone, Debug, Default)]
pub struct HomeDepotOptions {
    /// `None`: use the `label` column when present, else map `relevance` with the default
    /// thresholds (>= 2.67 -> 2, 2.0-2.5 -> 1, < 2 -> 0). `Some(t)`: map `relevance` with `t`.
    pub thresholds: Option<RelevanceThresholds>,
    /// Other read options (invalid-row policy, ...).
    pub read: ReadOptions,
}

/// Reads `dir/products.tsv` and `dir/judgments.tsv`.
pub fn load(
    dir: impl AsRef<Path>,
    opts: &HomeDepotOptions,
) -> anyhow::Result<(Dataset, Vec<ReadReport>)> {
    let dir = dir.as_ref();
    let mut read = opts.read.clone();
    if let Some(t) = opts.thresholds {
        read.relevance = t;
        read.prefer_relevance = true;
    }
    load_dataset(dir.join("products.tsv"), dir.join("judgments.tsv"), &read)
}
