//! Mine and Refine, stage 2's data (paper section 4.4): retrieve the top `k` training items
//! for every training query with the stage-1 model (HNSW, with exact search as the fallback
//! and the check), keep the labels of pairs that are already judged, ask a labeler for the
//! rest (so that near misses are not mistaken for negatives), select
//!
//! - hard negatives: label 0 ranked above the split point (`k/2` by default),
//! - hard positives: label >= 1 ranked below it,
//!
//! and merge them with the original training judgments, which are always kept (dropping the
//! original negatives causes catastrophic forgetting).

mod select;

pub use select::{Candidate, Selection, SelectionRules, select_candidates};

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use strata_data::{Catalog, ItemTextConfig, Judgment, Labeler, Side, Source, TextEncoder};
use strata_retrieval::{ExactIndex, Hit, HnswParams, VectorSearch};

/// Which items the queries are searched against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Corpus {
    /// The unique items of the training judgments (the paper's choice).
    #[default]
    TrainingItems,
    /// Every item of the catalog.
    Catalog,
}

/// Mining settings.
/// `SearchChoice::Auto` searches exactly up to this many query x item pairs: on Home Depot
/// (7,573 x 54,667 = 4.1e8) exact top-150 takes 3.7 s on 2 cores, HNSW (M 24, ef 400, graph
/// build included) 47 s at recall@150 0.992.
pub const AUTO_EXACT_BELOW: f64 = 4e9;

/// How mining searches the corpus.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SearchChoice {
    /// Exact top k (blocked matrix product).
    Exact,
    /// An HNSW graph built over the corpus, checked against exact search on some queries.
    Hnsw,
    /// Exact while queries x corpus items stays within [`AUTO_EXACT_BELOW`], HNSW beyond.
    #[default]
    Auto,
}

impl SearchChoice {
    /// Whether a search of `queries` over `items` uses the graph.
    pub fn uses_ann(self, queries: usize, items: usize) -> bool {
        match self {
            SearchChoice::Exact => false,
            SearchChoice::Hnsw => true,
            SearchChoice::Auto => queries as f64 * items as f64 > AUTO_EXACT_BELOW,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SearchChoice::Exact => "exact",
            SearchChoice::Hnsw => "hnsw",
            SearchChoice::Auto => "auto",
        }
    }
}

impl std::str::FromStr for SearchChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "exact" => Ok(SearchChoice::Exact),
            "hnsw" => Ok(SearchChoice::Hnsw),
            "auto" => Ok(SearchChoice::Auto),
            o => Err(format!(
                "unknown search {o:?} (expected exact, hnsw or auto)"
            )),
        }
    }
}

impl Serialize for SearchChoice {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for SearchChoice {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Flag(bool),
            Name(String),
        }
        match Raw::deserialize(d)? {
            Raw::Flag(true) => Ok(SearchChoice::Hnsw),
            Raw::Flag(false) => Ok(SearchChoice::Exact),
            Raw::Name(n) => n.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MineConfig {
    /// Items retrieved per query (the paper uses 100-200).
    pub k: usize,
    /// Split point between "top" and "bottom" ranks; `None` means `k / 2`.
    pub split: Option<usize>,
    /// Hard negatives are taken from this rank on (1 = include the very hardest). The paper
    /// found that keeping label-0 items of the top 10 helps with circle loss.
    pub negatives_from_rank: usize,
    pub corpus: Corpus,
    /// How the corpus is searched: `"exact"`, `"hnsw"` or `"auto"` (see [`SearchChoice`]);
    /// `true` and `false` are read as `"hnsw"` and `"exact"`.
    pub ann: SearchChoice,
    pub hnsw: HnswParams,
    /// Queries on which HNSW is checked against exact search (0: none, usize::MAX: all).
    pub recall_check_queries: usize,
    /// Pairs per labeler call.
    pub label_batch: usize,
    /// Unjudged mined pairs that the labeler labels with a probability below this stay
    /// unlabeled (counted in `unlabeled`) instead of being trained on. Applied by the labeler
    /// built for mining (`strata_labeling::LabelerInputs::min_confidence`); labelers without
    /// probabilities are certain. `None`: every label is kept.
    pub min_confidence: Option<f32>,
}

impl Default for MineConfig {
    fn default() -> Self {
        MineConfig {
            k: 150,
            split: None,
            negatives_from_rank: 1,
            corpus: Corpus::TrainingItems,
            ann: SearchChoice::Hnsw,
            // Home Depot, 7,573 queries x 54,667 items, k 150: recall@150 0.992 in 47 s
            // (graph build included); M 16 / ef 256 gives 0.975 in 28 s.
            hnsw: HnswParams {
                connectivity: 24,
                expansion_add: 200,
                expansion_search: 400,
            },
            recall_check_queries: 1000,
            label_batch: 256,
            min_confidence: None,
        }
    }
}

impl MineConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.k >= 2,
            "mining: `k` must be at least 2, got {}",
            self.k
        );
        if let Some(s) = self.split {
            anyhow::ensure!(
                s >= 1 && s < self.k,
                "mining: `split` must be in 1..k, got {s}"
            );
        }
        anyhow::ensure!(
            self.negatives_from_rank >= 1,
            "mining: `negatives_from_rank` starts at 1"
        );
        anyhow::ensure!(
            self.label_batch >= 1,
            "mining: `label_batch` must be positive"
        );
        if let Some(p) = self.min_confidence {
            anyhow::ensure!(
                p > 0.0 && p <= 1.0,
                "mining: `min_confidence` must be in (0, 1], got {p}"
            );
        }
        Ok(())
    }

    fn rules(&self) -> SelectionRules {
        SelectionRules {
            split: self.split.unwrap_or(self.k / 2),
            negatives_from_rank: self.negatives_from_rank,
        }
    }
}

/// Label counts of newly labeled pairs in one rank bucket.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Bucket {
    pub ranks: String,
    pub label_0: usize,
    pub label_1: usize,
    pub label_2: usize,
    pub unlabeled: usize,
}

/// What a mining run did (`mining_report.json`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct MineReport {
    pub k: usize,
    pub split: usize,
    pub queries: usize,
    pub corpus_items: usize,
    pub labeler: String,
    pub pairs_retrieved: usize,
    pub already_judged: usize,
    pub newly_labeled: usize,
    pub unlabeled: usize,
    pub new_by_rank: Vec<Bucket>,
    pub hard_negatives: usize,
    pub hard_positives: usize,
    /// Newly labeled pairs in the top `split` ranks that the labeler called relevant (>= 1):
    /// the false negatives that naive top-k negative mining would have trained on.
    pub top_half_new: usize,
    pub top_half_relevant: usize,
    pub naive_false_negative_rate: f64,
    pub original_judgments: usize,
    pub merged_judgments: usize,
    pub search: String,
    pub ann_recall_at_k: Option<f64>,
    /// Items the HNSW graph cannot reach, scored exactly by every search (HNSW only).
    pub ann_unreachable: Option<usize>,
    pub recall_checked_queries: usize,
    pub seconds_embedding: f64,
    pub seconds_search: f64,
    pub seconds_labeling: f64,
}

/// The result of [`mine`].
pub struct MineOutput {
    /// Original training judgments followed by the selected mined pairs (source `mined`).
    pub judgments: Vec<Judgment>,
    pub report: MineReport,
}

/// The queries and the corpus of a mining run: every query of the training judgments, in
/// order of first appearance, and the catalog positions of the items searched (the training
/// items, or the whole catalog).
pub struct MiningCorpus<'a> {
    pub queries: Vec<&'a str>,
    pub corpus: Vec<usize>,
    known: HashMap<(&'a str, &'a str), u8>,
}

/// The queries and the corpus `mine` searches for `judgments` under `cfg`.
pub fn mining_corpus<'a>(
    catalog: &Catalog,
    judgments: &'a [Judgment],
    cfg: &MineConfig,
) -> anyhow::Result<MiningCorpus<'a>> {
    cfg.validate()?;
    anyhow::ensure!(!judgments.is_empty(), "mining: no training judgments");
    let corpus: Vec<usize> = match cfg.corpus {
        Corpus::Catalog => (0..catalog.len()).collect(),
        Corpus::TrainingItems => {
            let mut seen = HashSet::new();
            let mut v = Vec::new();
            for j in judgments {
                let i = catalog.index_of(&j.item_id).with_context(|| {
                    format!(
                        "mining: judgment ({:?}, {}) names an item not in the catalog",
                        j.query, j.item_id
                    )
                })?;
                if seen.insert(i) {
                    v.push(i);
                }
            }
            v
        }
    };
    let mut queries: Vec<&str> = Vec::new();
    let mut known: HashMap<(&str, &str), u8> = HashMap::new();
    let mut seen_queries = HashSet::new();
    for j in judgments {
        known.insert((j.query.as_str(), j.item_id.as_str()), j.label);
        if seen_queries.insert(j.query.as_str()) {
            queries.push(j.query.as_str());
        }
    }
    Ok(MiningCorpus {
        queries,
        corpus,
        known,
    })
}

/// How the top-k lists were found, for the report.
#[derive(Clone, Debug, Default)]
pub struct SearchInfo {
    pub search: String,
    pub recall: Option<f64>,
    pub checked: usize,
    pub unreachable: Option<usize>,
    pub seconds_embedding: f64,
    pub seconds_search: f64,
}

/// Runs the mining step. `judgments` are the training judgments (every query among them is
/// mined); the result holds them all plus the selected mined pairs.
pub fn mine(
    encoder: &dyn TextEncoder,
    catalog: &Catalog,
    item_text: &ItemTextConfig,
    judgments: &[Judgment],
    labeler: &dyn Labeler,
    cfg: &MineConfig,
) -> anyhow::Result<MineOutput> {
    let MiningCorpus {
        queries, corpus, ..
    } = mining_corpus(catalog, judgments, cfg)?;

    let t = Instant::now();
    let texts: Vec<String> = corpus
        .iter()
        .map(|&i| item_text.render(&catalog.items()[i]))
        .collect();
    let text_refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
    let item_emb = encoder
        .encode(&text_refs, Side::Item)
        .context("mining: embedding items")?;
    let query_emb = encoder
        .encode(&queries, Side::Query)
        .context("mining: embedding queries")?;
    let seconds_embedding = t.elapsed().as_secs_f64();
    let dim = encoder.dim();

    let t = Instant::now();
    let k = cfg.k.min(corpus.len());
    let exact = ExactIndex::new(item_emb.clone(), dim)?;
    let use_ann = cfg.ann.uses_ann(queries.len(), corpus.len());
    let (hits, search, recall, checked, unreachable) = if use_ann && corpus.len() > k {
        let (hits, unreachable) = ann_search(&item_emb, dim, &query_emb, k, cfg.hnsw)?;
        let n_check = cfg.recall_check_queries.min(queries.len());
        let recall = if n_check > 0 {
            let sub = &query_emb[..n_check * dim];
            let ex = exact.search(sub, k)?;
            Some(strata_retrieval::search::recall_against(
                &ex,
                &hits[..n_check],
                k,
            ))
        } else {
            None
        };
        (hits, "hnsw".to_string(), recall, n_check, unreachable)
    } else {
        let hits = exact.search(&query_emb, k)?;
        (hits, "exact".to_string(), None, 0, None)
    };
    let seconds_search = t.elapsed().as_secs_f64();
    mine_from_hits(
        catalog,
        judgments,
        labeler,
        cfg,
        &hits,
        SearchInfo {
            search,
            recall,
            checked,
            unreachable,
            seconds_embedding,
            seconds_search,
        },
    )
}

/// Every retrieved pair of `hits` (as [`mine_from_hits`] takes them) with its rank and, where
/// judged, its label.
fn retrieved_candidates(
    catalog: &Catalog,
    judgments: &[Judgment],
    cfg: &MineConfig,
    hits: &[Vec<Hit>],
) -> anyhow::Result<Retrieved> {
    let MiningCorpus {
        queries,
        corpus,
        known,
    } = mining_corpus(catalog, judgments, cfg)?;
    let k = cfg.k.min(corpus.len());
    anyhow::ensure!(
        hits.len() == queries.len(),
        "mining: {} top-k lists for {} queries",
        hits.len(),
        queries.len()
    );
    if let Some(h) = hits
        .iter()
        .flatten()
        .find(|h| h.item as usize >= corpus.len())
    {
        anyhow::bail!(
            "mining: hit item {} is outside the corpus of {} items",
            h.item,
            corpus.len()
        );
    }
    let mut candidates: Vec<Candidate> = Vec::with_capacity(queries.len() * k);
    for (qi, row) in hits.iter().enumerate() {
        for (r, h) in row.iter().enumerate() {
            let item = &catalog.items()[corpus[h.item as usize]];
            candidates.push(Candidate {
                query: queries[qi].to_string(),
                item_id: item.id.clone(),
                rank: r + 1,
                judged: known.get(&(queries[qi], item.id.as_str())).copied(),
                label: None,
            });
        }
    }
    Ok(Retrieved {
        queries: queries.len(),
        corpus_items: corpus.len(),
        k,
        candidates,
    })
}

/// What [`retrieved_candidates`] found.
struct Retrieved {
    queries: usize,
    corpus_items: usize,
    k: usize,
    candidates: Vec<Candidate>,
}

/// The pairs of `hits` that [`mine_from_hits`] asks its labeler about (the retrieved pairs
/// without a judgment), in the order it asks them: labeling them elsewhere first (workers with
/// a shared label cache) leaves the mining run only cache hits.
pub fn unjudged_pairs(
    catalog: &Catalog,
    judgments: &[Judgment],
    cfg: &MineConfig,
    hits: &[Vec<Hit>],
) -> anyhow::Result<Vec<(String, String)>> {
    let candidates = retrieved_candidates(catalog, judgments, cfg, hits)?.candidates;
    Ok(candidates
        .into_iter()
        .filter(|c| c.judged.is_none())
        .map(|c| (c.query, c.item_id))
        .collect())
}

/// Labels and selects from top-k lists found elsewhere (a sharded search over item
/// partitions, for instance): `hits[q]` lists positions in `mining_corpus(..).corpus` with their
/// scores, best first, for the `q`-th query of `mining_corpus(..).queries`; `mine` calls it
/// with its own search.
pub fn mine_from_hits(
    catalog: &Catalog,
    judgments: &[Judgment],
    labeler: &dyn Labeler,
    cfg: &MineConfig,
    hits: &[Vec<Hit>],
    info: SearchInfo,
) -> anyhow::Result<MineOutput> {
    let rules = cfg.rules();
    let Retrieved {
        queries,
        corpus_items,
        k,
        mut candidates,
    } = retrieved_candidates(catalog, judgments, cfg, hits)?;
    let SearchInfo {
        search,
        recall,
        checked,
        unreachable,
        seconds_embedding,
        seconds_search,
    } = info;
    let pending: Vec<usize> = (0..candidates.len())
        .filter(|&i| candidates[i].judged.is_none())
        .collect();
    let t = Instant::now();
    let pairs: Vec<(String, String)> = pending
        .iter()
        .map(|&i| (candidates[i].query.clone(), candidates[i].item_id.clone()))
        .collect();
    let labels = strata_data::labeler::label_in_batches(
        labeler,
        &pairs,
        cfg.label_batch,
        &strata_data::progress::NoProgress,
    )
    .with_context(|| format!("mining: labeler {}", labeler.identity()))?;
    for (&i, l) in pending.iter().zip(labels) {
        candidates[i].label = l;
    }
    let seconds_labeling = t.elapsed().as_secs_f64();

    let selection = select_candidates(&candidates, &rules);
    let mut report = MineReport {
        k,
        split: rules.split,
        queries,
        corpus_items,
        labeler: labeler.identity(),
        pairs_retrieved: candidates.len(),
        already_judged: candidates.len() - pending.len(),
        newly_labeled: pending
            .iter()
            .filter(|&&i| candidates[i].label.is_some())
            .count(),
        unlabeled: pending
            .iter()
            .filter(|&&i| candidates[i].label.is_none())
            .count(),
        new_by_rank: rank_buckets(&candidates, k, rules.split),
        hard_negatives: selection.hard_negatives.len(),
        hard_positives: selection.hard_positives.len(),
        original_judgments: judgments.len(),
        search,
        ann_recall_at_k: recall,
        ann_unreachable: unreachable,
        recall_checked_queries: checked,
        seconds_embedding,
        seconds_search,
        seconds_labeling,
        ..Default::default()
    };
    for c in candidates
        .iter()
        .filter(|c| c.judged.is_none() && c.rank <= rules.split)
    {
        if let Some(l) = c.label {
            report.top_half_new += 1;
            if l >= 1 {
                report.top_half_relevant += 1;
            }
        }
    }
    report.naive_false_negative_rate = if report.top_half_new > 0 {
        report.top_half_relevant as f64 / report.top_half_new as f64
    } else {
        0.0
    };

    let mut merged = judgments.to_vec();
    for &i in selection
        .hard_negatives
        .iter()
        .chain(&selection.hard_positives)
    {
        let c = &candidates[i];
        let mut j = Judgment::new(
            c.query.clone(),
            c.item_id.clone(),
            c.label.expect("selected pairs are labeled"),
        );
        j.source = Some(Source::Mined);
        merged.push(j);
    }
    report.merged_judgments = merged.len();
    Ok(MineOutput {
        judgments: merged,
        report,
    })
}

#[cfg(feature = "ann")]
fn ann_search(
    items: &[f32],
    dim: usize,
    queries: &[f32],
    k: usize,
    p: HnswParams,
) -> anyhow::Result<(Vec<Vec<Hit>>, Option<usize>)> {
    let index = strata_retrieval::HnswSearch::build(items, dim, p)?;
    let unreachable = index.orphans().len();
    if unreachable > 0 {
        tracing::info!("{unreachable} items unreachable in the HNSW graph: scored exactly");
    }
    Ok((index.search(queries, k)?, Some(unreachable)))
}

#[cfg(not(feature = "ann"))]
fn ann_search(
    items: &[f32],
    dim: usize,
    queries: &[f32],
    k: usize,
    _p: HnswParams,
) -> anyhow::Result<(Vec<Vec<Hit>>, Option<usize>)> {
    tracing::warn!("built without the `ann` feature: mining with exact search");
    Ok((
        ExactIndex::new(items.to_vec(), dim)?.search(queries, k)?,
        None,
    ))
}

fn rank_buckets(candidates: &[Candidate], k: usize, split: usize) -> Vec<Bucket> {
    let top = 10.min(split);
    let bounds = [(1, top), (top + 1, split), (split + 1, k)];
    bounds
        .iter()
        .filter(|(a, b)| a <= b)
        .map(|&(a, b)| {
            let mut bucket = Bucket {
                ranks: format!("{a}-{b}"),
                ..Default::default()
            };
            for c in candidates
                .iter()
                .filter(|c| c.judged.is_none() && c.rank >= a && c.rank <= b)
            {
                match c.label {
                    Some(0) => bucket.label_0 += 1,
                    Some(1) => bucket.label_1 += 1,
                    Some(_) => bucket.label_2 += 1,
                    None => bucket.unlabeled += 1,
                }
            }
            bucket
        })
        .collect()
}
