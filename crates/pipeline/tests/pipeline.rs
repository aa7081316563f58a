//! The whole pipeline on a tiny synthetic marketplace with the real default model and a few
//! training steps per stage: every artifact is written, and a second run skips every stage.

use strata_data::marketplace::{Marketplace, MarketplaceConfig};
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

    // The labeler stage needs the split of `data.judgments`, and one mining labeler.
    std::fs::write(&p, format!("{data}[labeler]\nmax_steps = 1\n")).unwrap();
    let mut cfg = PipelineConfig::from_toml_file(&p).unwrap();
    cfg.model = default_model();
    let err = format!("{:#}", cfg.validate().unwrap_err());
    assert!(
        err.contains("[labeler]: the labeler is trained and evaluated on the split"),
        "{err}"
    );
    let split_data = format!(
        "[data]\ncatalog = \"{0}/c.tsv\"\njudgments = \"{0}/t.tsv\"\nlabeler = \"judged-only\"\n",
        tmp.path().display()
    );
    std::fs::write(&p, format!("{split_data}[labeler]\nmax_steps = 1\n")).unwrap();
    let mut cfg = PipelineConfig::from_toml_file(&p).unwrap();
    cfg.model = default_model();
    let err = format!("{:#}", cfg.validate().unwrap_err());
    assert!(
        err.contains("data.labeler and [labeler] both name"),
        "{err}"
    );
    // Judgments with explicit parts: ambiguous.
    std::fs::write(
        &p,
        format!("{data}judgments = \"{}/t.tsv\"\n", tmp.path().display()),
    )
    .unwrap();
    let mut cfg = PipelineConfig::from_toml_file(&p).unwrap();
    cfg.model = default_model();
    let err = format!("{:#}", cfg.validate().unwrap_err());
    assert!(err.contains("data: give catalog with judgments"), "{err}");
}

/// The user's own data (a catalog and all judgments, split by the pipeline) with a labeler
/// that the pipeline fine-tunes on the training queries, evaluates on the held-out ones and
/// relabels the mined pairs with.
#[test]
fn own_data_split_by_query_with_a_trained_labeler() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Marketplace::generate(&MarketplaceConfig {
        items: 200,
        queries: 40,
        ..MarketplaceConfig::default()
    })
    .unwrap();
    let data = tmp.path().join("mine-data");
    m.write(
        &data,
        strata_data::Format::Tsv,
        &strata_data::progress::NoProgress,
    )
    .unwrap();
    let toml = format!(
        r#"
out = "{out}"
model = "{model}"
hybrid_alpha = 0.5
[data]
catalog = "{data}/catalog.tsv"
judgments = "{data}/judgments.tsv"
item_text = "name"
[data.split]
train = 0.6
dev = 0.2
test = 0.2
seed = 3
[labeler]
max_steps = 2
batch_size = 8
max_len = 32
[mine]
k = 20
min_confidence = 0.4
[stage1.train]
max_steps = 2
batch_size = 4
[stage2.train]
max_steps = 2
batch_size = 4
"#,
        out = tmp.path().join("run").display(),
        model = default_model().display(),
        data = data.display(),
    );
    let p = tmp.path().join("own.toml");
    std::fs::write(&p, toml).unwrap();
    let cfg = PipelineConfig::from_toml_file(&p).unwrap();
    let first = run(&cfg).unwrap();
    let run_dir = cfg.out.join("runs");

    // The split is the query split of `data.split`: no query in two parts.
    let queries = |name: &str| -> std::collections::HashSet<String> {
        strata_data::load_judgments(cfg.out.join("data").join(name))
            .unwrap()
            .into_iter()
            .map(|j| j.query)
            .collect()
    };
    let (train, dev, test) = (
        queries("train.jsonl"),
        queries("dev.jsonl"),
        queries("test.jsonl"),
    );
    assert!(!train.is_empty() && !test.is_empty());
    assert!(train.is_disjoint(&test) && train.is_disjoint(&dev) && dev.is_disjoint(&test));
    let all = strata_data::load_judgments(data.join("judgments.tsv")).unwrap();
    for j in &all {
        let part = cfg.data.split.assign(&j.query);
        let held = match part {
            strata_data::split::Split::Train => &train,
            strata_data::split::Split::Dev => &dev,
            strata_data::split::Split::Test => &test,
        };
        assert!(
            held.contains(&j.query),
            "{} not in its {part:?} part",
            j.query
        );
    }

    // The labeler was trained, recorded the pipeline's item text, was evaluated on the test
    // queries' judgments and labeled the mined pairs.
    let labeler_cfg = std::fs::read_to_string(run_dir.join("labeler/model/labeler.json")).unwrap();
    assert!(
        labeler_cfg.contains("\"item_text\": \"name\""),
        "{labeler_cfg}"
    );
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run_dir.join("labeler/eval-test.json")).unwrap(),
    )
    .unwrap();
    let test_pairs = all.iter().filter(|j| test.contains(&j.query)).count();
    assert_eq!(report["pairs"], test_pairs, "{report}");
    let mining: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run_dir.join("mine/mining_report.json")).unwrap(),
    )
    .unwrap();
    let policy = mining["labeler_policy"].as_str().unwrap();
    assert!(
        policy.contains("cross-encoder labeler") && policy.contains("below 0.4 stay unlabeled"),
        "{mining}"
    );
    assert!(
        mining["labeler"]
            .as_str()
            .unwrap()
            .ends_with("min_confidence=0.4"),
        "{mining}"
    );
    // The labeler's report says what each confidence threshold keeps (coverage falls as the
    // threshold rises) and how many of the mined pairs the threshold left unlabeled.
    let rows = report["by_confidence"].as_array().unwrap();
    assert_eq!(rows.len(), 6, "{report}");
    let coverage: Vec<f64> = rows
        .iter()
        .map(|r| r["coverage"].as_f64().unwrap())
        .collect();
    assert!(coverage.windows(2).all(|w| w[0] >= w[1]), "{coverage:?}");
    let n = |k: &str| mining[k].as_u64().unwrap();
    assert_eq!(
        n("newly_labeled") + n("unlabeled"),
        n("pairs_retrieved") - n("already_judged"),
        "{mining}"
    );
    assert!(
        first
            .comparison
            .contains("The labeler on the held-out judgments"),
        "{}",
        first.comparison
    );
    assert!(first.comparison.contains("eval-stage2") && first.comparison.contains("eval-hybrid"));
    let hybrid: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run_dir.join("eval-hybrid/metrics.json")).unwrap(),
    )
    .unwrap();
    assert!(
        hybrid["system"].as_str().unwrap().contains("hybrid"),
        "{}",
        hybrid["system"]
    );

    // A second run skips every stage, the labeler's included.
    let second = run(&cfg).unwrap();
    assert_eq!(second.comparison, first.comparison);
}

/// The Home Depot recipes parse, name existing data and a valid configuration of every stage
/// (their paths are relative to the repository root, where they are run from): the
/// recommended one mines with "unjudged = 0", the relabeling one trains and uses the
/// cross-encoder labeler under a confidence threshold; both mine the top 20 of the catalog as
/// measured on the dev split.
#[test]
fn the_home_depot_recipes_are_valid_configurations() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let hd = strata_testkit::homedepot_dir();
    for (recipe, relabel) in [("homedepot.toml", false), ("homedepot-relabel.toml", true)] {
        let path = root.join("recipes").join(recipe);
        let mut cfg = PipelineConfig::from_toml_file(&path).unwrap();
        let d = &mut cfg.data;
        assert!(
            d.catalog
                .as_ref()
                .unwrap()
                .ends_with("homedepot/products.tsv")
        );
        assert!(
            d.judgments
                .as_ref()
                .unwrap()
                .ends_with("homedepot/judgments.tsv")
        );
        d.catalog = Some(hd.join("products.tsv"));
        d.judgments = Some(hd.join("judgments.tsv"));
        cfg.model = default_model();
        cfg.validate().unwrap_or_else(|e| panic!("{recipe}: {e:#}"));
        assert!(cfg.hybrid_alpha.is_some(), "{recipe}");
        assert_eq!(cfg.stage1.loss.name(), "supcon");
        assert_eq!(cfg.stage2.loss.name(), "circle");
        assert_eq!(cfg.stage2.train.max_steps, 100, "{recipe}");
        assert_eq!(cfg.stage2.data.random_negatives, 0, "{recipe}");
        assert_eq!(cfg.mine.k, 20, "{recipe}");
        assert_eq!(cfg.mine.corpus, strata_mining::Corpus::Catalog, "{recipe}");
        if relabel {
            assert!(cfg.labeler.is_some() && cfg.data.labeler.is_none());
            assert_eq!(cfg.mine.min_confidence, Some(0.6));
        } else {
            assert!(cfg.labeler.is_none());
            assert_eq!(
                cfg.data.labeler,
                Some(strata_data::LabelerSpec::UnjudgedZero)
            );
        }
    }
}
