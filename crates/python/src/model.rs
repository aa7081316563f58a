//! `strata.Model`: a loaded embedding model and its numpy embeddings.

use std::path::PathBuf;
use std::sync::OnceLock;

use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray2};
use pyo3::prelude::*;
use strata_data::Side;
use strata_model::{BatchLimits, Embedder, LoadOptions, Precision};

use crate::{StrataError, to_py};

/// An embedding model: a strata model directory or a Hugging Face folder.
#[pyclass(module = "strata._strata", frozen)]
pub(crate) struct Model {
    pub(crate) embedder: Embedder,
    pub(crate) path: PathBuf,
    device: String,
    precision: Precision,
    /// The model's fingerprint, computed when first needed (an index checks it).
    fingerprint: OnceLock<String>,
}

impl Model {
    /// The fingerprint of the model's files (the one an index records).
    pub(crate) fn fingerprint(&self) -> anyhow::Result<&str> {
        if let Some(f) = self.fingerprint.get() {
            return Ok(f);
        }
        let f = strata_serving::model_fingerprint(&self.path)?;
        Ok(self.fingerprint.get_or_init(|| f))
    }

    pub(crate) fn embed(
        &self,
        py: Python<'_>,
        texts: Vec<String>,
        side: Side,
    ) -> PyResult<Py<PyArray2<f32>>> {
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
    /// Loads `path` on `device` (`cpu`; `cuda[:N]`, `vulkan[:N]`, `wgpu[:N]` in a build with that
    /// feature). `precision` is the CPU
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
            fingerprint: OnceLock::new(),
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
