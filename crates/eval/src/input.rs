//! Evaluation inputs: the corpus (item ids and their rendered texts; `strata_data::Catalog`
//! holds the records, [`crate::from_data::catalog`] renders one) and graded judgments grouped
//! per query ([`Qrels`], from `strata_data::Judgment`s), and their resolution against each
//! other.
//!
//! Resolution never drops anything silently: judgments naming items that are not in the
//! catalog and queries left without any judgment are counted in [`LeftOut`] (or rejected,
//! with [`UnknownItems::Error`]).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

pub use strata_data::{Judgment, MAX_LABEL};

pub use strata_data::gain::gain;

/// Errors in evaluation inputs.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("the catalog is empty: there is nothing to retrieve")]
    EmptyCatalog,
    #[error("catalog item id {id:?} appears twice (positions {first} and {second})")]
    DuplicateItem {
        id: String,
        first: usize,
        second: usize,
    },
    #[error(
        "judgment for query {query:?} and item {item:?} has label {label}; labels are 0, 1 or 2"
    )]
    BadLabel {
        query: String,
        item: String,
        label: u8,
    },
    #[error("query {query:?} judges item {item:?} twice, with labels {first} and {second}")]
    ConflictingJudgment {
        query: String,
        item: String,
        first: u8,
        second: u8,
    },
    #[error("there are no judgments")]
    NoJudgments,
    #[error(
        "{count} judgments name items that are not in the catalog (first: query {query:?}, item {item:?})"
    )]
    UnknownItem {
        count: usize,
        query: String,
        item: String,
    },
    #[error(
        "no judged query is left: {unknown} judgments name unknown items and {empty} queries have no judgment"
    )]
    NothingLeft { unknown: usize, empty: usize },
}

/// The items to retrieve from: ids and rendered item texts, in a fixed order (an item's
/// position is its index everywhere in this crate).
#[derive(Clone, Debug, Default)]
pub struct Corpus {
    ids: Vec<String>,
    texts: Vec<String>,
    position: HashMap<String, u32>,
}

impl Corpus {
    /// Builds a catalog from `(id, text)` pairs. Fails on an empty catalog or a repeated id.
    pub fn new<I, S, T>(items: I) -> Result<Self, InputError>
    where
        I: IntoIterator<Item = (S, T)>,
        S: Into<String>,
        T: Into<String>,
    {
        let mut cat = Corpus::default();
        for (id, text) in items {
            let id = id.into();
            let pos = cat.ids.len();
            if let Some(&first) = cat.position.get(&id) {
                return Err(InputError::DuplicateItem {
                    id,
                    first: first as usize,
                    second: pos,
                });
            }
            cat.position.insert(id.clone(), pos as u32);
            cat.ids.push(id);
            cat.texts.push(text.into());
        }
        if cat.ids.is_empty() {
            return Err(InputError::EmptyCatalog);
        }
        Ok(cat)
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Always false for a constructed catalog (an empty one is rejected).
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Item ids in catalog order.
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    /// Item texts in catalog order.
    pub fn texts(&self) -> &[String] {
        &self.texts
    }

    /// The position of an item id.
    pub fn position(&self, id: &str) -> Option<u32> {
        self.position.get(id).copied()
    }
}

/// The judgments of one query.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueryJudgments {
    /// The query text.
    pub query: String,
    /// `(item id, label)` pairs, each item at most once.
    pub judged: Vec<(String, u8)>,
}

/// Judgments grouped by query, in the order queries first appear.
#[derive(Clone, Debug, Default)]
pub struct Qrels {
    queries: Vec<QueryJudgments>,
    slot: HashMap<String, usize>,
    labels: HashMap<(usize, String), u8>,
    duplicates: usize,
}

impl Qrels {
    /// An empty set of judgments.
    pub fn new() -> Self {
        Self::default()
    }

    /// Groups judgments by query. Fails on a label above 2 or on the same (query, item) judged
    /// twice with different labels; a repeated identical judgment is kept once and counted in
    /// [`Qrels::duplicates`].
    pub fn from_judgments<'a>(
        judgments: impl IntoIterator<Item = &'a Judgment>,
    ) -> Result<Self, InputError> {
        let mut q = Qrels::new();
        for j in judgments {
            q.push(j.query.clone(), j.item_id.clone(), j.label)?;
        }
        Ok(q)
    }

    /// Declares a query, possibly without judgments (such queries are counted as left out by
    /// resolution).
    pub fn add_query(&mut self, query: &str) -> usize {
        if let Some(&s) = self.slot.get(query) {
            return s;
        }
        let s = self.queries.len();
        self.queries.push(QueryJudgments {
            query: query.to_string(),
            judged: Vec::new(),
        });
        self.slot.insert(query.to_string(), s);
        s
    }

    /// Adds one judgment.
    pub fn push(&mut self, query: String, item: String, label: u8) -> Result<(), InputError> {
        if label > MAX_LABEL {
            return Err(InputError::BadLabel { query, item, label });
        }
        let s = self.add_query(&query);
        match self.labels.get(&(s, item.clone())) {
            Some(&first) if first != label => {
                return Err(InputError::ConflictingJudgment {
                    query,
                    item,
                    first,
                    second: label,
                });
            }
            Some(_) => {
                self.duplicates += 1;
                return Ok(());
            }
            None => {}
        }
        self.labels.insert((s, item.clone()), label);
        self.queries[s].judged.push((item, label));
        Ok(())
    }

    /// The queries and their judgments.
    pub fn queries(&self) -> &[QueryJudgments] {
        &self.queries
    }

    /// Number of queries.
    pub fn len(&self) -> usize {
        self.queries.len()
    }

    /// True when no query was added.
    pub fn is_empty(&self) -> bool {
        self.queries.is_empty()
    }

    /// Number of judgments (after merging identical repeats).
    pub fn n_judgments(&self) -> usize {
        self.queries.iter().map(|q| q.judged.len()).sum()
    }

    /// Identical repeated judgments that were merged.
    pub fn duplicates(&self) -> usize {
        self.duplicates
    }
}

/// What to do with judgments naming items that are not in the catalog.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownItems {
    /// Leave them out and count them in [`LeftOut`].
    #[default]
    Count,
    /// Fail.
    Error,
}

/// Counts of everything the evaluation left out, and why. Every denominator in the metrics
/// follows from these counts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LeftOut {
    /// Judgments whose item id is not in the catalog.
    pub unknown_item_judgments: usize,
    /// Up to ten of those item ids.
    pub unknown_item_examples: Vec<String>,
    /// Queries without any judgment on a catalog item (none at all, or only unknown items).
    pub queries_without_judgments: usize,
    /// Identical repeated judgments merged into one.
    pub duplicate_judgments: usize,
    /// Queries whose judged gains are all 0: left out of NDCG, lenient recall and rerank NDCG.
    pub queries_all_zero_gain: usize,
    /// Queries without a label-2 item: left out of strict recall.
    pub queries_without_label2: usize,
}

/// A query resolved against the catalog.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedQuery {
    /// The query text.
    pub text: String,
    /// `(item position, label)`, sorted by position.
    pub judged: Vec<(u32, u8)>,
}

impl ResolvedQuery {
    /// The label of an item, if judged.
    pub fn label(&self, item: u32) -> Option<u8> {
        self.judged
            .binary_search_by_key(&item, |&(i, _)| i)
            .ok()
            .map(|p| self.judged[p].1)
    }

    /// Judged items with label >= `min_label`.
    pub fn count_at_least(&self, min_label: u8) -> usize {
        self.judged.iter().filter(|&&(_, l)| l >= min_label).count()
    }
}

/// Judgments resolved against a catalog.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub queries: Vec<ResolvedQuery>,
    pub left_out: LeftOut,
}

/// Resolves judgments against a catalog: item ids become positions; unknown items and empty
/// queries are counted (or rejected, per `unknown`). Fails when no judged query is left.
pub fn resolve(
    catalog: &Corpus,
    qrels: &Qrels,
    unknown: UnknownItems,
) -> Result<Resolved, InputError> {
    if catalog.is_empty() {
        return Err(InputError::EmptyCatalog);
    }
    if qrels.is_empty() {
        return Err(InputError::NoJudgments);
    }
    let mut left_out = LeftOut {
        duplicate_judgments: qrels.duplicates(),
        ..LeftOut::default()
    };
    let mut first_unknown: Option<(String, String)> = None;
    let mut queries = Vec::with_capacity(qrels.len());
    for q in qrels.queries() {
        let mut judged = Vec::with_capacity(q.judged.len());
        for (item, label) in &q.judged {
            match catalog.position(item) {
                Some(p) => judged.push((p, *label)),
                None => {
                    left_out.unknown_item_judgments += 1;
                    if left_out.unknown_item_examples.len() < 10 {
                        left_out.unknown_item_examples.push(item.clone());
                    }
                    if first_unknown.is_none() {
                        first_unknown = Some((q.query.clone(), item.clone()));
                    }
                }
            }
        }
        if judged.is_empty() {
            left_out.queries_without_judgments += 1;
            continue;
        }
        judged.sort_unstable_by_key(|&(p, _)| p);
        if judged.iter().all(|&(_, l)| l == 0) {
            left_out.queries_all_zero_gain += 1;
        }
        if !judged.iter().any(|&(_, l)| l == 2) {
            left_out.queries_without_label2 += 1;
        }
        queries.push(ResolvedQuery {
            text: q.query.clone(),
            judged,
        });
    }
    if unknown == UnknownItems::Error
        && let Some((query, item)) = first_unknown
    {
        return Err(InputError::UnknownItem {
            count: left_out.unknown_item_judgments,
            query,
            item,
        });
    }
    if queries.is_empty() {
        return Err(InputError::NothingLeft {
            unknown: left_out.unknown_item_judgments,
            empty: left_out.queries_without_judgments,
        });
    }
    Ok(Resolved { queries, left_out })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn j(q: &str, i: &str, l: u8) -> Judgment {
        Judgment::new(q, i, l)
    }

    #[test]
    fn catalog_rejects_empty_and_duplicates() {
        assert!(matches!(
            Corpus::new(Vec::<(String, String)>::new()),
            Err(InputError::EmptyCatalog)
        ));
        let e = Corpus::new([("a", "x"), ("b", "y"), ("a", "z")]).unwrap_err();
        assert!(
            matches!(
                e,
                InputError::DuplicateItem {
                    first: 0,
                    second: 2,
                    ..
                }
            ),
            "{e}"
        );
        let c = Corpus::new([("a", "x"), ("b", "y")]).unwrap();
        assert_eq!(c.position("b"), Some(1));
        assert_eq!(c.position("c"), None);
    }

    #[test]
    fn qrels_reject_bad_labels_and_conflicts_and_merge_repeats() {
        assert!(matches!(
            Qrels::from_judgments(&[j("q", "a", 3)]),
            Err(InputError::BadLabel { .. })
        ));
        let e = Qrels::from_judgments(&[j("q", "a", 2), j("q", "a", 1)]).unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
        let q = Qrels::from_judgments(&[j("q", "a", 2), j("r", "a", 0), j("q", "a", 2)]).unwrap();
        assert_eq!(q.len(), 2);
        assert_eq!(q.n_judgments(), 2);
        assert_eq!(q.duplicates(), 1);
        assert_eq!(q.queries()[0].query, "q");
    }

    #[test]
    fn resolution_counts_unknown_items_and_empty_queries() {
        let cat = Corpus::new([("a", "x"), ("b", "y"), ("c", "z")]).unwrap();
        let mut q = Qrels::from_judgments(&[
            j("q1", "c", 2),
            j("q1", "zz", 1),
            j("q1", "a", 0),
            j("q2", "yy", 2),
            j("q3", "b", 0),
            j("q4", "b", 1),
        ])
        .unwrap();
        q.add_query("q5");
        let r = resolve(&cat, &q, UnknownItems::Count).unwrap();
        assert_eq!(r.queries.len(), 3);
        assert_eq!(r.queries[0].judged, vec![(0, 0), (2, 2)]);
        assert_eq!(r.queries[0].label(2), Some(2));
        assert_eq!(r.queries[0].label(1), None);
        assert_eq!(r.left_out.unknown_item_judgments, 2);
        assert_eq!(
            r.left_out.unknown_item_examples,
            vec!["zz".to_string(), "yy".to_string()]
        );
        assert_eq!(r.left_out.queries_without_judgments, 2);
        assert_eq!(r.left_out.queries_all_zero_gain, 1);
        assert_eq!(r.left_out.queries_without_label2, 2);

        let e = resolve(&cat, &q, UnknownItems::Error).unwrap_err();
        assert!(e.to_string().contains("\"zz\""), "{e}");
    }

    #[test]
    fn resolution_fails_when_nothing_is_left() {
        let cat = Corpus::new([("a", "x")]).unwrap();
        let q = Qrels::from_judgments(&[j("q1", "nope", 2)]).unwrap();
        let e = resolve(&cat, &q, UnknownItems::Count).unwrap_err();
        assert!(
            matches!(
                e,
                InputError::NothingLeft {
                    unknown: 1,
                    empty: 1
                }
            ),
            "{e}"
        );
        assert!(matches!(
            resolve(&cat, &Qrels::new(), UnknownItems::Count),
            Err(InputError::NoJudgments)
        ));
    }
}
