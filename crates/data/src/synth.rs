//! Synthetic queries from item features (paper 4.2, Table 5).
//!
//! Queries are built from an item's name tokens, brand, taxonomy leaf and attributes, only for
//! items that have no positive judgment, at a low ratio to the real queries. Each synthetic
//! query is paired with its source item and with lexically similar other items (likely
//! negatives), and a [`Labeler`] labels every pair; abstentions are dropped and counted.

use std::collections::{HashMap, HashSet};

use crate::hash::{Rng, combine, hash_str, mix64};
use crate::labeler::{Labeler, label_in_batches};
use crate::record::{Catalog, Item, Judgment, Source};
use crate::split::normalize_query;
use crate::tokens::tokens;

/// Settings for synthetic queries.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SyntheticConfig {
    /// Synthetic queries per distinct real query (paper: keep it low); capped by the number
    /// of items without a positive judgment. With no real queries, per catalog item.
    pub ratio: f64,
    /// Other items paired with each synthetic query.
    pub negatives_per_query: usize,
    pub seed: u64,
    /// Pairs per labeler call.
    pub batch: usize,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        SyntheticConfig {
            ratio: 0.1,
            negatives_per_query: 4,
            seed: 0,
            batch: 256,
        }
    }
}

/// A synthetic query and the items to label with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntheticQuery {
    pub query: String,
    /// The item whose features made the query.
    pub source_item: u32,
    /// The source item first, then the likely negatives (catalog indices).
    pub candidates: Vec<u32>,
}

/// Counts from labeling synthetic queries.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SyntheticStats {
    pub queries: usize,
    pub pairs: usize,
    pub abstained: usize,
    pub per_label: [usize; 3],
    /// Synthetic queries whose source item got label 2.
    pub source_exact: usize,
}

/// Catalog indices of items without a judgment of label >= 1.
pub fn items_without_positive(catalog: &Catalog, judgments: &[Judgment]) -> Vec<u32> {
    let positive: HashSet<&str> = judgments
        .iter()
        .filter(|j| j.label >= 1)
        .map(|j| j.item_id.as_str())
        .collect();
    (0..catalog.len() as u32)
        .filter(|&i| !positive.contains(catalog.items()[i as usize].id.as_str()))
        .collect()
}

const STOP: &[&str] = &[
    "a", "an", "and", "the", "of", "for", "with", "in", "to", "by", "on", "x", "pack", "count",
    "ct", "oz", "fl", "lb", "in.", "ft", "gal", "qt",
];

/// Content tokens of a name: no stop words, no pure numbers, no brand tokens.
fn content_tokens(name: &str, brand: Option<&str>) -> Vec<String> {
    let brand_tokens: HashSet<String> = brand.map(tokens).unwrap_or_default().into_iter().collect();
    tokens(name)
        .into_iter()
        .filter(|t| {
            t.chars().count() > 1
                && !t.chars().all(|c| c.is_ascii_digit())
                && !STOP.contains(&t.as_str())
                && !brand_tokens.contains(t)
        })
        .collect()
}

/// A query built from one item's features, or `None` when it has too little text.
pub fn query_from_item(item: &Item, rng: &mut Rng) -> Option<String> {
    let brand = item.attributes.get("brand").map(|b| b.to_lowercase());
    let leaf = item.taxonomy.last().map(|l| l.to_lowercase());
    let attrs: Vec<String> = item
        .attributes
        .iter()
        .filter(|(k, v)| !matches!(k.as_str(), "brand" | "size" | "locale") && v.len() <= 30)
        .flat_map(|(_, v)| {
            v.split(',')
                .map(|s| s.trim().to_lowercase())
                .collect::<Vec<_>>()
        })
        .filter(|s| !s.is_empty())
        .collect();
    let content = content_tokens(&item.name, brand.as_deref());
    let span = |rng: &mut Rng| -> Option<String> {
        if content.is_empty() {
            return None;
        }
        let len = rng.range(1, 3.min(content.len()));
        let start = rng.below(content.len() - len + 1);
        Some(content[start..start + len].join(" "))
    };
    // (weight, pattern) over the applicable patterns.
    let mut options: Vec<(f64, u8)> = vec![(0.25, 3)];
    if leaf.is_some() {
        options.push((0.2, 0));
        if brand.is_some() {
            options.push((0.2, 1));
        }
        if !attrs.is_empty() {
            options.push((0.2, 2));
        }
    }
    if brand.is_some() {
        options.push((0.15, 4));
    }
    let weights: Vec<f64> = options.iter().map(|o| o.0).collect();
    let q = match options[rng.weighted(&weights)].1 {
        0 => leaf.clone()?,
        1 => format!("{} {}", brand.clone()?, leaf.clone()?),
        2 => format!("{} {}", rng.pick(&attrs), leaf.clone()?),
        3 => span(rng)?,
        _ => format!("{} {}", brand.clone()?, span(rng)?),
    };
    let q = normalize_query(&q);
    (!q.is_empty()).then_some(q)
}

/// Builds synthetic queries for items without positives.
pub fn generate(
    catalog: &Catalog,
    judgments: &[Judgment],
    cfg: &SyntheticConfig,
) -> anyhow::Result<Vec<SyntheticQuery>> {
    anyhow::ensure!(
        cfg.ratio >= 0.0 && cfg.ratio.is_finite(),
        "synthetic ratio {} must be >= 0",
        cfg.ratio
    );
    let existing: HashSet<String> = judgments
        .iter()
        .map(|j| normalize_query(&j.query))
        .collect();
    let base = if existing.is_empty() {
        catalog.len()
    } else {
        existing.len()
    };
    let mut pool = items_without_positive(catalog, judgments);
    let target = ((cfg.ratio * base as f64).round() as usize).min(pool.len());
    if target == 0 {
        return Ok(Vec::new());
    }
    let mut rng = Rng::new(combine(&[cfg.seed, 0x5359_4e54]));
    rng.shuffle(&mut pool);

    // Inverted index over item-name tokens, for lexically similar negatives.
    let mut postings: HashMap<String, Vec<u32>> = HashMap::new();
    for (i, item) in catalog.iter().enumerate() {
        let mut toks = tokens(&item.name);
        toks.sort_unstable();
        toks.dedup();
        for t in toks {
            postings.entry(t).or_default().push(i as u32);
        }
    }

    let mut seen = existing;
    let mut out = Vec::with_capacity(target);
    for &src in &pool {
        if out.len() >= target {
            break;
        }
        let item = &catalog.items()[src as usize];
        let mut irng = Rng::new(hash_str(cfg.seed, &item.id));
        let Some(q) = query_from_item(item, &mut irng) else {
            continue;
        };
        if !seen.insert(q.clone()) {
            continue;
        }
        let mut candidates = vec![src];
        candidates.extend(similar_items(
            &postings,
            &q,
            src,
            cfg.negatives_per_query,
            catalog.len(),
            &mut irng,
        ));
        out.push(SyntheticQuery {
            query: q,
            source_item: src,
            candidates,
        });
    }
    Ok(out)
}

/// Up to `k` items sharing the most tokens with `query` (random tie-break; random items fill
/// any shortfall), excluding `exclude`.
fn similar_items(
    postings: &HashMap<String, Vec<u32>>,
    query: &str,
    exclude: u32,
    k: usize,
    n_items: usize,
    rng: &mut Rng,
) -> Vec<u32> {
    let mut score: HashMap<u32, u32> = HashMap::new();
    for t in tokens(query) {
        if let Some(list) = postings.get(&t) {
            if list.len() <= 200 {
                for &i in list {
                    *score.entry(i).or_default() += 1;
                }
            } else {
                // Sample long posting lists.
                for _ in 0..200 {
                    *score.entry(*rng.pick(list)).or_default() += 1;
                }
            }
        }
    }
    score.remove(&exclude);
    // Tie-break by a salted hash of the item (HashMap order is not deterministic).
    let salt = rng.next_u64();
    let mut ranked: Vec<(u32, u64, u32)> = score
        .into_iter()
        .map(|(i, s)| (s, mix64(u64::from(i) ^ salt), i))
        .collect();
    ranked.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut out: Vec<u32> = ranked.into_iter().take(k).map(|r| r.2).collect();
    let mut tries = 0;
    while out.len() < k && n_items > out.len() + 1 && tries < 10 * k + 10 {
        tries += 1;
        let i = rng.below(n_items) as u32;
        if i != exclude && !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

/// Labels every (synthetic query, candidate) pair and returns judgments with source
/// [`Source::Synthetic`].
pub fn label(
    catalog: &Catalog,
    queries: &[SyntheticQuery],
    labeler: &dyn Labeler,
    batch: usize,
) -> anyhow::Result<(Vec<Judgment>, SyntheticStats)> {
    let mut pairs = Vec::new();
    let mut is_source = Vec::new();
    for sq in queries {
        for (k, &c) in sq.candidates.iter().enumerate() {
            let item = catalog.get(c as usize).ok_or_else(|| {
                anyhow::anyhow!(
                    "synthetic query {:?}: item #{c} is not in the catalog",
                    sq.query
                )
            })?;
            pairs.push((sq.query.clone(), item.id.clone()));
            is_source.push(k == 0);
        }
    }
    let labels = label_in_batches(labeler, &pairs, batch, &crate::progress::NoProgress)?;
    let mut stats = SyntheticStats {
        queries: queries.len(),
        pairs: pairs.len(),
        ..Default::default()
    };
    let mut out = Vec::with_capacity(pairs.len());
    for (((q, id), label), src) in pairs.into_iter().zip(labels).zip(is_source) {
        match label {
            None => stats.abstained += 1,
            Some(l) => {
                anyhow::ensure!(l <= 2, "labeler {} returned label {l}", labeler.identity());
                stats.per_label[l as usize] += 1;
                if src && l == 2 {
                    stats.source_exact += 1;
                }
                out.push(Judgment {
                    query: q,
                    item_id: id,
                    label: l,
                    source: Some(Source::Synthetic),
                    engagement: None,
                });
            }
        }
    }
    Ok((out, stats))
}
