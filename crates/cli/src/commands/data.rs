//! `strata data ...`: statistics, validation, splits, augmentation, the synthetic marketplace
//! and format conversion.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use strata_data::adapters::{esci, homedepot, wands};
use strata_data::io::{RecordKind, detect_kind};
use strata_data::labeler::CachedLabeler;
use strata_data::marketplace::{Marketplace, MarketplaceConfig, Oracle, OracleConfig};
use strata_data::progress::Progress;
use strata_data::spelling::{NoiserConfig, SpellingConfig, SpellingMode, SpellingVariants};
use strata_data::split::{Split, SplitConfig};
use strata_data::stats::DataStats;
use strata_data::synth::{self, SyntheticConfig};
use strata_data::{
    Catalog, Format, ItemTextConfig, Judgment, OnInvalid, ReadOptions, ReadReport,
    RelevanceThresholds, TaxonomyDepth, load_catalog_with, load_judgments_with, write_catalog_as,
    write_judgments_as,
};

#[derive(Subcommand)]
pub enum DataCommand {
    /// Statistics of judgments (and their catalog): labels, sources, label mixes, token overlap.
    /// Without files, of the built-in synthetic marketplace.
    Stats(StatsArgs),
    /// Check a catalog and judgments; every bad row is reported with file, line and field.
    Validate(ValidateArgs),
    /// Split judgments by query (stable hash) into train/dev/test files.
    Split(SplitArgs),
    /// Add spelling variants of queries, or synthetic queries labeled by a labeler.
    Augment(AugmentArgs),
    /// Generate the synthetic marketplace: catalog, judgments, splits.
    Synth(SynthArgs),
    /// Convert a file between formats, or a public dataset (homedepot, wands, esci) to strata files.
    Convert(ConvertArgs),
}

pub fn run(c: DataCommand) -> anyhow::Result<()> {
    match c {
        DataCommand::Stats(a) => stats(a),
        DataCommand::Validate(a) => validate(a),
        DataCommand::Split(a) => split(a),
        DataCommand::Augment(a) => augment(a),
        DataCommand::Synth(a) => synth_marketplace(a),
        DataCommand::Convert(a) => convert(a),
    }
}

/// Progress bars for the library's long-running stages.
pub(crate) struct Bars {
    bar: Mutex<Option<ProgressBar>>,
}

impl Bars {
    pub(crate) fn new() -> Self {
        Bars {
            bar: Mutex::new(None),
        }
    }
}

impl Progress for Bars {
    fn stage(&self, name: &str, total: u64) {
        let bar = ProgressBar::new(total);
        if let Ok(style) = ProgressStyle::with_template(
            "{msg:>10} [{bar:40}] {human_pos}/{human_len} {elapsed_precise} eta {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(name.to_string());
        if let Some(old) = self.bar.lock().expect("progress lock").replace(bar) {
            old.finish();
        }
    }
    fn advance(&self, n: u64) {
        if let Some(b) = self.bar.lock().expect("progress lock").as_ref() {
            b.inc(n);
        }
    }
    fn finish(&self) {
        if let Some(b) = self.bar.lock().expect("progress lock").take() {
            b.finish();
        }
    }
}

/// A spinner while a file is read.
fn spinner(msg: String) -> ProgressBar {
    let s = ProgressBar::new_spinner();
    s.set_message(msg);
    s.enable_steady_tick(Duration::from_millis(120));
    s
}

/// Options shared by every command that reads files.
#[derive(Args, Debug, Clone)]
pub struct ReadArgs {
    /// Keep going past invalid rows and write them (with their errors) to `--rejects`.
    #[arg(long)]
    pub skip_invalid: bool,
    /// Where rejected rows go with `--skip-invalid` (TSV; appended to).
    #[arg(long, default_value = "rejects.tsv")]
    pub rejects: PathBuf,
    /// Average relevance at or above which a pair is exact (label 2), for files with a
    /// `relevance` column and no `label` column.
    #[arg(long, default_value_t = 2.67)]
    pub exact_threshold: f64,
    /// Average relevance at or above which a pair is a partial match (label 1).
    #[arg(long, default_value_t = 2.0)]
    pub partial_threshold: f64,
}

impl ReadArgs {
    fn options(&self) -> anyhow::Result<ReadOptions> {
        if self.partial_threshold > self.exact_threshold
            || self.partial_threshold.is_nan()
            || self.exact_threshold.is_nan()
        {
            bail!(
                "--partial-threshold {} must not exceed --exact-threshold {}",
                self.partial_threshold,
                self.exact_threshold
            );
        }
        Ok(ReadOptions {
            on_invalid: if self.skip_invalid {
                OnInvalid::Skip {
                    rejects: self.rejects.clone(),
                }
            } else {
                OnInvalid::Fail
            },
            relevance: RelevanceThresholds {
                exact: self.exact_threshold,
                partial: self.partial_threshold,
            },
            ..Default::default()
        })
    }
}

fn read_catalog(path: &Path, opts: &ReadOptions) -> anyhow::Result<(Catalog, ReadReport)> {
    let s = spinner(format!("reading {}", path.display()));
    let r = load_catalog_with(path, opts);
    s.finish_and_clear();
    r
}

fn read_judgments(
    path: &Path,
    opts: &ReadOptions,
    catalog: Option<&Catalog>,
) -> anyhow::Result<(Vec<Judgment>, ReadReport)> {
    let s = spinner(format!("reading {}", path.display()));
    let r = load_judgments_with(path, opts, catalog);
    s.finish_and_clear();
    r
}

fn print_report(r: &ReadReport) {
    eprintln!("{r}");
    if r.rejected > 0 {
        for e in &r.first_errors {
            eprintln!("  {e}");
        }
    }
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Catalog file (for token-overlap statistics and item checks).
    #[arg(long)]
    pub catalog: Option<PathBuf>,
    /// Judgments file.
    #[arg(long)]
    pub judgments: Option<PathBuf>,
    /// Item text used for token overlap, as `strata eval --item-text` (default name+taxonomy).
    #[arg(long)]
    pub item_text: Option<ItemTextConfig>,
    /// Taxonomy levels in the item text: none, all, N, first:N, last:N
    /// (`--item-text name+taxonomy:DEPTH`).
    #[arg(long, conflicts_with = "item_text")]
    pub taxonomy_depth: Option<TaxonomyDepth>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub read: ReadArgs,
}

fn stats(a: StatsArgs) -> anyhow::Result<()> {
    let opts = a.read.options()?;
    let (catalog, judgments) = match (&a.catalog, &a.judgments) {
        (None, None) => {
            eprintln!(
                "no files given: statistics of the built-in synthetic marketplace (default settings)"
            );
            let m = Marketplace::generate_with(&MarketplaceConfig::default(), &Bars::new())?;
            (Some(m.catalog), m.judgments)
        }
        (c, Some(j)) => {
            let catalog = match c {
                Some(c) => Some(read_catalog(c, &opts)?.0),
                None => None,
            };
            (catalog, read_judgments(j, &opts, None)?.0)
        }
        (Some(_), None) => bail!("--judgments is required with --catalog"),
    };
    let text = match (&a.item_text, a.taxonomy_depth) {
        (Some(t), _) => t.clone(),
        (None, Some(depth)) => ItemTextConfig {
            depth,
            template: None,
        },
        (None, None) => ItemTextConfig::default(),
    };
    let s = DataStats::compute(catalog.as_ref(), &judgments, &text);
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        out!("{s}");
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// Catalog file.
    #[arg(long)]
    pub catalog: Option<PathBuf>,
    /// Judgments file (checked against the catalog when both are given).
    #[arg(long)]
    pub judgments: Option<PathBuf>,
    #[command(flatten)]
    pub read: ReadArgs,
}

fn validate(a: ValidateArgs) -> anyhow::Result<()> {
    if a.catalog.is_none() && a.judgments.is_none() {
        bail!("give --catalog, --judgments or both");
    }
    let opts = a.read.options()?;
    if a.read.skip_invalid && a.read.rejects.exists() {
        std::fs::remove_file(&a.read.rejects)
            .with_context(|| format!("removing old {}", a.read.rejects.display()))?;
    }
    let mut rejected = 0;
    let catalog = match &a.catalog {
        Some(c) => {
            let (catalog, r) = read_catalog(c, &opts)?;
            print_report(&r);
            rejected += r.rejected;
            Some(catalog)
        }
        None => None,
    };
    if let Some(j) = &a.judgments {
        let (_, r) = read_judgments(j, &opts, catalog.as_ref())?;
        print_report(&r);
        rejected += r.rejected;
    }
    if rejected > 0 {
        eprintln!(
            "{rejected} rejected rows written to {}",
            a.read.rejects.display()
        );
    } else {
        eprintln!("all rows valid");
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct SplitArgs {
    /// Judgments file.
    #[arg(long)]
    pub judgments: PathBuf,
    /// Output directory for train/dev/test files.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = SplitConfig::default().train)]
    pub train: f64,
    #[arg(long, default_value_t = SplitConfig::default().dev)]
    pub dev: f64,
    #[arg(long, default_value_t = SplitConfig::default().test)]
    pub test: f64,
    /// Seed of the query hash.
    #[arg(long, default_value_t = SplitConfig::default().seed)]
    pub seed: u64,
    /// Output format (default: the input's).
    #[arg(long)]
    pub format: Option<Format>,
    #[command(flatten)]
    pub read: ReadArgs,
}

fn split(a: SplitArgs) -> anyhow::Result<()> {
    let cfg = SplitConfig::new(a.train, a.dev, a.test, a.seed)?;
    let (judgments, r) = read_judgments(&a.judgments, &a.read.options()?, None)?;
    print_report(&r);
    let format = match a.format {
        Some(f) => f,
        None => Format::from_path(&a.judgments)?,
    };
    let parts = cfg.split_judgments(&judgments);
    for s in Split::ALL {
        let p = a.out.join(format!("{s}.{}", format.extension()));
        let js = parts.get(s);
        write_judgments_as(&p, js, format)?;
        let queries: std::collections::HashSet<&str> =
            js.iter().map(|j| j.query.as_str()).collect();
        outln!(
            "{s}: {} judgments, {} queries -> {}",
            js.len(),
            queries.len(),
            p.display()
        );
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AugmentKind {
    /// Spelling variants of queries (paper 4.2, Table 6).
    Spelling,
    /// Synthetic queries for items without positive judgments (paper 4.2, Table 5).
    Synthetic,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SpellingOutput {
    /// Originals plus a copy of each retained query's judgments with the variant as query.
    Additive,
    /// Retained queries replaced by their variant.
    InPlace,
    /// A TSV of (clean, noisy) query pairs for a cosine regularisation term.
    Pairs,
}

/// The labelers `strata data augment --synthetic` accepts.
const SYNTH_LABELERS: [&str; 2] = ["oracle", "lookup"];

#[derive(Args, Debug)]
pub struct AugmentArgs {
    /// What to add.
    #[arg(long, value_enum, default_value = "spelling")]
    pub kind: AugmentKind,
    /// Judgments to augment (normally the train split).
    #[arg(long)]
    pub judgments: PathBuf,
    /// Catalog (needed for synthetic queries).
    #[arg(long)]
    pub catalog: Option<PathBuf>,
    /// Output file (judgments, or a TSV of pairs with `--mode pairs`).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Spelling: fraction of queries whose variant is kept (paper: 0.3-0.5).
    #[arg(long, default_value_t = 0.4)]
    pub retain: f64,
    /// Spelling: how the variants are used.
    #[arg(long, value_enum, default_value = "additive")]
    pub mode: SpellingOutput,
    /// Spelling: most character edits per variant.
    #[arg(long, default_value_t = 2)]
    pub max_edits: usize,
    /// Synthetic: synthetic queries per real query.
    #[arg(long, default_value_t = 0.1)]
    pub ratio: f64,
    /// Synthetic: other items paired with each synthetic query.
    #[arg(long, default_value_t = 4)]
    pub negatives: usize,
    /// Synthetic: who labels the pairs: `oracle` (the synthetic marketplace's) or `lookup`
    /// (known judgments).
    #[arg(long, default_value = "oracle")]
    pub labeler: strata_data::LabelerSpec,
    /// Synthetic: label noise of the oracle.
    #[arg(long, default_value_t = OracleConfig::default().noise)]
    pub noise: f64,
    /// Synthetic: label for unjudged pairs with the lookup labeler.
    #[arg(long)]
    pub unknown_label: Option<u8>,
    /// Synthetic: persistent label cache (JSONL), so no pair is labeled twice across runs.
    #[arg(long)]
    pub label_cache: Option<PathBuf>,
    /// Synthetic: guideline version recorded in the label cache.
    #[arg(long, default_value = "v1")]
    pub guideline: String,
    #[command(flatten)]
    pub read: ReadArgs,
}

fn augment(a: AugmentArgs) -> anyhow::Result<()> {
    let opts = a.read.options()?;
    match a.kind {
        AugmentKind::Spelling => {
            let (judgments, r) = read_judgments(&a.judgments, &opts, None)?;
            print_report(&r);
            let mut queries: Vec<&str> = Vec::new();
            let mut seen = std::collections::HashSet::new();
            for j in &judgments {
                if seen.insert(j.query.as_str()) {
                    queries.push(&j.query);
                }
            }
            let cfg = SpellingConfig {
                noiser: NoiserConfig {
                    max_edits: a.max_edits,
                    ..Default::default()
                },
                retain: a.retain,
                seed: a.seed,
            };
            let variants = SpellingVariants::generate(&queries, &cfg)?;
            eprintln!(
                "{} of {} queries get a spelling variant",
                variants.retained(),
                queries.len()
            );
            match a.mode {
                SpellingOutput::Pairs => {
                    let mut w = std::io::BufWriter::new(
                        std::fs::File::create(&a.out)
                            .with_context(|| format!("creating {}", a.out.display()))?,
                    );
                    writeln!(w, "clean\tnoisy")?;
                    for (c, n) in variants.pairs(&queries) {
                        writeln!(
                            w,
                            "{}\t{}",
                            strata_data::io::escape_tsv(&c),
                            strata_data::io::escape_tsv(&n)
                        )?;
                    }
                    w.flush()?;
                }
                SpellingOutput::Additive | SpellingOutput::InPlace => {
                    let mode = if a.mode == SpellingOutput::Additive {
                        SpellingMode::Additive
                    } else {
                        SpellingMode::InPlace
                    };
                    let out = variants.apply_to_judgments(&queries, &judgments, mode);
                    write_judgments_as(&a.out, &out, Format::from_path(&a.out)?)?;
                    eprintln!("{} judgments -> {}", out.len(), a.out.display());
                }
            }
        }
        AugmentKind::Synthetic => {
            let catalog_path = a
                .catalog
                .as_ref()
                .context("--catalog is required for synthetic queries")?;
            let (catalog, r) = read_catalog(catalog_path, &opts)?;
            print_report(&r);
            let (judgments, r) = read_judgments(&a.judgments, &opts, Some(&catalog))?;
            print_report(&r);
            let cfg = SyntheticConfig {
                ratio: a.ratio,
                negatives_per_query: a.negatives,
                seed: a.seed,
                ..Default::default()
            };
            let queries = synth::generate(&catalog, &judgments, &cfg)?;
            eprintln!(
                "{} synthetic queries, {} pairs to label",
                queries.len(),
                queries.iter().map(|q| q.candidates.len()).sum::<usize>()
            );
            let built = strata_labeling::build_labeler(
                &a.labeler,
                "--labeler",
                &SYNTH_LABELERS,
                strata_labeling::LabelerInputs {
                    catalog: Some(&catalog),
                    lookup: Some(&judgments),
                    unknown_label: a.unknown_label,
                    oracle: Some(Oracle::new(OracleConfig {
                        noise: a.noise,
                        seed: a.seed,
                    })?),
                    ..Default::default()
                },
            )?;
            let inner = built.labeler;
            let (synthetic, stats) = match &a.label_cache {
                Some(path) => {
                    let cached = CachedLabeler::open(inner, path, &a.guideline)?;
                    let r = synth::label(&catalog, &queries, &cached, cfg.batch)?;
                    eprintln!(
                        "label cache {}: {} hits, {} misses",
                        path.display(),
                        cached.hits(),
                        cached.misses()
                    );
                    r
                }
                None => synth::label(&catalog, &queries, inner.as_ref(), cfg.batch)?,
            };
            eprintln!(
                "labeled {} pairs: {} x 2, {} x 1, {} x 0, {} abstained",
                stats.pairs,
                stats.per_label[2],
                stats.per_label[1],
                stats.per_label[0],
                stats.abstained
            );
            let mut out = judgments;
            out.extend(synthetic);
            write_judgments_as(&a.out, &out, Format::from_path(&a.out)?)?;
            eprintln!("{} judgments -> {}", out.len(), a.out.display());
        }
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct SynthArgs {
    /// Catalog size.
    #[arg(long, default_value_t = MarketplaceConfig::default().items)]
    pub items: usize,
    /// Number of queries.
    #[arg(long, default_value_t = MarketplaceConfig::default().queries)]
    pub queries: usize,
    /// Judged items per query.
    #[arg(long, default_value_t = MarketplaceConfig::default().judgments_per_query)]
    pub judgments_per_query: usize,
    /// Label noise (probability that a label differs from the policy).
    #[arg(long, default_value_t = MarketplaceConfig::default().label_noise)]
    pub noise: f64,
    #[arg(long, default_value_t = MarketplaceConfig::default().seed)]
    pub seed: u64,
    /// Query split fractions.
    #[arg(long, default_value_t = MarketplaceConfig::default().split.train)]
    pub train: f64,
    #[arg(long, default_value_t = MarketplaceConfig::default().split.dev)]
    pub dev: f64,
    #[arg(long, default_value_t = MarketplaceConfig::default().split.test)]
    pub test: f64,
    /// Add impressions, clicks and add-to-carts to every judgment.
    #[arg(long)]
    pub engagement: bool,
    /// Judge the dev and test queries completely: every relevant item found for them (up to 60
    /// per level), not a sample of one to three; training queries stay sparsely judged.
    #[arg(long)]
    pub complete_held_out: bool,
    /// Output format.
    #[arg(long, default_value = "tsv")]
    pub format: Format,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
}

fn synth_marketplace(a: SynthArgs) -> anyhow::Result<()> {
    let cfg = MarketplaceConfig {
        items: a.items,
        queries: a.queries,
        judgments_per_query: a.judgments_per_query,
        label_noise: a.noise,
        seed: a.seed,
        split: SplitConfig::new(a.train, a.dev, a.test, a.seed)?,
        engagement: a.engagement,
        complete_held_out: a.complete_held_out,
    };
    let bars = Bars::new();
    let t = std::time::Instant::now();
    let m = Marketplace::generate_with(&cfg, &bars)?;
    eprintln!(
        "generated {} items, {} queries, {} judgments in {:.1}s",
        m.catalog.len(),
        m.queries.len(),
        m.judgments.len(),
        t.elapsed().as_secs_f64()
    );
    for p in m.write(&a.out, a.format, &bars)? {
        outln!("{}", p.display());
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DatasetSource {
    /// Home Depot: DIR/products.tsv and DIR/judgments.tsv.
    Homedepot,
    /// WANDS: DIR/product.csv, DIR/query.csv, DIR/label.csv.
    Wands,
    /// Amazon ESCI: DIR/shopping_queries_dataset_{examples,products}.parquet.
    Esci,
}

#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// Input file, or a dataset directory with `--from`.
    #[arg(long)]
    pub input: PathBuf,
    /// Output file, or a directory (catalog + judgments) with `--from`.
    #[arg(long)]
    pub output: PathBuf,
    /// Read a public dataset layout from the `--input` directory.
    #[arg(long, value_enum)]
    pub from: Option<DatasetSource>,
    /// Output format (default: from the output extension; `tsv` for a directory).
    #[arg(long)]
    pub format: Option<Format>,
    /// ESCI: product locale to keep.
    #[arg(long, default_value = "us")]
    pub locale: String,
    /// ESCI: keep only the reduced (small_version) task.
    #[arg(long)]
    pub small_version: bool,
    #[command(flatten)]
    pub read: ReadArgs,
}

fn convert(a: ConvertArgs) -> anyhow::Result<()> {
    let opts = a.read.options()?;
    let Some(source) = a.from else {
        let format = match a.format {
            Some(f) => f,
            None => Format::from_path(&a.output)?,
        };
        match detect_kind(&a.input, None)? {
            RecordKind::Catalog => {
                let (catalog, r) = read_catalog(&a.input, &opts)?;
                print_report(&r);
                write_catalog_as(&a.output, catalog.items(), format)?;
                eprintln!("{} items -> {}", catalog.len(), a.output.display());
            }
            RecordKind::Judgments => {
                let (judgments, r) = read_judgments(&a.input, &opts, None)?;
                print_report(&r);
                write_judgments_as(&a.output, &judgments, format)?;
                eprintln!("{} judgments -> {}", judgments.len(), a.output.display());
            }
        }
        return Ok(());
    };
    let s = spinner(format!("reading {}", a.input.display()));
    let loaded = match source {
        DatasetSource::Homedepot => homedepot::load(
            &a.input,
            &homedepot::HomeDepotOptions {
                thresholds: None,
                read: opts,
            },
        ),
        DatasetSource::Wands => wands::load(&a.input, &opts),
        DatasetSource::Esci => esci::load(
            a.input.join("shopping_queries_dataset_examples.parquet"),
            a.input.join("shopping_queries_dataset_products.parquet"),
            &esci::EsciOptions {
                locale: a.locale.clone(),
                small_version_only: a.small_version,
                split: None,
                read: opts,
            },
        ),
    };
    s.finish_and_clear();
    let (data, reports) = loaded?;
    for r in &reports {
        print_report(r);
    }
    let format = a.format.unwrap_or(Format::Tsv);
    let catalog = a.output.join(format!("catalog.{}", format.extension()));
    let judgments = a.output.join(format!("judgments.{}", format.extension()));
    write_catalog_as(&catalog, data.catalog.items(), format)?;
    write_judgments_as(&judgments, &data.judgments, format)?;
    outln!("{}\n{}", catalog.display(), judgments.display());
    Ok(())
}
