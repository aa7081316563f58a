//! BM25 on the Home Depot judgments (fails when the data is absent): the calibration run of
//! the lexical baseline. Set `STRATA_EVAL_KEEP_RUN=DIR` to keep the run directory.

use strata_eval::from_data::{ItemTextConfig, catalog, qrels};
use strata_eval::{EvalOptions, System, evaluate, write_run};

#[test]
fn bm25_on_home_depot_all_judged_queries() {
    let dir = strata_testkit::homedepot_dir();
    let data_catalog = strata_data::load_catalog(dir.join("products.tsv")).unwrap();
    let judgments = strata_data::load_judgments(dir.join("judgments.tsv")).unwrap();
    let cat = catalog(&data_catalog, &ItemTextConfig::name_only()).unwrap();
    let q = qrels(&judgments).unwrap();
    let opts = EvalOptions {
        catalog_source: Some(dir.join("products.tsv").display().to_string()),
        judgments_source: Some(dir.join("judgments.tsv").display().to_string()),
        ..EvalOptions::default()
    };
    let r = evaluate(&cat, &q, System::Bm25, &opts).unwrap();
    let m = &r.metrics;
    eprintln!(
        "Home Depot BM25: ndcg@10 {:.4} ndcg@50 {:.4} ndcg@100 {:.4} recall@100 {:.4} precision@10 {:.4} rerank {:.4} \
         queries {} (ndcg over {}), avg margin {:?} over {} queries; search {:.2}s",
        m.ndcg_10.unwrap(),
        m.ndcg_50.unwrap(),
        m.ndcg_100.unwrap(),
        m.recall_100.unwrap(),
        m.precision_10.unwrap(),
        m.rerank_ndcg.unwrap(),
        m.n_queries,
        m.denominators.ndcg,
        m.avg_margin,
        m.margin_queries,
        m.timings.search_seconds,
    );
    assert_eq!(m.n_items, 54_667);
    assert_eq!(m.n_queries, 9_470);
    assert_eq!(m.n_judgments, 59_497);
    assert_eq!(m.left_out.unknown_item_judgments, 0);
    // Calibration: BM25 (k1 1.2, b 0.75, lower-case alphanumeric tokens) scores about 0.33.
    let ndcg = m.ndcg_10.unwrap();
    assert!(
        (0.28..=0.38).contains(&ndcg),
        "BM25 NDCG@10 {ndcg} is far from the expected ~0.33"
    );
    // Metric invariants on real data.
    assert!(m.ndcg_10 <= m.ndcg_50 && m.ndcg_50 <= m.ndcg_100);
    assert!(m.recall_10 <= m.recall_50 && m.recall_50 <= m.recall_100);
    assert!(m.precision_10 >= m.precision_100);
    if let Ok(keep) = std::env::var("STRATA_EVAL_KEEP_RUN") {
        write_run(std::path::Path::new(&keep), &r).unwrap();
    }
    let tmp = tempfile::tempdir().unwrap();
    let files = write_run(tmp.path(), &r).unwrap();
    assert!(files.thresholds.is_some());
}
