//! The HTTP server on the pgvector backend answers like the server on strata's own index:
//! an index exported to a real PostgreSQL + pgvector cluster on loopback (install it with
//! scripts/setup-postgres.sh) serves the same semantic search, and lexical and hybrid results
//! carry the index's cosines.

use std::sync::Arc;

use serde_json::json;
use strata_data::progress::NoProgress;
use strata_serving::server;
use strata_serving::testing::{
    TestServer, build_index as build, exhaustive_hnsw as hnsw, fixture_items as items,
    fixture_queries as queries, fixture_thresholds as thresholds, served, test_runtime, tiny_model,
};
use strata_serving::{
    BuildOptions, IndexBackend, ItemIndex, SearchBackend, SearchResponse, ServerConfig,
};
use strata_serving_postgres::testing::PgCluster;
use strata_serving_postgres::{
    BackendOptions, ExportOptions, PgHnswParams as PgHnsw, PgSearchBackend, export_index,
};

#[test]
fn pgvector_backend_serves_the_same_search_as_the_index() {
    let pg = PgCluster::start().unwrap_or_else(|e| panic!("could not start PostgreSQL: {e}"));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny_model(tmp.path(), "m", 5);
    let model = served(&dir);
    let opts = BuildOptions {
        hnsw: hnsw(),
        thresholds: Some(thresholds()),
        ..Default::default()
    };
    let idx = build(&tmp.path().join("idx"), &model, &items(), &opts);
    let rt = test_runtime();
    let export_opts = ExportOptions {
        table: "served_items".into(),
        hnsw: PgHnsw {
            m: 16,
            ef_construction: 200,
        },
        ..Default::default()
    };
    let report = rt
        .block_on(export_index(&pg.url(), &idx, &export_opts, &NoProgress))
        .unwrap();
    assert_eq!(report.items, 72);
    let pg_opts = BackendOptions {
        ef_search: 200,
        ..Default::default()
    };
    let backend = rt
        .block_on(PgSearchBackend::connect(
            &pg.url(),
            "served_items",
            pg_opts.clone(),
        ))
        .unwrap();
    assert_eq!(backend.metadata().model.fingerprint, model.fingerprint);
    assert_eq!(backend.metadata().thresholds, Some(thresholds()));
    let info = backend.info();
    assert_eq!(
        (info.kind.as_str(), info.items, info.dim),
        ("pgvector", 72, 16)
    );

    // Another model is refused before the server starts.
    let other = served(&tiny_model(tmp.path(), "other", 6));
    let refused = rt.block_on(server::start(
        ServerConfig {
            port: 0,
            ..Default::default()
        },
        other,
        Arc::new(backend),
        false,
    ));
    let msg = format!(
        "{:#}",
        refused.err().expect("a model mismatch must be refused")
    );
    assert!(msg.contains("model/index mismatch"), "{msg}");

    let backend = rt
        .block_on(PgSearchBackend::connect(&pg.url(), "served_items", pg_opts))
        .unwrap();
    let cfg = ServerConfig {
        port: 0,
        ..Default::default()
    };
    let pg_srv = TestServer::start_on(rt, served(&dir), Arc::new(backend), cfg.clone());
    let idx = ItemIndex::open(&tmp.path().join("idx")).unwrap();
    let mut exact = IndexBackend::new(idx);
    exact.exact_semantic = true;
    let idx_srv = TestServer::start(model, exact, cfg);

    for q in queries() {
        let body = json!({"query": q, "k": 10, "mode": "semantic"});
        let a = idx_srv.search(body.clone());
        let b = pg_srv.search(body);
        let ids = |r: &SearchResponse| r.results.iter().map(|h| h.id.clone()).collect::<Vec<_>>();
        // Ties in cosine may order differently; compare scores rank by rank and id sets.
        assert_eq!(a.results.len(), b.results.len(), "{q}");
        for (x, y) in a.results.iter().zip(&b.results) {
            assert!((x.score - y.score).abs() < 1e-4, "{q}: {x:?} vs {y:?}");
            assert_eq!(x.stratum, y.stratum, "{q}: {x:?} vs {y:?}");
        }
        let mut sa = ids(&a);
        let mut sb = ids(&b);
        let last = a.results.last().unwrap().score;
        // Items tied with the 10th score may swap in or out; compare the rest.
        sa.retain(|id| {
            a.results
                .iter()
                .any(|h| &h.id == id && h.score > last + 1e-4)
        });
        sb.retain(|id| {
            b.results
                .iter()
                .any(|h| &h.id == id && h.score > last + 1e-4)
        });
        sa.sort();
        sb.sort();
        assert_eq!(sa, sb, "{q}");

        // Lexical and hybrid: answered from full-text search, every result scored on both
        // sides, the semantic score being the item's cosine from the index.
        for mode in ["lexical", "hybrid"] {
            let r = pg_srv.search(json!({"query": q, "k": 5, "mode": mode}));
            assert!(!r.results.is_empty(), "{mode} {q}");
            for h in &r.results {
                let sem = h.semantic.unwrap();
                assert!(h.lexical.is_some());
                let e = exact_score(&idx_srv, &q, &h.id);
                assert!((sem - e).abs() < 1e-4, "{mode} {q} {}: {sem} vs {e}", h.id);
            }
        }
    }
    let (s, info) = pg_srv.get("/info");
    assert_eq!(s, 200);
    assert!(info.contains("pgvector"), "{info}");
}

/// The semantic score the index server gives item `id` for `q` (searching all 72 items).
fn exact_score(srv: &TestServer, q: &str, id: &str) -> f32 {
    let r = srv.search(json!({"query": q, "k": 72, "mode": "semantic"}));
    r.results.iter().find(|h| h.id == id).unwrap().score
}
