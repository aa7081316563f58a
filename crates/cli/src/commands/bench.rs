//! `strata bench ...`: throughput benchmarks, each run side by side with a baseline script.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use strata_model::{BatchLimits, Embedder, LoadOptions, Side};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Item-embedding throughput on product titles (compare: bench/embed_st.py).
    Embed(EmbedBenchArgs),
    /// One training step on a fixed batch of real instances, split into forward, backward and
    /// optimizer (compare: bench/train_step_torch.py, which reads the batch from --dump).
    Train(TrainBenchArgs),
    /// Load test of `strata serve` (/search or /embed) on a loopback address: fixed request
    /// count and duration cap, target rate or max rate, optional rate sweep.
    Serve(Box<super::serve::ServeBenchArgs>),
}

#[derive(Args)]
pub struct TrainBenchArgs {
    /// Model directory.
    #[arg(long, env = "STRATA_MODEL", default_value = "models/all-MiniLM-L6-v2")]
    pub model: PathBuf,
    /// Catalog the instances come from.
    #[arg(long, default_value = "../shared/data/homedepot/products.tsv")]
    pub catalog: PathBuf,
    /// Judgments the instances come from.
    #[arg(long, default_value = "../shared/data/homedepot/judgments.tsv")]
    pub judgments: PathBuf,
    /// Instances in the batch.
    #[arg(long, default_value_t = 16)]
    pub instances: usize,
    /// Items per label 0,1,2 in each instance.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 1, 2])]
    pub items_per_label: Vec<usize>,
    /// Timed steps (after one warm-up step).
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    /// Most padded tokens per forward chunk (default: the device's, as `strata train`).
    #[arg(long)]
    pub chunk_tokens: Option<usize>,
    /// Most texts per forward chunk (default: the device's).
    #[arg(long)]
    pub chunk_texts: Option<usize>,
    /// Compute device: cpu; cuda[:N], vulkan[:N] or wgpu[:N] in a build with that feature.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Encode every slot separately in one padded batch per side (no deduplication, no
    /// length-sorted chunks).
    #[arg(long)]
    pub plain: bool,
    /// Write the batch as JSON for bench/train_step_torch.py.
    #[arg(long)]
    pub dump: Option<PathBuf>,
}

#[derive(Args)]
pub struct EmbedBenchArgs {
    /// Model directory.
    #[arg(long, env = "STRATA_MODEL")]
    pub model: PathBuf,
    /// TSV whose second column holds product titles (header skipped).
    #[arg(long, default_value = "../shared/data/homedepot/products.tsv")]
    pub titles: PathBuf,
    /// Number of titles.
    #[arg(long, default_value_t = 20_000)]
    pub n: usize,
    /// Most texts per forward pass.
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Most padded tokens per forward pass.
    #[arg(long, default_value_t = 4096)]
    pub max_tokens: usize,
    /// Inference path: the CPU engine at `f32` (what every command uses) or `int8`, or the
    /// burn tensor model (`tensor`, the path training and GPUs use; implied by a GPU device).
    #[arg(long, default_value = "f32")]
    pub precision: String,
    /// Compute device: cpu; cuda[:N], vulkan[:N] or wgpu[:N] in a build with that feature.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

pub fn run(c: BenchCommand) -> anyhow::Result<()> {
    match c {
        BenchCommand::Embed(a) => embed(a),
        BenchCommand::Train(a) => train_step(a),
        BenchCommand::Serve(a) => super::serve::bench(*a),
    }
}

fn embed(a: EmbedBenchArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&a.titles)
        .with_context(|| format!("cannot read {}", a.titles.display()))?;
    let titles: Vec<&str> = text
        .lines()
        .skip(1)
        .filter_map(|l| l.split('\t').nth(1))
        .take(a.n)
        .collect();
    anyhow::ensure!(
        !titles.is_empty(),
        "{}: no titles found",
        a.titles.display()
    );
    let device = strata_model::parse_device(&a.device)?;
    let gpu = !strata_model::device::is_cpu(&device);
    let e = Embedder::load_on(&a.model, &LoadOptions::default(), &device)?
        .with_limits(BatchLimits {
            max_batch: a.batch_size,
            max_tokens: a.max_tokens,
        })
        .with_progress(true)
        .with_precision(match a.precision.as_str() {
            "tensor" => None,
            "f32" if gpu => None,
            p => Some(p.parse()?),
        })?;
    let precision = e
        .precision()
        .map_or("tensor".to_string(), |p| p.to_string());
    e.embed(&titles[..titles.len().min(64)], Side::Item)?; // warm-up
    let t = std::time::Instant::now();
    let v = e.embed(&titles, Side::Item)?;
    let s = t.elapsed().as_secs_f64();
    let out = serde_json::json!({
        "system": "strata",
        "device": a.device,
        "precision": precision,
        "threads": rayon::current_num_threads(),
        "texts": titles.len(),
        "seconds": (s * 1000.0).round() / 1000.0,
        "per_sec": ((titles.len() as f64 / s) * 10.0).round() / 10.0,
        "checksum": v.iter().map(|x| *x as f64).sum::<f64>(),
    });
    outln!("{out}");
    Ok(())
}

fn train_step(a: TrainBenchArgs) -> anyhow::Result<()> {
    use strata_train::batch::Chunking;
    use strata_train::bench::{StepBench, bench_train_step};
    let [l0, l1, l2] = a.items_per_label[..] else {
        anyhow::bail!(
            "--items-per-label takes three numbers (labels 0,1,2), got {:?}",
            a.items_per_label
        );
    };
    let spec = StepBench {
        model: a.model,
        catalog: a.catalog,
        judgments: a.judgments,
        instances: a.instances,
        items_per_label: [l0, l1, l2],
        steps: a.steps,
        chunking: if a.plain {
            Some(Chunking::single())
        } else {
            let device = strata_model::parse_device(&a.device)?;
            let d = Chunking::for_device(&device);
            Some(Chunking {
                max_texts: a.chunk_texts.unwrap_or(d.max_texts),
                max_tokens: a.chunk_tokens.unwrap_or(d.max_tokens),
            })
        },
        device: a.device,
        dedup: !a.plain,
        ..Default::default()
    };
    let (timing, batch) = bench_train_step(&spec)?;
    if let Some(p) = &a.dump {
        std::fs::write(p, serde_json::to_string(&batch)?)
            .with_context(|| format!("cannot write {}", p.display()))?;
    }
    outln!("{}", serde_json::to_string(&timing)?);
    Ok(())
}
