//! Comparisons between runs, shown as in the paper: each metric as a relative change in
//! percent against a baseline run (`100 * (value - baseline) / |baseline|`), or as absolute
//! values.

use std::path::Path;

use anyhow::{Context, bail};
use serde_json::Value;

/// Metrics compared by default: the paper's table columns, then strict recall, rerank NDCG
/// and the margins.
pub const DEFAULT_METRICS: [&str; 15] = [
    "ndcg@10",
    "ndcg@50",
    "ndcg@100",
    "recall@10",
    "recall@50",
    "recall@100",
    "precision@10",
    "precision@50",
    "precision@100",
    "recall_strict@10",
    "recall_strict@50",
    "recall_strict@100",
    "rerank_ndcg",
    "avg_margin",
    "worst_margin",
];

/// One run's `metrics.json`.
#[derive(Clone, Debug)]
pub struct RunMetrics {
    /// Row name: the run directory's name.
    pub name: String,
    pub values: Value,
}

impl RunMetrics {
    /// A numeric metric, if present and not null.
    pub fn get(&self, metric: &str) -> Option<f64> {
        self.values.get(metric).and_then(Value::as_f64)
    }
}

/// Loads a run from its directory (or directly from a `metrics.json` file).
pub fn load_run(path: &Path) -> anyhow::Result<RunMetrics> {
    let (file, name_from) = if path.is_dir() {
        (path.join("metrics.json"), path)
    } else {
        (path.to_path_buf(), path.parent().unwrap_or(path))
    };
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read {}", file.display()))?;
    let values: Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: not valid JSON", file.display()))?;
    if !values.is_object() {
        bail!("{}: expected a JSON object of metrics", file.display());
    }
    let name = name_from
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| path.display().to_string());
    Ok(RunMetrics { name, values })
}

/// One cell of the table.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Cell {
    /// An absolute value.
    Value(f64),
    /// A relative change in percent.
    Change(f64),
    /// The baseline row in relative mode.
    Baseline,
    /// Missing in this run or the baseline, or a zero baseline.
    Missing,
}

/// The comparison table.
#[derive(Clone, Debug)]
pub struct CompareTable {
    pub metrics: Vec<String>,
    /// Baseline first.
    pub rows: Vec<(String, Vec<Cell>)>,
    pub absolute: bool,
}

/// Builds the table: the baseline row, then each run.
pub fn compare_runs(
    runs: &[RunMetrics],
    baseline: &RunMetrics,
    metrics: &[String],
    absolute: bool,
) -> CompareTable {
    let row = |r: &RunMetrics, is_base: bool| -> Vec<Cell> {
        metrics
            .iter()
            .map(|m| match (r.get(m), baseline.get(m)) {
                (Some(v), _) if absolute => Cell::Value(v),
                (Some(_), Some(_)) if is_base => Cell::Baseline,
                (Some(v), Some(b)) if b != 0.0 => Cell::Change(100.0 * (v - b) / b.abs()),
                _ => Cell::Missing,
            })
            .collect()
    };
    let mut rows = vec![(baseline.name.clone(), row(baseline, true))];
    rows.extend(runs.iter().map(|r| (r.name.clone(), row(r, false))));
    CompareTable {
        metrics: metrics.to_vec(),
        rows,
        absolute,
    }
}

impl Cell {
    fn render(&self) -> String {
        match *self {
            Cell::Value(v) => format!("{v:.4}"),
            Cell::Change(c) => format!("{c:+.2}%"),
            Cell::Baseline => "-".into(),
            Cell::Missing => "n/a".into(),
        }
    }
}

impl CompareTable {
    fn cells(&self) -> (Vec<String>, Vec<Vec<String>>) {
        let mut header = vec![if self.absolute {
            "run".to_string()
        } else {
            "run (vs baseline)".to_string()
        }];
        header.extend(self.metrics.iter().cloned());
        let rows = self
            .rows
            .iter()
            .map(|(name, cells)| {
                std::iter::once(name.clone())
                    .chain(cells.iter().map(Cell::render))
                    .collect()
            })
            .collect();
        (header, rows)
    }

    /// Plain text with aligned columns.
    pub fn to_text(&self) -> String {
        let (header, rows) = self.cells();
        let widths: Vec<usize> = (0..header.len())
            .map(|c| {
                rows.iter()
                    .map(|r: &Vec<String>| r[c].len())
                    .chain([header[c].len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |r: &[String]| -> String {
            r.iter()
                .enumerate()
                .map(|(c, v)| {
                    if c == 0 {
                        format!("{v:<w$}", w = widths[c])
                    } else {
                        format!("{v:>w$}", w = widths[c])
                    }
                })
                .collect::<Vec<_>>()
                .join("  ")
        };
        let mut out = line(&header) + "\n";
        for r in &rows {
            out += &line(r);
            out.push('\n');
        }
        out
    }

    /// A Markdown table.
    pub fn to_markdown(&self) -> String {
        let (header, rows) = self.cells();
        let mut out = format!(
            "| {} |\n|{}\n",
            header.join(" | "),
            "---|".repeat(header.len())
        );
        for r in rows {
            out += &format!("| {} |\n", r.join(" | "));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, json: &str) -> std::path::PathBuf {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("metrics.json"), json).unwrap();
        d
    }

    #[test]
    fn relative_and_absolute_tables_from_metrics_files() {
        let tmp = tempfile::tempdir().unwrap();
        let base = write(
            tmp.path(),
            "bm25",
            r#"{"system":"bm25","ndcg@10":0.40,"recall@10":0.25,"avg_margin":-0.5,"worst_margin":0.0}"#,
        );
        let run = write(
            tmp.path(),
            "model-a",
            r#"{"system":"dense","ndcg@10":0.43,"recall@10":0.20,"avg_margin":0.25,"worst_margin":0.1,"rerank_ndcg":0.9}"#,
        );
        let base = load_run(&base).unwrap();
        let run = load_run(&run.join("metrics.json")).unwrap();
        assert_eq!(run.name, "model-a");
        let metrics: Vec<String> = [
            "ndcg@10",
            "recall@10",
            "avg_margin",
            "worst_margin",
            "rerank_ndcg",
        ]
        .map(String::from)
        .to_vec();
        let t = compare_runs(std::slice::from_ref(&run), &base, &metrics, false);
        assert_eq!(t.rows[0].0, "bm25");
        assert_eq!(&t.rows[0].1[..4], &[Cell::Baseline; 4]);
        assert_eq!(t.rows[0].1[4], Cell::Missing);
        let c = &t.rows[1].1;
        let change = |i: usize| match c[i] {
            Cell::Change(v) => v,
            other => panic!("{other:?}"),
        };
        assert!((change(0) - 7.5).abs() < 1e-9); // (0.43 - 0.40) / 0.40
        assert!((change(1) + 20.0).abs() < 1e-9); // (0.20 - 0.25) / 0.25
        assert!((change(2) - 150.0).abs() < 1e-9); // (0.25 - (-0.5)) / |-0.5|
        assert_eq!(c[3], Cell::Missing); // zero baseline
        assert_eq!(c[4], Cell::Missing); // absent in the baseline
        let text = t.to_text();
        assert!(
            text.contains("+7.50%") && text.contains("-20.00%") && text.contains("+150.00%"),
            "{text}"
        );

        let a = compare_runs(std::slice::from_ref(&run), &base, &metrics, true);
        assert_eq!(a.rows[1].1[0], Cell::Value(0.43));
        assert_eq!(a.rows[0].1[2], Cell::Value(-0.5));
        assert_eq!(a.rows[0].1[4], Cell::Missing);
        assert!(
            a.to_markdown()
                .contains("| model-a | 0.4300 | 0.2000 | 0.2500 | 0.1000 | 0.9000 |")
        );
    }

    #[test]
    fn bad_runs_are_reported_with_their_path() {
        let tmp = tempfile::tempdir().unwrap();
        let e = load_run(&tmp.path().join("missing")).unwrap_err();
        assert!(format!("{e:#}").contains("missing"));
        let d = write(tmp.path(), "broken", "{not json");
        let e = load_run(&d).unwrap_err();
        assert!(format!("{e:#}").contains("broken"), "{e:#}");
        let d = write(tmp.path(), "list", "[1, 2]");
        assert!(load_run(&d).is_err());
    }
}
