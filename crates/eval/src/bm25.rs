//! The lexical baseline: BM25 over item texts with tantivy (k1 = 1.2, b = 0.75, tantivy's
//! constants), tokens = lower-cased runs of letters and digits.
//!
//! A query is the disjunction of its tokens (a repeated token counts once per occurrence, as
//! in Lucene's classic query parser). Items are identified by their position in the text
//! list given to [`Bm25Index::build`].

use rayon::prelude::*;
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, EnableScoring, Occur, Query, TermQuery};
use tantivy::schema::{FAST, Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions};
use tantivy::tokenizer::{LowerCaser, SimpleTokenizer, TextAnalyzer};
use tantivy::{DocAddress, DocId, DocSet, Index, IndexReader, TERMINATED, TantivyDocument, Term};

use crate::search::Hit;

const TOKENIZER: &str = "strata_lower_alnum";
/// Indexing memory budget.
const WRITER_MEMORY: usize = 256 << 20;

/// Errors from the lexical index.
#[derive(Debug, thiserror::Error)]
pub enum Bm25Error {
    #[error("BM25 index: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    #[error("BM25 index: no texts to index")]
    Empty,
    #[error("BM25 index: item {0} is out of range")]
    UnknownItem(u32),
}

/// An in-memory BM25 index.
pub struct Bm25Index {
    field: Field,
    reader: IndexReader,
    analyzer: TextAnalyzer,
    /// Per segment: doc id -> item position.
    positions: Vec<Vec<u32>>,
    /// Item position -> (segment ordinal, doc id).
    addresses: Vec<DocAddress>,
}

fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(LowerCaser)
        .build()
}

impl Bm25Index {
    /// Indexes `texts`; item `i` is `texts[i]`.
    pub fn build<S: AsRef<str>>(texts: &[S]) -> Result<Self, Bm25Error> {
        if texts.is_empty() {
            return Err(Bm25Error::Empty);
        }
        let mut sb = Schema::builder();
        let indexing = TextFieldIndexing::default()
            .set_tokenizer(TOKENIZER)
            .set_index_option(IndexRecordOption::WithFreqs)
            .set_fieldnorms(true);
        let field = sb.add_text_field(
            "text",
            TextOptions::default().set_indexing_options(indexing),
        );
        let pos_field = sb.add_u64_field("pos", FAST);
        let index = Index::create_in_ram(sb.build());
        index.tokenizers().register(TOKENIZER, analyzer());
        let mut writer = index.writer_with_num_threads::<TantivyDocument>(1, WRITER_MEMORY)?;
        for (i, t) in texts.iter().enumerate() {
            let mut doc = TantivyDocument::default();
            doc.add_text(field, t.as_ref());
            doc.add_u64(pos_field, i as u64);
            writer.add_document(doc)?;
        }
        writer.commit()?;
        drop(writer);
        let reader = index.reader()?;
        let searcher = reader.searcher();
        let mut positions = Vec::with_capacity(searcher.segment_readers().len());
        let mut addresses = vec![DocAddress::new(u32::MAX, 0); texts.len()];
        for (seg, sr) in searcher.segment_readers().iter().enumerate() {
            let col = sr.fast_fields().u64("pos")?;
            let map: Vec<u32> = (0..sr.max_doc())
                .map(|d| col.first(d).unwrap_or(u64::MAX) as u32)
                .collect();
            for (d, &p) in map.iter().enumerate() {
                if let Some(a) = addresses.get_mut(p as usize) {
                    *a = DocAddress::new(seg as u32, d as DocId);
                }
            }
            positions.push(map);
        }
        Ok(Bm25Index {
            field,
            reader,
            analyzer: analyzer(),
            positions,
            addresses,
        })
    }

    /// Number of indexed items.
    pub fn len(&self) -> usize {
        self.addresses.len()
    }

    /// Always false (an empty index is rejected).
    pub fn is_empty(&self) -> bool {
        self.addresses.is_empty()
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
}
