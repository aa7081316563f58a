//! A bounded load generator for a strata server on a loopback address: a fixed number of
//! requests under a duration cap, at a target rate (open loop) or as fast as `concurrency`
//! connections allow, reporting throughput, latency percentiles and errors.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde::Serialize;
use serde_json::json;

use crate::backend::Mode;

/// The endpoint under load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// `POST /embed` with one query.
    Embed,
    /// `POST /search` with one query.
    Search,
}

/// A load run.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// Base URL, e.g. `http://127.0.0.1:8080` (loopback only).
    pub url: String,
    pub target: Target,
    /// Requests to send.
    pub requests: usize,
    /// Stop sending after this long.
    pub max_duration: Duration,
    /// Requests per second (open loop); `None`: as fast as possible.
    pub rate: Option<f64>,
    /// Connections (worker threads).
    pub concurrency: usize,
    /// Query texts, used in turn.
    pub queries: Vec<String>,
    /// Search mode and depth.
    pub mode: Mode,
    pub k: usize,
    /// Bearer token.
    pub api_key: Option<String>,
}

/// What a load run measured.
#[derive(Clone, Debug, Serialize)]
pub struct LoadReport {
    pub target: Target,
    /// Target rate (`None`: max rate).
    pub target_qps: Option<f64>,
    pub concurrency: usize,
    /// Requests the run meant to send: `requests`, or at a target rate at most those
    /// scheduled before the time cap.
    pub planned: usize,
    pub sent: usize,
    pub ok: usize,
    /// Failed requests, including the planned ones never sent before the time cap (an
    /// overloaded server that the generator could not keep up with is not a healthy run).
    pub errors: usize,
    /// Planned requests not sent before the time cap (also counted in `errors`).
    pub unsent: usize,
    /// Failures by HTTP status or transport error.
    pub error_kinds: BTreeMap<String, usize>,
    pub seconds: f64,
    /// Successful responses per second.
    pub qps: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Mean server-side milliseconds per successful `/search` in each stage over the run
    /// (`strata_search_stage_seconds` of the server's /metrics, read before and after), plus
    /// `queue` (`strata_embed_queue_seconds{lane="search"}`: the part of `embed` spent waiting
    /// for the model). Empty when the server's metrics cannot be read.
    pub server_stages_ms: BTreeMap<String, f64>,
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rate = self
            .target_qps
            .map_or("max".to_string(), |r| format!("{r:.0}"));
        write!(
            f,
            "{:?} target {rate} qps x{}: {} planned, {} sent, {} ok, {} errors in {:.2}s -> {:.1} qps; latency ms mean {:.2} p50 {:.2} p95 {:.2} p99 {:.2} max {:.2}",
            self.target,
            self.concurrency,
            self.planned,
            self.sent,
            self.ok,
            self.errors,
            self.seconds,
            self.qps,
            self.mean_ms,
            self.p50_ms,
            self.p95_ms,
            self.p99_ms,
            self.max_ms
        )?;
        if !self.error_kinds.is_empty() {
            write!(f, " {:?}", self.error_kinds)?;
        }
        if !self.server_stages_ms.is_empty() {
            write!(f, "; server ms per search:")?;
            for (stage, ms) in &self.server_stages_ms {
                write!(f, " {stage} {ms:.2}")?;
            }
        }
        Ok(())
    }
}

/// Requests a run plans: all of them, or at a target rate those scheduled before the cap
/// (request `i` is due at `i / rate` seconds; due at the cap itself still counts).
pub fn planned_requests(cfg: &LoadConfig) -> usize {
    match cfg.rate {
        Some(r) if r > 0.0 && r.is_finite() => {
            let due = (cfg.max_duration.as_secs_f64() * r).floor() as usize + 1;
            cfg.requests.min(due)
        }
        _ => cfg.requests,
    }
}

/// Checks that `url` is `http://` on a loopback address (127.0.0.0/8, ::1 or localhost) and
/// returns it without a trailing slash.
pub fn check_loopback(url: &str) -> anyhow::Result<String> {
    let uri: ureq::http::Uri = url
        .parse()
        .with_context(|| format!("{url:?} is not a URL"))?;
    ensure!(
        uri.scheme_str() == Some("http"),
        "{url}: only http:// URLs on a loopback address are allowed"
    );
    let host = uri
        .host()
        .with_context(|| format!("{url}: no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']');
    let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        bail!(
            "{url}: the load generator only targets loopback addresses (127.0.0.1, ::1, localhost)"
        );
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// Sums and counts of the per-stage histograms in a Prometheus text exposition of a strata
/// server: `stage -> (seconds, count)` for `strata_search_stage_seconds{stage}`, and `queue`
/// for `strata_embed_queue_seconds{lane="search"}`.
pub fn stage_totals(exposition: &str) -> BTreeMap<String, (f64, f64)> {
    let mut out: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for line in exposition.lines() {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let Some((name, labels)) = series.split_once('{') else {
            continue;
        };
        let stage = match (name.strip_prefix("strata_"), labels.trim_end_matches('}')) {
            (Some(n), l) if n.starts_with("search_stage_seconds_") => l
                .strip_prefix("stage=\"")
                .and_then(|l| l.strip_suffix('"'))
                .map(str::to_string),
            (Some(n), "lane=\"search\"") if n.starts_with("embed_queue_seconds_") => {
                Some("queue".to_string())
            }
            _ => None,
        };
        let Some(stage) = stage else { continue };
        let e = out.entry(stage).or_default();
        if name.ends_with("_sum") {
            e.0 = value;
        } else if name.ends_with("_count") {
            e.1 = value;
        }
    }
    out
}

/// Mean milliseconds per stage between two readings of [`stage_totals`].
pub fn stage_means_ms(
    before: &BTreeMap<String, (f64, f64)>,
    after: &BTreeMap<String, (f64, f64)>,
) -> BTreeMap<String, f64> {
    after
        .iter()
        .filter_map(|(stage, &(sum, count))| {
            let (s0, c0) = before.get(stage).copied().unwrap_or_default();
            let n = count - c0;
            (n > 0.0).then(|| (stage.clone(), (sum - s0) / n * 1e3))
        })
        .collect()
}

/// The server's stage totals, or nothing when /metrics cannot be read.
fn read_stage_totals(base: &str, api_key: Option<&str>) -> BTreeMap<String, (f64, f64)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut req = agent.get(format!("{base}/metrics"));
    if let Some(k) = api_key {
        req = req.header("authorization", &format!("Bearer {k}"));
    }
    req.call()
        .ok()
        .and_then(|mut r| r.body_mut().read_to_string().ok())
        .map(|text| stage_totals(&text))
        .unwrap_or_default()
}

/// The `q`-quantile (nearest rank) of sorted values.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Sends the load and measures it. In rate mode a request's latency counts from its scheduled
/// send time, so a server that falls behind shows it in the percentiles.
pub fn run(cfg: &LoadConfig) -> anyhow::Result<LoadReport> {
    let base = check_loopback(&cfg.url)?;
    ensure!(!cfg.queries.is_empty(), "no queries to send");
    ensure!(cfg.requests > 0, "the request count must be positive");
    ensure!(cfg.concurrency > 0, "the concurrency must be positive");
    if let Some(r) = cfg.rate {
        ensure!(
            r > 0.0 && r.is_finite(),
            "the rate must be positive, got {r}"
        );
    }
    let url = match cfg.target {
        Target::Embed => format!("{base}/embed"),
        Target::Search => format!("{base}/search"),
    };
    let bodies: Vec<String> = cfg
        .queries
        .iter()
        .map(|q| match cfg.target {
            Target::Embed => json!({"inputs": q, "truncate": true}).to_string(),
            Target::Search => json!({"query": q, "k": cfg.k, "mode": cfg.mode}).to_string(),
        })
        .collect();
    let stages_before = read_stage_totals(&base, cfg.api_key.as_deref());
    let next = AtomicUsize::new(0);
    let results: Mutex<(Vec<f64>, BTreeMap<String, usize>)> = Mutex::default();
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..cfg.concurrency {
            s.spawn(|| {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(30)))
                    .build()
                    .into();
                let mut lat = Vec::new();
                let mut errs: BTreeMap<String, usize> = BTreeMap::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= cfg.requests || start.elapsed() >= cfg.max_duration {
                        break;
                    }
                    let scheduled = match cfg.rate {
                        Some(r) => {
                            let at = start + Duration::from_secs_f64(i as f64 / r);
                            if at > start + cfg.max_duration {
                                break;
                            }
                            let now = Instant::now();
                            if at > now {
                                std::thread::sleep(at - now);
                            }
                            at
                        }
                        None => Instant::now(),
                    };
                    let mut req = agent.post(&url).header("content-type", "application/json");
                    if let Some(k) = &cfg.api_key {
                        req = req.header("authorization", &format!("Bearer {k}"));
                    }
                    let outcome = req
                        .send(bodies[i % bodies.len()].as_str())
                        .and_then(|mut r| {
                            let status = r.status().as_u16();
                            r.body_mut().read_to_string().map(|_| status)
                        });
                    let ms = scheduled.elapsed().as_secs_f64() * 1e3;
                    match outcome {
                        Ok(200) => lat.push(ms),
                        Ok(status) => *errs.entry(status.to_string()).or_default() += 1,
                        Err(e) => *errs.entry(format!("transport: {e}")).or_default() += 1,
                    }
                }
                let mut r = results.lock().expect("results lock");
                r.0.extend(lat);
                for (k, v) in errs {
                    *r.1.entry(k).or_default() += v;
                }
            });
        }
    });
    let seconds = start.elapsed().as_secs_f64();
    let server_stages_ms = stage_means_ms(
        &stages_before,
        &read_stage_totals(&base, cfg.api_key.as_deref()),
    );
    let (mut lat, mut error_kinds) = results.into_inner().expect("results lock");
    lat.sort_by(f64::total_cmp);
    let failed: usize = error_kinds.values().sum();
    let ok = lat.len();
    let sent = ok + failed;
    // Open loop: every request scheduled before the cap was due. Closed loop: the run sends
    // as fast as the server answers until the count or the cap, so nothing is overdue.
    let planned = if cfg.rate.is_some() {
        planned_requests(cfg)
    } else {
        sent
    };
    let unsent = planned.saturating_sub(sent);
    if unsent > 0 {
        error_kinds.insert("unsent at the time cap".into(), unsent);
    }
    let errors = failed + unsent;
    Ok(LoadReport {
        target: cfg.target,
        target_qps: cfg.rate,
        concurrency: cfg.concurrency,
        planned,
        sent,
        ok,
        errors,
        unsent,
        error_kinds,
        seconds,
        qps: ok as f64 / seconds.max(1e-9),
        mean_ms: if ok == 0 {
            f64::NAN
        } else {
            lat.iter().sum::<f64>() / ok as f64
        },
        p50_ms: quantile(&lat, 0.50),
        p95_ms: quantile(&lat, 0.95),
        p99_ms: quantile(&lat, 0.99),
        max_ms: lat.last().copied().unwrap_or(f64::NAN),
        server_stages_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loopback server that answers every request with `{}` after `delay`, one at a time.
    fn slow_server(delay: Duration) -> String {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut out = stream;
                loop {
                    let mut len = 0usize;
                    let mut line = String::new();
                    let mut any = false;
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            break;
                        }
                        any = true;
                        let l = line.to_ascii_lowercase();
                        if let Some(v) = l.strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    if !any {
                        break;
                    }
                    let mut body = vec![0u8; len];
                    if reader.read_exact(&mut body).is_err() {
                        break;
                    }
                    std::thread::sleep(delay);
                    let resp = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
                    if out.write_all(resp.as_bytes()).is_err() {
                        break;
                    }
                }
            }
        });
        format!("http://{addr}")
    }

    /// At a target rate the server cannot sustain, the requests never sent before the time
    /// cap are counted as failures, so the run cannot look healthy.
    #[test]
    fn requests_left_unsent_at_the_cap_are_failures() {
        let cfg = LoadConfig {
            url: slow_server(Duration::from_millis(250)),
            target: Target::Search,
            requests: 1000,
            max_duration: Duration::from_millis(1000),
            rate: Some(40.0),
            concurrency: 1,
            queries: vec!["drill".into()],
            mode: Mode::Semantic,
            k: 10,
            api_key: None,
        };
        assert_eq!(planned_requests(&cfg), 41);
        let r = run(&cfg).unwrap();
        assert_eq!(r.planned, 41);
        assert!(r.sent >= 1 && r.sent <= 10, "{r}");
        assert_eq!(r.unsent, r.planned - r.sent);
        assert_eq!(r.errors, r.unsent + (r.sent - r.ok));
        assert_eq!(r.error_kinds["unsent at the time cap"], r.unsent);
        // The same load within the server's means: nothing unsent.
        let easy = LoadConfig {
            rate: Some(2.0),
            requests: 2,
            ..cfg
        };
        let r = run(&easy).unwrap();
        assert_eq!(
            (r.planned, r.sent, r.ok, r.errors, r.unsent),
            (2, 2, 2, 0, 0),
            "{r}"
        );
    }

    #[test]
    fn only_loopback_http_urls_are_accepted() {
        assert_eq!(
            check_loopback("http://127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert!(check_loopback("http://localhost:1").is_ok());
        assert!(check_loopback("http://[::1]:1").is_ok());
        assert!(check_loopback("http://10.0.0.1:80").is_err());
        assert!(check_loopback("http://example.com").is_err());
        assert!(check_loopback("https://127.0.0.1:1").is_err());
        assert!(check_loopback("not a url").is_err());
    }

    #[test]
    fn stage_means_come_from_the_metrics_before_and_after() {
        let before = "# TYPE strata_search_stage_seconds histogram\n\
            strata_search_stage_seconds_sum{stage=\"embed\"} 1.0\n\
            strata_search_stage_seconds_count{stage=\"embed\"} 100\n\
            strata_search_stage_seconds_bucket{le=\"0.001\",stage=\"embed\"} 3\n\
            strata_embed_queue_seconds_sum{lane=\"bulk\"} 9.0\n\
            strata_embed_queue_seconds_count{lane=\"bulk\"} 9\n\
            strata_embed_queue_seconds_sum{lane=\"search\"} 0.5\n\
            strata_embed_queue_seconds_count{lane=\"search\"} 100\n";
        let after = "strata_search_stage_seconds_sum{stage=\"embed\"} 1.5\n\
            strata_search_stage_seconds_count{stage=\"embed\"} 200\n\
            strata_search_stage_seconds_sum{stage=\"search\"} 0.2\n\
            strata_search_stage_seconds_count{stage=\"search\"} 100\n\
            strata_embed_queue_seconds_sum{lane=\"search\"} 0.6\n\
            strata_embed_queue_seconds_count{lane=\"search\"} 200\n\
            strata_embed_queue_seconds_sum{lane=\"bulk\"} 19.0\n\
            strata_embed_queue_seconds_count{lane=\"bulk\"} 10\n";
        let means = stage_means_ms(&stage_totals(before), &stage_totals(after));
        let want = [("embed", 5.0), ("queue", 1.0), ("search", 2.0)];
        assert_eq!(means.len(), want.len(), "{means:?}");
        for (stage, ms) in want {
            assert!((means[stage] - ms).abs() < 1e-9, "{stage}: {means:?}");
        }
    }

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 50.0);
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert_eq!(quantile(&v, 1.0), 100.0);
        assert_eq!(quantile(&[3.0], 0.5), 3.0);
        assert!(quantile(&[], 0.5).is_nan());
    }
}
