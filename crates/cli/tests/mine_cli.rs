//! `strata mine` run as the real binary with the real default model (installed by
//! `scripts/setup.sh`) on a small catalog, with the model flags every embedding command shares
//! (`--device`, `--batch-size`, `--max-tokens`, `--precision`): every judged query is mined
//! over the whole catalog, the originals are kept, unjudged retrieved items come back as
//! label-0 hard negatives, and the same run with other batch limits mines the same pairs.
//! `strata pipeline --print-config` prints the resolved recipe, which reads back to itself.

use std::path::Path;
use std::process::{Command, Output};

mod common;
use common::{TITLES, default_model, write_catalog};

fn mine(dir: &Path, out: &str, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["mine", "--threads", "1", "--model"])
        .arg(default_model())
        .arg("--catalog")
        .arg(dir.join("products.tsv"))
        .arg("--judgments")
        .arg(dir.join("judgments.tsv"))
        .arg("--out")
        .arg(dir.join(out))
        .args(["--k", "4", "--whole-catalog", "--search", "exact"])
        .args(extra)
        .env("STRATA_CACHE", dir.join("cache"))
        .output()
        .unwrap()
}

fn pairs(dir: &Path, out: &str) -> Vec<(String, String, u64)> {
    let text = std::fs::read_to_string(dir.join(out).join("judgments.jsonl")).unwrap();
    let mut v: Vec<(String, String, u64)> = text
        .lines()
        .map(|l| {
            let j: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                j["query"].as_str().unwrap().to_string(),
                j["item_id"].as_str().unwrap().to_string(),
                j["label"].as_u64().unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn mine_takes_the_shared_model_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_catalog(&dir.join("products.tsv"), TITLES.len());
    std::fs::write(
        dir.join("judgments.tsv"),
        "query\tproduct_uid\tlabel\n\
         drill\t100\t2\ndrill\t107\t0\n\
         hose\t105\t2\nhose\t106\t1\n",
    )
    .unwrap();

    let run = mine(
        dir,
        "a",
        &[
            "--device",
            "cpu",
            "--batch-size",
            "3",
            "--max-tokens",
            "64",
            "--precision",
            "f32",
            "--no-embedding-cache",
        ],
    );
    assert!(
        run.status.success(),
        "strata mine failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("a/mining_report.json")).unwrap())
            .unwrap();
    assert_eq!(report["queries"], 2, "{report}");
    assert_eq!(report["corpus_items"], 8, "{report}");
    assert_eq!(report["pairs_retrieved"], 8, "{report}");
    assert_eq!(report["original_judgments"], 4, "{report}");
    let got = pairs(dir, "a");
    // The originals are kept with their labels.
    for want in [
        ("drill", "100", 2),
        ("drill", "107", 0),
        ("hose", "105", 2),
        ("hose", "106", 1),
    ] {
        assert!(
            got.contains(&(want.0.into(), want.1.into(), want.2)),
            "{want:?} missing from {got:?}"
        );
    }
    // Every added pair is an unjudged item labeled 0 (`unjudged-zero`), and there are some.
    let added: Vec<_> = got
        .iter()
        .filter(|(q, i, _)| {
            !matches!(
                (q.as_str(), i.as_str()),
                ("drill", "100") | ("drill", "107") | ("hose", "105") | ("hose", "106")
            )
        })
        .collect();
    assert!(!added.is_empty(), "{got:?}");
    assert!(added.iter().all(|p| p.2 == 0), "{added:?}");
    assert_eq!(report["merged_judgments"], got.len(), "{report}");

    // Other batch limits: the same pairs.
    let run = mine(dir, "b", &["--batch-size", "8", "--no-embedding-cache"]);
    assert!(run.status.success());
    assert_eq!(pairs(dir, "b"), got);

    // A labeler mining cannot use is refused before any work, naming the flag.
    let run = mine(dir, "d", &["--labeler", "llm"]);
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains("--labeler") && err.contains("llm") && err.contains("cross-encoder=DIR"),
        "{err}"
    );
    assert!(!dir.join("d").exists());

    // An unknown device is a clear error.
    let run = mine(dir, "c", &["--device", "tpu"]);
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("tpu"), "{err}");
}

fn print_pipeline_config(config: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["pipeline", "--config"])
        .arg(config)
        .args(["--print-config"])
        .args(extra)
        .env_remove("STRATA_MODEL")
        .output()
        .unwrap()
}

#[test]
fn pipeline_print_config_resolves_the_recipe_and_reads_back() {
    let tmp = tempfile::tempdir().unwrap();
    let recipe = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../recipes/homedepot.toml");
    let out = tmp.path().join("run");
    let printed = print_pipeline_config(&recipe, &["--out", out.to_str().unwrap()]);
    assert!(
        printed.status.success(),
        "{}",
        String::from_utf8_lossy(&printed.stderr)
    );
    let text = String::from_utf8(printed.stdout).unwrap();
    // Nothing is run: the run tree is not created.
    assert!(!out.exists());
    let file = tmp.path().join("resolved.toml");
    std::fs::write(&file, &text).unwrap();
    let cfg = strata_pipeline::PipelineConfig::from_toml_file(&file).unwrap();
    // The flag overrides the recipe's `out`; the recipe's own settings are kept, and keys it
    // leaves out are written with their defaults.
    assert_eq!(cfg.out, out);
    assert_eq!(cfg.stage1.train.batch_size, 256);
    assert_eq!(cfg.stage1.data.spelling_ratio, 0.3);
    // Stage 1 is a soup of three training seeds.
    assert_eq!(cfg.stage1.seeds, 3);
    assert_eq!(cfg.mine.k, 20);
    assert_eq!(cfg.stage2.train.max_steps, 100);
    assert_eq!(cfg.hybrid_alpha, Some(0.5));
    for key in [
        "[stage1.model]",
        "[stage2.loss]",
        "[mine]",
        "negatives_from_rank",
    ] {
        assert!(text.contains(key), "{key} missing from\n{text}");
    }
    // The printed configuration is a fixed point.
    let again = print_pipeline_config(&file, &[]);
    assert!(again.status.success());
    assert_eq!(String::from_utf8(again.stdout).unwrap(), text);

    // A bad key is refused with the file named.
    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, "out = \"x\"\n[mine]\nkay = 3\n").unwrap();
    let refused = print_pipeline_config(&bad, &[]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("bad.toml") && err.contains("kay"), "{err}");
}
