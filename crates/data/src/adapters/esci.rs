//! Amazon Shopping Queries (ESCI): an examples file (`query`, `product_id`, `esci_label`,
//! `product_locale`, `small_version`, `split`, ...) and a products file (`product_id`,
//! `product_title`, `product_description`, `product_bullet_point`, `product_brand`,
//! `product_color`, `product_locale`), normally Parquet (feature `parquet`).
//!
//! Labels: E (exact) -> 2, S (substitute) and C (complement) -> 1, I (irrelevant) -> 0. Product
//! ids repeat across locales, so a locale is selected (default `us`).

use std::path::Path;

use crate::io::{ReadOptions, load_catalog_with, load_judgments_with};
use crate::record::Dataset;
use crate::validate::ReadReport;

/// Which part of ESCI to read.
#[derive(Clone, Debug)]
pub struct EsciOptions {
    /// Keep rows of this `product_locale` (`us`, `es`, `jp`).
    pub locale: String,
    /// Keep only examples of the reduced task (`small_version` = 1).
    pub small_version_only: bool,
    /// Keep only examples of this `split` (`train` or `test`).
    pub split: Option<String>,
    /// Other read options (invalid-row policy, ...).
    pub read: ReadOptions,
}

impl Default for EsciOptions {
    fn default() -> Self {
        EsciOptions {
            locale: "us".into(),
            small_version_only: false,
            split: None,
            read: ReadOptions::default(),
        }
    }
}

/// Reads the products and examples files.
pub fn load(
    examples: impl AsRef<Path>,
    products: impl AsRef<Path>,
    opts: &EsciOptions,
) -> anyhow::Result<(Dataset, Vec<ReadReport>)> {
    let mut read = opts.read.clone();
    read.filters
        .push(("product_locale".into(), opts.locale.clone()));
    let (catalog, r1) = load_catalog_with(products, &read)?;
    if opts.small_version_only {
        read.filters.push(("small_version".into(), "1".into()));
    }
    if let Some(s) = &opts.split {
        read.filters.push(("split".into(), s.clone()));
    }
    let (judgments, r2) = load_judgments_with(examples, &read, Some(&catalog))?;
    Ok((Dataset { catalog, judgments }, vec![r1, r2]))
}
