//! The Home Depot files as they are: header recognition, exact counts, label mapping.

use strata_data::adapters::homedepot::{self, HomeDepotOptions};
use strata_data::{
    ItemTextConfig, ReadOptions, RelevanceThresholds, load_catalog, load_catalog_with,
    load_judgments,
};

#[test]
fn generic_readers_recognise_the_home_depot_files() {
    let dir = strata_testkit::homedepot_dir();
    let (catalog, report) =
        load_catalog_with(dir.join("products.tsv"), &ReadOptions::default()).unwrap();
    assert_eq!(report.layout, "homedepot");
    assert_eq!(catalog.len(), 54_667);
    let item = catalog.by_id("100001").unwrap();
    assert_eq!(item.name, "Simpson Strong-Tie 12-Gauge Angle");
    assert!(item.taxonomy.is_empty());
    // No taxonomy: the item text is just the name.
    assert_eq!(
        ItemTextConfig::default().render(item),
        "Simpson Strong-Tie 12-Gauge Angle"
    );

    let judgments = load_judgments(dir.join("judgments.tsv")).unwrap();
    assert_eq!(judgments.len(), 59_497);
    let mut labels = [0usize; 3];
    for j in &judgments {
        labels[j.label as usize] += 1;
    }
    assert_eq!(labels, [9_562, 22_335, 27_600]);
    let queries: std::collections::HashSet<&str> =
        judgments.iter().map(|j| j.query.as_str()).collect();
    assert_eq!(queries.len(), 9_470);
    assert_eq!(judgments[0].query, "angle bracket");
    assert_eq!(judgments[0].item_id, "100001");
    assert_eq!(judgments[0].label, 2);
    assert!(catalog.len() == load_catalog(dir.join("products.tsv")).unwrap().len());
}

#[test]
fn adapter_checks_items_and_maps_relevance() {
    let dir = strata_testkit::homedepot_dir();
    let (data, reports) = homedepot::load(&dir, &HomeDepotOptions::default()).unwrap();
    assert_eq!(data.catalog.len(), 54_667);
    assert_eq!(data.judgments.len(), 59_497);
    assert_eq!(reports[1].rejected, 0);
    // Mapping `relevance` with the default thresholds reproduces the `label` column.
    let mapped = HomeDepotOptions {
        thresholds: Some(RelevanceThresholds::default()),
        ..Default::default()
    };
    let (remapped, _) = homedepot::load(&dir, &mapped).unwrap();
    assert_eq!(remapped.judgments, data.judgments);
    // Stricter thresholds: only unanimous 3s are exact, >= 2.5 partial.
    let strict = HomeDepotOptions {
        thresholds: Some(RelevanceThresholds {
            exact: 3.0,
            partial: 2.5,
        }),
        ..Default::default()
    };
    let (strict, _) = homedepot::load(&dir, &strict).unwrap();
    let mut labels = [0usize; 3];
    for j in &strict.judgments {
        labels[j.label as usize] += 1;
    }
    // relevance 3 -> 2 (15,434); 2.5, 2.67, 2.75 -> 1 (16 + 12,159 + 7).
    assert_eq!(labels, [59_497 - 15_434 - 12_182, 12_182, 15_434]);
}
