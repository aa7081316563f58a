//! Seed soups: `seeds = N` trains one configuration N times and averages the N final models
//! into one (a uniform "model soup", Wortsman et al. 2022; [`strata_model::average`]).
//!
//! The runs use the seeds `seed`, `seed + 1`, ..., `seed + N - 1` (head initialisation, instance
//! sampling, data order and dropout all follow the seed) and are ordinary run directories,
//! `out/seed-<S>/`, each with its own checkpoints, metrics, dev evaluations and `model/`. When
//! every run has finished, `out/model/` receives the element-wise mean of their final models,
//! and `out/summary.json` the soup's summary: the runs' summaries under `seeds`, and the soup's
//! own dev evaluation (when the configuration has a dev split) under `dev`.
//!
//! Resuming (`--resume`) keeps every finished run, continues an unfinished one from its newest
//! checkpoint and restarts one that stopped before its first checkpoint; `--overwrite` trains
//! every run again. The soup replaces `out/model` only once it is complete.
//!
//! On Home Depot, three seeds of the recipe's stage 1 averaged scored above every one of them
//! (docs/benchmarks.md, "How far a training seed moves these numbers").

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};

use crate::checkpoint::{DevPoint, latest_checkpoint, write_atomic};
use crate::config::{CONFIG_FILE, TrainConfig};
use crate::run_loop::{FINAL_MODEL, SUMMARY_FILE, holds_run, remove_run_outputs};
use crate::trainer::{TrainOptions, TrainSummary, evaluate_model, train_with};

/// The run directory of seed `seed` inside a soup's `out`.
pub fn seed_run_dir(out: &Path, seed: u64) -> PathBuf {
    out.join(format!("seed-{seed}"))
}

/// The configurations of a soup's runs: `cfg` with one seed each, in `out/seed-<S>/`.
pub fn seed_configs(cfg: &TrainConfig) -> Vec<TrainConfig> {
    (0..cfg.seeds as u64)
        .map(|k| {
            let mut c = cfg.clone();
            c.seed = cfg.seed + k;
            c.seeds = 1;
            c.out = seed_run_dir(&cfg.out, c.seed);
            c
        })
        .collect()
}

/// Whether a run of `cfg` in `cfg.out` has progress that `--resume` would continue: a
/// checkpoint of a single run, or any started run of a soup.
pub fn can_resume(cfg: &TrainConfig) -> anyhow::Result<bool> {
    if cfg.seeds <= 1 {
        return Ok(latest_checkpoint(&cfg.out)?.is_some());
    }
    Ok(seed_configs(cfg).iter().any(|c| holds_run(&c.out)))
}

/// A finished run's summary (its `summary.json` next to its final model), if it has one.
fn finished(run: &Path) -> anyhow::Result<Option<TrainSummary>> {
    let summary = run.join(SUMMARY_FILE);
    if !(summary.is_file() && run.join(FINAL_MODEL).join("strata.json").is_file()) {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&summary)
        .with_context(|| format!("cannot read {}", summary.display()))?;
    let s: TrainSummary = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a training summary", summary.display()))?;
    Ok((!s.stopped_early && s.model_dir.is_some()).then_some(s))
}

/// Trains every seed of `cfg` (validated, `seeds > 1`) and writes their average.
pub(crate) fn train_soup(cfg: &TrainConfig, opts: &TrainOptions) -> anyhow::Result<TrainSummary> {
    let wall = Instant::now();
    let out = &cfg.out;
    let runs = seed_configs(cfg);
    let started = holds_run(out) || runs.iter().any(|c| holds_run(&c.out));
    if started && !opts.resume && !opts.overwrite {
        bail!(
            "run directory {} already holds a run: pass --resume to continue it or --overwrite to start again",
            out.display()
        );
    }
    std::fs::create_dir_all(out)
        .with_context(|| format!("cannot create run directory {}", out.display()))?;
    if opts.overwrite {
        // What a single run in this directory left (the soup's own model stays until the new
        // one is complete).
        remove_run_outputs(out, false)?;
    }
    write_atomic(&out.join(CONFIG_FILE), cfg.to_toml()?.as_bytes())?;

    let mut done = Vec::with_capacity(runs.len());
    for (k, c) in runs.iter().enumerate() {
        if !opts.overwrite
            && let Some(s) = finished(&c.out)?
        {
            tracing::info!(
                "seed {} ({} of {}): {} trained already",
                c.seed,
                k + 1,
                runs.len(),
                c.out.display()
            );
            done.push(s);
            continue;
        }
        tracing::info!(
            "seed {} ({} of {}): training into {}",
            c.seed,
            k + 1,
            runs.len(),
            c.out.display()
        );
        let resume = opts.resume && latest_checkpoint(&c.out)?.is_some();
        let run_opts = TrainOptions {
            resume,
            // A run that stopped before its first checkpoint starts again.
            overwrite: opts.overwrite || (opts.resume && !resume),
            ..opts.clone()
        };
        let s = train_with(c, &run_opts)?;
        if s.model_dir.is_none() {
            // Stopped on request (`stop_after`): the soup waits for the remaining updates.
            return Ok(soup_summary(cfg, done, Some(s), None, wall));
        }
        done.push(s);
    }

    let model = out.join(FINAL_MODEL);
    let fresh = out.join(format!("{FINAL_MODEL}.averaging"));
    if fresh.exists() {
        std::fs::remove_dir_all(&fresh)
            .with_context(|| format!("cannot remove the stale {}", fresh.display()))?;
    }
    let dirs: Vec<PathBuf> = done.iter().filter_map(|s| s.model_dir.clone()).collect();
    strata_model::average_models(&dirs, &fresh)
        .with_context(|| format!("cannot average the {} seeds' models", dirs.len()))?;
    if model.exists() {
        let old = out.join(format!("{FINAL_MODEL}.old"));
        if old.exists() {
            std::fs::remove_dir_all(&old)
                .with_context(|| format!("cannot remove {}", old.display()))?;
        }
        std::fs::rename(&model, &old)
            .with_context(|| format!("cannot move {} aside", model.display()))?;
        std::fs::rename(&fresh, &model)
            .with_context(|| format!("cannot move the soup into {}", model.display()))?;
        std::fs::remove_dir_all(&old)
            .with_context(|| format!("cannot remove {}", old.display()))?;
    } else {
        std::fs::rename(&fresh, &model)
            .with_context(|| format!("cannot move the soup into {}", model.display()))?;
    }
    let dev = if done.iter().any(|s| !s.dev.is_empty()) {
        let score = evaluate_model(cfg, &model)?;
        tracing::info!(
            "soup of {} seeds: dev NDCG@10 {:.4} (seeds: {})",
            done.len(),
            score.ndcg_at_10,
            done.iter()
                .filter_map(|s| s.dev.last().map(|d| format!("{:.4}", d.score.ndcg_at_10)))
                .collect::<Vec<_>>()
                .join(", ")
        );
        Some(score)
    } else {
        None
    };
    let summary = soup_summary(cfg, done, None, dev, wall);
    write_atomic(
        &out.join(SUMMARY_FILE),
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    Ok(summary)
}

/// The soup's summary: totals over its runs (`stopped`, a run stopped on request, included),
/// the soup's model and dev score.
fn soup_summary(
    cfg: &TrainConfig,
    mut runs: Vec<TrainSummary>,
    stopped: Option<TrainSummary>,
    dev: Option<crate::dev::DevScore>,
    wall: Instant,
) -> TrainSummary {
    let complete = stopped.is_none();
    runs.extend(stopped);
    let sum = |f: fn(&TrainSummary) -> u64| runs.iter().map(f).sum::<u64>();
    let (steps, instances) = (sum(|s| s.steps), sum(|s| s.instances));
    let train_seconds: f64 = runs.iter().map(|s| s.train_seconds).sum();
    let total_steps = runs.first().map_or(0, |s| s.total_steps * cfg.seeds as u64);
    let dev: Vec<DevPoint> = dev
        .map(|score| DevPoint { step: steps, score })
        .into_iter()
        .collect();
    TrainSummary {
        run_dir: cfg.out.clone(),
        model_dir: complete.then(|| cfg.out.join(FINAL_MODEL)),
        best_dir: None,
        loss: cfg.loss.name().to_string(),
        steps,
        total_steps,
        steps_per_epoch: runs.first().map_or(0, |s| s.steps_per_epoch),
        instances,
        resumed_from: None,
        stopped_early: !complete,
        final_loss: None,
        final_temperature: None,
        best: None,
        dev,
        train_seconds,
        wall_seconds: wall.elapsed().as_secs_f64(),
        instances_per_second: instances as f64 / train_seconds.max(1e-9),
        data: runs.first().map(|s| s.data.clone()).unwrap_or_default(),
        seeds: runs,
    }
}
