#![allow(dead_code)]
mod commands {
    #[path = "/work/wt-llm/crates/cli/src/commands/audit.rs"]
    pub mod audit;
    #[path = "/work/wt-llm/crates/cli/src/commands/label.rs"]
    pub mod label;
}
#[derive(clap::Parser)]
struct Cli {
    #[command(subcommand)]
    c: C,
}
#[derive(clap::Subcommand)]
enum C {
    Label(commands::label::LabelArgs),
    Audit(commands::audit::AuditArgs),
}
fn main() -> anyhow::Result<()> {
    let cli: Cli = clap::Parser::parse();
    match cli.c {
        C::Label(a) => commands::label::run(a),
        C::Audit(a) => commands::audit::run(a),
    }
}
