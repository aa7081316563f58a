//! The retriever's trainer (paper sections 4.3-4.4): the two-tower model and its loss as a
//! [`TrainTask`] of the shared loop ([`crate::run_loop`]), with separate learning rates for the
//! projection heads and the temperature, gradient accumulation over micro-batches, and dev
//! NDCG@10 keeping the best model.
//!
//! A run directory holds `config.toml` (the resolved configuration), `metrics.jsonl` (one
//! record per update and per evaluation), `checkpoints/`, `best/` (the best model on the dev
//! split), `model/` (the final model) and `summary.json`. A checkpoint holds `model/`,
//! `loss.safetensors` (the temperature), `optimizer.safetensors` and `state.json`
//! ([`TrainerState`]).

use std::path::{Path, PathBuf};

use crate::instances::{Instance, QueryGroups, with_batch_negatives};
use anyhow::Context;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use strata_model::{
    Embedder, LoadOptions, TextTokenizer, TowerConfig, TwoTower, load_model, save_model,
};

use crate::batch::{BatchPlan, ItemTokens, plan_batch};
use crate::checkpoint::{DevPoint, LOSS_FILE, MODEL, TrainerState, load_params, save_params};
use crate::config::{CONFIG_FILE, TrainConfig, resolve_init};
use crate::data::{DataSummary, TrainData};
use crate::dev::{DevScore, evaluate_dev};
use crate::losses::{LossConfig, Reduction};
use crate::optim::{GradBuffer, GroupSettings};
use crate::run_loop::{
    EpochData, Evaluation, LoopSettings, RunOutcome, Schedule, StepOutcome, TrainTask,
};
use crate::step::{HEAD_PATHS, LOSS_PATH, TrainModule, batch_loss};

pub use crate::run_loop::{
    BEST_MODEL, FINAL_MODEL, METRICS_FILE, MetricsLog, SUMMARY_FILE, TrainOptions,
};

/// What a run did.
#[derive(Clone, Debug, Serialize, Deserialize)]
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
    /// A seed soup's runs, one per seed ([`crate::soup`]); empty for a single run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seeds: Vec<TrainSummary>,
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
    if cfg.seeds > 1 {
        return crate::soup::train_soup(cfg, opts);
    }
    let run = || crate::run_loop::run(&cfg.out, opts, |ck| load(cfg, opts, ck));
    if cfg.threads > 0 {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(cfg.threads)
            .build()
            .context("cannot start the compute threads")?;
        pool.install(run)
    } else {
        run()
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
        cfg.train.chunking(device),
        true,
    );
    let loss = batch_loss(module, &plan, device)?;
    // The backward pass and the accumulation are queued before the loss is read back, so a
    // GPU runs forward and backward without waiting for the host in between. A non-finite
    // loss stops the run (its gradients are never applied).
    let mut g = loss.backward();
    grads.accumulate(module, &mut g, scale);
    let value = loss.into_scalar::<f64>();
    anyhow::ensure!(value.is_finite(), "the loss is {value}: training diverged");
    Ok(value)
}

/// The retriever as a [`TrainTask`]: the data, the tokenized items and the model's
/// configuration.
struct RetrieverTask<'a> {
    cfg: &'a TrainConfig,
    progress: bool,
    data: TrainData,
    tower_cfg: TowerConfig,
    tokenizer: TextTokenizer,
    item_tokens: Vec<Vec<u32>>,
    device: Device,
    steps_per_epoch: u64,
    reduction_mean: bool,
    /// The instances of the current epoch.
    epoch: EpochData<Vec<Instance>>,
}

impl Evaluation for DevPoint {
    fn improves_on(&self, best: &Self) -> bool {
        self.score.ndcg_at_10 > best.score.ndcg_at_10
    }

    fn fields(&self) -> serde_json::Map<String, serde_json::Value> {
        let s = &self.score;
        let mut m = serde_json::Map::new();
        m.insert("dev_ndcg@10".into(), s.ndcg_at_10.into());
        m.insert("dev_rerank_ndcg".into(), s.rerank_ndcg.into());
        m.insert("dev_queries".into(), s.queries.into());
        m.insert("dev_items".into(), s.items.into());
        m
    }

    fn describe(&self) -> String {
        format!(
            "dev NDCG@10 {:.4}, rerank NDCG {:.4}, over {} queries",
            self.score.ndcg_at_10, self.score.rerank_ndcg, self.score.queries
        )
    }
}

/// Loads the data and the model of a run of `cfg`: from `checkpoint` when resuming (its model
/// and loss parameters), else from `model.init`.
fn load<'a>(
    cfg: &'a TrainConfig,
    opts: &TrainOptions,
    checkpoint: Option<&Path>,
) -> anyhow::Result<(RetrieverTask<'a>, TrainModule)> {
    let data = TrainData::load(cfg)?;
    let device = strata_model::parse_device(&cfg.device)?.autodiff();
    let (tower, tower_cfg, tokenizer_path) = match checkpoint {
        Some(ck) => {
            let m = load_model(&ck.join(MODEL), &LoadOptions::default(), &device)?;
            (m.model, m.config, m.tokenizer_path)
        }
        None => {
            let init = resolve_init(&cfg.model.init)?;
            let load_opts = LoadOptions {
                projection_dim: cfg.model.projection_dim,
                head_init: cfg.model.head_init,
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
                if cfg.model.head_init != strata_model::HeadInit::Random {
                    anyhow::bail!(
                        "config field `model.head_init` applies to a new model's heads, but the initial model {} is a saved strata model (a saved model keeps its heads)",
                        init.display()
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
        item_text: Some(cfg.data.item_text.clone()),
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
    let mut loss = cfg.loss.init(&device)?;
    if let Some(ck) = checkpoint {
        loss = load_params(loss, &ck.join(LOSS_FILE))?;
    }
    let item_tokens = tokenize_items(
        &tokenizer,
        &data.item_texts,
        &data.train_items(),
        &tower_cfg.item_prefix,
    )?;
    let micro_per_epoch = data
        .summary()
        .instances_per_epoch
        .div_ceil(cfg.train.batch_size) as u64;
    let task = RetrieverTask {
        cfg,
        progress: opts.progress,
        steps_per_epoch: micro_per_epoch.div_ceil(cfg.train.accumulation as u64),
        data,
        tower_cfg,
        tokenizer,
        item_tokens,
        device,
        reduction_mean: averages(&cfg.loss),
        epoch: EpochData::default(),
    };
    Ok((task, TrainModule { tower, loss }))
}

impl TrainTask for RetrieverTask<'_> {
    type Module = TrainModule;
    type Eval = DevPoint;
    type State = TrainerState;
    type Summary = TrainSummary;
    const CONFIG_FILE: &'static str = CONFIG_FILE;
    const LABEL: &'static str = "train";
    const UNIT: &'static str = "instances";

    fn settings(&self) -> LoopSettings {
        let t = &self.cfg.train;
        LoopSettings {
            steps_per_epoch: self.steps_per_epoch,
            examples_per_epoch: self.data.summary().instances_per_epoch,
            epochs: t.epochs,
            max_steps: t.max_steps,
            warmup_steps: t.warmup_steps,
            warmup_ratio: t.warmup_ratio,
            adamw: t.adamw(),
            lr: t.lr,
            grad_clip: t.grad_clip,
            eval_every: self.cfg.eval.every,
            eval_at_start: self.cfg.eval.at_start,
            checkpoint_every: t.checkpoint_every,
            keep_checkpoints: t.keep_checkpoints,
            seed: self.cfg.seed,
        }
    }

    fn device(&self) -> &Device {
        &self.device
    }

    fn config_text(&self) -> anyhow::Result<String> {
        self.cfg.to_toml()
    }

    fn describe(&self, schedule: &Schedule) -> String {
        let (cfg, s) = (self.cfg, self.data.summary());
        format!(
            "training {} on {} instances/epoch ({} train queries, {} dev queries, catalog {}), {} updates ({} per epoch, batch {} x {}), loss {}",
            cfg.model.init.display(),
            s.instances_per_epoch,
            s.train_queries,
            s.dev_queries,
            s.catalog_items,
            schedule.total,
            schedule.steps_per_epoch,
            cfg.train.batch_size,
            cfg.train.accumulation,
            cfg.loss.name()
        )
    }

    fn groups(&self, path: &str, factor: f64) -> GroupSettings {
        groups(self.cfg, factor)(path)
    }

    fn step(
        &mut self,
        module: &TrainModule,
        step: u64,
        grads: &mut GradBuffer,
    ) -> anyhow::Result<StepOutcome> {
        let cfg = self.cfg;
        let data = &self.data;
        let instances = self
            .epoch
            .get(step / self.steps_per_epoch, |e| data.epoch_instances(e))?;
        let first_micro = ((step % self.steps_per_epoch) * cfg.train.accumulation as u64) as usize;
        let bs = cfg.train.batch_size;
        let micro: Vec<&[Instance]> = (first_micro..first_micro + cfg.train.accumulation)
            .map(|m| &instances[(m * bs).min(instances.len())..((m + 1) * bs).min(instances.len())])
            .filter(|s| !s.is_empty())
            .collect();
        let n_step: usize = micro.iter().map(|m| m.len()).sum();
        let mut loss_sum = 0.0;
        for m in &micro {
            let scale = if self.reduction_mean {
                m.len() as f32 / n_step as f32
            } else {
                1.0
            };
            let l = micro_step(
                module,
                m,
                &self.item_tokens,
                &self.tokenizer,
                &self.tower_cfg,
                cfg,
                &self.device,
                grads,
                scale,
                &self.data.groups,
            )?;
            loss_sum += f64::from(scale) * l;
        }
        let per_instance = if self.reduction_mean {
            loss_sum
        } else {
            loss_sum / n_step as f64
        };
        let mut fields = serde_json::Map::new();
        fields.insert("loss_per_instance".into(), per_instance.into());
        Ok(StepOutcome {
            loss: loss_sum,
            loss_per_example: per_instance,
            examples: n_step as u64,
            fields,
        })
    }

    fn module_fields(&self, module: &TrainModule) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        m.insert("temperature".into(), temperature(module).into());
        m
    }

    fn progress_note(&self, module: &TrainModule) -> String {
        temperature(module)
            .map(|t| format!(" tau {t:.4}"))
            .unwrap_or_default()
    }

    fn evaluate(&self, module: &TrainModule, step: u64) -> anyhow::Result<Option<DevPoint>> {
        let Some(dev) = &self.data.dev else {
            return Ok(None);
        };
        let infer_device = self.device.clone().inner();
        let embedder = Embedder::new(
            module.tower.clone(),
            self.tower_cfg.clone(),
            self.tokenizer.clone(),
            infer_device.clone(),
            "training".into(),
        )
        .with_limits(strata_model::BatchLimits {
            max_batch: self.cfg.eval.batch_texts,
            max_tokens: self.cfg.eval.batch_tokens,
        })
        .with_progress(self.progress)
        // The CPU engine (same function, faster) on the CPU; the tensor model on a GPU.
        .with_precision(
            strata_model::device::is_cpu(&infer_device).then_some(strata_model::Precision::F32),
        )?;
        let score = evaluate_dev(&embedder, dev, &self.data.item_texts)?;
        Ok(Some(DevPoint { step, score }))
    }

    fn save_model(&self, module: &TrainModule, dir: &Path) -> anyhow::Result<()> {
        save_model(dir, &module.tower, &self.tower_cfg, &self.tokenizer)
    }

    fn save_checkpoint(&self, module: &TrainModule, dir: &Path) -> anyhow::Result<()> {
        self.save_model(module, &dir.join(MODEL))?;
        save_params(&module.loss, &dir.join(LOSS_FILE))
    }

    fn summary(&self, module: &TrainModule, o: RunOutcome<DevPoint>) -> TrainSummary {
        TrainSummary {
            run_dir: o.run_dir,
            model_dir: o.model_dir,
            best_dir: o.best_dir,
            loss: self.cfg.loss.name().to_string(),
            steps: o.steps,
            total_steps: o.total_steps,
            steps_per_epoch: o.steps_per_epoch,
            instances: o.examples_seen,
            resumed_from: o.resumed_from,
            stopped_early: o.stopped_early,
            final_loss: o.final_loss,
            final_temperature: temperature(module),
            dev: o.dev,
            best: o.best,
            train_seconds: o.train_seconds,
            wall_seconds: o.wall_seconds,
            instances_per_second: o.examples_per_second,
            seeds: Vec::new(),
            data: self.data.summary().clone(),
        }
    }
}

/// The loss's temperature (SupCon).
fn temperature(module: &TrainModule) -> Option<f64> {
    module.loss.temperature.as_ref().map(|t| t.value())
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
