//! The engagement audit (paper section 3.2): sample judgments, flag those whose label
//! disagrees with how shoppers engaged with the item for that query, have a second, stronger
//! labeler relabel the flagged pairs, and keep its label where it differs.
//!
//! Engagement is compared within a query, since broad queries click and convert less than
//! narrow ones. For each judged pair with engagement the click-through rate and the
//! add-to-cart rate (per impression) are smoothed towards the query's pooled rates with
//! `smoothing` pseudo-impressions (few impressions say little), combined into a log-rate score,
//! and standardised over the query's pairs (a z-score). A sampled pair is flagged when
//!
//! * its label is 0 and its engagement z-score is at least `high_z` (shoppers want it), or
//! * its label is 2 and its z-score is at most `low_z` (shoppers pass it over: it engages no
//!   better than the query's typical item, most of which are irrelevant).
//!
//! ```no_run
//! use strata_data::marketplace::{Marketplace, MarketplaceConfig};
//! use strata_labeling::audit::{AuditConfig, audit};
//!
//! let m = Marketplace::generate(&MarketplaceConfig { engagement: true, ..Default::default() })?;
//! let outcome = audit(&m.judgments, &m.labeler(), &AuditConfig::default())?;
//! outcome.write("runs/audit".as_ref())?;
//! # anyhow::Ok(())
//! ```

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use strata_data::hash::{combine, fnv1a64, unit};
use strata_data::labeler::label_in_batches;
use strata_data::{Format, Judgment, Labeler, MAX_LABEL, Source, write_judgments_as};

/// Audit settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuditConfig {
    /// Fraction of judgments audited (chosen by a seeded hash of the pair).
    pub sample_fraction: f64,
    pub seed: u64,
    /// Pseudo-impressions pulling a pair's rates towards its query's pooled rates.
    pub smoothing: f64,
    /// Weight of the add-to-cart rate in the engagement score (the rest is click-through).
    pub conversion_weight: f64,
    /// A label-0 pair is flagged at an engagement z-score of at least this.
    pub high_z: f64,
    /// A label-2 pair is flagged at an engagement z-score of at most this.
    pub low_z: f64,
    /// Queries with fewer judged pairs with engagement are not audited.
    pub min_query_pairs: usize,
    /// Flagged pairs written for human review.
    pub review_sample: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            sample_fraction: 0.3,
            seed: 0,
            smoothing: 20.0,
            conversion_weight: 0.25,
            high_z: 1.0,
            low_z: 0.25,
            min_query_pairs: 4,
            review_sample: 100,
        }
    }
}

impl AuditConfig {
    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.sample_fraction),
            "sample_fraction {} must be in [0, 1]",
            self.sample_fraction
        );
        anyhow::ensure!(self.smoothing > 0.0, "smoothing must be positive");
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.conversion_weight),
            "conversion_weight must be in [0, 1]"
        );
        anyhow::ensure!(
            self.min_query_pairs >= 2,
            "min_query_pairs must be at least 2"
        );
        Ok(())
    }

    /// Whether the pair is in the audited sample.
    pub fn sampled(&self, query: &str, item_id: &str) -> bool {
        let h = combine(&[
            self.seed,
            fnv1a64(query.as_bytes()),
            fnv1a64(item_id.as_bytes()),
        ]);
        unit(h) < self.sample_fraction
    }
}

/// Why a pair was flagged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Disagreement {
    /// Label 0 with high engagement.
    HighEngagementIrrelevant,
    /// Label 2 with low engagement.
    LowEngagementRelevant,
}

/// A flagged pair with its engagement evidence and the second labeler's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlaggedPair {
    /// Index of the judgment in the input.
    pub index: usize,
    pub query: String,
    pub item_id: String,
    pub label: u8,
    pub reason: Disagreement,
    /// Engagement z-score within the query.
    pub z: f64,
    pub impressions: u32,
    pub clicks: u32,
    pub add_to_carts: u32,
    /// Smoothed click-through and add-to-cart rates.
    pub ctr: f64,
    pub atc_rate: f64,
    /// The second labeler's label (`None`: it abstained).
    pub second_label: Option<u8>,
}

/// Counts of an audit.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditReport {
    pub config: AuditConfig,
    pub second_labeler: String,
    pub judgments: usize,
    pub with_engagement: usize,
    /// Judgments of queries with enough engagement to compare against.
    pub auditable: usize,
    pub sampled: usize,
    pub flagged: usize,
    pub flagged_high_engagement_irrelevant: usize,
    pub flagged_low_engagement_relevant: usize,
    /// Flagged pairs the second labeler abstained on (kept as they were).
    pub second_abstained: usize,
    /// Flagged pairs whose label the second labeler changed.
    pub changed: usize,
    /// Flagged pairs by original label (row) and second label (column).
    pub change_matrix: [[usize; 3]; 3],
}

/// The corrected judgments, the report and the flagged pairs of an audit.
#[derive(Clone, Debug)]
pub struct AuditOutcome {
    /// The input judgments, with changed labels replaced and marked [`Source::Audit`].
    pub judgments: Vec<Judgment>,
    pub report: AuditReport,
    pub flagged: Vec<FlaggedPair>,
}

/// Engagement evidence of one pair.
struct Evidence {
    index: usize,
    score: f64,
    ctr: f64,
    atc_rate: f64,
}

/// Flags the sampled judgments whose labels disagree with their engagement (no relabeling).
/// Also returns (with engagement, auditable, sampled) counts.
pub fn flag(
    judgments: &[Judgment],
    cfg: &AuditConfig,
) -> anyhow::Result<(Vec<FlaggedPair>, [usize; 3])> {
    cfg.validate()?;
    for (i, j) in judgments.iter().enumerate() {
        anyhow::ensure!(
            j.label <= MAX_LABEL,
            "judgment #{} ({:?}, {:?}): field `label`: {} is not 0, 1 or 2",
            i + 1,
            j.query,
            j.item_id,
            j.label
        );
    }
    let mut by_query: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut with_engagement = 0;
    for (i, j) in judgments.iter().enumerate() {
        if j.engagement.is_some_and(|e| e.impressions > 0) {
            with_engagement += 1;
            by_query.entry(j.query.as_str()).or_default().push(i);
        }
    }
    anyhow::ensure!(
        with_engagement > 0,
        "no judgment has engagement signals (impressions, clicks, add-to-carts) to audit against"
    );
    let mut queries: Vec<(&str, Vec<usize>)> = by_query.into_iter().collect();
    queries.sort_unstable_by(|a, b| a.1[0].cmp(&b.1[0]));
    let (mut auditable, mut sampled) = (0, 0);
    let mut flagged = Vec::new();
    for (_, idx) in queries {
        if idx.len() < cfg.min_query_pairs {
            continue;
        }
        let eng = |i: usize| judgments[i].engagement.expect("filtered on engagement");
        let (mut imp, mut clk, mut atc) = (0f64, 0f64, 0f64);
        for &i in &idx {
            let e = eng(i);
            imp += f64::from(e.impressions);
            clk += f64::from(e.clicks);
            atc += f64::from(e.add_to_carts);
        }
        // Pooled rates with a floor, so a query without clicks still has finite logs.
        let ctr_q = (clk + 0.5) / (imp + 1.0);
        let atc_q = (atc + 0.5) / (imp + 1.0);
        let a = cfg.smoothing;
        let ev: Vec<Evidence> = idx
            .iter()
            .map(|&i| {
                let e = eng(i);
                let n = f64::from(e.impressions);
                let ctr = (f64::from(e.clicks) + a * ctr_q) / (n + a);
                let atc_rate = (f64::from(e.add_to_carts) + a * atc_q) / (n + a);
                let w = cfg.conversion_weight;
                Evidence {
                    index: i,
                    score: (1.0 - w) * ctr.ln() + w * atc_rate.ln(),
                    ctr,
                    atc_rate,
                }
            })
            .collect();
        let n = ev.len() as f64;
        let mean = ev.iter().map(|e| e.score).sum::<f64>() / n;
        let sd = (ev.iter().map(|e| (e.score - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
        if sd.is_nan() || sd <= 1e-9 {
            continue;
        }
        auditable += ev.len();
        for e in ev {
            let j = &judgments[e.index];
            if !cfg.sampled(&j.query, &j.item_id) {
                continue;
            }
            sampled += 1;
            let z = (e.score - mean) / sd;
            let reason = match j.label {
                0 if z >= cfg.high_z => Disagreement::HighEngagementIrrelevant,
                2 if z <= cfg.low_z => Disagreement::LowEngagementRelevant,
                _ => continue,
            };
            let g = eng(e.index);
            flagged.push(FlaggedPair {
                index: e.index,
                query: j.query.clone(),
                item_id: j.item_id.clone(),
                label: j.label,
                reason,
                z,
                impressions: g.impressions,
                clicks: g.clicks,
                add_to_carts: g.add_to_carts,
                ctr: e.ctr,
                atc_rate: e.atc_rate,
                second_label: None,
            });
        }
    }
    flagged.sort_unstable_by_key(|f| f.index);
    Ok((flagged, [with_engagement, auditable, sampled]))
}

/// Audits `judgments`: flags disagreements ([`flag`]), relabels the flagged pairs with
/// `second` and applies its labels where they differ.
pub fn audit(
    judgments: &[Judgment],
    second: &dyn Labeler,
    cfg: &AuditConfig,
) -> anyhow::Result<AuditOutcome> {
    let (mut flagged, [with_engagement, auditable, sampled]) = flag(judgments, cfg)?;
    let pairs: Vec<(String, String)> = flagged
        .iter()
        .map(|f| (f.query.clone(), f.item_id.clone()))
        .collect();
    let labels = label_in_batches(second, &pairs, 64, &strata_data::progress::NoProgress)
        .with_context(|| format!("relabeling flagged pairs with {}", second.identity()))?;
    let mut out = judgments.to_vec();
    let mut report = AuditReport {
        config: cfg.clone(),
        second_labeler: second.identity(),
        judgments: judgments.len(),
        with_engagement,
        auditable,
        sampled,
        flagged: flagged.len(),
        ..AuditReport::default()
    };
    for (f, l) in flagged.iter_mut().zip(labels) {
        match f.reason {
            Disagreement::HighEngagementIrrelevant => {
                report.flagged_high_engagement_irrelevant += 1
            }
            Disagreement::LowEngagementRelevant => report.flagged_low_engagement_relevant += 1,
        }
        f.second_label = l;
        let Some(l) = l else {
            report.second_abstained += 1;
            continue;
        };
        anyhow::ensure!(
            l <= MAX_LABEL,
            "labeler {} returned label {l}",
            second.identity()
        );
        report.change_matrix[usize::from(f.label)][usize::from(l)] += 1;
        if l != f.label {
            report.changed += 1;
            let j = &mut out[f.index];
            j.label = l;
            j.source = Some(Source::Audit);
        }
    }
    Ok(AuditOutcome {
        judgments: out,
        report,
        flagged,
    })
}

impl AuditOutcome {
    /// Writes `judgments.jsonl` (corrected), `audit_report.json`, `flagged.jsonl` (every
    /// flagged pair) and `review.jsonl` (a seeded sample of `review_sample` flagged pairs for
    /// human review) into `dir`; returns the paths.
    pub fn write(&self, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut written = Vec::new();
        let p = dir.join("judgments.jsonl");
        write_judgments_as(&p, &self.judgments, Format::Jsonl)?;
        written.push(p);
        let p = dir.join("audit_report.json");
        std::fs::write(&p, serde_json::to_string_pretty(&self.report)?)
            .with_context(|| format!("writing {}", p.display()))?;
        written.push(p);
        let p = dir.join("flagged.jsonl");
        write_jsonl(&p, self.flagged.iter())?;
        written.push(p);
        let p = dir.join("review.jsonl");
        write_jsonl(&p, self.review_sample().into_iter())?;
        written.push(p);
        Ok(written)
    }

    /// A seeded sample of the flagged pairs for human review (at most `review_sample`).
    pub fn review_sample(&self) -> Vec<&FlaggedPair> {
        let seed = self.report.config.seed ^ 0x7265_7669_6577;
        let mut keyed: Vec<(u64, &FlaggedPair)> = self
            .flagged
            .iter()
            .map(|f| (combine(&[seed, f.index as u64]), f))
            .collect();
        keyed.sort_unstable_by_key(|k| k.0);
        keyed.truncate(self.report.config.review_sample);
        let mut sample: Vec<&FlaggedPair> = keyed.into_iter().map(|k| k.1).collect();
        sample.sort_unstable_by_key(|f| f.index);
        sample
    }
}

fn write_jsonl<'a>(path: &Path, rows: impl Iterator<Item = &'a FlaggedPair>) -> anyhow::Result<()> {
    let mut w = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    for r in rows {
        serde_json::to_writer(&mut w, r)?;
        w.write_all(b"\n")?;
    }
    w.flush()
        .with_context(|| format!("writing {}", path.display()))
}
