//! `strata export`: writes a model's query tower as a sentence-transformers folder.

use std::path::PathBuf;

use clap::Args;
use strata_model::{Embedder, LoadOptions};

#[derive(Args)]
pub struct ExportArgs {
    /// A strata model directory (or a Hugging Face folder).
    #[arg(long)]
    pub model: PathBuf,
    /// Output folder (Transformer -> mean Pooling -> Dense -> Normalize).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(a: ExportArgs) -> anyhow::Result<()> {
    let e = Embedder::load(&a.model, &LoadOptions::default())?;
    strata_model::export_sentence_transformers(&a.out, e.model(), e.config(), e.tokenizer())?;
    outln!(
        "exported the query tower of {} (dim {}) to {}",
        a.model.display(),
        e.config().dim(),
        a.out.display()
    );
    Ok(())
}
