//! The lexical baseline: BM25 over item texts with tantivy (k1 = 1.2, b = 0.75, tantivy's
//! constants), tokens = lower-cased runs of letters and digits.
//!
//! A query is the disjunction of its tokens (a repeated token counts once per occurrence, as
//! in Lucene's classic query parser). Items are identified by their position: the index in
//! the text list given to [`Bm25Index::build`], or the position given with each text to
//! [`Bm25Index::create`] and [`Bm25Index::update`] (an on-disk index used by the server, with
//! the same scoring).

use rayon::prelude::*;
use std::path::Path;
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, EnableScoring, Occur, Query, TermQuery};

use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::tokenizer::{LowerCaser, SimpleTokenizer, TextAnalyzer};
use tantivy::{
    DocAddress, DocId, DocSet, Index, IndexReader, ReloadPolicy, TERMINATED, TantivyDocument, Term,
};

use crate::search::Hit;

const TOKENIZER: &str = "strata_lower_alnum";
/// Indexing memory budget.
const WRITER_MEMORY: usize = 256 << 20;
/// Field names.
const TEXT_FIELD: &str = "text";
const POS_FIELD: &str = "pos";
/// No item at this position.
const NO_ADDRESS: DocAddress = DocAddress {
    segment_ord: u32::MAX,
    doc_id: 0,
};

/// Errors from the lexical index.
#[derive(Debug, thiserror::Error)]
pub enum Bm25Error {
    #[error("BM25 index: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    #[error("BM25 index in {path}: {source}")]
    Open {
        path: String,
        source: tantivy::TantivyError,
    },
    #[error("BM25 index: no texts to index")]
    Empty,
    #[error("BM25 index: item {0} is out of range")]
    UnknownItem(u32),
    #[error("BM25 index: {0}")]
    Io(#[from] std::io::Error),
}

/// A BM25 index, in memory ([`Bm25Index::build`]) or in a directory ([`Bm25Index::create`],
/// [`Bm25Index::open`], [`Bm25Index::update`]); both score identically.
pub struct Bm25Index {
    index: Index,
    field: Field,
    reader: IndexReader,
    analyzer: TextAnalyzer,
    /// Per segment: doc id -> item position.
    positions: Vec<Vec<u32>>,
    /// Item position -> (segment ordinal, doc id); [`NO_ADDRESS`] where no item is.
    addresses: Vec<DocAddress>,
    /// Items indexed (positions with an address).
    live: usize,
}

fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(LowerCaser)
        .build()
}

fn schema() -> Schema {
    let mut sb = Schema::builder();
    let indexing = TextFieldIndexing::default()
        .set_tokenizer(TOKENIZER)
        .set_index_option(IndexRecordOption::WithFreqs)
        .set_fieldnorms(true);
    sb.add_text_field(
        TEXT_FIELD,
        TextOptions::default().set_indexing_options(indexing),
    );
    sb.add_u64_field(POS_FIELD, FAST | INDEXED);
    sb.build()
}

fn add_all<'a>(
    index: &Index,
    items: impl IntoIterator<Item = (u32, &'a str)>,
    deletes: &[u32],
) -> Result<usize, Bm25Error> {
    let schema = index.schema();
    let field = schema.get_field(TEXT_FIELD)?;
    let pos_field = schema.get_field(POS_FIELD)?;
    let mut writer = index.writer_with_num_threads::<TantivyDocument>(1, WRITER_MEMORY)?;
    for &d in deletes {
        writer.delete_term(Term::from_field_u64(pos_field, d as u64));
    }
    let mut n = 0;
    for (pos, text) in items {
        let mut doc = TantivyDocument::default();
        doc.add_text(field, text);
        doc.add_u64(pos_field, pos as u64);
        writer.add_document(doc)?;
        n += 1;
    }
    writer.commit()?;
    // One segment without deleted documents: the corpus statistics (document count, average
    // length, document frequencies) then equal those of a fresh build over the same items.
    let segments = index.searchable_segment_ids()?;
    if !segments.is_empty() && (segments.len() > 1 || !deletes.is_empty()) {
        writer.merge(&segments).wait()?;
    }
    writer.wait_merging_threads()?;
    Ok(n)
}

impl Bm25Index {
    /// Indexes `texts` in memory; item `i` is `texts[i]`.
    pub fn build<S: AsRef<str>>(texts: &[S]) -> Result<Self, Bm25Error> {
        if texts.is_empty() {
            return Err(Bm25Error::Empty);
        }
        let index = Index::create_in_ram(schema());
        index.tokenizers().register(TOKENIZER, analyzer());
        add_all(
            &index,
            texts
                .iter()
                .enumerate()
                .map(|(i, t)| (i as u32, t.as_ref())),
            &[],
        )?;
        Self::from_index(index)
    }

    /// Indexes `(position, text)` pairs in a new index in `dir` (created if needed; it must not
    /// hold an index yet).
    pub fn create<'a>(
        dir: &Path,
        items: impl IntoIterator<Item = (u32, &'a str)>,
    ) -> Result<Self, Bm25Error> {
        std::fs::create_dir_all(dir)?;
        let index = Index::create_in_dir(dir, schema()).map_err(|source| Bm25Error::Open {
            path: dir.display().to_string(),
            source,
        })?;
        index.tokenizers().register(TOKENIZER, analyzer());
        if add_all(&index, items, &[])? == 0 {
            return Err(Bm25Error::Empty);
        }
        Self::from_index(index)
    }

    /// Opens an index written by [`Bm25Index::create`] (memory-mapped).
    pub fn open(dir: &Path) -> Result<Self, Bm25Error> {
        let index = Index::open_in_dir(dir).map_err(|source| Bm25Error::Open {
            path: dir.display().to_string(),
            source,
        })?;
        index.tokenizers().register(TOKENIZER, analyzer());
        Self::from_index(index)
    }

    /// Deletes the items at `deletes` and adds `(position, text)` pairs (a replaced item is
    /// deleted and added again), then merges the index into one segment so that scores equal
    /// those of a fresh build over the resulting items. Returns the reopened index.
    pub fn update<'a>(
        self,
        deletes: &[u32],
        adds: impl IntoIterator<Item = (u32, &'a str)>,
    ) -> Result<Self, Bm25Error> {
        let index = self.index.clone();
        drop(self);
        add_all(&index, adds, deletes)?;
        Self::from_index(index)
    }

    fn from_index(index: Index) -> Result<Self, Bm25Error> {
        let schema = index.schema();
        let field = schema.get_field(TEXT_FIELD)?;
        // The index changes only through `update`, which reopens it: no reload watcher.
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let searcher = reader.searcher();
        let mut positions = Vec::with_capacity(searcher.segment_readers().len());
        let mut addresses: Vec<DocAddress> = Vec::new();
        let mut live = 0;
        for (seg, sr) in searcher.segment_readers().iter().enumerate() {
            let col = sr.fast_fields().u64(POS_FIELD)?;
            let map: Vec<u32> = (0..sr.max_doc())
                .map(|d| col.first(d).unwrap_or(u64::MAX) as u32)
                .collect();
            for (d, &p) in map.iter().enumerate() {
                if sr.is_deleted(d as DocId) || p == u32::MAX {
                    continue;
                }
                let p = p as usize;
                if addresses.len() <= p {
                    addresses.resize(p + 1, NO_ADDRESS);
                }
                addresses[p] = DocAddress::new(seg as u32, d as DocId);
                live += 1;
            }
            positions.push(map);
        }
        Ok(Bm25Index {
            index,
            field,
            reader,
            analyzer: analyzer(),
            positions,
            addresses,
            live,
        })
    }

    /// Number of indexed items.
    pub fn len(&self) -> usize {
        self.live
    }

    /// True when no item is indexed (only possible after deleting every item).
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Whether an item is indexed at `position`.
    pub fn contains(&self, position: u32) -> bool {
        self.addresses
            .get(position as usize)
            .is_some_and(|a| a.segment_ord != u32::MAX)
    }

    /// The analysed tokens of a text, as the index sees them.
    pub fn analyze(&self, text: &str) -> Vec<String> {
        let mut a = self.analyzer.clone();
        let mut stream = a.token_stream(text);
        let mut out = Vec::new();
        while stream.advance() {
            out.push(stream.token().text.clone());
        }
        out
    }

    fn query(&self, text: &str) -> Option<BooleanQuery> {
        let clauses: Vec<(Occur, Box<dyn Query>)> = self
            .analyze(text)
            .into_iter()
            .map(|t| {
                let q: Box<dyn Query> = Box::new(TermQuery::new(
                    Term::from_field_text(self.field, &t),
                    IndexRecordOption::WithFreqs,
                ));
                (Occur::Should, q)
            })
            .collect();
        (!clauses.is_empty()).then(|| BooleanQuery::new(clauses))
    }

    /// The `k` best-scoring items for `query` (items matching no query token are never
    /// returned, so fewer than `k` may come back). Ties keep catalog order.
    pub fn search(&self, query: &str, k: usize) -> Result<Vec<Hit>, Bm25Error> {
        let Some(q) = self.query(query) else {
            return Ok(Vec::new());
        };
        if k == 0 {
            return Ok(Vec::new());
        }
        let searcher = self.reader.searcher();
        let top = searcher.search(&q, &TopDocs::with_limit(k).order_by_score())?;
        let mut hits: Vec<Hit> = top
            .into_iter()
            .map(|(score, a)| Hit {
                item: self.positions[a.segment_ord as usize][a.doc_id as usize],
                score,
            })
            .collect();
        hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.item.cmp(&b.item)));
        Ok(hits)
    }

    /// [`Bm25Index::search`] for many queries, in parallel.
    pub fn search_many<S: AsRef<str> + Sync>(
        &self,
        queries: &[S],
        k: usize,
    ) -> Result<Vec<Vec<Hit>>, Bm25Error> {
        queries
            .par_iter()
            .map(|q| self.search(q.as_ref(), k))
            .collect()
    }

    /// BM25 scores of `query` for the given items (0 for items matching no query token).
    pub fn score_items(&self, query: &str, items: &[u32]) -> Result<Vec<f32>, Bm25Error> {
        let mut scores = vec![0f32; items.len()];
        let Some(q) = self.query(query) else {
            return Ok(scores);
        };
        let searcher = self.reader.searcher();
        let weight = q.weight(EnableScoring::enabled_from_searcher(&searcher))?;
        // (segment, doc, slot), visited in doc order per segment.
        let mut targets = Vec::with_capacity(items.len());
        for (slot, &item) in items.iter().enumerate() {
            let a = self
                .addresses
                .get(item as usize)
                .filter(|a| a.segment_ord != u32::MAX)
                .ok_or(Bm25Error::UnknownItem(item))?;
            targets.push((a.segment_ord, a.doc_id, slot));
        }
        targets.sort_unstable();
        for seg_targets in targets.chunk_by(|a, b| a.0 == b.0) {
            let seg = seg_targets[0].0;
            let mut scorer = weight.scorer(searcher.segment_reader(seg), 1.0)?;
            for &(_, doc, slot) in seg_targets {
                let cur = scorer.doc();
                if cur == TERMINATED {
                    break;
                }
                if cur > doc {
                    continue;
                }
                if scorer.seek(doc) == doc {
                    scores[slot] = scorer.score();
                }
            }
        }
        Ok(scores)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Vec<&'static str> {
        vec![
            "Cordless Drill Driver Kit",                       // 0
            "Drill Bit Set for Metal",                         // 1
            "Hammer with Fiberglass Handle",                   // 2
            "drill drill drill Press Stand",                   // 3
            "Garden Hose 50 ft",                               // 4
            "Cordless Impact Driver with Battery and Charger", // 5
        ]
    }

    /// BM25 by the textbook formula (tantivy's idf and length normalisation, exact lengths).
    fn reference(texts: &[&str], query: &str) -> Vec<f64> {
        let docs: Vec<Vec<String>> = texts.iter().map(|t| crate::tokens::tokens(t)).collect();
        let n = docs.len() as f64;
        let avg = docs.iter().map(|d| d.len()).sum::<usize>() as f64 / n;
        let q = crate::tokens::tokens(query);
        docs.iter()
            .map(|d| {
                q.iter()
                    .map(|t| {
                        let df = docs.iter().filter(|d| d.contains(t)).count() as f64;
                        let tf = d.iter().filter(|x| *x == t).count() as f64;
                        if tf == 0.0 {
                            return 0.0;
                        }
                        let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
                        idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * d.len() as f64 / avg))
                    })
                    .sum()
            })
            .collect()
    }

    #[test]
    fn ranks_a_small_catalog_in_the_known_order() {
        let texts = catalog();
        let idx = Bm25Index::build(&texts).unwrap();
        assert_eq!(
            idx.analyze("Cordless-DRILL 18V"),
            vec!["cordless", "drill", "18v"]
        );
        let hits = idx.search("cordless drill", 10).unwrap();
        let order: Vec<u32> = hits.iter().map(|h| h.item).collect();
        // Item 0 has both terms; item 3 repeats "drill" thrice; item 5 has "cordless" in a long
        // text; item 1 has "drill" once. Items 2 and 4 match nothing.
        assert_eq!(order, vec![0, 3, 5, 1]);
        let want = reference(&texts, "cordless drill");
        for h in &hits {
            let w = want[h.item as usize];
            assert!(
                (h.score as f64 - w).abs() < 0.05 * w,
                "item {}: {} vs {}",
                h.item,
                h.score,
                w
            );
        }
        assert!(idx.search("", 10).unwrap().is_empty());
        assert!(idx.search("chainsaw", 10).unwrap().is_empty());
        assert_eq!(idx.search("cordless drill", 2).unwrap().len(), 2);
    }

    #[test]
    fn scores_of_given_items_match_search_scores() {
        let texts = catalog();
        let idx = Bm25Index::build(&texts).unwrap();
        let hits = idx.search("cordless drill", 10).unwrap();
        let items = [5, 2, 0, 3, 1, 4];
        let scores = idx.score_items("cordless drill", &items).unwrap();
        for (&item, &s) in items.iter().zip(&scores) {
            let expected = hits
                .iter()
                .find(|h| h.item == item)
                .map_or(0.0, |h| h.score);
            assert!(
                (s - expected).abs() < 1e-6,
                "item {item}: {s} vs {expected}"
            );
        }
        assert!(matches!(
            idx.score_items("drill", &[99]),
            Err(Bm25Error::UnknownItem(99))
        ));
        assert!(matches!(
            Bm25Index::build::<&str>(&[]),
            Err(Bm25Error::Empty)
        ));
    }

    #[test]
    fn on_disk_index_scores_like_the_in_memory_one_and_updates_like_a_fresh_build() {
        let texts = catalog();
        let dir = tempfile::tempdir().unwrap();
        let mem = Bm25Index::build(&texts).unwrap();
        let disk = Bm25Index::create(
            &dir.path().join("a"),
            texts.iter().enumerate().map(|(i, t)| (i as u32, *t)),
        )
        .unwrap();
        let reopened = Bm25Index::open(&dir.path().join("a")).unwrap();
        for q in ["cordless drill", "garden hose", "driver"] {
            let a = mem.search(q, 10).unwrap();
            assert_eq!(a, disk.search(q, 10).unwrap(), "{q}");
            assert_eq!(a, reopened.search(q, 10).unwrap(), "{q}");
        }
        drop(disk);
        // Delete item 1, replace item 3 (delete, re-add at position 6), add item 7.
        let updated = reopened
            .update(
                &[1, 3],
                [(6, "Drill Press Stand, heavy"), (7, "Cordless Leaf Blower")],
            )
            .unwrap();
        assert_eq!(updated.len(), 6);
        assert!(!updated.contains(1) && !updated.contains(3) && updated.contains(7));
        let final_texts: Vec<(u32, &str)> = vec![
            (0, texts[0]),
            (2, texts[2]),
            (4, texts[4]),
            (5, texts[5]),
            (6, "Drill Press Stand, heavy"),
            (7, "Cordless Leaf Blower"),
        ];
        let fresh = Bm25Index::create(&dir.path().join("b"), final_texts).unwrap();
        for q in ["cordless drill", "drill press", "blower", "hammer"] {
            let a = updated.search(q, 10).unwrap();
            let b = fresh.search(q, 10).unwrap();
            assert_eq!(a.len(), b.len(), "{q}");
            for (x, y) in a.iter().zip(&b) {
                assert_eq!(x.item, y.item, "{q}");
                assert!((x.score - y.score).abs() < 1e-6, "{q}: {x:?} vs {y:?}");
            }
        }
        assert!(matches!(
            updated.score_items("drill", &[3]),
            Err(Bm25Error::UnknownItem(3))
        ));
        assert!(Bm25Index::open(&dir.path().join("missing")).is_err());
    }
}
