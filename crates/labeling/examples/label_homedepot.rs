//! End-to-end LLM labeling on Home Depot pairs: samples judged pairs, labels them with an LLM
//! behind an OpenAI-compatible server (through a persistent cache), and reports agreement with
//! the human labels, tokens and requests.
//!
//! ```text
//! scripts/llm-server.sh start 8088
//! cargo run --release -p strata-labeling --example label_homedepot -- \
//!     --base-url http://127.0.0.1:8088/v1 --pairs 200 --out runs/llm-homedepot
//! ```

use std::path::PathBuf;

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use strata_data::hash::{combine, fnv1a64};
use strata_data::labeler::CachedLabeler;
use strata_data::{ItemTextConfig, Labeler};
use strata_labeling::llm::{Guideline, LlmConfig, LlmLabeler, OutputMode};

#[derive(Parser)]
struct Args {
    /// OpenAI-compatible API base URL.
    #[arg(long, default_value = "http://127.0.0.1:8088/v1")]
    base_url: String,
    #[arg(long, default_value = "smollm2-135m-instruct")]
    model: String,
    /// Folder with products.tsv and judgments.tsv.
    #[arg(long, default_value = "/work/shared/data/homedepot")]
    data: PathBuf,
    /// Pairs to label (a seeded sample of the judgments).
    #[arg(long, default_value_t = 200)]
    pairs: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output directory (labels.jsonl, report.json); the cache defaults to OUT/cache.jsonl.
    #[arg(long, default_value = "runs/llm-homedepot")]
    out: PathBuf,
    #[arg(long)]
    cache: Option<PathBuf>,
    #[arg(long, default_value = "json-schema")]
    output: OutputMode,
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    #[arg(long, default_value_t = 120.0)]
    timeout: f64,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let catalog = strata_data::load_catalog(a.data.join("products.tsv"))?;
    let judgments = strata_data::load_judgments(a.data.join("judgments.tsv"))?;
    let mut sample: Vec<(u64, usize)> = judgments
        .iter()
        .enumerate()
        .map(|(i, j)| {
            let h = combine(&[
                a.seed,
                fnv1a64(j.query.as_bytes()),
                fnv1a64(j.item_id.as_bytes()),
            ]);
            (h, i)
        })
        .collect();
    sample.sort_unstable();
    sample.truncate(a.pairs);
    let chosen: Vec<&strata_data::Judgment> = sample.iter().map(|&(_, i)| &judgments[i]).collect();
    let pairs: Vec<(String, String)> = chosen
        .iter()
        .map(|j| (j.query.clone(), j.item_id.clone()))
        .collect();

    std::fs::create_dir_all(&a.out)?;
    let cfg = LlmConfig {
        output: a.output,
        concurrency: a.concurrency,
        timeout_secs: a.timeout,
        ..LlmConfig::new(a.base_url.clone(), a.model.clone())
    };
    let guideline = Guideline::ecommerce();
    let llm =
        LlmLabeler::for_catalog(cfg, guideline.clone(), &catalog, &ItemTextConfig::default())?;
    let cache_path = a.cache.clone().unwrap_or_else(|| a.out.join("cache.jsonl"));
    let labeler = CachedLabeler::open(llm, &cache_path, &guideline.version)?.with_chunk_size(8);

    let bar = ProgressBar::new(pairs.len() as u64);
    if let Ok(s) =
        ProgressStyle::with_template("labeling [{bar:40}] {pos}/{len} {elapsed_precise} eta {eta}")
    {
        bar.set_style(s.progress_chars("=> "));
    }
    let mut labels = Vec::with_capacity(pairs.len());
    for chunk in pairs.chunks(8) {
        labels.extend(labeler.label(chunk)?);
        bar.inc(chunk.len() as u64);
    }
    bar.finish();

    let mut confusion = [[0usize; 3]; 3];
    let (mut exact, mut within1, mut labeled) = (0, 0, 0);
    let mut rows = String::new();
    for (j, l) in chosen.iter().zip(&labels) {
        if let Some(l) = *l {
            labeled += 1;
            confusion[usize::from(j.label)][usize::from(l)] += 1;
            exact += usize::from(l == j.label);
            within1 += usize::from(l.abs_diff(j.label) <= 1);
        }
        rows.push_str(&serde_json::to_string(&serde_json::json!({
            "query": j.query, "item_id": j.item_id, "human": j.label, "llm": l,
        }))?);
        rows.push('\n');
    }
    std::fs::write(a.out.join("labels.jsonl"), rows)?;
    let n = labeled.max(1) as f64;
    // Majority-class baseline: always answer the most common human label.
    let mut human = [0usize; 3];
    for j in &chosen {
        human[usize::from(j.label)] += 1;
    }
    let majority = *human.iter().max().unwrap_or(&0) as f64 / chosen.len().max(1) as f64;
    let llm_report = labeler.inner().report();
    let report = serde_json::json!({
        "pairs": pairs.len(),
        "labeled": labeled,
        "unlabeled": pairs.len() - labeled,
        "agreement_3class": exact as f64 / n,
        "agreement_within_1": within1 as f64 / n,
        "majority_class_agreement": majority,
        "human_label_counts": human,
        "confusion_human_rows_llm_cols": confusion,
        "cache": { "path": cache_path, "hits": labeler.hits(), "misses": labeler.misses() },
        "requests": llm_report.requests,
        "llm": llm_report,
    });
    std::fs::write(
        a.out.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    println!(
        "pairs {} labeled {labeled} | agreement 3-class {:.3} within-1 {:.3} (majority class {:.3})",
        pairs.len(),
        exact as f64 / n,
        within1 as f64 / n,
        majority
    );
    println!("confusion (rows human 0/1/2, cols llm 0/1/2): {confusion:?}");
    println!(
        "requests {} | tokens prompt {} completion {} total {} | cache hits {} misses {} | unlabeled: malformed {} failed {} | {:.1}s",
        llm_report.requests,
        llm_report.prompt_tokens,
        llm_report.completion_tokens,
        llm_report.total_tokens,
        labeler.hits(),
        labeler.misses(),
        llm_report.unlabeled_malformed,
        llm_report.unlabeled_failed,
        llm_report.elapsed_secs
    );
    Ok(())
}
