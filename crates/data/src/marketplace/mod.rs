//! The synthetic marketplace: strata's built-in data set.
//!
//! A seeded generator of a multi-department catalog (grocery, household, kitchen, electronics,
//! apparel, home improvement, pets, beauty) with a 4-level taxonomy (aisle > category > product
//! type > facet), brands, sizes, features and colours, and item names in department catalog
//! styles; queries of head and tail kinds (type, category, brand, attribute, size, Spanish,
//! French, misspelled); a relevance [`Oracle`] that labels any (query, item) pair by policy with
//! optional label noise; judgments per query (a mix of 2/1/0 with mostly 0s, including
//! lexically confusable negatives); optional engagement signals; and a split by query.
//!
//! The structure is learnable: queries use the type, category and attribute words (and their
//! synonyms) that appear in item names and taxonomy, substitutes share the product type and
//! complements are fixed type pairs, so what a model learns on the train queries carries over
//! to held-out ones.

mod catalog;
mod lexicon;
mod oracle;
mod queries;

use std::path::{Path, PathBuf};

use anyhow::Context;
use rayon::prelude::*;

pub use oracle::{Oracle, OracleConfig, OracleLabeler, QueryIntent};
pub use queries::QueryKind;

use crate::io::{Format, write_catalog_as, write_judgments_as};
use crate::progress::{NoProgress, Progress};
use crate::record::{Catalog, Judgment, Source};
use crate::split::{Split, SplitConfig};

/// Sizes, noise and seed of a generated marketplace.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MarketplaceConfig {
    pub items: usize,
    pub queries: usize,
    /// Judged items per query (at least 4).
    pub judgments_per_query: usize,
    /// Probability that a judgment's label differs from the policy.
    pub label_noise: f64,
    pub seed: u64,
    /// Split of the queries (its seed is used as given).
    pub split: SplitConfig,
    /// Simulate impressions, clicks and add-to-carts per judgment.
    pub engagement: bool,
    /// Judge the dev and test queries completely: every relevant item found for such a query
    /// (up to 60 per level) is judged instead of one to three, with as many label-0 items as
    /// otherwise. Training queries keep the sparse sample. With sparse held-out judgments, the
    /// many relevant items left unjudged count as irrelevant, and NDCG@10 then measures which
    /// relevant items happened to be sampled rather than how well a model ranks; a pooled test
    /// collection judges them.
    #[serde(default)]
    pub complete_held_out: bool,
}

impl Default for MarketplaceConfig {
    /// Small enough for the main job (train a MiniLM on two CPU cores): 3,000 items, 600
    /// queries, 20 judgments each, 12.4% label noise, a 70/10/20 split.
    fn default() -> Self {
        MarketplaceConfig {
            items: 3_000,
            queries: 600,
            judgments_per_query: 20,
            label_noise: 0.124,
            seed: 42,
            split: SplitConfig {
                train: 0.7,
                dev: 0.1,
                test: 0.2,
                seed: 42,
            },
            engagement: false,
            complete_held_out: false,
        }
    }
}

/// A generated query.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MarketQuery {
    pub text: String,
    pub kind: QueryKind,
    pub split: Split,
}

/// A generated marketplace.
pub struct Marketplace {
    pub config: MarketplaceConfig,
    pub catalog: Catalog,
    pub queries: Vec<MarketQuery>,
    /// Judgments in query order (source `labeler`).
    pub judgments: Vec<Judgment>,
    oracle: Oracle,
}

impl Marketplace {
    /// Generates a marketplace; the result depends only on the config.
    pub fn generate(cfg: &MarketplaceConfig) -> anyhow::Result<Self> {
        Self::generate_with(cfg, &NoProgress)
    }

    /// Generates a marketplace, reporting progress.
    pub fn generate_with(cfg: &MarketplaceConfig, progress: &dyn Progress) -> anyhow::Result<Self> {
        anyhow::ensure!(cfg.items >= 10, "a marketplace needs at least 10 items");
        anyhow::ensure!(
            cfg.judgments_per_query >= 4,
            "judgments_per_query must be at least 4"
        );
        anyhow::ensure!(cfg.items < u32::MAX as usize, "too many items");
        cfg.split.validate()?;
        let oracle = Oracle::new(OracleConfig {
            noise: cfg.label_noise,
            seed: cfg.seed,
        })?;
        let lex = oracle.lexicon();
        let items = catalog::generate_items(lex, cfg.items, cfg.seed, progress);
        let facts: Vec<oracle::ItemFacts> = items
            .par_iter()
            .map(|i| oracle.facts(i).expect("generated items have known types"))
            .collect();
        let composed = queries::generate_queries(&oracle, &facts, cfg.queries, cfg.seed, progress);

        progress.stage("judgments", composed.len() as u64);
        let index = queries::JudgeIndex::new(&oracle, &facts, &items);
        let per_query: Vec<Vec<Judgment>> = composed
            .par_iter()
            .enumerate()
            .map(|(qi, q)| {
                let mut rng = queries::judge_rng(cfg.seed, qi);
                let complete = cfg.complete_held_out && cfg.split.assign(&q.text) != Split::Train;
                let judged = index.judge(q, cfg.judgments_per_query, complete, &mut rng);
                let clean: Vec<u8> = judged.iter().map(|p| p.1).collect();
                let engagement = cfg
                    .engagement
                    .then(|| queries::simulate_engagement(q.kind, &clean, &mut rng));
                let norm = crate::split::normalize_query(&q.text);
                let out = judged
                    .iter()
                    .enumerate()
                    .map(|(k, &(i, clean))| {
                        let id = &items[i as usize].id;
                        Judgment {
                            query: q.text.clone(),
                            item_id: id.clone(),
                            label: oracle.noisy(&norm, id, clean),
                            source: Some(Source::Labeler),
                            engagement: engagement.as_ref().map(|e| e[k]),
                        }
                    })
                    .collect();
                progress.advance(1);
                out
            })
            .collect();
        progress.finish();
        drop(index);
        let judgments: Vec<Judgment> = per_query.into_iter().flatten().collect();
        let queries = composed
            .into_iter()
            .map(|c| MarketQuery {
                split: cfg.split.assign(&c.text),
                text: c.text,
                kind: c.kind,
            })
            .collect();
        let catalog = Catalog::from_items(items).context("generated item ids are unique")?;
        Ok(Marketplace {
            config: cfg.clone(),
            catalog,
            queries,
            judgments,
            oracle,
        })
    }

    /// The relevance policy (with this marketplace's noise and seed).
    pub fn oracle(&self) -> &Oracle {
        &self.oracle
    }

    /// The policy as a labeler over this catalog.
    pub fn labeler(&self) -> OracleLabeler {
        OracleLabeler::new(self.oracle.clone(), &self.catalog)
    }

    /// The split of a query under this marketplace's split config.
    pub fn split_of(&self, query: &str) -> Split {
        self.config.split.assign(query)
    }

    /// The judgments of the queries in `split`.
    pub fn judgments_in(&self, split: Split) -> Vec<Judgment> {
        self.judgments
            .iter()
            .filter(|j| self.split_of(&j.query) == split)
            .cloned()
            .collect()
    }

    /// Writes `catalog.EXT`, `judgments.EXT`, `train.EXT`, `dev.EXT`, `test.EXT` (judgments
    /// per split), `queries.tsv` (query, kind, split) and `marketplace.json` (the config) into
    /// `dir`; returns the paths written.
    pub fn write(
        &self,
        dir: &Path,
        format: Format,
        progress: &dyn Progress,
    ) -> anyhow::Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let ext = format.extension();
        let mut written = Vec::new();
        progress.stage("writing", 7);
        let p = dir.join(format!("catalog.{ext}"));
        write_catalog_as(&p, self.catalog.items(), format)?;
        written.push(p);
        progress.advance(1);
        let p = dir.join(format!("judgments.{ext}"));
        write_judgments_as(&p, &self.judgments, format)?;
        written.push(p);
        progress.advance(1);
        let parts = self.config.split.split_judgments(&self.judgments);
        for s in Split::ALL {
            let p = dir.join(format!("{s}.{ext}"));
            write_judgments_as(&p, parts.get(s), format)?;
            written.push(p);
            progress.advance(1);
        }
        let p = dir.join("queries.tsv");
        {
            use std::io::Write;
            let mut w = std::io::BufWriter::new(
                std::fs::File::create(&p).with_context(|| format!("creating {}", p.display()))?,
            );
            writeln!(w, "query\tkind\tsplit")?;
            for q in &self.queries {
                writeln!(
                    w,
                    "{}\t{}\t{}",
                    crate::io::escape_tsv(&q.text),
                    q.kind,
                    q.split
                )?;
            }
            w.flush()?;
        }
        written.push(p);
        progress.advance(1);
        let p = dir.join("marketplace.json");
        std::fs::write(&p, serde_json::to_string_pretty(&self.config)?)
            .with_context(|| format!("writing {}", p.display()))?;
        written.push(p);
        progress.advance(1);
        progress.finish();
        Ok(written)
    }
}
