//! Approximate search with an HNSW graph (usearch), inner-product metric.

use rayon::prelude::*;
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use super::{Hit, HnswParams, SearchError, VectorSearch, check_matrix};

/// An HNSW index over L2-normalised rows; scores are inner products.
pub struct HnswIndex {
    index: Index,
    dim: usize,
    n: usize,
    params: HnswParams,
}

fn ann_err(e: impl std::fmt::Display) -> SearchError {
    SearchError::Ann(e.to_string())
}

impl HnswIndex {
    /// Builds the graph over `data` (`n * dim` floats), inserting in parallel.
    pub fn build(data: &[f32], dim: usize, params: HnswParams) -> Result<Self, SearchError> {
        let n = check_matrix("items", data, dim)?;
        if n == 0 {
            return Err(SearchError::Empty);
        }
        let options = IndexOptions {
            dimensions: dim,
            metric: MetricKind::IP,
            quantization: ScalarKind::F32,
            connectivity: params.connectivity,
            expansion_add: params.expansion_add,
            expansion_search: params.expansion_search,
            multi: false,
        };
        let index = Index::new(&options).map_err(ann_err)?;
        index
            .reserve_capacity_and_threads(n, rayon::current_num_threads().max(1))
            .map_err(ann_err)?;
        data.par_chunks_exact(dim)
            .enumerate()
            .try_for_each(|(i, row)| index.add(i as u64, row).map_err(ann_err))?;
        Ok(HnswIndex {
            index,
            dim,
            n,
            params,
        })
    }

    /// The parameters the index was built with.
    pub fn params(&self) -> HnswParams {
        self.params
    }
}

impl VectorSearch for HnswIndex {
    fn dim(&self) -> usize {
        self.dim
    }

    fn len(&self) -> usize {
        self.n
    }

    fn search(&self, queries: &[f32], k: usize) -> Result<Vec<Vec<Hit>>, SearchError> {
        if !queries.len().is_multiple_of(self.dim) {
            return Err(SearchError::DimMismatch {
                got: queries.len(),
                expected: self.dim,
            });
        }
        check_matrix("queries", queries, self.dim)?;
        let k = k.min(self.n);
        if k == 0 {
            return Ok(vec![Vec::new(); queries.len() / self.dim]);
        }
        if self.index.expansion_search() < k {
            self.index.change_expansion_search(k);
        }
        queries
            .par_chunks_exact(self.dim)
            .map(|q| {
                let m = self.index.search(q, k).map_err(ann_err)?;
                let mut hits: Vec<Hit> = m
                    .keys
                    .iter()
                    .zip(&m.distances)
                    .map(|(&key, &d)| Hit {
                        item: key as u32,
                        score: 1.0 - d,
                    })
                    .collect();
                hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.item.cmp(&b.item)));
                Ok(hits)
            })
            .collect()
    }
}
