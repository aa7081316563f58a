//! End-to-end evaluation runs on a small hand-made catalog.

mod common;

use common::HashEncoder;
use strata_data::{Side, TextEncoder};
use strata_eval::input::{Judgment, resolve};
use strata_eval::metrics::{judged_gains, ndcg_at_k, query_metrics, ranked_gains};
use strata_eval::{
    Corpus, EvalOptions, Fusion, HnswParams, Qrels, System, UnknownItems, evaluate, write_run,
};

fn catalog() -> Corpus {
    Corpus::new([
        ("d1", "Cordless Drill Driver Kit 18V"),
        ("d2", "Cordless Impact Driver 18V"),
        ("d3", "Drill Bit Set Titanium"),
        ("d4", "Corded Hammer Drill"),
        ("h1", "Claw Hammer Fiberglass Handle"),
        ("h2", "Sledge Hammer 10 lb"),
        ("g1", "Garden Hose 50 ft Heavy Duty"),
        ("g2", "Hose Nozzle Spray Gun"),
        ("p1", "Interior Paint Eggshell White 1 gal"),
        ("p2", "Paint Roller Kit 9 in"),
        ("p3", "Exterior Paint Satin White 1 gal"),
        ("l1", "LED Light Bulb 60W Daylight"),
        ("x1", "Cordless Drill Holster Belt"),
    ])
    .unwrap()
}

fn judgments() -> Vec<Judgment> {
    let j = |q: &str, i: &str, l: u8| Judgment::new(q, i, l);
    vec![
        j("cordless drill", "d1", 2),
        j("cordless drill", "d2", 1),
        j("cordless drill", "d4", 1),
        j("cordless drill", "d3", 0),
        j("cordless drill", "h1", 0),
        j("cordless drill", "x1", 0), // lexically hard negative
        j("claw hammer", "h1", 2),
        j("claw hammer", "h2", 1),
        j("claw hammer", "d4", 0),
        j("white paint gallon", "p1", 2),
        j("white paint gallon", "p3", 2),
        j("white paint gallon", "p2", 1),
        j("white paint gallon", "l1", 0),
        j("white paint gallon", "gone-1", 2), // not in the catalog
        j("garden hose", "g1", 2),
        j("garden hose", "g2", 0),
        j("led bulb", "gone-2", 2), // the query's only judgment names an unknown item
        j("hose reel", "g2", 0),    // all-zero gains
    ]
}

fn qrels() -> Qrels {
    Qrels::from_judgments(&judgments()).unwrap()
}

#[test]
fn dense_run_matches_an_independent_full_sort() {
    let cat = catalog();
    let enc = HashEncoder { dim: 64 };
    let r = evaluate(&cat, &qrels(), System::Dense(&enc), &EvalOptions::default()).unwrap();
    let m = &r.metrics;
    assert_eq!(
        (m.system.as_str(), m.score_kind.as_str()),
        ("dense", "cosine")
    );
    assert_eq!(m.model.as_deref(), Some("hash-bag-of-tokens"));
    assert_eq!((m.n_queries, m.n_items, m.n_judgments), (5, 13, 16));
    assert_eq!(m.left_out.unknown_item_judgments, 2);
    assert_eq!(m.left_out.queries_without_judgments, 1);
    assert_eq!(m.left_out.queries_all_zero_gain, 1);
    assert_eq!(m.left_out.queries_without_label2, 1);
    assert_eq!(m.denominators.ndcg, 4);
    assert_eq!(m.denominators.recall_strict, 4);
    assert_eq!(m.denominators.precision, 5);

    // Independent path: embed, score every item, sort, compute the metrics.
    let resolved = resolve(&cat, &qrels(), UnknownItems::Count).unwrap();
    let texts: Vec<&str> = cat.texts().iter().map(String::as_str).collect();
    let items = enc.encode(&texts, Side::Item).unwrap();
    let (mut ndcg10, mut p10, mut rerank) = (Vec::new(), Vec::new(), Vec::new());
    for q in &resolved.queries {
        let qv = enc.encode(&[q.text.as_str()], Side::Query).unwrap();
        let score = |i: u32| -> f32 {
            items[i as usize * 64..(i as usize + 1) * 64]
                .iter()
                .zip(&qv)
                .map(|(a, b)| a * b)
                .sum()
        };
        let mut order: Vec<u32> = (0..cat.len() as u32).collect();
        order.sort_by(|&a, &b| score(b).total_cmp(&score(a)).then(a.cmp(&b)));
        let qm = query_metrics(&order, q, 10);
        ndcg10.extend(qm.ndcg);
        p10.push(qm.precision);
        let mut judged: Vec<(u32, u8)> = q.judged.clone();
        judged.sort_by(|a, b| score(b.0).total_cmp(&score(a.0)).then(a.0.cmp(&b.0)));
        let ranked: Vec<u32> = judged.iter().map(|x| x.0).collect();
        rerank.extend(ndcg_at_k(
            &ranked_gains(&ranked, q),
            &judged_gains(q),
            judged.len(),
        ));
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    assert!((m.ndcg_10.unwrap() - mean(&ndcg10)).abs() < 1e-9);
    assert!((m.precision_10.unwrap() - mean(&p10)).abs() < 1e-9);
    assert!((m.rerank_ndcg.unwrap() - mean(&rerank)).abs() < 1e-9);
    // The whole catalog is within the top 100, so recall@100 is 1.
    assert_eq!(m.recall_100, Some(1.0));
    assert_eq!(m.recall_strict_100, Some(1.0));
    // Every judged pair has a cosine score in [-1, 1].
    assert!(
        r.pairs
            .iter()
            .all(|p| (-1.0001..=1.0001).contains(&p.score))
    );
    assert_eq!(
        m.score_by_label.values().map(|s| s.count).sum::<usize>(),
        16
    );
}

#[test]
fn bm25_run_uses_bm25_scores_everywhere() {
    let r = evaluate(&catalog(), &qrels(), System::Bm25, &EvalOptions::default()).unwrap();
    let m = &r.metrics;
    assert_eq!(
        (m.system.as_str(), m.score_kind.as_str(), m.model.as_deref()),
        ("bm25", "bm25", None)
    );
    // Each query's label-2 item contains every query token, so BM25 ranks one first.
    assert_eq!(m.ndcg_10.map(|v| v > 0.8), Some(true), "{:?}", m.ndcg_10);
    assert_eq!(m.recall_strict_10, Some(1.0));
    // Unmatched judged items score 0 (e.g. "garden hose" vs nothing); scores are never negative.
    assert!(r.pairs.iter().all(|p| p.score >= 0.0));
    let l1 = r
        .pairs
        .iter()
        .find(|p| r.item_ids[p.item as usize] == "l1")
        .unwrap();
    assert_eq!(l1.score, 0.0);
    // Hard pairs (overlap >= 0.7): cordless drill/d1, cordless drill/x1, claw hammer/h1,
    // garden hose/g1 ("gallon" is not "gal"). Only "cordless drill" has a hard label-0 pair.
    assert_eq!((m.hard_pairs, m.margin_queries), (4, 1));
    let score = |id: &str| {
        r.pairs
            .iter()
            .find(|p| {
                r.item_ids[p.item as usize] == id && r.queries[p.query as usize] == "cordless drill"
            })
            .unwrap()
            .score as f64
    };
    let margin = score("d1") - score("x1");
    assert!((m.avg_margin.unwrap() - margin).abs() < 1e-9);
    assert!((m.worst_margin.unwrap() - margin).abs() < 1e-9);
}

#[test]
fn hybrid_with_full_semantic_weight_equals_dense() {
    let enc = HashEncoder { dim: 64 };
    let opts = EvalOptions::default();
    let dense = evaluate(&catalog(), &qrels(), System::Dense(&enc), &opts).unwrap();
    let fusion = Fusion::Convex { alpha: 1.0 };
    let hybrid = evaluate(
        &catalog(),
        &qrels(),
        System::Hybrid {
            encoder: &enc,
            fusion,
            candidates: 100,
        },
        &opts,
    )
    .unwrap();
    assert_eq!(hybrid.metrics.system, "hybrid");
    assert_eq!(hybrid.metrics.ndcg_10, dense.metrics.ndcg_10);
    assert_eq!(hybrid.metrics.rerank_ndcg, dense.metrics.rerank_ndcg);
    assert_eq!(hybrid.metrics.avg_margin, dense.metrics.avg_margin);
    let rrf = Fusion::Rrf {
        alpha: 0.5,
        k: 60.0,
    };
    let h = evaluate(
        &catalog(),
        &qrels(),
        System::Hybrid {
            encoder: &enc,
            fusion: rrf,
            candidates: 100,
        },
        &opts,
    )
    .unwrap();
    assert!(h.metrics.ndcg_10.unwrap() > 0.0 && h.metrics.ndcg_10.unwrap() <= 1.0);
    // The judged pairs of a hybrid run are scored by its dense model: the report and a
    // comparison table say so, and a dense run gets no such note.
    assert_eq!(h.metrics.avg_margin, dense.metrics.avg_margin);
    let tmp = tempfile::tempdir().unwrap();
    write_run(&tmp.path().join("hybrid"), &h).unwrap();
    write_run(&tmp.path().join("dense"), &dense).unwrap();
    let report = std::fs::read_to_string(tmp.path().join("hybrid/report.md")).unwrap();
    assert!(
        report.contains("the margins below are the dense model's"),
        "{report}"
    );
    let dense_report = std::fs::read_to_string(tmp.path().join("dense/report.md")).unwrap();
    assert!(
        !dense_report.contains("dense model's cosines"),
        "{dense_report}"
    );
    let runs = [
        strata_eval::load_run(&tmp.path().join("hybrid")).unwrap(),
        strata_eval::load_run(&tmp.path().join("dense")).unwrap(),
    ];
    let m = ["ndcg@10", "avg_margin", "hard_pair_auc"].map(String::from);
    let t = strata_eval::compare_runs(&runs[..1], &runs[1], &m, true);
    assert_eq!(
        t.notes,
        [
            "hybrid: a hybrid run; its avg_margin, hard_pair_auc are its dense model's cosines \
          on the judged pairs (the blend reorders the ranking, not these scores)"
        ]
    );
    assert!(t.to_markdown().ends_with(&format!("\n- {}\n", t.notes[0])));
    assert!(t.to_text().ends_with(&format!("\n{}\n", t.notes[0])));
    let ranking_only = ["ndcg@10".to_string()];
    assert!(
        strata_eval::compare_runs(&runs[..1], &runs[1], &ranking_only, false)
            .notes
            .is_empty()
    );
    assert!(
        strata_eval::compare_runs(&runs[1..], &runs[1], &m, false)
            .notes
            .is_empty()
    );
    let bad = System::Hybrid {
        encoder: &enc,
        fusion: Fusion::Convex { alpha: 2.0 },
        candidates: 100,
    };
    assert!(evaluate(&catalog(), &qrels(), bad, &opts).is_err());
    let few = System::Hybrid {
        encoder: &enc,
        fusion,
        candidates: 10,
    };
    assert!(evaluate(&catalog(), &qrels(), few, &opts).is_err());
}

#[test]
fn run_directory_holds_every_file() {
    let enc = HashEncoder { dim: 64 };
    let opts = EvalOptions {
        ann: cfg!(feature = "ann").then(HnswParams::default),
        catalog_source: Some("catalog.tsv".into()),
        ..EvalOptions::default()
    };
    let r = evaluate(&catalog(), &qrels(), System::Dense(&enc), &opts).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = write_run(dir.path(), &r).unwrap();
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&files.metrics).unwrap()).unwrap();
    // Every metric `strata compare` shows by default, and the run's bookkeeping.
    let bookkeeping = [
        "system",
        "model",
        "n_queries",
        "n_items",
        "margin_queries",
        "score_by_label",
        "timings",
        "left_out",
        "denominators",
    ];
    for key in strata_eval::compare::DEFAULT_METRICS
        .iter()
        .chain(&bookkeeping)
    {
        assert!(metrics.get(key).is_some(), "metrics.json lacks {key}");
    }
    assert_eq!(metrics["data"]["catalog"], "catalog.tsv");
    assert_eq!(metrics["score_by_label"]["2"]["count"], 5);
    assert_eq!(metrics["score_by_label"]["0"]["count"], 7);
    for q in ["q1", "median", "q3", "mean"] {
        assert!(metrics["score_by_label"]["0"][q].is_f64());
    }
    if cfg!(feature = "ann") {
        let rec = metrics["ann"]["recall@10"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&rec));
    }
    let scores = std::fs::read_to_string(&files.judged_scores).unwrap();
    assert_eq!(scores.lines().count(), 1 + 16);
    assert!(files.thresholds.as_ref().unwrap().exists());
    let t = strata_eval::Thresholds::read(files.thresholds.as_ref().unwrap()).unwrap();
    assert_eq!(t.n_pairs, 16);
    assert_eq!(t.score_kind, "cosine");
    for p in &files.plots {
        let bytes = std::fs::read(p).unwrap();
        assert!(
            bytes.len() > 5_000,
            "{} is {} bytes",
            p.display(),
            bytes.len()
        );
        if p.extension().unwrap() == "png" {
            assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        } else {
            assert!(bytes.starts_with(b"<svg"));
        }
    }
    let md = std::fs::read_to_string(&files.report_md).unwrap();
    assert!(
        md.contains("| NDCG |")
            && md.contains("scores_by_label.png")
            && md.contains("judgments naming unknown items | 2")
    );
    let html = std::fs::read_to_string(&files.report_html).unwrap();
    assert!(html.contains("<svg") && html.contains("<table>") && !html.contains("src=\""));
    // Thresholds can be derived again from the run directory alone.
    let again = strata_eval::report::thresholds_from_run(
        dir.path(),
        strata_eval::Criterion::BalancedAccuracy,
    )
    .unwrap();
    assert_eq!(again.n_pairs, 16);
}

#[test]
fn bad_inputs_give_clear_errors() {
    let enc = HashEncoder { dim: 16 };
    let opts = EvalOptions::default();
    // Every judgment names an unknown item.
    let q = Qrels::from_judgments(&[Judgment::new("x", "nope", 2)]).unwrap();
    let e = evaluate(&catalog(), &q, System::Bm25, &opts).unwrap_err();
    assert!(e.to_string().contains("no judged query is left"), "{e}");
    // Unknown items as errors.
    let strict = EvalOptions {
        unknown_items: UnknownItems::Error,
        ..EvalOptions::default()
    };
    let e = evaluate(&catalog(), &qrels(), System::Bm25, &strict).unwrap_err();
    assert!(e.to_string().contains("gone-1"), "{e}");
    // No judgments at all.
    assert!(evaluate(&catalog(), &Qrels::new(), System::Dense(&enc), &opts).is_err());
    // Approximate search needs embeddings.
    let ann = EvalOptions {
        ann: Some(HnswParams::default()),
        ..EvalOptions::default()
    };
    assert!(evaluate(&catalog(), &qrels(), System::Bm25, &ann).is_err());
    // An empty catalog cannot be built.
    assert!(Corpus::new(Vec::<(String, String)>::new()).is_err());
}

/// An encoder that breaks its contract.
struct Broken;
impl TextEncoder for Broken {
    fn dim(&self) -> usize {
        4
    }
    fn name(&self) -> String {
        "broken".into()
    }
    fn encode(&self, texts: &[&str], _: Side) -> anyhow::Result<Vec<f32>> {
        Ok(vec![0.5; texts.len() * 3])
    }
}

#[test]
fn encoder_output_is_checked() {
    let e = evaluate(
        &catalog(),
        &qrels(),
        System::Dense(&Broken),
        &EvalOptions::default(),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("broken") && e.to_string().contains("floats"),
        "{e}"
    );
}
