//! strata's Python extension module (`strata._strata`, re-exported by the `strata` package):
//! models and their embeddings as numpy arrays, the evaluation protocol, mining (with a Python
//! callable as the labeler), training and the item index, over the same library code the CLI
//! runs. Rust work runs with the GIL released; every error is raised as `strata.StrataError`
//! with strata's own message (file, line and field at fault).

mod index;
mod mining;
mod model;

use std::path::{Path, PathBuf};

use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray2, PyUntypedArrayMethods};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use strata_data::ItemTextConfig;
use strata_eval::from_data::{catalog, qrels};
use strata_eval::{EvalOptions, Fusion, System};

use model::Model;

// The allocator and its setting of the CLI (crates/cli/src/main.rs): freed pages stay mapped,
// since returning them to the OS and faulting them back in costs a large share of a CPU
// forward pass (tensors of the same sizes are reallocated every batch).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (mimalloc v2 option index).
const MI_OPTION_PURGE_DELAY: i32 = 15;

create_exception!(
    _strata,
    StrataError,
    PyException,
    "An error from strata's core; the message names the file, line or field at fault."
);

fn to_py(e: anyhow::Error) -> PyErr {
    StrataError::new_err(format!("{e:#}"))
}

/// Runs `work` with the GIL released and returns the JSON text it makes as Python objects.
fn detached_json<'py>(
    py: Python<'py>,
    work: impl FnOnce() -> anyhow::Result<String> + Send,
) -> PyResult<Bound<'py, PyAny>> {
    let text = py.detach(work).map_err(to_py)?;
    PyModule::import(py, "json")?.call_method1("loads", (text,))
}

fn parse_item_text(item_text: Option<&str>) -> PyResult<Option<ItemTextConfig>> {
    item_text
        .map(|t| t.parse().map_err(StrataError::new_err))
        .transpose()
}

/// Evaluates `model` (or BM25) on `judgments` over the whole `catalog` with the protocol of
/// `strata eval` and returns its metrics (the contents of `metrics.json`) as a dict; with
/// `out`, also writes the run directory (`metrics.json`, reports, plots, `thresholds.json`).
///
/// `system`: `dense` (default with a model), `bm25` (default without), or `hybrid` (convex
/// fusion of min-max normalised dense and BM25 scores with weight `alpha` on the dense one, over
/// the top `candidates` of each). `item_text`: as `strata eval --item-text` (default: the
/// model's).
#[pyfunction]
#[pyo3(signature = (catalog_path, judgments_path, model = None, *, system = None, item_text = None, alpha = 0.5, candidates = 1000, out = None))]
#[allow(clippy::too_many_arguments)]
fn evaluate<'py>(
    py: Python<'py>,
    catalog_path: PathBuf,
    judgments_path: PathBuf,
    model: Option<PyRef<'py, Model>>,
    system: Option<&str>,
    item_text: Option<&str>,
    alpha: f32,
    candidates: usize,
    out: Option<PathBuf>,
) -> PyResult<Bound<'py, PyAny>> {
    let item_text: Option<ItemTextConfig> = item_text
        .map(|t| t.parse().map_err(|e: String| StrataError::new_err(e)))
        .transpose()?;
    let system = system
        .unwrap_or(if model.is_some() { "dense" } else { "bm25" })
        .to_string();
    let model_ref: Option<&Model> = model.as_deref();
    detached_json(py, || {
        run_evaluation(
            &catalog_path,
            &judgments_path,
            model_ref,
            &system,
            item_text,
            alpha,
            candidates,
            out.as_deref(),
        )
    })
}

#[allow(clippy::too_many_arguments)]
fn run_evaluation(
    catalog_path: &Path,
    judgments_path: &Path,
    model: Option<&Model>,
    system: &str,
    item_text: Option<ItemTextConfig>,
    alpha: f32,
    candidates: usize,
    out: Option<&Path>,
) -> anyhow::Result<String> {
    let text = strata_model::item_text_for(model.map(|m| m.path.as_path()), item_text)?;
    let data_catalog = strata_data::load_catalog(catalog_path)?;
    let judgments = strata_data::load_judgments(judgments_path)?;
    let cat = catalog(&data_catalog, &text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", catalog_path.display()))?;
    let q = qrels(&judgments).map_err(|e| anyhow::anyhow!("{}: {e}", judgments_path.display()))?;
    let encoder = model.map(|m| &m.embedder as &dyn strata_data::TextEncoder);
    let system = match (system, encoder) {
        ("bm25", None) => System::Bm25,
        ("bm25", Some(_)) => anyhow::bail!("system bm25 takes no model"),
        ("dense", Some(e)) => System::Dense(e),
        ("hybrid", Some(e)) => System::Hybrid {
            encoder: e,
            fusion: Fusion::Convex { alpha },
            candidates,
        },
        ("dense" | "hybrid", None) => anyhow::bail!("system {system} needs a model"),
        (other, _) => anyhow::bail!("unknown system {other:?} (expected dense, bm25 or hybrid)"),
    };
    let opts = EvalOptions {
        catalog_source: Some(catalog_path.display().to_string()),
        judgments_source: Some(judgments_path.display().to_string()),
        ..EvalOptions::default()
    };
    let result = strata_eval::evaluate(&cat, &q, system, &opts)?;
    if let Some(dir) = out {
        strata_eval::write_run(dir, &result)?;
    }
    Ok(serde_json::to_string(&result.metrics)?)
}

/// The text of catalog items as the item tower reads them under `item_text` (a written item
/// text: `name`, `name+taxonomy`, `name+taxonomy:DEPTH`, `template:DEPTH:TEMPLATE`), read from
/// a catalog file, in its order: `(ids, texts)`.
#[pyfunction]
#[pyo3(signature = (catalog_path, item_text = "name+taxonomy"))]
fn item_texts(
    py: Python<'_>,
    catalog_path: PathBuf,
    item_text: &str,
) -> PyResult<(Vec<String>, Vec<String>)> {
    let text: ItemTextConfig = item_text.parse().map_err(StrataError::new_err)?;
    py.detach(|| -> anyhow::Result<(Vec<String>, Vec<String>)> {
        let c = strata_data::load_catalog(&catalog_path)?;
        Ok(c.iter().map(|i| (i.id.clone(), text.render(i))).unzip())
    })
    .map_err(to_py)
}

/// Exact top-`k` inner-product search of `queries` `(nq, dim)` over `items` `(ni, dim)` with
/// strata's exact search (the one mining and evaluation use; ties to the lower item):
/// `(indices, scores)`, both `(nq, min(k, ni))`, best first.
#[pyfunction]
fn exact_topk<'py>(
    py: Python<'py>,
    queries: numpy::PyReadonlyArray2<'py, f32>,
    items: numpy::PyReadonlyArray2<'py, f32>,
    k: usize,
) -> PyResult<TopK> {
    let (nq, dim) = (queries.shape()[0], queries.shape()[1]);
    anyhow_ensure(items.shape()[1] == dim, || {
        format!("queries have {dim} dimensions, items {}", items.shape()[1])
    })?;
    let q: Vec<f32> = queries.as_array().iter().copied().collect();
    let it: Vec<f32> = items.as_array().iter().copied().collect();
    let kk = k.min(items.shape()[0]);
    let hits = py
        .detach(|| -> anyhow::Result<Vec<Vec<strata_retrieval::Hit>>> {
            use strata_retrieval::VectorSearch;
            Ok(strata_retrieval::ExactIndex::new(it, dim)?.search(&q, kk)?)
        })
        .map_err(to_py)?;
    let mut idx = Array2::<i64>::zeros((nq, kk));
    let mut sc = Array2::<f32>::zeros((nq, kk));
    for (r, row) in hits.iter().enumerate() {
        for (c, h) in row.iter().enumerate() {
            idx[(r, c)] = i64::from(h.item);
            sc[(r, c)] = h.score;
        }
    }
    Ok((idx.into_pyarray(py).unbind(), sc.into_pyarray(py).unbind()))
}

/// Top-k lists: item indices and scores, both `(queries, k)`.
type TopK = (Py<PyArray2<i64>>, Py<PyArray2<f32>>);

fn anyhow_ensure(ok: bool, msg: impl FnOnce() -> String) -> PyResult<()> {
    if ok {
        Ok(())
    } else {
        Err(StrataError::new_err(msg()))
    }
}

/// Trains a retriever from a `strata train` configuration file (TOML; every key optional) and
/// returns the run's summary (`summary.json`) as a dict: `model_dir` is the trained model.
/// `resume` continues an interrupted run in the configuration's `out`.
#[pyfunction]
#[pyo3(signature = (config_path, *, resume = false, overwrite = false))]
fn train<'py>(
    py: Python<'py>,
    config_path: PathBuf,
    resume: bool,
    overwrite: bool,
) -> PyResult<Bound<'py, PyAny>> {
    detached_json(py, || {
        let cfg = strata_train::TrainConfig::from_toml_file(&config_path)?;
        let opts = strata_train::TrainOptions {
            resume,
            overwrite,
            ..Default::default()
        };
        let summary = strata_train::train_with(&cfg, &opts)?;
        Ok(serde_json::to_string(&summary)?)
    })
}

/// Sets the number of threads strata's CPU work uses in this process (default: one per core,
/// or `RAYON_NUM_THREADS`). Call it before the first model is loaded or used: the thread pool
/// is made once per process.
#[pyfunction]
fn set_threads(threads: usize) -> PyResult<()> {
    anyhow_ensure(threads > 0, || "threads must be at least 1".into())?;
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .map_err(|e| {
            StrataError::new_err(format!(
                "cannot set {threads} threads: {e} (call set_threads before any other strata call)"
            ))
        })
}

#[pymodule]
fn _strata(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // SAFETY: setting a mimalloc option is valid at any time.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    m.add("StrataError", m.py().get_type::<StrataError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<Model>()?;
    m.add_class::<index::Index>()?;
    m.add_class::<mining::Labeler>()?;
    m.add_function(wrap_pyfunction!(evaluate, m)?)?;
    m.add_function(wrap_pyfunction!(item_texts, m)?)?;
    m.add_function(wrap_pyfunction!(mining::mine, m)?)?;
    m.add_function(wrap_pyfunction!(mining::mining_corpus, m)?)?;
    m.add_function(wrap_pyfunction!(exact_topk, m)?)?;
    m.add_function(wrap_pyfunction!(mining::mine_from_hits, m)?)?;
    m.add_function(wrap_pyfunction!(mining::unjudged_pairs, m)?)?;
    m.add_function(wrap_pyfunction!(train, m)?)?;
    m.add_function(wrap_pyfunction!(set_threads, m)?)?;
    Ok(())
}
