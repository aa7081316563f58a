//! Export time and search QPS / recall of the PostgreSQL + pgvector backend on random
//! clustered vectors.
//!
//! ```text
//! cargo run --release --example pg_bench -- [--items 100000] [--dim 256] [--queries 500]
//!     [--concurrency 8] [--url postgres://...]
//! ```
//!
//! Without `--url` a throwaway cluster is started on loopback (needs scripts/setup-postgres.sh).

use std::time::Instant;

use futures_util::StreamExt;
use futures_util::stream;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata_data::Item;
use strata_data::progress::Progress;
use strata_serving_postgres::testing::PgCluster;
use strata_serving_postgres::{
    BackendOptions, ExportBatch, ExportOptions, Fusion, PgBackend, PgHnswParams, SearchMode, export,
};

struct Stages;

impl Progress for Stages {
    fn stage(&self, name: &str, total: u64) {
        eprintln!("  {name} ({total})");
    }
    fn advance(&self, _n: u64) {}
}

fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("bad value for {name}: {v}"))
        })
        .unwrap_or(default)
}

fn normalise(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
}

/// Points around `centroids` random centres with Gaussian-ish noise, normalised.
fn clustered(rng: &mut StdRng, centres: &[f32], n: usize, dim: usize, noise: f32) -> Vec<f32> {
    let k = centres.len() / dim;
    let mut out = Vec::with_capacity(n * dim);
    for _ in 0..n {
        let c = rng.random_range(0..k);
        let mut v: Vec<f32> = (0..dim)
            .map(|j| {
                // Sum of uniforms: roughly normal.
                let g: f32 = (0..4).map(|_| rng.random_range(-1.0f32..1.0)).sum::<f32>() * 0.5;
                centres[c * dim + j] + noise * g
            })
            .collect();
        normalise(&mut v);
        out.extend(v);
    }
    out
}

fn exact_top(emb: &[f32], dim: usize, q: &[f32], k: usize) -> Vec<usize> {
    let mut scored: Vec<(f32, usize)> = emb
        .chunks(dim)
        .enumerate()
        .map(|(i, e)| (e.iter().zip(q).map(|(a, b)| a * b).sum(), i))
        .collect();
    scored.select_nth_unstable_by(k, |a, b| b.0.total_cmp(&a.0));
    scored.truncate(k);
    scored.into_iter().map(|(_, i)| i).collect()
}

const WORDS: &[&str] = &[
    "cordless", "drill", "hammer", "saw", "blade", "screw", "bolt", "paint", "brush", "ladder",
    "lamp", "pipe", "valve", "faucet", "tile", "grout", "wrench", "socket", "glove", "tape",
    "white", "black", "steel", "brass", "oak", "pine", "outdoor", "indoor", "led", "copper",
];

fn main() {
    let n: usize = arg("--items", 100_000);
    let dim: usize = arg("--dim", 256);
    let nq: usize = arg("--queries", 500);
    let concurrency: usize = arg("--concurrency", 8);
    let url_arg: String = arg("--url", String::new());
    let k = 10;

    let mut rng = StdRng::seed_from_u64(7);
    let mut centres: Vec<f32> = (0..1000 * dim)
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    centres.chunks_mut(dim).for_each(normalise);
    let noise = 0.6 / (dim as f32).sqrt() * 4.0;
    let embeddings = clustered(&mut rng, &centres, n, dim, noise);
    let queries = clustered(&mut rng, &centres, nq, dim, noise);
    let items: Vec<Item> = (0..n)
        .map(|i| Item::new(format!("p{i}"), format!("Product {i}")))
        .collect();
    let text = |rng: &mut StdRng| {
        (0..rng.random_range(3..8))
            .map(|_| WORDS[rng.random_range(0..WORDS.len())])
            .collect::<Vec<_>>()
            .join(" ")
    };
    let texts: Vec<String> = (0..n).map(|_| text(&mut rng)).collect();
    let query_texts: Vec<String> = (0..nq).map(|_| text(&mut rng)).collect();
    eprintln!("computing exact top-{k} for {nq} queries over {n} x {dim}");
    let truth: Vec<Vec<String>> = queries
        .chunks(dim)
        .map(|q| {
            exact_top(&embeddings, dim, q, k)
                .into_iter()
                .map(|i| format!("p{i}"))
                .collect()
        })
        .collect();

    let cluster = url_arg
        .is_empty()
        .then(|| PgCluster::start().expect("starting PostgreSQL"));
    let url = cluster.as_ref().map_or(url_arg.clone(), |c| c.url());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let batch = ExportBatch::new(&items, &texts, &embeddings).unwrap();
        let options = ExportOptions {
            table: "bench".into(),
            hnsw: PgHnswParams { m: 16, ef_construction: 64 },
            maintenance_work_mem: Some("2GB".into()),
            ..ExportOptions::default()
        };
        eprintln!("exporting {n} x {dim}");
        let report = export(&url, &batch, &options, &Stages).await.unwrap();
        println!(
            "export: {n} items x {dim}: copy {:.1} s, indexes {:.1} s, total {:.1} s",
            report.copy_seconds, report.index_seconds, report.total_seconds
        );
        let fusion = Fusion::Convex { alpha: 0.7 };
        for (mode, ef) in [
            (SearchMode::Semantic, 40),
            (SearchMode::Semantic, 100),
            (SearchMode::Semantic, 200),
            (SearchMode::Lexical, 100),
            (SearchMode::Hybrid, 100),
        ] {
            let backend = PgBackend::connect_with(
                &url,
                "bench",
                BackendOptions { pool_size: concurrency, ef_search: ef, ..BackendOptions::default() },
            )
            .await
            .unwrap();
            // Warm-up: prepare statements on every connection, load pages.
            for q in queries.chunks(dim).take(concurrency * 2) {
                backend.search(&query_texts[0], Some(q), k, mode, fusion).await.unwrap();
            }
            let start = Instant::now();
            let results: Vec<_> = stream::iter(queries.chunks(dim).zip(&query_texts))
                .map(|(q, t)| backend.search(t, Some(q), k, mode, fusion))
                .buffered(concurrency)
                .collect()
                .await;
            let secs = start.elapsed().as_secs_f64();
            let mut found = 0;
            for (hits, truth) in results.into_iter().zip(&truth) {
                let hits = hits.unwrap();
                found += hits.iter().filter(|h| truth.contains(&h.id)).count();
            }
            let recall = found as f64 / (nq * k) as f64;
            println!(
                "{mode:>8} ef_search {ef:>3}: {:.0} QPS ({concurrency} concurrent, {nq} queries), semantic recall@{k} {recall:.3}",
                nq as f64 / secs
            );
        }
    });
}
