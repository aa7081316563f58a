//! Held-out evaluation of a cross-encoder labeler against two trivial references: the
//! majority level of the train split, and two thresholds on the pair's BM25 score (strata-eval's
//! [`Bm25Index`] over the catalog item texts) fitted on the train split for accuracy.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use strata_data::Judgment;
use strata_data::split::Split;
use strata_model::BatchLimits;
use strata_retrieval::bm25::Bm25Index;

use super::data::{LabeledPairs, PairSource, subsample};
use super::labeler::CrossEncoderLabeler;
use super::metrics::{
    CONFIDENCE_THRESHOLDS, ConfidenceRow, ConfusionMatrix, LabelMetrics, ScoreThresholds,
    by_confidence, format_confidence, format_confusion, format_table, level_counts, majority_level,
};
use super::model::NUM_LABELS;
use super::store::argmax;
use super::train::resolve_labeler_dir;

/// What to evaluate and on which pairs.
#[derive(Clone, Debug)]
pub struct LabelerEvalConfig {
    /// A labeler directory, or a run directory (its `best/`, else `model/`).
    pub labeler: PathBuf,
    /// Catalog, judgments and split (use the training run's split).
    pub data: PairSource,
    /// The held-out split evaluated.
    pub split: Split,
    /// Most evaluated pairs (a seeded sample; 0: all).
    pub max_pairs: usize,
    /// Seed of that sample.
    pub seed: u64,
    /// Inference batch limits.
    pub limits: BatchLimits,
    /// Progress bar on stderr.
    pub progress: bool,
}

/// The majority-level reference.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MajorityReference {
    /// The most frequent level of the train split.
    pub level: u8,
    pub metrics: LabelMetrics,
}

/// The BM25-threshold reference.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Bm25Reference {
    /// Thresholds fitted on the train split.
    pub thresholds: ScoreThresholds,
    /// Accuracy of those thresholds on the train split.
    pub train_accuracy: f64,
    pub metrics: LabelMetrics,
}

/// The evaluation report (written as JSON).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LabelerEvalReport {
    pub labeler: String,
    pub identity: String,
    pub split: Split,
    pub pairs: usize,
    pub queries: usize,
    /// Pairs per level in the evaluated split and in the train split.
    pub level_counts: [u64; NUM_LABELS],
    pub train_level_counts: [u64; NUM_LABELS],
    pub cross_encoder: LabelMetrics,
    /// The cross-encoder at confidence thresholds ([`CONFIDENCE_THRESHOLDS`]): what
    /// `strata mine --min-confidence` would keep and how accurate it is.
    pub by_confidence: Vec<ConfidenceRow>,
    pub majority: MajorityReference,
    pub bm25: Bm25Reference,
    pub seconds: f64,
}

impl LabelerEvalReport {
    /// A printable summary: the metrics table and the cross-encoder's confusion matrix.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{} pairs of {} {} queries (levels 0/1/2: {}/{}/{})\n",
            self.pairs,
            self.queries,
            self.split,
            self.level_counts[0],
            self.level_counts[1],
            self.level_counts[2]
        );
        out.push_str(&format_table(&[
            ("cross-encoder", &self.cross_encoder),
            (
                &format!("majority (level {})", self.majority.level),
                &self.majority.metrics,
            ),
            ("bm25 thresholds", &self.bm25.metrics),
        ]));
        out.push_str(&format!(
            "bm25 thresholds: 0 below {:.4}, 2 from {:.4} (train accuracy {:.4})\n",
            self.bm25.thresholds.low, self.bm25.thresholds.high, self.bm25.train_accuracy
        ));
        out.push_str("cross-encoder confusion matrix:\n");
        out.push_str(&format_confusion(&self.cross_encoder.confusion));
        out.push_str(
            "cross-encoder by confidence (pairs whose label has at least this probability):\n",
        );
        out.push_str(&format_confidence(&self.by_confidence));
        out
    }
}

/// BM25 scores of judged pairs (one per judgment, in order).
pub fn bm25_scores(
    index: &Bm25Index,
    data: &LabeledPairs,
    js: &[Judgment],
) -> anyhow::Result<Vec<f64>> {
    let mut by_query: HashMap<&str, Vec<usize>> = HashMap::new();
    for (k, j) in js.iter().enumerate() {
        by_query.entry(j.query.as_str()).or_default().push(k);
    }
    let groups: Vec<(&str, Vec<usize>)> = by_query.into_iter().collect();
    let scored: Vec<(Vec<usize>, Vec<f32>)> = groups
        .into_par_iter()
        .map(|(q, ks)| {
            let items: Vec<u32> = ks
                .iter()
                .map(|&k| {
                    data.catalog
                        .index_of(&js[k].item_id)
                        .expect("judged items are in the catalog") as u32
                })
                .collect();
            let s = index
                .score_items(q, &items)
                .with_context(|| format!("BM25 scores of query {q:?}"))?;
            Ok((ks, s))
        })
        .collect::<anyhow::Result<_>>()?;
    let mut out = vec![0f64; js.len()];
    for (ks, s) in scored {
        for (k, v) in ks.into_iter().zip(s) {
            out[k] = f64::from(v);
        }
    }
    Ok(out)
}

/// Evaluates a labeler on a held-out split with both references.
pub fn evaluate_labeler(cfg: &LabelerEvalConfig) -> anyhow::Result<LabelerEvalReport> {
    let t = std::time::Instant::now();
    let dir = resolve_labeler_dir(&cfg.labeler);
    let cfg_path = dir.join(super::store::LABELER_CONFIG);
    let text = std::fs::read_to_string(&cfg_path).with_context(|| {
        format!(
            "cannot read {} ({} is neither a labeler directory nor a run with one)",
            cfg_path.display(),
            cfg.labeler.display()
        )
    })?;
    let model_cfg: super::model::CrossEncoderConfig = serde_json::from_str(&text)
        .with_context(|| format!("{}: invalid labeler config", cfg_path.display()))?;
    let data = LabeledPairs::load(&cfg.data, &model_cfg.item_text)?;
    let eval_js = subsample(data.split(cfg.split), cfg.max_pairs, cfg.seed);
    anyhow::ensure!(
        !eval_js.is_empty(),
        "the {} split holds no judgments",
        cfg.split
    );
    anyhow::ensure!(
        !data.train.is_empty(),
        "the train split holds no judgments (the references are fitted on it)"
    );
    let truth: Vec<u8> = eval_js.iter().map(|j| j.label).collect();
    let train_truth: Vec<u8> = data.train.iter().map(|j| j.label).collect();

    // The cross-encoder.
    let labeler = CrossEncoderLabeler::load(&dir, &data.catalog)?
        .with_limits(cfg.limits)
        .with_progress(cfg.progress);
    let probs = labeler.text_probabilities(&data.texts(&eval_js))?;
    let cross = ConfusionMatrix::from_pairs(&truth, &argmax(&probs))?.metrics();
    let by_confidence = by_confidence(&truth, &probs, &CONFIDENCE_THRESHOLDS)?;

    // Majority level of the train split.
    let level = majority_level(&train_truth)?;
    let majority = MajorityReference {
        level,
        metrics: ConfusionMatrix::from_pairs(&truth, &vec![level; truth.len()])?.metrics(),
    };

    // BM25 thresholds fitted on the train split.
    let index = Bm25Index::build(&data.item_texts)?;
    let train_scores = bm25_scores(&index, &data, &data.train)?;
    let thresholds = ScoreThresholds::fit(&train_scores, &train_truth)?;
    let train_pred: Vec<u8> = train_scores
        .iter()
        .map(|&s| thresholds.classify(s))
        .collect();
    let train_accuracy = ConfusionMatrix::from_pairs(&train_truth, &train_pred)?.accuracy();
    let eval_scores = bm25_scores(&index, &data, &eval_js)?;
    let eval_pred: Vec<u8> = eval_scores
        .iter()
        .map(|&s| thresholds.classify(s))
        .collect();
    let bm25 = Bm25Reference {
        thresholds,
        train_accuracy,
        metrics: ConfusionMatrix::from_pairs(&truth, &eval_pred)?.metrics(),
    };

    let queries = eval_js
        .iter()
        .map(|j| j.query.as_str())
        .collect::<std::collections::HashSet<_>>()
        .len();
    use strata_data::Labeler;
    Ok(LabelerEvalReport {
        labeler: dir.display().to_string(),
        identity: labeler.identity(),
        split: cfg.split,
        pairs: eval_js.len(),
        queries,
        level_counts: level_counts(&truth),
        train_level_counts: level_counts(&train_truth),
        cross_encoder: cross,
        by_confidence,
        majority,
        bm25,
        seconds: t.elapsed().as_secs_f64(),
    })
}

/// Writes a report as pretty JSON.
pub fn write_report(report: &LabelerEvalReport, path: &Path) -> anyhow::Result<()> {
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(path, serde_json::to_string_pretty(report)?)
        .with_context(|| format!("cannot write {}", path.display()))
}
