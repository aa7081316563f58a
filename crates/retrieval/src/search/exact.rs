//! Exact top-K search: query blocks times item blocks with a single-precision GEMM, each score
//! block scanned into a bounded heap per query. Parallel over query blocks, or over item
//! ranges when there are too few queries to keep every thread busy.

use gemm::Parallelism;
use rayon::prelude::*;

use super::{Hit, SearchError, TopK, VectorSearch, check_matrix, check_queries};

/// Queries per block.
const QUERY_BLOCK: usize = 128;
/// Items per block (a 128 x 512 score block is 256 KiB).
const ITEM_BLOCK: usize = 512;

/// Exact inner-product search over a row-major matrix of L2-normalised rows, held in any
/// storage that reads as `&[f32]` (an owned `Vec<f32>` by default, or e.g. a memory map).
#[derive(Clone, Debug)]
pub struct ExactIndex<D = Vec<f32>> {
    data: D,
    dim: usize,
    n: usize,
}

impl<D: AsRef<[f32]>> ExactIndex<D> {
    /// Indexes `data` (`n * dim` floats, rows L2-normalised). Fails on an empty, ragged,
    /// non-finite or non-normalised matrix.
    pub fn new(data: D, dim: usize) -> Result<Self, SearchError> {
        let n = check_matrix("items", data.as_ref(), dim)?;
        if n == 0 {
            return Err(SearchError::Empty);
        }
        Ok(ExactIndex { data, dim, n })
    }

    /// Indexes rows that the caller has already validated (e.g. a subset of an index's
    /// checked vectors, gathered per query): only the shape is checked, so a non-normalised
    /// row gives wrong scores instead of an error.
    pub fn new_prechecked(data: D, dim: usize) -> Result<Self, SearchError> {
        let len = data.as_ref().len();
        if dim == 0 {
            return Err(SearchError::ZeroDim { what: "items" });
        }
        if !len.is_multiple_of(dim) {
            return Err(SearchError::Ragged {
                what: "items",
                len,
                dim,
            });
        }
        if len == 0 {
            return Err(SearchError::Empty);
        }
        Ok(ExactIndex {
            data,
            dim,
            n: len / dim,
        })
    }

    /// The indexed matrix.
    pub fn vectors(&self) -> &[f32] {
        self.data.as_ref()
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data.as_ref()[i * self.dim..(i + 1) * self.dim]
    }

    /// Top-k of each query row of `qblock` among items `[from, to)`.
    fn search_range(&self, qblock: &[f32], k: usize, from: usize, to: usize) -> Vec<TopK> {
        let dim = self.dim;
        let m = qblock.len() / dim;
        let mut tops: Vec<TopK> = (0..m).map(|_| TopK::new(k)).collect();
        let mut buf = vec![0f32; m * ITEM_BLOCK];
        let mut start = from;
        while start < to {
            let nb = ITEM_BLOCK.min(to - start);
            let items = &self.data.as_ref()[start * dim..(start + nb) * dim];
            // SAFETY: dst is m x nb row-major inside `buf` (m * ITEM_BLOCK >= m * nb floats);
            // lhs is the m x dim row-major query block; rhs is the dim x nb matrix whose column
            // j is item row `start + j` (column stride dim, row stride 1), all within `items`.
            unsafe {
                gemm::gemm(
                    m,
                    nb,
                    dim,
                    buf.as_mut_ptr(),
                    1,
                    nb as isize,
                    false,
                    qblock.as_ptr(),
                    1,
                    dim as isize,
                    items.as_ptr(),
                    dim as isize,
                    1,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    Parallelism::None,
                );
            }
            for (r, top) in tops.iter_mut().enumerate() {
                let row = &buf[r * nb..(r + 1) * nb];
                let mut th = top.threshold();
                for (j, &s) in row.iter().enumerate() {
                    // Items arrive in ascending order, so an equal score never displaces a
                    // kept (lower) item.
                    if s > th {
                        top.push((start + j) as u32, s);
                        th = top.threshold();
                    }
                }
            }
            start += nb;
        }
        tops
    }
}

impl<D: AsRef<[f32]> + Send + Sync> VectorSearch for ExactIndex<D> {
    fn dim(&self) -> usize {
        self.dim
    }

    fn len(&self) -> usize {
        self.n
    }

    fn search(&self, queries: &[f32], k: usize) -> Result<Vec<Vec<Hit>>, SearchError> {
        let nq = check_queries(queries, self.dim)?;
        let k = k.min(self.n);
        if nq == 0 || k == 0 {
            return Ok(vec![Vec::new(); nq]);
        }
        let threads = rayon::current_num_threads().max(1);
        if nq <= QUERY_BLOCK && self.n < 4 * ITEM_BLOCK {
            // One block of work (e.g. re-scoring a query's HNSW candidates): on the calling
            // thread, without a hand-off to the pool.
            Ok(self
                .search_range(queries, k, 0, self.n)
                .into_iter()
                .map(TopK::into_sorted)
                .collect())
        } else if nq.div_ceil(QUERY_BLOCK) >= 2 * threads || self.n < 4 * ITEM_BLOCK {
            Ok(queries
                .par_chunks(QUERY_BLOCK * self.dim)
                .flat_map_iter(|qb| {
                    self.search_range(qb, k, 0, self.n)
                        .into_iter()
                        .map(TopK::into_sorted)
                })
                .collect())
        } else {
            // Few queries: split the items instead, then merge the partial selections.
            let parts = (4 * threads).min(self.n.div_ceil(ITEM_BLOCK));
            let span = self.n.div_ceil(parts);
            let partial: Vec<Vec<Vec<Hit>>> = (0..parts)
                .into_par_iter()
                .map(|p| {
                    let (from, to) = (p * span, ((p + 1) * span).min(self.n));
                    queries
                        .chunks(QUERY_BLOCK * self.dim)
                        .flat_map(|qb| {
                            self.search_range(qb, k, from, to)
                                .into_iter()
                                .map(TopK::into_sorted)
                        })
                        .collect()
                })
                .collect();
            Ok((0..nq)
                .map(|q| {
                    let mut top = TopK::new(k);
                    for part in &partial {
                        for h in &part[q] {
                            top.push(h.item, h.score);
                        }
                    }
                    top.into_sorted()
                })
                .collect())
        }
    }
}
