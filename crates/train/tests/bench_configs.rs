//! The training configurations under bench/ (the Home Depot rows of docs/benchmarks.md) are
//! valid as bench/quality_homedepot.sh and bench/homedepot_refine.sh complete them: they run
//! strata from the repository root and give the training judgments and the run directory (and
//! a stage-2 configuration its initial model) by flags; the few configurations run directly
//! with `strata train --config` name Home Depot's judgments themselves.

use std::path::Path;

use strata_train::TrainConfig;
use strata_train::losses::LossConfig;

#[test]
fn every_home_depot_bench_config_is_a_valid_training_configuration() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let hd = strata_testkit::homedepot_dir();
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(root.join("bench")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !(name.starts_with("homedepot-") && name.ends_with(".toml")) {
            continue;
        }
        let mut cfg =
            TrainConfig::from_toml_file(&path).unwrap_or_else(|e| panic!("bench/{name}: {e:#}"));
        assert!(
            cfg.data.catalog.ends_with("homedepot/products.tsv"),
            "bench/{name}: catalog {}",
            cfg.data.catalog.display()
        );
        assert!(
            root.join(&cfg.data.catalog).is_file(),
            "bench/{name}: {} is not a file from the repository root",
            cfg.data.catalog.display()
        );
        assert!(
            cfg.data.train_judgments.is_none(),
            "bench/{name}: the scripts give the training judgments by flag"
        );
        if let Some(j) = &cfg.data.judgments {
            assert!(
                j.ends_with("homedepot/judgments.tsv") && root.join(j).is_file(),
                "bench/{name}: judgments {} is not Home Depot's from the repository root",
                j.display()
            );
        }
        let init = root.join(&cfg.model.init);
        if init.join("config.json").is_file() {
            cfg.model.init = init;
        } else {
            // A stage-2 configuration names the stage-1 run it was written for; the scripts
            // give the initial model by flag.
            assert!(
                matches!(cfg.loss, LossConfig::Circle(_) | LossConfig::Triplet(_)),
                "bench/{name}: model.init {} is not a model folder from the repository root",
                cfg.model.init.display()
            );
            cfg.model.init = strata_testkit::default_model();
        }
        cfg.data.catalog = hd.join("products.tsv");
        if cfg.data.judgments.is_some() {
            cfg.data.judgments = Some(hd.join("judgments.tsv"));
        } else {
            cfg.data.train_judgments = Some(hd.join("judgments.tsv"));
        }
        cfg.out = std::env::temp_dir().join("strata-bench-config");
        cfg.validate()
            .unwrap_or_else(|e| panic!("bench/{name}: {e:#}"));
        checked.push((name, cfg.loss));
    }
    checked.sort_by(|a, b| a.0.cmp(&b.0));
    let has = |file: &str, kind: fn(&LossConfig) -> bool| {
        checked.iter().any(|(n, l)| n == file && kind(l))
    };
    // The rows docs/benchmarks.md reports, with the loss each is named for.
    assert!(has("homedepot-supcon-bn-b256.toml", |l| matches!(
        l,
        LossConfig::Supcon(_)
    )));
    assert!(has("homedepot-infonce-bn-b128.toml", |l| matches!(
        l,
        LossConfig::Infonce(_)
    )));
    assert!(has("homedepot-triplet-bn-b128.toml", |l| matches!(
        l,
        LossConfig::Triplet(_)
    )));
    assert!(has("homedepot-circle-bn.toml", |l| matches!(
        l,
        LossConfig::Circle(_)
    )));
    assert!(checked.len() >= 15, "{checked:?}");
}
