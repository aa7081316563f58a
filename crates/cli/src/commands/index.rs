//! `strata index build|add|replace|delete|info`: the serving index (strata-serving).

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use strata_eval::{HnswParams, Thresholds};
use strata_serving::{BuildOptions, ItemIndex, Manifest, ModelStamp, Quantization, Update};

#[derive(Subcommand)]
pub enum IndexCommand {
    /// Build an index directory from a model and a catalog.
    Build(BuildArgs),
    /// Add new items (ids must not be in the index).
    Add(ItemsArgs),
    /// Replace items by id with new versions.
    Replace(ItemsArgs),
    /// Delete items by id.
    Delete(DeleteArgs),
    /// Print an index manifest after checking the index against it (exit 1 when inconsistent).
    Info(InfoArgs),
    /// Check an index: the manifest against the items, vectors, graph and BM25 index, and
    /// leftovers of interrupted updates (exit 1 when inconsistent).
    Verify(InfoArgs),
    /// Remove leftovers of interrupted updates and bring damaged data files back in line with
    /// the manifest (no model run).
    Repair(InfoArgs),
    /// Set the relevance-strata thresholds of an index (from a `strata eval` run).
    Thresholds(ThresholdsArgs),
    /// Rebuild the HNSW graph from the stored embeddings with new parameters (no model run).
    Hnsw(HnswArgs),
    /// Export an index into PostgreSQL + pgvector (items, texts, embeddings; HNSW and
    /// full-text indexes), for `strata serve --backend postgres://...`.
    Export(ExportArgs),
}

pub use super::common::ModelArgs;

#[derive(Args)]
pub struct BuildArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Catalog file (any format strata-data reads).
    #[arg(long)]
    pub catalog: PathBuf,
    /// Index directory to create.
    #[arg(long)]
    pub out: PathBuf,
    /// Item text, as `strata eval --item-text` (default: the item text the model was trained
    /// with, else name+taxonomy).
    #[arg(long)]
    pub item_text: Option<strata_data::ItemTextConfig>,
    /// thresholds.json of a `strata eval` run (or the run directory).
    #[arg(long)]
    pub thresholds: Option<PathBuf>,
    /// Also write a reduced-precision copy of the embeddings: f16 or int8.
    #[arg(long)]
    pub quantize: Option<Quantization>,
    #[command(flatten)]
    pub hnsw: super::common::HnswFlags,
}

#[derive(Args)]
pub struct ItemsArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Index directory.
    #[arg(long)]
    pub index: PathBuf,
    /// Items file (any catalog format strata-data reads).
    #[arg(long)]
    pub items: PathBuf,
}

#[derive(Args)]
pub struct DeleteArgs {
    /// Index directory.
    #[arg(long)]
    pub index: PathBuf,
    /// Item ids, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub ids: Vec<String>,
    /// A file of item ids, one per line.
    #[arg(long)]
    pub ids_file: Option<PathBuf>,
}

#[derive(Args)]
pub struct InfoArgs {
    /// Index directory.
    #[arg(long)]
    pub index: PathBuf,
}

#[derive(Args)]
pub struct HnswArgs {
    /// Index directory.
    #[arg(long)]
    pub index: PathBuf,
    #[command(flatten)]
    pub hnsw: super::common::HnswFlags,
}

#[derive(Args)]
pub struct ThresholdsArgs {
    /// Index directory.
    #[arg(long)]
    pub index: PathBuf,
    /// thresholds.json of a `strata eval` run (or the run directory).
    #[arg(long, required_unless_present = "clear", conflicts_with = "clear")]
    pub from: Option<PathBuf>,
    /// Remove the thresholds instead.
    #[arg(long)]
    pub clear: bool,
}

#[derive(Args)]
pub struct ExportArgs {
    /// Index directory built by `strata index build`.
    #[arg(long)]
    pub index: PathBuf,
    /// Database URL, e.g. postgres://user@127.0.0.1:5432/db (the pgvector extension must be
    /// installable there: scripts/setup-postgres.sh).
    #[arg(long)]
    pub to: String,
    /// Table to write (replaced atomically when it exists).
    #[arg(long, default_value = "strata_items")]
    pub table: String,
    /// pgvector HNSW graph degree.
    #[arg(long, default_value_t = strata_serving_postgres::PgHnswParams::default().m)]
    pub hnsw_m: u32,
    /// pgvector HNSW candidate list size while building.
    #[arg(long, default_value_t = strata_serving_postgres::PgHnswParams::default().ef_construction)]
    pub hnsw_ef_construction: u32,
    /// maintenance_work_mem for the index builds.
    #[arg(long, default_value = "1GB")]
    pub maintenance_work_mem: String,
}

fn read_thresholds(path: &Path) -> anyhow::Result<Thresholds> {
    let file = if path.is_dir() {
        path.join("thresholds.json")
    } else {
        path.to_path_buf()
    };
    Thresholds::read(&file)
}

fn progress_opts() -> BuildOptions {
    BuildOptions {
        progress: true,
        ..Default::default()
    }
}

pub fn run(c: IndexCommand) -> anyhow::Result<()> {
    match c {
        IndexCommand::Build(a) => build(a),
        IndexCommand::Add(a) => items(a, false),
        IndexCommand::Replace(a) => items(a, true),
        IndexCommand::Delete(a) => delete(a),
        IndexCommand::Export(a) => export(a),
        IndexCommand::Hnsw(a) => {
            let t = std::time::Instant::now();
            let params = a.hnsw.params(HnswParams::default());
            let idx = ItemIndex::rebuild_hnsw(&a.index, params, true)?;
            eprintln!(
                "rebuilt the HNSW graph of {} items in {:.1}s",
                idx.len(),
                t.elapsed().as_secs_f64()
            );
            Ok(())
        }
        IndexCommand::Thresholds(a) => {
            let t = a.from.as_deref().map(read_thresholds).transpose()?;
            ItemIndex::set_thresholds(&a.index, t.as_ref())?;
            outln!("{}", serde_json::to_string(&t)?);
            Ok(())
        }
        IndexCommand::Info(a) => {
            let m = Manifest::read(&a.index)?;
            outln!("{}", serde_json::to_string_pretty(&m)?);
            let report = ItemIndex::verify(&a.index)?;
            anyhow::ensure!(
                report.problems.is_empty(),
                "{} is inconsistent: {}; run `strata index repair --index {}`",
                a.index.display(),
                report.problems.join("; "),
                a.index.display()
            );
            Ok(())
        }
        IndexCommand::Verify(a) => {
            let report = ItemIndex::verify(&a.index)?;
            outln!("{}", serde_json::to_string_pretty(&report)?);
            anyhow::ensure!(
                report.problems.is_empty(),
                "{} is inconsistent ({} problems); run `strata index repair --index {}`",
                a.index.display(),
                report.problems.len(),
                a.index.display()
            );
            Ok(())
        }
        IndexCommand::Repair(a) => {
            let report = ItemIndex::repair(&a.index, true)?;
            outln!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
    }
}

fn build(a: BuildArgs) -> anyhow::Result<()> {
    let t = std::time::Instant::now();
    let catalog = strata_data::load_catalog(&a.catalog)?;
    let thresholds = a.thresholds.as_deref().map(read_thresholds).transpose()?;
    let model = a.model.load()?;
    let opts = BuildOptions {
        item_text: strata_model::item_text_for(Some(&a.model.model), a.item_text.clone())?,
        hnsw: a.hnsw.params(HnswParams::default()),
        quantization: a.quantize,
        thresholds,
        ..progress_opts()
    };
    let stamp = ModelStamp {
        path: model.name.clone(),
        fingerprint: model.fingerprint.clone(),
        precision: model.encoder.precision(),
    };
    let index = ItemIndex::build(&a.out, catalog.items(), &*model.encoder, stamp, &opts)
        .with_context(|| format!("building the index in {}", a.out.display()))?;
    eprintln!(
        "indexed {} items (dimension {}) in {} in {:.1}s",
        index.len(),
        index.dim(),
        a.out.display(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

fn items(a: ItemsArgs, replace: bool) -> anyhow::Result<()> {
    let catalog = strata_data::load_catalog(&a.items)?;
    let model = a.model.load()?;
    let stamp = ModelStamp {
        path: model.name.clone(),
        fingerprint: model.fingerprint.clone(),
        precision: model.encoder.precision(),
    };
    let items = catalog.items().to_vec();
    let update = if replace {
        Update {
            replace: items,
            ..Default::default()
        }
    } else {
        Update {
            add: items,
            ..Default::default()
        }
    };
    let (_, report) = ItemIndex::update(
        &a.index,
        &update,
        Some((&*model.encoder as &dyn strata_data::TextEncoder, &stamp)),
        &progress_opts(),
    )?;
    outln!("{}", serde_json::to_string(&report)?);
    Ok(())
}

fn delete(a: DeleteArgs) -> anyhow::Result<()> {
    let mut ids = a.ids;
    if let Some(f) = &a.ids_file {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
        ids.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string),
        );
    }
    anyhow::ensure!(!ids.is_empty(), "no ids to delete (--ids or --ids-file)");
    let update = Update {
        delete: ids,
        ..Default::default()
    };
    let (_, report) = ItemIndex::update(&a.index, &update, None, &progress_opts())?;
    outln!("{}", serde_json::to_string(&report)?);
    Ok(())
}

fn export(a: ExportArgs) -> anyhow::Result<()> {
    use strata_serving_postgres::{ExportOptions, PgHnswParams as PgHnsw, export_index};
    let index = ItemIndex::open(&a.index)?;
    let options = ExportOptions {
        table: a.table.clone(),
        hnsw: PgHnsw {
            m: a.hnsw_m,
            ef_construction: a.hnsw_ef_construction,
        },
        maintenance_work_mem: Some(a.maintenance_work_mem.clone()),
        ..Default::default()
    };
    let progress = super::data::Bars::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let report = rt
        .block_on(export_index(&a.to, &index, &options, &progress))
        .with_context(|| format!("exporting {} into table {}", a.index.display(), a.table))?;
    eprintln!(
        "exported {} items (dimension {}) into {} in {:.1}s (copy {:.1}s, indexes {:.1}s)",
        report.items,
        report.dim,
        report.table,
        report.total_seconds,
        report.copy_seconds,
        report.index_seconds
    );
    outln!("{}", serde_json::to_string(&report)?);
    Ok(())
}
