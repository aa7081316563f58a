//! The whole pipeline on a tiny synthetic marketplace with the real default model and a few
//! training steps per stage: every artifact is written, and a second run skips every stage.

use strata_pipeline::{PipelineConfig, run};

use strata_testkit::default_model;

#[test]
fn tiny_pipeline_writes_every_artifact_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = PipelineConfig {
        out: tmp.path().join("run"),
        model: default_model(),
        ..PipelineConfig::default()
    };
    cfg.data.items = 200;
    cfg.data.queries = 40;
    cfg.mine.k = 20;
    for stage in [&mut cfg.stage1, &mut cfg.stage2] {
        stage.train.max_steps = 2;
        stage.train.batch_size = 4;
        stage.train.checkpoint_every = 1;
    }
    let first = run(&cfg).unwrap();
    let runs = cfg.out.join("runs");
    for p in [
        "eval-zero-shot/metrics.json",
        "eval-bm25/metrics.json",
        "stage1/model/strata.json",
        "mine/judgments.jsonl",
        "mine/mining_report.json",
        "stage2/model/strata.json",
        "eval-stage1/metrics.json",
        "eval-stage2/metrics.json",
    ] {
        assert!(runs.join(p).is_file(), "missing {p}");
    }
    assert!(first.comparison.contains("eval-stage2"));
    assert!(
        first.comparison.contains("Hard-pair margins per query")
            && first.comparison.contains("avg diff (± SE)"),
        "{}",
        first.comparison
    );
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(runs.join("mine/mining_report.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(report["k"], 20);
    // Mining read every item vector back from the cache the stage-1 evaluation filled.
    assert_eq!(report["items_embedded"], 0, "{report}");
    assert_eq!(
        report["item_embeddings_from_cache"], report["corpus_items"],
        "{report}"
    );
    assert_eq!(
        report["pairs_retrieved"].as_u64().unwrap(),
        report["queries"].as_u64().unwrap() * 20
    );
    // Stage 2 started from stage 1 and was trained on the merged judgments.
    let s2 = std::fs::read_to_string(runs.join("stage2/config.toml")).unwrap();
    assert!(
        s2.contains("mine/judgments.jsonl") && s2.contains("circle"),
        "{s2}"
    );

    // Everything exists: the second run skips every stage and gives the same table.
    let t = std::time::Instant::now();
    let second = run(&cfg).unwrap();
    assert_eq!(second.comparison, first.comparison);
    assert!(
        t.elapsed().as_secs_f64() < first.seconds,
        "the second run redid work"
    );
}

#[test]
fn bad_pipeline_configs_fail_before_work() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = PipelineConfig {
        model: tmp.path().join("nope"),
        ..PipelineConfig::default()
    };
    let err = format!("{:#}", run(&cfg).unwrap_err());
    assert!(err.contains("does not exist"), "{err}");
    let p = tmp.path().join("p.toml");
    std::fs::write(&p, "outt = \"x\"\n").unwrap();
    let err = format!("{:#}", PipelineConfig::from_toml_file(&p).unwrap_err());
    assert!(err.contains("outt"), "{err}");

    // Labelers: the marketplace is labeled by its oracle; a cross-encoder must be a labeler
    // directory; kinds the pipeline cannot build are refused by name.
    let model = strata_testkit::default_model();
    std::fs::write(&p, "data.labeler = \"cross-encoder=x\"\n").unwrap();
    let mut cfg = PipelineConfig::from_toml_file(&p).unwrap();
    cfg.model = model.clone();
    let err = format!("{:#}", cfg.validate().unwrap_err());
    assert!(err.contains("labeled by its oracle"), "{err}");
    for f in ["c.tsv", "t.tsv", "e.tsv"] {
        std::fs::write(tmp.path().join(f), "").unwrap();
    }
    let data = format!(
        "[data]\ncatalog = \"{0}/c.tsv\"\ntrain_judgments = \"{0}/t.tsv\"\ntest_judgments = \"{0}/e.tsv\"\n",
        tmp.path().display()
    );
    std::fs::write(
        &p,
        format!(
            "{data}labeler = \"cross-encoder={}\"\n",
            tmp.path().display()
        ),
    )
    .unwrap();
    let mut cfg = PipelineConfig::from_toml_file(&p).unwrap();
    cfg.model = model.clone();
    let err = format!("{:#}", cfg.validate().unwrap_err());
    assert!(
        err.contains("data.labeler") && err.contains("is not a labeler directory"),
        "{err}"
    );
    std::fs::write(&p, format!("{data}labeler = \"llm\"\n")).unwrap();
    let mut cfg = PipelineConfig::from_toml_file(&p).unwrap();
    cfg.model = model;
    let err = format!("{:#}", cfg.validate().unwrap_err());
    assert!(
        err.contains("data.labeler: labeler llm is not accepted here"),
        "{err}"
    );
}
