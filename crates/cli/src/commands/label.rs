//! `strata label`: labels (query, item) pairs with a relevance labeler, through a persistent
//! cache so that no pair is paid for twice and an interrupted run resumes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use strata_data::labeler::CachedLabeler;
use strata_data::progress::Progress;
use strata_data::{Catalog, ItemTextConfig, Labeler, Source};
use strata_labeling::llm::{Guideline, LlmConfig, LlmLabeler, OutputMode};
use strata_labeling::{LabelerInputs, LlmSetup, pairs};

/// Which labeler labels the pairs (`llm`, `lookup` or `cross-encoder=DIR` here).
pub type LabelerKind = strata_data::LabelerSpec;

/// The labelers `strata label` and `strata audit` accept.
const LABEL_LABELERS: [&str; 3] = ["llm", "lookup", "cross-encoder"];

/// The labeler options shared by `strata label` and `strata audit`.
#[derive(Args, Debug, Clone)]
pub struct LabelerArgs {
    /// Labeler: `llm` (OpenAI-compatible chat completions), `lookup` (known judgments) or
    /// `cross-encoder=DIR` (a labeler trained by `strata labeler train`; needs `--catalog`).
    #[arg(long, default_value = "llm")]
    pub labeler: LabelerKind,
    /// Persistent label cache (JSONL, appended to); cached pairs are never asked again.
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Guideline version in the cache keys (default: a hash of the guideline text).
    #[arg(long)]
    pub guideline_version: Option<String>,
    /// API base URL including the version path (requests go to BASE/chat/completions).
    #[arg(
        long,
        env = "STRATA_LLM_BASE_URL",
        default_value = "http://127.0.0.1:8080/v1"
    )]
    pub base_url: String,
    /// Model name sent with each request.
    #[arg(long, env = "STRATA_LLM_MODEL", default_value = "default")]
    pub model: String,
    /// Environment variable holding the API key (none: no key is sent).
    #[arg(long)]
    pub api_key_env: Option<String>,
    /// Guideline file (the system prompt; default: the built-in e-commerce guideline).
    #[arg(long)]
    pub guideline: Option<PathBuf>,
    /// Answer format: json-schema (response_format) or digit.
    #[arg(long, default_value = "json-schema")]
    pub output: OutputMode,
    /// Concurrent requests.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Request timeout, seconds.
    #[arg(long, default_value_t = 60.0)]
    pub timeout: f64,
    /// Retries after 429, 5xx, timeouts and transport errors.
    #[arg(long, default_value_t = 5)]
    pub max_retries: u32,
    /// Retries after a malformed answer (then the pair is left unlabeled).
    #[arg(long, default_value_t = 2)]
    pub malformed_retries: u32,
    /// Budget: at most this many pairs sent to the LLM.
    #[arg(long)]
    pub max_pairs: Option<u64>,
    /// Budget: stop once this many tokens are used.
    #[arg(long)]
    pub max_tokens: Option<u64>,
    /// Price per 1,000 prompt tokens, for the report.
    #[arg(long, default_value_t = 0.0)]
    pub price_prompt: f64,
    /// Price per 1,000 completion tokens, for the report.
    #[arg(long, default_value_t = 0.0)]
    pub price_completion: f64,
    /// Judgments answered by `--labeler lookup`.
    #[arg(long)]
    pub lookup_judgments: Option<PathBuf>,
}

/// A labeler built from [`LabelerArgs`], with handles for its report.
pub struct BuiltLabeler {
    pub labeler: Box<dyn Labeler>,
    llm: Option<Arc<LlmLabeler>>,
    cache: Option<Arc<CachedLabeler<Box<dyn Labeler>>>>,
}

/// Builds the labeler; `texts` maps item ids to the text the LLM sees; the cross-encoder
/// renders item text from `catalog` with its own item-text settings.
pub fn build_labeler(
    a: &LabelerArgs,
    texts: HashMap<String, String>,
    catalog: Option<&Catalog>,
) -> anyhow::Result<BuiltLabeler> {
    if matches!(a.labeler, LabelerKind::CrossEncoder(_)) && catalog.is_none() {
        bail!("--labeler cross-encoder=DIR needs --catalog FILE");
    }
    let lookup = match (&a.labeler, &a.lookup_judgments) {
        (LabelerKind::Lookup, Some(path)) => Some(strata_data::load_judgments(path)?),
        (LabelerKind::Lookup, None) => bail!("--labeler lookup needs --lookup-judgments FILE"),
        _ => None,
    };
    let llm = match a.labeler {
        LabelerKind::Llm => Some(LlmSetup {
            config: LlmConfig {
                api_key_env: a.api_key_env.clone(),
                output: a.output,
                concurrency: a.concurrency,
                timeout_secs: a.timeout,
                max_retries: a.max_retries,
                malformed_retries: a.malformed_retries,
                max_pairs: a.max_pairs,
                max_tokens: a.max_tokens,
                price_prompt_per_1k: a.price_prompt,
                price_completion_per_1k: a.price_completion,
                ..LlmConfig::new(a.base_url.clone(), a.model.clone())
            },
            guideline: match &a.guideline {
                Some(p) => Guideline::read(p)?,
                None => Guideline::ecommerce(),
            },
            item_texts: texts,
        }),
        _ => None,
    };
    let built = strata_labeling::build_labeler(
        &a.labeler,
        "--labeler",
        &LABEL_LABELERS,
        LabelerInputs {
            catalog,
            lookup: lookup.as_deref(),
            llm,
            ..Default::default()
        },
    )?;
    let version = a.guideline_version.clone().unwrap_or(built.version);
    let (labeler, cache): (Box<dyn Labeler>, _) = match &a.cache {
        Some(path) => {
            let c = Arc::new(CachedLabeler::open(built.labeler, path, &version)?);
            (Box::new(c.clone()), Some(c))
        }
        None => (built.labeler, None),
    };
    Ok(BuiltLabeler {
        labeler,
        llm: built.llm,
        cache,
    })
}

impl BuiltLabeler {
    /// The run report: the labeler, cache hits and misses, and the LLM's counts.
    pub fn report(&self) -> serde_json::Value {
        let mut r = serde_json::json!({ "labeler": self.labeler.identity() });
        if let Some(c) = &self.cache {
            r["cache"] = serde_json::json!({
                "path": c.path(),
                "hits": c.hits(),
                "misses": c.misses(),
            });
        }
        if let Some(l) = &self.llm {
            r["llm"] = serde_json::to_value(l.report()).unwrap_or_default();
        }
        r
    }
}

/// Item texts of a catalog as the labelers see them.
pub fn catalog_texts(catalog: &Catalog) -> HashMap<String, String> {
    let text = ItemTextConfig::default();
    catalog
        .iter()
        .map(|i| (i.id.clone(), text.render(i)))
        .collect()
}

/// A progress bar for labeling.
#[derive(Default)]
pub struct Bar(Mutex<Option<ProgressBar>>);

impl Bar {
    pub fn new() -> Self {
        Bar::default()
    }
}

impl Progress for Bar {
    fn stage(&self, name: &str, total: u64) {
        let bar = ProgressBar::new(total);
        if let Ok(style) = ProgressStyle::with_template(
            "{msg:>10} [{bar:40}] {human_pos}/{human_len} {elapsed_precise} eta {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(name.to_string());
        if let Some(old) = self.0.lock().expect("progress lock").replace(bar) {
            old.finish();
        }
    }
    fn advance(&self, n: u64) {
        if let Some(b) = self.0.lock().expect("progress lock").as_ref() {
            b.inc(n);
        }
    }
    fn finish(&self) {
        if let Some(b) = self.0.lock().expect("progress lock").take() {
            b.finish();
        }
    }
}

#[derive(Args)]
pub struct LabelArgs {
    /// Pairs to label: JSONL or TSV with `query` and `item_id` (or `item_text`).
    #[arg(long)]
    pub pairs: PathBuf,
    /// Catalog with the items' text (for pairs given by item id).
    #[arg(long)]
    pub catalog: Option<PathBuf>,
    #[command(flatten)]
    pub labeler: LabelerArgs,
    /// Labeled pairs, as judgments (format from the extension); unlabeled pairs are left out.
    #[arg(long)]
    pub out: PathBuf,
    /// Run report (JSON; default: next to --out, `<stem>.report.json`).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Pairs per batch (the cache is written after each).
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
}

fn default_report(out: &Path) -> PathBuf {
    let stem = out.file_stem().and_then(|s| s.to_str()).unwrap_or("labels");
    out.with_file_name(format!("{stem}.report.json"))
}

pub fn run(a: LabelArgs) -> anyhow::Result<()> {
    let pairs = pairs::read_pairs(&a.pairs)?;
    let mut texts = pairs.texts.clone();
    let catalog = match &a.catalog {
        Some(c) => Some(strata_data::load_catalog(c)?),
        None => None,
    };
    if let Some(c) = &catalog {
        texts.extend(catalog_texts(c));
    }
    let built = build_labeler(&a.labeler, texts, catalog.as_ref())?;
    let labels = pairs::label_all(built.labeler.as_ref(), &pairs.pairs, a.batch, &Bar::new())?;
    let judgments = pairs::to_judgments(&pairs.pairs, &labels, Source::Labeler);
    strata_data::write_judgments(&a.out, &judgments)?;
    let mut report = built.report();
    report["pairs"] = pairs.pairs.len().into();
    report["labeled"] = judgments.len().into();
    report["unlabeled"] = (pairs.pairs.len() - judgments.len()).into();
    let report_path = a.report.clone().unwrap_or_else(|| default_report(&a.out));
    std::fs::write(&report_path, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", report_path.display()))?;
    outln!(
        "labeled {} of {} pairs -> {} (report {})",
        judgments.len(),
        pairs.pairs.len(),
        a.out.display(),
        report_path.display()
    );
    Ok(())
}
