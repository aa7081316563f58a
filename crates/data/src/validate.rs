//! Row-level validation: every bad row is reported with its file, line and field; by default a
//! read fails with a summary of the first errors, and with [`OnInvalid::Skip`] it keeps going and
//! appends the rejected rows to a file so nothing is lost silently.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

/// One invalid row: where it is and what is wrong with it.
///
/// For Parquet files `line` is the 1-based row number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowError {
    pub file: PathBuf,
    pub line: usize,
    pub field: String,
    pub message: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: field `{}`: {}",
            self.file.display(),
            self.line,
            self.field,
            self.message
        )
    }
}

impl std::error::Error for RowError {}

/// What a reader does with invalid rows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum OnInvalid {
    /// Fail after reading the whole input, with a summary of the first errors.
    #[default]
    Fail,
    /// Keep the valid rows and append the rejected ones (with their errors) to this TSV file:
    /// columns `file`, `line`, `field`, `error`, `row`.
    Skip { rejects: PathBuf },
}

/// The error a read returns when it found invalid rows under [`OnInvalid::Fail`].
#[derive(Clone, Debug)]
pub struct InvalidRows {
    pub file: PathBuf,
    /// Number of invalid rows.
    pub count: usize,
    /// The first errors, in file order.
    pub first: Vec<RowError>,
}

impl fmt::Display for InvalidRows {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} invalid row{}",
            self.file.display(),
            self.count,
            if self.count == 1 { "" } else { "s" }
        )?;
        if self.first.len() < self.count {
            write!(f, " (first {} shown)", self.first.len())?;
        }
        for e in &self.first {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for InvalidRows {}

/// What a read did.
#[derive(Clone, Debug, Default)]
pub struct ReadReport {
    pub file: PathBuf,
    /// The recognised layout (for example `native`, `homedepot`, `wands`, `esci`).
    pub layout: String,
    /// Data rows seen (header excluded).
    pub rows: usize,
    /// Rows kept.
    pub accepted: usize,
    /// Rows rejected (only non-zero under [`OnInvalid::Skip`]).
    pub rejected: usize,
    /// Rows left out by the read options' filters.
    pub filtered: usize,
    /// Exact duplicate judgments (same query, item and label) merged into their first occurrence.
    pub duplicates_merged: usize,
    /// The first errors, in file order.
    pub first_errors: Vec<RowError>,
}

impl fmt::Display for ReadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {} rows, {} accepted, {} rejected",
            self.file.display(),
            self.layout,
            self.rows,
            self.accepted,
            self.rejected
        )?;
        if self.filtered > 0 {
            write!(f, ", {} filtered out", self.filtered)?;
        }
        if self.duplicates_merged > 0 {
            write!(f, ", {} exact duplicates merged", self.duplicates_merged)?;
        }
        Ok(())
    }
}

/// Collects the invalid rows of one read.
pub(crate) struct Collector {
    file: PathBuf,
    policy: OnInvalid,
    max_reported: usize,
    count: usize,
    first: Vec<RowError>,
    rejects: Option<BufWriter<File>>,
}

impl Collector {
    pub(crate) fn new(file: &Path, policy: &OnInvalid, max_reported: usize) -> Self {
        Collector {
            file: file.to_path_buf(),
            policy: policy.clone(),
            max_reported: max_reported.max(1),
            count: 0,
            first: Vec::new(),
            rejects: None,
        }
    }

    /// An error for a row of this collector's file.
    pub(crate) fn error(&self, line: usize, field: &str, message: impl Into<String>) -> RowError {
        RowError {
            file: self.file.clone(),
            line,
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// Records one rejected row; `raw` is the row as it appeared in the input.
    pub(crate) fn reject(&mut self, err: RowError, raw: &str) -> anyhow::Result<()> {
        self.count += 1;
        if let OnInvalid::Skip { rejects } = &self.policy {
            if self.rejects.is_none() {
                let fresh = std::fs::metadata(rejects)
                    .map(|m| m.len() == 0)
                    .unwrap_or(true);
                if let Some(dir) = rejects.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                }
                let f = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(rejects)
                    .with_context(|| format!("opening rejects file {}", rejects.display()))?;
                let mut w = BufWriter::new(f);
                if fresh {
                    writeln!(w, "file\tline\tfield\terror\trow")?;
                }
                self.rejects = Some(w);
            }
            let w = self.rejects.as_mut().expect("opened above");
            writeln!(
                w,
                "{}\t{}\t{}\t{}\t{}",
                crate::io::escape_tsv(&err.file.display().to_string()),
                err.line,
                crate::io::escape_tsv(&err.field),
                crate::io::escape_tsv(&err.message),
                crate::io::escape_tsv(raw)
            )?;
        }
        if self.first.len() < self.max_reported {
            self.first.push(err);
        }
        Ok(())
    }

    /// Ends the read: an [`InvalidRows`] error under [`OnInvalid::Fail`] if any row was bad.
    pub(crate) fn finish(mut self, report: &mut ReadReport) -> anyhow::Result<()> {
        if let Some(mut w) = self.rejects.take() {
            w.flush().context("writing rejects file")?;
        }
        report.rejected = self.count;
        report.first_errors = self.first.clone();
        if self.count > 0 {
            match &self.policy {
                OnInvalid::Fail => {
                    return Err(InvalidRows {
                        file: self.file,
                        count: self.count,
                        first: self.first,
                    }
                    .into());
                }
                OnInvalid::Skip { rejects } => tracing::warn!(
                    "{}: skipped {} invalid rows (written to {})",
                    self.file.display(),
                    self.count,
                    rejects.display()
                ),
            }
        }
        Ok(())
    }
}
