//! Summary statistics on a hand-made set with known values.

use strata_data::stats::DataStats;
use strata_data::{Catalog, Item, ItemTextConfig, Judgment, Source};

#[test]
fn counts_mixes_and_overlap() {
    let mut shoe = Item::new("1", "Red Running Shoe");
    shoe.taxonomy = vec!["Shoes".into()];
    let catalog = Catalog::from_items(vec![
        shoe,
        Item::new("2", "Blue Sock"),
        Item::new("3", "Red Hat"),
    ])
    .unwrap();
    let mut js = vec![
        Judgment::new("red shoe", "1", 2),
        Judgment::new("red shoe", "3", 0),
        Judgment::new("red shoe", "2", 1),
        Judgment::new("blue sock", "2", 2),
        Judgment::new("hat", "3", 2),
        Judgment::new("hat", "9", 0),
    ];
    js[0].source = Some(Source::Human);
    js[1].source = Some(Source::Mined);
    let s = DataStats::compute(Some(&catalog), &js, &ItemTextConfig::default());
    assert_eq!((s.items, s.judgments, s.queries), (3, 6, 3));
    assert_eq!(s.labels, [2, 1, 3]);
    assert_eq!(s.sources["human"], 1);
    assert_eq!(s.sources["mined"], 1);
    assert_eq!(s.sources["unspecified"], 4);
    assert_eq!(s.label_mix["0+1+2"], 1);
    assert_eq!(s.label_mix["0+2"], 1);
    assert_eq!(s.label_mix["2"], 1);
    assert_eq!(s.single_level_queries, 1);
    assert_eq!(s.unknown_items, 1);
    // Label 2: "red shoe" vs "Red Running Shoe, in Shoes" = 1.0; "blue sock" = 1.0; "hat" = 1.0.
    assert_eq!(s.overlap[2].pairs, 3);
    assert!((s.overlap[2].mean - 1.0).abs() < 1e-12);
    assert_eq!(s.overlap[2].hard_pairs, 3);
    // Label 0: "red shoe" vs "Red Hat" = 0.5 (the unknown item is not counted).
    assert_eq!(s.overlap[0].pairs, 1);
    assert!((s.overlap[0].mean - 0.5).abs() < 1e-12);
    assert_eq!(s.overlap[0].hard_pairs, 0);
    // Label 1: "red shoe" vs "Blue Sock" = 0.
    assert_eq!(s.overlap[1].mean, 0.0);
    let text = s.to_string();
    assert!(
        text.contains("queries:      3 (1 with a single label level)"),
        "{text}"
    );
    let no_catalog = DataStats::compute(None, &js, &ItemTextConfig::default());
    assert!(no_catalog.overlap.is_empty());
}
