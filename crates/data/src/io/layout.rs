//! Recognises a file's layout from its column names (native strata files, Home Depot, WANDS,
//! Amazon ESCI) and turns rows into records, with field-level errors.

use std::collections::BTreeMap;

use super::table::{Cell, Row};
use crate::record::{Engagement, Item, Judgment, MAX_LABEL, Source};
use crate::validate::{Collector, RowError};

/// How average relevance ratings map to labels: `>= exact` -> 2, `>= partial` -> 1, else 0.
/// Ratings are compared after rounding to two decimals (Home Depot stores 8/3 as 2.67).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RelevanceThresholds {
    pub exact: f64,
    pub partial: f64,
}

impl Default for RelevanceThresholds {
    /// The Home Depot mapping: >= 2.67 -> 2, 2.0-2.5 -> 1, < 2 -> 0.
    fn default() -> Self {
        RelevanceThresholds {
            exact: 2.67,
            partial: 2.0,
        }
    }
}

impl RelevanceThresholds {
    /// The label of an average rating.
    pub fn label(&self, relevance: f64) -> u8 {
        let r = (relevance * 100.0).round() / 100.0;
        if r >= self.exact - 1e-9 {
            2
        } else if r >= self.partial - 1e-9 {
            1
        } else {
            0
        }
    }
}

fn find(columns: &[String], aliases: &[&str]) -> Option<usize> {
    aliases
        .iter()
        .find_map(|a| columns.iter().position(|c| c == a))
}

fn has(columns: &[String], name: &str) -> bool {
    columns.iter().any(|c| c == name)
}

fn cell_text(
    col: &Collector,
    line: usize,
    field: &str,
    cell: &Cell,
) -> Result<Option<String>, RowError> {
    match cell {
        Cell::Null => Ok(None),
        Cell::Text(s) => Ok(Some(s.trim().to_string())),
        Cell::Int(i) => Ok(Some(i.to_string())),
        Cell::BadUtf8 { offset } => Err(col.error(
            line,
            field,
            format!("invalid UTF-8 (first bad byte at offset {offset})"),
        )),
        other => Err(col.error(line, field, format!("expected text, found {other:?}"))),
    }
}

pub(crate) fn required_text(
    col: &Collector,
    line: usize,
    field: &str,
    cell: &Cell,
    what: &str,
) -> Result<String, RowError> {
    cell_text(col, line, field, cell)?
        .ok_or_else(|| col.error(line, field, format!("missing {what}")))
}

/// Column mapping for catalog files.
pub(crate) struct CatalogLayout {
    pub name: &'static str,
    id: (usize, String),
    title: (usize, String),
    taxonomy: Option<(usize, String, &'static str)>,
    description: Option<(usize, String)>,
    attributes: Option<(usize, String)>,
    extras: Vec<(usize, String)>,
}

/// The header's columns for an error message, each cut to 40 characters and at most 20 of
/// them: a file whose "header" is megabytes of data is not echoed whole.
pub(crate) fn list_columns(columns: &[String]) -> String {
    const MAX_CHARS: usize = 40;
    const MAX_COLUMNS: usize = 20;
    let mut parts: Vec<String> = columns
        .iter()
        .take(MAX_COLUMNS)
        .map(|c| {
            let n = c.chars().count();
            if n > MAX_CHARS {
                let head: String = c.chars().take(MAX_CHARS).collect();
                format!("{head:?}... ({n} characters)")
            } else {
                format!("{c:?}")
            }
        })
        .collect();
    if columns.len() > MAX_COLUMNS {
        parts.push(format!("(+{} more)", columns.len() - MAX_COLUMNS));
    }
    parts.join(", ")
}

impl CatalogLayout {
    pub(crate) fn detect(columns: &[String]) -> Result<Self, String> {
        let id = find(columns, &["item_id", "id", "product_uid", "product_id"]).ok_or_else(|| {
            format!(
                "no item id column (expected one of item_id, id, product_uid, product_id); columns: {}",
                list_columns(columns)
            )
        })?;
        let title = find(
            columns,
            &["name", "title", "product_title", "product_name"],
        )
        .ok_or_else(|| {
            format!(
                "no item name column (expected one of name, title, product_title, product_name); columns: {}",
                list_columns(columns)
            )
        })?;
        let name = if has(columns, "product_uid") {
            "homedepot"
        } else if has(columns, "product_class") || has(columns, "category hierarchy") {
            "wands"
        } else if has(columns, "product_locale") || has(columns, "product_brand") {
            "esci"
        } else if has(columns, "item_id") {
            "native"
        } else {
            "generic"
        };
        let taxonomy = find(
            columns,
            &[
                "taxonomy",
                "category",
                "category hierarchy",
                "category_hierarchy",
            ],
        )
        .map(|i| {
            let sep = if columns[i].starts_with("category hierarchy")
                || columns[i] == "category_hierarchy"
            {
                " / "
            } else {
                " > "
            };
            (i, columns[i].clone(), sep)
        });
        let description = find(columns, &["description", "product_description"]);
        let attributes = find(columns, &["attributes"]);
        let used: Vec<usize> = [
            Some(id),
            Some(title),
            taxonomy.as_ref().map(|t| t.0),
            description,
            attributes,
        ]
        .into_iter()
        .flatten()
        .collect();
        let extras = columns
            .iter()
            .enumerate()
            .filter(|(i, _)| !used.contains(i))
            .map(|(i, c)| {
                let key = match c.as_str() {
                    "product_class" => "class",
                    "product_brand" => "brand",
                    "product_color" => "color",
                    "product_bullet_point" => "bullet_points",
                    "product_locale" => "locale",
                    "product_features" => "features",
                    other => other,
                };
                (i, key.to_string())
            })
            .collect();
        let named = |i: usize| (i, columns[i].clone());
        Ok(CatalogLayout {
            name,
            id: named(id),
            title: named(title),
            taxonomy,
            description: description.map(named),
            attributes: attributes.map(named),
            extras,
        })
    }

    /// The column that holds item ids.
    pub(crate) fn id_column(&self) -> &str {
        &self.id.1
    }

    pub(crate) fn build(&self, row: &Row, col: &Collector) -> Result<Item, RowError> {
        let line = row.line;
        let id = required_text(col, line, &self.id.1, &row.cells[self.id.0], "item id")?;
        let name = required_text(
            col,
            line,
            &self.title.1,
            &row.cells[self.title.0],
            "item name",
        )?;
        let mut item = Item::new(id, name);
        if let Some((i, field, sep)) = &self.taxonomy {
            item.taxonomy = match &row.cells[*i] {
                Cell::List(levels) => levels.iter().map(|l| l.trim().to_string()).collect(),
                cell => cell_text(col, line, field, cell)?
                    .map(|t| {
                        t.split(sep)
                            .map(|l| l.trim().to_string())
                            .filter(|l| !l.is_empty())
                            .collect()
                    })
                    .unwrap_or_default(),
            };
            if item.taxonomy.iter().any(|l| l.is_empty()) {
                return Err(col.error(line, field, "empty taxonomy level"));
            }
        }
        if let Some((i, field)) = &self.description {
            item.description = cell_text(col, line, field, &row.cells[*i])?;
        }
        if let Some((i, field)) = &self.attributes {
            item.attributes = parse_attributes(col, line, field, &row.cells[*i])?;
        }
        for (i, key) in &self.extras {
            if let Some(v) =
                cell_text(col, line, key, &row.cells[*i]).or_else(|e| match &row.cells[*i] {
                    Cell::Float(f) => Ok(Some(f.to_string())),
                    Cell::Bool(b) => Ok(Some(b.to_string())),
                    _ => Err(e),
                })?
            {
                item.attributes.insert(key.clone(), v);
            }
        }
        Ok(item)
    }
}

fn parse_attributes(
    col: &Collector,
    line: usize,
    field: &str,
    cell: &Cell,
) -> Result<BTreeMap<String, String>, RowError> {
    let value = match cell {
        Cell::Null => return Ok(BTreeMap::new()),
        Cell::Json(v) => v.clone(),
        cell => {
            let text = cell_text(col, line, field, cell)?.unwrap_or_default();
            serde_json::from_str(&text).map_err(|e| {
                col.error(
                    line,
                    field,
                    format!("attributes are not a JSON object: {e}"),
                )
            })?
        }
    };
    let obj = value
        .as_object()
        .ok_or_else(|| col.error(line, field, "attributes are not a JSON object"))?;
    obj.iter()
        .map(|(k, v)| {
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                other => {
                    return Err(col.error(
                        line,
                        field,
                        format!(
                            "attribute {k:?} must be a string, number or boolean, found {other}"
                        ),
                    ));
                }
            };
            Ok((k.clone(), v))
        })
        .collect()
}

/// Where a judgment's label comes from.
enum LabelColumn {
    /// 0, 1, 2 (also `exact`, `partial`, `irrelevant`).
    Label(usize, String),
    /// ESCI letters: E -> 2, S and C -> 1, I -> 0.
    Esci(usize, String),
    /// An average rating mapped by thresholds.
    Relevance(usize, String),
}

/// Column mapping for judgment files.
pub(crate) struct JudgmentLayout {
    pub name: &'static str,
    query: (usize, String),
    item: (usize, String),
    label: LabelColumn,
    source: Option<(usize, String)>,
    engagement: [Option<(usize, String)>; 3],
    thresholds: super::RelevanceThresholds,
}

impl JudgmentLayout {
    pub(crate) fn detect(
        columns: &[String],
        thresholds: super::RelevanceThresholds,
        prefer_relevance: bool,
    ) -> Result<Self, String> {
        let named = |i: usize| (i, columns[i].clone());
        let query = find(columns, &["query", "search_term", "query_text"]).ok_or_else(|| {
            if has(columns, "query_id") {
                format!(
                    "no query column, only query_id (a WANDS label.csv needs query.csv: use the WANDS adapter); columns: {}",
                    list_columns(columns)
                )
            } else {
                format!("no query column; columns: {}", list_columns(columns))
            }
        })?;
        let item = find(columns, &["item_id", "product_uid", "product_id", "id"]).ok_or_else(|| {
            format!(
                "no item id column (expected one of item_id, product_uid, product_id); columns: {}",
                list_columns(columns)
            )
        })?;
        let relevance = find(columns, &["relevance", "median_relevance"]);
        let label = if let (true, Some(i)) = (prefer_relevance, relevance) {
            LabelColumn::Relevance(i, columns[i].clone())
        } else if let Some(i) = find(columns, &["label"]) {
            LabelColumn::Label(i, columns[i].clone())
        } else if let Some(i) = find(columns, &["esci_label"]) {
            LabelColumn::Esci(i, columns[i].clone())
        } else if let Some(i) = relevance {
            LabelColumn::Relevance(i, columns[i].clone())
        } else {
            return Err(format!(
                "no label column (expected label, esci_label or relevance); columns: {}",
                list_columns(columns)
            ));
        };
        let name = if has(columns, "product_uid") {
            "homedepot"
        } else if has(columns, "esci_label") {
            "esci"
        } else if has(columns, "item_id") {
            "native"
        } else {
            "generic"
        };
        Ok(JudgmentLayout {
            name,
            query: named(query),
            item: named(item),
            label,
            source: find(columns, &["source"]).map(named),
            engagement: [
                find(columns, &["impressions"]).map(named),
                find(columns, &["clicks"]).map(named),
                find(columns, &["add_to_carts", "add_to_cart", "atc"]).map(named),
            ],
            thresholds,
        })
    }

    /// The column that holds item ids.
    pub(crate) fn item_column(&self) -> &str {
        &self.item.1
    }

    /// The column that holds labels.
    pub(crate) fn label_column(&self) -> &str {
        match &self.label {
            LabelColumn::Label(_, c) | LabelColumn::Esci(_, c) | LabelColumn::Relevance(_, c) => c,
        }
    }

    pub(crate) fn build(&self, row: &Row, col: &Collector) -> Result<Judgment, RowError> {
        let line = row.line;
        let query = required_text(col, line, &self.query.1, &row.cells[self.query.0], "query")?;
        let item_id = required_text(col, line, &self.item.1, &row.cells[self.item.0], "item id")?;
        let label = match &self.label {
            LabelColumn::Label(i, field) => parse_label(col, line, field, &row.cells[*i])?,
            LabelColumn::Esci(i, field) => {
                let t = required_text(col, line, field, &row.cells[*i], "label")?;
                match t.as_str() {
                    "E" | "e" | "exact" | "Exact" => 2,
                    "S" | "s" | "C" | "c" | "substitute" | "complement" => 1,
                    "I" | "i" | "irrelevant" => 0,
                    other => {
                        return Err(col.error(
                            line,
                            field,
                            format!("unknown label {other:?} (expected E, S, C or I)"),
                        ));
                    }
                }
            }
            LabelColumn::Relevance(i, field) => {
                let r = match &row.cells[*i] {
                    Cell::Int(v) => *v as f64,
                    Cell::Float(v) => *v,
                    cell => {
                        let t = required_text(col, line, field, cell, "relevance")?;
                        t.parse::<f64>().map_err(|_| {
                            col.error(
                                line,
                                field,
                                format!("unknown label: relevance {t:?} is not a number"),
                            )
                        })?
                    }
                };
                if !r.is_finite() {
                    return Err(col.error(line, field, format!("unknown label: relevance {r}")));
                }
                self.thresholds.label(r)
            }
        };
        let mut j = Judgment::new(query, item_id, label);
        if let Some((i, field)) = &self.source {
            j.source = cell_text(col, line, field, &row.cells[*i])?
                .map(|s| s.parse::<Source>().map_err(|e| col.error(line, field, e)))
                .transpose()?;
        }
        if self.engagement.iter().any(Option::is_some) {
            let mut values = [None; 3];
            for (k, spec) in self.engagement.iter().enumerate() {
                if let Some((i, field)) = spec {
                    values[k] = parse_count(col, line, field, &row.cells[*i])?;
                }
            }
            if values.iter().any(Option::is_some) {
                const NAMES: [&str; 3] = ["impressions", "clicks", "add_to_carts"];
                for k in 0..3 {
                    if values[k].is_none() {
                        let field = self.engagement[k]
                            .as_ref()
                            .map(|(_, f)| f.as_str())
                            .unwrap_or(NAMES[k]);
                        return Err(col.error(
                            line,
                            field,
                            "missing engagement count (the other engagement fields are set)",
                        ));
                    }
                }
                j.engagement = Some(Engagement {
                    impressions: values[0].unwrap_or(0),
                    clicks: values[1].unwrap_or(0),
                    add_to_carts: values[2].unwrap_or(0),
                });
            }
        }
        Ok(j)
    }
}

pub(crate) fn parse_label(
    col: &Collector,
    line: usize,
    field: &str,
    cell: &Cell,
) -> Result<u8, RowError> {
    let unknown = |v: &str| {
        col.error(
            line,
            field,
            format!("unknown label {v:?} (expected 0, 1 or 2)"),
        )
    };
    match cell {
        Cell::Int(v) if (0..=i64::from(MAX_LABEL)).contains(v) => Ok(*v as u8),
        Cell::Int(v) => Err(unknown(&v.to_string())),
        Cell::Float(v) if v.fract() == 0.0 && (0.0..=2.0).contains(v) => Ok(*v as u8),
        Cell::Float(v) => Err(unknown(&v.to_string())),
        cell => {
            let t = required_text(col, line, field, cell, "label")?;
            match t.to_ascii_lowercase().as_str() {
                "0" | "irrelevant" => Ok(0),
                "1" | "partial" => Ok(1),
                "2" | "exact" => Ok(2),
                _ => Err(unknown(&t)),
            }
        }
    }
}

fn parse_count(
    col: &Collector,
    line: usize,
    field: &str,
    cell: &Cell,
) -> Result<Option<u32>, RowError> {
    let bad = |v: String| {
        col.error(
            line,
            field,
            format!("{v:?} is not a non-negative integer count"),
        )
    };
    match cell {
        Cell::Null => Ok(None),
        Cell::Int(v) => u32::try_from(*v).map(Some).map_err(|_| bad(v.to_string())),
        Cell::Float(v) if v.fract() == 0.0 && *v >= 0.0 && *v <= u32::MAX as f64 => {
            Ok(Some(*v as u32))
        }
        cell => {
            let t = required_text(col, line, field, cell, "count")?;
            t.parse::<u32>().map(Some).map_err(|_| bad(t))
        }
    }
}
