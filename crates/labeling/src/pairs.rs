//! Pairs to label: reading them from a file and labeling them in batches with progress.
//!
//! A pairs file is JSONL (objects with `query` and `item_id` or `item_text`; other fields, such
//! as a judgments file's `label`, are ignored) or TSV with a header naming the same columns.
//! A pair given by text gets the id `text:<hash>` and its text is kept in [`Pairs::texts`].

use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;

use anyhow::Context;
use strata_data::hash::fnv1a64;

use strata_data::{Judgment, Source};

/// Pairs read from a file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pairs {
    /// (query, item id), in file order.
    pub pairs: Vec<(String, String)>,
    /// Texts of the items given by text (id -> text).
    pub texts: HashMap<String, String>,
}

/// The id of an item given by its text.
pub fn text_item_id(text: &str) -> String {
    format!("text:{:016x}", fnv1a64(text.as_bytes()))
}

fn unescape_tsv(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('t') => out.push('\t'),
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some('\\') => out.push('\\'),
                Some(o) => {
                    out.push('\\');
                    out.push(o);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl Pairs {
    fn push(
        &mut self,
        query: String,
        id: Option<String>,
        text: Option<String>,
    ) -> Result<(), String> {
        if query.trim().is_empty() {
            return Err("field `query`: empty".into());
        }
        let id = match (id, text) {
            (Some(id), _) if !id.trim().is_empty() => id,
            (_, Some(t)) if !t.trim().is_empty() => {
                let id = text_item_id(&t);
                self.texts.insert(id.clone(), t);
                id
            }
            _ => return Err("field `item_id`: missing (give `item_id` or `item_text`)".into()),
        };
        self.pairs.push((query, id));
        Ok(())
    }
}

/// Reads a pairs file (`.jsonl`/`.json` or `.tsv`); errors name the file, line and field.
pub fn read_pairs(path: impl AsRef<Path>) -> anyhow::Result<Pairs> {
    let path = path.as_ref();
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let reader = std::io::BufReader::new(file);
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let mut out = Pairs::default();
    match ext.as_str() {
        "jsonl" | "json" | "ndjson" => {
            for (n, line) in reader.lines().enumerate() {
                let line = line.with_context(|| format!("reading {}", path.display()))?;
                if line.trim().is_empty() {
                    continue;
                }
                let at = format!("{}:{}", path.display(), n + 1);
                let v: serde_json::Value = serde_json::from_str(&line)
                    .with_context(|| format!("{at}: field `(record)`: not JSON"))?;
                let field = |k: &str| -> anyhow::Result<Option<String>> {
                    match v.get(k) {
                        None | Some(serde_json::Value::Null) => Ok(None),
                        Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
                        Some(serde_json::Value::Number(x)) if k == "item_id" => {
                            Ok(Some(x.to_string()))
                        }
                        Some(_) => anyhow::bail!("{at}: field `{k}`: not a string"),
                    }
                };
                let query =
                    field("query")?.with_context(|| format!("{at}: field `query`: missing"))?;
                out.push(query, field("item_id")?, field("item_text")?)
                    .map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
            }
        }
        "tsv" => {
            let mut lines = reader.lines();
            let header = lines
                .next()
                .transpose()
                .with_context(|| format!("reading {}", path.display()))?
                .with_context(|| format!("{}: empty file (expected a header)", path.display()))?;
            let cols: Vec<&str> = header.split('\t').map(str::trim).collect();
            let find = |name: &str| cols.iter().position(|c| *c == name);
            let q = find("query").with_context(|| {
                format!(
                    "{}:1: field `query`: no `query` column in the header",
                    path.display()
                )
            })?;
            let (id, text) = (find("item_id"), find("item_text"));
            anyhow::ensure!(
                id.is_some() || text.is_some(),
                "{}:1: field `item_id`: the header has neither `item_id` nor `item_text`",
                path.display()
            );
            for (n, line) in lines.enumerate() {
                let line = line.with_context(|| format!("reading {}", path.display()))?;
                if line.trim().is_empty() {
                    continue;
                }
                let at = format!("{}:{}", path.display(), n + 2);
                let f: Vec<&str> = line.split('\t').collect();
                anyhow::ensure!(
                    f.len() == cols.len(),
                    "{at}: field `(record)`: {} fields, the header has {}",
                    f.len(),
                    cols.len()
                );
                let get = |i: Option<usize>| i.map(|i| unescape_tsv(f[i]));
                out.push(unescape_tsv(f[q]), get(id), get(text))
                    .map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
            }
        }
        other => anyhow::bail!(
            "{}: unknown pairs format {other:?} (expected .jsonl or .tsv)",
            path.display()
        ),
    }
    Ok(out)
}

pub use strata_data::labeler::label_in_batches as label_all;

/// The labeled pairs as judgments with `source` (unlabeled pairs are left out).
pub fn to_judgments(
    pairs: &[(String, String)],
    labels: &[Option<u8>],
    source: Source,
) -> Vec<Judgment> {
    pairs
        .iter()
        .zip(labels)
        .filter_map(|((q, i), l)| {
            l.map(|l| Judgment {
                source: Some(source),
                ..Judgment::new(q.clone(), i.clone(), l)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_jsonl_and_tsv_pairs() {
        let dir = tempfile::tempdir().unwrap();
        let j = dir.path().join("p.jsonl");
        std::fs::write(
            &j,
            "{\"query\":\"drill\",\"item_id\":\"A\",\"label\":2}\n\n{\"query\":\"saw\",\"item_text\":\"Hand Saw\"}\n",
        )
        .unwrap();
        let p = read_pairs(&j).unwrap();
        let id = text_item_id("Hand Saw");
        assert_eq!(
            p.pairs,
            vec![("drill".into(), "A".into()), ("saw".into(), id.clone())]
        );
        assert_eq!(p.texts[&id], "Hand Saw");

        let t = dir.path().join("p.tsv");
        std::fs::write(&t, "query\titem_id\nred\\tpaint\tB\n").unwrap();
        assert_eq!(
            read_pairs(&t).unwrap().pairs,
            vec![("red\tpaint".into(), "B".into())]
        );
    }

    #[test]
    fn bad_rows_name_file_line_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let j = dir.path().join("p.jsonl");
        std::fs::write(
            &j,
            "{\"query\":\"a\",\"item_id\":\"A\"}\n{\"item_id\":\"B\"}\n",
        )
        .unwrap();
        let e = read_pairs(&j).unwrap_err().to_string();
        assert!(e.contains("p.jsonl:2: field `query`"), "{e}");
        std::fs::write(&j, "{\"query\":\"a\"}\n").unwrap();
        let e = read_pairs(&j).unwrap_err().to_string();
        assert!(e.contains("p.jsonl:1: field `item_id`"), "{e}");
        let t = dir.path().join("p.tsv");
        std::fs::write(&t, "query\titem_id\na\tA\nb\n").unwrap();
        let e = read_pairs(&t).unwrap_err().to_string();
        assert!(e.contains("p.tsv:3: field `(record)`"), "{e}");
    }
}
