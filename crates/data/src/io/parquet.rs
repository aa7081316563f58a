//! Parquet input and output (feature `parquet`).
//!
//! Any string-like column (plain, large, view or dictionary encoded) reads as text, integer and
//! float columns as numbers, lists of strings as lists. Rows are numbered from 1 in errors.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use arrow_array::builder::{ListBuilder, StringBuilder, UInt8Builder, UInt32Builder};
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type,
    UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use super::table::{Cell, Row, Table};
use crate::record::{Item, Judgment};

const BATCH: usize = 8192;

/// A column prepared for per-row access.
enum Column {
    Text(ArrayRef),
    Int(ArrayRef),
    Float(ArrayRef),
    Bool(ArrayRef),
    List(ArrayRef),
    Unsupported(DataType),
}

fn prepare(array: &ArrayRef) -> anyhow::Result<Column> {
    use DataType::*;
    Ok(match array.data_type() {
        Utf8 => Column::Text(array.clone()),
        LargeUtf8 | Utf8View | Dictionary(_, _) => {
            Column::Text(arrow_cast::cast(array.as_ref(), &Utf8).context("reading a text column")?)
        }
        Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 => {
            Column::Int(array.clone())
        }
        Float32 | Float64 => Column::Float(array.clone()),
        Boolean => Column::Bool(array.clone()),
        List(_) | LargeList(_) => Column::List(
            arrow_cast::cast(
                array.as_ref(),
                &DataType::List(Arc::new(Field::new_list_field(Utf8, true))),
            )
            .context("reading a list column")?,
        ),
        other => Column::Unsupported(other.clone()),
    })
}

fn int_at(a: &dyn Array, i: usize) -> Option<i64> {
    macro_rules! try_type {
        ($($t:ty),*) => {$(
            if let Some(p) = a.as_primitive_opt::<$t>() {
                return i64::try_from(p.value(i)).ok();
            }
        )*};
    }
    try_type!(
        Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type, UInt32Type, UInt64Type
    );
    None
}

fn cell_at(col: &Column, i: usize) -> Cell {
    match col {
        Column::Unsupported(_) => Cell::Null,
        Column::Text(a) | Column::Int(a) | Column::Float(a) | Column::Bool(a) | Column::List(a)
            if a.is_null(i) =>
        {
            Cell::Null
        }
        Column::Text(a) => {
            let s = a.as_string::<i32>().value(i);
            if s.trim().is_empty() {
                Cell::Null
            } else {
                Cell::Text(s.to_string())
            }
        }
        Column::Int(a) => int_at(a.as_ref(), i).map(Cell::Int).unwrap_or(Cell::Null),
        Column::Float(a) => {
            if let Some(p) = a.as_primitive_opt::<Float64Type>() {
                Cell::Float(p.value(i))
            } else {
                Cell::Float(f64::from(a.as_primitive::<Float32Type>().value(i)))
            }
        }
        Column::Bool(a) => Cell::Bool(a.as_boolean().value(i)),
        Column::List(a) => {
            let values = a.as_list::<i32>().value(i);
            let s = values.as_string::<i32>();
            Cell::List(
                (0..s.len())
                    .filter(|&k| !s.is_null(k))
                    .map(|k| s.value(k).to_string())
                    .collect(),
            )
        }
    }
}

fn raw_json(columns: &[String], cells: &[Cell]) -> String {
    let mut obj = serde_json::Map::new();
    for (c, cell) in columns.iter().zip(cells) {
        let v = match cell {
            Cell::Null | Cell::BadUtf8 { .. } => serde_json::Value::Null,
            Cell::Text(s) => s.clone().into(),
            Cell::Int(i) => (*i).into(),
            Cell::Float(f) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Cell::Bool(b) => (*b).into(),
            Cell::List(l) => l.clone().into(),
            Cell::Json(j) => j.clone(),
        };
        obj.insert(c.clone(), v);
    }
    serde_json::Value::Object(obj).to_string()
}

/// Opens a Parquet file as a table.
pub(crate) fn open(path: &Path) -> anyhow::Result<Table> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .with_context(|| format!("{}: not a readable Parquet file", path.display()))?;
    let columns: Vec<String> = builder
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().trim().to_lowercase())
        .collect();
    let mut reader = builder
        .with_batch_size(BATCH)
        .build()
        .with_context(|| format!("reading {}", path.display()))?;
    let display = path.display().to_string();
    let names = columns.clone();
    let mut batch: Option<(Vec<Column>, usize)> = None;
    let mut pos = 0usize;
    let mut row_number = 0usize;
    let rows = std::iter::from_fn(move || {
        loop {
            if let Some((cols, len)) = &batch
                && pos < *len
            {
                let i = pos;
                pos += 1;
                row_number += 1;
                let cells: Vec<Cell> = cols.iter().map(|c| cell_at(c, i)).collect();
                let problem = cols.iter().zip(&names).find_map(|(c, n)| match c {
                    Column::Unsupported(t) => {
                        Some((n.clone(), format!("unsupported Parquet column type {t}")))
                    }
                    _ => None,
                });
                return Some(Ok(Row {
                    line: row_number,
                    raw: raw_json(&names, &cells),
                    cells,
                    problem,
                }));
            }
            match reader.next()? {
                Ok(b) => {
                    let cols: anyhow::Result<Vec<Column>> =
                        b.columns().iter().map(prepare).collect();
                    match cols {
                        Ok(cols) => {
                            batch = Some((cols, b.num_rows()));
                            pos = 0;
                        }
                        Err(e) => return Some(Err(e.context(format!("reading {display}")))),
                    }
                }
                Err(e) => {
                    return Some(Err(
                        anyhow::Error::new(e).context(format!("reading {display}"))
                    ));
                }
            }
        }
    });
    Ok(Table {
        columns,
        rows: Box::new(rows),
    })
}

fn writer(path: &Path, schema: Arc<Schema>) -> anyhow::Result<ArrowWriter<File>> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    Ok(ArrowWriter::try_new(file, schema, Some(props))?)
}

/// Writes items as Parquet.
pub(crate) fn write_catalog(path: &Path, items: &[Item]) -> anyhow::Result<()> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("item_id", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
        Field::new(
            "taxonomy",
            DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
            false,
        ),
        Field::new("description", DataType::Utf8, true),
        Field::new("attributes", DataType::Utf8, true),
    ]));
    let mut w = writer(path, schema.clone())?;
    for chunk in items.chunks(65_536) {
        let mut ids = StringBuilder::new();
        let mut names = StringBuilder::new();
        let mut tax = ListBuilder::new(StringBuilder::new());
        let mut desc = StringBuilder::new();
        let mut attrs = StringBuilder::new();
        for item in chunk {
            ids.append_value(&item.id);
            names.append_value(&item.name);
            for level in &item.taxonomy {
                tax.values().append_value(level);
            }
            tax.append(true);
            desc.append_option(item.description.as_deref());
            if item.attributes.is_empty() {
                attrs.append_null();
            } else {
                attrs.append_value(serde_json::to_string(&item.attributes)?);
            }
        }
        let cols: Vec<ArrayRef> = vec![
            Arc::new(ids.finish()),
            Arc::new(names.finish()),
            Arc::new(tax.finish()),
            Arc::new(desc.finish()),
            Arc::new(attrs.finish()),
        ];
        w.write(&RecordBatch::try_new(schema.clone(), cols)?)?;
    }
    w.close()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Writes judgments as Parquet.
pub(crate) fn write_judgments(
    path: &Path,
    judgments: &[Judgment],
    with_source: bool,
    with_engagement: bool,
) -> anyhow::Result<()> {
    let mut fields = vec![
        Field::new("query", DataType::Utf8, false),
        Field::new("item_id", DataType::Utf8, false),
        Field::new("label", DataType::UInt8, false),
    ];
    if with_source {
        fields.push(Field::new("source", DataType::Utf8, true));
    }
    if with_engagement {
        for n in ["impressions", "clicks", "add_to_carts"] {
            fields.push(Field::new(n, DataType::UInt32, true));
        }
    }
    let schema = Arc::new(Schema::new(fields));
    let mut w = writer(path, schema.clone())?;
    for chunk in judgments.chunks(65_536) {
        let mut q = StringBuilder::new();
        let mut ids = StringBuilder::new();
        let mut labels = UInt8Builder::new();
        let mut source = StringBuilder::new();
        let mut eng = [
            UInt32Builder::new(),
            UInt32Builder::new(),
            UInt32Builder::new(),
        ];
        for j in chunk {
            q.append_value(&j.query);
            ids.append_value(&j.item_id);
            labels.append_value(j.label);
            source.append_option(j.source.map(|s| s.as_str()));
            let e = j.engagement;
            eng[0].append_option(e.map(|e| e.impressions));
            eng[1].append_option(e.map(|e| e.clicks));
            eng[2].append_option(e.map(|e| e.add_to_carts));
        }
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(q.finish()),
            Arc::new(ids.finish()),
            Arc::new(labels.finish()),
        ];
        if with_source {
            cols.push(Arc::new(source.finish()));
        }
        if with_engagement {
            for b in &mut eng {
                cols.push(Arc::new(b.finish()));
            }
        }
        w.write(&RecordBatch::try_new(schema.clone(), cols)?)?;
    }
    w.close()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Writes a table of text and integer columns as Parquet (for exports and fixtures such as
/// ESCI-shaped files).
pub fn write_columns(path: &Path, columns: &[(&str, ParquetColumn)]) -> anyhow::Result<()> {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(n, c)| match c {
            ParquetColumn::Text(_) => Field::new(*n, DataType::Utf8, true),
            ParquetColumn::Int(_) => Field::new(*n, DataType::Int64, true),
        })
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let arrays: Vec<ArrayRef> = columns
        .iter()
        .map(|(_, c)| -> ArrayRef {
            match c {
                ParquetColumn::Text(v) => Arc::new(arrow_array::StringArray::from(v.clone())),
                ParquetColumn::Int(v) => Arc::new(arrow_array::Int64Array::from(v.clone())),
            }
        })
        .collect();
    let mut w = writer(path, schema.clone())?;
    w.write(&RecordBatch::try_new(schema, arrays)?)?;
    w.close()?;
    Ok(())
}

/// A column for [`write_columns`]: text or 64-bit integers, `None` for null.
pub enum ParquetColumn {
    Text(Vec<Option<String>>),
    Int(Vec<Option<i64>>),
}
