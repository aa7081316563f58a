//! `strata embed`: embeds texts from a file (one per line, or JSONL with a text field) or
//! stdin, as queries or items, writing JSONL (`{"embedding": [...]}` per input line, in order)
//! or a `.npy` matrix.

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use strata_model::Side;

#[derive(Args, Debug)]
pub struct EmbedArgs {
    /// Model directory: a strata model or a Hugging Face folder.
    #[arg(long, env = "STRATA_MODEL")]
    pub model: PathBuf,
    /// Input file (`-` for stdin): plain text, one text per line, or JSONL (`.jsonl`/`.json`).
    #[arg(long, default_value = "-")]
    pub input: String,
    /// Output file: `.jsonl` (one `{"embedding": [...]}` per input line) or `.npy` (float32
    /// matrix). `-` writes JSONL to stdout.
    #[arg(long, default_value = "-")]
    pub output: String,
    /// Which tower: query or item.
    #[arg(long, default_value = "query")]
    pub side: Side,
    /// JSONL field holding the text.
    #[arg(long, default_value = "text")]
    pub field: String,
    #[command(flatten)]
    pub run: super::common::InferenceArgs,
    /// Print the cosine similarity matrix of the inputs to stderr (for small inputs).
    #[arg(long)]
    pub similarities: bool,
}

/// Reads the texts of an input, with errors naming the file and line.
pub fn read_texts(input: &str, field: &str) -> anyhow::Result<Vec<String>> {
    let (name, bytes) = if input == "-" {
        let mut b = Vec::new();
        std::io::stdin()
            .read_to_end(&mut b)
            .context("cannot read stdin")?;
        ("<stdin>".to_string(), b)
    } else {
        let b = std::fs::read(input).with_context(|| format!("cannot read input file {input}"))?;
        (input.to_string(), b)
    };
    let jsonl = input.ends_with(".jsonl") || input.ends_with(".json");
    let mut texts = Vec::new();
    for (i, line) in BufReader::new(bytes.as_slice()).split(b'\n').enumerate() {
        let lineno = i + 1;
        let raw = line.with_context(|| format!("{name}: cannot read line {lineno}"))?;
        let raw = raw.strip_suffix(b"\r").unwrap_or(&raw);
        let text = std::str::from_utf8(raw)
            .map_err(|e| anyhow::anyhow!("{name}:{lineno}: invalid UTF-8 ({e})"))?;
        if jsonl {
            if text.trim().is_empty() {
                bail!("{name}:{lineno}: empty line (each JSONL line must hold an object)");
            }
            let v: serde_json::Value = serde_json::from_str(text)
                .map_err(|e| anyhow::anyhow!("{name}:{lineno}: invalid JSON ({e})"))?;
            let t = v.get(field).and_then(|t| t.as_str()).ok_or_else(|| {
                anyhow::anyhow!("{name}:{lineno}: field `{field}` is missing or not a string")
            })?;
            texts.push(t.to_string());
        } else {
            texts.push(text.to_string());
        }
    }
    // A trailing newline does not make an extra empty text.
    if !jsonl && texts.last().is_some_and(|t| t.is_empty()) && bytes.ends_with(b"\n") {
        texts.pop();
    }
    if texts.is_empty() {
        bail!("{name}: the input holds no text");
    }
    Ok(texts)
}

/// Writes a float32 matrix as a NumPy `.npy` file (format version 1.0).
pub fn write_npy(path: &Path, data: &[f32], rows: usize, cols: usize) -> anyhow::Result<()> {
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut f = BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
    );
    f.write_all(b"\x93NUMPY\x01\x00")?;
    f.write_all(&(header.len() as u16).to_le_bytes())?;
    f.write_all(header.as_bytes())?;
    for x in data {
        f.write_all(&x.to_le_bytes())?;
    }
    f.flush()?;
    Ok(())
}

pub fn run(a: EmbedArgs) -> anyhow::Result<()> {
    let texts = read_texts(&a.input, &a.field)?;
    let embedder = a.run.embedder(&a.model)?.with_progress(true);
    let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
    let start = std::time::Instant::now();
    let emb = embedder.embed(&refs, a.side)?;
    let dim = embedder.config().dim();
    tracing::info!(
        "embedded {} texts ({:?}, dim {dim}) in {:.2}s",
        texts.len(),
        a.side,
        start.elapsed().as_secs_f64()
    );
    if a.output.ends_with(".npy") {
        write_npy(Path::new(&a.output), &emb, texts.len(), dim)?;
    } else {
        let sink: Box<dyn Write> = if a.output == "-" {
            Box::new(crate::output::stdout())
        } else {
            Box::new(
                std::fs::File::create(&a.output)
                    .with_context(|| format!("cannot create {}", a.output))?,
            )
        };
        let mut w = BufWriter::new(sink);
        for row in emb.chunks(dim) {
            serde_json::to_writer(&mut w, &serde_json::json!({ "embedding": row }))?;
            w.write_all(b"\n")?;
        }
        w.flush()?;
    }
    if a.similarities {
        let n = texts.len().min(20);
        eprintln!("cosine similarities:");
        for i in 0..n {
            let row: Vec<String> = (0..n)
                .map(|j| {
                    let s: f32 = emb[i * dim..(i + 1) * dim]
                        .iter()
                        .zip(&emb[j * dim..(j + 1) * dim])
                        .map(|(x, y)| x * y)
                        .sum();
                    format!("{s:6.3}")
                })
                .collect();
            eprintln!("{} | {}", row.join(" "), texts[i]);
        }
    }
    Ok(())
}
