//! `strata model`: operations on model folders.

use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Subcommand)]
pub enum ModelCommand {
    /// Uniform weight average ("model soup") of models fine-tuned from the same base, for
    /// example one recipe trained with several seeds. Works on strata models and on Hugging
    /// Face / sentence-transformers folders; the output is a model of the same kind.
    Average(AverageArgs),
}

#[derive(Args)]
pub struct AverageArgs {
    /// Output folder (must not exist; written completely before it appears).
    #[arg(long)]
    pub out: PathBuf,
    /// The models to average (two or more, same architecture and tokenizer).
    #[arg(required = true, num_args = 2.., value_name = "MODEL")]
    pub models: Vec<PathBuf>,
}

pub fn run(c: ModelCommand) -> anyhow::Result<()> {
    match c {
        ModelCommand::Average(a) => {
            let r = strata_model::average_models(&a.models, &a.out)?;
            outln!(
                "{}: mean of {} models ({} tensors averaged, {} copied, in {} weight file(s))",
                a.out.display(),
                r.models,
                r.averaged_tensors,
                r.copied_tensors,
                r.weight_files
            );
            Ok(())
        }
    }
}
