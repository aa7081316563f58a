//! Mining from Python: `mine` (single machine), the pieces of a sharded mining run
//! (`mining_corpus`, `unjudged_pairs`, `mine_from_hits`), and `Labeler`, strata's cached
//! relabeler for workers that label pairs ahead of a mining run.

use std::path::PathBuf;

use pyo3::prelude::*;
use strata_data::ItemTextConfig;
use strata_data::labeler::CachedLabeler;

use crate::model::Model;
use crate::{StrataError, anyhow_ensure, detached_json, parse_item_text, to_py};

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

    /// The labeler, its cache version and its policy sentence. `min_confidence` applies to
    /// labelers with probabilities (a cross-encoder); a Python callable's labels are certain.
    fn build(
        self,
        catalog: &strata_data::Catalog,
        text: &ItemTextConfig,
        version: &str,
        min_confidence: Option<f32>,
    ) -> anyhow::Result<(Box<dyn strata_data::Labeler>, String, String)> {
        Ok(match self {
            LabelerArg::Spec(spec) => {
                let built = strata_labeling::build_labeler(
                    &spec,
                    "labeler",
                    &["unjudged-zero", "judged-only", "cross-encoder"],
                    strata_labeling::LabelerInputs {
                        catalog: Some(catalog),
                        min_confidence,
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
    /// Loads the data, builds the labeler through its cache (`cache`: a file, or a directory
    /// shared with other workers; default `out/labels.jsonl`), mines with `search` (the
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
        // self.cfg was validated when it was built (mine_config).
        let (inner, version, policy) = labeler.build(
            &catalog,
            text,
            &self.labeler_version,
            self.cfg.min_confidence,
        )?;
        std::fs::create_dir_all(&self.out)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", self.out.display()))?;
        let cache = self
            .cache
            .clone()
            .unwrap_or_else(|| self.out.join("labels.jsonl"));
        let labeler = CachedLabeler::open(inner, &cache, &version)?;
        let mined = search(&catalog, &train, &labeler)?;
        strata_data::write_judgments(self.out.join("judgments.jsonl"), &mined.judgments)?;
        let mut report = serde_json::to_value(&mined.report)?;
        report["labeler_policy"] = serde_json::Value::String(policy);
        let json = serde_json::to_string_pretty(&report)?;
        strata_train::checkpoint::write_atomic(
            &self.out.join("mining_report.json"),
            json.as_bytes(),
        )?;
        Ok(json)
    }
}

fn mine_config(
    k: usize,
    whole_catalog: bool,
    search: &str,
    min_confidence: Option<f32>,
) -> PyResult<strata_mining::MineConfig> {
    let cfg = strata_mining::MineConfig {
        k,
        corpus: if whole_catalog {
            strata_mining::Corpus::Catalog
        } else {
            strata_mining::Corpus::TrainingItems
        },
        ann: search.parse().map_err(StrataError::new_err)?,
        min_confidence,
        ..strata_mining::MineConfig::default()
    };
    cfg.validate().map_err(to_py)?;
    Ok(cfg)
}

/// Top-k lists from numpy: `indices[q]` corpus positions with their `scores`.
fn hits_from_arrays(
    indices: &numpy::PyReadonlyArray2<'_, i64>,
    scores: &numpy::PyReadonlyArray2<'_, f32>,
) -> PyResult<Vec<Vec<strata_retrieval::Hit>>> {
    use numpy::PyUntypedArrayMethods;
    anyhow_ensure(indices.shape() == scores.shape(), || {
        format!(
            "indices {:?} and scores {:?} differ in shape",
            indices.shape(),
            scores.shape()
        )
    })?;
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
    Ok(hits)
}

/// Mines hard pairs for the training queries of `judgments_path` with `model` (ANN top-`k`
/// over the training items, or the whole catalog), labels the unjudged ones and merges them
/// with the originals, as `strata mine` does: writes `judgments.jsonl` and
/// `mining_report.json` into `out` and returns the report.
///
/// `labeler`: `"unjudged-zero"` (default), `"judged-only"`, `"cross-encoder=DIR"`, or a Python
/// callable taking a list of `(query, item id, item text)` tuples and returning one label
/// (0, 1, 2) or `None` per pair: an LLM client the user already has, for instance. Answers are
/// cached in `cache` (default `out/labels.jsonl`; a directory is a cache shared with other
/// workers, see `Labeler`) under `labeler_version`.
#[pyfunction]
#[pyo3(signature = (model, catalog_path, judgments_path, out, *, labeler = None, k = 150, whole_catalog = false, search = "auto", item_text = None, cache = None, labeler_version = "v1", min_confidence = None))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn mine<'py>(
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
    min_confidence: Option<f32>,
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
        cfg: mine_config(k, whole_catalog, search, min_confidence)?,
    };
    let embedder = &model.embedder;
    detached_json(py, || {
        run.run(labeler, &text, |catalog, train, labeler| {
            strata_mining::mine(embedder, catalog, &text, train, labeler, &run.cfg)
        })
    })
}

/// The queries a mining run over `judgments_path` mines (in order) and the ids of the items
/// it searches (the training items, or the whole catalog): what a sharded search needs.
#[pyfunction]
#[pyo3(signature = (catalog_path, judgments_path, *, whole_catalog = false))]
pub(crate) fn mining_corpus(
    py: Python<'_>,
    catalog_path: PathBuf,
    judgments_path: PathBuf,
    whole_catalog: bool,
) -> PyResult<(Vec<String>, Vec<String>)> {
    let cfg = mine_config(2, whole_catalog, "exact", None)?;
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

/// Labels and selects mined pairs from top-k lists found elsewhere (a sharded search, see
/// `strata.ray.mine`): `indices[q]` are positions in `mining_corpus(...)[1]`, best first, for
/// the `q`-th query of `mining_corpus(...)[0]`, with their `scores`. Writes and returns what
/// `mine` does.
#[pyfunction]
#[pyo3(signature = (catalog_path, judgments_path, out, indices, scores, *, labeler = None, k = 150, whole_catalog = false, item_text = "name+taxonomy", cache = None, labeler_version = "v1", min_confidence = None))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn mine_from_hits<'py>(
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
    min_confidence: Option<f32>,
) -> PyResult<Bound<'py, PyAny>> {
    let hits = hits_from_arrays(&indices, &scores)?;
    let text: ItemTextConfig = item_text.parse().map_err(StrataError::new_err)?;
    let labeler = LabelerArg::parse(labeler)?;
    let run = MiningRun {
        catalog_path,
        judgments_path,
        out,
        cache,
        labeler_version: labeler_version.to_string(),
        cfg: mine_config(k, whole_catalog, "exact", min_confidence)?,
    };
    detached_json(py, || {
        run.run(labeler, &text, |catalog, train, labeler| {
            let info = strata_mining::SearchInfo {
                search: "external".into(),
                ..Default::default()
            };
            strata_mining::mine_from_hits(catalog, train, labeler, &run.cfg, &hits, info)
        })
    })
}

/// The pairs `mine_from_hits` with these top-k lists would ask its labeler about (retrieved,
/// without a judgment), in its order: `(queries, item_ids)`. Label them on workers first
/// (`Labeler` with a shared cache directory) and the mining run finds them all in the cache.
#[pyfunction]
#[pyo3(signature = (catalog_path, judgments_path, indices, scores, *, k = 150, whole_catalog = false))]
pub(crate) fn unjudged_pairs<'py>(
    py: Python<'py>,
    catalog_path: PathBuf,
    judgments_path: PathBuf,
    indices: numpy::PyReadonlyArray2<'py, i64>,
    scores: numpy::PyReadonlyArray2<'py, f32>,
    k: usize,
    whole_catalog: bool,
) -> PyResult<(Vec<String>, Vec<String>)> {
    let hits = hits_from_arrays(&indices, &scores)?;
    let cfg = mine_config(k, whole_catalog, "exact", None)?;
    py.detach(|| -> anyhow::Result<(Vec<String>, Vec<String>)> {
        let catalog = strata_data::load_catalog(&catalog_path)?;
        let train = strata_data::load_judgments(&judgments_path)?;
        Ok(
            strata_mining::unjudged_pairs(&catalog, &train, &cfg, &hits)?
                .into_iter()
                .unzip(),
        )
    })
    .map_err(to_py)
}

/// strata's relabeler as a Python object: a labeler spec or a Python callable (as `mine` takes
/// them) behind strata's label cache. `cache` is a JSONL file, or a directory shared by many
/// workers (each appends to its own `<writer>.jsonl` in it and reads everyone's): workers of a
/// Ray or Spark job label disjoint slices of the pairs, and a later `mine` / `mine_from_hits`
/// with the same directory finds every label there. `writer` names this worker's file (default
/// `<host>-<pid>`). `min_confidence` is `mine`'s: pairs a cross-encoder labels with a lower
/// probability stay unlabeled (`None`), and the threshold is part of the cache version, so a
/// `mine` with the same threshold and cache finds these answers.
#[pyclass(module = "strata._strata", frozen)]
pub(crate) struct Labeler {
    inner: CachedLabeler<Box<dyn strata_data::Labeler>>,
    policy: String,
}

#[pymethods]
impl Labeler {
    #[new]
    #[pyo3(signature = (labeler, catalog_path, cache, *, item_text = "name+taxonomy", labeler_version = "v1", writer = None, min_confidence = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        labeler: Bound<'_, PyAny>,
        catalog_path: PathBuf,
        cache: PathBuf,
        item_text: &str,
        labeler_version: &str,
        writer: Option<&str>,
        min_confidence: Option<f32>,
    ) -> PyResult<Self> {
        let text: ItemTextConfig = item_text.parse().map_err(StrataError::new_err)?;
        let arg = LabelerArg::parse(Some(labeler))?;
        let version = labeler_version.to_string();
        py.detach(|| -> anyhow::Result<Self> {
            let catalog = strata_data::load_catalog(&catalog_path)?;
            let (inner, version, policy) = arg.build(&catalog, &text, &version, min_confidence)?;
            let inner = match writer {
                Some(w) => CachedLabeler::open_shared(inner, &cache, w, &version)?,
                None => CachedLabeler::open(inner, &cache, &version)?,
            };
            Ok(Labeler { inner, policy })
        })
        .map_err(to_py)
    }

    /// One label (0, 1, 2) or `None` per `(query, item id)` pair, from the cache where known.
    fn label(&self, py: Python<'_>, pairs: Vec<(String, String)>) -> PyResult<Vec<Option<u8>>> {
        use strata_data::Labeler as _;
        py.detach(|| self.inner.label(&pairs)).map_err(to_py)
    }

    /// Pairs answered from the cache so far.
    #[getter]
    fn hits(&self) -> u64 {
        self.inner.hits()
    }

    /// Pairs sent to the labeler so far.
    #[getter]
    fn misses(&self) -> u64 {
        self.inner.misses()
    }

    /// The cache file this labeler appends to.
    #[getter]
    fn cache_file(&self) -> String {
        self.inner.path().display().to_string()
    }

    /// The labeling policy, in one sentence.
    #[getter]
    fn policy(&self) -> &str {
        &self.policy
    }
}
