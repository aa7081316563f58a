//! `strata bench ...`
use clap::Subcommand;

#[derive(Subcommand)]
pub enum BenchCommand {}

pub fn run(c: BenchCommand) -> anyhow::Result<()> {
    match c {}
}
