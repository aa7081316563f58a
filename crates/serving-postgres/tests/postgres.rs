//! Export and search against a real PostgreSQL + pgvector cluster on loopback (started and
//! removed by each test; install the server with scripts/setup-postgres.sh).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata_data::Item;
use strata_data::progress::NoProgress;
use strata_serving_postgres::testing::PgCluster;
use strata_serving_postgres::{
    BackendOptions, Error, ExportBatch, ExportOptions, Fusion, Metric, PgBackend, PgHnswParams,
    SearchHit, SearchMode, export,
};

fn cluster() -> PgCluster {
    PgCluster::start().unwrap_or_else(|e| panic!("could not start PostgreSQL: {e}"))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// `n` random unit vectors of `dim` dimensions, row-major.
fn unit_vectors(rng: &mut StdRng, n: usize, dim: usize) -> Vec<f32> {
    let mut v = Vec::with_capacity(n * dim);
    for _ in 0..n {
        let row: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.extend(row.iter().map(|x| x / norm));
    }
    v
}

const WORDS: &[&str] = &[
    "cordless", "drill", "hammer", "saw", "blade", "screw", "bolt", "paint", "brush", "ladder",
    "lamp", "pipe", "valve", "faucet", "tile", "grout", "wrench", "socket", "glove", "tape",
];

/// A catalog of `n` items with random texts from `WORDS` and random unit embeddings.
struct Catalog {
    items: Vec<Item>,
    texts: Vec<String>,
    embeddings: Vec<f32>,
    dim: usize,
}

impl Catalog {
    fn random(rng: &mut StdRng, n: usize, dim: usize) -> Catalog {
        let items: Vec<Item> = (0..n)
            .map(|i| {
                let mut item = Item::new(format!("item-{i:05}"), format!("Item {i}"));
                item.taxonomy = vec!["Tools".into(), format!("Group {}", i % 7)];
                item
            })
            .collect();
        let texts = (0..n)
            .map(|_| {
                let len = rng.random_range(2..6);
                (0..len)
                    .map(|_| WORDS[rng.random_range(0..WORDS.len())])
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        Catalog {
            items,
            texts,
            embeddings: unit_vectors(rng, n, dim),
            dim,
        }
    }

    fn batch(&self) -> ExportBatch<'_> {
        ExportBatch::new(&self.items, &self.texts, &self.embeddings).unwrap()
    }

    fn row(&self, i: usize) -> &[f32] {
        &self.embeddings[i * self.dim..(i + 1) * self.dim]
    }

    /// Exact cosine of the query with item `i`.
    fn cosine(&self, query: &[f32], i: usize) -> f32 {
        self.row(i).iter().zip(query).map(|(a, b)| a * b).sum()
    }

    /// Brute-force top-k item ids by dot product.
    fn exact_top(&self, query: &[f32], k: usize) -> Vec<String> {
        let mut scored: Vec<(f32, usize)> = (0..self.items.len())
            .map(|i| (self.cosine(query, i), i))
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        scored[..k]
            .iter()
            .map(|&(_, i)| self.items[i].id.clone())
            .collect()
    }

    fn index_of(&self, id: &str) -> usize {
        id.strip_prefix("item-").unwrap().parse().unwrap()
    }
}

fn ids(hits: &[SearchHit]) -> Vec<String> {
    hits.iter().map(|h| h.id.clone()).collect()
}

const CONVEX: Fusion = Fusion::Convex { alpha: 0.5 };

#[test]
fn export_round_trip_info_and_errors() {
    let pg = cluster();
    let url = pg.url();
    let mut rng = StdRng::seed_from_u64(1);
    let catalog = Catalog::random(&mut rng, 300, 16);
    runtime().block_on(async {
        let options = ExportOptions {
            table: "catalog".into(),
            hnsw: PgHnswParams { m: 8, ef_construction: 40 },
            ..ExportOptions::default()
        };
        let report = export(&url, &catalog.batch(), &options, &NoProgress).await.unwrap();
        assert_eq!((report.items, report.dim), (300, 16));

        let backend = PgBackend::connect(&url, "catalog").await.unwrap();
        assert_eq!(backend.count().await.unwrap(), 300);
        let info = backend.info().await.unwrap();
        assert_eq!((info.items, info.dim, info.metric), (300, 16, Metric::Cosine));
        assert_eq!(info.hnsw, PgHnswParams { m: 8, ef_construction: 40 });
        assert!(info.text_index && info.bytes > 0);

        // Every field is stored as given.
        let row = pg
            .psql("SELECT id, text, name, taxonomy, vector_dims(embedding) FROM catalog WHERE id = 'item-00007'")
            .unwrap();
        assert_eq!(
            row,
            format!("item-00007|{}|Item 7|Tools > Group 0|16", catalog.texts[7])
        );
        let stored = pg
            .psql("SELECT embedding::text FROM catalog WHERE id = 'item-00042'")
            .unwrap();
        let stored: Vec<f32> = stored
            .trim_matches(['[', ']'])
            .split(',')
            .map(|x| x.parse().unwrap())
            .collect();
        assert_eq!(stored, catalog.row(42));

        // Re-export into the same table with other data and parameters replaces it; the
        // open backend sees the new rows and no staging table is left behind.
        let smaller = Catalog::random(&mut rng, 120, 16);
        let options = ExportOptions {
            table: "catalog".into(),
            metric: Metric::InnerProduct,
            hnsw: PgHnswParams { m: 12, ef_construction: 48 },
            ..ExportOptions::default()
        };
        export(&url, &smaller.batch(), &options, &NoProgress).await.unwrap();
        export(&url, &smaller.batch(), &options, &NoProgress).await.unwrap();
        assert_eq!(backend.count().await.unwrap(), 120);
        let reopened = PgBackend::connect(&url, "catalog").await.unwrap();
        let info = reopened.info().await.unwrap();
        assert_eq!((info.items, info.metric), (120, Metric::InnerProduct));
        assert_eq!(info.hnsw, PgHnswParams { m: 12, ef_construction: 48 });
        assert_eq!(
            pg.psql("SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class WHERE relname LIKE 'catalog%'")
                .unwrap(),
            "catalog,catalog_fts,catalog_hnsw,catalog_pkey"
        );
        // Inner-product search ranks like cosine and reports the cosine.
        let q = smaller.row(5).to_vec();
        let hits = reopened
            .search("", Some(&q), 3, SearchMode::Semantic, CONVEX)
            .await
            .unwrap();
        assert_eq!(ids(&hits), smaller.exact_top(&q, 3));
        assert!((hits[0].score - 1.0).abs() < 1e-5, "{hits:?}");

        // Errors name the problem.
        let err = PgBackend::connect(&url, "missing").await.err().unwrap();
        assert!(matches!(err, Error::Schema(_)), "{err}");
        assert!(err.to_string().contains("table \"missing\" does not exist"), "{err}");
        let err = PgBackend::connect(&url, "Bad-Name").await.err().unwrap();
        assert!(err.to_string().contains("invalid table name \"Bad-Name\""), "{err}");
        pg.psql("CREATE TABLE plain (id text, text text)").unwrap();
        let err = PgBackend::connect(&url, "plain").await.err().unwrap();
        assert!(err.to_string().contains("has no column \"tsv\""), "{err}");

        let short = vec![0.25f32; 8];
        let err = reopened
            .search("drill", Some(&short), 5, SearchMode::Semantic, CONVEX)
            .await
            .unwrap_err();
        assert!(err.is_invalid_input(), "{err}");
        assert!(
            err.to_string()
                .contains("query embedding has 8 dimensions, table \"catalog\" holds 16-dimensional embeddings"),
            "{err}"
        );
        let err = reopened
            .search("drill", None, 5, SearchMode::Hybrid, CONVEX)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("hybrid search needs a query embedding"), "{err}");
        let err = reopened
            .search("drill", Some(&q), 0, SearchMode::Lexical, CONVEX)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("k must lie in [1, 1000], got 0"), "{err}");
        let bad_fusion = Fusion::Convex { alpha: 2.0 };
        let err = reopened
            .search("drill", Some(&q), 5, SearchMode::Hybrid, bad_fusion)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("fusion: alpha must lie in [0, 1]"), "{err}");

        // A failed export (bad HNSW parameters are caught before anything is written) leaves
        // the table alone; so does an unreachable server.
        let bad = ExportOptions {
            table: "catalog".into(),
            hnsw: PgHnswParams { m: 16, ef_construction: 8 },
            ..ExportOptions::default()
        };
        assert!(export(&url, &catalog.batch(), &bad, &NoProgress).await.is_err());
        assert_eq!(reopened.count().await.unwrap(), 120);
        let port = pg.port();
        drop(pg);
        let err = export(&url, &catalog.batch(), &options, &NoProgress)
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("connecting to postgres://postgres@127.0.0.1:{port}/postgres")),
            "{err}"
        );
    });
}

#[test]
fn semantic_search_matches_brute_force() {
    let pg = cluster();
    let url = pg.url();
    let mut rng = StdRng::seed_from_u64(2);
    let catalog = Catalog::random(&mut rng, 2000, 64);
    let queries = unit_vectors(&mut rng, 100, 64);
    runtime().block_on(async {
        let options = ExportOptions {
            table: "vectors".into(),
            hnsw: PgHnswParams {
                m: 16,
                ef_construction: 100,
            },
            ..ExportOptions::default()
        };
        export(&url, &catalog.batch(), &options, &NoProgress)
            .await
            .unwrap();
        let hnsw = PgBackend::connect_with(
            &url,
            "vectors",
            BackendOptions {
                pool_size: 4,
                ef_search: 200,
                ..BackendOptions::default()
            },
        )
        .await
        .unwrap();
        let exact = PgBackend::connect_with(
            &url,
            "vectors",
            BackendOptions {
                exact: true,
                ..BackendOptions::default()
            },
        )
        .await
        .unwrap();

        // All queries at once: the pool serves them concurrently.
        let searches = queries.chunks(64).map(|q| {
            let hnsw = &hnsw;
            async move {
                hnsw.search("", Some(q), 10, SearchMode::Semantic, CONVEX)
                    .await
            }
        });
        let results = futures_util::future::join_all(searches).await;
        let mut equal = 0;
        for (q, hits) in queries.chunks(64).zip(results) {
            let hits = hits.unwrap();
            assert_eq!(hits.len(), 10);
            if ids(&hits) == catalog.exact_top(q, 10) {
                equal += 1;
            }
            for h in &hits {
                let cos = catalog.cosine(q, catalog.index_of(&h.id));
                assert!(
                    (h.score - cos).abs() < 1e-5 && h.semantic == Some(h.score),
                    "{h:?} vs {cos}"
                );
            }
            assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
        }
        assert!(
            equal >= 99,
            "HNSW top-10 equals the exact top-10 for only {equal} of 100 queries"
        );

        for q in queries.chunks(64) {
            let hits = exact
                .search("", Some(q), 10, SearchMode::Semantic, CONVEX)
                .await
                .unwrap();
            assert_eq!(ids(&hits), catalog.exact_top(q, 10));
        }

        // More results than ef_search: raised for that search, still exact on this data.
        let q = &queries[..64];
        let narrow = PgBackend::connect_with(
            &url,
            "vectors",
            BackendOptions {
                ef_search: 10,
                ..BackendOptions::default()
            },
        )
        .await
        .unwrap();
        let hits = narrow
            .search("", Some(q), 50, SearchMode::Semantic, CONVEX)
            .await
            .unwrap();
        assert_eq!(hits.len(), 50);
        let top = catalog.exact_top(q, 50);
        let found = hits.iter().filter(|h| top.contains(&h.id)).count();
        assert!(found >= 48, "recall@50 {found}/50");
    });
}

#[test]
fn lexical_search_matches_any_token_and_ranks_full_matches_first() {
    let pg = cluster();
    let url = pg.url();
    let texts = [
        "cordless drill 18v brushless",
        "drill bit set for metal",
        "claw hammer with fiberglass handle",
        "cordless impact driver kit",
        "Cordless Drill",
        "garden hose",
    ];
    let items: Vec<Item> = (0..texts.len())
        .map(|i| Item::new(format!("t{i}"), format!("T{i}")))
        .collect();
    let texts: Vec<String> = texts.iter().map(|s| s.to_string()).collect();
    let mut rng = StdRng::seed_from_u64(3);
    let embeddings = unit_vectors(&mut rng, items.len(), 8);
    runtime().block_on(async {
        let batch = ExportBatch::new(&items, &texts, &embeddings).unwrap();
        let options = ExportOptions {
            table: "words".into(),
            ..ExportOptions::default()
        };
        export(&url, &batch, &options, &NoProgress).await.unwrap();
        let backend = PgBackend::connect(&url, "words").await.unwrap();

        let hits = backend
            .search("Cordless DRILL", None, 10, SearchMode::Lexical, CONVEX)
            .await
            .unwrap();
        let got = ids(&hits);
        // Both tokens first (the shortest text, an exact match, on top), then either token;
        // the hammer and the hose match no token and are not returned.
        assert_eq!(got.len(), 4, "{hits:?}");
        assert_eq!(got[0], "t4", "{hits:?}");
        assert_eq!(got[1], "t0", "{hits:?}");
        let mut rest = got[2..].to_vec();
        rest.sort();
        assert_eq!(rest, ["t1", "t3"]);
        assert!(
            hits.iter()
                .all(|h| h.lexical > 0.0 && h.score == h.lexical && h.semantic.is_none())
        );
        assert!(hits[1].lexical > hits[2].lexical, "{hits:?}");

        // With an embedding, lexical hits also carry the cosine.
        let q = &embeddings[8..16];
        let hits = backend
            .search("hammer", Some(q), 10, SearchMode::Lexical, CONVEX)
            .await
            .unwrap();
        assert_eq!(ids(&hits), ["t2"]);
        let cos: f32 = embeddings[16..24].iter().zip(q).map(|(a, b)| a * b).sum();
        assert!((hits[0].semantic.unwrap() - cos).abs() < 1e-5);

        // Punctuation and words found nowhere match nothing; an empty query neither.
        for query in ["", "!!! ???", "snowblower"] {
            let hits = backend
                .search(query, None, 10, SearchMode::Lexical, CONVEX)
                .await
                .unwrap();
            assert!(hits.is_empty(), "{query:?}: {hits:?}");
        }
        // Semantic hits report the lexical score of their text.
        let hits = backend
            .search(
                "garden",
                Some(&embeddings[40..48]),
                1,
                SearchMode::Semantic,
                CONVEX,
            )
            .await
            .unwrap();
        assert_eq!(hits[0].id, "t5");
        assert!(hits[0].lexical > 0.0);
    });
}

#[test]
fn hybrid_search_fuses_both_candidate_lists() {
    let pg = cluster();
    let url = pg.url();
    let mut rng = StdRng::seed_from_u64(4);
    let catalog = Catalog::random(&mut rng, 2000, 32);
    let queries = unit_vectors(&mut rng, 5, 32);
    runtime().block_on(async {
        let options = ExportOptions {
            table: "hybrid".into(),
            ..ExportOptions::default()
        };
        export(&url, &catalog.batch(), &options, &NoProgress)
            .await
            .unwrap();
        let n = 30;
        let backend = PgBackend::connect_with(
            &url,
            "hybrid",
            BackendOptions {
                exact: true,
                hybrid_candidates: n,
                ..BackendOptions::default()
            },
        )
        .await
        .unwrap();
        let fusions = [
            Fusion::Convex { alpha: 0.5 },
            Fusion::Convex { alpha: 0.8 },
            Fusion::Rrf {
                alpha: 0.5,
                k: 60.0,
            },
        ];
        for (qi, q) in queries.chunks(32).enumerate() {
            let text = format!("{} {}", WORDS[qi], WORDS[qi + 7]);
            // The candidates, scored independently: exact semantic top-n, lexical top-n, and
            // every lexical score from a lexical search deep enough to return all matches.
            let sem = catalog.exact_top(q, n);
            let lex_all = backend
                .search(&text, None, 1000, SearchMode::Lexical, CONVEX)
                .await
                .unwrap();
            assert!(
                lex_all.len() > n && lex_all.len() < 1000,
                "{}",
                lex_all.len()
            );
            let mut candidates: Vec<String> = sem.clone();
            candidates.extend(lex_all[..n].iter().map(|h| h.id.clone()));
            candidates.sort();
            candidates.dedup();
            let semantic: Vec<f32> = candidates
                .iter()
                .map(|id| catalog.cosine(q, catalog.index_of(id)))
                .collect();
            let lexical: Vec<f32> = candidates
                .iter()
                .map(|id| {
                    lex_all
                        .iter()
                        .find(|h| &h.id == id)
                        .map_or(0.0, |h| h.lexical)
                })
                .collect();
            let items: Vec<u32> = (0..candidates.len() as u32).collect();
            for fusion in fusions {
                let fused = fusion.fuse(&items, &semantic, &lexical);
                let mut expected: Vec<usize> = (0..candidates.len()).collect();
                expected.sort_by(|&a, &b| fused[b].total_cmp(&fused[a]).then(a.cmp(&b)));
                let k = 10;
                let hits = backend
                    .search(&text, Some(q), k, SearchMode::Hybrid, fusion)
                    .await
                    .unwrap();
                assert_eq!(hits.len(), k);
                for (h, &e) in hits.iter().zip(&expected) {
                    let i = candidates
                        .iter()
                        .position(|c| c == &h.id)
                        .unwrap_or_else(|| panic!("{} is not a candidate", h.id));
                    assert!(
                        (h.score - fused[e]).abs() < 1e-4,
                        "{fusion:?}: {h:?} vs {}",
                        fused[e]
                    );
                    assert!((h.semantic.unwrap() - semantic[i]).abs() < 1e-5, "{h:?}");
                    assert!((h.lexical - lexical[i]).abs() < 1e-6, "{h:?}");
                    if (fused[e] - fused[expected[k]]).abs() > 1e-4 {
                        // Away from near-ties the items themselves agree.
                        assert!(
                            hits.iter().any(|x| x.id == candidates[e]),
                            "{fusion:?}: missing {}",
                            candidates[e]
                        );
                    }
                }
                // alpha = 1 is semantic search.
                let pure = backend
                    .search(
                        &text,
                        Some(q),
                        k,
                        SearchMode::Hybrid,
                        Fusion::Convex { alpha: 1.0 },
                    )
                    .await
                    .unwrap();
                assert_eq!(ids(&pure), sem[..k]);
            }
        }
    });
}
