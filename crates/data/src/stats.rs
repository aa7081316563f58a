//! Summary statistics of judgments: counts per label and source, queries per label mix, and
//! token overlap between queries and item texts per label.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::record::{Catalog, Judgment};
use crate::text::ItemTextConfig;
use crate::tokens::{HARD_OVERLAP, token_overlap};

/// Token-overlap statistics of the judged pairs of one label.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct OverlapStats {
    /// Pairs whose item was found in the catalog.
    pub pairs: usize,
    /// Mean overlap.
    pub mean: f64,
    /// Pairs with overlap >= 0.7 (lexically hard pairs, EVALUATION.md).
    pub hard_pairs: usize,
}

/// Statistics of a set of judgments (and, optionally, their catalog).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct DataStats {
    /// Catalog items (0 without a catalog).
    pub items: usize,
    pub judgments: usize,
    /// Distinct query strings.
    pub queries: usize,
    /// Judgments per label 0, 1, 2.
    pub labels: [usize; 3],
    /// Judgments per source (`unspecified` when missing).
    pub sources: BTreeMap<String, usize>,
    /// Queries per set of label levels present, e.g. `"0+1+2"`, `"0+2"`, `"0"`.
    pub label_mix: BTreeMap<String, usize>,
    /// Queries with a single label level (they yield no training instance).
    pub single_level_queries: usize,
    /// Judgments with engagement counts.
    pub with_engagement: usize,
    /// Token overlap per label (empty without a catalog).
    pub overlap: Vec<OverlapStats>,
    /// Judged items missing from the catalog.
    pub unknown_items: usize,
}

impl DataStats {
    /// Computes the statistics; token overlap needs the catalog and uses `text` for items.
    pub fn compute(
        catalog: Option<&Catalog>,
        judgments: &[Judgment],
        text: &ItemTextConfig,
    ) -> Self {
        let mut s = DataStats {
            items: catalog.map_or(0, Catalog::len),
            judgments: judgments.len(),
            ..Default::default()
        };
        let mut per_query: HashMap<&str, u8> = HashMap::new();
        for j in judgments {
            if let Some(c) = s.labels.get_mut(j.label as usize) {
                *c += 1;
            }
            let src = j.source.map_or("unspecified", |x| x.as_str());
            *s.sources.entry(src.to_string()).or_default() += 1;
            *per_query.entry(j.query.as_str()).or_default() |= 1 << j.label.min(7);
            if j.engagement.is_some() {
                s.with_engagement += 1;
            }
        }
        s.queries = per_query.len();
        for mask in per_query.values() {
            let levels: Vec<String> = (0..3)
                .filter(|l| mask & (1 << l) != 0)
                .map(|l: u8| l.to_string())
                .collect();
            if levels.len() == 1 {
                s.single_level_queries += 1;
            }
            *s.label_mix.entry(levels.join("+")).or_default() += 1;
        }
        if let Some(c) = catalog {
            let mut sums = [0.0f64; 3];
            s.overlap = vec![OverlapStats::default(); 3];
            let mut texts: HashMap<usize, String> = HashMap::new();
            for j in judgments {
                let Some(idx) = c.index_of(&j.item_id) else {
                    s.unknown_items += 1;
                    continue;
                };
                let t = texts
                    .entry(idx)
                    .or_insert_with(|| text.render(&c.items()[idx]));
                let o = token_overlap(&j.query, t);
                let l = (j.label as usize).min(2);
                s.overlap[l].pairs += 1;
                sums[l] += o;
                if o >= HARD_OVERLAP {
                    s.overlap[l].hard_pairs += 1;
                }
            }
            for (o, sum) in s.overlap.iter_mut().zip(sums) {
                if o.pairs > 0 {
                    o.mean = sum / o.pairs as f64;
                }
            }
        }
        s
    }
}

impl fmt::Display for DataStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pct = |n: usize| {
            if self.judgments == 0 {
                0.0
            } else {
                100.0 * n as f64 / self.judgments as f64
            }
        };
        if self.items > 0 {
            writeln!(f, "items:        {}", self.items)?;
        }
        writeln!(f, "judgments:    {}", self.judgments)?;
        writeln!(
            f,
            "queries:      {} ({} with a single label level)",
            self.queries, self.single_level_queries
        )?;
        for l in (0..3).rev() {
            writeln!(
                f,
                "label {l}:      {:>9} ({:5.1}%)",
                self.labels[l],
                pct(self.labels[l])
            )?;
        }
        writeln!(f, "sources:")?;
        for (k, v) in &self.sources {
            writeln!(f, "  {k:<12} {v:>9} ({:5.1}%)", pct(*v))?;
        }
        writeln!(f, "queries per label mix:")?;
        for (k, v) in &self.label_mix {
            writeln!(f, "  {k:<12} {v:>9}")?;
        }
        if self.with_engagement > 0 {
            writeln!(f, "with engagement: {}", self.with_engagement)?;
        }
        if !self.overlap.is_empty() {
            writeln!(f, "token overlap (query tokens found in the item text):")?;
            for l in (0..3).rev() {
                let o = &self.overlap[l];
                writeln!(
                    f,
                    "  label {l}: mean {:.3}, {} of {} pairs >= 0.7",
                    o.mean, o.hard_pairs, o.pairs
                )?;
            }
        }
        if self.unknown_items > 0 {
            writeln!(
                f,
                "judged items missing from the catalog: {}",
                self.unknown_items
            )?;
        }
        Ok(())
    }
}
