//! The training data of a run: catalog, item texts, the training queries grouped with their
//! judged items, optional spelling variants, and the development split. Instances are drawn
//! afresh for every epoch from `seed` and the epoch number, so the data order of any step can
//! be recomputed (which is what makes a resumed run repeat an uninterrupted one).

use crate::instances::{Instance, InstanceConfig, PerQuery, QueryGroups, build_instances};
use anyhow::Context;
use strata_data::hash::{Rng, combine};
use strata_data::spelling::{SpellingConfig, SpellingMode, SpellingVariants};
use strata_data::split::SplitConfig;
use strata_data::{Catalog, Judgment, load_catalog};

use crate::config::TrainConfig;
use crate::dev::DevSet;

/// Stream tag of the post-augmentation shuffle.
const SHUFFLE_TAG: u64 = 0x5350_454c_4c53;

/// Counts describing the loaded data.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DataSummary {
    pub catalog_items: usize,
    pub train_judgments: usize,
    pub train_queries: usize,
    pub dev_judgments: usize,
    pub dev_queries: usize,
    pub spelling_variants: usize,
    pub instances_per_epoch: usize,
}

/// Everything a run draws its batches and dev evaluations from.
pub struct TrainData {
    /// The catalog.
    pub catalog: Catalog,
    /// Item text of every catalog item, in catalog order.
    pub item_texts: Vec<String>,
    /// Training queries and their judged items.
    pub groups: QueryGroups,
    /// Spelling variants of the training queries (additive augmentation), if enabled.
    pub variants: Option<SpellingVariants>,
    /// The development queries, if any.
    pub dev: Option<DevSet>,
    instance_config: InstanceConfig,
    seed: u64,
    summary: DataSummary,
}

impl TrainData {
    /// Loads and splits the data of `cfg` (already validated).
    pub fn load(cfg: &TrainConfig) -> anyhow::Result<Self> {
        let d = &cfg.data;
        let catalog = load_catalog(&d.catalog)
            .with_context(|| format!("loading catalog {}", d.catalog.display()))?;
        // Checked against the catalog while reading, so an unknown item is reported with its
        // file and line.
        let load = |p: &std::path::Path| {
            strata_data::load_judgments_with(p, &Default::default(), Some(&catalog))
                .map(|(j, _)| j)
                .with_context(|| format!("loading judgments {}", p.display()))
        };
        let (train, dev): (Vec<Judgment>, Vec<Judgment>) = match (&d.judgments, &d.train_judgments)
        {
            (Some(all), _) => {
                let all = load(all)?;
                let split =
                    SplitConfig::new(1.0 - d.dev_fraction, d.dev_fraction, 0.0, d.split_seed)?;
                let parts = split.split_judgments(&all);
                (parts.train, parts.dev)
            }
            (None, Some(train)) => {
                let dev = match &d.dev_judgments {
                    Some(p) => load(p)?,
                    None => Vec::new(),
                };
                (load(train)?, dev)
            }
            (None, None) => anyhow::bail!("no training judgments configured"),
        };
        let text_cfg = d.item_text.clone();
        let item_texts = text_cfg.render_all(catalog.items());
        let groups =
            QueryGroups::new(&catalog, &train).context("grouping the training judgments")?;
        anyhow::ensure!(!groups.is_empty(), "the training split holds no queries");
        let variants = if d.spelling_ratio > 0.0 {
            let scfg = SpellingConfig {
                retain: d.spelling_ratio,
                seed: cfg.seed,
                ..Default::default()
            };
            Some(SpellingVariants::generate(groups.queries(), &scfg)?)
        } else {
            None
        };
        let dev_set = if dev.is_empty() {
            None
        } else {
            Some(DevSet::new(&catalog, &dev, cfg.eval.max_queries, cfg.seed)?)
        }
        .filter(|s| !s.is_empty());
        let instance_config = InstanceConfig {
            items_per_label: d.items_per_label,
            per_query: PerQuery::Cover {
                max: d.instances_per_query,
            },
            random_negatives: d.random_negatives,
            catalog_items: catalog.len() as u32,
            single_level: d.batch_negatives,
            seed: cfg.seed,
        };
        let dev_queries = dev_set.as_ref().map_or(0, DevSet::len);
        let mut data = TrainData {
            summary: DataSummary {
                catalog_items: catalog.len(),
                train_judgments: train.len(),
                train_queries: groups.len(),
                dev_judgments: dev.len(),
                dev_queries,
                spelling_variants: variants.as_ref().map_or(0, SpellingVariants::retained),
                instances_per_epoch: 0,
            },
            catalog,
            item_texts,
            groups,
            variants,
            dev: dev_set,
            instance_config,
            seed: cfg.seed,
        };
        let first = data.epoch_instances(0)?;
        anyhow::ensure!(
            !first.is_empty(),
            "no training instance can be built: every training query has judged items of a single label (an instance needs two label levels)"
        );
        data.summary.instances_per_epoch = first.len();
        Ok(data)
    }

    /// The instances of `epoch`, in training order.
    pub fn epoch_instances(&self, epoch: u64) -> anyhow::Result<Vec<Instance>> {
        let (mut instances, _) = build_instances(&self.groups, &self.instance_config, epoch)?;
        if let Some(v) = &self.variants {
            instances = crate::instances::apply_spelling(v, instances, SpellingMode::Additive);
            Rng::new(combine(&[self.seed, epoch, SHUFFLE_TAG])).shuffle(&mut instances);
        }
        Ok(instances)
    }

    /// Catalog positions of every item training instances can hold, ascending: the items a
    /// training query judges, or the whole catalog when instances draw random negatives.
    pub fn train_items(&self) -> Vec<u32> {
        if self.instance_config.random_negatives > 0 {
            return (0..self.catalog.len() as u32).collect();
        }
        let mut used = vec![false; self.catalog.len()];
        for q in 0..self.groups.len() {
            for label in 0..=strata_data::MAX_LABEL {
                for &i in self.groups.items(q, label) {
                    used[i as usize] = true;
                }
            }
        }
        (0..used.len() as u32)
            .filter(|&i| used[i as usize])
            .collect()
    }

    /// Counts of the loaded data.
    pub fn summary(&self) -> &DataSummary {
        &self.summary
    }
}
