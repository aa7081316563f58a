//! Every class of bad input is reported with its file, line and field.

use std::path::{Path, PathBuf};

use strata_data::{
    InvalidRows, OnInvalid, ReadOptions, load_catalog, load_catalog_with, load_judgments,
    load_judgments_with,
};

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// The error message of a failed read, with the structured error checked too.
fn failure(err: anyhow::Error) -> (String, InvalidRows) {
    let msg = err.to_string();
    let rows = err.downcast::<InvalidRows>().expect("an InvalidRows error");
    (msg, rows)
}

fn catalog_tsv(dir: &Path) -> PathBuf {
    write(dir, "catalog.tsv", b"item_id\tname\ttaxonomy\tdescription\tattributes\n1\tRed Shoe\tShoes > Running\t\t\n2\tBlue Shoe\t\t\t\n")
}

#[test]
fn unknown_label() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "j.tsv",
        b"query\titem_id\tlabel\nshoe\t1\t2\nshoe\t2\t3\n",
    );
    let (msg, rows) = failure(load_judgments(&p).unwrap_err());
    assert!(
        msg.contains(&format!(
            "{}:3: field `label`: unknown label \"3\"",
            p.display()
        )),
        "{msg}"
    );
    assert_eq!(rows.count, 1);
    assert_eq!(rows.first[0].line, 3);
    assert_eq!(rows.first[0].field, "label");
}

#[test]
fn missing_ids_and_queries() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "c.tsv",
        b"item_id\tname\n1\tShoe\n\tNameless id\n3\t\n",
    );
    let (msg, rows) = failure(load_catalog(&p).unwrap_err());
    assert!(
        msg.contains(&format!(
            "{}:3: field `item_id`: missing item id",
            p.display()
        )),
        "{msg}"
    );
    assert!(
        msg.contains(&format!(
            "{}:4: field `name`: missing item name",
            p.display()
        )),
        "{msg}"
    );
    assert_eq!(rows.count, 2);

    let p = write(dir.path(), "j.csv", b"query,item_id,label\n,1,2\nshoe,,1\n");
    let (msg, _) = failure(load_judgments(&p).unwrap_err());
    assert!(
        msg.contains(&format!("{}:2: field `query`: missing query", p.display())),
        "{msg}"
    );
    assert!(
        msg.contains(&format!(
            "{}:3: field `item_id`: missing item id",
            p.display()
        )),
        "{msg}"
    );
}

#[test]
fn judgment_for_an_item_not_in_the_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = load_catalog(catalog_tsv(dir.path())).unwrap();
    let p = write(
        dir.path(),
        "j.tsv",
        b"query\tproduct_uid\trelevance\nshoe\t1\t3\nshoe\t99\t2.33\n",
    );
    let err = load_judgments_with(&p, &ReadOptions::default(), Some(&catalog)).unwrap_err();
    let (msg, _) = failure(err);
    assert!(
        msg.contains(&format!(
            "{}:3: field `product_uid`: item \"99\" is not in the catalog",
            p.display()
        )),
        "{msg}"
    );
}

#[test]
fn duplicate_pair_with_conflicting_labels() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "j.jsonl",
        concat!(
            "{\"query\":\"shoe\",\"item_id\":\"1\",\"label\":2}\n",
            "{\"query\":\"shoe\",\"item_id\":\"1\",\"label\":2}\n",
            "\n",
            "{\"query\":\"shoe\",\"item_id\":\"1\",\"label\":0}\n",
        )
        .as_bytes(),
    );
    let (msg, rows) = failure(load_judgments(&p).unwrap_err());
    assert!(
        msg.contains(&format!("{}:4: field `label`: duplicate pair", p.display())),
        "{msg}"
    );
    assert!(msg.contains("0 here, 2 on line 1"), "{msg}");
    assert_eq!(rows.count, 1);
    // The exact repeat on line 2 is merged and counted, not an error.
    let opts = ReadOptions {
        on_invalid: OnInvalid::Skip {
            rejects: dir.path().join("rejects.tsv"),
        },
        ..Default::default()
    };
    let (js, report) = load_judgments_with(&p, &opts, None).unwrap();
    assert_eq!(js.len(), 1);
    assert_eq!(
        (report.rows, report.duplicates_merged, report.rejected),
        (3, 1, 1)
    );
}

#[test]
fn invalid_utf8_names_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "c.tsv",
        b"item_id\tname\n1\tGood\n2\tBad \xff\xfe name\n",
    );
    let (msg, _) = failure(load_catalog(&p).unwrap_err());
    assert!(
        msg.contains(&format!(
            "{}:3: field `name`: invalid UTF-8 (first bad byte at offset 4)",
            p.display()
        )),
        "{msg}"
    );

    let p = write(dir.path(), "j.jsonl", b"{\"query\":\"ok\",\"item_id\":\"1\",\"label\":1}\n{\"query\":\"bad \xc3\x28\",\"item_id\":\"1\",\"label\":1}\n");
    let (msg, _) = failure(load_judgments(&p).unwrap_err());
    assert!(
        msg.contains(&format!("{}:2: field `query`: invalid UTF-8", p.display())),
        "{msg}"
    );

    let p = write(
        dir.path(),
        "j.csv",
        b"query,item_id,label\nshoe,1,\xe2\x82\n",
    );
    let (msg, _) = failure(load_judgments(&p).unwrap_err());
    assert!(
        msg.contains(&format!("{}:2: field `label`: invalid UTF-8", p.display())),
        "{msg}"
    );
}

#[test]
fn structural_problems() {
    let dir = tempfile::tempdir().unwrap();
    // Duplicate item id, short row, long row.
    let p = write(
        dir.path(),
        "c.tsv",
        b"item_id\tname\ttaxonomy\n1\tA\tX\n1\tB\tY\n2\tC\n3\tD\tE\tF\n",
    );
    let (msg, rows) = failure(load_catalog(&p).unwrap_err());
    assert!(
        msg.contains(&format!(
            "{}:3: field `item_id`: duplicate item id \"1\" (first on line 2)",
            p.display()
        )),
        "{msg}"
    );
    assert!(
        msg.contains(&format!(
            "{}:4: field `taxonomy`: missing field",
            p.display()
        )),
        "{msg}"
    );
    assert!(
        msg.contains(&format!(
            "{}:5: field `column 4`: too many fields",
            p.display()
        )),
        "{msg}"
    );
    assert_eq!(rows.count, 3);
    // Bad JSON, bad attributes, bad counts, bad source, bad relevance.
    let p = write(dir.path(), "c.jsonl", b"{\"item_id\":\"1\",\"name\":\"A\"}\n{\"item_id\": \"2\", \"name\": \n{\"item_id\":\"3\",\"name\":\"C\",\"attributes\":[1]}\n");
    let (msg, _) = failure(load_catalog(&p).unwrap_err());
    assert!(
        msg.contains(&format!(
            "{}:2: field `(record)`: invalid JSON",
            p.display()
        )),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("{}:3: field `attributes`", p.display())),
        "{msg}"
    );
    let p = write(
        dir.path(),
        "j.tsv",
        b"query\titem_id\tlabel\tsource\timpressions\tclicks\tadd_to_carts\na\t1\t1\thuman\t10\t-1\t0\nb\t1\t1\trobot\t\t\t\nc\t1\t1\t\t5\t\t\n",
    );
    let (msg, _) = failure(load_judgments(&p).unwrap_err());
    assert!(
        msg.contains(&format!(
            "{}:2: field `clicks`: \"-1\" is not a non-negative integer count",
            p.display()
        )),
        "{msg}"
    );
    assert!(
        msg.contains(&format!(
            "{}:3: field `source`: unknown source \"robot\"",
            p.display()
        )),
        "{msg}"
    );
    assert!(
        msg.contains(&format!(
            "{}:4: field `clicks`: missing engagement count",
            p.display()
        )),
        "{msg}"
    );
    let p = write(
        dir.path(),
        "hd.tsv",
        b"query\tproduct_uid\trelevance\nx\t1\thigh\n",
    );
    let (msg, _) = failure(load_judgments(&p).unwrap_err());
    assert!(
        msg.contains(&format!(
            "{}:2: field `relevance`: unknown label: relevance \"high\"",
            p.display()
        )),
        "{msg}"
    );
    // An unterminated CSV quote.
    let p = write(dir.path(), "c.csv", b"item_id,name\n1,\"open quote\n2,B\n");
    let (msg, _) = failure(load_catalog(&p).unwrap_err());
    assert!(
        msg.contains(&format!(
            "{}:2: field `(row)`: unterminated quoted field",
            p.display()
        )),
        "{msg}"
    );
    // A file without the needed columns fails before any row.
    let p = write(
        dir.path(),
        "label.csv",
        b"id\tquery_id\tproduct_id\tlabel\n1\t0\t5\tExact\n",
    );
    let err = load_judgments(&p).unwrap_err().to_string();
    assert!(err.contains("WANDS adapter"), "{err}");
}

#[test]
fn failure_summary_lists_the_first_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("query\titem_id\tlabel\n");
    for i in 0..25 {
        text.push_str(&format!("q{i}\t{i}\t7\n"));
    }
    let p = write(dir.path(), "j.tsv", text.as_bytes());
    let (msg, rows) = failure(load_judgments(&p).unwrap_err());
    assert_eq!(rows.count, 25);
    assert_eq!(rows.first.len(), 10);
    assert!(msg.contains("25 invalid rows (first 10 shown)"), "{msg}");
    assert!(msg.contains(&format!("{}:11: field `label`", p.display())));
    assert!(!msg.contains(&format!("{}:12: field `label`", p.display())));
}

#[test]
fn skip_invalid_keeps_going_and_writes_every_rejected_row() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = load_catalog(catalog_tsv(dir.path())).unwrap();
    let p = write(
        dir.path(),
        "j.tsv",
        b"query\titem_id\tlabel\nshoe\t1\t2\nshoe\t2\t9\n\t1\t1\nshoe\t77\t0\nboot\t2\t0\nshoe\t1\t0\n",
    );
    let rejects = dir.path().join("out/rejects.tsv");
    let opts = ReadOptions {
        on_invalid: OnInvalid::Skip {
            rejects: rejects.clone(),
        },
        ..Default::default()
    };
    let (js, report) = load_judgments_with(&p, &opts, Some(&catalog)).unwrap();
    assert_eq!(js.len(), 2);
    assert_eq!((report.rows, report.accepted, report.rejected), (6, 2, 4));
    assert_eq!(
        report.rows,
        report.accepted + report.rejected + report.duplicates_merged
    );
    let text = std::fs::read_to_string(&rejects).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "file\tline\tfield\terror\trow");
    assert_eq!(lines.len(), 5);
    let fields: Vec<Vec<&str>> = lines[1..].iter().map(|l| l.split('\t').collect()).collect();
    let where_: Vec<(&str, &str)> = fields.iter().map(|f| (f[1], f[2])).collect();
    assert_eq!(
        where_,
        [
            ("3", "label"),
            ("4", "query"),
            ("5", "item_id"),
            ("7", "label")
        ]
    );
    // The raw row is kept (escaped) so it can be fixed and re-read.
    assert_eq!(fields[0][4], "shoe\\t2\\t9");
    // A second read appends to the same rejects file without repeating the header.
    load_judgments_with(&p, &opts, Some(&catalog)).unwrap();
    let text = std::fs::read_to_string(&rejects).unwrap();
    assert_eq!(text.lines().count(), 9);
    assert_eq!(text.matches("file\tline").count(), 1);
    // The same file with the default policy fails.
    assert!(load_catalog_with(dir.path().join("catalog.tsv"), &ReadOptions::default()).is_ok());
    assert!(load_judgments_with(&p, &ReadOptions::default(), Some(&catalog)).is_err());
}

#[cfg(feature = "parquet")]
#[test]
fn parquet_rows_are_numbered() {
    use strata_data::io::{ParquetColumn, write_parquet_columns};
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("j.parquet");
    write_parquet_columns(
        &p,
        &[
            (
                "query",
                ParquetColumn::Text(vec![Some("a".into()), Some("b".into()), None]),
            ),
            (
                "item_id",
                ParquetColumn::Text(vec![Some("1".into()), Some("2".into()), Some("3".into())]),
            ),
            ("label", ParquetColumn::Int(vec![Some(2), Some(5), Some(0)])),
        ],
    )
    .unwrap();
    let (msg, rows) = failure(load_judgments(&p).unwrap_err());
    assert!(
        msg.contains(&format!(
            "{}:2: field `label`: unknown label \"5\"",
            p.display()
        )),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("{}:3: field `query`: missing query", p.display())),
        "{msg}"
    );
    assert_eq!(rows.count, 2);
}

/// Files that cannot be read as input say why before anything else is guessed: a missing
/// path (with or without an extension), a directory, a header without rows, and a huge
/// header line is not echoed whole.
#[test]
fn missing_paths_directories_empty_files_and_huge_headers() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("catalog");
    let e = load_catalog(&missing).unwrap_err().to_string();
    assert_eq!(e, format!("{}: no such file", missing.display()));
    let e = load_judgments(dir.path().join("j.tsv"))
        .unwrap_err()
        .to_string();
    assert!(e.ends_with("j.tsv: no such file"), "{e}");
    let e = load_catalog(dir.path()).unwrap_err().to_string();
    assert!(e.contains("is a directory; give the file itself"), "{e}");

    let c = write(dir.path(), "c.tsv", b"item_id\tname\n");
    let e = load_catalog(&c).unwrap_err().to_string();
    assert_eq!(
        e,
        format!("{}: holds no items (no row after the header)", c.display())
    );
    let j = write(dir.path(), "j.tsv", b"query\titem_id\tlabel\n");
    let e = load_judgments(&j).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "{}: holds no judgments (no row after the header)",
            j.display()
        )
    );

    let big = write(dir.path(), "big.tsv", "x".repeat(5_000_000).as_bytes());
    let e = load_catalog(&big).unwrap_err().to_string();
    assert!(e.len() < 400, "{} bytes: {}", e.len(), &e[..400]);
    assert!(e.contains("(5000000 characters)"), "{e}");
}
