//! Reading and writing catalogs and judgments as TSV, CSV, JSONL and Parquet.
//!
//! The format comes from the file extension and the layout from the header, so the Home Depot
//! TSVs, WANDS `product.csv` and the ESCI Parquet files load as they are:
//!
//! | record | native columns |
//! |---|---|
//! | catalog | `item_id`, `name`, `taxonomy` (levels joined by ` > `), `description`, `attributes` (a JSON object) |
//! | judgments | `query`, `item_id`, `label` (0, 1, 2), optional `source`, `impressions`, `clicks`, `add_to_carts` |
//!
//! JSONL holds one object per line with the same keys (`taxonomy` as an array, `attributes` as an
//! object); Parquet holds the same columns (`taxonomy` as a list of strings, `attributes` as JSON
//! text). Judgment files may give an average `relevance` instead of `label` (mapped by
//! [`RelevanceThresholds`]) or an ESCI `esci_label`.

mod delimited;
pub(crate) mod layout;
#[cfg(feature = "parquet")]
mod parquet;
pub(crate) mod table;

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::Context;

pub use delimited::escape_tsv;
pub use layout::RelevanceThresholds;
#[cfg(feature = "parquet")]
pub use parquet::{ParquetColumn, write_columns as write_parquet_columns};

use crate::record::{Catalog, Dataset, Item, Judgment};
use crate::validate::{Collector, OnInvalid, ReadReport};
use layout::{CatalogLayout, JudgmentLayout};
use table::{Cell, Kind};

/// A file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Tsv,
    Csv,
    Jsonl,
    Parquet,
}

impl Format {
    /// All formats.
    pub const ALL: [Format; 4] = [Format::Tsv, Format::Csv, Format::Jsonl, Format::Parquet];

    /// The format implied by a file's extension (`.tsv`/`.txt`, `.csv`, `.jsonl`/`.ndjson`,
    /// `.parquet`/`.pq`).
    pub fn from_path(path: &Path) -> anyhow::Result<Format> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        match ext.as_str() {
            "tsv" | "txt" | "tab" => Ok(Format::Tsv),
            "csv" => Ok(Format::Csv),
            "jsonl" | "ndjson" => Ok(Format::Jsonl),
            "parquet" | "pq" => Ok(Format::Parquet),
            _ => anyhow::bail!(
                "{}: cannot tell the format from the extension {ext:?} (expected .tsv, .csv, .jsonl or .parquet)",
                path.display()
            ),
        }
    }

    /// The usual file extension.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Tsv => "tsv",
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
            Format::Parquet => "parquet",
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "tsv" => Ok(Format::Tsv),
            "csv" => Ok(Format::Csv),
            "jsonl" | "ndjson" => Ok(Format::Jsonl),
            "parquet" => Ok(Format::Parquet),
            other => Err(format!(
                "unknown format {other:?} (expected tsv, csv, jsonl or parquet)"
            )),
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.extension())
    }
}

/// Options for reading a file.
#[derive(Clone, Debug)]
pub struct ReadOptions {
    /// Fail on invalid rows (default) or skip them into a rejects file.
    pub on_invalid: OnInvalid,
    /// How many errors a failure message lists.
    pub max_reported: usize,
    /// Mapping of average relevance ratings to labels.
    pub relevance: RelevanceThresholds,
    /// Overrides the format implied by the extension.
    pub format: Option<Format>,
    /// Keep only rows whose `column` equals `value` (for example `product_locale` = `us`).
    pub filters: Vec<(String, String)>,
    /// Derive labels from an average `relevance` column with [`ReadOptions::relevance`] even
    /// when the file also has a `label` column.
    pub prefer_relevance: bool,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            on_invalid: OnInvalid::Fail,
            max_reported: 10,
            relevance: RelevanceThresholds::default(),
            format: None,
            filters: Vec::new(),
            prefer_relevance: false,
        }
    }
}

/// Resolves filters to column positions.
fn resolve_filters(
    path: &Path,
    columns: &[String],
    filters: &[(String, String)],
) -> anyhow::Result<Vec<(usize, String)>> {
    filters
        .iter()
        .map(|(c, v)| {
            let c = c.to_lowercase();
            columns
                .iter()
                .position(|x| *x == c)
                .map(|i| (i, v.clone()))
                .with_context(|| {
                    format!(
                        "{}: filter column {c:?} not found; columns: {}",
                        path.display(),
                        crate::io::layout::list_columns(columns)
                    )
                })
        })
        .collect()
}

fn passes(filters: &[(usize, String)], cells: &[Cell]) -> bool {
    filters.iter().all(|(i, v)| match &cells[*i] {
        Cell::Bool(b) => (*b && (v == "1" || v == "true")) || (!*b && (v == "0" || v == "false")),
        c => c.to_text().as_deref() == Some(v.as_str()),
    })
}

/// What a file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    Catalog,
    Judgments,
}

/// Tells a judgments file (it has a query column) from a catalog file by its header (or, for
/// JSONL, by the keys of its first record).
pub fn detect_kind(path: impl AsRef<Path>, format: Option<Format>) -> anyhow::Result<RecordKind> {
    let path = path.as_ref();
    check_input(path)?;
    let format = match format {
        Some(f) => f,
        None => Format::from_path(path)?,
    };
    let has_query = |cols: &[String]| {
        cols.iter().any(|c| {
            matches!(
                c.as_str(),
                "query" | "search_term" | "query_text" | "esci_label"
            )
        })
    };
    if format == Format::Jsonl {
        use std::io::BufRead;
        let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
            let line = line.with_context(|| format!("reading {}", path.display()))?;
            if line.trim().is_empty() {
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(&line)
                .with_context(|| format!("{}:{}: invalid JSON", path.display(), i + 1))?;
            let keys: Vec<String> = v
                .as_object()
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default();
            return Ok(if has_query(&keys) {
                RecordKind::Judgments
            } else {
                RecordKind::Catalog
            });
        }
        anyhow::bail!("{}: empty file", path.display());
    }
    let table = table::open(path, format, Kind::Catalog)?;
    Ok(if has_query(&table.columns) {
        RecordKind::Judgments
    } else {
        RecordKind::Catalog
    })
}

/// Reads a catalog with default options (fail on any invalid row).
pub fn load_catalog(path: impl AsRef<Path>) -> anyhow::Result<Catalog> {
    load_catalog_with(path, &ReadOptions::default()).map(|(c, _)| c)
}

/// Reads a catalog. Rejects rows without an id or a name, repeated ids, invalid UTF-8 and
/// malformed attributes.
pub fn load_catalog_with(
    path: impl AsRef<Path>,
    opts: &ReadOptions,
) -> anyhow::Result<(Catalog, ReadReport)> {
    let path = path.as_ref();
    check_input(path)?;
    let format = match opts.format {
        Some(f) => f,
        None => Format::from_path(path)?,
    };
    let table = table::open(path, format, Kind::Catalog)?;
    let layout = CatalogLayout::detect(&table.columns)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let filters = resolve_filters(path, &table.columns, &opts.filters)?;
    let mut col = Collector::new(path, &opts.on_invalid, opts.max_reported);
    let mut report = ReadReport {
        file: path.to_path_buf(),
        layout: layout.name.to_string(),
        ..Default::default()
    };
    let mut items: Vec<Item> = Vec::new();
    let mut first_line: HashMap<String, usize> = HashMap::new();
    for row in table.rows {
        let row = row?;
        report.rows += 1;
        if let Some((field, msg)) = &row.problem {
            let e = col.error(row.line, field, msg.clone());
            col.reject(e, &row.raw)?;
            continue;
        }
        if !passes(&filters, &row.cells) {
            report.filtered += 1;
            continue;
        }
        match layout.build(&row, &col) {
            Ok(item) => {
                if let Some(&first) = first_line.get(&item.id) {
                    let e = col.error(
                        row.line,
                        layout.id_column(),
                        format!("duplicate item id {:?} (first on line {first})", item.id),
                    );
                    col.reject(e, &row.raw)?;
                } else {
                    first_line.insert(item.id.clone(), row.line);
                    items.push(item);
                }
            }
            Err(e) => col.reject(e, &row.raw)?,
        }
    }
    drop(first_line);
    report.accepted = items.len();
    col.finish(&mut report)?;
    ensure_not_empty(path, "items", &report)?;
    let catalog = Catalog::from_items(items).expect("duplicate ids were rejected above");
    Ok((catalog, report))
}

/// An input path must name an existing file: a clear error for a missing path or a directory
/// (before any guess at the format from its extension).
fn check_input(path: &Path) -> anyhow::Result<()> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            anyhow::bail!("{}: no such file", path.display())
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        Ok(m) if m.is_dir() => anyhow::bail!(
            "{} is a directory; give the file itself (.tsv, .csv, .jsonl or .parquet)",
            path.display()
        ),
        Ok(_) => Ok(()),
    }
}

/// A file that yields no record is an error naming why: only a header, or every row
/// filtered out or rejected.
fn ensure_not_empty(path: &Path, what: &str, report: &ReadReport) -> anyhow::Result<()> {
    if report.accepted > 0 {
        return Ok(());
    }
    if report.rows == 0 {
        anyhow::bail!(
            "{}: holds no {what} (no row after the header)",
            path.display()
        );
    }
    anyhow::bail!(
        "{}: no {what} left of {} rows ({} filtered out, {} rejected)",
        path.display(),
        report.rows,
        report.filtered,
        report.rejected
    )
}

/// Reads judgments with default options (fail on any invalid row).
pub fn load_judgments(path: impl AsRef<Path>) -> anyhow::Result<Vec<Judgment>> {
    load_judgments_with(path, &ReadOptions::default(), None).map(|(j, _)| j)
}

/// Reads judgments. Rejects rows without a query or an item id, unknown labels, invalid UTF-8,
/// repeated (query, item) pairs with a different label, and, when `catalog` is given, items
/// that are not in it. Exact repeats (same label) are merged into their first occurrence and
/// counted in the report.
pub fn load_judgments_with(
    path: impl AsRef<Path>,
    opts: &ReadOptions,
    catalog: Option<&Catalog>,
) -> anyhow::Result<(Vec<Judgment>, ReadReport)> {
    let path = path.as_ref();
    check_input(path)?;
    let format = match opts.format {
        Some(f) => f,
        None => Format::from_path(path)?,
    };
    let table = table::open(path, format, Kind::Judgments)?;
    let layout = JudgmentLayout::detect(&table.columns, opts.relevance, opts.prefer_relevance)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let sink = JudgmentSink {
        name: layout.name,
        item_column: layout.item_column().to_string(),
        label_column: layout.label_column().to_string(),
    };
    sink.collect(path, table, opts, catalog, |row, col| {
        layout.build(row, col)
    })
}

/// Turns the rows of a table into judgments with the shared checks (filters, catalog
/// membership, conflicting duplicates).
pub(crate) struct JudgmentSink {
    pub name: &'static str,
    pub item_column: String,
    pub label_column: String,
}

impl JudgmentSink {
    pub(crate) fn collect(
        &self,
        path: &Path,
        table: table::Table,
        opts: &ReadOptions,
        catalog: Option<&Catalog>,
        mut build: impl FnMut(&table::Row, &Collector) -> Result<Judgment, crate::validate::RowError>,
    ) -> anyhow::Result<(Vec<Judgment>, ReadReport)> {
        let filters = resolve_filters(path, &table.columns, &opts.filters)?;
        let mut col = Collector::new(path, &opts.on_invalid, opts.max_reported);
        let mut report = ReadReport {
            file: path.to_path_buf(),
            layout: self.name.to_string(),
            ..Default::default()
        };
        let mut judgments: Vec<Judgment> = Vec::new();
        // (query, item id) -> (label, line)
        let mut seen: HashMap<(String, String), (u8, usize)> = HashMap::new();
        for row in table.rows {
            let row = row?;
            report.rows += 1;
            if let Some((field, msg)) = &row.problem {
                let e = col.error(row.line, field, msg.clone());
                col.reject(e, &row.raw)?;
                continue;
            }
            if !passes(&filters, &row.cells) {
                report.filtered += 1;
                continue;
            }
            let j = match build(&row, &col) {
                Ok(j) => j,
                Err(e) => {
                    col.reject(e, &row.raw)?;
                    continue;
                }
            };
            if let Some(c) = catalog
                && !c.contains(&j.item_id)
            {
                let e = col.error(
                    row.line,
                    &self.item_column,
                    format!("item {:?} is not in the catalog", j.item_id),
                );
                col.reject(e, &row.raw)?;
                continue;
            }
            let key = (j.query.clone(), j.item_id.clone());
            if let Some(&(label, line)) = seen.get(&key) {
                if label == j.label {
                    report.duplicates_merged += 1;
                } else {
                    let e = col.error(
                        row.line,
                        &self.label_column,
                        format!(
                            "duplicate pair ({:?}, {:?}) with a conflicting label: {} here, {} on line {line}",
                            j.query, j.item_id, j.label, label
                        ),
                    );
                    col.reject(e, &row.raw)?;
                }
                continue;
            }
            seen.insert(key, (j.label, row.line));
            judgments.push(j);
        }
        report.accepted = judgments.len();
        col.finish(&mut report)?;
        ensure_not_empty(path, "judgments", &report)?;
        Ok((judgments, report))
    }
}

/// Reads a catalog and its judgments, checking every judged item against the catalog.
pub fn load_dataset(
    catalog: impl AsRef<Path>,
    judgments: impl AsRef<Path>,
    opts: &ReadOptions,
) -> anyhow::Result<(Dataset, Vec<ReadReport>)> {
    let (catalog, r1) = load_catalog_with(catalog, opts)?;
    let (judgments, r2) = load_judgments_with(judgments, opts, Some(&catalog))?;
    Ok((Dataset { catalog, judgments }, vec![r1, r2]))
}

fn create(path: &Path) -> anyhow::Result<BufWriter<File>> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let f = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    Ok(BufWriter::with_capacity(1 << 16, f))
}

fn attributes_json(item: &Item) -> String {
    if item.attributes.is_empty() {
        String::new()
    } else {
        serde_json::to_string(&item.attributes).expect("string maps serialise")
    }
}

/// Writes items in the format implied by the extension.
pub fn write_catalog(path: impl AsRef<Path>, items: &[Item]) -> anyhow::Result<()> {
    let path = path.as_ref();
    write_catalog_as(path, items, Format::from_path(path)?)
}

/// Writes items in a given format.
pub fn write_catalog_as(
    path: impl AsRef<Path>,
    items: &[Item],
    format: Format,
) -> anyhow::Result<()> {
    let path = path.as_ref();
    for (i, item) in items.iter().enumerate() {
        if item.id.trim().is_empty() || item.name.trim().is_empty() {
            anyhow::bail!("item #{i} has an empty id or name");
        }
        if matches!(format, Format::Tsv | Format::Csv)
            && item.taxonomy.iter().any(|l| l.contains(" > "))
        {
            anyhow::bail!(
                "item {:?}: a taxonomy level contains the level separator \" > \"; write JSONL or Parquet",
                item.id
            );
        }
    }
    match format {
        Format::Tsv | Format::Csv => {
            let mut w = delimited::DelimitedWriter::new(create(path)?, format == Format::Csv);
            w.write_record(&["item_id", "name", "taxonomy", "description", "attributes"])?;
            for item in items {
                let tax = item.taxonomy.join(" > ");
                let attrs = attributes_json(item);
                w.write_record(&[
                    item.id.as_str(),
                    item.name.as_str(),
                    tax.as_str(),
                    item.description.as_deref().unwrap_or(""),
                    attrs.as_str(),
                ])?;
            }
            w.into_inner().flush()?;
        }
        Format::Jsonl => {
            let mut w = create(path)?;
            for item in items {
                let mut obj = serde_json::Map::new();
                obj.insert("item_id".into(), item.id.clone().into());
                obj.insert("name".into(), item.name.clone().into());
                obj.insert("taxonomy".into(), item.taxonomy.clone().into());
                if let Some(d) = &item.description {
                    obj.insert("description".into(), d.clone().into());
                }
                if !item.attributes.is_empty() {
                    obj.insert(
                        "attributes".into(),
                        serde_json::to_value(&item.attributes).expect("string maps serialise"),
                    );
                }
                serde_json::to_writer(&mut w, &obj)?;
                w.write_all(b"\n")?;
            }
            w.flush()?;
        }
        Format::Parquet => {
            #[cfg(feature = "parquet")]
            parquet::write_catalog(path, items)?;
            #[cfg(not(feature = "parquet"))]
            anyhow::bail!(
                "{}: Parquet support is not compiled in (build strata-data with the `parquet` feature)",
                path.display()
            );
        }
    }
    Ok(())
}

/// Writes judgments in the format implied by the extension.
pub fn write_judgments(path: impl AsRef<Path>, judgments: &[Judgment]) -> anyhow::Result<()> {
    let path = path.as_ref();
    write_judgments_as(path, judgments, Format::from_path(path)?)
}

/// Writes judgments in a given format. The `source` and engagement columns are written only
/// when some judgment has them.
pub fn write_judgments_as(
    path: impl AsRef<Path>,
    judgments: &[Judgment],
    format: Format,
) -> anyhow::Result<()> {
    let path = path.as_ref();
    let with_source = judgments.iter().any(|j| j.source.is_some());
    let with_engagement = judgments.iter().any(|j| j.engagement.is_some());
    match format {
        Format::Tsv | Format::Csv => {
            let mut w = delimited::DelimitedWriter::new(create(path)?, format == Format::Csv);
            let mut header = vec!["query", "item_id", "label"];
            if with_source {
                header.push("source");
            }
            if with_engagement {
                header.extend(["impressions", "clicks", "add_to_carts"]);
            }
            w.write_record(&header)?;
            let mut fields: Vec<String> = Vec::with_capacity(header.len());
            for j in judgments {
                fields.clear();
                fields.push(j.query.clone());
                fields.push(j.item_id.clone());
                fields.push(j.label.to_string());
                if with_source {
                    fields.push(j.source.map(|s| s.as_str().to_string()).unwrap_or_default());
                }
                if with_engagement {
                    match j.engagement {
                        Some(e) => fields.extend([
                            e.impressions.to_string(),
                            e.clicks.to_string(),
                            e.add_to_carts.to_string(),
                        ]),
                        None => fields.extend([String::new(), String::new(), String::new()]),
                    }
                }
                w.write_record(&fields)?;
            }
            w.into_inner().flush()?;
        }
        Format::Jsonl => {
            let mut w = create(path)?;
            for j in judgments {
                let mut obj = serde_json::Map::new();
                obj.insert("query".into(), j.query.clone().into());
                obj.insert("item_id".into(), j.item_id.clone().into());
                obj.insert("label".into(), j.label.into());
                if let Some(s) = j.source {
                    obj.insert("source".into(), s.as_str().into());
                }
                if let Some(e) = j.engagement {
                    obj.insert("impressions".into(), e.impressions.into());
                    obj.insert("clicks".into(), e.clicks.into());
                    obj.insert("add_to_carts".into(), e.add_to_carts.into());
                }
                serde_json::to_writer(&mut w, &obj)?;
                w.write_all(b"\n")?;
            }
            w.flush()?;
        }
        Format::Parquet => {
            #[cfg(feature = "parquet")]
            parquet::write_judgments(path, judgments, with_source, with_engagement)?;
            #[cfg(not(feature = "parquet"))]
            {
                let _ = (with_source, with_engagement);
                anyhow::bail!(
                    "{}: Parquet support is not compiled in (build strata-data with the `parquet` feature)",
                    path.display()
                );
            }
        }
    }
    Ok(())
}
