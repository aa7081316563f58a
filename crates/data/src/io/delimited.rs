//! Byte-level TSV and CSV records with line numbers.
//!
//! TSV fields are not quoted; a writer escapes tab, newline, carriage return and backslash as
//! `\t`, `\n`, `\r` and `\\`, and the reader undoes exactly those four escapes. CSV follows RFC
//! 4180 (double quotes, doubled quotes inside, records may span lines).

use std::io::{self, BufRead, Write};

/// One record as bytes, with the line it starts on.
pub(crate) struct RawRecord {
    pub line: usize,
    pub fields: Vec<Vec<u8>>,
    pub raw: Vec<u8>,
    /// A structural problem (for example an unterminated quote).
    pub problem: Option<String>,
}

/// Reads delimited records from a buffered reader.
pub(crate) struct DelimitedReader<R> {
    reader: R,
    delimiter: u8,
    quoted: bool,
    line: usize,
    buf: Vec<u8>,
}

impl<R: BufRead> DelimitedReader<R> {
    /// `quoted` selects CSV quoting rules; otherwise TSV escapes.
    pub(crate) fn new(reader: R, delimiter: u8, quoted: bool) -> Self {
        DelimitedReader {
            reader,
            delimiter,
            quoted,
            line: 0,
            buf: Vec::new(),
        }
    }

    fn read_line(&mut self) -> io::Result<bool> {
        self.buf.clear();
        let n = self.reader.read_until(b'\n', &mut self.buf)?;
        if n == 0 {
            return Ok(false);
        }
        self.line += 1;
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
            if self.buf.last() == Some(&b'\r') {
                self.buf.pop();
            }
        }
        Ok(true)
    }

    /// The next non-blank record, or `None` at the end of the input.
    pub(crate) fn next_record(&mut self) -> io::Result<Option<RawRecord>> {
        loop {
            if !self.read_line()? {
                return Ok(None);
            }
            if self.buf.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            let line = self.line;
            if !self.quoted {
                let fields = self
                    .buf
                    .split(|&b| b == self.delimiter)
                    .map(unescape_tsv)
                    .collect();
                return Ok(Some(RawRecord {
                    line,
                    fields,
                    raw: self.buf.clone(),
                    problem: None,
                }));
            }
            return self.parse_csv(line).map(Some);
        }
    }

    fn parse_csv(&mut self, line: usize) -> io::Result<RawRecord> {
        let mut fields = Vec::new();
        let mut field = Vec::new();
        let mut raw = self.buf.clone();
        let mut in_quotes = false;
        let mut was_quoted = false;
        let mut problem = None;
        let mut i = 0;
        loop {
            if i >= self.buf.len() {
                if in_quotes {
                    // The quoted field continues on the next line.
                    if !self.read_line()? {
                        problem =
                            Some(format!("unterminated quoted field (opened on line {line})"));
                        break;
                    }
                    field.push(b'\n');
                    raw.push(b'\n');
                    raw.extend_from_slice(&self.buf);
                    i = 0;
                    continue;
                }
                break;
            }
            let b = self.buf[i];
            if in_quotes {
                if b == b'"' {
                    if self.buf.get(i + 1) == Some(&b'"') {
                        field.push(b'"');
                        i += 1;
                    } else {
                        in_quotes = false;
                    }
                } else {
                    field.push(b);
                }
            } else if b == self.delimiter {
                fields.push(std::mem::take(&mut field));
                was_quoted = false;
            } else if b == b'"' && field.is_empty() && !was_quoted {
                in_quotes = true;
                was_quoted = true;
            } else {
                field.push(b);
            }
            i += 1;
        }
        fields.push(field);
        Ok(RawRecord {
            line,
            fields,
            raw,
            problem,
        })
    }
}

/// Undoes the four TSV escapes.
fn unescape_tsv(field: &[u8]) -> Vec<u8> {
    if !field.contains(&b'\\') {
        return field.to_vec();
    }
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\' && i + 1 < field.len() {
            let decoded = match field[i + 1] {
                b't' => Some(b'\t'),
                b'n' => Some(b'\n'),
                b'r' => Some(b'\r'),
                b'\\' => Some(b'\\'),
                _ => None,
            };
            if let Some(d) = decoded {
                out.push(d);
                i += 2;
                continue;
            }
        }
        out.push(field[i]);
        i += 1;
    }
    out
}

/// Escapes a TSV field.
pub fn escape_tsv(field: &str) -> std::borrow::Cow<'_, str> {
    if !field.contains(['\t', '\n', '\r', '\\']) {
        return std::borrow::Cow::Borrowed(field);
    }
    let mut out = String::with_capacity(field.len() + 4);
    for c in field.chars() {
        match c {
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Quotes a CSV field when it needs it.
fn escape_csv(field: &str) -> std::borrow::Cow<'_, str> {
    if !field.contains([',', '"', '\n', '\r']) {
        return std::borrow::Cow::Borrowed(field);
    }
    std::borrow::Cow::Owned(format!("\"{}\"", field.replace('"', "\"\"")))
}

/// Writes delimited records.
pub(crate) struct DelimitedWriter<W> {
    writer: W,
    csv: bool,
}

impl<W: Write> DelimitedWriter<W> {
    pub(crate) fn new(writer: W, csv: bool) -> Self {
        DelimitedWriter { writer, csv }
    }

    pub(crate) fn write_record<S: AsRef<str>>(&mut self, fields: &[S]) -> io::Result<()> {
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                self.writer.write_all(if self.csv { b"," } else { b"\t" })?;
            }
            let f = f.as_ref();
            let escaped = if self.csv {
                escape_csv(f)
            } else {
                escape_tsv(f)
            };
            self.writer.write_all(escaped.as_bytes())?;
        }
        self.writer.write_all(b"\n")
    }

    pub(crate) fn into_inner(self) -> W {
        self.writer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(text: &str, delim: u8, quoted: bool) -> Vec<(usize, Vec<String>, Option<String>)> {
        let mut r = DelimitedReader::new(text.as_bytes(), delim, quoted);
        let mut out = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            out.push((
                rec.line,
                rec.fields
                    .into_iter()
                    .map(|f| String::from_utf8(f).unwrap())
                    .collect(),
                rec.problem,
            ));
        }
        out
    }

    #[test]
    fn csv_quotes_span_lines_and_keep_line_numbers() {
        let text = "a,b\n\"x, y\",\"he said \"\"hi\"\"\"\n\n\"multi\nline\",z\nlast,row\n";
        let r = records(text, b',', true);
        assert_eq!(r.len(), 4);
        assert_eq!(r[1].0, 2);
        assert_eq!(r[1].1, vec!["x, y", "he said \"hi\""]);
        assert_eq!(r[2].0, 4);
        assert_eq!(r[2].1, vec!["multi\nline", "z"]);
        assert_eq!(r[3].0, 6);
        let bad = records("a\n\"open\n", b',', true);
        assert!(bad[1].2.as_deref().unwrap().contains("unterminated"));
    }

    #[test]
    fn tsv_escapes_round_trip() {
        let field = "tab\there\nnew \\ back \\n literal";
        let escaped = escape_tsv(field);
        assert!(!escaped.contains('\t') && !escaped.contains('\n'));
        let r = records(&format!("{escaped}\tx\r\n"), b'\t', false);
        assert_eq!(r[0].1, vec![field.to_string(), "x".to_string()]);
    }
}
