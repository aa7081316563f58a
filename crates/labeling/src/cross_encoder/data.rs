//! Labeled pairs for the cross-encoder: catalog and judgments read with strata-data, item text
//! (name and taxonomy), the hash split by query, seeded subsampling and length-sorted batches.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use strata_data::hash::{Rng, combine, hash_str};
use strata_data::split::{Split, SplitConfig};
use strata_data::{
    Catalog, ItemTextConfig, Judgment, ReadOptions, load_catalog_with, load_judgments_with,
};

/// Where the labeled pairs come from and how they are split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PairSource {
    /// Catalog file (any format strata-data reads).
    pub catalog: PathBuf,
    /// Human judgments (levels 0, 1, 2; any format strata-data reads).
    pub judgments: PathBuf,
    /// Train/dev/test fractions and seed of the hash split by query.
    pub split: SplitConfig,
    /// The item text the labeler reads (a labeler directory records it; a training run
    /// starting from a labeler directory keeps that one).
    pub item_text: ItemTextConfig,
    /// Older configurations' form of the item text (taxonomy levels); read into `item_text`
    /// by [`PairSource::item_text`], never written.
    #[serde(skip_serializing)]
    pub taxonomy_depth: Option<usize>,
}

impl Default for PairSource {
    fn default() -> Self {
        PairSource {
            catalog: PathBuf::new(),
            judgments: PathBuf::new(),
            split: SplitConfig::default(),
            item_text: ItemTextConfig::default(),
            taxonomy_depth: None,
        }
    }
}

impl PairSource {
    /// The item text, settled with the older `taxonomy_depth` field.
    pub fn item_text(&self) -> anyhow::Result<ItemTextConfig> {
        self.item_text
            .clone()
            .with_legacy_depth(self.taxonomy_depth, "data")
    }
}

/// A catalog with its item texts and split judgments.
pub struct LabeledPairs {
    pub catalog: Catalog,
    /// Item text per catalog position.
    pub item_texts: Vec<String>,
    pub train: Vec<Judgment>,
    pub dev: Vec<Judgment>,
    pub test: Vec<Judgment>,
}

impl LabeledPairs {
    /// Reads and splits the data (invalid rows are errors naming file, line and field).
    pub fn load(src: &PairSource, text: &ItemTextConfig) -> anyhow::Result<Self> {
        src.split.validate()?;
        let opts = ReadOptions::default();
        let check = |p: &Path, what: &str| -> anyhow::Result<()> {
            anyhow::ensure!(
                !p.as_os_str().is_empty(),
                "no {what} file given (config field `{what}`)"
            );
            Ok(())
        };
        check(&src.catalog, "catalog")?;
        check(&src.judgments, "judgments")?;
        let (catalog, _) = load_catalog_with(&src.catalog, &opts)
            .with_context(|| format!("reading catalog {}", src.catalog.display()))?;
        let (judgments, _) = load_judgments_with(&src.judgments, &opts, Some(&catalog))
            .with_context(|| format!("reading judgments {}", src.judgments.display()))?;
        anyhow::ensure!(
            !judgments.is_empty(),
            "{} holds no judgments",
            src.judgments.display()
        );
        let item_texts = text.render_all(catalog.iter());
        let s = src.split.split_judgments(&judgments);
        Ok(LabeledPairs {
            catalog,
            item_texts,
            train: s.train,
            dev: s.dev,
            test: s.test,
        })
    }

    /// The judgments of a split.
    pub fn split(&self, s: Split) -> &[Judgment] {
        match s {
            Split::Train => &self.train,
            Split::Dev => &self.dev,
            Split::Test => &self.test,
        }
    }

    /// The item text of a judgment (its item is in the catalog: checked on load).
    pub fn item_text(&self, j: &Judgment) -> &str {
        let i = self
            .catalog
            .index_of(&j.item_id)
            .expect("judged items are in the catalog");
        &self.item_texts[i]
    }

    /// (query, item text) pairs of judgments.
    pub fn texts<'a>(&'a self, js: &'a [Judgment]) -> Vec<(&'a str, &'a str)> {
        js.iter()
            .map(|j| (j.query.as_str(), self.item_text(j)))
            .collect()
    }
}

/// At most `max` judgments (0: all), a seeded sample that keeps the input order.
pub fn subsample(js: &[Judgment], max: usize, seed: u64) -> Vec<Judgment> {
    if max == 0 || js.len() <= max {
        return js.to_vec();
    }
    let mut keyed: Vec<(u64, usize)> = js
        .iter()
        .enumerate()
        .map(|(k, j)| {
            let h = combine(&[
                hash_str(seed, &j.query),
                hash_str(seed, &j.item_id),
                k as u64,
            ]);
            (h, k)
        })
        .collect();
    keyed.sort_unstable();
    let mut keep: Vec<usize> = keyed[..max].iter().map(|&(_, k)| k).collect();
    keep.sort_unstable();
    keep.into_iter().map(|k| js[k].clone()).collect()
}

/// The batches of one epoch: a seeded shuffle, then windows of `batch_size * window` pairs
/// sorted by length and cut into batches (little padding), then the batches shuffled. Every
/// pair appears exactly once; there are `ceil(n / batch_size)` batches.
pub fn epoch_batches(
    lengths: &[usize],
    batch_size: usize,
    window: usize,
    seed: u64,
    epoch: u64,
) -> Vec<Vec<usize>> {
    let bs = batch_size.max(1);
    let mut rng = Rng::stream(seed, combine(&[epoch, 0x4c41_4245]));
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    rng.shuffle(&mut order);
    let mut batches = Vec::with_capacity(lengths.len().div_ceil(bs));
    for chunk in order.chunks_mut(bs * window.max(1)) {
        chunk.sort_by_key(|&i| lengths[i]);
        batches.extend(chunk.chunks(bs).map(<[usize]>::to_vec));
    }
    rng.shuffle(&mut batches);
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_batches_cover_each_pair_once_and_depend_on_seed_and_epoch() {
        let lengths: Vec<usize> = (0..103).map(|i| (i * 37) % 50 + 3).collect();
        let b = epoch_batches(&lengths, 8, 4, 1, 0);
        assert_eq!(b.len(), 103usize.div_ceil(8));
        let mut all: Vec<usize> = b.iter().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..103).collect::<Vec<_>>());
        assert!(b.iter().all(|x| x.len() <= 8));
        assert_eq!(b, epoch_batches(&lengths, 8, 4, 1, 0));
        assert_ne!(b, epoch_batches(&lengths, 8, 4, 1, 1));
        assert_ne!(b, epoch_batches(&lengths, 8, 4, 2, 0));
        // Length sorting inside windows: batches are much tighter than random ones.
        let spread = |bs: &[Vec<usize>]| -> usize {
            bs.iter()
                .map(|x| {
                    let l: Vec<usize> = x.iter().map(|&i| lengths[i]).collect();
                    l.iter().max().unwrap() - l.iter().min().unwrap()
                })
                .sum()
        };
        assert!(spread(&b) * 2 < spread(&epoch_batches(&lengths, 8, 1, 1, 0)));
    }

    #[test]
    fn subsample_is_seeded_and_keeps_order() {
        let js: Vec<Judgment> = (0..50)
            .map(|i| Judgment::new(format!("q{}", i % 7), format!("i{i}"), (i % 3) as u8))
            .collect();
        let a = subsample(&js, 20, 3);
        assert_eq!(a.len(), 20);
        assert_eq!(a, subsample(&js, 20, 3));
        assert_ne!(a, subsample(&js, 20, 4));
        let pos: Vec<usize> = a
            .iter()
            .map(|j| js.iter().position(|x| x == j).unwrap())
            .collect();
        assert!(pos.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(subsample(&js, 0, 3).len(), 50);
        assert_eq!(subsample(&js, 80, 3).len(), 50);
    }
}
