//! Fine-tuning the cross-encoder on human three-level judgments: cross-entropy (optionally
//! class-weighted), AdamW (strata-train's, explicit epsilon and weight decay) with linear
//! warmup and decay, global-norm gradient clipping, length-sorted batches, dev accuracy
//! keeping the best model, and resumable checkpoints.
//!
//! A run directory holds `config.json` (the resolved configuration), `metrics.jsonl` (one
//! record per update and per dev evaluation), `checkpoints/`, `best/` (the labeler with the
//! best dev accuracy), `model/` (the final labeler) and `summary.json`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Tensor, TensorData};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use strata_data::hash::combine;
use strata_model::BatchLimits;
use strata_train::checkpoint::{latest_checkpoint, write_atomic, write_checkpoint};
use strata_train::optim::{AdamW, AdamWConfig, GradBuffer, GroupSettings, warmup_linear};
use strata_train::step::fresh_params;
use strata_train::trainer::MetricsLog;

use super::data::{LabeledPairs, PairSource, epoch_batches, subsample};
use super::metrics::ConfusionMatrix;
use super::model::{CrossEncoder, NUM_LABELS, PairBatch, PairTokens, Pooling, tokenize_pairs};
use super::store::{
    LoadedCrossEncoder, argmax, cross_encoder_from_encoder, for_inference, is_labeler_dir,
    load_cross_encoder, load_tokenizer, predict, save_cross_encoder,
};

/// Resolved configuration of a run inside its directory.
pub const CONFIG_FILE: &str = "config.json";
/// Metrics log inside a run directory.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// Best labeler (by dev accuracy) inside a run directory.
pub const BEST_MODEL: &str = "best";
/// Final labeler inside a run directory.
pub const FINAL_MODEL: &str = "model";
/// Run summary inside a run directory.
pub const SUMMARY_FILE: &str = "summary.json";
const STATE_FILE: &str = "state.json";
const OPTIMIZER_FILE: &str = "optimizer.safetensors";
const MODEL_DIR: &str = "model";
/// Module path prefix of the head.
const HEAD_PATH: &str = "classifier";

/// Everything a cross-encoder run trains on and how.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LabelerTrainConfig {
    /// The labeled pairs and their split.
    pub data: PairSource,
    /// Run directory.
    pub out: PathBuf,
    /// Starting point: a Hugging Face folder, a strata model directory (its encoder; the head
    /// starts random) or a labeler directory.
    pub init: PathBuf,
    /// Truncation length of a pair in tokens (a new labeler; capped by the position table).
    pub max_len: usize,
    /// Pooling of a new labeler.
    pub pooling: Pooling,
    /// Dropout of the encoder's embeddings and residual outputs while training.
    pub dropout: f64,
    /// Dropout of the attention probabilities while training (0 keeps the fused attention).
    pub attention_dropout: f64,
    /// Dropout before the head while training.
    pub head_dropout: f64,
    /// Passes over the training pairs.
    pub epochs: usize,
    /// Pairs per update.
    pub batch_size: usize,
    /// Batches per length-sorted window.
    pub sort_window: usize,
    /// Peak learning rate of the encoder.
    pub lr: f64,
    /// Peak learning rate of the head.
    pub head_lr: f64,
    /// AdamW hyper-parameters (epsilon and weight decay explicit).
    pub adamw: AdamWConfig,
    /// Share of the updates spent warming up.
    pub warmup_ratio: f64,
    /// Global gradient-norm bound (0: no clipping).
    pub grad_clip: f64,
    /// Weights of levels 0, 1, 2 in the cross-entropy (`None`: equal).
    pub class_weights: Option<[f64; NUM_LABELS]>,
    /// Most training pairs (a seeded sample; 0: all).
    pub max_train_pairs: usize,
    /// Most dev pairs evaluated (a seeded sample; 0: all).
    pub max_dev_pairs: usize,
    /// Most updates (0: as many as the epochs give).
    pub max_steps: u64,
    /// Dev evaluation every this many updates (0: at the end of each epoch) and at the end.
    pub eval_every: u64,
    /// Checkpoint every this many updates (0: only at the end).
    pub checkpoint_every: u64,
    /// Checkpoints kept.
    pub keep_checkpoints: usize,
    /// Seed of the head, the data order, the samples and dropout.
    pub seed: u64,
    /// Compute device (`cpu`, `cuda`, `cuda:N`).
    pub device: String,
    /// Pairs per inference batch and padded tokens per inference batch (dev evaluation).
    pub eval_batch: usize,
    pub eval_tokens: usize,
}

impl Default for LabelerTrainConfig {
    fn default() -> Self {
        LabelerTrainConfig {
            data: PairSource::default(),
            out: PathBuf::from("runs/labeler"),
            init: PathBuf::from("models/all-MiniLM-L6-v2"),
            max_len: 128,
            pooling: Pooling::Mean,
            dropout: 0.1,
            attention_dropout: 0.0,
            head_dropout: 0.1,
            epochs: 1,
            batch_size: 32,
            sort_window: 50,
            lr: 3e-5,
            head_lr: 1e-3,
            adamw: AdamWConfig::default(),
            warmup_ratio: 0.1,
            grad_clip: 1.0,
            class_weights: None,
            max_train_pairs: 0,
            max_dev_pairs: 2000,
            max_steps: 0,
            eval_every: 0,
            checkpoint_every: 0,
            keep_checkpoints: 2,
            seed: 42,
            device: "cpu".into(),
            eval_batch: 64,
            eval_tokens: 4096,
        }
    }
}

impl LabelerTrainConfig {
    /// Checks the values, naming the offending field.
    pub fn validate(&self) -> anyhow::Result<()> {
        let ensure = |ok: bool, field: &str, why: &str| -> anyhow::Result<()> {
            anyhow::ensure!(ok, "config field `{field}` {why}");
            Ok(())
        };
        ensure(self.max_len >= 3, "max_len", "must be at least 3")?;
        for (f, v) in [
            ("dropout", self.dropout),
            ("attention_dropout", self.attention_dropout),
            ("head_dropout", self.head_dropout),
        ] {
            ensure((0.0..1.0).contains(&v), f, "must be in [0, 1)")?;
        }
        ensure(self.epochs > 0, "epochs", "must be positive")?;
        ensure(self.batch_size > 0, "batch_size", "must be positive")?;
        ensure(self.sort_window > 0, "sort_window", "must be positive")?;
        ensure(
            self.lr > 0.0 && self.lr.is_finite(),
            "lr",
            "must be positive",
        )?;
        ensure(
            self.head_lr > 0.0 && self.head_lr.is_finite(),
            "head_lr",
            "must be positive",
        )?;
        ensure(
            self.adamw.epsilon > 0.0,
            "adamw.epsilon",
            "must be positive",
        )?;
        ensure(
            self.adamw.weight_decay >= 0.0,
            "adamw.weight_decay",
            "must be >= 0",
        )?;
        ensure(
            (0.0..=1.0).contains(&self.warmup_ratio),
            "warmup_ratio",
            "must be in [0, 1]",
        )?;
        ensure(self.grad_clip >= 0.0, "grad_clip", "must be >= 0")?;
        if let Some(w) = self.class_weights {
            ensure(
                w.iter().all(|x| x.is_finite() && *x >= 0.0) && w.iter().sum::<f64>() > 0.0,
                "class_weights",
                "must be three non-negative numbers, not all 0",
            )?;
        }
        ensure(
            self.keep_checkpoints > 0,
            "keep_checkpoints",
            "must be positive",
        )?;
        ensure(self.eval_batch > 0, "eval_batch", "must be positive")?;
        self.data
            .split
            .validate()
            .context("config field `data.split`")?;
        Ok(())
    }

    /// Reads a configuration written by a run.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{}: invalid labeler training config", path.display()))
    }
}

/// How a run is carried out.
#[derive(Clone, Debug, Default)]
pub struct LabelerTrainOptions {
    /// Continue from the run directory's newest checkpoint.
    pub resume: bool,
    /// Start afresh in a directory that already holds a run.
    pub overwrite: bool,
    /// Progress bar on stderr.
    pub progress: bool,
    /// Stop after this many updates as if killed there (tests of resumption).
    pub stop_after: Option<u64>,
}

/// One dev evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct DevAccuracy {
    pub step: u64,
    pub accuracy: f64,
    pub within_1_accuracy: f64,
    pub pairs: u64,
}

/// The trainer's position (saved in each checkpoint).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct LabelerState {
    step: u64,
    steps_per_epoch: u64,
    train_pairs: usize,
    seed: u64,
    train_seconds: f64,
    /// Pairs trained on so far (all sessions).
    #[serde(default)]
    pairs_seen: u64,
    dev: Vec<DevAccuracy>,
    best: Option<DevAccuracy>,
}

/// What a run did.
#[derive(Clone, Debug, Serialize)]
pub struct LabelerTrainSummary {
    pub run_dir: PathBuf,
    pub model_dir: Option<PathBuf>,
    pub best_dir: Option<PathBuf>,
    pub steps: u64,
    pub total_steps: u64,
    pub steps_per_epoch: u64,
    /// Training pairs (after `max_train_pairs`).
    pub train_pairs: usize,
    /// Pairs in the train split.
    pub train_pairs_available: usize,
    /// Pairs trained on, repeats across epochs included (all sessions).
    pub pairs_seen: u64,
    pub dev_pairs: usize,
    pub train_level_counts: [u64; NUM_LABELS],
    pub resumed_from: Option<u64>,
    pub stopped_early: bool,
    pub final_loss: Option<f64>,
    pub dev: Vec<DevAccuracy>,
    pub best: Option<DevAccuracy>,
    pub train_seconds: f64,
    pub pairs_per_second: f64,
}

/// Class-weighted mean cross-entropy of `logits` `[batch, 3]` against `labels` (PyTorch's
/// `CrossEntropyLoss(weight=w)`: `sum_i w[y_i] * -log p_i(y_i) / sum_i w[y_i]`).
pub fn cross_entropy(
    logits: Tensor<2>,
    labels: &[u8],
    weights: Option<[f64; NUM_LABELS]>,
    device: &Device,
) -> anyhow::Result<Tensor<1>> {
    let [b, k] = logits.dims();
    anyhow::ensure!(
        b == labels.len(),
        "{b} logits rows, {} labels",
        labels.len()
    );
    let w = weights.unwrap_or([1.0; NUM_LABELS]);
    let mut target = vec![0f32; b * k];
    let mut total = 0f64;
    for (i, &l) in labels.iter().enumerate() {
        anyhow::ensure!((l as usize) < k, "label {l} out of range");
        target[i * k + l as usize] = w[l as usize] as f32;
        total += w[l as usize];
    }
    anyhow::ensure!(total > 0.0, "the batch's class weights sum to 0");
    let target = Tensor::<2>::from_data(TensorData::new(target, [b, k]), device);
    Ok((log_softmax(logits, 1) * target)
        .sum()
        .neg()
        .div_scalar(total))
}

/// Learning rate and weight decay per parameter: the head has its own rate; biases and layer
/// norms are not decayed.
fn groups(cfg: &LabelerTrainConfig, factor: f64) -> impl Fn(&str) -> GroupSettings + '_ {
    move |path: &str| {
        let head = path.starts_with(HEAD_PATH);
        GroupSettings {
            lr: if head { cfg.head_lr } else { cfg.lr } * factor,
            decay: !(path.ends_with("bias") || path.contains("layer_norm")),
        }
    }
}

/// Trains a cross-encoder labeler as `cfg` describes.
pub fn train_labeler(
    cfg: &LabelerTrainConfig,
    opts: &LabelerTrainOptions,
) -> anyhow::Result<LabelerTrainSummary> {
    cfg.validate()?;
    let run_dir = cfg.out.clone();
    let has_run = run_dir.join(CONFIG_FILE).is_file() || run_dir.join("checkpoints").is_dir();
    let resume_from = if opts.resume {
        Some(latest_checkpoint(&run_dir)?.with_context(|| {
            format!(
                "cannot resume: {} holds no checkpoint (start without --resume)",
                run_dir.display()
            )
        })?)
    } else {
        anyhow::ensure!(
            !has_run || opts.overwrite,
            "run directory {} already holds a run: pass --resume to continue it or --overwrite to start again",
            run_dir.display()
        );
        None
    };
    let device = strata_model::parse_device(&cfg.device)?.autodiff();
    let infer_device = device.clone().inner();

    // The model.
    let LoadedCrossEncoder {
        mut model,
        config: model_cfg,
        tokenizer_path,
        ..
    } = match &resume_from {
        Some(ck) => load_cross_encoder(&ck.join(MODEL_DIR), &device)?,
        None if is_labeler_dir(&cfg.init) => load_cross_encoder(&cfg.init, &device)
            .with_context(|| format!("loading the initial labeler {}", cfg.init.display()))?,
        None => cross_encoder_from_encoder(
            &cfg.init,
            cfg.max_len,
            cfg.pooling,
            cfg.head_dropout,
            cfg.data.depth(),
            cfg.seed,
            &device,
        )?,
    };
    model.bert.set_dropout(cfg.dropout, cfg.attention_dropout);
    model.dropout.prob = cfg.head_dropout;
    let tokenizer = load_tokenizer(&tokenizer_path, &model_cfg)?;

    // The data, with the item text the labeler was built for.
    let data = LabeledPairs::load(&cfg.data, model_cfg.taxonomy_depth)?;
    let train_js = subsample(&data.train, cfg.max_train_pairs, cfg.seed);
    let dev_js = subsample(&data.dev, cfg.max_dev_pairs, combine(&[cfg.seed, 1]));
    anyhow::ensure!(
        !train_js.is_empty(),
        "the train split is empty ({} judgments in all)",
        data.train.len() + data.dev.len() + data.test.len()
    );
    let train_tokens = tokenize_pairs(&tokenizer, &data.texts(&train_js))?;
    let train_labels: Vec<u8> = train_js.iter().map(|j| j.label).collect();
    let dev_tokens = tokenize_pairs(&tokenizer, &data.texts(&dev_js))?;
    let dev_labels: Vec<u8> = dev_js.iter().map(|j| j.label).collect();
    let lengths: Vec<usize> = train_tokens.iter().map(PairTokens::len).collect();

    // The run directory is touched only once the model and the data are known to be good.
    std::fs::create_dir_all(&run_dir)
        .with_context(|| format!("cannot create run directory {}", run_dir.display()))?;
    if resume_from.is_none() {
        for stale in ["checkpoints", BEST_MODEL, FINAL_MODEL] {
            let p = run_dir.join(stale);
            if p.exists() {
                std::fs::remove_dir_all(&p)
                    .with_context(|| format!("cannot remove {}", p.display()))?;
            }
        }
        let _ = std::fs::remove_file(run_dir.join(METRICS_FILE));
    }
    write_atomic(
        &run_dir.join(CONFIG_FILE),
        serde_json::to_string_pretty(cfg)?.as_bytes(),
    )?;

    // The schedule.
    let steps_per_epoch = train_tokens.len().div_ceil(cfg.batch_size) as u64;
    let mut total = steps_per_epoch * cfg.epochs as u64;
    if cfg.max_steps > 0 {
        total = total.min(cfg.max_steps);
    }
    let warmup = ((cfg.warmup_ratio * total as f64).round() as u64).min(total);

    let mut optimizer = AdamW::new(cfg.adamw);
    let mut state = LabelerState {
        step: 0,
        steps_per_epoch,
        train_pairs: train_tokens.len(),
        seed: cfg.seed,
        train_seconds: 0.0,
        pairs_seen: 0,
        dev: Vec::new(),
        best: None,
    };
    if let Some(ck) = &resume_from {
        optimizer = AdamW::load(cfg.adamw, &ck.join(OPTIMIZER_FILE))?;
        let p = ck.join(STATE_FILE);
        let text =
            std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?;
        state = serde_json::from_str(&text)
            .with_context(|| format!("{}: invalid trainer state", p.display()))?;
        anyhow::ensure!(
            state.steps_per_epoch == steps_per_epoch
                && state.train_pairs == train_tokens.len()
                && state.seed == cfg.seed,
            "cannot resume from {}: it was made with {} training pairs, {} updates per epoch and seed {}; this configuration gives {}, {steps_per_epoch} and {} (the data, batch size or seed changed)",
            ck.display(),
            state.train_pairs,
            state.steps_per_epoch,
            state.seed,
            train_tokens.len(),
            cfg.seed
        );
    }
    let mut model = fresh_params(model);
    if resume_from.is_some() {
        optimizer.check_against(&model)?;
    }
    let start_step = state.step;
    let mut metrics = MetricsLog::open(&run_dir, resume_from.as_ref().map(|_| start_step))?;

    let bar = opts.progress.then(|| {
        let b = ProgressBar::new(total);
        b.set_style(
            ProgressStyle::with_template(
                "{spinner} labeler [{bar:30}] {pos}/{len} updates {msg} eta {eta} ({elapsed})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        b.set_position(start_step);
        b
    });
    let say = |msg: String| match &bar {
        Some(b) if !b.is_hidden() => b.println(msg),
        _ => tracing::info!("{msg}"),
    };
    let train_counts = super::metrics::level_counts(&train_labels);
    say(format!(
        "training a cross-encoder labeler from {} on {} pairs (of {} in the train split; levels 0/1/2: {}/{}/{}), {} dev pairs, {total} updates of {} pairs, max_len {}",
        cfg.init.display(),
        train_tokens.len(),
        data.train.len(),
        train_counts[0],
        train_counts[1],
        train_counts[2],
        dev_tokens.len(),
        cfg.batch_size,
        model_cfg.max_len
    ));
    if let Some(ck) = &resume_from {
        say(format!(
            "resuming from {} (update {start_step})",
            ck.display()
        ));
    }

    let limits = BatchLimits {
        max_batch: cfg.eval_batch,
        max_tokens: cfg.eval_tokens,
    };
    let pad_id = tokenizer.pad_id();
    let evaluate = |model: &CrossEncoder,
                    state: &mut LabelerState,
                    metrics: &mut MetricsLog|
     -> anyhow::Result<()> {
        if dev_tokens.is_empty() {
            return Ok(());
        }
        let t = Instant::now();
        let inference = for_inference(model);
        let run = || {
            predict(
                &inference,
                &model_cfg,
                pad_id,
                &dev_tokens,
                limits,
                &infer_device,
                opts.progress,
            )
        };
        let probs = match &bar {
            Some(b) => b.suspend(run)?,
            None => run()?,
        };
        let m = ConfusionMatrix::from_pairs(&dev_labels, &argmax(&probs))?;
        let point = DevAccuracy {
            step: state.step,
            accuracy: m.accuracy(),
            within_1_accuracy: m.within_1_accuracy(),
            pairs: m.total(),
        };
        state.dev.push(point);
        let improved = state.best.is_none_or(|b| point.accuracy > b.accuracy);
        if improved {
            state.best = Some(point);
            save_cross_encoder(
                &run_dir.join(BEST_MODEL),
                &inference,
                &model_cfg,
                &tokenizer,
            )?;
        }
        metrics.write(serde_json::json!({
            "step": point.step,
            "dev_accuracy": point.accuracy,
            "dev_within_1_accuracy": point.within_1_accuracy,
            "dev_pairs": point.pairs,
            "best": improved,
            "eval_s": t.elapsed().as_secs_f64(),
        }))?;
        say(format!(
            "update {}: dev accuracy {:.4}, within-1 {:.4} over {} pairs{}",
            point.step,
            point.accuracy,
            point.within_1_accuracy,
            point.pairs,
            if improved { " (best)" } else { "" }
        ));
        Ok(())
    };

    let mut epoch_cache: Option<(u64, Vec<Vec<usize>>)> = None;
    let mut grads = GradBuffer::new();
    let mut last_loss = None;
    let mut smoothed: Option<f64> = None;
    let (mut session_pairs, mut session_seconds) = (0u64, 0f64);
    let mut stopped_early = false;
    for step in start_step..total {
        let t0 = Instant::now();
        let epoch = step / steps_per_epoch;
        if epoch_cache.as_ref().is_none_or(|(e, _)| *e != epoch) {
            let b = epoch_batches(&lengths, cfg.batch_size, cfg.sort_window, cfg.seed, epoch);
            epoch_cache = Some((epoch, b));
        }
        let batches = &epoch_cache.as_ref().expect("epoch batches").1;
        let batch = &batches[(step % steps_per_epoch) as usize];
        let refs: Vec<&PairTokens> = batch.iter().map(|&i| &train_tokens[i]).collect();
        let labels: Vec<u8> = batch.iter().map(|&i| train_labels[i]).collect();
        let pb = PairBatch::pad(&refs, pad_id);
        // Dropout draws depend only on the seed and the update.
        device.seed(combine(&[cfg.seed, step, 0x44524f50]));
        let logits = model.forward(&pb, model_cfg.pooling, &device);
        let loss = cross_entropy(logits, &labels, cfg.class_weights, &device)?;
        let value = loss.clone().into_scalar::<f64>();
        anyhow::ensure!(
            value.is_finite(),
            "update {}: the loss is {value}: training diverged",
            step + 1
        );
        grads.clear();
        let mut g = loss.backward();
        grads.accumulate(&model, &mut g, 1.0);
        let grad_norm = if cfg.grad_clip > 0.0 {
            grads.clip_global_norm(cfg.grad_clip)
        } else {
            grads.global_norm()
        };
        let factor = warmup_linear(step, warmup, total);
        model = optimizer.step(model, &grads, &groups(cfg, factor));
        let dt = t0.elapsed().as_secs_f64();
        session_seconds += dt;
        session_pairs += batch.len() as u64;
        state.step = step + 1;
        state.train_seconds += dt;
        state.pairs_seen += batch.len() as u64;
        last_loss = Some(value);
        let ema = smoothed.map_or(value, |s| 0.95 * s + 0.05 * value);
        smoothed = Some(ema);
        let rate = session_pairs as f64 / session_seconds.max(1e-9);
        metrics.write(serde_json::json!({
            "step": state.step,
            "epoch": epoch,
            "loss": value,
            "lr": cfg.lr * factor,
            "grad_norm": grad_norm,
            "pairs": batch.len(),
            "tokens": pb.len,
            "pairs_per_s": rate,
            "step_s": dt,
        }))?;
        if let Some(b) = &bar {
            b.set_message(format!("loss {ema:.4} {rate:.1} pairs/s"));
            b.set_position(state.step);
        }
        let at_end = state.step == total;
        let eval_now = at_end
            || if cfg.eval_every > 0 {
                state.step.is_multiple_of(cfg.eval_every)
            } else {
                state.step.is_multiple_of(steps_per_epoch)
            };
        if eval_now {
            evaluate(&model, &mut state, &mut metrics)?;
        }
        let ckpt_now =
            at_end || (cfg.checkpoint_every > 0 && state.step.is_multiple_of(cfg.checkpoint_every));
        if ckpt_now {
            write_checkpoint(&run_dir, state.step, cfg.keep_checkpoints, |dir| {
                save_cross_encoder(&dir.join(MODEL_DIR), &model, &model_cfg, &tokenizer)?;
                optimizer.save(&dir.join(OPTIMIZER_FILE))?;
                std::fs::write(dir.join(STATE_FILE), serde_json::to_string_pretty(&state)?)
                    .context("cannot write the trainer state")
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
        save_cross_encoder(&dir, &for_inference(&model), &model_cfg, &tokenizer)?;
        Some(dir)
    };
    let summary = LabelerTrainSummary {
        run_dir: run_dir.clone(),
        model_dir,
        best_dir: state.best.map(|_| run_dir.join(BEST_MODEL)),
        steps: state.step,
        total_steps: total,
        steps_per_epoch,
        train_pairs: train_tokens.len(),
        train_pairs_available: data.train.len(),
        pairs_seen: state.pairs_seen,
        dev_pairs: dev_tokens.len(),
        train_level_counts: train_counts,
        resumed_from: resume_from.map(|_| start_step),
        stopped_early,
        final_loss: last_loss,
        dev: state.dev.clone(),
        best: state.best,
        train_seconds: state.train_seconds,
        pairs_per_second: session_pairs as f64 / session_seconds.max(1e-9),
    };
    write_atomic(
        &run_dir.join(SUMMARY_FILE),
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    Ok(summary)
}

/// The labeler a run directory offers: its `best/` labeler, else `model/`; any other
/// directory is returned as it is.
pub fn resolve_labeler_dir(dir: &Path) -> PathBuf {
    for sub in [BEST_MODEL, FINAL_MODEL] {
        let p = dir.join(sub);
        if is_labeler_dir(&p) {
            return p;
        }
    }
    dir.to_path_buf()
}
