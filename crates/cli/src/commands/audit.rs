//! `strata audit`: the engagement audit (paper section 3.2). Flags judgments whose labels
//! disagree with engagement, relabels them with a second labeler and writes the corrected
//! judgments, the report and pairs for human review.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use strata_labeling::audit::{AuditConfig, audit};

use super::label::{LabelerArgs, build_labeler, catalog_texts};

#[derive(Args)]
pub struct AuditArgs {
    /// Catalog with the items' text.
    #[arg(long)]
    pub catalog: PathBuf,
    /// Judgments with engagement (impressions, clicks, add_to_carts).
    #[arg(long)]
    pub judgments: PathBuf,
    /// The second, stronger labeler.
    #[command(flatten)]
    pub labeler: LabelerArgs,
    /// Output directory: judgments.jsonl, audit_report.json, flagged.jsonl, review.jsonl,
    /// labeler_report.json.
    #[arg(long)]
    pub out: PathBuf,
    /// Fraction of judgments audited.
    #[arg(long, default_value_t = 0.3)]
    pub sample: f64,
    /// Seed of the sample.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Flag label-0 pairs at an engagement z-score (within the query) of at least this.
    #[arg(long, default_value_t = 1.0)]
    pub high_z: f64,
    /// Flag label-2 pairs at an engagement z-score of at most this.
    #[arg(long, default_value_t = 0.25)]
    pub low_z: f64,
    /// Flagged pairs written to review.jsonl for human review.
    #[arg(long, default_value_t = 100)]
    pub review: usize,
}

pub fn run(a: AuditArgs) -> anyhow::Result<()> {
    let catalog = strata_data::load_catalog(&a.catalog)?;
    let judgments = strata_data::load_judgments(&a.judgments)?;
    let built = build_labeler(&a.labeler, catalog_texts(&catalog), Some(&catalog))?;
    let cfg = AuditConfig {
        sample_fraction: a.sample,
        seed: a.seed,
        high_z: a.high_z,
        low_z: a.low_z,
        review_sample: a.review,
        ..AuditConfig::default()
    };
    let outcome = audit(&judgments, built.labeler.as_ref(), &cfg)?;
    outcome.write(&a.out)?;
    let p = a.out.join("labeler_report.json");
    std::fs::write(&p, serde_json::to_string_pretty(&built.report())?)
        .with_context(|| format!("writing {}", p.display()))?;
    let r = &outcome.report;
    outln!(
        "audited {} of {} judgments: {} flagged ({} label 0 with high engagement, {} label 2 \
         with low engagement), {} changed -> {}",
        r.sampled,
        r.judgments,
        r.flagged,
        r.flagged_high_engagement_irrelevant,
        r.flagged_low_engagement_relevant,
        r.changed,
        a.out.display()
    );
    Ok(())
}
