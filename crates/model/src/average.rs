//! Weight averaging ("model soup"): one model whose parameters are the element-wise mean of
//! several models fine-tuned from the same base, for example the same recipe trained with
//! different seeds (Wortsman et al., 2022, "Model soups: averaging weights of multiple
//! fine-tuned models improves accuracy without increasing inference time").
//!
//! For models `θ_1 … θ_n` with the same architecture and tokenizer, the soup is
//!
//! ```text
//! θ_soup[t] = (1/n) Σ_k θ_k[t]        for every floating-point tensor t,
//! ```
//!
//! accumulated in f64 and stored in each tensor's own dtype (f32, f64, f16 or bf16). Integer and
//! boolean tensors (a Hugging Face folder's `position_ids`) are not parameters: they must be equal
//! in every model and are copied.
//!
//! Works on strata model directories and on Hugging Face / sentence-transformers folders (every
//! `*.safetensors` file of the folder, at any depth, is averaged; a sentence-transformers
//! `2_Dense/model.safetensors` head included). The models must agree on every file that defines
//! the computation ([`DEFINITION_FILES`], compared as JSON) and on every tensor's name, dtype and
//! shape; anything else (a README, a training log) is copied from the first model. The soup
//! records its sources and their fingerprints in [`AVERAGED`].
//!
//! The output folder is written next to its final place and renamed into it when complete, and
//! an existing folder is never replaced.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use safetensors::SafeTensors;
use safetensors::tensor::{Dtype, TensorView};

use crate::store::{ModelDirKind, model_dir_kind, model_fingerprint};

/// Files that define what a model computes: every averaged model must have the same content
/// (compared as JSON, so formatting does not matter) wherever the first model has one.
pub const DEFINITION_FILES: [&str; 5] = [
    "strata.json",
    "config.json",
    "tokenizer.json",
    "modules.json",
    "sentence_bert_config.json",
];

/// The provenance file written into an averaged model: its sources and their fingerprints.
pub const AVERAGED: &str = "averaged.json";

/// What [`average_models`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AverageReport {
    /// Number of models averaged.
    pub models: usize,
    /// `*.safetensors` files averaged.
    pub weight_files: usize,
    /// Floating-point tensors averaged.
    pub averaged_tensors: usize,
    /// Integer or boolean tensors copied (equal in every model).
    pub copied_tensors: usize,
}

/// Writes into `out` (which must not exist) the uniform weight average of the models in `dirs`
/// (at least two, all strata model directories or all Hugging Face folders). Errors name the
/// model, file and tensor at fault.
pub fn average_models(dirs: &[PathBuf], out: &Path) -> anyhow::Result<AverageReport> {
    if dirs.len() < 2 {
        bail!("averaging needs at least two models, got {}", dirs.len());
    }
    if out.exists() {
        bail!(
            "{} exists: averaging never replaces a folder, choose a new one",
            out.display()
        );
    }
    let first = &dirs[0];
    let kind = model_dir_kind(first)?;
    for d in &dirs[1..] {
        let k = model_dir_kind(d)?;
        if k != kind {
            bail!(
                "{} is a {} and {} is a {}: average models of one kind",
                first.display(),
                kind_name(kind),
                d.display(),
                kind_name(k)
            );
        }
        if same_dir(first, d) || same_dir(out, d) {
            bail!("{} is given twice (or is the output folder)", d.display());
        }
    }
    let files = list_files(first)?;
    let weight_files: Vec<&PathBuf> = files.iter().filter(|p| is_weights(p)).collect();
    if weight_files.is_empty() {
        bail!("{} has no *.safetensors file", first.display());
    }
    for d in &dirs[1..] {
        let theirs: BTreeSet<PathBuf> = list_files(d)?
            .into_iter()
            .filter(|p| is_weights(p))
            .collect();
        let ours: BTreeSet<PathBuf> = weight_files.iter().map(|p| (*p).clone()).collect();
        if let Some(p) = ours.symmetric_difference(&theirs).next() {
            let (has, lacks) = if ours.contains(p) {
                (first, d)
            } else {
                (d, first)
            };
            bail!(
                "{} has {} and {} does not: the models must have the same weight files",
                has.display(),
                p.display(),
                lacks.display()
            );
        }
        for rel in files.iter().filter(|p| is_definition(p)) {
            compare_definition(first, d, rel)?;
        }
    }

    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let name = out
        .file_name()
        .with_context(|| format!("{} has no folder name", out.display()))?
        .to_string_lossy();
    let tmp = parent.join(format!(".{name}.averaging-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)
            .with_context(|| format!("cannot remove the stale {}", tmp.display()))?;
    }
    let result = write_average(dirs, &files, &tmp).and_then(|report| {
        std::fs::rename(&tmp, out)
            .with_context(|| format!("cannot move {} to {}", tmp.display(), out.display()))?;
        Ok(report)
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

fn write_average(dirs: &[PathBuf], files: &[PathBuf], tmp: &Path) -> anyhow::Result<AverageReport> {
    let mut report = AverageReport {
        models: dirs.len(),
        weight_files: 0,
        averaged_tensors: 0,
        copied_tensors: 0,
    };
    for rel in files {
        let dst = tmp.join(rel);
        if let Some(p) = dst.parent() {
            std::fs::create_dir_all(p).with_context(|| format!("cannot create {}", p.display()))?;
        }
        if is_weights(rel) {
            let (averaged, copied) = average_file(dirs, rel, &dst)?;
            report.weight_files += 1;
            report.averaged_tensors += averaged;
            report.copied_tensors += copied;
        } else if rel.as_os_str() != AVERAGED {
            let src = dirs[0].join(rel);
            std::fs::copy(&src, &dst)
                .with_context(|| format!("cannot copy {} to {}", src.display(), dst.display()))?;
        }
    }
    let sources = dirs
        .iter()
        .map(|d| {
            Ok(serde_json::json!({
                "path": d.display().to_string(),
                "fingerprint": model_fingerprint(d)?,
            }))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let provenance = serde_json::json!({
        "method": "uniform weight average",
        "models": sources,
        "averaged_tensors": report.averaged_tensors,
        "copied_tensors": report.copied_tensors,
    });
    std::fs::write(
        tmp.join(AVERAGED),
        serde_json::to_string_pretty(&provenance)?,
    )
    .with_context(|| format!("cannot write {}", tmp.join(AVERAGED).display()))?;
    Ok(report)
}

/// Averages `rel` (a safetensors file) over `dirs` into `dst`; returns (averaged, copied)
/// tensor counts.
fn average_file(dirs: &[PathBuf], rel: &Path, dst: &Path) -> anyhow::Result<(usize, usize)> {
    let paths: Vec<PathBuf> = dirs.iter().map(|d| d.join(rel)).collect();
    let buffers = paths
        .iter()
        .map(|p| std::fs::read(p).with_context(|| format!("cannot read {}", p.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let files = buffers
        .iter()
        .zip(&paths)
        .map(|(b, p)| {
            SafeTensors::deserialize(b)
                .map_err(|e| anyhow::anyhow!("{}: not a safetensors file: {e}", p.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let metadata: Option<HashMap<String, String>> = SafeTensors::read_metadata(&buffers[0])
        .map_err(|e| anyhow::anyhow!("{}: {e}", paths[0].display()))?
        .1
        .metadata()
        .clone();
    let first: BTreeMap<String, TensorView<'_>> = files[0].tensors().into_iter().collect();
    for (f, p) in files.iter().zip(&paths).skip(1) {
        let names: BTreeSet<String> = f.names().into_iter().map(str::to_string).collect();
        let ours: BTreeSet<String> = first.keys().cloned().collect();
        if let Some(n) = ours.symmetric_difference(&names).next() {
            let (has, lacks) = if ours.contains(n) {
                (&paths[0], p)
            } else {
                (p, &paths[0])
            };
            bail!(
                "{} has tensor {n} and {} does not: the models must have the same parameters",
                has.display(),
                lacks.display()
            );
        }
    }
    let mut out: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::with_capacity(first.len());
    let (mut averaged, mut copied) = (0, 0);
    for (name, view) in &first {
        let views = files
            .iter()
            .zip(&paths)
            .map(|(f, p)| {
                let v = f
                    .tensor(name)
                    .map_err(|e| anyhow::anyhow!("{}: {name}: {e}", p.display()))?;
                if v.dtype() != view.dtype() || v.shape() != view.shape() {
                    bail!(
                        "{}: tensor {name} is {:?}{:?} but {} has {:?}{:?}: the models must have the same architecture",
                        p.display(),
                        v.dtype(),
                        v.shape(),
                        paths[0].display(),
                        view.dtype(),
                        view.shape()
                    );
                }
                Ok(v)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let data: Vec<&[u8]> = views.iter().map(|v| v.data()).collect();
        let bytes = match mean_bytes(view.dtype(), &data) {
            Some(b) => {
                averaged += 1;
                b
            }
            None if is_exact(view.dtype()) => {
                if let Some(k) = data.iter().position(|d| *d != data[0]) {
                    bail!(
                        "{}: tensor {name} ({:?}) differs from {}'s and cannot be averaged: integer and boolean tensors must be equal in every model",
                        paths[k].display(),
                        view.dtype(),
                        paths[0].display()
                    );
                }
                copied += 1;
                data[0].to_vec()
            }
            None => bail!(
                "{}: tensor {name} has dtype {:?}, which averaging does not support (f32, f64, f16 and bf16 are averaged; integer and boolean tensors are copied)",
                paths[0].display(),
                view.dtype()
            ),
        };
        out.push((name.clone(), view.dtype(), view.shape().to_vec(), bytes));
    }
    let views = out
        .iter()
        .map(|(n, dt, shape, b)| Ok((n.clone(), TensorView::new(*dt, shape.clone(), b)?)))
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()?;
    safetensors::serialize_to_file(views, metadata, dst)
        .with_context(|| format!("cannot write {}", dst.display()))?;
    Ok((averaged, copied))
}

/// The element-wise mean of little-endian tensors of a floating-point dtype (None for others).
fn mean_bytes(dtype: Dtype, data: &[&[u8]]) -> Option<Vec<u8>> {
    fn mean<const W: usize>(
        data: &[&[u8]],
        read: impl Fn([u8; W]) -> f64,
        write: impl Fn(f64) -> [u8; W],
    ) -> Vec<u8> {
        // Starting from the first model's values (not 0.0) keeps the sign of zeros: the mean
        // of -0.0 and -0.0 is -0.0, so a model averaged with itself is that model, bit for bit.
        let mut acc: Vec<f64> = data[0]
            .chunks_exact(W)
            .map(|c| read(c.try_into().expect("chunk of W bytes")))
            .collect();
        for d in &data[1..] {
            for (a, c) in acc.iter_mut().zip(d.chunks_exact(W)) {
                *a += read(c.try_into().expect("chunk of W bytes"));
            }
        }
        let k = data.len() as f64;
        acc.iter().flat_map(|a| write(a / k)).collect()
    }
    Some(match dtype {
        Dtype::F64 => mean::<8>(data, f64::from_le_bytes, f64::to_le_bytes),
        Dtype::F32 => mean::<4>(
            data,
            |b| f32::from_le_bytes(b) as f64,
            |x| (x as f32).to_le_bytes(),
        ),
        Dtype::F16 => mean::<2>(
            data,
            |b| half::f16::from_le_bytes(b).to_f64(),
            |x| half::f16::from_f64(x).to_le_bytes(),
        ),
        Dtype::BF16 => mean::<2>(
            data,
            |b| half::bf16::from_le_bytes(b).to_f64(),
            |x| half::bf16::from_f64(x).to_le_bytes(),
        ),
        _ => return None,
    })
}

fn is_exact(dtype: Dtype) -> bool {
    matches!(
        dtype,
        Dtype::BOOL
            | Dtype::U8
            | Dtype::I8
            | Dtype::I16
            | Dtype::U16
            | Dtype::I32
            | Dtype::U32
            | Dtype::I64
            | Dtype::U64
    )
}

fn kind_name(k: ModelDirKind) -> &'static str {
    match k {
        ModelDirKind::Strata => "strata model",
        ModelDirKind::HuggingFace => "Hugging Face folder",
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

fn is_weights(rel: &Path) -> bool {
    rel.extension().is_some_and(|e| e == "safetensors")
}

fn is_definition(rel: &Path) -> bool {
    rel.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| DEFINITION_FILES.contains(&n))
}

/// Every file under `dir`, relative to it, sorted.
fn list_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    fn walk(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
        let here = root.join(rel);
        let entries =
            std::fs::read_dir(&here).with_context(|| format!("cannot list {}", here.display()))?;
        for e in entries {
            let e = e.with_context(|| format!("cannot list {}", here.display()))?;
            let path = rel.join(e.file_name());
            let ty = e.file_type()?;
            if ty.is_dir() {
                walk(root, &path, out)?;
            } else if root.join(&path).is_file() {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, Path::new(""), &mut out)?;
    out.sort();
    Ok(out)
}

/// Errors unless `rel` has the same JSON content in `a` and `b`, naming the first top-level key
/// that differs.
fn compare_definition(a: &Path, b: &Path, rel: &Path) -> anyhow::Result<()> {
    let read = |dir: &Path| -> anyhow::Result<serde_json::Value> {
        let p = dir.join(rel);
        let text = std::fs::read_to_string(&p).with_context(|| {
            format!(
                "{} lacks {}, which {} has",
                dir.display(),
                rel.display(),
                a.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", p.display()))
    };
    let (x, y) = (read(a)?, read(b)?);
    if x == y {
        return Ok(());
    }
    let key = match (&x, &y) {
        (serde_json::Value::Object(m), serde_json::Value::Object(n)) => m
            .keys()
            .chain(n.keys())
            .find(|k| m.get(*k) != n.get(*k))
            .map(|k| format!(" (field \"{k}\")")),
        _ => None,
    }
    .unwrap_or_default();
    bail!(
        "{} differs from {}{key}: averaged models must share one architecture and tokenizer",
        b.join(rel).display(),
        a.join(rel).display()
    )
}
