//! The index manifest and model fingerprints.

use std::path::Path;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
pub use strata_model::model_fingerprint;
use strata_retrieval::{HnswParams, Thresholds};

/// Version of the index directory layout this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// A reduced-precision copy of the item embeddings written next to the f32 file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Quantization {
    /// IEEE half precision (`embeddings.f16`).
    F16,
    /// Symmetric int8 per row (`embeddings.i8`, one f32 scale per row in
    /// `embeddings.i8.scales`; value = q * scale).
    Int8,
}

impl std::str::FromStr for Quantization {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "f16" => Ok(Quantization::F16),
            "int8" => Ok(Quantization::Int8),
            o => Err(format!("unknown quantization {o:?} (expected f16 or int8)")),
        }
    }
}

/// The model an index was built with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelStamp {
    /// Where the model was loaded from (informational).
    pub path: String,
    /// SHA-256 over the model's configuration, tokenizer and weights ([`model_fingerprint`]).
    pub fingerprint: String,
    /// Arithmetic the item embeddings were computed with (`strata index build --precision`);
    /// f32 for indexes written before the field existed.
    #[serde(default)]
    pub precision: strata_model::Precision,
}

/// `manifest.json` of an index directory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    /// strata version that wrote the index.
    pub strata_version: String,
    pub model: ModelStamp,
    /// Embedding dimension.
    pub dim: usize,
    /// Items that can be found (slots minus deleted ones).
    pub count: usize,
    /// Rows in the embedding file (deleted rows stay until a rebuild).
    pub slots: usize,
    /// How item text was built: "name+taxonomy" or "name".
    pub item_text: String,
    pub hnsw: HnswParams,
    /// The reduced-precision copy written, if any.
    pub quantization: Option<Quantization>,
    /// Thresholds between relevance strata (from a `strata eval` run), if given.
    pub thresholds: Option<Thresholds>,
    /// Generation of the data files: 0 in the index directory itself (as `strata index build`
    /// writes them), `n > 0` in `gen-n/` (written by updates; see [`crate::generation`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub generation: u64,
}

fn is_zero(g: &u64) -> bool {
    *g == 0
}

impl Manifest {
    /// Reads and checks `manifest.json` in `dir`.
    pub fn read(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join(crate::index::MANIFEST);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read {} (is {} an index built by `strata index build`?)",
                path.display(),
                dir.display()
            )
        })?;
        let m: Manifest = serde_json::from_str(&text)
            .with_context(|| format!("{}: not an index manifest", path.display()))?;
        let supported = FORMAT_VERSION..=crate::generation::GENERATION_FORMAT;
        if !supported.contains(&m.format_version) {
            bail!(
                "{}: index format version {} is not supported (this build reads versions {} to {}); rebuild the index",
                path.display(),
                m.format_version,
                supported.start(),
                supported.end()
            );
        }
        if m.generation > 0 && m.format_version < crate::generation::GENERATION_FORMAT {
            bail!(
                "{}: format version {} cannot name generation {}",
                path.display(),
                m.format_version,
                m.generation
            );
        }
        Ok(m)
    }

    /// Fails with a clear message when `fingerprint` is not the model the index was built with.
    pub fn check_model(&self, model_path: &str, fingerprint: &str) -> anyhow::Result<()> {
        if self.model.fingerprint != fingerprint {
            bail!(
                "model/index mismatch: the index was built with model {} (fingerprint {}), but the model loaded is {} (fingerprint {}); rebuild the index with `strata index build --model {}` or serve the model it was built with",
                self.model.path,
                short(&self.model.fingerprint),
                model_path,
                short(fingerprint),
                model_path
            );
        }
        Ok(())
    }
}

fn short(f: &str) -> &str {
    &f[..f.len().min(12)]
}
