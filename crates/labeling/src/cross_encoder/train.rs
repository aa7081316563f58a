//! Fine-tuning the cross-encoder on human three-level judgments: cross-entropy (optionally
//! class-weighted) over length-sorted batches, as a [`TrainTask`] of strata-train's training
//! loop ([`strata_train::run_loop`]: AdamW with explicit epsilon and weight decay, linear
//! warmup and decay, global-norm gradient clipping, resumable checkpoints), with dev accuracy
//! keeping the best model.
//!
//! A run directory holds `config.json` (the resolved configuration), `metrics.jsonl` (one
//! record per update and per dev evaluation), `checkpoints/`, `best/` (the labeler with the
//! best dev accuracy), `model/` (the final labeler) and `summary.json`. A checkpoint holds
//! `model/`, `optimizer.safetensors` and `state.json` (the labeler's field names).

use std::path::{Path, PathBuf};

use anyhow::Context;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use strata_data::hash::combine;
use strata_model::{BatchLimits, TextTokenizer};
use strata_train::TrainOptions;
use strata_train::optim::{AdamWConfig, GradBuffer, GroupSettings};
use strata_train::run_loop::{
    self, EpochData, Evaluation, LoopSettings, RunOutcome, RunState, Schedule, StepOutcome,
    TrainTask,
};

use super::data::{LabeledPairs, PairSource, epoch_batches, subsample};
use super::metrics::ConfusionMatrix;
use super::model::{
    CrossEncoder, CrossEncoderConfig, NUM_LABELS, PairBatch, PairTokens, Pooling, tokenize_pairs,
};
use super::store::{
    LoadedCrossEncoder, argmax, cross_encoder_from_encoder, for_inference, is_labeler_dir,
    load_cross_encoder, load_tokenizer, predict, save_cross_encoder,
};

/// Resolved configuration of a run inside its directory.
pub const CONFIG_FILE: &str = "config.json";
/// Metrics log inside a run directory.
pub const METRICS_FILE: &str = run_loop::METRICS_FILE;
/// Best labeler (by dev accuracy) inside a run directory.
pub const BEST_MODEL: &str = run_loop::BEST_MODEL;
/// Final labeler inside a run directory.
pub const FINAL_MODEL: &str = run_loop::FINAL_MODEL;
/// Run summary inside a run directory.
pub const SUMMARY_FILE: &str = run_loop::SUMMARY_FILE;
/// The labeler inside a checkpoint.
const MODEL_DIR: &str = strata_train::checkpoint::MODEL;
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
    /// Compute device (`cpu`; `cuda[:N]`, `vulkan[:N]`, `wgpu[:N]` in a build with that feature).
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

/// How a run is carried out: the options of every trainer.
pub type LabelerTrainOptions = TrainOptions;

/// One dev evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct DevAccuracy {
    /// Updates done when it was measured.
    pub step: u64,
    /// Share of the dev pairs labeled right.
    pub accuracy: f64,
    /// Share of the dev pairs labeled at most one level off.
    pub within_1_accuracy: f64,
    /// Dev pairs evaluated.
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

impl From<RunState<DevAccuracy>> for LabelerState {
    fn from(s: RunState<DevAccuracy>) -> Self {
        LabelerState {
            step: s.step,
            steps_per_epoch: s.steps_per_epoch,
            train_pairs: s.examples_per_epoch,
            seed: s.seed,
            train_seconds: s.train_seconds,
            pairs_seen: s.examples_seen,
            dev: s.dev,
            best: s.best,
        }
    }
}

impl From<LabelerState> for RunState<DevAccuracy> {
    fn from(s: LabelerState) -> Self {
        RunState {
            step: s.step,
            steps_per_epoch: s.steps_per_epoch,
            examples_per_epoch: s.train_pairs,
            seed: s.seed,
            examples_seen: s.pairs_seen,
            train_seconds: s.train_seconds,
            dev: s.dev,
            best: s.best,
        }
    }
}

impl Evaluation for DevAccuracy {
    fn improves_on(&self, best: &Self) -> bool {
        self.accuracy > best.accuracy
    }

    fn fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("dev_accuracy".into(), self.accuracy.into());
        m.insert(
            "dev_within_1_accuracy".into(),
            self.within_1_accuracy.into(),
        );
        m.insert("dev_pairs".into(), self.pairs.into());
        m
    }

    fn describe(&self) -> String {
        format!(
            "dev accuracy {:.4}, within-1 {:.4} over {} pairs",
            self.accuracy, self.within_1_accuracy, self.pairs
        )
    }
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
    run_loop::run(&cfg.out, opts, |ck| load(cfg, opts, ck))
}

/// The labeler as a [`TrainTask`]: the tokenized pairs and the labeler's configuration.
struct LabelerTask<'a> {
    cfg: &'a LabelerTrainConfig,
    progress: bool,
    model_cfg: CrossEncoderConfig,
    tokenizer: TextTokenizer,
    device: Device,
    train_tokens: Vec<PairTokens>,
    train_labels: Vec<u8>,
    lengths: Vec<usize>,
    dev_tokens: Vec<PairTokens>,
    dev_labels: Vec<u8>,
    /// Pairs in the train split (before `max_train_pairs`).
    train_available: usize,
    steps_per_epoch: u64,
    /// The batches of the current epoch.
    epoch: EpochData<Vec<Vec<usize>>>,
}

/// Loads the labeler (from `checkpoint` when resuming, else from `cfg.init`) and the pairs.
fn load<'a>(
    cfg: &'a LabelerTrainConfig,
    opts: &TrainOptions,
    checkpoint: Option<&Path>,
) -> anyhow::Result<(LabelerTask<'a>, CrossEncoder)> {
    let device = strata_model::parse_device(&cfg.device)?.autodiff();
    let LoadedCrossEncoder {
        mut model,
        config: model_cfg,
        tokenizer_path,
        ..
    } = match checkpoint {
        Some(ck) => load_cross_encoder(&ck.join(MODEL_DIR), &device)?,
        None if is_labeler_dir(&cfg.init) => load_cross_encoder(&cfg.init, &device)
            .with_context(|| format!("loading the initial labeler {}", cfg.init.display()))?,
        None => cross_encoder_from_encoder(
            &cfg.init,
            cfg.max_len,
            cfg.pooling,
            cfg.head_dropout,
            cfg.data.item_text()?,
            cfg.seed,
            &device,
        )?,
    };
    model.bert.set_dropout(cfg.dropout, cfg.attention_dropout);
    model.dropout.prob = cfg.head_dropout;
    let tokenizer = load_tokenizer(&tokenizer_path, &model_cfg)?;

    // The data, with the item text the labeler was built for.
    let data = LabeledPairs::load(&cfg.data, &model_cfg.item_text)?;
    let train_js = subsample(&data.train, cfg.max_train_pairs, cfg.seed);
    let dev_js = subsample(&data.dev, cfg.max_dev_pairs, combine(&[cfg.seed, 1]));
    anyhow::ensure!(
        !train_js.is_empty(),
        "the train split is empty ({} judgments in all)",
        data.train.len() + data.dev.len() + data.test.len()
    );
    let train_tokens = tokenize_pairs(&tokenizer, &data.texts(&train_js))?;
    let dev_tokens = tokenize_pairs(&tokenizer, &data.texts(&dev_js))?;
    let task = LabelerTask {
        cfg,
        progress: opts.progress,
        steps_per_epoch: train_tokens.len().div_ceil(cfg.batch_size) as u64,
        lengths: train_tokens.iter().map(PairTokens::len).collect(),
        train_labels: train_js.iter().map(|j| j.label).collect(),
        train_tokens,
        dev_labels: dev_js.iter().map(|j| j.label).collect(),
        dev_tokens,
        train_available: data.train.len(),
        model_cfg,
        tokenizer,
        device,
        epoch: EpochData::default(),
    };
    Ok((task, model))
}

impl TrainTask for LabelerTask<'_> {
    type Module = CrossEncoder;
    type Eval = DevAccuracy;
    type State = LabelerState;
    type Summary = LabelerTrainSummary;
    const CONFIG_FILE: &'static str = CONFIG_FILE;
    const LABEL: &'static str = "labeler";
    const UNIT: &'static str = "pairs";
    const LOSS_SMOOTHING: f64 = 0.05;

    fn settings(&self) -> LoopSettings {
        let cfg = self.cfg;
        LoopSettings {
            steps_per_epoch: self.steps_per_epoch,
            examples_per_epoch: self.train_tokens.len(),
            epochs: cfg.epochs,
            max_steps: cfg.max_steps,
            warmup_steps: None,
            warmup_ratio: cfg.warmup_ratio,
            adamw: cfg.adamw,
            lr: cfg.lr,
            grad_clip: cfg.grad_clip,
            eval_every: cfg.eval_every,
            eval_at_start: false,
            checkpoint_every: cfg.checkpoint_every,
            keep_checkpoints: cfg.keep_checkpoints,
            seed: cfg.seed,
        }
    }

    fn device(&self) -> &Device {
        &self.device
    }

    fn config_text(&self) -> anyhow::Result<String> {
        Ok(serde_json::to_string_pretty(self.cfg)?)
    }

    fn describe(&self, schedule: &Schedule) -> String {
        let counts = super::metrics::level_counts(&self.train_labels);
        format!(
            "training a cross-encoder labeler from {} on {} pairs (of {} in the train split; levels 0/1/2: {}/{}/{}), {} dev pairs, {} updates of {} pairs, max_len {}",
            self.cfg.init.display(),
            self.train_tokens.len(),
            self.train_available,
            counts[0],
            counts[1],
            counts[2],
            self.dev_tokens.len(),
            schedule.total,
            self.cfg.batch_size,
            self.model_cfg.max_len
        )
    }

    fn groups(&self, path: &str, factor: f64) -> GroupSettings {
        groups(self.cfg, factor)(path)
    }

    fn step(
        &mut self,
        module: &CrossEncoder,
        step: u64,
        grads: &mut GradBuffer,
    ) -> anyhow::Result<StepOutcome> {
        let cfg = self.cfg;
        let epoch = step / self.steps_per_epoch;
        let lengths = &self.lengths;
        let batch = self
            .epoch
            .get(epoch, |e| {
                Ok(epoch_batches(
                    lengths,
                    cfg.batch_size,
                    cfg.sort_window,
                    cfg.seed,
                    e,
                ))
            })?
            .get((step % self.steps_per_epoch) as usize)
            .with_context(|| format!("epoch {epoch} has no batch for update {}", step + 1))?;
        let refs: Vec<&PairTokens> = batch.iter().map(|&i| &self.train_tokens[i]).collect();
        let labels: Vec<u8> = batch.iter().map(|&i| self.train_labels[i]).collect();
        let pb = PairBatch::pad(&refs, self.tokenizer.pad_id());
        let logits = module.forward(&pb, self.model_cfg.pooling, &self.device);
        let loss = cross_entropy(logits, &labels, cfg.class_weights, &self.device)?;
        let value = loss.clone().into_scalar::<f64>();
        anyhow::ensure!(value.is_finite(), "the loss is {value}: training diverged");
        let mut g = loss.backward();
        grads.accumulate(module, &mut g, 1.0);
        let mut fields = Map::new();
        fields.insert("tokens".into(), pb.len.into());
        Ok(StepOutcome {
            loss: value,
            loss_per_example: value,
            examples: batch.len() as u64,
            fields,
        })
    }

    fn evaluate(&self, module: &CrossEncoder, step: u64) -> anyhow::Result<Option<DevAccuracy>> {
        if self.dev_tokens.is_empty() {
            return Ok(None);
        }
        let limits = BatchLimits {
            max_batch: self.cfg.eval_batch,
            max_tokens: self.cfg.eval_tokens,
        };
        let probs = predict(
            &for_inference(module),
            &self.model_cfg,
            self.tokenizer.pad_id(),
            &self.dev_tokens,
            limits,
            &self.device.clone().inner(),
            self.progress,
        )?;
        let m = ConfusionMatrix::from_pairs(&self.dev_labels, &argmax(&probs))?;
        Ok(Some(DevAccuracy {
            step,
            accuracy: m.accuracy(),
            within_1_accuracy: m.within_1_accuracy(),
            pairs: m.total(),
        }))
    }

    fn save_model(&self, module: &CrossEncoder, dir: &Path) -> anyhow::Result<()> {
        save_cross_encoder(
            dir,
            &for_inference(module),
            &self.model_cfg,
            &self.tokenizer,
        )?;
        Ok(())
    }

    fn save_checkpoint(&self, module: &CrossEncoder, dir: &Path) -> anyhow::Result<()> {
        save_cross_encoder(
            &dir.join(MODEL_DIR),
            module,
            &self.model_cfg,
            &self.tokenizer,
        )?;
        Ok(())
    }

    fn summary(&self, _module: &CrossEncoder, o: RunOutcome<DevAccuracy>) -> LabelerTrainSummary {
        LabelerTrainSummary {
            run_dir: o.run_dir,
            model_dir: o.model_dir,
            best_dir: o.best_dir,
            steps: o.steps,
            total_steps: o.total_steps,
            steps_per_epoch: o.steps_per_epoch,
            train_pairs: self.train_tokens.len(),
            train_pairs_available: self.train_available,
            pairs_seen: o.examples_seen,
            dev_pairs: self.dev_tokens.len(),
            train_level_counts: super::metrics::level_counts(&self.train_labels),
            resumed_from: o.resumed_from,
            stopped_early: o.stopped_early,
            final_loss: o.final_loss,
            dev: o.dev,
            best: o.best,
            train_seconds: o.train_seconds,
            pairs_per_second: o.examples_per_second,
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Checkpoints keep the labeler's `state.json` field names; older ones without
    /// `pairs_seen` still read.
    #[test]
    fn the_state_keeps_the_labeler_field_names() {
        let text = r#"{"step":5,"steps_per_epoch":9,"train_pairs":130,"seed":9,"train_seconds":1.5,"pairs_seen":80,"dev":[{"step":5,"accuracy":0.5,"within_1_accuracy":0.875,"pairs":40}],"best":{"step":5,"accuracy":0.5,"within_1_accuracy":0.875,"pairs":40}}"#;
        let saved: LabelerState = serde_json::from_str(text).unwrap();
        let general = RunState::from(saved);
        assert_eq!(
            (general.examples_per_epoch, general.examples_seen),
            (130, 80)
        );
        assert_eq!(general.best.map(|b| b.pairs), Some(40));
        let again = serde_json::to_string(&LabelerState::from(general)).unwrap();
        assert_eq!(again, text);
        let older = text.replace(r#""pairs_seen":80,"#, "");
        let saved: LabelerState = serde_json::from_str(&older).unwrap();
        assert_eq!(RunState::from(saved).examples_seen, 0);
    }
}
