//! Exact search against a brute-force reference, and HNSW recall against exact search.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata_retrieval::search::{ExactIndex, Hit, VectorSearch};

fn normalise(v: &mut [f32], dim: usize) {
    for r in v.chunks_exact_mut(dim) {
        let n = r.iter().map(|x| x * x).sum::<f32>().sqrt();
        r.iter_mut().for_each(|x| *x /= n);
    }
}

fn random_unit(rng: &mut StdRng, n: usize, dim: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..n * dim)
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    normalise(&mut v, dim);
    v
}

/// Full sort of every inner product, ties by item position.
fn brute_force(items: &[f32], queries: &[f32], dim: usize, k: usize) -> Vec<Vec<Hit>> {
    queries
        .chunks_exact(dim)
        .map(|q| {
            let mut all: Vec<Hit> = items
                .chunks_exact(dim)
                .enumerate()
                .map(|(i, x)| Hit {
                    item: i as u32,
                    score: q.iter().zip(x).map(|(a, b)| a * b).sum(),
                })
                .collect();
            all.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.item.cmp(&b.item)));
            all.truncate(k);
            all
        })
        .collect()
}

fn assert_same(got: &[Vec<Hit>], want: &[Vec<Hit>]) {
    assert_eq!(got.len(), want.len());
    for (q, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.len(), w.len(), "query {q}");
        for (r, (a, b)) in g.iter().zip(w).enumerate() {
            assert!(
                (a.score - b.score).abs() < 1e-5,
                "query {q} rank {r}: {} vs {}",
                a.score,
                b.score
            );
            // Items may only differ where scores tie to float precision.
            if a.item != b.item {
                assert!(
                    (a.score - b.score).abs() < 1e-6,
                    "query {q} rank {r}: item {} vs {}",
                    a.item,
                    b.item
                );
            }
        }
    }
}

#[test]
fn exact_search_matches_brute_force_on_random_data() {
    let mut rng = StdRng::seed_from_u64(7);
    // Many queries (parallel over query blocks), few queries (parallel over item ranges),
    // item counts that are not multiples of the block sizes, k above the catalog size.
    for &(n, nq, dim, k) in &[
        (5_000, 300, 48, 100),
        (9_000, 3, 32, 50),
        (1_500, 130, 17, 10),
        (40, 5, 8, 100),
    ] {
        let items = random_unit(&mut rng, n, dim);
        let queries = random_unit(&mut rng, nq, dim);
        let index = ExactIndex::new(items.clone(), dim).unwrap();
        let got = index.search(&queries, k).unwrap();
        let want = brute_force(&items, &queries, dim, k);
        assert_same(&got, &want);
        assert!(got.iter().all(|h| h.len() == k.min(n)));
    }
}

#[test]
fn exact_search_breaks_ties_by_item_position() {
    let dim = 4;
    // Items 0..6 repeat two distinct vectors; the query is equally close to all copies of the
    // first one.
    let a = [1.0f32, 0.0, 0.0, 0.0];
    let b = [0.0f32, 1.0, 0.0, 0.0];
    let items: Vec<f32> = [b, a, b, a, a, b].iter().flatten().copied().collect();
    let index = ExactIndex::new(items, dim).unwrap();
    let hits = index.search(&a, 4).unwrap();
    let order: Vec<u32> = hits[0].iter().map(|h| h.item).collect();
    assert_eq!(order, vec![1, 3, 4, 0]);
}

#[test]
fn exact_search_rejects_bad_inputs() {
    assert!(ExactIndex::new(vec![], 4).is_err());
    assert!(ExactIndex::new(vec![2.0, 0.0], 2).is_err());
    let index = ExactIndex::new(vec![1.0, 0.0], 2).unwrap();
    assert!(index.search(&[1.0, 0.0, 0.0], 1).is_err());
    assert!(index.search(&[f32::NAN, 0.0], 1).is_err());
    assert!(index.search(&[], 5).unwrap().is_empty());
}

#[cfg(feature = "ann")]
#[test]
fn hnsw_recall_against_exact_on_clustered_vectors() {
    use strata_retrieval::search::{HnswIndex, HnswParams, recall_against};
    let mut rng = StdRng::seed_from_u64(11);
    let (dim, clusters, per, nq) = (32, 40, 100, 300);
    let centres = random_unit(&mut rng, clusters, dim);
    let noisy = |rng: &mut StdRng, c: usize| -> Vec<f32> {
        let mut v: Vec<f32> = centres[c * dim..(c + 1) * dim]
            .iter()
            .map(|x| x + rng.random_range(-0.15f32..0.15))
            .collect();
        normalise(&mut v, dim);
        v
    };
    let items: Vec<f32> = (0..clusters * per)
        .flat_map(|i| noisy(&mut rng, i % clusters))
        .collect();
    let queries: Vec<f32> = (0..nq)
        .flat_map(|i| noisy(&mut rng, (i * 7) % clusters))
        .collect();
    let exact = ExactIndex::new(items.clone(), dim)
        .unwrap()
        .search(&queries, 100)
        .unwrap();
    let hnsw = HnswIndex::build(&items, dim, HnswParams::default()).unwrap();
    assert_eq!(hnsw.len(), clusters * per);
    let approx = hnsw.search(&queries, 100).unwrap();
    let r10 = recall_against(&exact, &approx, 10);
    let r100 = recall_against(&exact, &approx, 100);
    eprintln!("HNSW recall against exact: @10 {r10:.4}, @100 {r100:.4}");
    assert!(r10 >= 0.95, "recall@10 {r10}");
    assert!(r100 >= 0.9, "recall@100 {r100}");
    // Scores are inner products, like the exact ones.
    for (a, e) in approx.iter().zip(&exact) {
        assert!((a[0].score - e[0].score).abs() < 1e-4 || a[0].score <= e[0].score);
        assert!(a.windows(2).all(|w| w[0].score >= w[1].score));
    }
}

/// A search for many results widens the beam for itself only: a server's later searches keep
/// their own width (it used to stay at the largest k ever asked for).
#[cfg(feature = "ann")]
#[test]
fn a_deep_search_leaves_the_beam_width_alone() {
    use strata_retrieval::search::{HnswIndex, HnswParams};
    let mut rng = StdRng::seed_from_u64(9);
    let dim = 16;
    let items = random_unit(&mut rng, 600, dim);
    let params = HnswParams {
        connectivity: 8,
        expansion_add: 32,
        expansion_search: 24,
    };
    let mut graph = HnswIndex::build(&items, dim, params).unwrap();
    assert_eq!(graph.expansion_search(), 24);
    let deep = graph.search(&items[..dim], 500).unwrap();
    assert_eq!(deep[0].len(), 500);
    assert_eq!(graph.expansion_search(), 24);
    assert_eq!(graph.search(&items[..dim], 5).unwrap()[0].len(), 5);
    graph.set_expansion_search(80);
    assert_eq!(graph.expansion_search(), 80);
    assert_eq!(graph.params().expansion_search, 80);
    // One query or many: the same results.
    let one = graph.search(&items[dim..2 * dim], 10).unwrap();
    let many = graph.search(&items[..3 * dim], 10).unwrap();
    assert_eq!(one[0], many[1]);
}

/// In a set full of exact duplicates a degree-2 graph leaves rows unreachable; `HnswSearch`
/// lists them and scores them exactly, so every row is found by its own vector (with its
/// duplicates) and the orphans' scores are exact inner products.
#[cfg(feature = "ann")]
#[test]
fn hnsw_search_scores_unreachable_rows_exactly() {
    use strata_retrieval::search::{HnswIndex, HnswParams, HnswSearch};
    let mut rng = StdRng::seed_from_u64(5);
    let dim = 16;
    let distinct = random_unit(&mut rng, 20, dim);
    // 20 distinct vectors, then 300 copies of 3 of them.
    let mut items = distinct.clone();
    for i in 0..300 {
        let src = (i % 3) * dim;
        items.extend_from_slice(&distinct[src..src + dim]);
    }
    let n = items.len() / dim;
    let params = HnswParams {
        connectivity: 2,
        expansion_add: 4,
        expansion_search: 4,
    };
    let graph = HnswIndex::build(&items, dim, params).unwrap();
    let keys: Vec<u32> = (0..n as u32).collect();
    let lost = graph.unreachable(&keys, &items, 10).unwrap();
    assert!(!lost.is_empty(), "the fixture must leave rows unreachable");
    let search = HnswSearch::build(&items, dim, params).unwrap();
    assert!(!search.orphans().is_empty());
    let exact = ExactIndex::new(items.clone(), dim).unwrap();
    for row in 0..n {
        let q = &items[row * dim..(row + 1) * dim];
        // Every duplicate of the row ties with it: ask for all of them.
        let ties = exact.search(q, n).unwrap()[0]
            .iter()
            .filter(|h| h.score >= 1.0 - 1e-5)
            .count();
        let hits = &search.search(q, ties).unwrap()[0];
        assert!(
            hits.iter().any(|h| h.item == row as u32),
            "row {row} not found by its own vector ({} orphans)",
            search.orphans().len()
        );
        for h in hits {
            let x = &items[h.item as usize * dim..(h.item as usize + 1) * dim];
            let ip: f32 = q.iter().zip(x).map(|(a, b)| a * b).sum();
            assert!(
                (h.score - ip).abs() < 1e-4,
                "row {row}: item {} score",
                h.item
            );
        }
        assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    }
}
