//! `strata embed`.
use clap::Args;

#[derive(Args)]
pub struct EmbedArgs {}

pub fn run(_a: EmbedArgs) -> anyhow::Result<()> {
    anyhow::bail!("strata embed is not built yet")
}
