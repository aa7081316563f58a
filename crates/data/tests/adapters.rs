//! WANDS and ESCI adapters on small fixture files written here.

use std::path::Path;

use strata_data::ReadOptions;
use strata_data::adapters::wands;

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

fn wands_fixture(dir: &Path) {
    write(
        dir,
        "product.csv",
        "product_id\tproduct_name\tproduct_class\tcategory hierarchy\tproduct_description\tproduct_features\trating_count\taverage_rating\treview_count\n\
         0\tsolid wood platform bed\tBeds\tFurniture / Bedroom Furniture / Beds & Headboards / Beds\tgood bed\toverallwidth-sidetoside:64.7|dsprimaryproductstyle:modern\t15\t4.5\t15\n\
         1\tall-clad 7 qt slow cooker\tSlow Cookers\tKitchen & Tabletop / Small Kitchen Appliances / Slow Cookers\t\t\t\t\t\n\
         2\tlow profile platform bed\tBeds\tFurniture / Bedroom Furniture / Beds & Headboards / Beds\t\t\t3\t5.0\t2\n",
    );
    write(
        dir,
        "query.csv",
        "query_id\tquery\tquery_class\n0\tsalon chair\tMassage Chairs\n1\tplatform bed\tBeds\n",
    );
    write(
        dir,
        "label.csv",
        "id\tquery_id\tproduct_id\tlabel\n0\t1\t0\tExact\n1\t1\t2\tPartial\n2\t1\t1\tIrrelevant\n3\t0\t1\tIrrelevant\n",
    );
}

/// (query, item id, label) of each judgment, in order.
fn triples(judgments: &[strata_data::Judgment]) -> Vec<(&str, &str, u8)> {
    judgments
        .iter()
        .map(|j| (j.query.as_str(), j.item_id.as_str(), j.label))
        .collect()
}

#[test]
fn wands_reads_and_maps_labels() {
    let dir = tempfile::tempdir().unwrap();
    wands_fixture(dir.path());
    let (data, reports) = wands::load(dir.path(), &ReadOptions::default()).unwrap();
    assert_eq!(data.catalog.len(), 3);
    assert_eq!(reports[0].layout, "wands");
    let bed = data.catalog.by_id("0").unwrap();
    assert_eq!(bed.name, "solid wood platform bed");
    assert_eq!(
        bed.taxonomy,
        [
            "Furniture",
            "Bedroom Furniture",
            "Beds & Headboards",
            "Beds"
        ]
    );
    assert_eq!(bed.description.as_deref(), Some("good bed"));
    assert_eq!(bed.attributes["class"], "Beds");
    assert_eq!(bed.attributes["rating_count"], "15");
    let labels = triples(&data.judgments);
    assert_eq!(
        labels,
        [
            ("platform bed", "0", 2),
            ("platform bed", "2", 1),
            ("platform bed", "1", 0),
            ("salon chair", "1", 0)
        ]
    );
    // The product file alone loads through the generic reader too (tab-separated .csv).
    let catalog = strata_data::load_catalog(dir.path().join("product.csv")).unwrap();
    assert_eq!(catalog.len(), 3);
}

#[test]
fn wands_reports_unknown_queries_and_labels() {
    let dir = tempfile::tempdir().unwrap();
    wands_fixture(dir.path());
    write(
        dir.path(),
        "label.csv",
        "id\tquery_id\tproduct_id\tlabel\n0\t1\t0\tExact\n1\t9\t2\tPartial\n2\t1\t1\tSomewhat\n3\t0\t7\tIrrelevant\n",
    );
    let err = wands::load(dir.path(), &ReadOptions::default())
        .unwrap_err()
        .to_string();
    let p = dir.path().join("label.csv");
    assert!(
        err.contains(&format!(
            "{}:3: field `query_id`: query id \"9\" is not in query.csv",
            p.display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{}:4: field `label`: unknown label \"Somewhat\"",
            p.display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{}:5: field `product_id`: item \"7\" is not in the catalog",
            p.display()
        )),
        "{err}"
    );
}

#[cfg(feature = "parquet")]
#[test]
fn esci_reads_parquet_with_locale_and_version_filters() {
    use strata_data::adapters::esci::{self, EsciOptions};
    use strata_data::io::{ParquetColumn, write_parquet_columns};
    let dir = tempfile::tempdir().unwrap();
    let text = |v: &[&str]| {
        ParquetColumn::Text(
            v.iter()
                .map(|s| (!s.is_empty()).then(|| s.to_string()))
                .collect(),
        )
    };
    let products = dir.path().join("shopping_queries_dataset_products.parquet");
    write_parquet_columns(
        &products,
        &[
            ("product_id", text(&["B01", "B02", "B03", "B01"])),
            (
                "product_title",
                text(&[
                    "Trail running shoe",
                    "Road running shoe",
                    "Shoe laces",
                    "Zapatilla de trail",
                ]),
            ),
            ("product_description", text(&["Grippy", "", "", ""])),
            ("product_bullet_point", text(&["", "", "", ""])),
            ("product_brand", text(&["Salomon", "Asics", "", "Salomon"])),
            ("product_color", text(&["Black", "", "", ""])),
            ("product_locale", text(&["us", "us", "us", "es"])),
        ],
    )
    .unwrap();
    let examples = dir.path().join("shopping_queries_dataset_examples.parquet");
    write_parquet_columns(
        &examples,
        &[
            (
                "example_id",
                ParquetColumn::Int(vec![Some(0), Some(1), Some(2), Some(3), Some(4)]),
            ),
            (
                "query",
                text(&[
                    "trail shoes",
                    "trail shoes",
                    "trail shoes",
                    "running shoes",
                    "zapatillas",
                ]),
            ),
            (
                "query_id",
                ParquetColumn::Int(vec![Some(0), Some(0), Some(0), Some(1), Some(2)]),
            ),
            ("product_id", text(&["B01", "B02", "B03", "B02", "B01"])),
            ("product_locale", text(&["us", "us", "us", "us", "es"])),
            ("esci_label", text(&["E", "S", "C", "I", "E"])),
            (
                "small_version",
                ParquetColumn::Int(vec![Some(1), Some(1), Some(1), Some(0), Some(1)]),
            ),
            ("large_version", ParquetColumn::Int(vec![Some(1); 5])),
            ("split", text(&["train", "train", "train", "test", "train"])),
        ],
    )
    .unwrap();
    let (data, reports) = esci::load(&examples, &products, &EsciOptions::default()).unwrap();
    assert_eq!(data.catalog.len(), 3);
    assert_eq!(reports[0].filtered, 1);
    assert_eq!(
        data.catalog.by_id("B01").unwrap().attributes["brand"],
        "Salomon"
    );
    assert_eq!(
        data.catalog.by_id("B01").unwrap().description.as_deref(),
        Some("Grippy")
    );
    let labels = triples(&data.judgments);
    assert_eq!(
        labels,
        [
            ("trail shoes", "B01", 2),
            ("trail shoes", "B02", 1),
            ("trail shoes", "B03", 1),
            ("running shoes", "B02", 0)
        ]
    );
    let small = EsciOptions {
        small_version_only: true,
        ..Default::default()
    };
    let (data, _) = esci::load(&examples, &products, &small).unwrap();
    assert_eq!(data.judgments.len(), 3);
    let es = EsciOptions {
        locale: "es".into(),
        ..Default::default()
    };
    let (data, _) = esci::load(&examples, &products, &es).unwrap();
    assert_eq!(
        data.catalog.by_id("B01").unwrap().name,
        "Zapatilla de trail"
    );
    assert_eq!(data.judgments.len(), 1);
    // The generic readers recognise the files by their columns.
    let js = strata_data::load_judgments(&examples).unwrap();
    assert_eq!(
        js.iter().map(|j| j.label).collect::<Vec<_>>(),
        [2, 1, 1, 0, 2]
    );
}
