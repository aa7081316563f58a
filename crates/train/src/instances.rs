//! Training instances (paper eq. 1): a query anchors items of at least two label levels,
//! `(q, d2, d1, d0)`, `(q, d2, d0)`, `(q, d1, d0)` or `(q, d2, d1)`, drawn by stratified sampling
//! from the query's judged items.
//!
//! [`QueryGroups`] indexes judgments once; [`build_instances`] then draws a fresh set of
//! instances per epoch in parallel, deterministically from the seed and the epoch.

use std::collections::HashMap;
use std::sync::Arc;

use rayon::prelude::*;

use strata_data::hash::{Rng, combine};
use strata_data::spelling::{SpellingMode, SpellingVariants};
use strata_data::{Catalog, Judgment, MAX_LABEL};

/// The label levels an instance holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Form {
    /// `(q, d2, d1, d0)`
    TwoOneZero,
    /// `(q, d2, d0)`
    TwoZero,
    /// `(q, d1, d0)`
    OneZero,
    /// `(q, d2, d1)`
    TwoOne,
}

impl Form {
    /// All forms.
    pub const ALL: [Form; 4] = [Form::TwoOneZero, Form::TwoZero, Form::OneZero, Form::TwoOne];

    /// The form of a set of label levels (bit `l` set for label `l`); `None` for fewer than two.
    pub fn from_levels(mask: u8) -> Option<Form> {
        match mask & 0b111 {
            0b111 => Some(Form::TwoOneZero),
            0b101 => Some(Form::TwoZero),
            0b011 => Some(Form::OneZero),
            0b110 => Some(Form::TwoOne),
            _ => None,
        }
    }

    /// The labels present, highest first.
    pub fn labels(self) -> &'static [u8] {
        match self {
            Form::TwoOneZero => &[2, 1, 0],
            Form::TwoZero => &[2, 0],
            Form::OneZero => &[1, 0],
            Form::TwoOne => &[2, 1],
        }
    }

    fn index(self) -> usize {
        match self {
            Form::TwoOneZero => 0,
            Form::TwoZero => 1,
            Form::OneZero => 2,
            Form::TwoOne => 3,
        }
    }
}

/// Judgments grouped by query, items bucketed by label, as catalog indices.
#[derive(Clone, Debug, Default)]
pub struct QueryGroups {
    queries: Vec<Arc<str>>,
    /// Per query: start of the label-0, label-1 and label-2 runs in `items`, and the end.
    bounds: Vec<[u32; 4]>,
    items: Vec<u32>,
}

impl QueryGroups {
    /// Groups judgments by (exact) query text, in order of first appearance. Every judged item
    /// must be in the catalog; repeated pairs must agree on the label.
    pub fn new(catalog: &Catalog, judgments: &[Judgment]) -> anyhow::Result<Self> {
        let mut triples = Vec::with_capacity(judgments.len());
        for (i, j) in judgments.iter().enumerate() {
            let idx = catalog.index_of(&j.item_id).ok_or_else(|| {
                anyhow::anyhow!(
                    "judgment #{i} ({:?}, {:?}): item is not in the catalog",
                    j.query,
                    j.item_id
                )
            })?;
            triples.push((j.query.as_str(), idx as u32, j.label));
        }
        Self::from_labeled(triples)
    }

    /// Groups `(query, item index, label)` triples.
    pub fn from_labeled<'a>(
        triples: impl IntoIterator<Item = (&'a str, u32, u8)>,
    ) -> anyhow::Result<Self> {
        let mut order: HashMap<&'a str, usize> = HashMap::new();
        let mut per_query: Vec<(&'a str, Vec<(u32, u8)>)> = Vec::new();
        for (q, item, label) in triples {
            anyhow::ensure!(
                label <= MAX_LABEL,
                "query {q:?}, item #{item}: label {label} is not 0, 1 or 2"
            );
            let k = *order.entry(q).or_insert_with(|| {
                per_query.push((q, Vec::new()));
                per_query.len() - 1
            });
            per_query[k].1.push((item, label));
        }
        let mut groups = QueryGroups::default();
        for (q, mut pairs) in per_query {
            pairs.sort_unstable();
            pairs.dedup();
            if let Some(w) = pairs.windows(2).find(|w| w[0].0 == w[1].0) {
                anyhow::bail!(
                    "query {q:?}, item #{}: conflicting labels {} and {}",
                    w[0].0,
                    w[0].1,
                    w[1].1
                );
            }
            let mut b = [0u32; 4];
            for label in 0..=MAX_LABEL {
                b[label as usize] = groups.items.len() as u32;
                groups
                    .items
                    .extend(pairs.iter().filter(|p| p.1 == label).map(|p| p.0));
            }
            b[3] = groups.items.len() as u32;
            groups.queries.push(Arc::from(q));
            groups.bounds.push(b);
        }
        Ok(groups)
    }

    /// Number of queries.
    pub fn len(&self) -> usize {
        self.queries.len()
    }

    /// Whether there are no queries.
    pub fn is_empty(&self) -> bool {
        self.queries.is_empty()
    }

    /// All query texts, in group order.
    pub fn queries(&self) -> &[Arc<str>] {
        &self.queries
    }

    /// The text of query `q`.
    pub fn query(&self, q: usize) -> &Arc<str> {
        &self.queries[q]
    }

    /// The items of query `q` with label `label`.
    pub fn items(&self, q: usize, label: u8) -> &[u32] {
        let b = &self.bounds[q];
        &self.items[b[label as usize] as usize..b[label as usize + 1] as usize]
    }

    /// Bit `l` set when query `q` has an item with label `l`.
    pub fn levels(&self, q: usize) -> u8 {
        (0..=MAX_LABEL)
            .filter(|&l| !self.items(q, l).is_empty())
            .fold(0, |m, l| m | (1 << l))
    }
}

/// How many instances a query yields per epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PerQuery {
    /// Exactly this many.
    Fixed(usize),
    /// Enough to use every judged item once (the largest level divided by its items per
    /// instance, rounded up), at most `max`.
    Cover { max: usize },
}

/// Instance sampling settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InstanceConfig {
    /// Items drawn per label level and instance, indexed by label (0, 1, 2); each at least 1.
    pub items_per_label: [usize; 3],
    pub per_query: PerQuery,
    /// Unjudged catalog items added to every instance as label 0, drawn uniformly from the
    /// first `catalog_items` catalog indices (items judged for the query are never drawn).
    /// Beyond the paper: judged label-0 items are usually near misses (they were retrieved
    /// for the query), so training on them alone never shows the model an unrelated item;
    /// a few random ones keep the whole catalog in place. 0 (the default) disables it.
    pub random_negatives: usize,
    /// Catalog size for `random_negatives`.
    pub catalog_items: u32,
    /// Also draw instances for queries whose judged items share one positive level (only
    /// label 2, or only label 1). Such an instance holds no negative of its own: it is meant
    /// for training with batch negatives ([`with_batch_negatives`]), which supply them. Queries
    /// judged only 0 never yield instances. Off by default (the paper's instance formats).
    pub single_level: bool,
    pub seed: u64,
}

impl Default for InstanceConfig {
    fn default() -> Self {
        InstanceConfig {
            items_per_label: [4, 2, 2],
            per_query: PerQuery::Cover { max: 4 },
            random_negatives: 0,
            catalog_items: 0,
            single_level: false,
            seed: 0,
        }
    }
}

/// One training instance: a query and its items with labels (highest label first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    /// Index of the query in its [`QueryGroups`].
    pub query_idx: u32,
    /// The anchor text (the query, or a spelling variant of it).
    pub query: Arc<str>,
    /// (catalog index, label).
    pub items: Vec<(u32, u8)>,
}

impl Instance {
    /// The form of this instance (`None` only for malformed hand-built instances).
    pub fn form(&self) -> Option<Form> {
        Form::from_levels(self.items.iter().fold(0u8, |m, &(_, l)| m | (1 << l)))
    }
}

/// What one build produced.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct InstanceStats {
    /// Queries in the groups.
    pub queries: usize,
    /// Queries that produced instances.
    pub used_queries: usize,
    /// Queries with a single label level that produced no instance (all of them unless
    /// `single_level` is set; then the queries judged only 0).
    pub single_level_queries: usize,
    /// Instances holding one positive level and no negative (only with `single_level`).
    pub single_level_instances: usize,
    pub instances: usize,
    /// Instances per form: (q,d2,d1,d0), (q,d2,d0), (q,d1,d0), (q,d2,d1).
    pub per_form: [usize; 4],
    /// Item slots over all instances.
    pub items: usize,
}

/// Draws one epoch of instances. The result depends only on the groups, the config and
/// `epoch` (not on the number of threads) and comes shuffled.
pub fn build_instances(
    groups: &QueryGroups,
    cfg: &InstanceConfig,
    epoch: u64,
) -> anyhow::Result<(Vec<Instance>, InstanceStats)> {
    anyhow::ensure!(
        cfg.items_per_label.iter().all(|&k| k >= 1),
        "items_per_label must be at least 1 for every label, got {:?}",
        cfg.items_per_label
    );
    match cfg.per_query {
        PerQuery::Fixed(0) | PerQuery::Cover { max: 0 } => {
            anyhow::bail!("instances per query must be at least 1")
        }
        _ => {}
    }
    anyhow::ensure!(
        cfg.random_negatives == 0 || cfg.catalog_items as usize > cfg.random_negatives,
        "random_negatives ({}) needs a catalog larger than that (catalog_items {})",
        cfg.random_negatives,
        cfg.catalog_items
    );
    let epoch_seed = combine(&[cfg.seed, epoch]);
    let per_query: Vec<Vec<Instance>> = (0..groups.len())
        .into_par_iter()
        .map(|q| sample_query(groups, cfg, epoch_seed, q))
        .collect();
    let mut stats = InstanceStats {
        queries: groups.len(),
        ..Default::default()
    };
    let mut all = Vec::with_capacity(per_query.iter().map(Vec::len).sum());
    for list in per_query {
        if list.is_empty() {
            stats.single_level_queries += 1;
            continue;
        }
        stats.used_queries += 1;
        for inst in list {
            match inst.form() {
                Some(f) => stats.per_form[f.index()] += 1,
                None => stats.single_level_instances += 1,
            }
            stats.items += inst.items.len();
            all.push(inst);
        }
    }
    stats.instances = all.len();
    Rng::new(combine(&[epoch_seed, 0x5348_5546])).shuffle(&mut all);
    Ok((all, stats))
}

fn sample_query(groups: &QueryGroups, cfg: &InstanceConfig, seed: u64, q: usize) -> Vec<Instance> {
    let mask = groups.levels(q);
    let single_positive = cfg.single_level && (mask == 0b010 || mask == 0b100);
    if Form::from_levels(mask).is_none() && !single_positive {
        return Vec::new();
    }
    let mut rng = Rng::stream(seed, q as u64);
    let mut pools: Vec<(u8, Vec<u32>, usize)> = Vec::with_capacity(3);
    let mut needed = 1;
    for label in (0..=MAX_LABEL).rev() {
        let items = groups.items(q, label);
        if items.is_empty() {
            continue;
        }
        let k = cfg.items_per_label[label as usize].min(items.len());
        let mut pool = items.to_vec();
        rng.shuffle(&mut pool);
        needed = needed.max(items.len().div_ceil(k));
        pools.push((label, pool, k));
    }
    let count = match cfg.per_query {
        PerQuery::Fixed(n) => n,
        PerQuery::Cover { max } => needed.min(max),
    };
    let query = groups.query(q).clone();
    let judged: std::collections::HashSet<u32> = if cfg.random_negatives > 0 {
        (0..=MAX_LABEL)
            .flat_map(|l| groups.items(q, l).iter().copied())
            .collect()
    } else {
        Default::default()
    };
    (0..count)
        .map(|j| {
            let mut items =
                Vec::with_capacity(pools.iter().map(|p| p.2).sum::<usize>() + cfg.random_negatives);
            for (label, pool, k) in &pools {
                let n = pool.len();
                items.extend((0..*k).map(|t| (pool[(j * k + t) % n], *label)));
            }
            let first_random = items.len();
            // Bounded: a catalog that is nearly all judged for this query gets fewer.
            for _ in 0..cfg.random_negatives * 64 {
                if items.len() == first_random + cfg.random_negatives {
                    break;
                }
                let i = rng.below(cfg.catalog_items as usize) as u32;
                if !judged.contains(&i) && !items[first_random..].iter().any(|&(x, _)| x == i) {
                    items.push((i, 0));
                }
            }
            Instance {
                query_idx: q as u32,
                query: query.clone(),
                items,
            }
        })
        .collect()
}

/// What [`with_batch_negatives`] did to one batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchNegativeStats {
    /// Label-0 slots added over all instances.
    pub added: usize,
    /// Candidates passed over because the instance's query judges them (any label).
    pub judged_skipped: usize,
    /// Instances left out because they still held a single label level (a batch whose other
    /// instances only hold items this query judges).
    pub dropped: usize,
}

/// Grade-aware batch negatives: every item of the other instances of `batch` becomes a
/// label-0 candidate of an instance, unless the instance's query judges that item (with any
/// label: a judged or relabeled item keeps its own label and is never turned into a
/// negative) or the instance already holds it. The items are encoded for the batch anyway, so
/// the extra candidates cost only their similarity scores. `max_per_instance` caps the added
/// candidates of one instance (taken in batch order; `None`: all).
///
/// Instances that still hold a single label level (a query with only positives whose batch
/// offers no unjudged item) are left out and counted.
pub fn with_batch_negatives(
    batch: &[Instance],
    groups: &QueryGroups,
    max_per_instance: Option<usize>,
) -> (Vec<Instance>, BatchNegativeStats) {
    let mut stats = BatchNegativeStats::default();
    // Distinct catalog items of the batch, in first-seen order.
    let mut seen = std::collections::HashSet::new();
    let pool: Vec<u32> = batch
        .iter()
        .flat_map(|inst| inst.items.iter().map(|&(i, _)| i))
        .filter(|&i| seen.insert(i))
        .collect();
    let mut out = Vec::with_capacity(batch.len());
    for inst in batch {
        let q = inst.query_idx as usize;
        let judged: std::collections::HashSet<u32> = (0..=MAX_LABEL)
            .flat_map(|l| groups.items(q, l).iter().copied())
            .chain(inst.items.iter().map(|&(i, _)| i))
            .collect();
        let cap = max_per_instance.unwrap_or(usize::MAX);
        let mut items = inst.items.clone();
        let mut added = 0;
        for &i in &pool {
            if added == cap {
                break;
            }
            if judged.contains(&i) {
                if !inst.items.iter().any(|&(x, _)| x == i) {
                    stats.judged_skipped += 1;
                }
                continue;
            }
            items.push((i, 0));
            added += 1;
        }
        let levels = items.iter().fold(0u8, |m, &(_, l)| m | (1 << l));
        if levels.count_ones() < 2 {
            stats.dropped += 1;
            continue;
        }
        stats.added += added;
        out.push(Instance {
            query_idx: inst.query_idx,
            query: inst.query.clone(),
            items,
        });
    }
    (out, stats)
}

/// Applies spelling variants to instances whose `query_idx` indexes the query list the
/// variants were drawn for: in place (each covered query replaced by its variant), or
/// additively (a copy of each covered instance with the variant appended; every original kept).
pub fn apply_spelling(
    variants: &SpellingVariants,
    instances: Vec<Instance>,
    mode: SpellingMode,
) -> Vec<Instance> {
    match mode {
        SpellingMode::InPlace => instances
            .into_iter()
            .map(|mut inst| {
                if let Some(v) = variants.get(inst.query_idx as usize) {
                    inst.query = v.clone();
                }
                inst
            })
            .collect(),
        SpellingMode::Additive => {
            let extra: Vec<Instance> = instances
                .iter()
                .filter_map(|inst| {
                    variants.get(inst.query_idx as usize).map(|v| Instance {
                        query_idx: inst.query_idx,
                        query: v.clone(),
                        items: inst.items.clone(),
                    })
                })
                .collect();
            let mut out = instances;
            out.extend(extra);
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_from_levels() {
        assert_eq!(Form::from_levels(0b111), Some(Form::TwoOneZero));
        assert_eq!(Form::from_levels(0b101), Some(Form::TwoZero));
        assert_eq!(Form::from_levels(0b011), Some(Form::OneZero));
        assert_eq!(Form::from_levels(0b110), Some(Form::TwoOne));
        assert_eq!(Form::from_levels(0b100), None);
        assert_eq!(Form::from_levels(0), None);
    }

    #[test]
    fn conflicting_labels_are_rejected() {
        let err = QueryGroups::from_labeled([("q", 1, 2), ("q", 1, 0)]).unwrap_err();
        assert!(err.to_string().contains("conflicting labels"), "{err}");
        let g = QueryGroups::from_labeled([("q", 1, 2), ("q", 1, 2), ("q", 2, 0)]).unwrap();
        assert_eq!(g.items(0, 2), &[1]);
        assert_eq!(g.levels(0), 0b101);
    }
}
