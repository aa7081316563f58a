//! Approximate search with an HNSW graph (usearch), inner-product metric.

use std::path::Path;

use rayon::prelude::*;
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use super::{Hit, HnswParams, SearchError, VectorSearch, check_matrix, check_queries};

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

fn path_str(path: &Path) -> Result<String, SearchError> {
    path.to_str()
        .map(str::to_string)
        .ok_or_else(|| SearchError::Ann(format!("{}: not a UTF-8 path", path.display())))
}

/// Graphs with fewer rows are built sequentially (reproducibly).
const SEQUENTIAL_BUILD_BELOW: usize = 4096;

fn options(dim: usize, params: HnswParams) -> IndexOptions {
    IndexOptions {
        dimensions: dim,
        metric: MetricKind::IP,
        quantization: ScalarKind::F32,
        connectivity: params.connectivity,
        expansion_add: params.expansion_add,
        expansion_search: params.expansion_search,
        multi: false,
    }
}

impl HnswIndex {
    /// Builds the graph over `data` (`n * dim` floats), inserting in parallel; row `i` gets
    /// key (item position) `i`.
    pub fn build(data: &[f32], dim: usize, params: HnswParams) -> Result<Self, SearchError> {
        let n = check_matrix("items", data, dim)?;
        if n == 0 {
            return Err(SearchError::Empty);
        }
        Self::build_keyed(data, dim, params, |i| i as u32)
    }

    /// Builds the graph over the rows of `data`, row `i` under key `key(i)`.
    pub fn build_keyed(
        data: &[f32],
        dim: usize,
        params: HnswParams,
        key: impl Fn(usize) -> u32 + Sync,
    ) -> Result<Self, SearchError> {
        let n = check_matrix("items", data, dim)?;
        let index = Index::new(&options(dim, params)).map_err(ann_err)?;
        index
            .reserve_capacity_and_threads(n.max(1), rayon::current_num_threads().max(1))
            .map_err(ann_err)?;
        // Small graphs are built in order, so that they are reproducible (parallel insertion
        // makes the graph depend on thread timing); large ones in parallel.
        if n < SEQUENTIAL_BUILD_BELOW {
            for (i, row) in data.chunks_exact(dim).enumerate() {
                index.add(key(i) as u64, row).map_err(ann_err)?;
            }
        } else {
            data.par_chunks_exact(dim)
                .enumerate()
                .try_for_each(|(i, row)| index.add(key(i) as u64, row).map_err(ann_err))?;
        }
        Ok(HnswIndex {
            index,
            dim,
            n,
            params,
        })
    }

    /// Writes the graph to `path`.
    pub fn save(&self, path: &Path) -> Result<(), SearchError> {
        self.index.save(&path_str(path)?).map_err(ann_err)
    }

    /// Opens a graph written by [`HnswIndex::save`]: memory-mapped and read-only (`view`), or
    /// loaded into memory so that it can be changed (`load`).
    pub fn open(
        path: &Path,
        dim: usize,
        params: HnswParams,
        read_only: bool,
    ) -> Result<Self, SearchError> {
        let index = Index::new(&options(dim, params)).map_err(ann_err)?;
        let p = path_str(path)?;
        if read_only {
            index.view(&p)
        } else {
            index.load(&p)
        }
        .map_err(|e| SearchError::Ann(format!("{}: {e}", path.display())))?;
        if index.dimensions() != dim {
            return Err(SearchError::DimMismatch {
                got: index.dimensions(),
                expected: dim,
            });
        }
        index.change_expansion_search(params.expansion_search);
        let n = index.size();
        Ok(HnswIndex {
            index,
            dim,
            n,
            params,
        })
    }

    /// Adds rows under the given keys (the index must have been loaded, not viewed).
    pub fn add(&mut self, keys: &[u32], data: &[f32]) -> Result<(), SearchError> {
        let n = check_matrix("items", data, self.dim)?;
        if n != keys.len() {
            return Err(SearchError::Ann(format!(
                "{} keys for {n} rows",
                keys.len()
            )));
        }
        self.index
            .reserve(self.index.capacity().max(self.index.size()) + n)
            .map_err(ann_err)?;
        for (k, row) in keys.iter().zip(data.chunks_exact(self.dim)) {
            self.index.add(*k as u64, row).map_err(ann_err)?;
        }
        self.n = self.index.size();
        Ok(())
    }

    /// Removes the row under `key`; returns whether it was there.
    pub fn remove(&mut self, key: u32) -> Result<bool, SearchError> {
        let removed = self.index.remove(key as u64).map_err(ann_err)? > 0;
        self.n = self.index.size();
        Ok(removed)
    }

    /// The keys among `keys` (row `i` of `data` under `keys[i]`) that a search for their own
    /// vector does not find among its `probe` nearest results (candidate list
    /// max(`probe`, [`UNREACHABLE_BEAM`])): nodes the graph cannot reach, as happens when many rows are
    /// duplicates and the neighbour pruning drops every link into one of them. Such items
    /// must be scored some other way (exactly) or they can never be retrieved.
    pub fn unreachable(
        &self,
        keys: &[u32],
        data: &[f32],
        probe: usize,
    ) -> Result<Vec<u32>, SearchError> {
        let n = check_matrix("items", data, self.dim)?;
        if n != keys.len() {
            return Err(SearchError::Ann(format!(
                "{} keys for {n} rows",
                keys.len()
            )));
        }
        let before = self.index.expansion_search();
        self.index
            .change_expansion_search(probe.max(UNREACHABLE_BEAM));
        let found: Result<Vec<bool>, SearchError> = data
            .par_chunks_exact(self.dim)
            .zip(keys.par_iter())
            .map(|(row, &key)| {
                let m = self.index.search(row, probe.max(1)).map_err(ann_err)?;
                Ok(m.keys.contains(&(key as u64)))
            })
            .collect();
        self.index.change_expansion_search(before);
        Ok(keys
            .iter()
            .zip(found?)
            .filter(|(_, f)| !f)
            .map(|(&k, _)| k)
            .collect())
    }

    /// The parameters the index was built with, and the current `expansion_search`.
    pub fn params(&self) -> HnswParams {
        self.params
    }

    /// The beam width searches use now (HNSW's `ef`; a search for more results widens it for
    /// itself only).
    pub fn expansion_search(&self) -> usize {
        self.index.expansion_search()
    }

    /// Candidates each search keeps (the beam, HNSW's `ef`), at least the `k` asked for.
    pub fn set_expansion_search(&mut self, ef: usize) {
        self.index.change_expansion_search(ef.max(1));
        self.params.expansion_search = ef.max(1);
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
        check_queries(queries, self.dim)?;
        let k = k.min(self.n);
        if k == 0 {
            return Ok(vec![Vec::new(); queries.len() / self.dim]);
        }
        // usearch widens the beam to `k` for a search that asks for more (`max(ef, k)`);
        // raising the index's own setting instead would slow every later search.
        let one = |q: &[f32]| -> Result<Vec<Hit>, SearchError> {
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
        };
        if queries.len() == self.dim {
            // One query (a served search): on the calling thread, without a hand-off to the
            // pool.
            return Ok(vec![one(queries)?]);
        }
        queries.par_chunks_exact(self.dim).map(one).collect()
    }
}

/// Results a self-search of each row looks at when [`HnswSearch`] looks for unreachable rows.
pub const UNREACHABLE_PROBE: usize = 10;

/// The smallest beam of the self-searches that look for unreachable rows: a search with a beam
/// at least this wide reaches every row that is not reported unreachable.
pub const UNREACHABLE_BEAM: usize = 64;

/// An HNSW graph whose unreachable rows ([`HnswIndex::unreachable`]) are scored exactly by
/// every search: parallel insertion can leave a few rows no search reaches (74 of Home Depot's
/// 54,667 titles), and a graph alone would never return them.
pub struct HnswSearch {
    graph: HnswIndex,
    orphans: Vec<u32>,
    orphan_rows: Vec<f32>,
}

impl HnswSearch {
    /// Builds the graph over `data` (row `i` under key `i`) and finds its unreachable rows.
    pub fn build(data: &[f32], dim: usize, params: HnswParams) -> Result<Self, SearchError> {
        let graph = HnswIndex::build(data, dim, params)?;
        let keys: Vec<u32> = (0..graph.len() as u32).collect();
        let orphans = graph.unreachable(&keys, data, UNREACHABLE_PROBE)?;
        let orphan_rows = orphans
            .iter()
            .flat_map(|&o| {
                data[o as usize * dim..(o as usize + 1) * dim]
                    .iter()
                    .copied()
            })
            .collect();
        Ok(HnswSearch {
            graph,
            orphans,
            orphan_rows,
        })
    }

    /// The rows the graph cannot reach.
    pub fn orphans(&self) -> &[u32] {
        &self.orphans
    }

    /// The graph.
    pub fn graph(&self) -> &HnswIndex {
        &self.graph
    }
}

impl VectorSearch for HnswSearch {
    fn dim(&self) -> usize {
        self.graph.dim
    }

    fn len(&self) -> usize {
        self.graph.n
    }

    fn search(&self, queries: &[f32], k: usize) -> Result<Vec<Vec<Hit>>, SearchError> {
        let mut results = self.graph.search(queries, k)?;
        if self.orphans.is_empty() {
            return Ok(results);
        }
        let dim = self.graph.dim;
        let k = k.min(self.graph.n);
        results
            .par_iter_mut()
            .zip(queries.par_chunks_exact(dim))
            .for_each(|(hits, q)| {
                for (&o, row) in self.orphans.iter().zip(self.orphan_rows.chunks_exact(dim)) {
                    if !hits.iter().any(|h| h.item == o) {
                        hits.push(Hit {
                            item: o,
                            score: super::dot(q, row),
                        });
                    }
                }
                hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.item.cmp(&b.item)));
                hits.truncate(k);
            });
        Ok(results)
    }
}
