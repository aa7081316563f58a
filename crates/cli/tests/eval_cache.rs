//! `strata eval` with the item-embedding cache, run as the real binary with the real default
//! model (installed by `scripts/setup.sh`; `$STRATA_MODELS` or `<repo>/models`) on a small
//! catalog: a second run embeds nothing and gives the same metrics, a catalog that gained an
//! item embeds only that item, and `--no-embedding-cache` leaves the cache alone.

use std::path::Path;
use std::process::Command;

mod common;
use common::{default_model, write_catalog};

fn eval(dir: &Path, catalog: &Path, out: &str, extra: &[&str]) -> (String, serde_json::Value) {
    let output = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["eval", "--threads", "1", "--model"])
        .arg(default_model())
        .arg("--catalog")
        .arg(catalog)
        .arg("--judgments")
        .arg(dir.join("judgments.tsv"))
        .arg("--out")
        .arg(dir.join(out))
        .args(extra)
        .env("STRATA_CACHE", dir.join("cache"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "strata eval failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metrics = std::fs::read_to_string(dir.join(out).join("metrics.json")).unwrap();
    (stdout, serde_json::from_str(&metrics).unwrap())
}

fn segments(root: &Path) -> usize {
    let Ok(models) = std::fs::read_dir(root.join("embeddings")) else {
        return 0;
    };
    models
        .flat_map(|m| std::fs::read_dir(m.unwrap().path()).unwrap())
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "seg")
        })
        .count()
}

#[test]
fn eval_reuses_cached_item_embeddings() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(
        dir.join("judgments.tsv"),
        "query\tproduct_uid\tlabel\n\
         drill\t100\t2\ndrill\t101\t1\ndrill\t102\t0\n\
         lamp\t103\t1\nlamp\t104\t2\nlamp\t105\t0\n\
         hose\t105\t2\nhose\t106\t1\nhose\t107\t0\n",
    )
    .unwrap();
    let catalog7 = dir.join("products7.tsv");
    let catalog8 = dir.join("products8.tsv");
    write_catalog(&catalog7, 7);
    write_catalog(&catalog8, 8);

    // The uncached reference.
    let (out, plain) = eval(dir, &catalog8, "plain", &["--no-embedding-cache"]);
    assert!(!out.contains("from the cache"), "{out}");
    assert_eq!(
        segments(&dir.join("cache")),
        0,
        "--no-embedding-cache wrote"
    );

    // 7 items: all embedded and cached.
    let (out, _) = eval(dir, &catalog7, "seven", &[]);
    assert!(out.contains("0 from the cache, 7 embedded"), "{out}");
    // 8 items: only the new one is embedded; metrics equal the uncached run's.
    let (out, cached) = eval(dir, &catalog8, "eight", &[]);
    assert!(out.contains("7 from the cache, 1 embedded"), "{out}");
    // Again: nothing embedded.
    let (out, again) = eval(dir, &catalog8, "again", &[]);
    assert!(out.contains("8 from the cache, 0 embedded"), "{out}");
    assert_eq!(segments(&dir.join("cache")), 2);
    for key in [
        "ndcg@10",
        "ndcg@100",
        "recall@10",
        "precision@10",
        "rerank_ndcg",
    ] {
        let (p, c, a) = (&plain[key], &cached[key], &again[key]);
        let p = p.as_f64().unwrap();
        assert!(
            (p - c.as_f64().unwrap()).abs() < 1e-5 && (p - a.as_f64().unwrap()).abs() < 1e-5,
            "{key}: uncached {p}, cached {c}, again {a}"
        );
    }

    // int8 inference keeps its own cache directory: nothing is reused from the f32 vectors.
    let (out, int8) = eval(dir, &catalog8, "int8", &["--precision", "int8"]);
    assert!(out.contains("0 from the cache, 8 embedded"), "{out}");
    assert_eq!(int8["n_items"], plain["n_items"]);
    let (out, _) = eval(dir, &catalog8, "int8-again", &["--precision", "int8"]);
    assert!(out.contains("8 from the cache, 0 embedded"), "{out}");
    let err = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["eval", "--precision", "int4", "--system", "bm25"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&err.stderr);
    assert!(
        !err.status.success() && stderr.contains("expected f32 or int8"),
        "{stderr}"
    );
}
