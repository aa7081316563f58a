//! Every input format seen as a table: named columns and rows of cells with line numbers.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use anyhow::Context;

use super::Format;
use super::delimited::DelimitedReader;

/// One value of a row.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Cell {
    Null,
    Text(String),
    /// Bytes that are not valid UTF-8, with the offset of the first bad byte.
    BadUtf8 {
        offset: usize,
    },
    Int(i64),
    Float(f64),
    Bool(bool),
    List(Vec<String>),
    Json(serde_json::Value),
}

impl Cell {
    /// The cell as text, for filters and ids (`None` for null and invalid cells).
    pub(crate) fn to_text(&self) -> Option<String> {
        match self {
            Cell::Text(s) => Some(s.clone()),
            Cell::Int(i) => Some(i.to_string()),
            Cell::Float(f) => Some(f.to_string()),
            Cell::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
}

/// One row of a table.
pub(crate) struct Row {
    pub line: usize,
    /// The row as it appeared in the input (for rejects files).
    pub raw: String,
    pub cells: Vec<Cell>,
    /// A structural problem: (field, message).
    pub problem: Option<(String, String)>,
}

/// Which kind of record a file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Catalog,
    Judgments,
}

impl Kind {
    /// The columns a JSONL object is mapped onto, with the keys accepted for each.
    fn jsonl_columns(self) -> &'static [(&'static str, &'static [&'static str])] {
        match self {
            Kind::Catalog => &[
                ("item_id", &["item_id", "id", "product_id", "product_uid"]),
                ("name", &["name", "title", "product_title", "product_name"]),
                ("taxonomy", &["taxonomy", "category"]),
                ("description", &["description"]),
                ("attributes", &["attributes"]),
            ],
            Kind::Judgments => &[
                ("query", &["query"]),
                ("item_id", &["item_id", "product_id", "product_uid"]),
                ("label", &["label"]),
                ("relevance", &["relevance"]),
                ("source", &["source"]),
                ("impressions", &["impressions"]),
                ("clicks", &["clicks"]),
                ("add_to_carts", &["add_to_carts"]),
            ],
        }
    }
}

/// Named columns and an iterator over rows.
pub(crate) struct Table {
    pub columns: Vec<String>,
    pub rows: Box<dyn Iterator<Item = anyhow::Result<Row>>>,
}

/// Opens `path` as a table.
pub(crate) fn open(path: &Path, format: Format, kind: Kind) -> anyhow::Result<Table> {
    match format {
        Format::Tsv => open_delimited(path, b'\t', false),
        Format::Csv => {
            let delimiter = sniff_csv_delimiter(path)?;
            open_delimited(path, delimiter, delimiter == b',')
        }
        Format::Jsonl => open_jsonl(path, kind),
        Format::Parquet => {
            #[cfg(feature = "parquet")]
            {
                super::parquet::open(path)
            }
            #[cfg(not(feature = "parquet"))]
            {
                let _ = kind;
                anyhow::bail!(
                    "{}: Parquet support is not compiled in (build strata-data with the `parquet` feature)",
                    path.display()
                )
            }
        }
    }
}

fn open_file(path: &Path) -> anyhow::Result<BufReader<File>> {
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    Ok(BufReader::with_capacity(1 << 16, f))
}

/// `.csv` files are comma-separated unless the header holds tabs and no commas (WANDS ships
/// tab-separated `.csv` files).
fn sniff_csv_delimiter(path: &Path) -> anyhow::Result<u8> {
    use std::io::BufRead;
    let mut first = Vec::new();
    open_file(path)?
        .read_until(b'\n', &mut first)
        .with_context(|| format!("reading {}", path.display()))?;
    let tabs = first.iter().filter(|&&b| b == b'\t').count();
    let commas = first.iter().filter(|&&b| b == b',').count();
    Ok(if tabs > 0 && commas == 0 { b'\t' } else { b',' })
}

fn decode(bytes: Vec<u8>) -> Cell {
    match String::from_utf8(bytes) {
        Ok(s) if s.trim().is_empty() => Cell::Null,
        Ok(s) => Cell::Text(s),
        Err(e) => Cell::BadUtf8 {
            offset: e.utf8_error().valid_up_to(),
        },
    }
}

fn open_delimited(path: &Path, delimiter: u8, quoted: bool) -> anyhow::Result<Table> {
    let mut reader = DelimitedReader::new(open_file(path)?, delimiter, quoted);
    let header = reader
        .next_record()
        .with_context(|| format!("reading {}", path.display()))?
        .with_context(|| format!("{}: empty file (no header)", path.display()))?;
    let mut columns = Vec::with_capacity(header.fields.len());
    for (i, f) in header.fields.into_iter().enumerate() {
        let name = String::from_utf8(f).map_err(|_| {
            anyhow::anyhow!(
                "{}:{}: header column {} is not valid UTF-8",
                path.display(),
                header.line,
                i + 1
            )
        })?;
        columns.push(name.trim_start_matches('\u{feff}').trim().to_lowercase());
    }
    let display = path.display().to_string();
    let ncols = columns.len();
    let names = columns.clone();
    let rows = std::iter::from_fn(move || {
        let rec = match reader.next_record() {
            Ok(Some(rec)) => rec,
            Ok(None) => return None,
            Err(e) => {
                return Some(Err(
                    anyhow::Error::new(e).context(format!("reading {display}"))
                ));
            }
        };
        let raw = String::from_utf8_lossy(&rec.raw).into_owned();
        let nfields = rec.fields.len();
        let mut problem = rec.problem.map(|m| ("(row)".to_string(), m));
        if problem.is_none() && nfields != ncols {
            problem = Some(if nfields < ncols {
                (
                    names[nfields].clone(),
                    format!("missing field (row has {nfields} fields, header has {ncols})"),
                )
            } else {
                (
                    format!("column {}", ncols + 1),
                    format!("too many fields (row has {nfields}, header has {ncols})"),
                )
            });
        }
        let mut cells: Vec<Cell> = rec.fields.into_iter().map(decode).collect();
        cells.resize(ncols, Cell::Null);
        Some(Ok(Row {
            line: rec.line,
            raw,
            cells,
            problem,
        }))
    });
    Ok(Table {
        columns,
        rows: Box::new(rows),
    })
}

fn json_cell(v: &serde_json::Value) -> Cell {
    use serde_json::Value;
    match v {
        Value::Null => Cell::Null,
        Value::String(s) if s.trim().is_empty() => Cell::Null,
        Value::String(s) if s.contains('\u{fffd}') => Cell::BadUtf8 {
            offset: s.find('\u{fffd}').unwrap_or(0),
        },
        Value::String(s) => Cell::Text(s.clone()),
        Value::Bool(b) => Cell::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Cell::Int(i),
            None => Cell::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::Array(items) => {
            let strings: Option<Vec<String>> = items
                .iter()
                .map(|x| x.as_str().map(str::to_string))
                .collect();
            match strings {
                Some(s) => Cell::List(s),
                None => Cell::Json(v.clone()),
            }
        }
        Value::Object(_) => Cell::Json(v.clone()),
    }
}

fn open_jsonl(path: &Path, kind: Kind) -> anyhow::Result<Table> {
    use std::io::BufRead;
    let mut reader = open_file(path)?;
    let spec = kind.jsonl_columns();
    let columns: Vec<String> = spec.iter().map(|(c, _)| c.to_string()).collect();
    let display = path.display().to_string();
    let mut line = 0usize;
    let mut buf = Vec::new();
    let rows = std::iter::from_fn(move || {
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => {
                    return Some(Err(
                        anyhow::Error::new(e).context(format!("reading {display}"))
                    ));
                }
            }
            line += 1;
            if buf.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            let utf8_ok = std::str::from_utf8(&buf).is_ok();
            let text = String::from_utf8_lossy(&buf).trim_end().to_string();
            let mut row = Row {
                line,
                raw: text.clone(),
                cells: vec![Cell::Null; spec.len()],
                problem: None,
            };
            let value: serde_json::Value = match serde_json::from_str(&text) {
                Ok(v) => v,
                Err(e) => {
                    row.problem = Some(("(record)".into(), format!("invalid JSON: {e}")));
                    return Some(Ok(row));
                }
            };
            let Some(obj) = value.as_object() else {
                row.problem = Some(("(record)".into(), "not a JSON object".into()));
                return Some(Ok(row));
            };
            for (i, (_, keys)) in spec.iter().enumerate() {
                if let Some(v) = keys.iter().find_map(|k| obj.get(*k)) {
                    row.cells[i] = json_cell(v);
                    if utf8_ok && let Cell::BadUtf8 { .. } = row.cells[i] {
                        // A literal U+FFFD in valid UTF-8 input is ordinary text.
                        row.cells[i] = Cell::Text(v.as_str().unwrap_or_default().to_string());
                    }
                }
            }
            if !utf8_ok && !row.cells.iter().any(|c| matches!(c, Cell::BadUtf8 { .. })) {
                row.problem = Some((
                    "(record)".into(),
                    "invalid UTF-8 outside the known fields".into(),
                ));
            }
            return Some(Ok(row));
        }
    });
    Ok(Table {
        columns,
        rows: Box::new(rows),
    })
}
