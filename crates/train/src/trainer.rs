//! The training loop (paper sections 4.3-4.4): AdamW with linear warmup and decay, separate
//! learning rates for the projection heads and the temperature, gradient accumulation and
//! clipping, periodic development evaluation keeping the best model, and checkpoints that a
//! resumed run continues from with the same data order.
//!
//! A run directory holds `config.toml` (the resolved configuration), `metrics.jsonl` (one
//! record per update and per evaluation), `checkpoints/`, `best/` (the best model on the dev
//! split), `model/` (the final model) and `summary.json`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use burn::tensor::Device;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use strata_data::hash::combine;
use strata_data::instances::{Instance, QueryGroups, with_batch_negatives};
use strata_model::{
    Embedder, LoadOptions, TextTokenizer, TowerConfig, TwoTower, load_model, save_model,
};

use crate::batch::{BatchPlan, ItemTokens, plan_batch};
use crate::checkpoint::{
    self, DevPoint, LOSS_FILE, MODEL, OPTIMIZER_FILE, TrainerState, latest_checkpoint, load_params,
    read_state, save_params, write_checkpoint, write_state,
};
use crate::config::{CONFIG_FILE, TrainConfig, resolve_init};
use crate::data::{DataSummary, TrainData};
use crate::dev::{DevScore, evaluate_dev};
use crate::losses::{LossConfig, Reduction};
use crate::optim::{AdamW, GradBuffer, GroupSettings, warmup_linear};
use crate::step::{HEAD_PATHS, LOSS_PATH, TrainModule, batch_loss};

/// Metrics log inside a run directory.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// Final model inside a run directory.
pub const FINAL_MODEL: &str = "model";
/// Best model (by dev NDCG@10) inside a run directory.
pub const BEST_MODEL: &str = "best";
/// Run summary inside a run directory.
pub const SUMMARY_FILE: &str = "summary.json";

/// How a run is carried out (as opposed to what it trains: [`TrainConfig`]).
#[derive(Clone, Debug, Default)]
pub struct TrainOptions {
    /// Continue from the run directory's newest checkpoint.
    pub resume: bool,
    /// Start afresh in a run directory that already holds a run (its files are replaced).
    pub overwrite: bool,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// Stop after this many updates, as if the process were killed there (for tests of
    /// resumption); no final model is written.
    pub stop_after: Option<u64>,
}

/// What a run did.
#[derive(Clone, Debug, Serialize)]
pub struct TrainSummary {
    /// The run directory.
    pub run_dir: PathBuf,
    /// The final model (absent when stopped early).
    pub model_dir: Option<PathBuf>,
    /// The best model on the dev split, if evaluated.
    pub best_dir: Option<PathBuf>,
    /// Loss name.
    pub loss: String,
    /// Updates done.
    pub steps: u64,
    /// Updates planned.
    pub total_steps: u64,
    /// Updates per epoch.
    pub steps_per_epoch: u64,
    /// Instances trained on.
    pub instances: u64,
    /// Update this run resumed after, if resumed.
    pub resumed_from: Option<u64>,
    /// Whether the run stopped before its planned end.
    pub stopped_early: bool,
    /// Mean loss per instance over the last update.
    pub final_loss: Option<f64>,
    /// The temperature at the end (SupCon).
    pub final_temperature: Option<f64>,
    /// Every dev evaluation.
    pub dev: Vec<DevPoint>,
    /// The best dev evaluation.
    pub best: Option<DevPoint>,
    /// Seconds in training steps (all sessions of the run).
    pub train_seconds: f64,
    /// Seconds of this session in total.
    pub wall_seconds: f64,
    /// Instances per second of training steps.
    pub instances_per_second: f64,
    /// The data.
    pub data: DataSummary,
}

/// Trains with default options (fresh run, no progress bar).
pub fn train(cfg: &TrainConfig) -> anyhow::Result<TrainSummary> {
    train_with(cfg, &TrainOptions::default())
}

/// Trains a model as `cfg` describes. The configuration and the run directory are checked
/// before any data is read.
pub fn train_with(cfg: &TrainConfig, opts: &TrainOptions) -> anyhow::Result<TrainSummary> {
    cfg.validate()?;
    check_run_dir(&cfg.out, opts)?;
    if cfg.threads > 0 {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(cfg.threads)
            .build()
            .context("cannot start the compute threads")?;
        pool.install(|| run(cfg, opts))
    } else {
        run(cfg, opts)
    }
}

/// Refuses to start over an existing run unless resuming or overwriting.
fn check_run_dir(out: &Path, opts: &TrainOptions) -> anyhow::Result<()> {
    // A config file alone is what a run that failed before its first update leaves (older
    // versions wrote it first): it does not block a rerun.
    let has_run = out.join(checkpoint::CHECKPOINTS).is_dir()
        || out.join(FINAL_MODEL).is_dir()
        || out.join(BEST_MODEL).is_dir()
        || out.join(METRICS_FILE).is_file();
    if opts.resume {
        if latest_checkpoint(out)?.is_none() {
            anyhow::bail!(
                "cannot resume: {} holds no checkpoint (start without --resume)",
                out.display()
            );
        }
    } else if has_run && !opts.overwrite {
        anyhow::bail!(
            "run directory {} already holds a run: pass --resume to continue it or --overwrite to start again",
            out.display()
        );
    }
    Ok(())
}

/// Prints messages above the progress bar, or through the log without one.
struct Reporter {
    bar: Option<ProgressBar>,
}

impl Reporter {
    fn say(&self, msg: String) {
        match &self.bar {
            Some(b) if !b.is_hidden() => b.println(msg),
            _ => tracing::info!("{msg}"),
        }
    }
}

/// Appends JSON records to `metrics.jsonl`.
pub struct MetricsLog {
    file: std::fs::File,
}

impl MetricsLog {
    /// Opens the log; on resume, records after `keep_through` (written by the interrupted
    /// session after its last checkpoint) are dropped.
    pub fn open(run: &Path, keep_through: Option<u64>) -> anyhow::Result<Self> {
        let path = run.join(METRICS_FILE);
        if let Some(step) = keep_through
            && let Ok(text) = std::fs::read_to_string(&path)
        {
            let kept: String = text
                .lines()
                .filter(|l| {
                    serde_json::from_str::<serde_json::Value>(l)
                        .ok()
                        .and_then(|v| v.get("step").and_then(|s| s.as_u64()))
                        .is_some_and(|s| s <= step)
                })
                .map(|l| format!("{l}\n"))
                .collect();
            checkpoint::write_atomic(&path, kept.as_bytes())?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        Ok(MetricsLog { file })
    }

    /// Appends one record.
    pub fn write(&mut self, record: serde_json::Value) -> anyhow::Result<()> {
        writeln!(self.file, "{record}").context("cannot write metrics.jsonl")
    }
}

/// Sets the dropout probabilities of every encoder layer.
fn set_dropout(mut tower: TwoTower, hidden: f64, attention: f64) -> TwoTower {
    tower.encoder.set_dropout(hidden, attention);
    if let Some(e) = tower.item_encoder.as_mut() {
        e.set_dropout(hidden, attention);
    }
    tower
}

/// The model with every dropout probability set to 0.
pub fn without_dropout(tower: TwoTower) -> TwoTower {
    set_dropout(tower, 0.0, 0.0)
}

/// Whether the loss averages over instances (accumulated micro-batches are then weighted by
/// their share of the update's instances; summed losses add up as they are).
fn averages(loss: &LossConfig) -> bool {
    let r = match loss {
        LossConfig::Supcon(c) => c.reduction,
        LossConfig::Circle(c) => c.reduction,
        LossConfig::Triplet(c) => c.reduction,
        LossConfig::Infonce(c) => c.reduction,
    };
    r == Reduction::Mean
}

/// Per-item token ids of the training items (others stay empty).
fn tokenize_items(
    tokenizer: &TextTokenizer,
    texts: &[String],
    used: &[u32],
    prefix: &str,
) -> anyhow::Result<Vec<Vec<u32>>> {
    let owned: Vec<String> = used
        .iter()
        .map(|&i| format!("{prefix}{}", texts[i as usize]))
        .collect();
    let refs: Vec<&str> = owned.iter().map(String::as_str).collect();
    let ids = tokenizer.ids_many(&refs)?;
    let mut out = vec![Vec::new(); texts.len()];
    for (&i, t) in used.iter().zip(ids) {
        out[i as usize] = t;
    }
    Ok(out)
}

/// Token ids of the queries of some instances.
fn tokenize_queries(
    tokenizer: &TextTokenizer,
    instances: &[Instance],
    prefix: &str,
) -> anyhow::Result<Vec<Vec<u32>>> {
    let owned: Vec<String> = instances
        .iter()
        .map(|i| format!("{prefix}{}", i.query))
        .collect();
    let refs: Vec<&str> = owned.iter().map(String::as_str).collect();
    tokenizer.ids_many(&refs)
}

/// The learning rate and weight decay of each parameter: heads and temperature have their
/// own rates; biases, layer norms and the temperature are not decayed.
fn groups(cfg: &TrainConfig, factor: f64) -> impl Fn(&str) -> GroupSettings + '_ {
    move |path: &str| {
        let t = &cfg.train;
        let (lr, decay) = if path.starts_with(LOSS_PATH) {
            (t.temperature_lr, false)
        } else if HEAD_PATHS.iter().any(|h| path.starts_with(h)) {
            (t.head_lr, !path.ends_with("bias"))
        } else {
            (
                t.lr,
                !(path.ends_with("bias") || path.contains("layer_norm")),
            )
        };
        GroupSettings {
            lr: lr * factor,
            decay,
        }
    }
}

/// Plans and runs the forward and backward passes of one micro-batch, adding its gradients
/// to `grads`. Returns its loss.
#[allow(clippy::too_many_arguments)]
fn micro_step(
    module: &TrainModule,
    instances: &[Instance],
    items: &dyn ItemTokens,
    tokenizer: &TextTokenizer,
    tower_cfg: &TowerConfig,
    cfg: &TrainConfig,
    device: &Device,
    grads: &mut GradBuffer,
    scale: f32,
    groups: &QueryGroups,
) -> anyhow::Result<f64> {
    let extended;
    let instances = if cfg.data.batch_negatives {
        let max = (cfg.data.batch_negatives_max > 0).then_some(cfg.data.batch_negatives_max);
        extended = with_batch_negatives(instances, groups, max).0;
        if extended.is_empty() {
            // Every instance held one positive level and the batch offered no unjudged item:
            // nothing to contrast, no gradient.
            return Ok(0.0);
        }
        &extended[..]
    } else {
        instances
    };
    let queries = tokenize_queries(tokenizer, instances, &tower_cfg.query_prefix)?;
    let plan: BatchPlan = plan_batch(
        instances,
        &queries,
        items,
        tokenizer,
        cfg.train.chunking(),
        true,
    );
    let loss = batch_loss(module, &plan, device)?;
    let value = loss.clone().into_scalar::<f64>();
    anyhow::ensure!(value.is_finite(), "the loss is {value}: training diverged");
    let mut g = loss.backward();
    grads.accumulate(module, &mut g, scale);
    Ok(value)
}

fn run(cfg: &TrainConfig, opts: &TrainOptions) -> anyhow::Result<TrainSummary> {
    let wall = Instant::now();
    let run_dir = cfg.out.clone();
    std::fs::create_dir_all(&run_dir)
        .with_context(|| format!("cannot create run directory {}", run_dir.display()))?;

    let data = TrainData::load(cfg)?;
    let device = strata_model::parse_device(&cfg.device)?.autodiff();
    let infer_device = device.clone().inner();

    // The model: from the newest checkpoint, or from `model.init`.
    let resume_from = if opts.resume {
        latest_checkpoint(&run_dir)?
    } else {
        None
    };
    let (tower, tower_cfg, tokenizer_path) = match &resume_from {
        Some(ck) => {
            let m = load_model(&ck.join(MODEL), &LoadOptions::default(), &device)?;
            (m.model, m.config, m.tokenizer_path)
        }
        None => {
            let init = resolve_init(&cfg.model.init)?;
            let load_opts = LoadOptions {
                projection_dim: cfg.model.projection_dim,
                asymmetric: cfg.model.asymmetric,
                max_len: cfg.model.max_len,
                seed: cfg.seed,
                ..Default::default()
            };
            let m = load_model(&init, &load_opts, &device)
                .with_context(|| format!("loading the initial model {}", init.display()))?;
            let mut config = m.config;
            if strata_model::store::model_dir_kind(&init)?
                == strata_model::store::ModelDirKind::Strata
            {
                if let Some(d) = cfg.model.projection_dim
                    && config.projection_dim != Some(d)
                {
                    anyhow::bail!(
                        "config field `model.projection_dim` is {d}, but the initial model {} has {:?} (a saved model keeps its heads)",
                        init.display(),
                        config.projection_dim
                    );
                }
                if cfg.model.asymmetric && !config.asymmetric {
                    anyhow::bail!(
                        "config field `model.asymmetric` is true, but the initial model {} is Siamese",
                        init.display()
                    );
                }
                if let Some(l) = cfg.model.max_len {
                    config.max_len = l.min(config.encoder.max_input_tokens());
                }
            }
            (m.model, config, m.tokenizer_path)
        }
    };
    // The saved model records the item text it learned on, for evaluation, indexing and mining.
    let tower_cfg = TowerConfig {
        item_text: Some(strata_data::ItemTextConfig::with_taxonomy_levels(
            cfg.data.taxonomy_depth,
        )),
        ..tower_cfg
    };
    if tower_cfg.projection_dim.is_none()
        && cfg.train.head_lr != crate::config::OptimConfig::default().head_lr
    {
        tracing::warn!(
            "train.head_lr ({}) has no effect: the model has no projection heads",
            cfg.train.head_lr
        );
    }
    let (hidden, attention) = if cfg.model.dropout {
        (
            tower_cfg.encoder.hidden_dropout_prob,
            tower_cfg.encoder.attention_probs_dropout_prob,
        )
    } else {
        (0.0, 0.0)
    };
    let tower = set_dropout(tower, hidden, attention);
    let tokenizer = TextTokenizer::from_file(
        &tokenizer_path,
        tower_cfg.max_len,
        tower_cfg.encoder.pad_token_id as u32,
    )?;
    // Data and model loaded: only now is anything of an earlier run replaced, so a run that
    // fails to start leaves the directory as it was.
    if opts.overwrite && !opts.resume {
        for stale in [checkpoint::CHECKPOINTS, BEST_MODEL, FINAL_MODEL] {
            let p = run_dir.join(stale);
            if p.exists() {
                std::fs::remove_dir_all(&p)
                    .with_context(|| format!("cannot remove {}", p.display()))?;
            }
        }
        let _ = std::fs::remove_file(run_dir.join(METRICS_FILE));
    }
    checkpoint::write_atomic(&run_dir.join(CONFIG_FILE), cfg.to_toml()?.as_bytes())?;
    let mut loss_module = cfg.loss.init(&device)?;
    let mut optimizer = AdamW::new(cfg.train.adamw());
    let mut state = TrainerState {
        step: 0,
        steps_per_epoch: 0,
        instances_per_epoch: data.summary().instances_per_epoch,
        seed: cfg.seed,
        instances_seen: 0,
        train_seconds: 0.0,
        dev: Vec::new(),
        best: None,
    };
    if let Some(ck) = &resume_from {
        loss_module = load_params(loss_module, &ck.join(LOSS_FILE))?;
        optimizer = AdamW::load(cfg.train.adamw(), &ck.join(OPTIMIZER_FILE))?;
        state = read_state(ck)?;
    }
    let mut module = crate::step::fresh_params(TrainModule {
        tower,
        loss: loss_module,
    });
    if resume_from.is_some() {
        optimizer.check_against(&module)?;
    }

    // The schedule.
    let per_epoch = data.summary().instances_per_epoch;
    let micro_per_epoch = per_epoch.div_ceil(cfg.train.batch_size) as u64;
    let steps_per_epoch = micro_per_epoch.div_ceil(cfg.train.accumulation as u64);
    let mut total = steps_per_epoch * cfg.train.epochs as u64;
    if cfg.train.max_steps > 0 {
        total = total.min(cfg.train.max_steps);
    }
    let warmup = cfg
        .train
        .warmup_steps
        .unwrap_or_else(|| (cfg.train.warmup_ratio * total as f64).round() as u64)
        .min(total);
    if let Some(ck) = &resume_from {
        anyhow::ensure!(
            state.steps_per_epoch == steps_per_epoch
                && state.instances_per_epoch == per_epoch
                && state.seed == cfg.seed,
            "cannot resume from {}: it was made with {} instances and {} updates per epoch and seed {}, this configuration gives {per_epoch}, {steps_per_epoch} and seed {} (the data, batch size or seed changed)",
            ck.display(),
            state.instances_per_epoch,
            state.steps_per_epoch,
            state.seed,
            cfg.seed
        );
    }
    state.steps_per_epoch = steps_per_epoch;
    let start_step = state.step;

    let mut metrics = MetricsLog::open(&run_dir, resume_from.as_ref().map(|_| start_step))?;
    let bar = opts.progress.then(|| {
        let b = ProgressBar::new(total);
        b.set_style(
            ProgressStyle::with_template(
                "{spinner} train [{bar:30}] {pos}/{len} steps {msg} eta {eta} ({elapsed})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        b.set_position(start_step);
        b
    });
    let reporter = Reporter { bar: bar.clone() };
    let s = data.summary();
    reporter.say(format!(
        "training {} on {} instances/epoch ({} train queries, {} dev queries, catalog {}), {} updates ({} per epoch, batch {} x {}), loss {}",
        cfg.model.init.display(),
        s.instances_per_epoch,
        s.train_queries,
        s.dev_queries,
        s.catalog_items,
        total,
        steps_per_epoch,
        cfg.train.batch_size,
        cfg.train.accumulation,
        cfg.loss.name()
    ));
    if let Some(ck) = &resume_from {
        reporter.say(format!(
            "resuming from {} (update {start_step})",
            ck.display()
        ));
    }

    let item_tokens = tokenize_items(
        &tokenizer,
        &data.item_texts,
        &data.train_items(),
        &tower_cfg.item_prefix,
    )?;

    // Dev evaluation with the current weights.
    let evaluate =
        |module: &TrainModule, reporter: &Reporter| -> anyhow::Result<Option<DevScore>> {
            let Some(dev) = &data.dev else {
                return Ok(None);
            };
            let embedder = Embedder::new(
                module.tower.clone(),
                tower_cfg.clone(),
                tokenizer.clone(),
                infer_device.clone(),
                "training".into(),
            )
            .with_limits(strata_model::BatchLimits {
                max_batch: cfg.eval.batch_texts,
                max_tokens: cfg.eval.batch_tokens,
            })
            .with_progress(opts.progress)
            // The CPU engine (same function, faster) on the CPU; the tensor model on a GPU.
            .with_precision(
                strata_model::device::is_cpu(&infer_device).then_some(strata_model::Precision::F32),
            )?;
            let run = || evaluate_dev(&embedder, dev, &data.item_texts);
            let score = match &reporter.bar {
                Some(b) => b.suspend(run)?,
                None => run()?,
            };
            Ok(Some(score))
        };
    let record_eval = |state: &mut TrainerState,
                       module: &TrainModule,
                       metrics: &mut MetricsLog,
                       reporter: &Reporter,
                       step: u64|
     -> anyhow::Result<()> {
        let t = Instant::now();
        let Some(score) = evaluate(module, reporter)? else {
            return Ok(());
        };
        let point = DevPoint { step, score };
        state.dev.push(point);
        let improved = state
            .best
            .is_none_or(|b| score.ndcg_at_10 > b.score.ndcg_at_10);
        if improved {
            state.best = Some(point);
            save_model(
                &run_dir.join(BEST_MODEL),
                &module.tower,
                &tower_cfg,
                &tokenizer,
            )?;
        }
        metrics.write(serde_json::json!({
            "step": step,
            "dev_ndcg@10": score.ndcg_at_10,
            "dev_rerank_ndcg": score.rerank_ndcg,
            "dev_queries": score.queries,
            "dev_items": score.items,
            "best": improved,
            "eval_s": t.elapsed().as_secs_f64(),
        }))?;
        reporter.say(format!(
            "update {step}: dev NDCG@10 {:.4}, rerank NDCG {:.4}, over {} queries{}",
            score.ndcg_at_10,
            score.rerank_ndcg,
            score.queries,
            if improved { " (best)" } else { "" }
        ));
        Ok(())
    };

    if start_step == 0 && cfg.eval.at_start {
        record_eval(&mut state, &module, &mut metrics, &reporter, 0)?;
    }

    let reduction_mean = averages(&cfg.loss);
    let mut epoch_cache: Option<(u64, Vec<Instance>)> = None;
    let mut grads = GradBuffer::new();
    let mut last_loss = None;
    let mut smoothed: Option<f64> = None;
    let mut session_instances = 0u64;
    let mut session_seconds = 0f64;
    let mut stopped_early = false;
    for step in start_step..total {
        let t0 = Instant::now();
        let epoch = step / steps_per_epoch;
        if epoch_cache.as_ref().is_none_or(|(e, _)| *e != epoch) {
            epoch_cache = Some((epoch, data.epoch_instances(epoch)?));
        }
        let instances = &epoch_cache.as_ref().expect("epoch instances").1;
        let first_micro = ((step % steps_per_epoch) * cfg.train.accumulation as u64) as usize;
        let bs = cfg.train.batch_size;
        let micro: Vec<&[Instance]> = (first_micro..first_micro + cfg.train.accumulation)
            .map(|m| &instances[(m * bs).min(instances.len())..((m + 1) * bs).min(instances.len())])
            .filter(|s| !s.is_empty())
            .collect();
        let n_step: usize = micro.iter().map(|m| m.len()).sum();
        // Dropout draws depend only on the seed and the update.
        device.seed(combine(&[cfg.seed, step, 0x44524f50]));
        grads.clear();
        let mut loss_sum = 0.0;
        for m in &micro {
            let scale = if reduction_mean {
                m.len() as f32 / n_step as f32
            } else {
                1.0
            };
            let l = micro_step(
                &module,
                m,
                &item_tokens,
                &tokenizer,
                &tower_cfg,
                cfg,
                &device,
                &mut grads,
                scale,
                &data.groups,
            )
            .with_context(|| format!("update {}", step + 1))?;
            loss_sum += f64::from(scale) * l;
        }
        let grad_norm = if cfg.train.grad_clip > 0.0 {
            grads.clip_global_norm(cfg.train.grad_clip)
        } else {
            grads.global_norm()
        };
        let factor = warmup_linear(step, warmup, total);
        module = optimizer.step(module, &grads, &groups(cfg, factor));
        let dt = t0.elapsed().as_secs_f64();
        session_seconds += dt;
        session_instances += n_step as u64;
        state.step = step + 1;
        state.instances_seen += n_step as u64;
        state.train_seconds += dt;
        let per_instance = if reduction_mean {
            loss_sum
        } else {
            loss_sum / n_step as f64
        };
        last_loss = Some(per_instance);
        let ema = match smoothed {
            Some(s) => 0.9 * s + 0.1 * per_instance,
            None => per_instance,
        };
        smoothed = Some(ema);
        let tau = module.loss.temperature.as_ref().map(|t| t.value());
        let rate = session_instances as f64 / session_seconds.max(1e-9);
        metrics.write(serde_json::json!({
            "step": state.step,
            "epoch": epoch,
            "loss": loss_sum,
            "loss_per_instance": per_instance,
            "lr": cfg.train.lr * factor,
            "temperature": tau,
            "grad_norm": grad_norm,
            "instances": n_step,
            "instances_per_s": rate,
            "step_s": dt,
        }))?;
        if let Some(b) = &bar {
            let tau_text = tau.map(|t| format!(" tau {t:.4}")).unwrap_or_default();
            b.set_message(format!("loss {ema:.4}{tau_text} {rate:.1} inst/s"));
            b.set_position(state.step);
        }

        let at_end = state.step == total;
        let epoch_end = state.step.is_multiple_of(steps_per_epoch);
        let eval_now = if cfg.eval.every > 0 {
            state.step.is_multiple_of(cfg.eval.every) || at_end
        } else {
            epoch_end || at_end
        };
        if eval_now {
            let at = state.step;
            record_eval(&mut state, &module, &mut metrics, &reporter, at)?;
        }
        let ckpt_now = at_end
            || (cfg.train.checkpoint_every > 0
                && state.step.is_multiple_of(cfg.train.checkpoint_every));
        if ckpt_now {
            write_checkpoint(&run_dir, state.step, cfg.train.keep_checkpoints, |dir| {
                save_model(&dir.join(MODEL), &module.tower, &tower_cfg, &tokenizer)?;
                save_params(&module.loss, &dir.join(LOSS_FILE))?;
                optimizer.save(&dir.join(OPTIMIZER_FILE))?;
                write_state(dir, &state)
            })?;
        }
        if opts.stop_after == Some(state.step) && !at_end {
            stopped_early = true;
            break;
        }
    }
    if let Some(b) = &bar {
        b.finish_and_clear();
    }

    let model_dir = if stopped_early {
        None
    } else {
        let dir = run_dir.join(FINAL_MODEL);
        save_model(&dir, &module.tower, &tower_cfg, &tokenizer)?;
        Some(dir)
    };
    let best_dir = state.best.map(|_| run_dir.join(BEST_MODEL));
    let summary = TrainSummary {
        run_dir: run_dir.clone(),
        model_dir,
        best_dir,
        loss: cfg.loss.name().to_string(),
        steps: state.step,
        total_steps: total,
        steps_per_epoch,
        instances: state.instances_seen,
        resumed_from: resume_from.map(|_| start_step),
        stopped_early,
        final_loss: last_loss,
        final_temperature: module.loss.temperature.as_ref().map(|t| t.value()),
        dev: state.dev.clone(),
        best: state.best,
        train_seconds: state.train_seconds,
        wall_seconds: wall.elapsed().as_secs_f64(),
        instances_per_second: session_instances as f64 / session_seconds.max(1e-9),
        data: data.summary().clone(),
    };
    checkpoint::write_atomic(
        &run_dir.join(SUMMARY_FILE),
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    Ok(summary)
}

/// Dev NDCG@10 of the model in `model_dir` on the dev split that `cfg` defines (the same
/// split, item texts and query sample a run of `cfg` evaluates on).
pub fn evaluate_model(cfg: &TrainConfig, model_dir: &Path) -> anyhow::Result<DevScore> {
    cfg.validate()?;
    let data = TrainData::load(cfg)?;
    let dev = data.dev.as_ref().context(
        "the configuration defines no dev split (data.dev_fraction is 0 and no data.dev_judgments)",
    )?;
    let device = strata_model::parse_device(&cfg.device)?;
    let opts = LoadOptions {
        precision: Some(strata_model::Precision::F32),
        ..Default::default()
    };
    let embedder = Embedder::load_on(&resolve_init(model_dir)?, &opts, &device)?.with_limits(
        strata_model::BatchLimits {
            max_batch: cfg.eval.batch_texts,
            max_tokens: cfg.eval.batch_tokens,
        },
    );
    evaluate_dev(&embedder, dev, &data.item_texts)
}
