//! The `strata` command line: a thin layer over the strata libraries.
// Results go through `out!` / `outln!` (output.rs), which end quietly on a closed pipe.
#![deny(clippy::print_stdout)]

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[macro_use]
mod output;
mod commands;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "strata",
    version,
    about = "Train, evaluate and serve graded-relevance embedding retrievers"
)]
struct Cli {
    /// Worker threads for CPU compute (default: all cores).
    #[arg(long, global = true, env = "STRATA_THREADS")]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Embed texts as queries or items.
    Embed(commands::embed::EmbedArgs),
    /// Data tools: stats, validate, split, augment, synth, convert.
    #[command(subcommand)]
    Data(commands::data::DataCommand),
    /// Evaluate a model or a lexical/hybrid system on judged queries.
    Eval(commands::eval::EvalArgs),
    /// Compare eval runs against a baseline run.
    Compare(commands::eval::CompareArgs),
    /// Train a retriever (stage 1 SupCon, stage 2 circle, or a baseline loss).
    Train(Box<commands::train::TrainArgs>),
    /// Export a model's query tower as a sentence-transformers folder.
    Export(commands::export::ExportArgs),
    /// Model folders: average several fine-tuned models into one.
    #[command(subcommand)]
    Model(commands::model::ModelCommand),
    /// Mine hard negatives and positives with a trained model (paper section 4.4).
    Mine(commands::pipeline::MineArgs),
    /// Stage 1 -> mine -> stage 2 -> evaluation and comparison, from one config.
    Pipeline(commands::pipeline::PipelineArgs),
    /// Relevance labelers: train and evaluate a cross-encoder labeler.
    #[command(subcommand)]
    Labeler(commands::labeler::LabelerCommand),
    /// Label (query, item) pairs with an LLM or known judgments, through a persistent cache.
    Label(commands::label::LabelArgs),
    /// Engagement audit: relabel judgments that disagree with engagement (paper section 3.2).
    Audit(commands::audit::AuditArgs),
    /// Serving index: build, add, replace, delete, info.
    #[command(subcommand)]
    Index(commands::index::IndexCommand),
    /// Serve embeddings and search over an index (HTTP, loopback by default).
    Serve(Box<commands::serve::ServeArgs>),
    /// Benchmarks run side by side with a baseline.
    #[command(subcommand)]
    Bench(commands::bench::BenchCommand),
}

/// mimalloc's `mi_option_purge_delay` (mimalloc v2 option index).
const MI_OPTION_PURGE_DELAY: i32 = 15;

fn main() {
    // Keep freed pages mapped: returning them to the OS and faulting them back in costs a large
    // share of a CPU forward/backward pass (tensors of the same sizes are reallocated every batch).
    // SAFETY: setting a mimalloc option is valid at any time.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STRATA_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Some(n) = cli.threads
        && let Err(e) = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
    {
        eprintln!("error: could not set {n} threads: {e}");
        std::process::exit(2);
    }
    let result = match cli.command {
        Command::Embed(a) => commands::embed::run(a),
        Command::Data(c) => commands::data::run(c),
        Command::Eval(a) => commands::eval::run(a),
        Command::Compare(a) => commands::eval::compare(a),
        Command::Train(a) => commands::train::run(*a),
        Command::Export(a) => commands::export::run(a),
        Command::Model(c) => commands::model::run(c),
        Command::Mine(a) => commands::pipeline::mine(a),
        Command::Pipeline(a) => commands::pipeline::run(a),
        Command::Labeler(c) => commands::labeler::run(c),
        Command::Label(a) => commands::label::run(a),
        Command::Audit(a) => commands::audit::run(a),
        Command::Index(c) => commands::index::run(c),
        Command::Serve(a) => commands::serve::run(*a),
        Command::Bench(c) => commands::bench::run(c),
    };
    if let Err(e) = result {
        // The reader of our output went away (`strata ... | head`): nothing left to report.
        if output::closed() {
            return;
        }
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
