//! The LLM labeler against a scripted OpenAI-compatible server on loopback.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use strata_data::Labeler;
use strata_data::labeler::CachedLabeler;
use strata_labeling::llm::{Guideline, LlmConfig, LlmLabeler, OutputMode};

/// What the scripted server answers.
struct Reply {
    status: u16,
    body: String,
    retry_after: Option<&'static str>,
    delay: Duration,
}

impl Reply {
    fn ok(content: &str) -> Reply {
        Reply {
            status: 200,
            body: json!({
                "id": "x",
                "object": "chat.completion",
                "choices": [{ "index": 0, "message": { "role": "assistant", "content": content },
                              "finish_reason": "stop" }],
                "usage": { "prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13 }
            })
            .to_string(),
            retry_after: None,
            delay: Duration::ZERO,
        }
    }

    fn status(status: u16) -> Reply {
        Reply {
            status,
            body: json!({ "error": { "message": "scripted" } }).to_string(),
            retry_after: None,
            delay: Duration::ZERO,
        }
    }
}

/// One request as the server saw it.
#[derive(Clone, Debug)]
struct Seen {
    body: Value,
    auth: Option<String>,
    at: Instant,
}

impl Seen {
    fn user(&self) -> &str {
        self.body["messages"][1]["content"].as_str().unwrap()
    }
    /// The label the pair "wants": the digit after `want=` in the query.
    fn want(&self) -> char {
        let u = self.user();
        let k = u.find("want=").expect("query names its label");
        u[k + 5..].chars().next().unwrap()
    }
}

type Script = dyn Fn(&Seen, usize) -> Reply + Send + Sync;

/// A scripted chat-completions server on 127.0.0.1 (ephemeral port). The script gets each
/// request and the number of earlier requests for the same user message.
struct Server {
    server: Arc<tiny_http::Server>,
    seen: Arc<Mutex<Vec<Seen>>>,
    max_in_flight: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
    base: String,
}

impl Server {
    fn start(script: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) -> Server {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let port = server.server_addr().to_ip().unwrap().port();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let in_flight = Arc::new(AtomicUsize::new(0));
        let max_in_flight = Arc::new(AtomicUsize::new(0));
        let script: Arc<Script> = Arc::new(script);
        let (s, se, inf, mx) = (
            server.clone(),
            seen.clone(),
            in_flight.clone(),
            max_in_flight.clone(),
        );
        let thread = std::thread::spawn(move || {
            for mut req in s.incoming_requests() {
                let (se, inf, mx, script) = (se.clone(), inf.clone(), mx.clone(), script.clone());
                std::thread::spawn(move || {
                    let now = inf.fetch_add(1, Ordering::SeqCst) + 1;
                    mx.fetch_max(now, Ordering::SeqCst);
                    assert_eq!(req.url(), "/v1/chat/completions");
                    assert_eq!(*req.method(), tiny_http::Method::Post);
                    let mut text = String::new();
                    req.as_reader().read_to_string(&mut text).unwrap();
                    let auth = req
                        .headers()
                        .iter()
                        .find(|h| h.field.equiv("Authorization"))
                        .map(|h| h.value.to_string());
                    let seen = Seen {
                        body: serde_json::from_str(&text).unwrap(),
                        auth,
                        at: Instant::now(),
                    };
                    let earlier = {
                        let mut all = se.lock().unwrap();
                        let n = all.iter().filter(|s| s.user() == seen.user()).count();
                        all.push(seen.clone());
                        n
                    };
                    let reply = script(&seen, earlier);
                    std::thread::sleep(reply.delay);
                    let mut resp = tiny_http::Response::from_string(reply.body)
                        .with_status_code(reply.status)
                        .with_header(
                            "Content-Type: application/json"
                                .parse::<tiny_http::Header>()
                                .unwrap(),
                        );
                    if let Some(ra) = reply.retry_after {
                        resp = resp.with_header(
                            format!("Retry-After: {ra}")
                                .parse::<tiny_http::Header>()
                                .unwrap(),
                        );
                    }
                    inf.fetch_sub(1, Ordering::SeqCst);
                    let _ = req.respond(resp);
                });
            }
        });
        Server {
            server,
            seen,
            max_in_flight,
            thread: Some(thread),
            base: format!("http://127.0.0.1:{port}/v1"),
        }
    }

    fn requests(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn config(&self) -> LlmConfig {
        LlmConfig {
            concurrency: 2,
            timeout_secs: 5.0,
            backoff_initial_ms: 20,
            backoff_max_ms: 200,
            ..LlmConfig::new(self.base.clone(), "scripted-model")
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Answers every pair with its wanted label as JSON.
fn obedient(seen: &Seen, _: usize) -> Reply {
    Reply::ok(&format!("{{\"label\": {}}}", seen.want()))
}

/// Items "i0".."i{n}" and pairs wanting the labels `wants`.
fn make_pairs(wants: &[u8]) -> (HashMap<String, String>, Vec<(String, String)>) {
    let items = (0..wants.len())
        .map(|i| (format!("i{i}"), format!("item number {i}")))
        .collect();
    let pairs = wants
        .iter()
        .enumerate()
        .map(|(i, w)| (format!("query {i} want={w}"), format!("i{i}")))
        .collect();
    (items, pairs)
}

fn labeler(cfg: LlmConfig, items: HashMap<String, String>) -> LlmLabeler {
    LlmLabeler::new(cfg, Guideline::ecommerce(), items).unwrap()
}

#[test]
fn success_labels_every_pair_and_accounts_tokens_and_cost() {
    let server = Server::start(obedient);
    let wants = [2, 0, 1, 1, 0, 2, 2];
    let (items, pairs) = make_pairs(&wants);
    let var = "STRATA_TEST_LLM_KEY_SUCCESS";
    // SAFETY: a variable name used by this test only, set before any thread reads it.
    unsafe { std::env::set_var(var, "sk-test-123") };
    let cfg = LlmConfig {
        api_key_env: Some(var.into()),
        price_prompt_per_1k: 0.5,
        price_completion_per_1k: 2.0,
        ..server.config()
    };
    let l = labeler(cfg, items);
    let got = l.label(&pairs).unwrap();
    assert_eq!(got, wants.iter().map(|&w| Some(w)).collect::<Vec<_>>());
    let r = l.report();
    assert_eq!((r.requests, r.pairs, r.pairs_sent, r.labeled), (7, 7, 7, 7));
    assert_eq!(r.label_counts, [2, 2, 3]);
    assert_eq!(
        (r.prompt_tokens, r.completion_tokens, r.total_tokens),
        (70, 21, 91)
    );
    assert!((r.cost - (0.07 * 0.5 + 0.021 * 2.0)).abs() < 1e-12);
    let seen = server.seen();
    assert_eq!(seen.len(), 7);
    for s in &seen {
        assert_eq!(s.auth.as_deref(), Some("Bearer sk-test-123"));
        assert_eq!(s.body["model"], "scripted-model");
        assert_eq!(s.body["response_format"]["type"], "json_schema");
        assert_eq!(s.body["temperature"], 0.0);
        assert!(
            s.body["messages"][0]["content"]
                .as_str()
                .unwrap()
                .contains("substitute")
        );
    }
    assert!(server.max_in_flight.load(Ordering::SeqCst) <= 2);
}

#[test]
fn logprobs_give_per_class_probabilities() {
    let server = Server::start(|seen, _| {
        assert_eq!(seen.body["logprobs"], true);
        let mut r: Value = serde_json::from_str(&Reply::ok("{\"label\": 1}").body).unwrap();
        r["choices"][0]["logprobs"] = json!({"content": [
            {"token": "{\"label\": ", "logprob": 0.0, "top_logprobs": []},
            {"token": "1", "logprob": (0.7f64).ln(), "top_logprobs": [
                {"token": "1", "logprob": (0.7f64).ln()},
                {"token": "2", "logprob": (0.2f64).ln()},
                {"token": "0", "logprob": (0.1f64).ln()}
            ]}
        ]});
        Reply {
            body: r.to_string(),
            ..Reply::status(200)
        }
    });
    let (items, pairs) = make_pairs(&[1]);
    let cfg = LlmConfig {
        logprobs: true,
        ..server.config()
    };
    let l = labeler(cfg, items);
    let s = l.label_scored(&pairs).unwrap()[0].unwrap();
    assert_eq!(s.label, 1);
    assert!((s.probs[0] - 0.1).abs() < 1e-6 && (s.probs[2] - 0.2).abs() < 1e-6);
    assert!((s.confidence() - 0.7).abs() < 1e-6);
}

#[test]
fn missing_api_key_variable_is_a_clear_error() {
    let cfg = LlmConfig {
        api_key_env: Some("STRATA_TEST_LLM_KEY_UNSET_123".into()),
        ..LlmConfig::new("http://127.0.0.1:9/v1", "m")
    };
    let err = LlmLabeler::new(cfg, Guideline::ecommerce(), HashMap::new())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("STRATA_TEST_LLM_KEY_UNSET_123"), "{err}");
}

#[test]
fn rate_limit_is_retried_after_the_retry_after_delay() {
    let server = Server::start(|seen, earlier| {
        if earlier == 0 {
            Reply {
                retry_after: Some("1"),
                ..Reply::status(429)
            }
        } else {
            obedient(seen, earlier)
        }
    });
    let (items, pairs) = make_pairs(&[2]);
    let l = labeler(server.config(), items);
    assert_eq!(l.label(&pairs).unwrap(), vec![Some(2)]);
    let r = l.report();
    assert_eq!((r.requests, r.retries_rate_limited, r.labeled), (2, 1, 1));
    let seen = server.seen();
    // The backoff alone is at most 200 ms; the wait honours Retry-After: 1.
    let gap = seen[1].at - seen[0].at;
    assert!(gap >= Duration::from_millis(950), "retried after {gap:?}");
}

#[test]
fn server_errors_are_retried_with_backoff() {
    let server = Server::start(|seen, earlier| {
        if earlier < 2 {
            Reply::status(if earlier == 0 { 500 } else { 503 })
        } else {
            obedient(seen, earlier)
        }
    });
    let (items, pairs) = make_pairs(&[1, 0]);
    let l = labeler(server.config(), items);
    assert_eq!(l.label(&pairs).unwrap(), vec![Some(1), Some(0)]);
    let r = l.report();
    assert_eq!((r.requests, r.retries_server_error, r.labeled), (6, 4, 2));
}

#[test]
fn persistent_server_errors_leave_the_pair_unlabeled() {
    let server = Server::start(|_, _| Reply::status(502));
    let (items, pairs) = make_pairs(&[1]);
    let cfg = LlmConfig {
        max_retries: 2,
        ..server.config()
    };
    let l = labeler(cfg, items);
    assert_eq!(l.label(&pairs).unwrap(), vec![None]);
    let r = l.report();
    assert_eq!((r.requests, r.unlabeled_failed, r.labeled), (3, 1, 0));
}

#[test]
fn a_dead_server_stops_the_run() {
    let server = Server::start(|_, _| Reply::status(503));
    let (items, pairs) = make_pairs(&[1, 2, 0, 1, 2, 0, 1, 2, 0, 1]);
    let cfg = LlmConfig {
        max_retries: 1,
        max_consecutive_failures: 3,
        concurrency: 1,
        ..server.config()
    };
    let l = labeler(cfg, items);
    let err = format!("{:#}", l.label(&pairs).unwrap_err());
    assert!(err.contains("3 pairs in a row failed"), "{err}");
    assert_eq!(server.requests(), 3 * 2);
}

#[test]
fn a_timed_out_request_is_retried() {
    let server = Server::start(|seen, earlier| Reply {
        delay: if earlier == 0 {
            Duration::from_millis(1500)
        } else {
            Duration::ZERO
        },
        ..obedient(seen, earlier)
    });
    let (items, pairs) = make_pairs(&[2]);
    let cfg = LlmConfig {
        timeout_secs: 0.3,
        ..server.config()
    };
    let l = labeler(cfg, items);
    let t = Instant::now();
    assert_eq!(l.label(&pairs).unwrap(), vec![Some(2)]);
    assert!(
        t.elapsed() < Duration::from_millis(1400),
        "{:?}",
        t.elapsed()
    );
    let r = l.report();
    assert_eq!((r.requests, r.retries_timeout, r.labeled), (2, 1, 1));
}

#[test]
fn malformed_answers_are_retried_then_left_unlabeled() {
    // Pair 0: prose, then valid. Pair 1: never valid JSON. Pair 2: HTML body, not JSON at all.
    let server = Server::start(|seen, earlier| {
        let u = seen.user().to_string();
        if u.contains("query 0") {
            if earlier == 0 {
                Reply::ok("The label is 2.")
            } else {
                obedient(seen, earlier)
            }
        } else if u.contains("query 1") {
            Reply::ok("{\"label\": 2} since it matches")
        } else {
            Reply {
                body: "<html>oops</html>".into(),
                ..Reply::status(200)
            }
        }
    });
    let (items, pairs) = make_pairs(&[2, 2, 1]);
    let cfg = LlmConfig {
        malformed_retries: 2,
        ..server.config()
    };
    let l = labeler(cfg, items);
    assert_eq!(l.label(&pairs).unwrap(), vec![Some(2), None, None]);
    let r = l.report();
    assert_eq!(r.requests, 2 + 3 + 3);
    assert_eq!((r.labeled, r.unlabeled_malformed), (1, 2));
    assert_eq!(r.retries_malformed, 1 + 2 + 2);
}

#[test]
fn a_wrong_digit_is_never_guessed() {
    let server = Server::start(|seen, _| {
        let u = seen.user();
        Reply::ok(if u.contains("query 0") {
            "3"
        } else if u.contains("query 1") {
            "1"
        } else {
            "2."
        })
    });
    let (items, pairs) = make_pairs(&[2, 1, 2]);
    let cfg = LlmConfig {
        output: OutputMode::Digit,
        malformed_retries: 1,
        ..server.config()
    };
    let l = labeler(cfg, items);
    assert_eq!(l.label(&pairs).unwrap(), vec![None, Some(1), None]);
    let r = l.report();
    assert_eq!((r.requests, r.unlabeled_malformed), (2 + 1 + 2, 2));
    for s in server.seen() {
        assert!(s.body.get("response_format").is_none());
    }
    // JSON-schema mode rejects an out-of-range label the same way.
    let server = Server::start(|_, _| Reply::ok("{\"label\": 3}"));
    let (items, pairs) = make_pairs(&[2]);
    let cfg = LlmConfig {
        malformed_retries: 0,
        ..server.config()
    };
    let l = labeler(cfg, items);
    assert_eq!(l.label(&pairs).unwrap(), vec![None]);
}

#[test]
fn a_client_error_stops_the_run() {
    let server = Server::start(|_, _| Reply::status(401));
    let (items, pairs) = make_pairs(&[2, 1]);
    let l = labeler(server.config(), items);
    let err = format!("{:#}", l.label(&pairs).unwrap_err());
    assert!(err.contains("HTTP 401"), "{err}");
    assert!(server.requests() <= 2);
}

#[test]
fn unknown_items_are_an_error_before_any_request() {
    let server = Server::start(obedient);
    let (items, mut pairs) = make_pairs(&[2, 1]);
    pairs.push(("q want=1".into(), "no-such-item".into()));
    let l = labeler(server.config(), items);
    let err = l.label(&pairs).unwrap_err().to_string();
    assert!(err.contains("no-such-item"), "{err}");
    assert_eq!(server.requests(), 0);
}

#[test]
fn budget_caps_stop_cleanly() {
    let server = Server::start(obedient);
    let (items, pairs) = make_pairs(&[2, 1, 0, 2, 1]);
    let cfg = LlmConfig {
        max_pairs: Some(3),
        concurrency: 1,
        ..server.config()
    };
    let l = labeler(cfg, items.clone());
    assert_eq!(
        l.label(&pairs).unwrap(),
        vec![Some(2), Some(1), Some(0), None, None]
    );
    let r = l.report();
    assert!(r.budget_exhausted);
    assert_eq!((r.requests, r.skipped_budget), (3, 2));

    // 13 tokens a request: after 2 requests 26 < 30 tokens, after 3 requests 39 >= 30.
    let before = server.requests();
    let cfg = LlmConfig {
        max_tokens: Some(30),
        concurrency: 1,
        ..server.config()
    };
    let l = labeler(cfg, items);
    let got = l.label(&pairs).unwrap();
    assert_eq!(got, vec![Some(2), Some(1), Some(0), None, None]);
    let r = l.report();
    assert_eq!((r.total_tokens, r.skipped_budget), (39, 2));
    assert_eq!(server.requests() - before, 3);
}

#[test]
fn concurrency_is_bounded() {
    let server = Server::start(|seen, earlier| Reply {
        delay: Duration::from_millis(60),
        ..obedient(seen, earlier)
    });
    let wants: Vec<u8> = (0..16).map(|i| (i % 3) as u8).collect();
    let (items, pairs) = make_pairs(&wants);
    let cfg = LlmConfig {
        concurrency: 4,
        ..server.config()
    };
    let l = labeler(cfg, items);
    let got = l.label(&pairs).unwrap();
    assert_eq!(got, wants.iter().map(|&w| Some(w)).collect::<Vec<_>>());
    let peak = server.max_in_flight.load(Ordering::SeqCst);
    assert!((2..=4).contains(&peak), "peak concurrency {peak}");
}

#[test]
fn a_cache_means_no_pair_is_labeled_twice() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("labels.jsonl");
    let server = Server::start(obedient);
    let wants = [2, 1, 0, 0, 1, 2, 0, 1];
    let (items, pairs) = make_pairs(&wants);
    let expected: Vec<Option<u8>> = wants.iter().map(|&w| Some(w)).collect();
    let guideline = Guideline::ecommerce();
    for run in 0..2 {
        let l = labeler(server.config(), items.clone());
        let cached = CachedLabeler::open(l, &cache, &guideline.version).unwrap();
        assert_eq!(cached.label(&pairs).unwrap(), expected);
        let r = cached.inner().report();
        if run == 0 {
            assert_eq!((cached.misses(), r.requests), (8, 8));
        } else {
            assert_eq!((cached.hits(), cached.misses(), r.requests), (8, 0, 0));
        }
    }
    assert_eq!(server.requests(), 8);
    let mut users: Vec<String> = server.seen().iter().map(|s| s.user().to_string()).collect();
    users.sort();
    users.dedup();
    assert_eq!(users.len(), 8);
}

#[test]
fn labels_before_a_failure_are_persisted_and_the_run_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("labels.jsonl");
    let wants: Vec<u8> = (0..10).map(|i| (i % 3) as u8).collect();
    let (items, pairs) = make_pairs(&wants);
    let guideline = Guideline::ecommerce();
    {
        // The key is revoked after 6 requests: chunks of 3, one worker.
        let count = AtomicUsize::new(0);
        let server = Server::start(move |seen, earlier| {
            if count.fetch_add(1, Ordering::SeqCst) >= 6 {
                Reply::status(401)
            } else {
                obedient(seen, earlier)
            }
        });
        let cfg = LlmConfig {
            concurrency: 1,
            ..server.config()
        };
        let cached = CachedLabeler::open(labeler(cfg, items.clone()), &cache, &guideline.version)
            .unwrap()
            .with_chunk_size(3);
        assert!(cached.label(&pairs).is_err());
        assert_eq!(server.requests(), 7);
    }
    let server = Server::start(obedient);
    let cached =
        CachedLabeler::open(labeler(server.config(), items), &cache, &guideline.version).unwrap();
    assert_eq!(cached.cached(), 6);
    let got = cached.label(&pairs).unwrap();
    assert_eq!(got, wants.iter().map(|&w| Some(w)).collect::<Vec<_>>());
    assert_eq!((cached.hits(), cached.misses()), (6, 4));
    assert_eq!(server.requests(), 4);
}

#[test]
fn threads_sharing_a_cached_labeler_pay_once_per_pair() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(|seen, earlier| Reply {
        delay: Duration::from_millis(20),
        ..obedient(seen, earlier)
    });
    let wants: Vec<u8> = (0..12).map(|i| (i % 3) as u8).collect();
    let (items, pairs) = make_pairs(&wants);
    let cached = Arc::new(
        CachedLabeler::open(
            labeler(server.config(), items),
            dir.path().join("c.jsonl"),
            "v1",
        )
        .unwrap()
        .with_chunk_size(4),
    );
    let expected: Vec<Option<u8>> = wants.iter().map(|&w| Some(w)).collect();
    std::thread::scope(|s| {
        for t in 0..3 {
            let (cached, pairs, expected) = (cached.clone(), &pairs, &expected);
            s.spawn(move || {
                // Each thread asks in a different order.
                let mut order: Vec<usize> = (0..pairs.len()).collect();
                order.rotate_left(t * 4);
                let mine: Vec<(String, String)> = order.iter().map(|&i| pairs[i].clone()).collect();
                let got = cached.label(&mine).unwrap();
                for (k, &i) in order.iter().enumerate() {
                    assert_eq!(got[k], expected[i]);
                }
            });
        }
    });
    assert_eq!(server.requests(), 12);
    assert_eq!(cached.misses(), 12);
}
