//! Write-then-read round trips for every format.

use std::collections::BTreeMap;

use strata_data::{
    Engagement, Format, Item, Judgment, Source, load_catalog, load_judgments, write_catalog,
    write_judgments,
};

fn items() -> Vec<Item> {
    let mut a = Item::new("A-1", "Casa Bella Spaghetti, 16 oz");
    a.taxonomy = vec![
        "Pantry".into(),
        "Pasta".into(),
        "Spaghetti".into(),
        "Thin Spaghetti".into(),
    ];
    a.description =
        Some("Bronze-cut \"al dente\" pasta,\tfrom Italy\nsecond line \\ backslash".into());
    a.attributes = BTreeMap::from([
        ("brand".to_string(), "Casa Bella".to_string()),
        ("size".into(), "16 oz".into()),
    ]);
    let mut b = Item::new("B,2", "Crème brûlée torch — 3\" nozzle, 1/2 in.");
    b.taxonomy = vec!["Kitchen".into()];
    let c = Item::new("42", "Plain item");
    vec![a, b, c]
}

fn judgments() -> Vec<Judgment> {
    vec![
        Judgment {
            query: "spaghetti, thin".into(),
            item_id: "A-1".into(),
            label: 2,
            source: Some(Source::Human),
            engagement: Some(Engagement {
                impressions: 120,
                clicks: 7,
                add_to_carts: 2,
            }),
        },
        Judgment {
            query: "crème \"brûlée\"\ttorch".into(),
            item_id: "B,2".into(),
            label: 1,
            source: Some(Source::Synthetic),
            engagement: None,
        },
        Judgment::new("plain", "42", 0),
    ]
}

fn formats() -> Vec<Format> {
    let mut f = vec![Format::Tsv, Format::Csv, Format::Jsonl];
    if cfg!(feature = "parquet") {
        f.push(Format::Parquet);
    }
    f
}

#[test]
fn catalogs_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    for f in formats() {
        let path = dir.path().join(format!("catalog.{}", f.extension()));
        write_catalog(&path, &items()).unwrap();
        let back = load_catalog(&path).unwrap();
        assert_eq!(back.items(), items().as_slice(), "format {f}");
        assert_eq!(back.index_of("B,2"), Some(1));
    }
}

#[test]
fn judgments_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    for f in formats() {
        let path = dir.path().join(format!("judgments.{}", f.extension()));
        write_judgments(&path, &judgments()).unwrap();
        assert_eq!(load_judgments(&path).unwrap(), judgments(), "format {f}");
        // Without sources and engagement the optional columns are left out and read back as None.
        let plain: Vec<Judgment> = judgments()
            .into_iter()
            .map(|j| Judgment::new(j.query, j.item_id, j.label))
            .collect();
        write_judgments(&path, &plain).unwrap();
        assert_eq!(load_judgments(&path).unwrap(), plain, "format {f}");
    }
}

#[test]
fn conversion_between_formats_preserves_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut path = dir.path().join("start.tsv");
    write_catalog(&path, &items()).unwrap();
    for f in formats().into_iter().chain([Format::Tsv]) {
        let catalog = load_catalog(&path).unwrap();
        path = dir.path().join(format!("next-{}.{}", f, f.extension()));
        write_catalog(&path, catalog.items()).unwrap();
    }
    assert_eq!(load_catalog(&path).unwrap().items(), items().as_slice());
}

#[test]
fn tsv_layout_is_plain_text() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.tsv");
    write_judgments(&path, &judgments()[..1]).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        text,
        "query\titem_id\tlabel\tsource\timpressions\tclicks\tadd_to_carts\nspaghetti, thin\tA-1\t2\thuman\t120\t7\t2\n"
    );
    assert!(
        Format::from_path(std::path::Path::new("x.xlsx"))
            .unwrap_err()
            .to_string()
            .contains("extension")
    );
}

#[cfg(not(feature = "parquet"))]
#[test]
fn parquet_without_the_feature_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = write_catalog(dir.path().join("c.parquet"), &items()).unwrap_err();
    assert!(err.to_string().contains("`parquet` feature"), "{err}");
}
