//! Wayfair WANDS: `product.csv` (`product_id`, `product_name`, `product_class`,
//! `category hierarchy`, ...), `query.csv` (`query_id`, `query`, `query_class`) and `label.csv`
//! (`id`, `query_id`, `product_id`, `label`), all tab-separated. Labels: Exact -> 2,
//! Partial -> 1, Irrelevant -> 0. The category hierarchy (levels joined by ` / `) becomes the
//! item taxonomy.

use std::collections::HashMap;
use std::path::Path;

use crate::io::table::{self, Kind};
use crate::io::{Format, JudgmentSink, ReadOptions, load_catalog_with};
use crate::record::{Dataset, Judgment};
use crate::validate::{Collector, ReadReport};

fn column(path: &Path, columns: &[String], name: &str) -> anyhow::Result<usize> {
    columns.iter().position(|c| c == name).ok_or_else(|| {
        anyhow::anyhow!(
            "{}: no {name} column; columns: {}",
            path.display(),
            crate::io::layout::list_columns(columns)
        )
    })
}

/// Reads `dir/product.csv`, `dir/query.csv` and `dir/label.csv`.
pub fn load(
    dir: impl AsRef<Path>,
    opts: &ReadOptions,
) -> anyhow::Result<(Dataset, Vec<ReadReport>)> {
    let dir = dir.as_ref();
    let (catalog, r_products) = load_catalog_with(dir.join("product.csv"), opts)?;

    // query_id -> query text
    let qpath = dir.join("query.csv");
    let qtable = table::open(&qpath, Format::Csv, Kind::Judgments)?;
    let qid = column(&qpath, &qtable.columns, "query_id")?;
    let qtext = column(&qpath, &qtable.columns, "query")?;
    let mut col = Collector::new(&qpath, &opts.on_invalid, opts.max_reported);
    let mut queries: HashMap<String, String> = HashMap::new();
    let mut r_queries = ReadReport {
        file: qpath.clone(),
        layout: "wands".into(),
        ..Default::default()
    };
    for row in qtable.rows {
        let row = row?;
        r_queries.rows += 1;
        if let Some((field, msg)) = &row.problem {
            let e = col.error(row.line, field, msg.clone());
            col.reject(e, &row.raw)?;
            continue;
        }
        let parsed = crate::io::layout::required_text(
            &col,
            row.line,
            "query_id",
            &row.cells[qid],
            "query id",
        )
        .and_then(|id| {
            crate::io::layout::required_text(&col, row.line, "query", &row.cells[qtext], "query")
                .map(|q| (id, q))
        });
        match parsed {
            Ok((id, q)) => {
                if let std::collections::hash_map::Entry::Vacant(slot) = queries.entry(id.clone()) {
                    slot.insert(q);
                } else {
                    let e = col.error(row.line, "query_id", format!("duplicate query id {id:?}"));
                    col.reject(e, &row.raw)?;
                }
            }
            Err(e) => col.reject(e, &row.raw)?,
        }
    }
    r_queries.accepted = queries.len();
    col.finish(&mut r_queries)?;

    let lpath = dir.join("label.csv");
    let ltable = table::open(&lpath, Format::Csv, Kind::Judgments)?;
    let l_qid = column(&lpath, &ltable.columns, "query_id")?;
    let l_pid = column(&lpath, &ltable.columns, "product_id")?;
    let l_label = column(&lpath, &ltable.columns, "label")?;
    let sink = JudgmentSink {
        name: "wands",
        item_column: "product_id".into(),
        label_column: "label".into(),
    };
    let (judgments, r_labels) =
        sink.collect(&lpath, ltable, opts, Some(&catalog), |row, col| {
            let id = crate::io::layout::required_text(
                col,
                row.line,
                "query_id",
                &row.cells[l_qid],
                "query id",
            )?;
            let query = queries.get(&id).ok_or_else(|| {
                col.error(
                    row.line,
                    "query_id",
                    format!("query id {id:?} is not in query.csv"),
                )
            })?;
            let item = crate::io::layout::required_text(
                col,
                row.line,
                "product_id",
                &row.cells[l_pid],
                "item id",
            )?;
            let label =
                crate::io::layout::parse_label(col, row.line, "label", &row.cells[l_label])?;
            Ok(Judgment::new(query.clone(), item, label))
        })?;
    Ok((
        Dataset { catalog, judgments },
        vec![r_products, r_queries, r_labels],
    ))
}
