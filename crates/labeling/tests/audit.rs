//! The engagement audit on the synthetic marketplace: engagement follows the clean (policy)
//! labels with position bias and noise, the judgments carry planted label noise, and the
//! oracle knows which labels are wrong.

use strata_data::Labeler;
use strata_data::marketplace::{
    Marketplace, MarketplaceConfig, Oracle, OracleConfig, OracleLabeler,
};
use strata_data::{Judgment, Source};
use strata_labeling::audit::{AuditConfig, Disagreement, audit, flag};

fn marketplace() -> Marketplace {
    Marketplace::generate(&MarketplaceConfig {
        items: 2_000,
        queries: 400,
        judgments_per_query: 20,
        label_noise: 0.124,
        seed: 7,
        engagement: true,
        ..MarketplaceConfig::default()
    })
    .unwrap()
}

fn clean_labels(m: &Marketplace) -> Vec<u8> {
    let oracle = m.labeler();
    m.judgments
        .iter()
        .map(|j| oracle.clean_label(&j.query, &j.item_id).unwrap())
        .collect()
}

fn error_rate(judgments: &[Judgment], clean: &[u8]) -> f64 {
    let wrong = judgments
        .iter()
        .zip(clean)
        .filter(|(j, c)| j.label != **c)
        .count();
    wrong as f64 / judgments.len() as f64
}

/// A second labeler with its own (lower) noise: the policy with `noise` under another seed.
fn second_labeler(m: &Marketplace, noise: f64) -> OracleLabeler {
    OracleLabeler::new(
        Oracle::new(OracleConfig { noise, seed: 991 }).unwrap(),
        &m.catalog,
    )
}

#[test]
fn the_simulation_plants_recoverable_noise_and_biased_engagement() {
    let m = marketplace();
    let clean = clean_labels(&m);
    let rate = error_rate(&m.judgments, &clean);
    assert!((0.09..0.16).contains(&rate), "planted error rate {rate}");
    // Engagement follows the clean labels: mean click-through rises with the clean label,
    // whatever the (noisy) judged label says.
    let mut ctr = [(0f64, 0f64); 3];
    for (j, &c) in m.judgments.iter().zip(&clean) {
        let e = j.engagement.unwrap();
        ctr[usize::from(c)].0 += f64::from(e.clicks);
        ctr[usize::from(c)].1 += f64::from(e.impressions);
    }
    let ctr: Vec<f64> = ctr.iter().map(|(c, i)| c / i).collect();
    assert!(
        ctr[0] < ctr[1] && ctr[1] < ctr[2],
        "CTR by clean label {ctr:?}"
    );
    // Position bias: within a query, items shown higher (more impressions) click more even at
    // the same clean label.
    let (mut top, mut low) = ((0f64, 0f64), (0f64, 0f64));
    let mut by_query: std::collections::HashMap<&str, Vec<usize>> = Default::default();
    for (i, j) in m.judgments.iter().enumerate() {
        by_query.entry(j.query.as_str()).or_default().push(i);
    }
    for idx in by_query.values() {
        let mut zeros: Vec<_> = idx
            .iter()
            .filter(|&&i| clean[i] == 0)
            .map(|&i| m.judgments[i].engagement.unwrap())
            .collect();
        if zeros.len() < 4 {
            continue;
        }
        zeros.sort_by_key(|e| std::cmp::Reverse(e.impressions));
        let h = zeros.len() / 2;
        for e in &zeros[..h] {
            top.0 += f64::from(e.clicks);
            top.1 += f64::from(e.impressions);
        }
        for e in &zeros[h..] {
            low.0 += f64::from(e.clicks);
            low.1 += f64::from(e.impressions);
        }
    }
    assert!(
        top.0 / top.1 > low.0 / low.1,
        "no position bias: {} vs {}",
        top.0 / top.1,
        low.0 / low.1
    );
}

#[test]
fn the_audit_finds_planted_errors_and_lowers_the_error_rate() {
    let m = marketplace();
    let clean = clean_labels(&m);
    let cfg = AuditConfig::default();
    let before = error_rate(&m.judgments, &clean);

    let (flagged, [with_engagement, _, sampled]) = flag(&m.judgments, &cfg).unwrap();
    assert_eq!(with_engagement, m.judgments.len());
    let frac = sampled as f64 / m.judgments.len() as f64;
    assert!((0.27..0.33).contains(&frac), "sampled {frac}");
    // Precision: flagged pairs whose label is wrong. Recall: wrong labels of the kind the
    // audit looks for (a judged 0 or 2) in the sample that were flagged.
    let hits = flagged.iter().filter(|f| f.label != clean[f.index]).count();
    let precision = hits as f64 / flagged.len() as f64;
    let detectable = m
        .judgments
        .iter()
        .zip(&clean)
        .filter(|(j, c)| {
            cfg.sampled(&j.query, &j.item_id)
                && j.label != **c
                && ((j.label == 0 && **c > 0) || (j.label == 2 && **c < 2))
        })
        .count();
    let planted_in_sample = m
        .judgments
        .iter()
        .zip(&clean)
        .filter(|(j, c)| cfg.sampled(&j.query, &j.item_id) && j.label != **c)
        .count();
    let recall = hits as f64 / detectable as f64;
    let recall_all = hits as f64 / planted_in_sample as f64;
    let sampled_error = planted_in_sample as f64 / sampled as f64;

    // The clean policy as second labeler, then a noisy stronger one (3% noise).
    let oracle = OracleLabeler::new(
        Oracle::new(OracleConfig {
            noise: 0.0,
            seed: 0,
        })
        .unwrap(),
        &m.catalog,
    );
    let fixed = audit(&m.judgments, &oracle, &cfg).unwrap();
    let after = error_rate(&fixed.judgments, &clean);
    let noisy = audit(&m.judgments, &second_labeler(&m, 0.03), &cfg).unwrap();
    let after_noisy = error_rate(&noisy.judgments, &clean);
    eprintln!(
        "judgments {} sampled {sampled} ({:.1}% wrong) flagged {} (high-engagement 0: {}, \
         low-engagement 2: {}) precision {precision:.3} recall {recall:.3} (of detectable {detectable}) \
         recall-all {recall_all:.3} (of {planted_in_sample}); error rate {before:.4} -> {after:.4} \
         (oracle, {} changed) / {after_noisy:.4} (3%-noise labeler, {} changed); matrix {:?}",
        m.judgments.len(),
        100.0 * sampled_error,
        flagged.len(),
        fixed.report.flagged_high_engagement_irrelevant,
        fixed.report.flagged_low_engagement_relevant,
        fixed.report.changed,
        noisy.report.changed,
        fixed.report.change_matrix,
    );
    assert!(flagged.len() >= 30, "only {} flagged", flagged.len());
    // Flagged pairs are far more often wrong than a sampled pair is (measured: 0.405 against
    // 0.135, 3.0x, on the marketplace with its lexically hard negatives).
    assert!(
        precision >= 2.5 * sampled_error,
        "precision {precision} vs base error {sampled_error}"
    );
    assert!(recall >= 0.3, "recall {recall}");
    // Every change the clean policy makes fixes a wrong label; the noisy labeler fixes most.
    let n = m.judgments.len() as f64;
    assert!(
        fixed.report.changed >= 25,
        "{} changed",
        fixed.report.changed
    );
    assert!(((before - after) * n - fixed.report.changed as f64).abs() < 0.5);
    assert!(
        (before - after_noisy) * n >= 20.0,
        "{before} -> {after_noisy} (noisy)"
    );

    // The report and the corrected judgments agree.
    let r = &fixed.report;
    assert_eq!(r.flagged, flagged.len());
    assert_eq!(r.change_matrix.iter().flatten().sum::<usize>(), r.flagged);
    let off_diagonal: usize = (0..3)
        .flat_map(|a| (0..3).map(move |b| (a, b)))
        .filter(|(a, b)| a != b)
        .map(|(a, b)| r.change_matrix[a][b])
        .sum();
    assert_eq!(off_diagonal, r.changed);
    assert_eq!(
        hits, r.changed,
        "the clean policy changes exactly the wrong flagged labels"
    );
    let marked = fixed
        .judgments
        .iter()
        .zip(&m.judgments)
        .filter(|(a, b)| a.label != b.label)
        .inspect(|(a, _)| assert_eq!(a.source, Some(Source::Audit)))
        .count();
    assert_eq!(marked, r.changed);
    for f in &fixed.flagged {
        match f.reason {
            Disagreement::HighEngagementIrrelevant => assert!(f.label == 0 && f.z >= cfg.high_z),
            Disagreement::LowEngagementRelevant => assert!(f.label == 2 && f.z <= cfg.low_z),
        }
        assert!(cfg.sampled(&f.query, &f.item_id));
    }
}

#[test]
fn the_audit_writes_its_artifacts() {
    let m = Marketplace::generate(&MarketplaceConfig {
        items: 300,
        queries: 60,
        engagement: true,
        seed: 3,
        ..MarketplaceConfig::default()
    })
    .unwrap();
    let cfg = AuditConfig {
        review_sample: 5,
        ..AuditConfig::default()
    };
    let out = audit(&m.judgments, &m.labeler(), &cfg).unwrap();
    assert!(out.flagged.len() > 5);
    let dir = tempfile::tempdir().unwrap();
    out.write(dir.path()).unwrap();
    let back = strata_data::load_judgments(dir.path().join("judgments.jsonl")).unwrap();
    assert_eq!(back, out.judgments);
    let review = std::fs::read_to_string(dir.path().join("review.jsonl")).unwrap();
    assert_eq!(review.lines().count(), 5);
    let flagged = std::fs::read_to_string(dir.path().join("flagged.jsonl")).unwrap();
    assert_eq!(flagged.lines().count(), out.flagged.len());
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("audit_report.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(report["flagged"], out.flagged.len());
    assert_eq!(report["second_labeler"], m.labeler().identity());
    // Same seed, same sample; another seed audits other pairs.
    let again = audit(&m.judgments, &m.labeler(), &cfg).unwrap();
    assert_eq!(again.flagged, out.flagged);
    let other = flag(
        &m.judgments,
        &AuditConfig {
            seed: 99,
            ..cfg.clone()
        },
    )
    .unwrap()
    .0;
    assert_ne!(
        other.iter().map(|f| f.index).collect::<Vec<_>>(),
        out.flagged.iter().map(|f| f.index).collect::<Vec<_>>()
    );
}

#[test]
fn judgments_without_engagement_are_an_error() {
    let js = vec![Judgment::new("q", "a", 2), Judgment::new("q", "b", 0)];
    let m = Marketplace::generate(&MarketplaceConfig {
        items: 50,
        queries: 5,
        ..MarketplaceConfig::default()
    })
    .unwrap();
    let err = audit(&js, &m.labeler(), &AuditConfig::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("engagement"), "{err}");
}
