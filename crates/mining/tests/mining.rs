//! Mining on a tiny hand-made catalog with a deterministic encoder: the selection rules,
//! that originals are kept, and that the label cache prevents relabeling.

use std::sync::atomic::{AtomicUsize, Ordering};

use strata_data::labeler::CachedLabeler;
use strata_data::{Catalog, Item, ItemTextConfig, Judgment, Labeler, Side, Source, TextEncoder};
use strata_mining::{Candidate, MineConfig, SelectionRules, mine, select_candidates};

/// Embeds "qN" / "item N" on a circle so that item i's similarity to query 0 falls with i.
struct Circle;

impl TextEncoder for Circle {
    fn dim(&self) -> usize {
        2
    }
    fn name(&self) -> String {
        "circle".into()
    }
    fn encode(&self, texts: &[&str], _side: Side) -> anyhow::Result<Vec<f32>> {
        let mut v = Vec::new();
        for t in texts {
            let n: f32 = t
                .trim_start_matches(|c: char| !c.is_ascii_digit())
                .parse()
                .unwrap();
            let a = if t.starts_with('q') { 0.0 } else { n * 0.05 };
            v.extend([a.cos(), a.sin()]);
        }
        Ok(v)
    }
}

/// Labels item i as 2 if i % 5 == 0, 1 if i % 5 == 1, else 0; counts the pairs it is asked.
struct Rule(AtomicUsize);

impl Labeler for Rule {
    fn label(&self, pairs: &[(String, String)]) -> anyhow::Result<Vec<Option<u8>>> {
        self.0.fetch_add(pairs.len(), Ordering::SeqCst);
        Ok(pairs
            .iter()
            .map(|(_, id)| {
                let i: usize = id[1..].parse().unwrap();
                Some(match i % 5 {
                    0 => 2,
                    1 => 1,
                    _ => 0,
                })
            })
            .collect())
    }
    fn identity(&self) -> String {
        "rule".into()
    }
}

fn catalog(n: usize) -> Catalog {
    Catalog::from_items(
        (0..n)
            .map(|i| Item::new(format!("i{i}"), format!("item {i}")))
            .collect(),
    )
    .unwrap()
}

#[test]
fn selection_rules_are_exact() {
    let c = |rank, judged, label| Candidate {
        query: "q".into(),
        item_id: format!("i{rank}"),
        rank,
        judged,
        label,
    };
    let cands = vec![
        c(1, None, Some(0)), // hard negative (top half)
        c(2, Some(0), None), // already judged: never selected
        c(3, None, Some(2)), // relevant in the top half: not selected
        c(4, None, None),    // unlabeled: never selected
        c(5, None, Some(0)), // rank 5 > split 4: not a hard negative
        c(6, None, Some(1)), // hard positive
        c(7, Some(2), None), // judged
        c(8, None, Some(2)), // hard positive
    ];
    let s = select_candidates(
        &cands,
        &SelectionRules {
            split: 4,
            negatives_from_rank: 1,
        },
    );
    assert_eq!(s.hard_negatives, vec![0]);
    assert_eq!(s.hard_positives, vec![5, 7]);
    let s = select_candidates(
        &cands,
        &SelectionRules {
            split: 4,
            negatives_from_rank: 2,
        },
    );
    assert!(s.hard_negatives.is_empty());
}

#[test]
fn mining_keeps_originals_selects_by_rank_and_caches_labels() {
    let cat = catalog(40);
    // Query "q0" judged on a few items; every item is in the training data.
    let mut train: Vec<Judgment> = (0..40)
        .step_by(3)
        .map(|i| Judgment::new("q0", format!("i{i}"), 0))
        .collect();
    train.push(Judgment::new("q0", "i1", 2));
    let cfg = MineConfig {
        k: 20,
        ann: strata_mining::SearchChoice::Exact,
        corpus: strata_mining::Corpus::Catalog,
        ..Default::default()
    };
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("labels.jsonl");
    let labeler = CachedLabeler::open(Rule(AtomicUsize::new(0)), &cache, "v1").unwrap();
    let out = mine(
        &Circle,
        &cat,
        &ItemTextConfig::name_only(),
        &train,
        &labeler,
        &cfg,
    )
    .unwrap();
    let r = &out.report;
    assert_eq!(r.k, 20);
    assert_eq!(r.split, 10);
    assert_eq!(r.pairs_retrieved, 20);
    // Ranks 1..=20 are items i0..i19 (similarity falls with i). Judged among them: i0,i3,..,i18 and i1.
    let judged: Vec<usize> = (0..20).filter(|i| i % 3 == 0 || *i == 1).collect();
    assert_eq!(r.already_judged, judged.len());
    assert_eq!(r.newly_labeled, 20 - judged.len());
    // The originals come first, unchanged.
    assert_eq!(&out.judgments[..train.len()], &train[..]);
    let mined: Vec<&Judgment> = out.judgments[train.len()..].iter().collect();
    assert!(mined.iter().all(|j| j.source == Some(Source::Mined)));
    let ids: Vec<&str> = mined.iter().map(|j| j.item_id.as_str()).collect();
    // Hard negatives: unjudged, label 0 (i % 5 in 2..5), rank <= 10 -> i2, i4, i7, i8.
    // Hard positives: unjudged, label >= 1, rank > 10 -> i10 (2), i11 (1), i16 (1).
    assert_eq!(ids, ["i2", "i4", "i7", "i8", "i10", "i11", "i16"]);
    assert_eq!(r.hard_negatives, 4);
    assert_eq!(r.hard_positives, 3);
    // Top-half new pairs: i2,i4,i5,i7,i8 -> i5 (label 2) is a false negative of naive mining.
    assert_eq!(r.top_half_new, 5);
    assert_eq!(r.top_half_relevant, 1);
    let asked = labeler.inner().0.load(Ordering::SeqCst);
    assert_eq!(asked, 20 - judged.len());

    // A second run with a fresh process-level labeler but the same cache asks nothing.
    let again = CachedLabeler::open(Rule(AtomicUsize::new(0)), &cache, "v1").unwrap();
    let out2 = mine(
        &Circle,
        &cat,
        &ItemTextConfig::name_only(),
        &train,
        &again,
        &cfg,
    )
    .unwrap();
    assert_eq!(
        again.inner().0.load(Ordering::SeqCst),
        0,
        "cached pairs were labeled again"
    );
    assert_eq!(out2.judgments, out.judgments);
}

#[test]
fn unjudged_pairs_labeled_ahead_leave_mining_only_cache_hits() {
    let cat = catalog(30);
    let train: Vec<Judgment> = vec![
        Judgment::new("q0", "i0", 2),
        Judgment::new("q0", "i2", 0),
        Judgment::new("q1", "i5", 1),
    ];
    let cfg = MineConfig {
        k: 6,
        corpus: strata_mining::Corpus::Catalog,
        ..Default::default()
    };
    // Top-k lists found elsewhere: the first six catalog positions for both queries.
    let c = strata_mining::mining_corpus(&cat, &train, &cfg).unwrap();
    assert_eq!(c.queries, ["q0", "q1"]);
    let hits: Vec<Vec<strata_retrieval::Hit>> = (0..2)
        .map(|_| {
            (0..6u32)
                .map(|i| strata_retrieval::Hit {
                    item: i,
                    score: 1.0 - i as f32 * 0.1,
                })
                .collect()
        })
        .collect();
    let pairs = strata_mining::unjudged_pairs(&cat, &train, &cfg, &hits).unwrap();
    let expect: Vec<(String, String)> = [
        ("q0", "i1"),
        ("q0", "i3"),
        ("q0", "i4"),
        ("q0", "i5"),
        ("q1", "i0"),
        ("q1", "i1"),
        ("q1", "i2"),
        ("q1", "i3"),
        ("q1", "i4"),
    ]
    .iter()
    .map(|(q, i)| (q.to_string(), i.to_string()))
    .collect();
    assert_eq!(pairs, expect);
    // A worker labels them into a shared cache; the mining run then asks its labeler nothing.
    let tmp = tempfile::tempdir().unwrap();
    let shared = tmp.path().join("labels");
    let worker =
        CachedLabeler::open_shared(Rule(AtomicUsize::new(0)), &shared, "w1", "v1").unwrap();
    worker.label(&pairs).unwrap();
    assert_eq!(worker.inner().0.load(Ordering::SeqCst), pairs.len());
    let driver = CachedLabeler::open(Rule(AtomicUsize::new(0)), &shared, "v1").unwrap();
    let info = strata_mining::SearchInfo::default();
    let out = strata_mining::mine_from_hits(&cat, &train, &driver, &cfg, &hits, info).unwrap();
    assert_eq!(driver.inner().0.load(Ordering::SeqCst), 0);
    assert_eq!(out.report.newly_labeled, pairs.len());
    assert_eq!(out.report.already_judged, 12 - pairs.len());
}

#[test]
fn bad_settings_are_rejected() {
    let cfg = MineConfig {
        k: 10,
        split: Some(10),
        ..Default::default()
    };
    assert!(format!("{:#}", cfg.validate().unwrap_err()).contains("split"));
    let cat = catalog(3);
    let train = vec![Judgment::new("q0", "missing", 1)];
    let labeler = Rule(AtomicUsize::new(0));
    let err = mine(
        &Circle,
        &cat,
        &ItemTextConfig::name_only(),
        &train,
        &labeler,
        &MineConfig::default(),
    )
    .err()
    .unwrap();
    assert!(format!("{err:#}").contains("missing"), "{err:#}");
}

/// The search choice: `auto` is exact up to 4e9 query x item pairs and HNSW beyond; configs
/// written with the old boolean `ann` still read, and the choice round-trips as a name.
#[test]
fn search_choice_reads_names_and_the_old_boolean() {
    use strata_mining::{AUTO_EXACT_BELOW, SearchChoice};
    let read = |v: &str| serde_json::from_str::<MineConfig>(&format!(r#"{{"ann": {v}}}"#));
    assert_eq!(read("true").unwrap().ann, SearchChoice::Hnsw);
    assert_eq!(read("false").unwrap().ann, SearchChoice::Exact);
    assert_eq!(read(r#""auto""#).unwrap().ann, SearchChoice::Auto);
    assert_eq!(read(r#""exact""#).unwrap().ann, SearchChoice::Exact);
    let err = read(r#""fast""#).unwrap_err().to_string();
    assert!(err.contains("fast") && err.contains("auto"), "{err}");
    let cfg = MineConfig {
        ann: SearchChoice::Auto,
        ..MineConfig::default()
    };
    let back: MineConfig = serde_json::from_str(&serde_json::to_string(&cfg).unwrap()).unwrap();
    assert_eq!(back.ann, SearchChoice::Auto);
    // Home Depot's 7,573 training queries over its catalog search exactly; ten times the
    // catalog does not.
    assert!(!SearchChoice::Auto.uses_ann(7_573, 54_667));
    assert!(SearchChoice::Auto.uses_ann(7_573, 546_670));
    assert_eq!(AUTO_EXACT_BELOW, 4e9);
    assert!(SearchChoice::Hnsw.uses_ann(1, 10));
    assert!(!SearchChoice::Exact.uses_ann(1_000_000, 1_000_000));
}
