//! Writes an evaluation run to a directory:
//!
//! - `metrics.json`: every number of the protocol ([`Metrics`]).
//! - `judged_scores.tsv`: each judged pair with its score, label and token overlap.
//! - `thresholds.json`: thresholds between strata (when both sides of each boundary exist).
//! - `scores_by_label.{png,svg}` (Figure 2) and `margins.{png,svg}` (Figure 3).
//! - `report.md` and a self-contained `report.html` (tables, plots inlined as SVG).

use std::fmt::Write as _;
use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::evaluate::{EvalResult, Metrics};
use crate::plots::{LABEL_COLORS, ViolinGroup, ViolinPlot, render_svg, write_plot};
use crate::thresholds::{Criterion, Thresholds, derive_thresholds};

/// Paths written by [`write_run`].
#[derive(Clone, Debug)]
pub struct RunFiles {
    pub metrics: PathBuf,
    pub judged_scores: PathBuf,
    /// `rankings.jsonl`: per query, the system's top items and scores.
    pub rankings: PathBuf,
    /// `None` when no thresholds could be derived.
    pub thresholds: Option<PathBuf>,
    pub plots: Vec<PathBuf>,
    pub report_md: PathBuf,
    pub report_html: PathBuf,
}

fn write_file(path: &Path, bytes: impl AsRef<[u8]>) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// One line per query: `{"query": ..., "items": [ids], "scores": [..], "ndcg@10": ..,
/// "ndcg@100": .., "recall@100": ..}`, best first; a metric is `null` where it is undefined.
fn write_rankings(path: &Path, result: &EvalResult) -> anyhow::Result<()> {
    let mut out = String::new();
    for ((q, hits), m) in result
        .queries
        .iter()
        .zip(&result.rankings)
        .zip(&result.per_query)
    {
        let items: Vec<&str> = hits
            .iter()
            .map(|h| result.item_ids[h.item as usize].as_str())
            .collect();
        let scores: Vec<f32> = hits.iter().map(|h| h.score).collect();
        out.push_str(
            &serde_json::json!({
                "query": q,
                "items": items,
                "scores": scores,
                "ndcg@10": m.ndcg_10,
                "ndcg@100": m.ndcg_100,
                "recall@100": m.recall_100,
            })
            .to_string(),
        );
        out.push('\n');
    }
    write_file(path, out)
}

/// Writes every file of a run into `dir` (created if missing).
pub fn write_run(dir: &Path, result: &EvalResult) -> anyhow::Result<RunFiles> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let metrics = dir.join("metrics.json");
    write_file(
        &metrics,
        serde_json::to_string_pretty(&result.metrics)? + "\n",
    )?;

    let judged_scores = dir.join("judged_scores.tsv");
    write_judged_scores(&judged_scores, result)?;

    let rankings = dir.join("rankings.jsonl");
    write_rankings(&rankings, result)?;

    let thresholds = match &result.thresholds {
        Ok(t) => {
            let p = dir.join("thresholds.json");
            write_file(&p, serde_json::to_string_pretty(t)? + "\n")?;
            Some(p)
        }
        Err(_) => None,
    };

    let (fig2, fig3) = (score_plot(result), margin_plot(result));
    let mut plots = Vec::new();
    for (stem, plot) in [("scores_by_label", &fig2), ("margins", &fig3)] {
        let (png, svg) = write_plot(dir, stem, plot)?;
        plots.extend([png, svg]);
    }

    let doc = report_blocks(result);
    let report_md = dir.join("report.md");
    write_file(&report_md, to_markdown(&doc))?;
    let report_html = dir.join("report.html");
    let svgs = [
        ("scores_by_label", render_svg(&fig2)?),
        ("margins", render_svg(&fig3)?),
    ];
    write_file(&report_html, to_html(&doc, &result.metrics, &svgs))?;
    Ok(RunFiles {
        metrics,
        judged_scores,
        rankings,
        thresholds,
        plots,
        report_md,
        report_html,
    })
}

fn clean(s: &str) -> String {
    s.replace(['\t', '\n', '\r'], " ")
}

fn write_judged_scores(path: &Path, r: &EvalResult) -> anyhow::Result<()> {
    let f =
        std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
    let mut w = BufWriter::new(f);
    let io = |e: std::io::Error| anyhow::anyhow!("cannot write {}: {e}", path.display());
    writeln!(w, "query\titem\tlabel\tscore\toverlap").map_err(io)?;
    for p in &r.pairs {
        writeln!(
            w,
            "{}\t{}\t{}\t{}\t{:.4}",
            clean(&r.queries[p.query as usize]),
            clean(&r.item_ids[p.item as usize]),
            p.label,
            p.score,
            p.overlap
        )
        .map_err(io)?;
    }
    w.flush().map_err(io)
}

/// One row of a run's `judged_scores.tsv`.
#[derive(Clone, Debug, PartialEq)]
pub struct JudgedRow {
    pub query: String,
    pub item: String,
    pub label: u8,
    pub score: f32,
    pub overlap: f64,
}

/// Reads a run's `judged_scores.tsv`; errors name the file, line and field.
pub fn read_judged_rows(path: &Path) -> anyhow::Result<Vec<JudgedRow>> {
    let f = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.with_context(|| format!("{}:{}: cannot read", path.display(), n + 1))?;
        if n == 0 {
            if !line.starts_with("query\titem\tlabel\tscore") {
                bail!(
                    "{}:1: expected the header query, item, label, score, overlap",
                    path.display()
                );
            }
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != 5 {
            bail!(
                "{}:{}: expected 5 tab-separated fields, found {}",
                path.display(),
                n + 1,
                f.len()
            );
        }
        let field = |name: &str, v: &str, what: &str| {
            format!(
                "{}:{}: field {name}: {v:?} is not {what}",
                path.display(),
                n + 1
            )
        };
        let label: u8 = f[2]
            .parse()
            .ok()
            .filter(|l| *l <= 2)
            .with_context(|| field("label", f[2], "0, 1 or 2"))?;
        let score: f32 = f[3]
            .parse()
            .ok()
            .filter(|s: &f32| s.is_finite())
            .with_context(|| field("score", f[3], "a number"))?;
        let overlap: f64 = f[4]
            .parse()
            .ok()
            .filter(|o: &f64| (0.0..=1.0).contains(o))
            .with_context(|| field("overlap", f[4], "a number in [0, 1]"))?;
        out.push(JudgedRow {
            query: f[0].to_string(),
            item: f[1].to_string(),
            label,
            score,
            overlap,
        });
    }
    Ok(out)
}

/// Reads `(score, label)` from a run's `judged_scores.tsv`.
pub fn read_judged_scores(path: &Path) -> anyhow::Result<Vec<(f32, u8)>> {
    Ok(read_judged_rows(path)?
        .into_iter()
        .map(|r| (r.score, r.label))
        .collect())
}

/// Derives thresholds from an existing run directory and writes its `thresholds.json`.
pub fn thresholds_from_run(dir: &Path, criterion: Criterion) -> anyhow::Result<Thresholds> {
    let pairs = read_judged_scores(&dir.join("judged_scores.tsv"))?;
    let mpath = dir.join("metrics.json");
    let m: Metrics = serde_json::from_str(
        &std::fs::read_to_string(&mpath)
            .with_context(|| format!("cannot read {}", mpath.display()))?,
    )
    .with_context(|| format!("{}: not a metrics file", mpath.display()))?;
    let mut t =
        derive_thresholds(&pairs, criterion).with_context(|| format!("{}", dir.display()))?;
    t.score_kind = m.score_kind;
    t.model = m.model;
    write_file(
        &dir.join("thresholds.json"),
        serde_json::to_string_pretty(&t)? + "\n",
    )?;
    Ok(t)
}

fn score_label(r: &EvalResult) -> &str {
    if r.metrics.score_kind == "bm25" {
        "BM25 score"
    } else {
        "cosine similarity"
    }
}

/// Figure 2: score distribution per label.
pub fn score_plot(r: &EvalResult) -> ViolinPlot {
    let by = crate::margins::scores_by_label(&r.pairs);
    ViolinPlot {
        title: format!("Score by relevance label ({})", r.metrics.system),
        y_label: score_label(r).to_string(),
        groups: (0..3)
            .map(|l| ViolinGroup {
                name: format!("label {l}"),
                values: by[l].clone(),
                color: LABEL_COLORS[l],
            })
            .collect(),
        zero_line: false,
    }
}

/// Figure 3: per-query average margins between labels, plus the hard-pair margins.
pub fn margin_plot(r: &EvalResult) -> ViolinPlot {
    let mut groups: Vec<ViolinGroup> = r
        .label_margins
        .iter()
        .map(|((hi, lo), v)| ViolinGroup {
            name: format!("{hi} - {lo}"),
            values: v.clone(),
            color: LABEL_COLORS[*lo as usize],
        })
        .collect();
    groups.push(ViolinGroup {
        name: "2 - 0 hard, avg".into(),
        values: r.hard_margins.per_query.iter().map(|m| m.average).collect(),
        color: (90, 120, 190),
    });
    groups.push(ViolinGroup {
        name: "2 - 0 hard, worst".into(),
        values: r.hard_margins.per_query.iter().map(|m| m.worst).collect(),
        color: (140, 110, 180),
    });
    ViolinPlot {
        title: format!("Per-query margins between labels ({})", r.metrics.system),
        y_label: format!("{} margin", score_label(r)),
        groups,
        zero_line: true,
    }
}

/// A report element, rendered to Markdown and to HTML.
enum Block {
    Heading(String),
    Para(String),
    Table {
        header: Vec<String>,
        rows: Vec<Vec<String>>,
    },
    Image {
        alt: String,
        stem: &'static str,
    },
}

fn f(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_string(), |v| format!("{v:.4}"))
}

fn s<T: ToString>(v: &[T]) -> Vec<String> {
    v.iter().map(ToString::to_string).collect()
}

fn report_blocks(r: &EvalResult) -> Vec<Block> {
    let m = &r.metrics;
    let d = &m.denominators;
    let mut b = vec![Block::Heading(format!(
        "strata eval: {}{}",
        m.system,
        m.model
            .as_ref()
            .map(|x| format!(" ({x})"))
            .unwrap_or_default()
    ))];
    b.push(Block::Para(format!(
        "Catalog: {} ({} items). Judgments: {} ({} queries, {} judged pairs evaluated).",
        m.data.catalog.as_deref().unwrap_or("in memory"),
        m.n_items,
        m.data.judgments.as_deref().unwrap_or("in memory"),
        m.n_queries,
        m.n_judgments
    )));
    b.push(Block::Heading("Retrieval over the full catalog".into()));
    b.push(Block::Table {
        header: s(&["metric", "K = 10", "K = 50", "K = 100", "queries"]),
        rows: vec![
            vec![
                "NDCG".into(),
                f(m.ndcg_10),
                f(m.ndcg_50),
                f(m.ndcg_100),
                d.ndcg.to_string(),
            ],
            vec![
                "Recall (label >= 1)".into(),
                f(m.recall_10),
                f(m.recall_50),
                f(m.recall_100),
                d.recall.to_string(),
            ],
            vec![
                "Recall (label 2)".into(),
                f(m.recall_strict_10),
                f(m.recall_strict_50),
                f(m.recall_strict_100),
                d.recall_strict.to_string(),
            ],
            vec![
                "Precision".into(),
                f(m.precision_10),
                f(m.precision_50),
                f(m.precision_100),
                d.precision.to_string(),
            ],
        ],
    });
    b.push(Block::Para(format!(
        "Rerank NDCG (judged items ranked by score): {} over {} queries.",
        f(m.rerank_ndcg),
        d.rerank_ndcg
    )));
    if let Some(h) = &m.hybrid {
        b.push(Block::Para(format!(
            "Hybrid fusion: {} with {} candidates per retriever.",
            serde_json::to_string(&h.fusion).unwrap_or_default(),
            h.candidates
        )));
    }
    b.push(Block::Heading(format!(
        "Score separability ({} scores)",
        m.score_kind
    )));
    if m.score_kind == "bm25" {
        b.push(Block::Para(
            "Scores here are BM25 scores, unbounded and not comparable with cosine similarities."
                .into(),
        ));
    }
    if m.hybrid.is_some() {
        b.push(Block::Para(
            "Scores here are the hybrid's dense model's cosines on the judged pairs: the blend \
             reorders the ranking, not these scores, so the margins below are the dense model's."
                .into(),
        ));
    }
    b.push(Block::Para(format!(
        "Lexically hard pairs (token overlap >= {}): {}. Queries with a label-2 and a label-0 hard pair: {}. \
         Average margin: {}. Worst-case margin: {}. Hard-pair AUC (label-2 over label-0 \
         combinations ordered correctly, per query; 0.5 is chance): {}.",
        m.hard_overlap,
        m.hard_pairs,
        m.margin_queries,
        f(m.avg_margin),
        f(m.worst_margin),
        f(m.hard_pair_auc)
    )));
    let summary_rows =
        |map: &std::collections::BTreeMap<String, crate::stats::Summary>| -> Vec<Vec<String>> {
            map.iter()
                .rev()
                .map(|(k, v)| {
                    vec![
                        k.clone(),
                        v.count.to_string(),
                        f(Some(v.mean)),
                        f(Some(v.min)),
                        f(Some(v.q1)),
                        f(Some(v.median)),
                        f(Some(v.q3)),
                        f(Some(v.max)),
                    ]
                })
                .collect()
        };
    b.push(Block::Table {
        header: s(&["label", "pairs", "mean", "min", "q1", "median", "q3", "max"]),
        rows: summary_rows(&m.score_by_label),
    });
    b.push(Block::Image {
        alt: "Score distribution per label".into(),
        stem: "scores_by_label",
    });
    let margins: std::collections::BTreeMap<String, crate::stats::Summary> =
        m.margin_by_label_pair.clone();
    let mut margin_rows = Vec::new();
    for key in ["2-0", "2-1", "1-0"] {
        if let Some(v) = margins.get(key) {
            margin_rows.extend(summary_rows(&[(key.to_string(), *v)].into_iter().collect()));
        }
    }
    b.push(Block::Table {
        header: s(&[
            "margin", "queries", "mean", "min", "q1", "median", "q3", "max",
        ]),
        rows: margin_rows,
    });
    b.push(Block::Image {
        alt: "Per-query margins".into(),
        stem: "margins",
    });
    b.push(Block::Heading("Thresholds between strata".into()));
    match &r.thresholds {
        Ok(t) => {
            b.push(Block::Para(format!(
                "Chosen to maximise {} over {} judged pairs ({} scores); saved in thresholds.json.",
                match t.criterion {
                    Criterion::F1 => "F1",
                    Criterion::BalancedAccuracy => "balanced accuracy",
                },
                t.n_pairs,
                t.score_kind
            )));
            b.push(Block::Table {
                header: s(&[
                    "boundary",
                    "threshold",
                    "precision",
                    "recall",
                    "F1",
                    "balanced accuracy",
                ]),
                rows: t
                    .boundaries
                    .iter()
                    .map(|x| {
                        vec![
                            x.name.clone(),
                            format!("{:.4}", x.threshold),
                            f(Some(x.precision)),
                            f(Some(x.recall)),
                            f(Some(x.f1)),
                            f(Some(x.balanced_accuracy)),
                        ]
                    })
                    .collect(),
            });
            b.push(Block::Table {
                header: s(&["label", "precision", "recall", "pairs", "predicted"]),
                rows: t
                    .classes
                    .iter()
                    .rev()
                    .map(|c| {
                        vec![
                            c.label.to_string(),
                            f(c.precision),
                            f(c.recall),
                            c.support.to_string(),
                            c.predicted.to_string(),
                        ]
                    })
                    .collect(),
            });
        }
        Err(e) => b.push(Block::Para(format!("No thresholds: {e}."))),
    }
    if let Some(a) = &m.ann {
        b.push(Block::Heading(
            "Approximate search (HNSW) against exact search".into(),
        ));
        b.push(Block::Table {
            header: s(&[
                "recall@10",
                "recall@50",
                "recall@100",
                "NDCG@10",
                "build s",
                "search s",
            ]),
            rows: vec![vec![
                f(Some(a.recall_10)),
                f(Some(a.recall_50)),
                f(Some(a.recall_100)),
                f(a.ndcg_10),
                format!("{:.2}", a.build_seconds),
                format!("{:.2}", a.search_seconds),
            ]],
        });
    }
    let lo = &m.left_out;
    b.push(Block::Heading("Left out".into()));
    b.push(Block::Table {
        header: s(&["what", "count"]),
        rows: vec![
            vec![
                "judgments naming unknown items".into(),
                lo.unknown_item_judgments.to_string(),
            ],
            vec![
                "queries without judgments on catalog items".into(),
                lo.queries_without_judgments.to_string(),
            ],
            vec![
                "repeated identical judgments merged".into(),
                lo.duplicate_judgments.to_string(),
            ],
            vec![
                "queries with all-zero gains (NDCG, recall, rerank)".into(),
                lo.queries_all_zero_gain.to_string(),
            ],
            vec![
                "queries without a label-2 item (strict recall)".into(),
                lo.queries_without_label2.to_string(),
            ],
        ],
    });
    if !lo.unknown_item_examples.is_empty() {
        b.push(Block::Para(format!(
            "Unknown items, first ones: {}.",
            lo.unknown_item_examples.join(", ")
        )));
    }
    let t = &m.timings;
    b.push(Block::Heading("Timings (seconds)".into()));
    b.push(Block::Table {
        header: s(&["embedding", "index", "search", "metrics", "total"]),
        rows: vec![vec![
            format!("{:.2}", t.embedding_seconds),
            format!("{:.2}", t.index_seconds),
            format!("{:.2}", t.search_seconds),
            format!("{:.2}", t.metrics_seconds),
            format!("{:.2}", t.total_seconds),
        ]],
    });
    b
}

fn to_markdown(doc: &[Block]) -> String {
    let mut out = String::new();
    let mut first = true;
    for block in doc {
        match block {
            Block::Heading(h) => {
                let _ = writeln!(out, "{} {h}\n", if first { "#" } else { "##" });
                first = false;
            }
            Block::Para(p) => {
                let _ = writeln!(out, "{p}\n");
            }
            Block::Table { header, rows } => {
                let esc = |c: &String| c.replace('|', "\\|");
                let _ = writeln!(
                    out,
                    "| {} |",
                    header.iter().map(esc).collect::<Vec<_>>().join(" | ")
                );
                let _ = writeln!(out, "|{}", "---|".repeat(header.len()));
                for r in rows {
                    let _ = writeln!(
                        out,
                        "| {} |",
                        r.iter().map(esc).collect::<Vec<_>>().join(" | ")
                    );
                }
                out.push('\n');
            }
            Block::Image { alt, stem } => {
                let _ = writeln!(
                    out,
                    "![{alt}]({stem}.png)\n\n(also [{stem}.svg]({stem}.svg))\n"
                );
            }
        }
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn to_html(doc: &[Block], m: &Metrics, svgs: &[(&str, String)]) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>strata eval: {}</title>\n\
         <style>body{{font-family:sans-serif;max-width:980px;margin:2em auto;color:#222}}\
         table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}\
         td:first-child,th:first-child{{text-align:left}}th{{background:#f3f3f3}}figure{{margin:1em 0}}</style>\n</head>\n<body>\n",
        esc(&m.system)
    );
    let mut first = true;
    for block in doc {
        match block {
            Block::Heading(h) => {
                let tag = if first { "h1" } else { "h2" };
                first = false;
                let _ = writeln!(out, "<{tag}>{}</{tag}>", esc(h));
            }
            Block::Para(p) => {
                let _ = writeln!(out, "<p>{}</p>", esc(p));
            }
            Block::Table { header, rows } => {
                out.push_str("<table>\n<tr>");
                for h in header {
                    let _ = write!(out, "<th>{}</th>", esc(h));
                }
                out.push_str("</tr>\n");
                for r in rows {
                    out.push_str("<tr>");
                    for c in r {
                        let _ = write!(out, "<td>{}</td>", esc(c));
                    }
                    out.push_str("</tr>\n");
                }
                out.push_str("</table>\n");
            }
            Block::Image { alt, stem } => {
                let svg = svgs
                    .iter()
                    .find(|(s, _)| s == stem)
                    .map(|(_, v)| v.as_str())
                    .unwrap_or("");
                let _ = writeln!(
                    out,
                    "<figure>\n{svg}\n<figcaption>{}</figcaption>\n</figure>",
                    esc(alt)
                );
            }
        }
    }
    out.push_str("</body>\n</html>\n");
    out
}
