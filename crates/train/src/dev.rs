//! Development evaluation during training: NDCG@10 of full-catalog exact retrieval
//! (EVALUATION.md: linear gains 2 -> 1, 1 -> 0.5, 0 -> 0; queries whose judged gains are all 0
//! are left out), computed with strata-eval's exact search and metric.

use std::collections::HashMap;

use anyhow::Context;
use strata_data::gain::{gain, ndcg_at_k};
use strata_data::{Catalog, Judgment, Side, TextEncoder};
use strata_retrieval::VectorSearch;

/// Cut-off of the development metric.
pub const DEV_K: usize = 10;

/// Development queries with their judged items (catalog positions).
#[derive(Clone, Debug, Default)]
pub struct DevSet {
    queries: Vec<String>,
    judged: Vec<Vec<(u32, u8)>>,
}

impl DevSet {
    /// Groups judgments by query. Queries without a positive judgment are left out (they have
    /// no NDCG); so are all but `max_queries` queries when it is non-zero (kept by a stable
    /// hash of the query text under `seed`). An item missing from the catalog is an error
    /// naming the judgment.
    pub fn new(
        catalog: &Catalog,
        judgments: &[Judgment],
        max_queries: usize,
        seed: u64,
    ) -> anyhow::Result<Self> {
        let mut index: HashMap<&str, usize> = HashMap::new();
        let mut queries: Vec<&str> = Vec::new();
        let mut judged: Vec<Vec<(u32, u8)>> = Vec::new();
        for (i, j) in judgments.iter().enumerate() {
            let item = catalog.index_of(&j.item_id).with_context(|| {
                format!(
                    "dev judgment #{} (query {:?}): item {:?} is not in the catalog",
                    i + 1,
                    j.query,
                    j.item_id
                )
            })? as u32;
            let q = *index.entry(j.query.as_str()).or_insert_with(|| {
                queries.push(j.query.as_str());
                judged.push(Vec::new());
                queries.len() - 1
            });
            if !judged[q].iter().any(|&(x, _)| x == item) {
                judged[q].push((item, j.label));
            }
        }
        let mut keep: Vec<usize> = (0..queries.len())
            .filter(|&q| judged[q].iter().any(|&(_, l)| l > 0))
            .collect();
        if max_queries > 0 && keep.len() > max_queries {
            keep.sort_by_key(|&q| (strata_data::hash::hash_str(seed, queries[q]), q));
            keep.truncate(max_queries);
            keep.sort_unstable();
        }
        Ok(DevSet {
            queries: keep.iter().map(|&q| queries[q].to_string()).collect(),
            judged: keep
                .into_iter()
                .map(|q| std::mem::take(&mut judged[q]))
                .collect(),
        })
    }

    /// Number of queries evaluated.
    pub fn len(&self) -> usize {
        self.queries.len()
    }

    /// Whether there is nothing to evaluate.
    pub fn is_empty(&self) -> bool {
        self.queries.is_empty()
    }

    /// The query texts.
    pub fn queries(&self) -> &[String] {
        &self.queries
    }
}

/// A development score.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DevScore {
    /// Mean NDCG@10 over the evaluated queries.
    pub ndcg_at_10: f64,
    /// Mean rerank NDCG: each query's judged items ranked by score, NDCG over the whole
    /// judged list (graded ordering without the rest of the catalog).
    pub rerank_ndcg: f64,
    /// Queries behind the mean.
    pub queries: usize,
    /// Items searched.
    pub items: usize,
}

/// NDCG@10 of `encoder` on `dev`: every catalog item (`item_texts`, in catalog order) is
/// embedded and searched exactly.
pub fn evaluate_dev(
    encoder: &dyn TextEncoder,
    dev: &DevSet,
    item_texts: &[String],
) -> anyhow::Result<DevScore> {
    anyhow::ensure!(
        !dev.is_empty(),
        "the dev split has no query with a relevant item"
    );
    let texts: Vec<&str> = item_texts.iter().map(String::as_str).collect();
    let items = encoder
        .encode(&texts, Side::Item)
        .context("embedding the catalog")?;
    let queries: Vec<&str> = dev.queries.iter().map(String::as_str).collect();
    let q = encoder
        .encode(&queries, Side::Query)
        .context("embedding the dev queries")?;
    let index =
        strata_retrieval::ExactIndex::new(items, encoder.dim()).context("indexing the catalog")?;
    let hits = index.search(&q, DEV_K).context("searching the catalog")?;
    let dim = encoder.dim();
    let mut sum = 0.0;
    let mut rerank = 0.0;
    let mut n = 0usize;
    for (qi, (judged, hits)) in dev.judged.iter().zip(&hits).enumerate() {
        let qv = &q[qi * dim..(qi + 1) * dim];
        let mut scored: Vec<(f32, u32, u8)> = judged
            .iter()
            .map(|&(item, l)| {
                let s: f32 = index
                    .row(item as usize)
                    .iter()
                    .zip(qv)
                    .map(|(a, b)| a * b)
                    .sum();
                (s, item, l)
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let reranked: Vec<f64> = scored.iter().map(|&(_, _, l)| gain(l)).collect();
        let labels: HashMap<u32, u8> = judged.iter().copied().collect();
        let ranked: Vec<f64> = hits
            .iter()
            .map(|h| labels.get(&h.item).map_or(0.0, |&l| gain(l)))
            .collect();
        let ideal: Vec<f64> = judged.iter().map(|&(_, l)| gain(l)).collect();
        if let Some(v) = ndcg_at_k(&ranked, &ideal, DEV_K) {
            sum += v;
            rerank += ndcg_at_k(&reranked, &ideal, ideal.len()).unwrap_or(0.0);
            n += 1;
        }
    }
    let mean = |x: f64| if n == 0 { 0.0 } else { x / n as f64 };
    Ok(DevScore {
        ndcg_at_10: mean(sum),
        rerank_ndcg: mean(rerank),
        queries: n,
        items: item_texts.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_data::Item;

    /// Embeds texts by keyword: dimension 0 for "drill", 1 for "saw", 2 otherwise.
    struct Keyword;
    impl TextEncoder for Keyword {
        fn dim(&self) -> usize {
            3
        }
        fn name(&self) -> String {
            "keyword".into()
        }
        fn encode(&self, texts: &[&str], _side: Side) -> anyhow::Result<Vec<f32>> {
            Ok(texts
                .iter()
                .flat_map(|t| {
                    if t.contains("drill") {
                        [1.0, 0.0, 0.0]
                    } else if t.contains("saw") {
                        [0.0, 1.0, 0.0]
                    } else {
                        [0.0, 0.0, 1.0]
                    }
                })
                .collect())
        }
    }

    #[test]
    fn ndcg_of_a_keyword_encoder() {
        let names = ["drill a", "saw b", "lamp c", "drill d"];
        let catalog = Catalog::from_items(
            names
                .iter()
                .enumerate()
                .map(|(i, n)| Item::new(i.to_string(), *n))
                .collect(),
        )
        .unwrap();
        let js = vec![
            Judgment::new("drill", "0", 2),
            Judgment::new("drill", "3", 1),
            Judgment::new("drill", "1", 0),
            // All-zero query: left out.
            Judgment::new("lamp", "2", 0),
            // "saw" retrieves the saw first, with gain 0.5 where the ideal has 1 first.
            Judgment::new("saw", "1", 1),
            Judgment::new("saw", "2", 2),
        ];
        let dev = DevSet::new(&catalog, &js, 0, 0).unwrap();
        assert_eq!(dev.len(), 2);
        let texts: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let s = evaluate_dev(&Keyword, &dev, &texts).unwrap();
        assert_eq!(s.queries, 2);
        // drill: items 0 and 3 tie at the top (catalog order): gains [1, 0.5] = ideal -> 1.
        // saw: ranked [saw b (0.5), then items 0, 2, 3 at score 0 in catalog order: 0, lamp (1), 0]
        let dcg = 0.5 + 1.0 / 4f64.log2();
        let idcg = 1.0 + 0.5 / 3f64.log2();
        let expected = (1.0 + dcg / idcg) / 2.0;
        assert!(
            (s.ndcg_at_10 - expected).abs() < 1e-9,
            "{} vs {expected}",
            s.ndcg_at_10
        );
        // A judgment of an unknown item is named.
        let bad = vec![Judgment::new("q", "missing", 2)];
        let e = format!("{:#}", DevSet::new(&catalog, &bad, 0, 0).unwrap_err());
        assert!(e.contains("missing") && e.contains("#1"), "{e}");
        // Sub-sampling keeps the asked number of queries.
        assert_eq!(DevSet::new(&catalog, &js, 1, 0).unwrap().len(), 1);
    }
}
