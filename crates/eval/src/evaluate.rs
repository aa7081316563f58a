//! One evaluation run (EVALUATION.md): embed (or index) the catalog, retrieve the top 100 per
//! judged query over the whole catalog, and compute every metric of the protocol.

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use strata_data::{Side, TextEncoder};

use crate::bm25::Bm25Index;
use crate::hybrid::{Fusion, hybrid_rank};
use crate::input::{Corpus, LeftOut, Qrels, ResolvedQuery, UnknownItems, resolve};
pub use crate::margins::ScoredPair;
use crate::margins::{MarginReport, hard_pair_margins, label_pair_margins, score_summary_by_label};
use crate::metrics::{Mean, MeanMetric, RetrievalAtK, rerank_ndcg, retrieval_metrics};
use crate::search::{ExactIndex, Hit, HnswParams, VectorSearch, dot};
use crate::stats::Summary;
use crate::thresholds::{Criterion, Thresholds, derive_thresholds};
use crate::tokens::tokens;

/// Retrieval cutoffs reported.
pub const KS: [usize; 3] = [10, 50, 100];
/// Depth of retrieval (the largest cutoff).
pub const K_MAX: usize = 100;

/// The system under evaluation.
#[derive(Clone, Copy)]
pub enum System<'a> {
    /// Embedding retrieval: cosine similarity of L2-normalised embeddings.
    Dense(&'a dyn TextEncoder),
    /// BM25 over item texts.
    Bm25,
    /// Embedding and BM25 candidates (`candidates` from each), re-scored by `fusion`.
    Hybrid {
        encoder: &'a dyn TextEncoder,
        fusion: Fusion,
        candidates: usize,
    },
}

impl System<'_> {
    /// "dense", "bm25" or "hybrid".
    pub fn name(&self) -> &'static str {
        match self {
            System::Dense(_) => "dense",
            System::Bm25 => "bm25",
            System::Hybrid { .. } => "hybrid",
        }
    }

    fn encoder(&self) -> Option<&dyn TextEncoder> {
        match *self {
            System::Dense(e) | System::Hybrid { encoder: e, .. } => Some(e),
            System::Bm25 => None,
        }
    }
}

/// Evaluation settings.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// Token overlap at or above which a judged pair is lexically hard (0.7).
    pub hard_overlap: f64,
    /// Also search with an HNSW index and report its recall against exact search.
    pub ann: Option<HnswParams>,
    /// Judgments naming unknown items: count them (default) or fail.
    pub unknown_items: UnknownItems,
    /// Texts per call to the encoder.
    pub encode_chunk: usize,
    /// Show progress bars on stderr.
    pub progress: bool,
    /// What the thresholds maximise.
    pub threshold_criterion: Criterion,
    /// Where the catalog came from (recorded in metrics.json).
    pub catalog_source: Option<String>,
    /// Where the judgments came from (recorded in metrics.json).
    pub judgments_source: Option<String>,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            hard_overlap: 0.7,
            ann: None,
            unknown_items: UnknownItems::Count,
            encode_chunk: 1024,
            progress: false,
            threshold_criterion: Criterion::BalancedAccuracy,
            catalog_source: None,
            judgments_source: None,
        }
    }
}

/// Where the data came from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DataSources {
    pub catalog: Option<String>,
    pub judgments: Option<String>,
}

/// How many queries each metric averages over.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Denominators {
    /// NDCG@K, lenient recall and rerank NDCG: queries with a positive gain.
    pub ndcg: usize,
    pub recall: usize,
    /// Strict recall: queries with a label-2 item.
    pub recall_strict: usize,
    /// Precision: every evaluated query.
    pub precision: usize,
    pub rerank_ndcg: usize,
    /// Margins: queries with a label-2 and a label-0 hard pair.
    pub margin: usize,
}

/// Wall-clock seconds per stage.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    pub embedding_seconds: f64,
    pub index_seconds: f64,
    pub search_seconds: f64,
    pub metrics_seconds: f64,
    pub total_seconds: f64,
}

/// Approximate search measured against exact search.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnnReport {
    pub params: HnswParams,
    /// Graph build, including the self-search that finds unreachable rows.
    pub build_seconds: f64,
    pub search_seconds: f64,
    /// Rows the graph cannot reach (scored exactly by every search).
    #[serde(default)]
    pub unreachable: usize,
    /// Mean fraction of the exact top K found by the approximate top K.
    #[serde(rename = "recall@10")]
    pub recall_10: f64,
    #[serde(rename = "recall@50")]
    pub recall_50: f64,
    #[serde(rename = "recall@100")]
    pub recall_100: f64,
    /// NDCG@10 of the approximate results.
    #[serde(rename = "ndcg@10")]
    pub ndcg_10: Option<f64>,
}

/// Hybrid settings used.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HybridReport {
    #[serde(flatten)]
    pub fusion: Fusion,
    /// Candidates taken from each retriever before fusion.
    pub candidates: usize,
}

/// Everything `metrics.json` holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// "dense", "bm25" or "hybrid".
    pub system: String,
    /// The encoder's name (a path or a name); `None` for BM25.
    pub model: Option<String>,
    /// The score behind `score_by_label`, the margins and the thresholds: "cosine" for
    /// embedding and hybrid systems, "bm25" for the lexical one (BM25 scores are unbounded
    /// and not comparable to cosines).
    pub score_kind: String,
    pub data: DataSources,
    pub n_queries: usize,
    pub n_items: usize,
    /// Judged (query, item) pairs evaluated.
    pub n_judgments: usize,
    #[serde(rename = "ndcg@10")]
    pub ndcg_10: Option<f64>,
    #[serde(rename = "ndcg@50")]
    pub ndcg_50: Option<f64>,
    #[serde(rename = "ndcg@100")]
    pub ndcg_100: Option<f64>,
    #[serde(rename = "recall@10")]
    pub recall_10: Option<f64>,
    #[serde(rename = "recall@50")]
    pub recall_50: Option<f64>,
    #[serde(rename = "recall@100")]
    pub recall_100: Option<f64>,
    #[serde(rename = "recall_strict@10")]
    pub recall_strict_10: Option<f64>,
    #[serde(rename = "recall_strict@50")]
    pub recall_strict_50: Option<f64>,
    #[serde(rename = "recall_strict@100")]
    pub recall_strict_100: Option<f64>,
    #[serde(rename = "precision@10")]
    pub precision_10: Option<f64>,
    #[serde(rename = "precision@50")]
    pub precision_50: Option<f64>,
    #[serde(rename = "precision@100")]
    pub precision_100: Option<f64>,
    /// NDCG of each query's judged items ranked by the system's score.
    pub rerank_ndcg: Option<f64>,
    /// Mean over qualifying queries of mean score(2) - mean score(0) on hard pairs.
    pub avg_margin: Option<f64>,
    /// Mean over qualifying queries of min score(2) - max score(0) on hard pairs.
    pub worst_margin: Option<f64>,
    /// Mean over qualifying queries of the fraction of (label 2, label 0) hard-pair
    /// combinations the scores order correctly (a per-query AUC, ties half; 0.5 is chance):
    /// the margins without their scale.
    #[serde(default)]
    pub hard_pair_auc: Option<f64>,
    /// Queries with a label-2 and a label-0 hard pair.
    pub margin_queries: usize,
    /// Judged pairs with token overlap >= `hard_overlap`.
    pub hard_pairs: usize,
    pub hard_overlap: f64,
    /// Score distribution per label ("0", "1", "2").
    pub score_by_label: BTreeMap<String, Summary>,
    /// Distribution of per-query average margins over all judged pairs ("2-0", "2-1", "1-0").
    pub margin_by_label_pair: BTreeMap<String, Summary>,
    pub denominators: Denominators,
    pub left_out: LeftOut,
    pub timings: Timings,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ann: Option<AnnReport>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub hybrid: Option<HybridReport>,
}

/// The outcome of [`evaluate`]: the metrics and what the plots, reports and thresholds are
/// drawn from.
#[derive(Clone, Debug)]
pub struct EvalResult {
    pub metrics: Metrics,
    /// Every judged pair with its score and token overlap.
    pub pairs: Vec<ScoredPair>,
    /// Query texts (index = [`ScoredPair::query`]).
    pub queries: Vec<String>,
    /// Catalog item ids (index = [`ScoredPair::item`]).
    pub item_ids: Vec<String>,
    /// Hard-pair margins per qualifying query.
    pub hard_margins: MarginReport,
    /// Per-query average margins over all judged pairs for (2,0), (2,1), (1,0).
    pub label_margins: Vec<((u8, u8), Vec<f64>)>,
    /// Thresholds between strata, or why none could be derived.
    pub thresholds: Result<Thresholds, String>,
    /// The system's top [`K_MAX`] items of each query (index = [`ScoredPair::query`]).
    pub rankings: Vec<Vec<Hit>>,
    /// Each query's own retrieval metrics (index = [`ScoredPair::query`]), for paired
    /// comparisons with standard errors (`strata compare --paired`).
    pub per_query: Vec<QueryScores>,
}

/// One query's retrieval metrics; `None` where the metric is undefined for the query (no
/// relevant judged item).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct QueryScores {
    #[serde(rename = "ndcg@10")]
    pub ndcg_10: Option<f64>,
    #[serde(rename = "ndcg@100")]
    pub ndcg_100: Option<f64>,
    #[serde(rename = "recall@100")]
    pub recall_100: Option<f64>,
}

impl QueryScores {
    /// The metrics [`QueryScores`] holds, by the names metrics.json uses.
    pub const NAMES: [&'static str; 3] = ["ndcg@10", "ndcg@100", "recall@100"];

    /// A metric by its name in [`QueryScores::NAMES`].
    pub fn get(&self, name: &str) -> Option<f64> {
        match name {
            "ndcg@10" => self.ndcg_10,
            "ndcg@100" => self.ndcg_100,
            "recall@100" => self.recall_100,
            _ => None,
        }
    }
}

fn bar(enabled: bool, len: usize, what: &str) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(len as u64);
    b.set_style(
        ProgressStyle::with_template("{msg:>18} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    b.set_message(what.to_string());
    b
}

/// Encodes `texts` in chunks, checking the encoder's output shape.
fn encode_all(
    encoder: &dyn TextEncoder,
    texts: &[&str],
    side: Side,
    opts: &EvalOptions,
) -> anyhow::Result<Vec<f32>> {
    let dim = encoder.dim();
    let what = match side {
        Side::Query => "embedding queries",
        Side::Item => "embedding items",
    };
    let pb = bar(opts.progress, texts.len(), what);
    let mut out = Vec::with_capacity(texts.len() * dim);
    for chunk in texts.chunks(opts.encode_chunk.max(1)) {
        let v = encoder
            .encode(chunk, side)
            .with_context(|| format!("{}: {what}", encoder.name()))?;
        if v.len() != chunk.len() * dim {
            bail!(
                "{}: encoder returned {} floats for {} texts of dimension {dim}",
                encoder.name(),
                v.len(),
                chunk.len()
            );
        }
        out.extend_from_slice(&v);
        pb.inc(chunk.len() as u64);
    }
    pb.finish_and_clear();
    Ok(out)
}

/// Scores every judged pair: cosine for embedding systems, BM25 for the lexical one.
fn pair_scores(
    queries: &[ResolvedQuery],
    query_vecs: Option<(&[f32], &ExactIndex)>,
    bm25: Option<&Bm25Index>,
) -> anyhow::Result<Vec<Vec<f32>>> {
    queries
        .par_iter()
        .enumerate()
        .map(|(qi, q)| match (query_vecs, bm25) {
            (Some((qv, index)), _) => {
                let d = index.dim();
                let qrow = &qv[qi * d..(qi + 1) * d];
                Ok(q.judged
                    .iter()
                    .map(|&(item, _)| dot(qrow, index.row(item as usize)))
                    .collect())
            }
            (None, Some(b)) => {
                let items: Vec<u32> = q.judged.iter().map(|&(i, _)| i).collect();
                Ok(b.score_items(&q.text, &items)?)
            }
            (None, None) => unreachable!("a system has embeddings or a BM25 index"),
        })
        .collect()
}

/// Runs one evaluation.
pub fn evaluate(
    catalog: &Corpus,
    qrels: &Qrels,
    system: System<'_>,
    opts: &EvalOptions,
) -> anyhow::Result<EvalResult> {
    let t_total = Instant::now();
    if let System::Hybrid {
        fusion, candidates, ..
    } = system
    {
        fusion.validate().map_err(anyhow::Error::msg)?;
        if candidates < K_MAX {
            bail!(
                "hybrid search needs at least {K_MAX} candidates per retriever, got {candidates}"
            );
        }
    }
    if opts.ann.is_some() && system.encoder().is_none() {
        bail!("approximate search needs an embedding model (it does not apply to BM25)");
    }
    if opts.ann.is_some() && !cfg!(feature = "ann") {
        bail!("this build of strata-eval has no approximate search (feature `ann` is off)");
    }
    let resolved = resolve(catalog, qrels, opts.unknown_items)?;
    let queries = &resolved.queries;
    let query_texts: Vec<&str> = queries.iter().map(|q| q.text.as_str()).collect();
    let item_texts: Vec<&str> = catalog.texts().iter().map(String::as_str).collect();
    let mut timings = Timings::default();

    // Embeddings and exact index.
    let mut dense: Option<(Vec<f32>, ExactIndex)> = None;
    if let Some(enc) = system.encoder() {
        if enc.dim() == 0 {
            bail!("{}: encoder dimension is 0", enc.name());
        }
        let t = Instant::now();
        let items = encode_all(enc, &item_texts, Side::Item, opts)?;
        let qv = encode_all(enc, &query_texts, Side::Query, opts)?;
        timings.embedding_seconds = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let index = ExactIndex::new(items, enc.dim())
            .with_context(|| format!("{}: item embeddings", enc.name()))?;
        timings.index_seconds += t.elapsed().as_secs_f64();
        dense = Some((qv, index));
    }
    let bm25 = match system {
        System::Bm25 | System::Hybrid { .. } => {
            let t = Instant::now();
            let b = Bm25Index::build(&item_texts)?;
            timings.index_seconds += t.elapsed().as_secs_f64();
            Some(b)
        }
        System::Dense(_) => None,
    };

    // Retrieval.
    let t = Instant::now();
    let hits: Vec<Vec<Hit>> = match system {
        System::Dense(_) => {
            let (qv, index) = dense.as_ref().expect("embeddings");
            index.search(qv, K_MAX).context("query embeddings")?
        }
        System::Bm25 => {
            let b = bm25.as_ref().expect("bm25 index");
            let pb = bar(opts.progress, query_texts.len(), "BM25 search");
            let r = query_texts
                .par_iter()
                .map(|q| {
                    let h = b.search(q, K_MAX);
                    pb.inc(1);
                    h
                })
                .collect::<Result<Vec<_>, _>>()?;
            pb.finish_and_clear();
            r
        }
        System::Hybrid {
            fusion, candidates, ..
        } => {
            let (qv, index) = dense.as_ref().expect("embeddings");
            let b = bm25.as_ref().expect("bm25 index");
            let sem = index.search(qv, candidates).context("query embeddings")?;
            let pb = bar(opts.progress, query_texts.len(), "hybrid search");
            let d = index.dim();
            let r = (0..queries.len())
                .into_par_iter()
                .map(|qi| -> anyhow::Result<Vec<Hit>> {
                    let qrow = &qv[qi * d..(qi + 1) * d];
                    let fused = hybrid_rank(
                        &queries[qi].text,
                        &sem[qi],
                        |i| dot(qrow, index.row(i as usize)),
                        b,
                        candidates,
                        fusion,
                        K_MAX,
                    )?;
                    pb.inc(1);
                    Ok(fused
                        .into_iter()
                        .map(|h| Hit {
                            item: h.item,
                            score: h.score,
                        })
                        .collect())
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            pb.finish_and_clear();
            r
        }
    };
    timings.search_seconds = t.elapsed().as_secs_f64();

    // Optional approximate search, measured against the exact one.
    let ann = match (&opts.ann, &dense) {
        (Some(params), Some((qv, index))) => Some(ann_report(*params, qv, index, &hits, queries)?),
        _ => None,
    };

    // Metrics.
    let t = Instant::now();
    let runs: Vec<Vec<u32>> = hits
        .iter()
        .map(|h| h.iter().map(|x| x.item).collect())
        .collect();
    let retrieval = retrieval_metrics(&runs, queries, &KS);
    let per_query: Vec<QueryScores> = runs
        .iter()
        .zip(queries)
        .map(|(ranked, q)| {
            let at100 = crate::metrics::query_metrics(ranked, q, 100);
            QueryScores {
                ndcg_10: crate::metrics::query_metrics(ranked, q, 10).ndcg,
                ndcg_100: at100.ndcg,
                recall_100: at100.recall,
            }
        })
        .collect();
    let scores = pair_scores(
        queries,
        dense.as_ref().map(|(qv, i)| (qv.as_slice(), i)),
        if dense.is_some() { None } else { bm25.as_ref() },
    )?;
    // Rerank scores: the system's own score of each judged item.
    let rerank_scores: Vec<Vec<f32>> = match system {
        System::Hybrid { fusion, .. } => {
            let b = bm25.as_ref().expect("bm25 index");
            queries
                .par_iter()
                .zip(&scores)
                .map(|(q, sem)| -> anyhow::Result<Vec<f32>> {
                    let items: Vec<u32> = q.judged.iter().map(|&(i, _)| i).collect();
                    let lex = b.score_items(&q.text, &items)?;
                    Ok(fusion.fuse(&items, sem, &lex))
                })
                .collect::<anyhow::Result<_>>()?
        }
        _ => scores.clone(),
    };
    let mut rerank = Mean::default();
    for (q, s) in queries.iter().zip(&rerank_scores) {
        rerank.add(rerank_ndcg(q, s));
    }
    let rerank = rerank.finish();

    let item_token_sets: Vec<Option<HashSet<String>>> = {
        let mut needed = vec![false; catalog.len()];
        for q in queries {
            for &(i, _) in &q.judged {
                needed[i as usize] = true;
            }
        }
        item_texts
            .par_iter()
            .zip(needed)
            .map(|(t, n)| n.then(|| tokens(t).into_iter().collect()))
            .collect()
    };
    let mut pairs = Vec::with_capacity(qrels.n_judgments());
    for (qi, (q, s)) in queries.iter().zip(&scores).enumerate() {
        let qt: HashSet<String> = tokens(&q.text).into_iter().collect();
        for (&(item, label), &score) in q.judged.iter().zip(s) {
            let overlap = if qt.is_empty() {
                0.0
            } else {
                let it = item_token_sets[item as usize]
                    .as_ref()
                    .expect("judged item tokens");
                qt.iter().filter(|t| it.contains(*t)).count() as f64 / qt.len() as f64
            };
            pairs.push(ScoredPair {
                query: qi as u32,
                item,
                label,
                score,
                overlap,
            });
        }
    }
    let hard_margins = hard_pair_margins(&pairs, opts.hard_overlap);
    let label_margins = label_pair_margins(&pairs);
    let score_kind = if dense.is_some() { "cosine" } else { "bm25" };
    let model = system.encoder().map(|e| e.name());
    let thresholds = derive_thresholds(
        &pairs.iter().map(|p| (p.score, p.label)).collect::<Vec<_>>(),
        opts.threshold_criterion,
    )
    .map(|mut t| {
        t.score_kind = score_kind.to_string();
        t.model = model.clone();
        t
    })
    .map_err(|e| e.to_string());
    timings.metrics_seconds = t.elapsed().as_secs_f64();
    timings.total_seconds = t_total.elapsed().as_secs_f64();

    let at = |k: usize| -> &RetrievalAtK { retrieval.iter().find(|r| r.k == k).expect("cutoff") };
    let mean = |m: MeanMetric| m.mean;
    let metrics = Metrics {
        system: system.name().to_string(),
        model,
        score_kind: score_kind.to_string(),
        data: DataSources {
            catalog: opts.catalog_source.clone(),
            judgments: opts.judgments_source.clone(),
        },
        n_queries: queries.len(),
        n_items: catalog.len(),
        n_judgments: pairs.len(),
        ndcg_10: mean(at(10).ndcg),
        ndcg_50: mean(at(50).ndcg),
        ndcg_100: mean(at(100).ndcg),
        recall_10: mean(at(10).recall),
        recall_50: mean(at(50).recall),
        recall_100: mean(at(100).recall),
        recall_strict_10: mean(at(10).recall_strict),
        recall_strict_50: mean(at(50).recall_strict),
        recall_strict_100: mean(at(100).recall_strict),
        precision_10: mean(at(10).precision),
        precision_50: mean(at(50).precision),
        precision_100: mean(at(100).precision),
        rerank_ndcg: rerank.mean,
        avg_margin: hard_margins.avg_margin,
        worst_margin: hard_margins.worst_margin,
        hard_pair_auc: hard_margins.hard_pair_auc,
        margin_queries: hard_margins.queries,
        hard_pairs: hard_margins.hard_pairs,
        hard_overlap: opts.hard_overlap,
        score_by_label: score_summary_by_label(&pairs),
        margin_by_label_pair: label_margins
            .iter()
            .filter_map(|((hi, lo), v)| Summary::of(v).map(|s| (format!("{hi}-{lo}"), s)))
            .collect(),
        denominators: Denominators {
            ndcg: at(10).ndcg.n,
            recall: at(10).recall.n,
            recall_strict: at(10).recall_strict.n,
            precision: at(10).precision.n,
            rerank_ndcg: rerank.n,
            margin: hard_margins.queries,
        },
        left_out: resolved.left_out.clone(),
        timings,
        ann,
        hybrid: match system {
            System::Hybrid {
                fusion, candidates, ..
            } => Some(HybridReport { fusion, candidates }),
            _ => None,
        },
    };
    Ok(EvalResult {
        metrics,
        pairs,
        queries: queries.iter().map(|q| q.text.clone()).collect(),
        item_ids: catalog.ids().to_vec(),
        hard_margins,
        label_margins,
        thresholds,
        rankings: hits,
        per_query,
    })
}

#[cfg(feature = "ann")]
fn ann_report(
    params: HnswParams,
    qv: &[f32],
    index: &ExactIndex,
    exact: &[Vec<Hit>],
    queries: &[ResolvedQuery],
) -> anyhow::Result<AnnReport> {
    use crate::search::{HnswSearch, recall_against};
    let t = Instant::now();
    let hnsw = HnswSearch::build(index.vectors(), index.dim(), params)?;
    let build_seconds = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let approx = hnsw.search(qv, K_MAX)?;
    let search_seconds = t.elapsed().as_secs_f64();
    let runs: Vec<Vec<u32>> = approx
        .iter()
        .map(|h| h.iter().map(|x| x.item).collect())
        .collect();
    Ok(AnnReport {
        params,
        build_seconds,
        search_seconds,
        unreachable: hnsw.orphans().len(),
        recall_10: recall_against(exact, &approx, 10),
        recall_50: recall_against(exact, &approx, 50),
        recall_100: recall_against(exact, &approx, 100),
        ndcg_10: retrieval_metrics(&runs, queries, &[10])[0].ndcg.mean,
    })
}

#[cfg(not(feature = "ann"))]
fn ann_report(
    _params: HnswParams,
    _qv: &[f32],
    _index: &ExactIndex,
    _exact: &[Vec<Hit>],
    _queries: &[ResolvedQuery],
) -> anyhow::Result<AnnReport> {
    bail!("this build of strata-eval has no approximate search (feature `ann` is off)")
}
