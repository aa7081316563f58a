//! Comparisons between runs, shown as in the paper: each metric as a relative change in
//! percent against a baseline run (`100 * (value - baseline) / |baseline|`), or as absolute
//! values.

use std::path::Path;

use anyhow::{Context, bail};
use serde_json::Value;

/// Metrics compared by default: the paper's table columns, then strict recall, rerank NDCG
/// and the margins.
pub const DEFAULT_METRICS: [&str; 16] = [
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
    "hard_pair_auc",
];

/// One run's `metrics.json`.
#[derive(Clone, Debug)]
pub struct RunMetrics {
    /// Row name: the run directory's name.
    pub name: String,
    pub values: Value,
}

/// Metrics in the units of the system's scores (cosine, BM25): `compare_runs` leaves them out
/// (n/a) for a run whose `score_kind` differs from the baseline's.
pub const SCALED_METRICS: [&str; 2] = ["avg_margin", "worst_margin"];

/// Metrics computed from the scores of the judged pairs (`judged_scores.tsv`), not from the
/// ranking. A hybrid run scores its judged pairs with its dense model, so for it these are the
/// dense model's.
pub const SEPARABILITY_METRICS: [&str; 3] = ["avg_margin", "worst_margin", "hard_pair_auc"];

impl RunMetrics {
    /// A numeric metric, if present and not null.
    pub fn get(&self, metric: &str) -> Option<f64> {
        self.values.get(metric).and_then(Value::as_f64)
    }

    /// What the run's scores are (`cosine`, `bm25`), when its metrics say.
    pub fn score_kind(&self) -> Option<&str> {
        self.values.get("score_kind").and_then(Value::as_str)
    }

    /// The evaluated system (`dense`, `bm25`, `hybrid`), when its metrics say.
    pub fn system(&self) -> Option<&str> {
        self.values.get("system").and_then(Value::as_str)
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
    /// Lines printed under the table: what a row's values mean where the columns alone would
    /// mislead (a hybrid run's margins are its dense model's).
    pub notes: Vec<String>,
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
                // Margins are in score units: a BM25 run's are not comparable with cosines.
                _ if SCALED_METRICS.contains(&m.as_str())
                    && r.score_kind().is_some()
                    && r.score_kind() != baseline.score_kind() =>
                {
                    Cell::Missing
                }
                (Some(v), _) if absolute => Cell::Value(v),
                (Some(_), Some(_)) if is_base => Cell::Baseline,
                (Some(v), Some(b)) if b != 0.0 => Cell::Change(100.0 * (v - b) / b.abs()),
                _ => Cell::Missing,
            })
            .collect()
    };
    let mut rows = vec![(baseline.name.clone(), row(baseline, true))];
    rows.extend(runs.iter().map(|r| (r.name.clone(), row(r, false))));
    let shown: Vec<&str> = metrics
        .iter()
        .map(String::as_str)
        .filter(|m| SEPARABILITY_METRICS.contains(m))
        .collect();
    let notes = std::iter::once(baseline)
        .chain(runs)
        .filter(|r| r.system() == Some("hybrid") && shown.iter().any(|m| r.get(m).is_some()))
        .map(|r| {
            format!(
                "{}: a hybrid run; its {} are its dense model's cosines on the judged pairs (the blend reorders the ranking, not these scores)",
                r.name,
                shown.join(", ")
            )
        })
        .collect();
    CompareTable {
        metrics: metrics.to_vec(),
        rows,
        absolute,
        notes,
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
        for n in &self.notes {
            out += &format!("\n{n}\n");
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
        if !self.notes.is_empty() {
            out.push('\n');
            for n in &self.notes {
                out += &format!("- {n}\n");
            }
        }
        out
    }
}

/// A run's per-query margins against the baseline's, on the queries that qualify in both
/// (EVALUATION.md: lexically hard pairs, at least one label-2 and one label-0 pair).
#[derive(Clone, Debug, PartialEq)]
pub struct PairedMargins {
    pub name: String,
    /// Queries qualifying in both runs.
    pub queries: usize,
    /// The run's mean average margin and mean worst-case margin over those queries.
    pub avg_margin: f64,
    pub worst_margin: f64,
    /// Mean per-query difference (run - baseline) and its standard error.
    pub avg_diff: f64,
    pub avg_se: f64,
    pub worst_diff: f64,
    pub worst_se: f64,
    /// The run's mean hard-pair AUC over those queries (fraction of (label 2, label 0)
    /// combinations ordered correctly), its mean per-query difference and standard error.
    pub auc: f64,
    pub auc_diff: f64,
    pub auc_se: f64,
    /// Queries whose worst-case margin rose / fell (by more than 1e-6).
    pub worst_up: usize,
    pub worst_down: usize,
    /// Standard deviation of the run's scores over all judged pairs, and the worst-case
    /// margin divided by it (a scale-free view: a model that squeezes every score into a narrow
    /// band has small margins of either sign).
    pub score_sd: f64,
    pub worst_in_sd: f64,
}

/// Per-query margins of a run directory's `judged_scores.tsv`, keyed by query text.
fn run_margins(
    dir: &Path,
    min_overlap: f64,
) -> anyhow::Result<(
    std::collections::BTreeMap<String, crate::margins::QueryMargin>,
    f64,
)> {
    let rows = crate::report::read_judged_rows(&dir.join("judged_scores.tsv"))?;
    let mut ids: std::collections::HashMap<&str, u32> = std::collections::HashMap::new();
    let mut names: Vec<&str> = Vec::new();
    let pairs: Vec<crate::margins::ScoredPair> = rows
        .iter()
        .map(|r| {
            let next = ids.len() as u32;
            let q = *ids.entry(r.query.as_str()).or_insert_with(|| {
                names.push(r.query.as_str());
                next
            });
            crate::margins::ScoredPair {
                query: q,
                item: 0,
                label: r.label,
                score: r.score,
                overlap: r.overlap,
            }
        })
        .collect();
    let report = crate::margins::hard_pair_margins(&pairs, min_overlap);
    let n = rows.len().max(1) as f64;
    let mean = rows.iter().map(|r| r.score as f64).sum::<f64>() / n;
    let sd = (rows
        .iter()
        .map(|r| (r.score as f64 - mean).powi(2))
        .sum::<f64>()
        / n)
        .sqrt();
    let by_query = report
        .per_query
        .into_iter()
        .map(|m| (names[m.query as usize].to_string(), m))
        .collect();
    Ok((by_query, sd))
}

fn mean_se(d: &[f64]) -> (f64, f64) {
    let n = d.len() as f64;
    if d.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let m = d.iter().sum::<f64>() / n;
    if d.len() < 2 {
        return (m, f64::NAN);
    }
    let var = d.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0);
    (m, (var / n).sqrt())
}

/// Compares each run's per-query margins with the baseline's (paired over common queries).
/// The runs are evaluation directories holding `judged_scores.tsv`.
pub fn paired_margins(
    runs: &[&Path],
    baseline: &Path,
    min_overlap: f64,
) -> anyhow::Result<Vec<PairedMargins>> {
    let (base, _) = run_margins(baseline, min_overlap)?;
    let mut out = Vec::new();
    for dir in std::iter::once(baseline).chain(runs.iter().copied()) {
        let (run, sd) = run_margins(dir, min_overlap)?;
        let common: Vec<(&crate::margins::QueryMargin, &crate::margins::QueryMargin)> = run
            .iter()
            .filter_map(|(q, m)| base.get(q).map(|b| (m, b)))
            .collect();
        let avg_d: Vec<f64> = common.iter().map(|(m, b)| m.average - b.average).collect();
        let worst_d: Vec<f64> = common.iter().map(|(m, b)| m.worst - b.worst).collect();
        let auc_d: Vec<f64> = common.iter().map(|(m, b)| m.ordered - b.ordered).collect();
        let (avg_diff, avg_se) = mean_se(&avg_d);
        let (worst_diff, worst_se) = mean_se(&worst_d);
        let (auc_diff, auc_se) = mean_se(&auc_d);
        let n = common.len().max(1) as f64;
        let worst_margin = common.iter().map(|(m, _)| m.worst).sum::<f64>() / n;
        out.push(PairedMargins {
            name: dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| dir.display().to_string()),
            queries: common.len(),
            avg_margin: common.iter().map(|(m, _)| m.average).sum::<f64>() / n,
            worst_margin,
            avg_diff,
            avg_se,
            worst_diff,
            worst_se,
            auc: common.iter().map(|(m, _)| m.ordered).sum::<f64>() / n,
            auc_diff,
            auc_se,
            // Scores are f32: differences within 1e-6 are ties.
            worst_up: worst_d.iter().filter(|d| **d > 1e-6).count(),
            worst_down: worst_d.iter().filter(|d| **d < -1e-6).count(),
            score_sd: sd,
            worst_in_sd: if sd > 0.0 {
                worst_margin / sd
            } else {
                f64::NAN
            },
        });
    }
    Ok(out)
}

/// The paired margin table as Markdown (the first row is the baseline).
pub fn paired_margins_markdown(rows: &[PairedMargins]) -> String {
    let mut s = String::from(
        "| run | queries | avg margin | worst margin | avg diff (± SE) | worst diff (± SE) | worst up/down | hard-pair AUC | AUC diff (± SE) | score SD | worst / SD |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {:.4} | {:.4} | {:+.4} ± {:.4}{} | {:+.4} ± {:.4}{} | {}/{} | {:.4} | {:+.4} ± {:.4}{} | {:.3} | {:.3} |\n",
            r.name,
            r.queries,
            r.avg_margin,
            r.worst_margin,
            r.avg_diff,
            r.avg_se,
            star(r.avg_diff, r.avg_se),
            r.worst_diff,
            r.worst_se,
            star(r.worst_diff, r.worst_se),
            r.worst_up,
            r.worst_down,
            r.auc,
            r.auc_diff,
            r.auc_se,
            star(r.auc_diff, r.auc_se),
            r.score_sd,
            r.worst_in_sd
        ));
    }
    s
}

/// A run's per-query retrieval metric against the baseline's, paired over the queries on
/// which the metric is defined in both runs.
#[derive(Clone, Debug, PartialEq)]
pub struct PairedMetric {
    pub name: String,
    pub metric: String,
    /// Queries paired.
    pub queries: usize,
    /// The run's mean of the metric over those queries.
    pub mean: f64,
    /// Mean per-query difference (run - baseline) and its standard error.
    pub diff: f64,
    pub se: f64,
    /// Queries on which the run is better / worse (by more than 1e-9).
    pub up: usize,
    pub down: usize,
}

impl PairedMetric {
    /// Whether the difference exceeds twice its standard error (about 95% confidence).
    pub fn significant(&self) -> bool {
        !star(self.diff, self.se).is_empty()
    }
}

/// Per-query metrics of a run directory's `rankings.jsonl`, keyed by query text.
fn run_query_scores(
    dir: &Path,
) -> anyhow::Result<std::collections::BTreeMap<String, crate::evaluate::QueryScores>> {
    let path = dir.join("rankings.jsonl");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = std::collections::BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line)
            .with_context(|| format!("{} line {}: invalid JSON", path.display(), n + 1))?;
        let query = v
            .get("query")
            .and_then(Value::as_str)
            .with_context(|| format!("{} line {}: no `query`", path.display(), n + 1))?;
        if v.get("ndcg@10").is_none() {
            bail!(
                "{} line {}: no per-query `ndcg@10` (the run was evaluated by an older strata: evaluate it again)",
                path.display(),
                n + 1
            );
        }
        let scores: crate::evaluate::QueryScores =
            serde_json::from_value(v.clone()).with_context(|| {
                format!(
                    "{} line {}: invalid per-query metrics",
                    path.display(),
                    n + 1
                )
            })?;
        out.insert(query.to_string(), scores);
    }
    Ok(out)
}

/// Compares each run's per-query retrieval metrics (`ndcg@10`, `ndcg@100`, `recall@100`)
/// with the baseline's, paired by query. The runs are evaluation directories holding
/// `rankings.jsonl`; the first rows are the baseline against itself.
pub fn paired_metrics(
    runs: &[&Path],
    baseline: &Path,
    metrics: &[&str],
) -> anyhow::Result<Vec<PairedMetric>> {
    for m in metrics {
        if !crate::evaluate::QueryScores::NAMES.contains(m) {
            bail!(
                "no per-query metric {m:?} (known: {})",
                crate::evaluate::QueryScores::NAMES.join(", ")
            );
        }
    }
    let base = run_query_scores(baseline)?;
    let mut out = Vec::new();
    for dir in std::iter::once(baseline).chain(runs.iter().copied()) {
        let run = run_query_scores(dir)?;
        for &metric in metrics {
            let pairs: Vec<(f64, f64)> = run
                .iter()
                .filter_map(|(q, s)| Some((s.get(metric)?, base.get(q)?.get(metric)?)))
                .collect();
            let d: Vec<f64> = pairs.iter().map(|(r, b)| r - b).collect();
            let (diff, se) = mean_se(&d);
            out.push(PairedMetric {
                name: run_name(dir),
                metric: metric.to_string(),
                queries: pairs.len(),
                mean: pairs.iter().map(|p| p.0).sum::<f64>() / pairs.len().max(1) as f64,
                diff,
                se,
                up: d.iter().filter(|x| **x > 1e-9).count(),
                down: d.iter().filter(|x| **x < -1e-9).count(),
            });
        }
    }
    Ok(out)
}

fn run_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string())
}

/// ` *` when a difference exceeds twice its standard error (about 95% confidence).
fn star(diff: f64, se: f64) -> &'static str {
    if se.is_finite() && diff.abs() > 2.0 * se {
        " *"
    } else {
        ""
    }
}

/// The paired metric table as Markdown, one row per run and metric; a difference beyond
/// twice its standard error is marked `*`.
pub fn paired_metrics_markdown(rows: &[PairedMetric]) -> String {
    let mut s = String::from(
        "| run | metric | queries | mean | diff (± SE) | up/down |\n|---|---|---|---|---|---|\n",
    );
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {} | {:.4} | {:+.4} ± {:.4}{} | {}/{} |\n",
            r.name,
            r.metric,
            r.queries,
            r.mean,
            r.diff,
            r.se,
            if r.significant() { " *" } else { "" },
            r.up,
            r.down
        ));
    }
    s
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

        // With score kinds given, a BM25 run's margins (BM25 units) stay out of a table whose
        // baseline scores by cosine, in both modes; the scale-free metrics stay in.
        let cosine = write(
            tmp.path(),
            "zero-shot",
            r#"{"score_kind":"cosine","ndcg@10":0.30,"avg_margin":0.05,"hard_pair_auc":0.6}"#,
        );
        let lexical = write(
            tmp.path(),
            "bm25-scored",
            r#"{"score_kind":"bm25","ndcg@10":0.33,"avg_margin":2.5,"hard_pair_auc":0.75}"#,
        );
        let (cosine, lexical) = (load_run(&cosine).unwrap(), load_run(&lexical).unwrap());
        let m = ["ndcg@10", "avg_margin", "hard_pair_auc"].map(String::from);
        for absolute in [false, true] {
            let t = compare_runs(std::slice::from_ref(&lexical), &cosine, &m, absolute);
            assert_eq!(t.rows[1].1[1], Cell::Missing, "absolute {absolute}");
            assert_ne!(t.rows[1].1[0], Cell::Missing);
            assert_ne!(t.rows[1].1[2], Cell::Missing);
        }
        let t = compare_runs(std::slice::from_ref(&cosine), &cosine, &m, true);
        assert_eq!(t.rows[1].1[1], Cell::Value(0.05));
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

    fn write_scores(dir: &Path, rows: &[(&str, u8, f32, f64)]) {
        std::fs::create_dir_all(dir).unwrap();
        let mut t = String::from("query\titem\tlabel\tscore\toverlap\n");
        for (i, (q, l, s, o)) in rows.iter().enumerate() {
            t.push_str(&format!("{q}\tp{i}\t{l}\t{s}\t{o}\n"));
        }
        std::fs::write(dir.join("judged_scores.tsv"), t).unwrap();
    }

    #[test]
    fn paired_margins_are_computed_per_common_query() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("base");
        let run = tmp.path().join("run");
        // Query a: hard pairs 2 -> 0.8, 0.6; 0 -> 0.5. Query b: 2 -> 0.4; 0 -> 0.5, 0.3.
        // Query c qualifies only in the run (its label-0 pair is hard there, not in the base).
        // Pairs with overlap < 0.7 and label-1 pairs never count.
        write_scores(
            &base,
            &[
                ("a", 2, 0.8, 1.0),
                ("a", 2, 0.6, 0.7),
                ("a", 0, 0.5, 1.0),
                ("a", 0, 0.9, 0.2),
                ("a", 1, 0.95, 1.0),
                ("b", 2, 0.4, 1.0),
                ("b", 0, 0.5, 1.0),
                ("b", 0, 0.3, 1.0),
                ("c", 2, 0.4, 1.0),
                ("c", 0, 0.1, 0.5),
            ],
        );
        // The run: a worst 0.7 - 0.2 = 0.5 (was 0.1); b worst 0.6 - 0.7 = -0.1 (was -0.1).
        write_scores(
            &run,
            &[
                ("a", 2, 0.9, 1.0),
                ("a", 2, 0.7, 0.7),
                ("a", 0, 0.2, 1.0),
                ("b", 2, 0.6, 1.0),
                ("b", 0, 0.7, 1.0),
                ("b", 0, 0.1, 1.0),
                ("c", 2, 0.4, 1.0),
                ("c", 0, 0.1, 0.9),
            ],
        );
        let rows = paired_margins(&[run.as_path()], &base, 0.7).unwrap();
        assert_eq!(rows.len(), 2);
        let (b, r) = (&rows[0], &rows[1]);
        assert_eq!((b.name.as_str(), b.queries), ("base", 2));
        assert!((b.worst_margin - (0.1 + -0.1) / 2.0).abs() < 1e-6);
        assert_eq!((b.worst_diff, b.worst_up, b.worst_down), (0.0, 0, 0));
        assert_eq!((r.name.as_str(), r.queries), ("run", 2));
        // Worst: a 0.5 vs 0.1 (+0.4), b -0.1 vs -0.1 (0): mean +0.2, SE = sd([0.4, 0]) / sqrt 2.
        assert!((r.worst_margin - 0.2).abs() < 1e-6, "{r:?}");
        assert!((r.worst_diff - 0.2).abs() < 1e-6, "{r:?}");
        let se = (0.08f64 / 2.0).sqrt();
        assert!((r.worst_se - se).abs() < 1e-6, "{r:?}");
        assert_eq!((r.worst_up, r.worst_down), (1, 0));
        // Average: base a 0.7 - 0.5 = 0.2, b 0.4 - 0.4 = 0; run a 0.8 - 0.2 = 0.6, b 0.6 - 0.4 = 0.2.
        assert!(
            (r.avg_margin - 0.4).abs() < 1e-6 && (r.avg_diff - 0.3).abs() < 1e-6,
            "{r:?}"
        );
        assert!(r.score_sd > 0.0 && (r.worst_in_sd - r.worst_margin / r.score_sd).abs() < 1e-9);
        // Hard-pair AUC: a orders both its combinations in both runs, b one of two (0.4 > 0.3
        // but < 0.5; 0.6 > 0.1 but < 0.7): 0.75 each, no change.
        assert_eq!((b.auc, r.auc, r.auc_diff, r.auc_se), (0.75, 0.75, 0.0, 0.0));
        let md = paired_margins_markdown(&rows);
        // The average-margin gain is beyond two standard errors (marked), the worst's is not.
        assert!(
            md.contains(
                "| run | 2 | 0.4000 | 0.2000 | +0.3000 ± 0.1000 * | +0.2000 ± 0.2000 | 1/0 |"
            ),
            "{md}"
        );
        // A damaged file names its line and field.
        std::fs::write(
            run.join("judged_scores.tsv"),
            "query\titem\tlabel\tscore\toverlap\na\tp\t2\tx\t1\n",
        )
        .unwrap();
        let e = paired_margins(&[run.as_path()], &base, 0.7)
            .unwrap_err()
            .to_string();
        assert!(e.contains("judged_scores.tsv:2: field score"), "{e}");
    }

    fn write_rankings(dir: &Path, rows: &[(&str, Option<f64>, Option<f64>)]) {
        std::fs::create_dir_all(dir).unwrap();
        let t: String = rows
            .iter()
            .map(|(q, n10, r100)| {
                format!(
                    "{}\n",
                    serde_json::json!({"query": q, "items": [], "scores": [], "ndcg@10": n10, "ndcg@100": n10, "recall@100": r100})
                )
            })
            .collect();
        std::fs::write(dir.join("rankings.jsonl"), t).unwrap();
    }

    #[test]
    fn paired_metrics_pair_queries_and_give_standard_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("base");
        let run = tmp.path().join("run");
        // Query c has no NDCG in the run (no relevant item): left out of the pairing; query d
        // exists only in the base.
        write_rankings(
            &base,
            &[
                ("a", Some(0.5), Some(1.0)),
                ("b", Some(0.2), Some(0.5)),
                ("c", Some(0.1), None),
                ("d", Some(0.9), Some(1.0)),
            ],
        );
        write_rankings(
            &run,
            &[
                ("a", Some(0.7), Some(1.0)),
                ("b", Some(0.6), Some(0.5)),
                ("c", None, None),
            ],
        );
        let rows = paired_metrics(&[run.as_path()], &base, &["ndcg@10", "recall@100"]).unwrap();
        assert_eq!(rows.len(), 4);
        let n = &rows[2];
        assert_eq!(
            (n.name.as_str(), n.metric.as_str(), n.queries),
            ("run", "ndcg@10", 2)
        );
        // Differences +0.2 and +0.4: mean +0.3, SE = sd([0.2, 0.4]) / sqrt 2 = 0.1.
        assert!(
            (n.diff - 0.3).abs() < 1e-9 && (n.se - 0.1).abs() < 1e-9,
            "{n:?}"
        );
        assert!((n.mean - 0.65).abs() < 1e-9);
        assert_eq!((n.up, n.down), (2, 0));
        assert!(n.significant());
        let r = &rows[3];
        assert_eq!((r.queries, r.diff, r.up, r.down), (2, 0.0, 0, 0));
        assert!(!r.significant());
        assert_eq!((rows[0].queries, rows[0].diff), (4, 0.0));
        let md = paired_metrics_markdown(&rows);
        assert!(
            md.contains("| run | ndcg@10 | 2 | 0.6500 | +0.3000 ± 0.1000 * | 2/0 |"),
            "{md}"
        );
        // Unknown metrics and runs written before per-query metrics are errors naming them.
        let e = paired_metrics(&[run.as_path()], &base, &["mrr"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("mrr"), "{e}");
        std::fs::write(
            run.join("rankings.jsonl"),
            "{\"query\": \"a\", \"items\": []}\n",
        )
        .unwrap();
        let e = paired_metrics(&[run.as_path()], &base, &["ndcg@10"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("rankings.jsonl line 1") && e.contains("ndcg@10"),
            "{e}"
        );
    }
}
