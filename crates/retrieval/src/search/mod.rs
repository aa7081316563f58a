//! Top-K search over L2-normalised embeddings (row-major `f32`, one row per vector).
//!
//! [`ExactIndex`] is the reference: exact inner products by blocked matrix multiplication.
//! [`HnswIndex`] (feature `ann`) answers the same [`VectorSearch`] trait approximately.
//! Results are ordered by descending score; equal scores keep catalog order.

#[cfg(feature = "ann")]
mod ann;
mod exact;
mod topk;

#[cfg(feature = "ann")]
pub use ann::{HnswIndex, HnswSearch, UNREACHABLE_BEAM};
pub use exact::ExactIndex;
pub use topk::TopK;

use std::collections::HashSet;

/// HNSW construction and search parameters.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HnswParams {
    /// Graph degree (M).
    pub connectivity: usize,
    /// Candidate list size while inserting (efConstruction).
    pub expansion_add: usize,
    /// Candidate list size while searching (ef); raised to k when smaller.
    pub expansion_search: usize,
}

impl Default for HnswParams {
    fn default() -> Self {
        HnswParams {
            connectivity: 16,
            expansion_add: 128,
            expansion_search: 128,
        }
    }
}

/// One retrieved item.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hit {
    /// Item position in the indexed matrix.
    pub item: u32,
    /// Inner product with the query (cosine for L2-normalised rows).
    pub score: f32,
}

/// Errors in search inputs.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("{what}: dimension must be positive")]
    ZeroDim { what: &'static str },
    #[error("{what}: {len} floats is not a multiple of the dimension {dim}")]
    Ragged {
        what: &'static str,
        len: usize,
        dim: usize,
    },
    #[error("{what}: row {row} holds a non-finite value")]
    NonFinite { what: &'static str, row: usize },
    #[error("{what}: row {row} has L2 norm {norm:.4}; rows must be L2-normalised")]
    NotNormalised {
        what: &'static str,
        row: usize,
        norm: f32,
    },
    #[error("queries have dimension {got}, the index {expected}")]
    DimMismatch { got: usize, expected: usize },
    #[error("the index is empty")]
    Empty,
    #[error("approximate index: {0}")]
    Ann(String),
}

/// Anything that returns the top `k` items for each query row.
pub trait VectorSearch: Send + Sync {
    /// Vector dimension.
    fn dim(&self) -> usize;
    /// Number of indexed vectors.
    fn len(&self) -> usize;
    /// True when nothing is indexed.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The top `min(k, len)` items for each row of `queries` (row-major, `dim` columns), best
    /// first.
    fn search(&self, queries: &[f32], k: usize) -> Result<Vec<Vec<Hit>>, SearchError>;
}

/// Checks a row-major matrix: dimension, finiteness and unit L2 norm (within 1e-3).
/// Returns the number of rows.
pub fn check_matrix(what: &'static str, data: &[f32], dim: usize) -> Result<usize, SearchError> {
    if dim == 0 {
        return Err(SearchError::ZeroDim { what });
    }
    if !data.len().is_multiple_of(dim) {
        return Err(SearchError::Ragged {
            what,
            len: data.len(),
            dim,
        });
    }
    for (row, r) in data.chunks_exact(dim).enumerate() {
        if r.iter().any(|v| !v.is_finite()) {
            return Err(SearchError::NonFinite { what, row });
        }
        let norm = r.iter().map(|v| v * v).sum::<f32>().sqrt();
        if (norm - 1.0).abs() > 1e-3 {
            return Err(SearchError::NotNormalised { what, row, norm });
        }
    }
    Ok(data.len() / dim)
}

/// Checks a block of query rows of dimension `dim` (whole rows, finite, normalised); returns
/// how many there are.
pub fn check_queries(queries: &[f32], dim: usize) -> Result<usize, SearchError> {
    if dim > 0 && !queries.len().is_multiple_of(dim) {
        return Err(SearchError::DimMismatch {
            got: queries.len(),
            expected: dim,
        });
    }
    check_matrix("queries", queries, dim)
}

/// Inner product of two rows.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Mean over queries of `|approx top-k ∩ exact top-k| / |exact top-k|`: the recall of an
/// approximate search against the exact one. Queries with no exact hit are skipped.
pub fn recall_against(exact: &[Vec<Hit>], approx: &[Vec<Hit>], k: usize) -> f64 {
    let mut sum = 0.0;
    let mut n = 0usize;
    for (e, a) in exact.iter().zip(approx) {
        let truth: HashSet<u32> = e.iter().take(k).map(|h| h.item).collect();
        if truth.is_empty() {
            continue;
        }
        let found = a.iter().take(k).filter(|h| truth.contains(&h.item)).count();
        sum += found as f64 / truth.len() as f64;
        n += 1;
    }
    if n == 0 { 0.0 } else { sum / n as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_checks_name_the_problem() {
        assert!(matches!(
            check_matrix("items", &[1.0, 0.0], 0),
            Err(SearchError::ZeroDim { .. })
        ));
        assert!(matches!(
            check_matrix("items", &[1.0, 0.0, 1.0], 2),
            Err(SearchError::Ragged { .. })
        ));
        let e = check_matrix("items", &[1.0, 0.0, f32::NAN, 0.0], 2).unwrap_err();
        assert!(matches!(e, SearchError::NonFinite { row: 1, .. }));
        let e = check_matrix("items", &[1.0, 0.0, 1.0, 1.0], 2).unwrap_err();
        assert!(e.to_string().contains("row 1"), "{e}");
        assert_eq!(check_matrix("items", &[1.0, 0.0, 0.6, 0.8], 2).unwrap(), 2);
    }

    #[test]
    fn recall_against_counts_shared_items() {
        let h = |i| Hit {
            item: i,
            score: 0.0,
        };
        let exact = vec![vec![h(1), h(2), h(3)], vec![h(4), h(5)], vec![]];
        let approx = vec![vec![h(2), h(9), h(1)], vec![h(4), h(5)], vec![h(7)]];
        assert!((recall_against(&exact, &approx, 3) - (2.0 / 3.0 + 1.0) / 2.0).abs() < 1e-12);
        assert!((recall_against(&exact, &approx, 1) - 0.5).abs() < 1e-12);
    }
}
