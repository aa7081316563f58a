//! `strata train`.
use clap::Args;

#[derive(Args)]
pub struct TrainArgs {}

pub fn run(_a: TrainArgs) -> anyhow::Result<()> {
    anyhow::bail!("strata train is not built yet")
}
