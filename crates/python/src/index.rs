//! `strata.Index`: the on-disk item index of `strata index` / `strata serve` (embeddings, HNSW
//! graph, BM25), built and searched from Python.

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::PyDict;
use strata_data::Side;
use strata_serving::backend::{IndexBackend, SearchQuery};
use strata_serving::index::{BuildOptions, ItemIndex};

use crate::model::Model;
use crate::{StrataError, detached_json, parse_item_text, to_py};

/// An item index directory: semantic (HNSW or exact), lexical (BM25) and hybrid search over
/// the items of a catalog, the same files `strata serve --index` serves.
#[pyclass(module = "strata._strata", frozen)]
pub(crate) struct Index {
    backend: IndexBackend,
}

#[pymethods]
impl Index {
    /// Builds an index of the catalog file `catalog_path` in `path` (which must not hold one
    /// yet) with `model`, as `strata index build` does. `item_text` defaults to the model's;
    /// the HNSW settings to strata's (16, 128, 128).
    #[staticmethod]
    #[pyo3(signature = (path, catalog_path, model, *, item_text = None, hnsw_m = None, hnsw_ef_construction = None, hnsw_ef_search = None))]
    #[allow(clippy::too_many_arguments)]
    fn build(
        py: Python<'_>,
        path: PathBuf,
        catalog_path: PathBuf,
        model: PyRef<'_, Model>,
        item_text: Option<&str>,
        hnsw_m: Option<usize>,
        hnsw_ef_construction: Option<usize>,
        hnsw_ef_search: Option<usize>,
    ) -> PyResult<Self> {
        let text = strata_model::item_text_for(Some(&model.path), parse_item_text(item_text)?)
            .map_err(to_py)?;
        let model: &Model = &model;
        py.detach(|| -> anyhow::Result<Self> {
            let catalog = strata_data::load_catalog(&catalog_path)?;
            let default = strata_retrieval::HnswParams::default();
            let opts = BuildOptions {
                item_text: text,
                hnsw: strata_retrieval::HnswParams {
                    connectivity: hnsw_m.unwrap_or(default.connectivity),
                    expansion_add: hnsw_ef_construction.unwrap_or(default.expansion_add),
                    expansion_search: hnsw_ef_search.unwrap_or(default.expansion_search),
                },
                ..Default::default()
            };
            let stamp = strata_serving::ModelStamp {
                path: model.path.display().to_string(),
                fingerprint: model.fingerprint()?.to_string(),
                precision: model.embedder.precision().unwrap_or_default(),
            };
            let index = ItemIndex::build(&path, catalog.items(), &model.embedder, stamp, &opts)
                .map_err(|e| e.context(format!("building the index in {}", path.display())))?;
            Ok(Index {
                backend: IndexBackend::new(index),
            })
        })
        .map_err(to_py)
    }

    /// Opens the index in `path`. `candidates`: hybrid candidates taken from each retriever.
    #[staticmethod]
    #[pyo3(signature = (path, *, candidates = 1000))]
    fn open(py: Python<'_>, path: PathBuf, candidates: usize) -> PyResult<Self> {
        let index = py.detach(|| ItemIndex::open(&path)).map_err(to_py)?;
        let mut backend = IndexBackend::new(index);
        backend.candidates = candidates;
        Ok(Index { backend })
    }

    /// The `k` best items for each of `queries`, best first: per query a list of dicts with
    /// `id`, `text`, `score` (what the results are ranked by), `semantic` (cosine) and
    /// `lexical` (BM25), as `/search` answers. `mode`: `semantic` (the HNSW graph, or exact
    /// search with `exact=True`), `lexical` (BM25) or `hybrid` (convex fusion with weight
    /// `alpha` on the semantic score). Semantic and hybrid search embed the queries with
    /// `model`, which must be the model the index was built with.
    #[pyo3(signature = (queries, k = 10, *, model = None, mode = "semantic", alpha = 0.5, exact = false))]
    #[allow(clippy::too_many_arguments)]
    fn search<'py>(
        &self,
        py: Python<'py>,
        queries: Vec<String>,
        k: usize,
        model: Option<PyRef<'py, Model>>,
        mode: &str,
        alpha: f32,
        exact: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let mode: strata_retrieval::SearchMode = mode.parse().map_err(StrataError::new_err)?;
        let fusion = strata_retrieval::Fusion::Convex { alpha };
        fusion.validate().map_err(StrataError::new_err)?;
        let model: Option<&Model> = model.as_deref();
        let backend = &self.backend;
        detached_json(py, || {
            let dim = backend.index().dim();
            let vectors = match (mode, model) {
                (strata_retrieval::SearchMode::Lexical, _) => vec![0.0; queries.len() * dim],
                (_, None) => anyhow::bail!("{mode:?} search embeds the queries: pass model="),
                (_, Some(m)) => {
                    let fp = m.fingerprint()?;
                    let built = &backend.index().manifest().model.fingerprint;
                    anyhow::ensure!(
                        fp == built,
                        "model/index mismatch: the items in {} were embedded with a model of fingerprint {}, not with {} (fingerprint {})",
                        backend.index().dir().display(),
                        &built[..built.len().min(12)],
                        m.path.display(),
                        &fp[..fp.len().min(12)]
                    );
                    let refs: Vec<&str> = queries.iter().map(String::as_str).collect();
                    m.embedder.embed(&refs, Side::Query)?
                }
            };
            let mut results = Vec::with_capacity(queries.len());
            for (q, v) in queries.iter().zip(vectors.chunks(dim.max(1))) {
                let query = SearchQuery {
                    text: q,
                    embedding: v,
                    k,
                    mode,
                    fusion,
                };
                results.push(backend.search_with(&query, exact)?);
            }
            Ok(serde_json::to_string(&results)?)
        })
    }

    /// Live items in the index.
    fn __len__(&self) -> usize {
        self.backend.index().len()
    }

    /// The embedding dimension.
    #[getter]
    fn dim(&self) -> usize {
        self.backend.index().dim()
    }

    /// The index manifest (model, item text, HNSW settings, counts) as a dict.
    #[getter]
    fn manifest<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let text = serde_json::to_string(self.backend.index().manifest())
            .map_err(|e| StrataError::new_err(e.to_string()))?;
        Ok(PyModule::import(py, "json")?
            .call_method1("loads", (text,))?
            .cast_into()?)
    }

    fn __repr__(&self) -> String {
        format!(
            "Index({:?}, items={}, dim={})",
            self.backend.index().dir().display().to_string(),
            self.backend.index().len(),
            self.backend.index().dim()
        )
    }
}
