//! `strata index` survives a crash of `index add`, run as the real binary with the real
//! default model: killed inside its write phase (the failpoint aborts it, as `kill -9`
//! would), the index still serves its old items, `index verify` lists the leftovers and
//! `index repair` removes them, and the add reruns cleanly. An index damaged the way older
//! versions left it (vectors appended, nothing else) is refused by `index info` with a
//! pointer to `index repair`, which restores it.

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn strata(args: &[&str], dir: &Path, failpoint: Option<&str>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_strata"));
    c.arg("--threads").arg("1").args(args).current_dir(dir);
    if let Some(f) = failpoint {
        c.env("STRATA_FAILPOINT", f);
    }
    c.output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn catalog(path: &Path, titles: &[(&str, &str)]) {
    let mut s = String::from("product_uid\tproduct_title\n");
    for (id, t) in titles {
        s.push_str(&format!("{id}\t{t}\n"));
    }
    std::fs::write(path, s).unwrap();
}

/// `strata index build` of `base.tsv` into `out` with `model`, in `dir`.
fn build(model: &str, out: &str, dir: &Path) {
    ok(&strata(
        &[
            "index",
            "build",
            "--model",
            model,
            "--catalog",
            "base.tsv",
            "--out",
            out,
        ],
        dir,
        None,
    ));
}

#[test]
fn index_add_killed_mid_write_leaves_a_servable_index() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let model = common::default_model();
    let model = model.to_str().unwrap();
    catalog(
        &d.join("base.tsv"),
        &[
            ("1", "cordless drill 20v"),
            ("2", "claw hammer steel"),
            ("3", "led ceiling light"),
            ("4", "garden hose 50 ft"),
        ],
    );
    catalog(
        &d.join("more.tsv"),
        &[("5", "hose nozzle sprayer"), ("6", "wood screws box")],
    );
    build(model, "idx", d);
    let add = [
        "index", "add", "--index", "idx", "--model", model, "--items", "more.tsv",
    ];
    let killed = strata(&add, d, Some("index-bm25"));
    assert!(!killed.status.success());
    let info: serde_json::Value =
        serde_json::from_str(&ok(&strata(&["index", "info", "--index", "idx"], d, None))).unwrap();
    assert_eq!(info["count"], 4);
    let report: serde_json::Value = serde_json::from_str(&ok(&strata(
        &["index", "verify", "--index", "idx"],
        d,
        None,
    )))
    .unwrap();
    assert_eq!(report["problems"].as_array().unwrap().len(), 0, "{report}");
    assert!(
        !report["leftovers"].as_array().unwrap().is_empty(),
        "{report}"
    );
    let repaired: serde_json::Value = serde_json::from_str(&ok(&strata(
        &["index", "repair", "--index", "idx"],
        d,
        None,
    )))
    .unwrap();
    assert!(repaired["action"].is_null(), "{repaired}");
    // The add reruns and completes.
    let report: serde_json::Value = serde_json::from_str(&ok(&strata(&add, d, None))).unwrap();
    assert_eq!(
        (report["count"].as_u64(), report["slots"].as_u64()),
        (Some(6), Some(6))
    );

    // An index left as older versions left a killed add: vectors appended, nothing else.
    build(model, "old", d);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(d.join("old/embeddings.f32"))
        .unwrap();
    std::io::Write::write_all(&mut f, &vec![0u8; 2 * 384 * 4]).unwrap();
    drop(f);
    let refused = strata(&["index", "info", "--index", "old"], d, None);
    assert_eq!(refused.status.code(), Some(1));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("strata index repair"), "{err}");
    assert_eq!(
        strata(&["index", "verify", "--index", "old"], d, None)
            .status
            .code(),
        Some(1)
    );
    let repaired: serde_json::Value = serde_json::from_str(&ok(&strata(
        &["index", "repair", "--index", "old"],
        d,
        None,
    )))
    .unwrap();
    assert!(
        repaired["action"]
            .as_str()
            .unwrap()
            .contains("2 surplus vector rows dropped"),
        "{repaired}"
    );
    ok(&strata(&["index", "info", "--index", "old"], d, None));
}
