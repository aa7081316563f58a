//! strata's Python extension module (`strata._strata`, re-exported by the `strata` package):
//! models and their embeddings as numpy arrays, and the evaluation protocol, over the same
//! library code the CLI runs. Rust work runs with the GIL released; every error is raised as
//! `strata.StrataError` with strata's own message (file, line and field at fault).

use std::path::{Path, PathBuf};

use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray2, PyUntypedArrayMethods};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use strata_data::{ItemTextConfig, Side};
use strata_eval::from_data::{catalog, qrels};
use strata_eval::{EvalOptions, Fusion, System};
use strata_model::{BatchLimits, Embedder, LoadOptions, Precision};

create_exception!(
    _strata,
    StrataError,
    PyException,
    "An error from strata's core; the message names the file, line or field at fault."
);

fn to_py(e: anyhow::Error) -> PyErr {
    StrataError::new_err(format!("{e:#}"))
}

/// An embedding model: a strata model directory or a Hugging Face folder.
#[pyclass(module = "strata._strata", frozen)]
struct Model {
    embedder: Embedder,
    path: PathBuf,
    device: String,
    precision: Precision,
}

impl Model {
    fn embed(&self, py: Python<'_>, texts: Vec<String>, side: Side) -> PyResult<Py<PyArray2<f32>>> {
        let dim = self.embedder.config().dim();
        let n = texts.len();
        let v = py
            .detach(|| {
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                self.embedder.embed(&refs, side)
            })
            .map_err(to_py)?;
        let array = Array2::from_shape_vec((n, dim), v)
            .map_err(|e| StrataError::new_err(format!("embedding shape: {e}")))?;
        // The vectors move into the array: no copy.
        Ok(array.into_pyarray(py).unbind())
    }
}

#[pymethods]
impl Model {
    /// Loads `path` on `device` (`cpu`; `cuda[:N]` in a CUDA build). `precision` is the CPU
    /// engine's arithmetic (`f32` or `int8`); `max_len` truncates a Hugging Face folder;
    /// `batch_size` and `max_tokens` bound each forward pass.
    #[new]
    #[pyo3(signature = (path, *, device = "cpu", precision = "f32", max_len = None, batch_size = 128, max_tokens = 4096))]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        device: &str,
        precision: &str,
        max_len: Option<usize>,
        batch_size: usize,
        max_tokens: usize,
    ) -> PyResult<Self> {
        let precision: Precision = precision.parse().map_err(to_py)?;
        let device = device.to_string();
        let embedder = py
            .detach(|| -> anyhow::Result<Embedder> {
                let d = strata_model::parse_device(&device)?;
                let opts = LoadOptions {
                    max_len,
                    precision: Some(precision),
                    ..Default::default()
                };
                Ok(Embedder::load_on(&path, &opts, &d)
                    .map_err(|e| e.context(format!("cannot load model {}", path.display())))?
                    .with_limits(BatchLimits {
                        max_batch: batch_size,
                        max_tokens,
                    }))
            })
            .map_err(to_py)?;
        Ok(Model {
            embedder,
            path,
            device,
            precision,
        })
    }

    /// Embeds queries with the query tower: a float32 array of shape `(len(texts), dim)`,
    /// rows L2-normalised.
    fn embed_queries(&self, py: Python<'_>, texts: Vec<String>) -> PyResult<Py<PyArray2<f32>>> {
        self.embed(py, texts, Side::Query)
    }

    /// Embeds item texts with the item tower (see `item_text` for rendering catalog items).
    fn embed_items(&self, py: Python<'_>, texts: Vec<String>) -> PyResult<Py<PyArray2<f32>>> {
        self.embed(py, texts, Side::Item)
    }

    /// The embedding dimension.
    #[getter]
    fn dim(&self) -> usize {
        self.embedder.config().dim()
    }

    /// The model directory.
    #[getter]
    fn path(&self) -> String {
        self.path.display().to_string()
    }

    /// The item text the model was trained with (recorded in a strata model directory), or
    /// the default `name+taxonomy`.
    #[getter]
    fn item_text(&self) -> PyResult<String> {
        Ok(strata_model::item_text_for(Some(&self.path), None)
            .map_err(to_py)?
            .to_string())
    }

    fn __repr__(&self) -> String {
        format!(
            "Model({:?}, device={:?}, precision={:?}, dim={})",
            self.path.display().to_string(),
            self.device,
            self.precision.to_string(),
            self.dim()
        )
    }
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
    let text = py
        .detach(|| {
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
        .map_err(to_py)?;
    PyModule::import(py, "json")?.call_method1("loads", (text,))
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

/// A Python callable as strata's relabeler: called with a list of `(query, item id, item
/// text)` tuples, it returns one label (0, 1, 2) or `None` per pair, in order.
struct PyLabeler {
    callable: Py<PyAny>,
    name: String,
    texts: std::collections::HashMap<String, String>,
}

impl strata_data::Labeler for PyLabeler {
    fn label(&self, pairs: &[(String, String)]) -> anyhow::Result<Vec<Option<u8>>> {
        Python::attach(|py| {
            let args: Vec<(&str, &str, &str)> = pairs
                .iter()
                .map(|(q, id)| {
                    let text = self.texts.get(id).map(String::as_str).unwrap_or("");
                    (q.as_str(), id.as_str(), text)
                })
                .collect();
            let answer = self
                .callable
                .call1(py, (args,))
                .map_err(|e| anyhow::anyhow!("labeler {}: {e}", self.name))?;
            let labels: Vec<Option<u8>> = answer.extract(py).map_err(|e| {
                anyhow::anyhow!(
                    "labeler {}: expected a list of labels (0, 1, 2 or None): {e}",
                    self.name
                )
            })?;
            anyhow::ensure!(
                labels.len() == pairs.len(),
                "labeler {} returned {} labels for {} pairs",
                self.name,
                labels.len(),
                pairs.len()
            );
            if let Some(bad) = labels
                .iter()
                .flatten()
                .find(|&&l| l > strata_data::MAX_LABEL)
            {
                anyhow::bail!(
                    "labeler {} returned label {bad} (labels are 0, 1, 2)",
                    self.name
                );
            }
            Ok(labels)
        })
    }

    fn identity(&self) -> String {
        format!("python:{}", self.name)
    }
}

/// The labeler argument of `mine` and `mine_from_hits`: a spec, or a Python callable.
enum LabelerArg {
    Spec(strata_data::LabelerSpec),
    Callable(Py<PyAny>, String),
}

impl LabelerArg {
    fn parse(labeler: Option<Bound<'_, PyAny>>) -> PyResult<Self> {
        Ok(match labeler {
            None => LabelerArg::Spec(strata_data::LabelerSpec::UnjudgedZero),
            Some(l) if l.is_callable() => {
                let name = l
                    .getattr("__name__")
                    .and_then(|n| n.extract::<String>())
                    .unwrap_or_else(|_| "callable".into());
                LabelerArg::Callable(l.unbind(), name)
            }
            Some(l) => LabelerArg::Spec(
                l.extract::<String>()?
                    .parse()
                    .map_err(StrataError::new_err)?,
            ),
        })
    }

    /// The labeler, its cache version and its policy sentence.
    fn build(
        self,
        catalog: &strata_data::Catalog,
        text: &ItemTextConfig,
        version: &str,
    ) -> anyhow::Result<(Box<dyn strata_data::Labeler>, String, String)> {
        Ok(match self {
            LabelerArg::Spec(spec) => {
                let built = strata_labeling::build_labeler(
                    &spec,
                    "labeler",
                    &["unjudged-zero", "judged-only", "cross-encoder"],
                    strata_labeling::LabelerInputs {
                        catalog: Some(catalog),
                        ..Default::default()
                    },
                )?;
                (built.labeler, built.version, built.policy)
            }
            LabelerArg::Callable(callable, name) => {
                let texts = catalog
                    .iter()
                    .map(|i| (i.id.clone(), text.render(i)))
                    .collect();
                let policy = format!("the Python labeler {name} labels unjudged mined pairs");
                (
                    Box::new(PyLabeler {
                        callable,
                        name,
                        texts,
                    }),
                    version.to_string(),
                    policy,
                )
            }
        })
    }
}

/// Where and how a mining run writes: `out`, its label cache, the mining settings.
struct MiningRun {
    catalog_path: PathBuf,
    judgments_path: PathBuf,
    out: PathBuf,
    cache: Option<PathBuf>,
    labeler_version: String,
    cfg: strata_mining::MineConfig,
}

impl MiningRun {
    /// Loads the data, builds the labeler through its cache, mines with `search` (the
    /// single-machine search, or top-k lists found elsewhere), writes `judgments.jsonl` and
    /// `mining_report.json`, and returns the report's JSON.
    fn run(
        &self,
        labeler: LabelerArg,
        text: &ItemTextConfig,
        search: impl FnOnce(
            &strata_data::Catalog,
            &[strata_data::Judgment],
            &dyn strata_data::Labeler,
        ) -> anyhow::Result<strata_mining::MineOutput>,
    ) -> anyhow::Result<String> {
        let catalog = strata_data::load_catalog(&self.catalog_path)?;
        let train = strata_data::load_judgments(&self.judgments_path)?;
        self.cfg.validate()?;
        let (inner, version, policy) = labeler.build(&catalog, text, &self.labeler_version)?;
        std::fs::create_dir_all(&self.out)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", self.out.display()))?;
        let cache = self
            .cache
            .clone()
            .unwrap_or_else(|| self.out.join("labels.jsonl"));
        let labeler = strata_data::labeler::CachedLabeler::open(inner, &cache, &version)?;
        let mined = search(&catalog, &train, &labeler)?;
        strata_data::write_judgments(self.out.join("judgments.jsonl"), &mined.judgments)?;
        let mut report = serde_json::to_value(&mined.report)?;
        report["labeler_policy"] = serde_json::Value::String(policy);
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(self.out.join("mining_report.json"), &json)?;
        Ok(json)
    }
}

fn mine_config(k: usize, whole_catalog: bool, search: &str) -> PyResult<strata_mining::MineConfig> {
    Ok(strata_mining::MineConfig {
        k,
        corpus: if whole_catalog {
            strata_mining::Corpus::Catalog
        } else {
            strata_mining::Corpus::TrainingItems
        },
        ann: search.parse().map_err(StrataError::new_err)?,
        ..strata_mining::MineConfig::default()
    })
}

fn parse_item_text(item_text: Option<&str>) -> PyResult<Option<ItemTextConfig>> {
    item_text
        .map(|t| t.parse().map_err(StrataError::new_err))
        .transpose()
}

/// Mines hard pairs for the training queries of `judgments_path` with `model` (ANN top-`k`
/// over the training items, or the whole catalog), labels the unjudged ones and merges them
/// with the originals, as `strata mine` does: writes `judgments.jsonl` and
/// `mining_report.json` into `out` and returns the report.
///
/// `labeler`: `"unjudged-zero"` (default), `"judged-only"`, `"cross-encoder=DIR"`, or a Python
/// callable taking a list of `(query, item id, item text)` tuples and returning one label
/// (0, 1, 2) or `None` per pair: an LLM client the user already has, for instance. Answers are
/// cached in `cache` (default `out/labels.jsonl`) under `labeler_version`.
#[pyfunction]
#[pyo3(signature = (model, catalog_path, judgments_path, out, *, labeler = None, k = 150, whole_catalog = false, search = "auto", item_text = None, cache = None, labeler_version = "v1"))]
#[allow(clippy::too_many_arguments)]
fn mine<'py>(
    py: Python<'py>,
    model: PyRef<'py, Model>,
    catalog_path: PathBuf,
    judgments_path: PathBuf,
    out: PathBuf,
    labeler: Option<Bound<'py, PyAny>>,
    k: usize,
    whole_catalog: bool,
    search: &str,
    item_text: Option<&str>,
    cache: Option<PathBuf>,
    labeler_version: &str,
) -> PyResult<Bound<'py, PyAny>> {
    let text = strata_model::item_text_for(Some(&model.path), parse_item_text(item_text)?)
        .map_err(to_py)?;
    let labeler = LabelerArg::parse(labeler)?;
    let run = MiningRun {
        catalog_path,
        judgments_path,
        out,
        cache,
        labeler_version: labeler_version.to_string(),
        cfg: mine_config(k, whole_catalog, search)?,
    };
    let embedder = &model.embedder;
    let report = py
        .detach(|| {
            run.run(labeler, &text, |catalog, train, labeler| {
                strata_mining::mine(embedder, catalog, &text, train, labeler, &run.cfg)
            })
        })
        .map_err(to_py)?;
    PyModule::import(py, "json")?.call_method1("loads", (report,))
}

/// The queries a mining run over `judgments_path` mines (in order) and the ids of the items
/// it searches (the training items, or the whole catalog): what a sharded search needs.
#[pyfunction]
#[pyo3(signature = (catalog_path, judgments_path, *, whole_catalog = false))]
fn mining_corpus(
    py: Python<'_>,
    catalog_path: PathBuf,
    judgments_path: PathBuf,
    whole_catalog: bool,
) -> PyResult<(Vec<String>, Vec<String>)> {
    let cfg = mine_config(2, whole_catalog, "exact")?;
    py.detach(|| -> anyhow::Result<(Vec<String>, Vec<String>)> {
        let catalog = strata_data::load_catalog(&catalog_path)?;
        let train = strata_data::load_judgments(&judgments_path)?;
        let c = strata_mining::mining_corpus(&catalog, &train, &cfg)?;
        Ok((
            c.queries.iter().map(|q| q.to_string()).collect(),
            c.corpus
                .iter()
                .map(|&i| catalog.items()[i].id.clone())
                .collect(),
        ))
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

/// Labels and selects mined pairs from top-k lists found elsewhere (a sharded search, see
/// `strata.ray.mine`): `indices[q]` are positions in `mining_corpus(...)[1]`, best first, for
/// the `q`-th query of `mining_corpus(...)[0]`, with their `scores`. Writes and returns what
/// `mine` does.
#[pyfunction]
#[pyo3(signature = (catalog_path, judgments_path, out, indices, scores, *, labeler = None, k = 150, whole_catalog = false, item_text = "name+taxonomy", cache = None, labeler_version = "v1"))]
#[allow(clippy::too_many_arguments)]
fn mine_from_hits<'py>(
    py: Python<'py>,
    catalog_path: PathBuf,
    judgments_path: PathBuf,
    out: PathBuf,
    indices: numpy::PyReadonlyArray2<'py, i64>,
    scores: numpy::PyReadonlyArray2<'py, f32>,
    labeler: Option<Bound<'py, PyAny>>,
    k: usize,
    whole_catalog: bool,
    item_text: &str,
    cache: Option<PathBuf>,
    labeler_version: &str,
) -> PyResult<Bound<'py, PyAny>> {
    anyhow_ensure(indices.shape() == scores.shape(), || {
        format!(
            "indices {:?} and scores {:?} differ in shape",
            indices.shape(),
            scores.shape()
        )
    })?;
    let text: ItemTextConfig = item_text.parse().map_err(StrataError::new_err)?;
    let mut hits = Vec::with_capacity(indices.shape()[0]);
    for (row_i, row_s) in indices
        .as_array()
        .rows()
        .into_iter()
        .zip(scores.as_array().rows())
    {
        let mut row = Vec::with_capacity(row_i.len());
        for (&i, &s) in row_i.iter().zip(row_s.iter()) {
            let item = u32::try_from(i).map_err(|_| {
                StrataError::new_err(format!("hit index {i} is not a corpus position"))
            })?;
            row.push(strata_retrieval::Hit { item, score: s });
        }
        hits.push(row);
    }
    let labeler = LabelerArg::parse(labeler)?;
    let run = MiningRun {
        catalog_path,
        judgments_path,
        out,
        cache,
        labeler_version: labeler_version.to_string(),
        cfg: mine_config(k, whole_catalog, "exact")?,
    };
    let report = py
        .detach(|| {
            run.run(labeler, &text, |catalog, train, labeler| {
                let info = strata_mining::SearchInfo {
                    search: "external".into(),
                    ..Default::default()
                };
                strata_mining::mine_from_hits(catalog, train, labeler, &run.cfg, &hits, info)
            })
        })
        .map_err(to_py)?;
    PyModule::import(py, "json")?.call_method1("loads", (report,))
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
    let summary = py
        .detach(|| -> anyhow::Result<String> {
            let cfg = strata_train::TrainConfig::from_toml_file(&config_path)?;
            let opts = strata_train::TrainOptions {
                resume,
                overwrite,
                ..Default::default()
            };
            let summary = strata_train::train_with(&cfg, &opts)?;
            Ok(serde_json::to_string(&summary)?)
        })
        .map_err(to_py)?;
    PyModule::import(py, "json")?.call_method1("loads", (summary,))
}

#[pymodule]
fn _strata(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("StrataError", m.py().get_type::<StrataError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<Model>()?;
    m.add_function(wrap_pyfunction!(evaluate, m)?)?;
    m.add_function(wrap_pyfunction!(item_texts, m)?)?;
    m.add_function(wrap_pyfunction!(mine, m)?)?;
    m.add_function(wrap_pyfunction!(mining_corpus, m)?)?;
    m.add_function(wrap_pyfunction!(exact_topk, m)?)?;
    m.add_function(wrap_pyfunction!(mine_from_hits, m)?)?;
    m.add_function(wrap_pyfunction!(train, m)?)?;
    Ok(())
}
