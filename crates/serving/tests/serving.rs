//! Serving tests with tiny random-initialised models: index build/open, model mismatch,
//! incremental updates, and real servers on 127.0.0.1 (ephemeral ports).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use strata_data::{Item, Side, TextEncoder};
use strata_eval::from_data::{ItemTextConfig, catalog, qrels};
use strata_eval::{Criterion, EvalOptions, Fusion, HnswParams, System, derive_thresholds};
use strata_model::{Embedder, LoadOptions};
use strata_serving::server::{self, load_model};
use strata_serving::{
    BuildOptions, IndexBackend, ItemIndex, Quantization, ServedModel, ServerConfig, Update,
};

use strata_serving::testing::{
    TestServer, build_index as build, exhaustive_hnsw as hnsw, fixture_items as items,
    fixture_queries as queries, fixture_thresholds as thresholds, served, stamp, tiny_model,
};

#[test]
fn index_build_open_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let model = served(&tiny_model(tmp.path(), "m", 1));
    let items = items();
    let dir = tmp.path().join("idx");
    let opts = BuildOptions {
        hnsw: hnsw(),
        quantization: Some(Quantization::F16),
        thresholds: Some(thresholds()),
        ..Default::default()
    };
    let built = build(&dir, &model, &items, &opts);
    drop(built);
    let idx = ItemIndex::open(&dir).unwrap();
    let m = idx.manifest();
    assert_eq!((m.count, m.slots, m.dim), (items.len(), items.len(), 16));
    assert_eq!(m.item_text, "name+taxonomy");
    assert_eq!(m.model.fingerprint, model.fingerprint);
    assert_eq!(m.thresholds.as_ref(), Some(&thresholds()));
    assert_eq!(idx.len(), items.len());
    // Metadata and vectors: the item tower's embedding of the eval item text.
    let texts: Vec<String> = items
        .iter()
        .map(|i| ItemTextConfig::default().render(i))
        .collect();
    assert_eq!(texts[1], "cordless red drill, in tools > drills");
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let want = model.encoder.encode(&refs, Side::Item).unwrap();
    for (slot, (it, text)) in items.iter().zip(&texts).enumerate() {
        let meta = idx.item(slot as u32);
        assert_eq!((&meta.id, &meta.text, &meta.name), (&it.id, text, &it.name));
        assert_eq!(idx.slot_of(&it.id), Some(slot as u32));
        let got = idx.vector(slot as u32);
        for (a, b) in got.iter().zip(&want[slot * 16..(slot + 1) * 16]) {
            assert!((a - b).abs() < 1e-5);
        }
    }
    // The f16 copy holds the same values to half precision.
    let f16 = std::fs::read(dir.join("embeddings.f16")).unwrap();
    assert_eq!(f16.len(), items.len() * 16 * 2);
    for (i, c) in f16.chunks_exact(2).enumerate().step_by(7) {
        let v = half::f16::from_le_bytes([c[0], c[1]]).to_f32();
        assert!((v - idx.vector((i / 16) as u32)[i % 16]).abs() < 1e-3);
    }
    // Int8 quantization round trip.
    let (q, s) = strata_serving::index::quantize_int8(idx.vector(0), 16);
    for (j, x) in idx.vector(0).iter().enumerate() {
        assert!((q[j] as f32 * s[0] - x).abs() <= s[0] * 0.5 + 1e-6);
    }
    // Thresholds set after the build (from a later eval run), then cleared.
    drop(idx);
    let other =
        derive_thresholds(&[(0.7, 2), (0.3, 1), (0.0, 0)], Criterion::BalancedAccuracy).unwrap();
    ItemIndex::set_thresholds(&dir, Some(&other)).unwrap();
    let idx = ItemIndex::open(&dir).unwrap();
    assert_eq!(idx.manifest().thresholds.as_ref(), Some(&other));
    let on_disk: strata_eval::Thresholds = serde_json::from_str(
        &std::fs::read_to_string(idx.data_dir().join("thresholds.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(on_disk, other);
    // Each mutation is a new generation; the previous one is gone once the switch is done.
    assert_eq!(idx.data_dir(), dir.join("gen-1"));
    assert!(!dir.join("embeddings.f32").exists());
    ItemIndex::set_thresholds(&dir, None).unwrap();
    let idx = ItemIndex::open(&dir).unwrap();
    assert_eq!(idx.manifest().thresholds, None);
    assert!(!idx.data_dir().join("thresholds.json").exists());
    assert!(!dir.join("gen-1").exists());
    assert!(ItemIndex::verify(&dir).unwrap().problems.is_empty());
    drop(idx);
    // Building over an existing index is refused; a corrupt manifest is reported.
    let again = ItemIndex::build(&dir, &items, &*model.encoder, stamp(&model), &opts);
    assert!(format!("{:#}", again.err().unwrap()).contains("already holds an index"));
    std::fs::write(dir.join("manifest.json"), "{").unwrap();
    let e = ItemIndex::open(&dir).err().unwrap();
    assert!(format!("{e:#}").contains("not an index manifest"), "{e:#}");
}

#[test]
fn model_index_mismatch_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let a = served(&tiny_model(tmp.path(), "a", 1));
    let b = served(&tiny_model(tmp.path(), "b", 2));
    assert_ne!(a.fingerprint, b.fingerprint);
    let dir = tmp.path().join("idx");
    let idx = build(&dir, &a, &items(), &BuildOptions::default());
    let backend = Arc::new(IndexBackend::new(idx));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cfg = ServerConfig {
        port: 0,
        ..Default::default()
    };
    let e = rt
        .block_on(server::start(cfg, b, backend, false))
        .err()
        .unwrap();
    assert!(e.to_string().contains("model/index mismatch"), "{e}");
    let b = served(&tmp.path().join("b"));
    let upd = Update {
        add: vec![Item::new("new", "red saw")],
        ..Default::default()
    };
    let sb = stamp(&b);
    let e = ItemIndex::update(
        &dir,
        &upd,
        Some((&*b.encoder as &dyn TextEncoder, &sb)),
        &BuildOptions::default(),
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("model/index mismatch"), "{e}");

    // The same model at another precision may not add items to the index either; at the
    // index's own precision it may.
    let a_dir = tmp.path().join("a");
    let int8 = load_model(
        &a_dir,
        &strata_model::LoadOptions {
            precision: Some(strata_model::Precision::Int8),
            ..Default::default()
        },
        "cpu",
        strata_model::BatchLimits::default(),
    )
    .unwrap();
    let si = stamp(&int8);
    assert_eq!(si.precision, strata_model::Precision::Int8);
    let e = ItemIndex::update(
        &dir,
        &upd,
        Some((&*int8.encoder as &dyn TextEncoder, &si)),
        &BuildOptions::default(),
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("precision mismatch"), "{e}");
    let a = served(&a_dir);
    let sa = stamp(&a);
    let (idx, _) = ItemIndex::update(
        &dir,
        &upd,
        Some((&*a.encoder as &dyn TextEncoder, &sa)),
        &BuildOptions::default(),
    )
    .unwrap();
    assert_eq!(idx.manifest().model.precision, strata_model::Precision::F32);
}

fn rank_eq(what: &str, a: &[(String, f32)], b: &[(String, f32)]) {
    assert_eq!(a.len(), b.len(), "{what}: {a:?} vs {b:?}");
    for (i, ((ia, sa), (ib, sb))) in a.iter().zip(b).enumerate() {
        assert!((sa - sb).abs() < 1e-5, "{what} rank {i}: {sa} vs {sb}");
        // Equal ids, or a tie within rounding.
        assert!(
            ia == ib || b.iter().any(|(id, s)| id == ia && (s - sa).abs() < 1e-5),
            "{what} rank {i}: {ia} vs {ib}"
        );
    }
}

#[test]
fn incremental_updates_equal_a_fresh_build() {
    let tmp = tempfile::tempdir().unwrap();
    let model = served(&tiny_model(tmp.path(), "m", 3));
    let all = items();
    let (initial, later) = all.split_at(60);
    let dir = tmp.path().join("idx");
    let opts = BuildOptions {
        hnsw: hnsw(),
        quantization: Some(Quantization::Int8),
        ..Default::default()
    };
    build(&dir, &model, initial, &opts);
    let mut renamed = initial[5].clone();
    renamed.name = "pro gray rope".into();
    let st = stamp(&model);
    let m = Some((&*model.encoder as &dyn TextEncoder, &st));
    let upd = Update {
        add: later.to_vec(),
        replace: vec![renamed.clone()],
        delete: vec![initial[0].id.clone(), initial[7].id.clone()],
    };
    let (idx, report) = ItemIndex::update(&dir, &upd, m, &opts).unwrap();
    assert_eq!((report.added, report.replaced, report.deleted), (12, 1, 2));
    assert_eq!((report.count, report.slots), (70, 73));
    // A second update: delete an added item, add a deleted id back.
    let upd = Update {
        add: vec![initial[0].clone()],
        delete: vec![later[3].id.clone()],
        ..Default::default()
    };
    let (idx2, _) = ItemIndex::update(&dir, &upd, m, &opts).unwrap();
    drop(idx);
    assert_eq!(idx2.len(), 70);
    assert_eq!(
        std::fs::metadata(idx2.data_dir().join("embeddings.i8"))
            .unwrap()
            .len(),
        74 * 16
    );
    let verified = ItemIndex::verify(&dir).unwrap();
    assert!(verified.problems.is_empty(), "{:?}", verified.problems);
    assert!(verified.leftovers.is_empty(), "{:?}", verified.leftovers);
    // Errors name the item.
    let bad = Update {
        add: vec![initial[1].clone()],
        ..Default::default()
    };
    let e = ItemIndex::update(&dir, &bad, m, &opts).err().unwrap();
    assert!(e.to_string().contains(&initial[1].id), "{e}");
    let bad = Update {
        delete: vec!["nope".into()],
        ..Default::default()
    };
    assert!(ItemIndex::update(&dir, &bad, None, &opts).is_err());

    // A fresh build over the live items in slot order.
    let final_items: Vec<Item> = idx2
        .live_items()
        .map(|(_, m)| {
            let mut it = Item::new(m.id.clone(), m.name.clone());
            it.taxonomy = m.taxonomy.clone();
            it
        })
        .collect();
    assert!(final_items.iter().any(|i| i.name == "pro gray rope"));
    assert!(!final_items.iter().any(|i| i.id == later[3].id));
    let fresh = build(&tmp.path().join("fresh"), &model, &final_items, &opts);
    let named = |idx: &ItemIndex, hits: Vec<strata_eval::Hit>| -> Vec<(String, f32)> {
        hits.into_iter()
            .map(|h| (idx.item(h.item).id.clone(), h.score))
            .collect()
    };
    for q in queries() {
        let e = model.encoder.encode(&[&q], Side::Query).unwrap();
        let k = 20;
        rank_eq(
            &format!("exact {q}"),
            &named(&idx2, idx2.exact(&e, k).unwrap()),
            &named(&fresh, fresh.exact(&e, k).unwrap()),
        );
        rank_eq(
            &format!("hnsw {q}"),
            &named(&idx2, idx2.approximate(&e, k).unwrap()),
            &named(&fresh, fresh.approximate(&e, k).unwrap()),
        );
        rank_eq(
            &format!("bm25 {q}"),
            &named(&idx2, idx2.lexical(&q, k).unwrap()),
            &named(&fresh, fresh.lexical(&q, k).unwrap()),
        );
        let fusion = Fusion::Convex { alpha: 0.5 };
        let h = |idx: &ItemIndex| -> Vec<(String, f32)> {
            idx.hybrid(&q, &e, k, fusion, 1000)
                .unwrap()
                .into_iter()
                .map(|h| (idx.item(h.item).id.clone(), h.score))
                .collect()
        };
        rank_eq(&format!("hybrid {q}"), &h(&idx2), &h(&fresh));
    }
}

fn small_server(tmp: &Path, cfg: ServerConfig, exact: bool) -> (TestServer, Arc<dyn TextEncoder>) {
    let dir = tiny_model(tmp, "m", 5);
    let model = served(&dir);
    let opts = BuildOptions {
        hnsw: hnsw(),
        thresholds: Some(thresholds()),
        ..Default::default()
    };
    let idx = build(&tmp.join("idx"), &model, &items(), &opts);
    let mut backend = IndexBackend::new(idx);
    backend.exact_semantic = exact;
    let enc: Arc<dyn TextEncoder> =
        Arc::new(Embedder::load(&dir, &LoadOptions::default()).unwrap());
    (TestServer::start(model, backend, cfg), enc)
}

#[test]
fn every_endpoint_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = ServerConfig {
        port: 0,
        ..Default::default()
    };
    let (srv, enc) = small_server(tmp.path(), cfg, false);
    assert_eq!(srv.get("/health"), (200, r#"{"status":"ok"}"#.to_string()));
    let (s, info) = srv.get("/info");
    assert_eq!(s, 200);
    let info: Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["dim"], 16);
    assert_eq!(info["index"]["items"], 72);
    assert_eq!(info["max_input_tokens"], 16);
    assert_eq!(info["query_precision"], "f32");
    assert_eq!(info["index"]["item_precision"], "f32");

    // /embed: one text, a list, the item side.
    let (s, v) = srv.post("/embed", json!({"inputs": "red drill"}));
    assert_eq!(s, 200, "{v}");
    let want = enc.encode(&["red drill", "blue saw"], Side::Query).unwrap();
    let got: Vec<Vec<f32>> = serde_json::from_value(v).unwrap();
    assert_eq!(got.len(), 1);
    for (a, b) in got[0].iter().zip(&want[..16]) {
        assert!((a - b).abs() < 1e-5);
    }
    let (s, v) = srv.post(
        "/embed",
        json!({"inputs": ["red drill", "blue saw"], "normalize": true, "truncate": false}),
    );
    assert_eq!(s, 200);
    let got: Vec<Vec<f32>> = serde_json::from_value(v).unwrap();
    assert_eq!(got.len(), 2);
    for (a, b) in got.concat().iter().zip(&want) {
        assert!((a - b).abs() < 1e-5);
    }
    let (s, v) = srv.post(
        "/embed",
        json!({"inputs": "cordless red drill, in tools > drills", "side": "item"}),
    );
    assert_eq!(s, 200);
    let item_vec = enc
        .encode(&["cordless red drill, in tools > drills"], Side::Item)
        .unwrap();
    let got: Vec<Vec<f32>> = serde_json::from_value(v).unwrap();
    for (a, b) in got[0].iter().zip(&item_vec) {
        assert!((a - b).abs() < 1e-5);
    }

    // /v1/embeddings (OpenAI).
    let (s, v) = srv.post(
        "/v1/embeddings",
        json!({"input": ["red drill", "blue saw"], "model": "tiny", "encoding_format": "float"}),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], "tiny");
    assert_eq!(v["data"][1]["index"], 1);
    assert_eq!(v["data"][1]["object"], "embedding");
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 16);
    // [CLS] red drill [SEP] + [CLS] blue saw [SEP].
    assert_eq!(v["usage"]["prompt_tokens"], 8);
    assert_eq!(v["usage"]["total_tokens"], 8);

    // /search in every mode, with strata from the thresholds.
    for mode in ["semantic", "lexical", "hybrid"] {
        let r = srv.search(json!({"query": "red drill", "k": 5, "mode": mode}));
        assert_eq!(r.results.len(), 5, "{mode}");
        for (i, h) in r.results.iter().enumerate() {
            assert_eq!(h.rank, i + 1);
            let sem = h.semantic.unwrap();
            assert_eq!(h.stratum, Some(thresholds().classify(sem)));
            assert!(h.lexical.is_some());
            if i > 0 {
                assert!(r.results[i - 1].score >= h.score, "{mode} sorted");
            }
        }
        if mode == "lexical" {
            // BM25: items with both words first.
            assert!(
                r.results[0].text.contains("red drill"),
                "{:?}",
                r.results[0]
            );
        }
    }
    let all = srv.search(json!({"query": "red drill", "k": 72, "min_stratum": 0}));
    let top = srv.search(json!({"query": "red drill", "k": 72, "min_stratum": 2}));
    let n2 = all.results.iter().filter(|r| r.stratum == Some(2)).count();
    assert_eq!(top.results.len(), n2);
    assert!(top.results.iter().all(|r| r.stratum == Some(2)));

    // /metrics after the requests above.
    let (s, m) = srv.get("/metrics");
    assert_eq!(s, 200);
    assert!(
        m.contains(r#"strata_http_requests_total{route="/embed",status="200"} 3"#),
        "{m}"
    );
    assert!(
        m.contains("strata_http_request_duration_seconds_bucket"),
        "{m}"
    );
    assert!(m.contains("strata_embed_batch_size_count"), "{m}");
    // Every successful /search timed each of its stages once.
    let searches: f64 = m
        .lines()
        .find_map(|l| {
            l.strip_prefix(r#"strata_http_requests_total{route="/search",status="200"} "#)
        })
        .expect("a /search count")
        .parse()
        .unwrap();
    assert!(searches >= 5.0, "{m}");
    let stages = strata_serving::loadgen::stage_totals(&m);
    for stage in strata_serving::metrics::SEARCH_STAGES {
        let (seconds, count) = stages[stage];
        assert_eq!(count, searches, "{stage}: {m}");
        assert!(seconds > 0.0 && seconds.is_finite(), "{stage}: {m}");
    }
    assert_eq!(stages["queue"].1, searches, "{m}");
}

#[test]
fn bad_requests_get_json_errors_and_the_server_stays_up() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = ServerConfig {
        port: 0,
        api_key: Some("sesame".into()),
        ..Default::default()
    };
    let (srv, _) = small_server(tmp.path(), cfg, false);
    let check = |(status, v): (u16, Value), want: u16, kind: &str| {
        assert_eq!(status, want, "{v}");
        assert_eq!(v["error_type"], kind, "{v}");
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
    };
    let ok_body = r#"{"inputs": "red drill"}"#;
    // Authentication.
    check(srv.post_raw("/embed", ok_body, None), 401, "unauthorized");
    check(
        srv.post_raw("/embed", ok_body, Some("wrong")),
        401,
        "unauthorized",
    );
    check(
        srv.post_raw("/search", r#"{"query":"saw"}"#, None),
        401,
        "unauthorized",
    );
    let mut r = srv
        .agent
        .get(format!("{}/health", srv.base))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let _ = r.body_mut().read_to_string();
    // The scheme is case-insensitive; the token must match.
    for (auth, want) in [
        ("bearer sesame", 200),
        ("BEARER  sesame ", 200),
        ("Basic sesame", 401),
        ("bearer", 401),
        ("Bearer sesam", 401),
    ] {
        let mut r = srv
            .agent
            .post(format!("{}/embed", srv.base))
            .header("content-type", "application/json")
            .header("authorization", auth)
            .send(ok_body)
            .unwrap();
        assert_eq!(r.status().as_u16(), want, "{auth:?}");
        let _ = r.body_mut().read_to_string();
    }
    // /info names the model and index without their paths on the server.
    let mut r = srv
        .agent
        .get(format!("{}/info", srv.base))
        .header("authorization", "Bearer sesame")
        .call()
        .unwrap();
    let info: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    let location = info["index"]["location"].as_str().unwrap();
    let model = info["model"].as_str().unwrap();
    assert!(!location.contains('/') && !model.contains('/'), "{info}");
    assert!(
        !info.to_string().contains(&tmp.path().display().to_string()),
        "{info}"
    );
    // A truncated body is malformed JSON (400); absurd fusion constants are refused (422).
    check(
        srv.post_raw("/search", r#"{"query": "saw", "k": 3"#, Some("sesame")),
        400,
        "malformed_request",
    );
    check(
        srv.post_raw("/search", r#"{"query": "sa"#, Some("sesame")),
        400,
        "malformed_request",
    );
    for rrf_k in ["1e39", "1e7", "0", "-1"] {
        let body =
            format!(r#"{{"query": "saw", "mode": "hybrid", "fusion": "rrf", "rrf_k": {rrf_k}}}"#);
        check(
            srv.post_raw("/search", &body, Some("sesame")),
            422,
            "validation",
        );
    }
    // Empty input.
    check(srv.post("/embed", json!({"inputs": ""})), 422, "empty");
    check(srv.post("/embed", json!({"inputs": []})), 422, "empty");
    check(
        srv.post("/v1/embeddings", json!({"input": []})),
        422,
        "empty",
    );
    check(srv.post("/search", json!({"query": "  "})), 422, "empty");
    // Too many inputs, too long an input, too large a body.
    let many: Vec<&str> = vec!["red drill"; 10_000];
    check(
        srv.post("/embed", json!({ "inputs": many })),
        413,
        "validation",
    );
    let long = "a".repeat(1 << 20);
    check(
        srv.post("/embed", json!({ "inputs": long })),
        413,
        "validation",
    );
    check(
        srv.post("/search", json!({ "query": long })),
        413,
        "validation",
    );
    let huge = "a".repeat((2 << 20) + 1024);
    check(
        srv.post("/embed", json!({ "inputs": huge })),
        413,
        "validation",
    );
    // Longer than the model's 16 tokens without truncation.
    let words = "red drill ".repeat(20);
    check(
        srv.post("/embed", json!({"inputs": words, "truncate": false})),
        413,
        "validation",
    );
    let (s, _) = srv.post("/embed", json!({"inputs": words, "truncate": true}));
    assert_eq!(s, 200);
    // Wrong types, unknown mode, unknown side, bad parameters.
    check(srv.post("/embed", json!({"inputs": 5})), 422, "validation");
    check(
        srv.post("/embed", json!({"inputs": [1, 2]})),
        422,
        "validation",
    );
    check(
        srv.post("/embed", json!({"text": "red"})),
        422,
        "validation",
    );
    check(
        srv.post("/embed", json!({"inputs": "red", "side": "left"})),
        422,
        "validation",
    );
    check(
        srv.post("/embed", json!({"inputs": "red", "normalize": false})),
        422,
        "validation",
    );
    check(
        srv.post("/search", json!({"query": "red", "mode": "fuzzy"})),
        422,
        "validation",
    );
    check(
        srv.post("/search", json!({"query": "red", "k": "ten"})),
        422,
        "validation",
    );
    check(
        srv.post("/search", json!({"query": "red", "k": 0})),
        422,
        "validation",
    );
    check(
        srv.post(
            "/search",
            json!({"query": "red", "mode": "hybrid", "alpha": 2.0}),
        ),
        422,
        "validation",
    );
    check(
        srv.post("/search", json!({"query": "red", "min_stratum": 3})),
        422,
        "validation",
    );
    check(
        srv.post(
            "/v1/embeddings",
            json!({"input": "red", "encoding_format": "base64"}),
        ),
        422,
        "validation",
    );
    // Malformed JSON.
    check(
        srv.post_raw("/embed", r#"{"inputs": "red"#, Some("sesame")),
        400,
        "malformed_request",
    );
    check(
        srv.post_raw("/search", "not json", Some("sesame")),
        400,
        "malformed_request",
    );
    // Unknown route and method.
    check(srv.post("/nope", json!({})), 404, "not_found");
    let (s, body) = srv.get("/embed");
    assert_eq!(s, 405);
    assert!(body.contains("method_not_allowed"));
    // Still up: a valid request succeeds, and the errors were counted.
    let (s, v) = srv.post("/embed", json!({"inputs": ["red drill"]}));
    assert_eq!(s, 200, "{v}");
    let r = srv.search(json!({"query": "red drill", "mode": "hybrid"}));
    assert_eq!(r.results.len(), 10);
    let (_, m) = srv.get("/metrics");
    assert!(
        m.contains(r#"strata_http_requests_total{route="/embed",status="413"} 4"#),
        "{m}"
    );
    assert!(
        m.contains(r#"strata_http_requests_total{route="/embed",status="401"} 5"#),
        "{m}"
    );
}

#[test]
fn semantic_search_matches_exact_search() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = ServerConfig {
        port: 0,
        ..Default::default()
    };
    let (srv, enc) = small_server(tmp.path(), cfg, false);
    let idx = ItemIndex::open(&tmp.path().join("idx")).unwrap();
    let k = 10;
    let mut same = 0;
    let qs = queries();
    for q in &qs {
        let r = srv.search(json!({"query": q, "k": k, "mode": "semantic"}));
        let e = enc.encode(&[q], Side::Query).unwrap();
        let exact: Vec<(String, f32)> = idx
            .exact(&e, k)
            .unwrap()
            .into_iter()
            .map(|h| (idx.item(h.item).id.clone(), h.score))
            .collect();
        let got: Vec<(String, f32)> = r.results.iter().map(|h| (h.id.clone(), h.score)).collect();
        rank_eq(q, &got, &exact);
        same += 1;
    }
    assert_eq!(same, qs.len());
}

#[test]
fn hybrid_search_equals_the_eval_hybrid_ranking() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = ServerConfig {
        port: 0,
        ..Default::default()
    };
    let (srv, enc) = small_server(tmp.path(), cfg, false);
    // Judgments for the queries: the items whose name contains the query's last word.
    let its = items();
    let qs = queries();
    let mut judgments = Vec::new();
    for q in &qs {
        let last = q.split(' ').next_back().unwrap();
        for it in &its {
            let label = if it.name.contains(q.as_str()) {
                2
            } else if it.name.contains(last) {
                1
            } else {
                0
            };
            judgments.push(strata_data::Judgment::new(q.clone(), it.id.clone(), label));
        }
    }
    let data = strata_data::Catalog::from_items(its).unwrap();
    let cat = catalog(&data, &ItemTextConfig::default()).unwrap();
    let qrels = qrels(&judgments).unwrap();
    for (fusion, body) in [
        (
            Fusion::Convex { alpha: 0.5 },
            json!({"fusion": "convex", "alpha": 0.5}),
        ),
        (
            Fusion::Rrf {
                alpha: 0.3,
                k: 60.0,
            },
            json!({"fusion": "rrf", "alpha": 0.3, "rrf_k": 60.0}),
        ),
    ] {
        let system = System::Hybrid {
            encoder: &*enc,
            fusion,
            candidates: 1000,
        };
        let res = strata_eval::evaluate(&cat, &qrels, system, &EvalOptions::default()).unwrap();
        assert_eq!(res.queries.len(), qs.len());
        for (q, hits) in res.queries.iter().zip(&res.rankings) {
            let mut b = body.clone();
            b["query"] = json!(q);
            b["k"] = json!(100);
            b["mode"] = json!("hybrid");
            let r = srv.search(b);
            let want: Vec<(String, f32)> = hits
                .iter()
                .map(|h| (res.item_ids[h.item as usize].clone(), h.score))
                .collect();
            let got: Vec<(String, f32)> =
                r.results.iter().map(|h| (h.id.clone(), h.score)).collect();
            rank_eq(&format!("{fusion:?} {q}"), &got, &want);
        }
    }
}

/// The same /search from an index directory and from the table `strata index export` writes
/// into a real PostgreSQL + pgvector (scripts/setup-postgres.sh installs it): semantic results
/// equal (the small graphs are searched exhaustively on both sides), strata from the same
/// thresholds, a model mismatch refused, and lexical/hybrid answered from Postgres full-text
/// search.
#[test]
fn hnsw_rebuild_keeps_tombstones_out_and_matches_exact_search() {
    let tmp = tempfile::tempdir().unwrap();
    let dir_m = tiny_model(tmp.path(), "m", 3);
    let model = served(&dir_m);
    let dir = tmp.path().join("idx");
    let opts = BuildOptions {
        hnsw: HnswParams {
            connectivity: 4,
            expansion_add: 8,
            expansion_search: 8,
        },
        ..Default::default()
    };
    drop(build(&dir, &model, &items(), &opts));
    let update = Update {
        delete: vec!["i000".into(), "i311".into()],
        ..Default::default()
    };
    ItemIndex::update(&dir, &update, None, &BuildOptions::default()).unwrap();
    let idx = ItemIndex::rebuild_hnsw(&dir, hnsw(), false).unwrap();
    assert_eq!(idx.manifest().hnsw, hnsw());
    assert_eq!(idx.len(), 70);
    let enc = &*model.encoder;
    for q in queries() {
        let e = enc.encode(&[q.as_str()], Side::Query).unwrap();
        let approx = idx.approximate(&e, 10).unwrap();
        let exact = idx.exact(&e, 10).unwrap();
        assert_eq!(approx.len(), 10, "{q}");
        let ids = |h: &[strata_eval::Hit]| {
            h.iter()
                .map(|h| (idx.item(h.item).id.clone(), h.score))
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&approx), ids(&exact), "{q}");
        assert!(
            approx
                .iter()
                .all(|h| !["i000", "i311"].contains(&idx.item(h.item).id.as_str()))
        );
    }
}

/// Every item can be found by its own vector, even in a catalog full of duplicates where the
/// HNSW graph leaves nodes unreachable: those are listed in `hnsw_orphans.json` and scored
/// exactly by every approximate search.
#[test]
fn every_item_is_retrievable_despite_duplicates() {
    let tmp = tempfile::tempdir().unwrap();
    let model = served(&tiny_model(tmp.path(), "m", 4));
    let mut catalog = items();
    for i in 0..150 {
        let mut it = Item::new(format!("dup{i}"), "red drill");
        it.taxonomy = vec!["tools".into(), "drills".into()];
        catalog.push(it);
    }
    let opts = BuildOptions {
        hnsw: HnswParams {
            connectivity: 2,
            expansion_add: 4,
            expansion_search: 4,
        },
        ..Default::default()
    };
    let idx = build(&tmp.path().join("idx"), &model, &catalog, &opts);
    let orphans: Vec<u32> = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join("idx/hnsw_orphans.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(orphans, idx.orphans());
    // With degree 2 most duplicates are unreachable: the test exercises the orphan path.
    assert!(!orphans.is_empty());
    assert!(orphans.iter().all(|&s| (s as usize) < catalog.len()));
    for slot in 0..catalog.len() as u32 {
        let v = idx.vector(slot).to_vec();
        // Items tied with this one (its duplicates) all score the same; ask for all of them.
        let ties = (0..catalog.len() as u32)
            .filter(|&o| idx.semantic_score(&v, o) >= idx.semantic_score(&v, slot) - 1e-6)
            .count();
        let hits = idx.approximate(&v, ties).unwrap();
        assert!(
            hits.iter().any(|h| h.item == slot),
            "item {} (slot {slot}, {} orphans) is not retrievable by its own vector",
            idx.item(slot).id,
            orphans.len()
        );
    }
}

/// What a crash test compares: the manifest's counts, graph parameters and thresholds, the
/// live items with their vectors in slot order, and every query's exact, approximate and
/// lexical top 5.
type Snapshot = (String, Vec<(String, String, Vec<f32>)>, Vec<Vec<String>>);

fn snapshot(dir: &Path, model: &ServedModel) -> Snapshot {
    let idx = ItemIndex::open(dir).unwrap();
    let m = idx.manifest();
    let head = format!(
        "count {} slots {} hnsw {:?} thresholds {:?}",
        m.count, m.slots, m.hnsw, m.thresholds
    );
    let items = idx
        .live_items()
        .map(|(s, it)| (it.id.clone(), it.text.clone(), idx.vector(s).to_vec()))
        .collect();
    let mut results = Vec::new();
    for q in queries() {
        let v = model.encoder.encode(&[q.as_str()], Side::Query).unwrap();
        let ids = |hits: Vec<strata_eval::Hit>| -> Vec<String> {
            hits.iter().map(|h| idx.item(h.item).id.clone()).collect()
        };
        results.push(ids(idx.exact(&v, 5).unwrap()));
        results.push(ids(idx.approximate(&v, 5).unwrap()));
        results.push(ids(idx.lexical(&q, 5).unwrap()));
    }
    (head, items, results)
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
}

/// The mutations the crash test interrupts.
const MUTATIONS: [&str; 5] = ["add", "replace", "delete", "hnsw", "thresholds"];

fn mutate(op: &str, dir: &Path, model: &ServedModel) {
    let all = items();
    let (initial, later) = all.split_at(60);
    let st = stamp(model);
    let m = Some((&*model.encoder as &dyn TextEncoder, &st));
    let opts = BuildOptions::default();
    match op {
        "add" => {
            let upd = Update {
                add: later.to_vec(),
                ..Default::default()
            };
            ItemIndex::update(dir, &upd, m, &opts).unwrap();
        }
        "replace" => {
            let mut renamed = initial[5].clone();
            renamed.name = "pro gray rope".into();
            let upd = Update {
                replace: vec![renamed],
                add: later[..2].to_vec(),
                ..Default::default()
            };
            ItemIndex::update(dir, &upd, m, &opts).unwrap();
        }
        "delete" => {
            let upd = Update {
                delete: vec![initial[0].id.clone(), initial[7].id.clone()],
                ..Default::default()
            };
            ItemIndex::update(dir, &upd, None, &opts).unwrap();
        }
        "hnsw" => {
            let params = HnswParams {
                connectivity: 8,
                ..hnsw()
            };
            ItemIndex::rebuild_hnsw(dir, params, false).unwrap();
        }
        "thresholds" => ItemIndex::set_thresholds(dir, Some(&thresholds())).unwrap(),
        other => panic!("unknown mutation {other}"),
    }
}

const CRASH_CHILD: &str = "STRATA_TEST_CRASH_CHILD";

/// The child process of `index_mutations_are_atomic_under_a_crash_at_every_phase`: applies
/// the mutation `STRATA_TEST_CRASH_CHILD` names ("op|index|model") and aborts at the phase
/// `STRATA_FAILPOINT` names.
#[test]
#[ignore = "run as a child process by index_mutations_are_atomic_under_a_crash_at_every_phase"]
fn crash_child() {
    let spec = std::env::var(CRASH_CHILD).expect("run by the crash test");
    let parts: Vec<&str> = spec.split('|').collect();
    let model = served(Path::new(parts[2]));
    mutate(parts[0], Path::new(parts[1]), &model);
}

/// Every index mutation is killed (abort, as `kill -9`) at every phase of its commit; the
/// index must then verify clean, equal the old index before the manifest switch and the new
/// one after it, serve, and take the same mutation again.
#[test]
fn index_mutations_are_atomic_under_a_crash_at_every_phase() {
    let tmp = tempfile::tempdir().unwrap();
    let model_dir = tiny_model(tmp.path(), "m", 5);
    let model = served(&model_dir);
    let all = items();
    let base = tmp.path().join("base");
    let opts = BuildOptions {
        hnsw: hnsw(),
        quantization: Some(Quantization::Int8),
        ..Default::default()
    };
    build(&base, &model, &all[..60], &opts);
    let old = snapshot(&base, &model);
    for op in MUTATIONS {
        let done = tmp.path().join(format!("{op}-done"));
        copy_dir(&base, &done);
        mutate(op, &done, &model);
        let new = snapshot(&done, &model);
        assert_ne!(old, new, "{op} changes the index");
        for phase in strata_serving::generation::PHASES {
            let case = tmp.path().join(format!("{op}-{phase}"));
            copy_dir(&base, &case);
            let status = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["crash_child", "--exact", "--ignored", "--test-threads=1"])
                .env(
                    CRASH_CHILD,
                    format!("{op}|{}|{}", case.display(), model_dir.display()),
                )
                .env("STRATA_FAILPOINT", phase)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .unwrap();
            let what = format!("{op} killed at {phase}");
            let inside_update = !matches!(
                phase,
                "index-embeddings" | "index-hnsw" | "index-bm25" | "index-items"
            );
            if op == "add" || inside_update {
                assert!(!status.success(), "{what}: the failpoint was not reached");
            }
            let report = ItemIndex::verify(&case).unwrap();
            assert!(report.problems.is_empty(), "{what}: {:?}", report.problems);
            let committed = status.success() || phase == "index-committed";
            let got = snapshot(&case, &model);
            if committed {
                assert!(got == new, "{what}: not the new index");
            } else {
                assert!(got == old, "{what}: not the old index");
                assert!(!report.leftovers.is_empty(), "{what}: no leftovers");
                // The same mutation again completes, leftovers and all.
                mutate(op, &case, &model);
                assert!(snapshot(&case, &model) == new, "{what}: rerun");
            }
            let after = ItemIndex::verify(&case).unwrap();
            let repaired = ItemIndex::repair(&case, false).unwrap();
            assert_eq!(repaired.action, None, "{what}");
            assert!(
                ItemIndex::verify(&case).unwrap().leftovers.is_empty(),
                "{what}: {after:?}"
            );
            std::fs::remove_dir_all(&case).unwrap();
        }
    }
}

/// An index left inconsistent by an update that was killed before updates were crash-safe
/// (vectors appended, the rest unchanged) is refused with a pointer to `index repair`, and
/// repair brings back the old index without a model.
#[test]
fn repair_recovers_an_index_an_interrupted_update_left_inconsistent() {
    let tmp = tempfile::tempdir().unwrap();
    let model = served(&tiny_model(tmp.path(), "m", 6));
    let dir = tmp.path().join("idx");
    let all = items();
    build(
        &dir,
        &model,
        &all[..60],
        &BuildOptions {
            hnsw: hnsw(),
            ..Default::default()
        },
    );
    let old = snapshot(&dir, &model);
    let extra = model
        .encoder
        .encode(&["red rope", "blue rope"], Side::Item)
        .unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("embeddings.f32"))
        .unwrap();
    std::io::Write::write_all(
        &mut f,
        &extra
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    drop(f);
    let e = ItemIndex::open(&dir).err().unwrap();
    assert!(
        format!("{e:#}").contains("62 slots") || format!("{e:#}").contains("expected 60"),
        "{e:#}"
    );
    let report = ItemIndex::verify(&dir).unwrap();
    assert_eq!(report.problems.len(), 1, "{report:?}");
    let repaired = ItemIndex::repair(&dir, false).unwrap();
    assert!(
        repaired.action.as_deref().unwrap().contains("2 surplus"),
        "{repaired:?}"
    );
    assert_eq!((repaired.count, repaired.slots), (60, 60));
    assert!(snapshot(&dir, &model) == old);
    // A damaged item file is beyond repair and says so.
    let data = ItemIndex::open(&dir).unwrap().data_dir().to_path_buf();
    std::fs::write(data.join("items.jsonl"), "{\"id\": 1}\n").unwrap();
    let e = ItemIndex::repair(&dir, false).err().unwrap();
    assert!(format!("{e:#}").contains("rebuild the index"), "{e:#}");
}

/// Reads from `s` until the server closes the connection; returns what it sent and how long
/// that took (bounded by `limit`, which fails the test).
fn read_until_closed(s: &mut std::net::TcpStream, limit: Duration) -> (String, Duration) {
    use std::io::Read;
    let t = std::time::Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                assert!(t.elapsed() < limit, "still open after {:?}", t.elapsed());
            }
            Err(_) => break, // reset by the server: closed too
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), t.elapsed())
}

/// Silent, half-sent, idle and slow-body clients are disconnected by the header and body
/// timeouts, and connections past the cap wait for a free slot instead of being served at
/// once.
#[test]
fn slow_and_silent_clients_are_disconnected() {
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let cfg = ServerConfig {
        port: 0,
        header_timeout: Duration::from_millis(800),
        body_timeout: Duration::from_millis(800),
        max_connections: 3,
        ..Default::default()
    };
    let (srv, _) = small_server(tmp.path(), cfg, false);
    let addr = srv.base.trim_start_matches("http://").to_string();
    let limit = Duration::from_secs(20);
    // Sends nothing.
    let mut silent = std::net::TcpStream::connect(&addr).unwrap();
    let (_, waited) = read_until_closed(&mut silent, limit);
    assert!(waited >= Duration::from_millis(700), "{waited:?}");
    // Half its headers.
    let mut half = std::net::TcpStream::connect(&addr).unwrap();
    half.write_all(b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: appl")
        .unwrap();
    read_until_closed(&mut half, limit);
    // One request, then idle on a keep-alive connection.
    let mut idle = std::net::TcpStream::connect(&addr).unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (text, _) = read_until_closed(&mut idle, limit);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    // A body that trickles in: 408 with the JSON error.
    let mut slow = std::net::TcpStream::connect(&addr).unwrap();
    slow.write_all(
        b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"inp",
    )
    .unwrap();
    let (text, _) = read_until_closed(&mut slow, limit);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"error_type\":\"timeout\""), "{text}");
    // Three silent connections take every slot: a real request waits until the header
    // timeout frees one, then succeeds.
    let holders: Vec<_> = (0..3)
        .map(|_| std::net::TcpStream::connect(&addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let t = std::time::Instant::now();
    assert_eq!(srv.get("/health").0, 200);
    assert!(
        t.elapsed() >= Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    drop(holders);
    // The server still answers at once afterwards.
    assert_eq!(srv.get("/health").0, 200);
}
