//! The training loop both trainers run: the bi-encoder retriever ([`crate::trainer`]) and the
//! cross-encoder labeler (`strata_labeling::cross_encoder::train_labeler`). A trainer describes
//! what it trains as a [`TrainTask`]: its module, the forward and backward passes of one
//! update, its dev evaluation and how its models and checkpoint parts are saved. [`run`] owns
//! everything around that:
//!
//! - the run directory: an existing run is refused unless resuming or overwriting, and nothing
//!   in it is created, replaced or removed before the task's data and model have loaded (a run
//!   that fails to start leaves the directory as it was);
//! - the resolved configuration, written atomically under the task's file name;
//! - the schedule ([`Schedule`]): updates per epoch, total updates, linear warmup and decay;
//! - AdamW ([`AdamW`]) with the task's per-parameter learning rates and weight decay, global-norm
//!   gradient clipping, and the dropout seed of each update (the run's seed and the update
//!   number, so that a resumed run draws what an uninterrupted one draws);
//! - resuming from the newest checkpoint: the task's model, the optimizer moments and the
//!   [`RunState`];
//! - `metrics.jsonl` ([`MetricsLog`]): one record per update and per dev evaluation;
//! - dev evaluation every `eval_every` updates (else at the end of each epoch) and at the end,
//!   keeping the best model in `best/`;
//! - checkpoints ([`write_checkpoint`]: the task's parts, `optimizer.safetensors` and
//!   `state.json`), keeping the newest `keep_checkpoints`; `stop_after`;
//! - the final model in `model/`, and `summary.json` (the task's summary).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use burn::module::Module;
use burn::tensor::Device;
use indicatif::{ProgressBar, ProgressStyle};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use strata_data::hash::combine;

use crate::checkpoint::{
    CHECKPOINTS, OPTIMIZER_FILE, STATE_FILE, latest_checkpoint, write_atomic, write_checkpoint,
};
use crate::optim::{AdamW, AdamWConfig, GradBuffer, GroupSettings, warmup_linear};
use crate::step::fresh_params;

/// Metrics log inside a run directory.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// Final model inside a run directory.
pub const FINAL_MODEL: &str = "model";
/// Best model (by the task's dev metric) inside a run directory.
pub const BEST_MODEL: &str = "best";
/// Run summary inside a run directory.
pub const SUMMARY_FILE: &str = "summary.json";
/// Stream tag of the dropout seed of each update.
const DROPOUT_TAG: u64 = 0x4452_4f50;

/// How a run is carried out (as opposed to what it trains: the task's configuration).
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

/// The schedule, optimizer and cadence a task asks of the loop.
#[derive(Clone, Debug, PartialEq)]
pub struct LoopSettings {
    /// Updates per epoch.
    pub steps_per_epoch: u64,
    /// Training examples per epoch (recorded in checkpoints, checked on resume).
    pub examples_per_epoch: usize,
    /// Passes over the training data.
    pub epochs: usize,
    /// Most updates (0: as many as the epochs give).
    pub max_steps: u64,
    /// Warmup updates; `None`: `warmup_ratio` of all updates.
    pub warmup_steps: Option<u64>,
    /// Share of the updates spent warming up (when `warmup_steps` is `None`).
    pub warmup_ratio: f64,
    /// AdamW hyper-parameters.
    pub adamw: AdamWConfig,
    /// Peak learning rate of the main parameters (the `lr` of `metrics.jsonl`; the rate each
    /// parameter gets is [`TrainTask::groups`]'s).
    pub lr: f64,
    /// Global gradient-norm bound (0: no clipping).
    pub grad_clip: f64,
    /// Dev evaluation every this many updates (0: at the end of each epoch), and at the end.
    pub eval_every: u64,
    /// Also evaluate before the first update of a fresh run.
    pub eval_at_start: bool,
    /// Checkpoint every this many updates (0: only at the end).
    pub checkpoint_every: u64,
    /// Checkpoints kept.
    pub keep_checkpoints: usize,
    /// Seed of the run (checked on resume; seeds dropout per update).
    pub seed: u64,
}

/// Updates per epoch, in all, and warming up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// Updates per epoch.
    pub steps_per_epoch: u64,
    /// Updates planned.
    pub total: u64,
    /// Warmup updates.
    pub warmup: u64,
}

impl Schedule {
    /// The schedule `settings` describe.
    pub fn new(settings: &LoopSettings) -> Self {
        let mut total = settings.steps_per_epoch * settings.epochs as u64;
        if settings.max_steps > 0 {
            total = total.min(settings.max_steps);
        }
        let warmup = settings
            .warmup_steps
            .unwrap_or_else(|| (settings.warmup_ratio * total as f64).round() as u64)
            .min(total);
        Schedule {
            steps_per_epoch: settings.steps_per_epoch,
            total,
            warmup,
        }
    }

    /// Learning-rate factor of update `step` (0-based): [`warmup_linear`].
    pub fn factor(&self, step: u64) -> f64 {
        warmup_linear(step, self.warmup, self.total)
    }
}

/// The data of the epoch being trained (its instances or batches): made when an update of a
/// new epoch first asks for it, kept until the next epoch's first update.
pub struct EpochData<T> {
    current: Option<(u64, T)>,
}

impl<T> Default for EpochData<T> {
    fn default() -> Self {
        EpochData { current: None }
    }
}

impl<T> EpochData<T> {
    /// The data of `epoch`, made by `make(epoch)` unless it is held already.
    pub fn get(
        &mut self,
        epoch: u64,
        make: impl FnOnce(u64) -> anyhow::Result<T>,
    ) -> anyhow::Result<&T> {
        if self.current.as_ref().is_none_or(|(e, _)| *e != epoch) {
            self.current = None;
            self.current = Some((epoch, make(epoch)?));
        }
        match &self.current {
            Some((_, data)) => Ok(data),
            None => unreachable!("set above"),
        }
    }
}

/// What one update computed (its gradients are in the task's [`GradBuffer`]).
#[derive(Clone, Debug, Default)]
pub struct StepOutcome {
    /// The loss as `metrics.jsonl` records it (`loss`).
    pub loss: f64,
    /// Mean loss per example: the summary's `final_loss` and the progress bar's smoothed loss.
    pub loss_per_example: f64,
    /// Examples the update trained on.
    pub examples: u64,
    /// Further fields of the update's `metrics.jsonl` record.
    pub fields: Map<String, Value>,
}

/// One dev evaluation of a task.
pub trait Evaluation: Clone {
    /// Whether this evaluation beats `best` (the model is then kept in `best/`).
    fn improves_on(&self, best: &Self) -> bool;
    /// Fields of its `metrics.jsonl` record (the loop adds `step`, `best` and `eval_s`).
    fn fields(&self) -> Map<String, Value>;
    /// One line for the log (the loop prefixes the update and marks the best).
    fn describe(&self) -> String;
}

/// The trainer's position and history, saved in each checkpoint (each task saves it under its
/// own field names: [`TrainTask::State`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunState<E> {
    /// Updates done.
    pub step: u64,
    /// Updates per epoch of the run (checked on resume: the data must not have changed).
    pub steps_per_epoch: u64,
    /// Training examples per epoch (checked on resume).
    pub examples_per_epoch: usize,
    /// Seed of the run (checked on resume).
    pub seed: u64,
    /// Examples trained on so far (all sessions).
    pub examples_seen: u64,
    /// Seconds spent in training steps so far (all sessions).
    pub train_seconds: f64,
    /// Every dev evaluation so far.
    pub dev: Vec<E>,
    /// The best of them.
    pub best: Option<E>,
}

/// What a run did, for the task's summary.
#[derive(Clone, Debug)]
pub struct RunOutcome<E> {
    /// The run directory.
    pub run_dir: PathBuf,
    /// The final model (absent when stopped early).
    pub model_dir: Option<PathBuf>,
    /// The best model on the dev split, if evaluated.
    pub best_dir: Option<PathBuf>,
    /// Updates done.
    pub steps: u64,
    /// Updates planned.
    pub total_steps: u64,
    /// Updates per epoch.
    pub steps_per_epoch: u64,
    /// Examples trained on (all sessions).
    pub examples_seen: u64,
    /// Update this session resumed after, if resumed.
    pub resumed_from: Option<u64>,
    /// Whether the run stopped before its planned end.
    pub stopped_early: bool,
    /// Loss per example of the last update of this session.
    pub final_loss: Option<f64>,
    /// Every dev evaluation.
    pub dev: Vec<E>,
    /// The best dev evaluation.
    pub best: Option<E>,
    /// Seconds in training steps (all sessions).
    pub train_seconds: f64,
    /// Seconds of this session in total.
    pub wall_seconds: f64,
    /// Examples per second of this session's training steps.
    pub examples_per_second: f64,
}

/// What a trainer trains: the part of a run that differs between the retriever and the
/// labeler. [`run`] calls it for each update, evaluation and save.
pub trait TrainTask {
    /// The module the optimizer updates.
    type Module: Module;
    /// One dev evaluation.
    type Eval: Evaluation;
    /// The checkpoint's `state.json` as this task writes it (its own field names).
    type State: Serialize
        + DeserializeOwned
        + From<RunState<Self::Eval>>
        + Into<RunState<Self::Eval>>;
    /// What a run returns, also written to `summary.json`.
    type Summary: Serialize;

    /// Name of the resolved configuration inside the run directory.
    const CONFIG_FILE: &'static str;
    /// Label of the progress bar.
    const LABEL: &'static str;
    /// What an example is called (`instances`, `pairs`): the `metrics.jsonl` fields of the
    /// examples per update and per second are named after it.
    const UNIT: &'static str;
    /// Weight of the newest loss in the progress bar's smoothed loss.
    const LOSS_SMOOTHING: f64 = 0.1;

    /// The schedule, optimizer and cadence.
    fn settings(&self) -> LoopSettings;
    /// The autodiff device (reseeded before each update).
    fn device(&self) -> &Device;
    /// The resolved configuration, as written to [`Self::CONFIG_FILE`].
    fn config_text(&self) -> anyhow::Result<String>;
    /// The line announcing the run.
    fn describe(&self, schedule: &Schedule) -> String;
    /// Learning rate and weight decay of the parameter at `path` when the schedule's factor
    /// is `factor`.
    fn groups(&self, path: &str, factor: f64) -> GroupSettings;
    /// Runs the forward and backward passes of update `step` (0-based), adding the gradients
    /// to `grads` (cleared by the loop; micro-batches accumulate into it).
    fn step(
        &mut self,
        module: &Self::Module,
        step: u64,
        grads: &mut GradBuffer,
    ) -> anyhow::Result<StepOutcome>;
    /// Fields of an update's `metrics.jsonl` record measured on the updated module.
    fn module_fields(&self, _module: &Self::Module) -> Map<String, Value> {
        Map::new()
    }
    /// Text after the smoothed loss in the progress bar.
    fn progress_note(&self, _module: &Self::Module) -> String {
        String::new()
    }
    /// Evaluates the module after `step` updates (`None`: the run has no dev split).
    fn evaluate(&self, module: &Self::Module, step: u64) -> anyhow::Result<Option<Self::Eval>>;
    /// Saves the model (best and final) into `dir`.
    fn save_model(&self, module: &Self::Module, dir: &Path) -> anyhow::Result<()>;
    /// Saves the task's parts of a checkpoint into `dir` (its model, and anything else the
    /// loader of a resumed run reads).
    fn save_checkpoint(&self, module: &Self::Module, dir: &Path) -> anyhow::Result<()>;
    /// The summary of a run.
    fn summary(&self, module: &Self::Module, outcome: RunOutcome<Self::Eval>) -> Self::Summary;
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
                    serde_json::from_str::<Value>(l)
                        .ok()
                        .and_then(|v| v.get("step").and_then(|s| s.as_u64()))
                        .is_some_and(|s| s <= step)
                })
                .map(|l| format!("{l}\n"))
                .collect();
            write_atomic(&path, kept.as_bytes())?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        Ok(MetricsLog { file })
    }

    /// Appends one record.
    pub fn write(&mut self, record: Value) -> anyhow::Result<()> {
        writeln!(self.file, "{record}").context("cannot write metrics.jsonl")
    }
}

/// Whether `dir` holds a run: checkpoints, a best or final model, or a metrics log. A
/// configuration file alone (what a run that failed before its first update may leave) does
/// not count.
pub fn holds_run(dir: &Path) -> bool {
    dir.join(CHECKPOINTS).is_dir()
        || dir.join(FINAL_MODEL).is_dir()
        || dir.join(BEST_MODEL).is_dir()
        || dir.join(METRICS_FILE).is_file()
}

/// Refuses to start over an existing run unless resuming or overwriting; returns the
/// checkpoint to resume from.
fn check_run_dir(run_dir: &Path, opts: &TrainOptions) -> anyhow::Result<Option<PathBuf>> {
    if opts.resume {
        let ck = latest_checkpoint(run_dir)?.with_context(|| {
            format!(
                "cannot resume: {} holds no checkpoint (start without --resume)",
                run_dir.display()
            )
        })?;
        return Ok(Some(ck));
    }
    anyhow::ensure!(
        !holds_run(run_dir) || opts.overwrite,
        "run directory {} already holds a run: pass --resume to continue it or --overwrite to start again",
        run_dir.display()
    );
    Ok(None)
}

/// Creates the run directory; a fresh run removes what an earlier run left.
fn prepare_run_dir(run_dir: &Path, fresh: bool) -> anyhow::Result<()> {
    std::fs::create_dir_all(run_dir)
        .with_context(|| format!("cannot create run directory {}", run_dir.display()))?;
    if fresh {
        remove_run_outputs(run_dir, true)?;
    }
    Ok(())
}

/// Removes what a run left in `run_dir`: its checkpoints, best model and metrics log, and its
/// final model when `final_model`.
pub(crate) fn remove_run_outputs(run_dir: &Path, final_model: bool) -> anyhow::Result<()> {
    let dirs: &[&str] = if final_model {
        &[CHECKPOINTS, BEST_MODEL, FINAL_MODEL]
    } else {
        &[CHECKPOINTS, BEST_MODEL]
    };
    for stale in dirs {
        let p = run_dir.join(stale);
        if p.exists() {
            std::fs::remove_dir_all(&p)
                .with_context(|| format!("cannot remove {}", p.display()))?;
        }
    }
    let p = run_dir.join(METRICS_FILE);
    if p.exists() {
        std::fs::remove_file(&p).with_context(|| format!("cannot remove {}", p.display()))?;
    }
    Ok(())
}

fn read_run_state<T: TrainTask>(checkpoint: &Path) -> anyhow::Result<RunState<T::Eval>> {
    let p = checkpoint.join(STATE_FILE);
    let text =
        std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?;
    let saved: T::State = serde_json::from_str(&text)
        .with_context(|| format!("{}: invalid trainer state", p.display()))?;
    Ok(saved.into())
}

fn write_run_state<T: TrainTask>(
    checkpoint: &Path,
    state: &RunState<T::Eval>,
) -> anyhow::Result<()> {
    let p = checkpoint.join(STATE_FILE);
    let saved = T::State::from(state.clone());
    std::fs::write(&p, serde_json::to_string_pretty(&saved)?)
        .with_context(|| format!("cannot write {}", p.display()))
}

/// Prints messages above the progress bar, or through the log without one.
struct Reporter {
    bar: Option<ProgressBar>,
}

impl Reporter {
    fn new(label: &str, total: u64, start: u64, show: bool) -> Self {
        let bar = show.then(|| {
            let b = ProgressBar::new(total);
            b.set_style(
                ProgressStyle::with_template(&format!(
                    "{{spinner}} {label} [{{bar:30}}] {{pos}}/{{len}} updates {{msg}} eta {{eta}} ({{elapsed}})"
                ))
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b.set_position(start);
            b
        });
        Reporter { bar }
    }

    fn say(&self, msg: String) {
        match &self.bar {
            Some(b) if !b.is_hidden() => b.println(msg),
            _ => tracing::info!("{msg}"),
        }
    }

    /// Runs `f` with the bar out of the way (evaluations show their own progress).
    fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.bar {
            Some(b) => b.suspend(f),
            None => f(),
        }
    }
}

/// The parts of a running run that evaluations and updates share.
struct Session<'a, T: TrainTask> {
    task: T,
    run_dir: &'a Path,
    state: RunState<T::Eval>,
    metrics: MetricsLog,
    reporter: Reporter,
}

impl<T: TrainTask> Session<'_, T> {
    /// Evaluates the module after `step` updates, keeps it in `best/` when it is the best so
    /// far, and logs the evaluation.
    fn evaluate(&mut self, module: &T::Module, step: u64) -> anyhow::Result<()> {
        let t = Instant::now();
        let task = &self.task;
        let Some(point) = self.reporter.suspend(|| task.evaluate(module, step))? else {
            return Ok(());
        };
        self.state.dev.push(point.clone());
        let improved = self
            .state
            .best
            .as_ref()
            .is_none_or(|b| point.improves_on(b));
        if improved {
            self.state.best = Some(point.clone());
            task.save_model(module, &self.run_dir.join(BEST_MODEL))?;
        }
        let mut record = Map::new();
        record.insert("step".into(), step.into());
        record.extend(point.fields());
        record.insert("best".into(), improved.into());
        record.insert("eval_s".into(), t.elapsed().as_secs_f64().into());
        self.metrics.write(Value::Object(record))?;
        self.reporter.say(format!(
            "update {step}: {}{}",
            point.describe(),
            if improved { " (best)" } else { "" }
        ));
        Ok(())
    }
}

/// Trains in `run_dir`: checks the directory, then `load`s the task and its module (from the
/// checkpoint it is given when resuming: the task's parts of it), and only then touches the
/// directory. Returns the task's summary (also written to `summary.json`).
pub fn run<T, L>(run_dir: &Path, opts: &TrainOptions, load: L) -> anyhow::Result<T::Summary>
where
    T: TrainTask,
    L: FnOnce(Option<&Path>) -> anyhow::Result<(T, T::Module)>,
{
    let wall = Instant::now();
    let resume_from = check_run_dir(run_dir, opts)?;
    let (task, module) = load(resume_from.as_deref())?;
    let mut module = fresh_params(module);
    let settings = task.settings();
    let schedule = Schedule::new(&settings);

    let (mut optimizer, state) = match &resume_from {
        Some(ck) => {
            let optimizer = AdamW::load(settings.adamw, &ck.join(OPTIMIZER_FILE))?;
            optimizer
                .check_against(&module)
                .with_context(|| format!("cannot resume from {}", ck.display()))?;
            let state = read_run_state::<T>(ck)?;
            anyhow::ensure!(
                state.steps_per_epoch == settings.steps_per_epoch
                    && state.examples_per_epoch == settings.examples_per_epoch
                    && state.seed == settings.seed,
                "cannot resume from {}: it was made with {} {unit} and {} updates per epoch and seed {}; this configuration gives {}, {} and seed {} (the data, batch size or seed changed)",
                ck.display(),
                state.examples_per_epoch,
                state.steps_per_epoch,
                state.seed,
                settings.examples_per_epoch,
                settings.steps_per_epoch,
                settings.seed,
                unit = T::UNIT,
            );
            (optimizer, state)
        }
        None => (
            AdamW::new(settings.adamw),
            RunState {
                step: 0,
                steps_per_epoch: settings.steps_per_epoch,
                examples_per_epoch: settings.examples_per_epoch,
                seed: settings.seed,
                examples_seen: 0,
                train_seconds: 0.0,
                dev: Vec::new(),
                best: None,
            },
        ),
    };
    let config_text = task.config_text()?;

    // Data and model loaded: only now is anything of an earlier run replaced, so a run that
    // fails to start leaves the directory as it was.
    prepare_run_dir(run_dir, resume_from.is_none())?;
    write_atomic(&run_dir.join(T::CONFIG_FILE), config_text.as_bytes())?;
    let start_step = state.step;
    let metrics = MetricsLog::open(run_dir, resume_from.as_ref().map(|_| start_step))?;
    let reporter = Reporter::new(T::LABEL, schedule.total, start_step, opts.progress);
    reporter.say(task.describe(&schedule));
    if let Some(ck) = &resume_from {
        reporter.say(format!(
            "resuming from {} (update {start_step})",
            ck.display()
        ));
    }
    let mut s = Session {
        task,
        run_dir,
        state,
        metrics,
        reporter,
    };

    if start_step == 0 && settings.eval_at_start {
        s.evaluate(&module, 0)?;
    }
    let mut grads = GradBuffer::new();
    let mut last_loss = None;
    let mut smoothed: Option<f64> = None;
    let (mut session_examples, mut session_seconds) = (0u64, 0f64);
    let rate_field = format!("{}_per_s", T::UNIT);
    let mut stopped_early = false;
    for step in start_step..schedule.total {
        let t0 = Instant::now();
        let epoch = step / schedule.steps_per_epoch;
        // Dropout draws depend only on the seed and the update.
        s.task
            .device()
            .seed(combine(&[settings.seed, step, DROPOUT_TAG]));
        grads.clear();
        let out = s
            .task
            .step(&module, step, &mut grads)
            .with_context(|| format!("update {}", step + 1))?;
        anyhow::ensure!(
            out.loss.is_finite() && out.loss_per_example.is_finite(),
            "update {}: the loss is {}: training diverged",
            step + 1,
            out.loss
        );
        let grad_norm = if settings.grad_clip > 0.0 {
            grads.clip_global_norm(settings.grad_clip)
        } else {
            grads.norm()
        };
        let factor = schedule.factor(step);
        let task = &s.task;
        module = optimizer.step(module, &grads, &|path: &str| task.groups(path, factor));
        // Read after the update is queued: on a GPU the step has no read-back before here.
        let grad_norm = grad_norm.value();
        let dt = t0.elapsed().as_secs_f64();
        session_seconds += dt;
        session_examples += out.examples;
        s.state.step = step + 1;
        s.state.examples_seen += out.examples;
        s.state.train_seconds += dt;
        last_loss = Some(out.loss_per_example);
        let ema = smoothed.map_or(out.loss_per_example, |e| {
            (1.0 - T::LOSS_SMOOTHING) * e + T::LOSS_SMOOTHING * out.loss_per_example
        });
        smoothed = Some(ema);
        let rate = session_examples as f64 / session_seconds.max(1e-9);
        let mut record = Map::new();
        record.insert("step".into(), s.state.step.into());
        record.insert("epoch".into(), epoch.into());
        record.insert("loss".into(), out.loss.into());
        record.insert("lr".into(), (settings.lr * factor).into());
        record.insert("grad_norm".into(), grad_norm.into());
        record.insert(T::UNIT.into(), out.examples.into());
        record.insert(rate_field.clone(), rate.into());
        record.insert("step_s".into(), dt.into());
        record.extend(out.fields);
        record.extend(s.task.module_fields(&module));
        s.metrics.write(Value::Object(record))?;
        if let Some(b) = &s.reporter.bar {
            b.set_message(format!(
                "loss {ema:.4}{} {rate:.1} {}/s",
                s.task.progress_note(&module),
                T::UNIT
            ));
            b.set_position(s.state.step);
        }

        let done = s.state.step;
        let at_end = done == schedule.total;
        let eval_now = at_end
            || if settings.eval_every > 0 {
                done.is_multiple_of(settings.eval_every)
            } else {
                done.is_multiple_of(schedule.steps_per_epoch)
            };
        if eval_now {
            s.evaluate(&module, done)?;
        }
        let checkpoint_now = at_end
            || (settings.checkpoint_every > 0 && done.is_multiple_of(settings.checkpoint_every));
        if checkpoint_now {
            write_checkpoint(run_dir, done, settings.keep_checkpoints, |dir| {
                s.task.save_checkpoint(&module, dir)?;
                optimizer.save(&dir.join(OPTIMIZER_FILE))?;
                write_run_state::<T>(dir, &s.state)
            })?;
        }
        if opts.stop_after == Some(done) && !at_end {
            stopped_early = true;
            break;
        }
    }
    if let Some(b) = &s.reporter.bar {
        b.finish_and_clear();
    }

    let model_dir = if stopped_early {
        None
    } else {
        let dir = run_dir.join(FINAL_MODEL);
        s.task.save_model(&module, &dir)?;
        Some(dir)
    };
    let outcome = RunOutcome {
        run_dir: run_dir.to_path_buf(),
        model_dir,
        best_dir: s.state.best.as_ref().map(|_| run_dir.join(BEST_MODEL)),
        steps: s.state.step,
        total_steps: schedule.total,
        steps_per_epoch: schedule.steps_per_epoch,
        examples_seen: s.state.examples_seen,
        resumed_from: resume_from.map(|_| start_step),
        stopped_early,
        final_loss: last_loss,
        dev: s.state.dev.clone(),
        best: s.state.best.clone(),
        train_seconds: s.state.train_seconds,
        wall_seconds: wall.elapsed().as_secs_f64(),
        examples_per_second: session_examples as f64 / session_seconds.max(1e-9),
    };
    let summary = s.task.summary(&module, outcome);
    write_atomic(
        &run_dir.join(SUMMARY_FILE),
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{list_checkpoints, load_params, save_params};
    use crate::optim::param_values;
    use burn::module::Param;
    use burn::tensor::{Tensor, TensorData};

    /// One parameter of two values.
    #[derive(Module, Debug)]
    struct Toy {
        w: Param<Tensor<1>>,
    }

    const WEIGHTS: &str = "toy.safetensors";

    fn toy(device: &Device) -> Toy {
        let t = Tensor::<1>::from_data(TensorData::new(vec![0f32, 0.0], [2]), device);
        Toy {
            w: Param::from_tensor(t),
        }
    }

    fn values(dir: &Path) -> Vec<f32> {
        let m = load_params(toy(&Device::flex()), &dir.join(WEIGHTS)).unwrap();
        param_values(&m).remove("w").unwrap()
    }

    /// The distance of `w` to a dev target: the best model is the closest.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    struct ToyEval {
        score: f64,
        w: Vec<f32>,
    }

    impl Evaluation for ToyEval {
        fn improves_on(&self, best: &Self) -> bool {
            self.score > best.score
        }
        fn fields(&self) -> Map<String, Value> {
            Map::from_iter([("dev_score".to_string(), Value::from(self.score))])
        }
        fn describe(&self) -> String {
            format!("score {:.4}", self.score)
        }
    }

    #[derive(Debug, Serialize)]
    struct ToySummary {
        steps: u64,
        best_step: Option<usize>,
        stopped_early: bool,
        resumed_from: Option<u64>,
        final_loss: Option<f64>,
    }

    /// A quadratic loss pulling `w` towards a target that moves with the epoch and the
    /// update, past the dev target (2, 2).
    struct ToyTask {
        device: Device,
        settings: LoopSettings,
    }

    impl TrainTask for ToyTask {
        type Module = Toy;
        type Eval = ToyEval;
        type State = RunState<ToyEval>;
        type Summary = ToySummary;
        const CONFIG_FILE: &'static str = "config.json";
        const LABEL: &'static str = "toy";
        const UNIT: &'static str = "points";

        fn settings(&self) -> LoopSettings {
            self.settings.clone()
        }
        fn device(&self) -> &Device {
            &self.device
        }
        fn config_text(&self) -> anyhow::Result<String> {
            Ok(format!("{{\"seed\": {}}}", self.settings.seed))
        }
        fn describe(&self, schedule: &Schedule) -> String {
            format!("toy run of {} updates", schedule.total)
        }
        fn groups(&self, _path: &str, factor: f64) -> GroupSettings {
            GroupSettings {
                lr: self.settings.lr * factor,
                decay: true,
            }
        }
        fn step(
            &mut self,
            module: &Toy,
            step: u64,
            grads: &mut GradBuffer,
        ) -> anyhow::Result<StepOutcome> {
            let spe = self.settings.steps_per_epoch;
            let (epoch, k) = ((step / spe) as f32, (step % spe) as f32);
            let target = Tensor::<1>::from_data(
                TensorData::new(vec![5.0 + epoch, 5.0 - 0.3 * k], [2]),
                &self.device,
            );
            let d = module.w.val() - target;
            let loss = (d.clone() * d).sum();
            let value = loss.clone().into_scalar::<f64>();
            let mut g = loss.backward();
            grads.accumulate(module, &mut g, 1.0);
            let mut fields = Map::new();
            fields.insert("k".into(), k.into());
            Ok(StepOutcome {
                loss: value,
                loss_per_example: value / 2.0,
                examples: 2,
                fields,
            })
        }
        fn evaluate(&self, module: &Toy, _step: u64) -> anyhow::Result<Option<ToyEval>> {
            let w = param_values(module).remove("w").context("no w")?;
            let score = -w.iter().map(|&x| (f64::from(x) - 2.0).powi(2)).sum::<f64>();
            Ok(Some(ToyEval { score, w }))
        }
        fn save_model(&self, module: &Toy, dir: &Path) -> anyhow::Result<()> {
            std::fs::create_dir_all(dir)?;
            save_params(module, &dir.join(WEIGHTS))
        }
        fn save_checkpoint(&self, module: &Toy, dir: &Path) -> anyhow::Result<()> {
            self.save_model(module, &dir.join("model"))
        }
        fn summary(&self, _module: &Toy, o: RunOutcome<ToyEval>) -> ToySummary {
            ToySummary {
                steps: o.steps,
                best_step: o
                    .best
                    .as_ref()
                    .and_then(|b| o.dev.iter().position(|d| d == b)),
                stopped_early: o.stopped_early,
                resumed_from: o.resumed_from,
                final_loss: o.final_loss,
            }
        }
    }

    fn settings() -> LoopSettings {
        LoopSettings {
            steps_per_epoch: 5,
            examples_per_epoch: 10,
            epochs: 2,
            max_steps: 0,
            warmup_steps: Some(2),
            warmup_ratio: 0.0,
            adamw: AdamWConfig::default(),
            lr: 0.4,
            grad_clip: 1.0,
            eval_every: 2,
            eval_at_start: true,
            checkpoint_every: 3,
            keep_checkpoints: 2,
            seed: 7,
        }
    }

    fn train(
        dir: &Path,
        opts: &TrainOptions,
        settings: LoopSettings,
    ) -> anyhow::Result<ToySummary> {
        run(dir, opts, |ck| {
            let device = Device::flex().autodiff();
            let module = match ck {
                Some(ck) => load_params(toy(&device), &ck.join("model").join(WEIGHTS))?,
                None => toy(&device),
            };
            Ok((ToyTask { device, settings }, module))
        })
    }

    /// `metrics.jsonl` without its timings.
    fn records(run: &Path) -> Vec<Value> {
        std::fs::read_to_string(run.join(METRICS_FILE))
            .unwrap()
            .lines()
            .map(|l| {
                let mut v: Value = serde_json::from_str(l).unwrap();
                let m = v.as_object_mut().unwrap();
                for timing in ["step_s", "eval_s", "points_per_s"] {
                    m.remove(timing);
                }
                v
            })
            .collect()
    }

    fn resume() -> TrainOptions {
        TrainOptions {
            resume: true,
            ..Default::default()
        }
    }

    #[test]
    fn a_resumed_run_repeats_an_uninterrupted_one_bit_for_bit() {
        let dir = tempfile::tempdir().unwrap();
        let (whole, split) = (dir.path().join("whole"), dir.path().join("split"));
        let w = train(&whole, &TrainOptions::default(), settings()).unwrap();
        assert_eq!(
            (w.steps, w.stopped_early, w.resumed_from),
            (10, false, None)
        );

        let stop = TrainOptions {
            stop_after: Some(7),
            ..Default::default()
        };
        let first = train(&split, &stop, settings()).unwrap();
        assert!(first.stopped_early && first.steps == 7);
        assert!(!split.join(FINAL_MODEL).exists());
        let second = train(&split, &resume(), settings()).unwrap();
        assert_eq!((second.steps, second.resumed_from), (10, Some(6)));

        assert_eq!(
            values(&whole.join(FINAL_MODEL)),
            values(&split.join(FINAL_MODEL))
        );
        assert_eq!(
            values(&whole.join(BEST_MODEL)),
            values(&split.join(BEST_MODEL))
        );
        assert_eq!(w.final_loss, second.final_loss);
        assert_eq!(w.best_step, second.best_step);
        // The interrupted session's records after its checkpoint were dropped: the logs agree
        // record for record.
        let log = records(&whole);
        assert_eq!(log, records(&split));
        let updates: Vec<u64> = log
            .iter()
            .filter(|r| r.get("loss").is_some())
            .map(|r| r["step"].as_u64().unwrap())
            .collect();
        assert_eq!(updates, (1..=10).collect::<Vec<_>>());
        assert!(log.iter().all(|r| r.get("step").is_some()));
        // Checkpoints every 3 updates and at the end, the newest two kept.
        let kept: Vec<u64> = list_checkpoints(&split)
            .unwrap()
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        assert_eq!(kept, vec![9, 10]);
        let summary: Value =
            serde_json::from_str(&std::fs::read_to_string(split.join(SUMMARY_FILE)).unwrap())
                .unwrap();
        assert_eq!(summary["steps"], 10);
        assert_eq!(
            std::fs::read_to_string(split.join("config.json")).unwrap(),
            "{\"seed\": 7}"
        );
    }

    #[test]
    fn the_best_evaluation_is_kept_in_best() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        let s = train(&run, &TrainOptions::default(), settings()).unwrap();
        let dev: Vec<(u64, f64, bool)> = records(&run)
            .iter()
            .filter_map(|r| {
                let score = r.get("dev_score")?.as_f64()?;
                Some((r["step"].as_u64()?, score, r["best"].as_bool()?))
            })
            .collect();
        // At the start, every second update, and not again at the end (10 is even).
        let steps: Vec<u64> = dev.iter().map(|d| d.0).collect();
        assert_eq!(steps, vec![0, 2, 4, 6, 8, 10]);
        let best = (0..dev.len())
            .max_by(|&a, &b| dev[a].1.total_cmp(&dev[b].1))
            .unwrap();
        assert_eq!(s.best_step, Some(best));
        assert!(
            best > 0 && best < dev.len() - 1,
            "the test wants a best model in the middle of the run: {dev:?}"
        );
        // `best` marks each new best, the last of them at the best evaluation.
        assert_eq!(dev.iter().rposition(|d| d.2), Some(best));
        // best/ holds the model as it was then, not the final one.
        let state: RunState<ToyEval> = serde_json::from_str(
            &std::fs::read_to_string(latest_checkpoint(&run).unwrap().unwrap().join(STATE_FILE))
                .unwrap(),
        )
        .unwrap();
        let b = state.best.unwrap();
        assert_eq!(b, state.dev[best]);
        assert_eq!(values(&run.join(BEST_MODEL)), b.w);
        assert_ne!(
            values(&run.join(BEST_MODEL)),
            values(&run.join(FINAL_MODEL))
        );
    }

    #[test]
    fn an_existing_run_is_refused_and_a_failed_start_touches_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        // Nothing to resume.
        let e = train(&run, &resume(), settings()).unwrap_err();
        assert!(format!("{e:#}").contains("holds no checkpoint"), "{e:#}");
        // A task that fails to load leaves no directory behind.
        let fail = |_: Option<&Path>| -> anyhow::Result<(ToyTask, Toy)> {
            anyhow::bail!("the data is bad")
        };
        let e = super::run(&run, &TrainOptions::default(), fail).unwrap_err();
        assert!(format!("{e:#}").contains("the data is bad"));
        assert!(!run.exists());

        train(&run, &TrainOptions::default(), settings()).unwrap();
        let e = train(&run, &TrainOptions::default(), settings()).unwrap_err();
        let msg = format!("{e:#}");
        assert!(
            msg.contains("already holds a run") && msg.contains("--overwrite"),
            "{msg}"
        );
        // An overwrite whose task fails to load keeps the earlier run whole.
        let overwrite = TrainOptions {
            overwrite: true,
            ..Default::default()
        };
        let before = (values(&run.join(FINAL_MODEL)), records(&run));
        assert!(super::run(&run, &overwrite, fail).is_err());
        assert_eq!(before, (values(&run.join(FINAL_MODEL)), records(&run)));
        assert_eq!(list_checkpoints(&run).unwrap().len(), 2);
        // A resume with other data is refused, naming the checkpoint.
        let mut other = settings();
        other.steps_per_epoch = 4;
        let e = format!("{:#}", train(&run, &resume(), other).unwrap_err());
        assert!(
            e.contains("cannot resume from") && e.contains("step-000010"),
            "{e}"
        );
        // An overwrite that starts replaces the earlier run.
        let stop = TrainOptions {
            overwrite: true,
            stop_after: Some(1),
            ..Default::default()
        };
        let s = train(&run, &stop, settings()).unwrap();
        assert!(s.stopped_early);
        assert!(!run.join(FINAL_MODEL).exists() && list_checkpoints(&run).unwrap().is_empty());
        assert_eq!(records(&run).len(), 2, "{:?}", records(&run));
    }

    #[test]
    fn the_schedule_counts_updates_and_warmup() {
        let mut s = settings();
        assert_eq!(
            Schedule::new(&s),
            Schedule {
                steps_per_epoch: 5,
                total: 10,
                warmup: 2
            }
        );
        s.max_steps = 7;
        s.warmup_steps = None;
        s.warmup_ratio = 0.3;
        let sch = Schedule::new(&s);
        assert_eq!((sch.total, sch.warmup), (7, 2));
        assert_eq!(sch.factor(0), 0.5);
        assert_eq!(sch.factor(7), 0.0);
    }
}
