//! Search throughput at the Home Depot scale: 54,667 items and 9,470 queries of dimension 384
//! (random clustered unit vectors), top 100. Exact search, and HNSW build, search and recall
//! against exact (feature `ann`).
//!
//!     cargo bench -p strata-retrieval --bench search   (STRATA_BENCH_SKIP_ANN=1 skips HNSW)

use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata_retrieval::search::{ExactIndex, VectorSearch};

fn clustered(rng: &mut StdRng, centres: &[f32], n: usize, dim: usize) -> Vec<f32> {
    let k = centres.len() / dim;
    let mut out = Vec::with_capacity(n * dim);
    for _ in 0..n {
        let c = rng.random_range(0..k);
        let mut v: Vec<f32> = centres[c * dim..(c + 1) * dim]
            .iter()
            .map(|x| x + rng.random_range(-0.08f32..0.08))
            .collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= norm);
        out.extend(v);
    }
    out
}

fn main() {
    let (n, nq, dim, k) = (54_667, 9_470, 384, 100);
    let mut rng = StdRng::seed_from_u64(1);
    let centres: Vec<f32> = (0..500 * dim)
        .map(|_| rng.random_range(-0.05f32..0.05))
        .collect();
    let items = clustered(&mut rng, &centres, n, dim);
    let queries = clustered(&mut rng, &centres, nq, dim);
    println!(
        "{} threads; {n} items, {nq} queries, dim {dim}, k {k}",
        rayon::current_num_threads()
    );

    let index = ExactIndex::new(items.clone(), dim).unwrap();
    let t = Instant::now();
    let exact = index.search(&queries, k).unwrap();
    let s = t.elapsed().as_secs_f64();
    println!(
        "exact: {s:.2}s, {:.0} queries/s, {:.1} GFLOP/s",
        nq as f64 / s,
        2.0 * (n * nq * dim) as f64 / s / 1e9
    );
    let t = Instant::now();
    let one = index.search(&queries[..dim], k).unwrap();
    println!(
        "exact, one query: {:.2} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    // The same items (scores may differ in the last bits between kernel paths).
    assert!(one[0].iter().zip(&exact[0]).all(|(a, b)| a.item == b.item));

    #[cfg(feature = "ann")]
    if std::env::var("STRATA_BENCH_SKIP_ANN").is_err() {
        use strata_retrieval::search::{HnswIndex, HnswParams, recall_against};
        let t = Instant::now();
        let hnsw = HnswIndex::build(&items, dim, HnswParams::default()).unwrap();
        let build = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let approx = hnsw.search(&queries, k).unwrap();
        let s = t.elapsed().as_secs_f64();
        println!(
            "hnsw {:?}: build {build:.1}s, search {s:.2}s ({:.0} queries/s), recall@10 {:.4}, recall@100 {:.4}",
            HnswParams::default(),
            nq as f64 / s,
            recall_against(&exact, &approx, 10),
            recall_against(&exact, &approx, 100)
        );
    }
}
