//! Timing of one training step on a fixed batch of real instances, split into its phases
//! (forward, backward, gradient collection, optimizer), for `strata bench train` and its
//! PyTorch counterpart `bench/train_step_torch.py`, which reads the batch this module dumps.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use crate::instances::{Instance, InstanceConfig, PerQuery, QueryGroups, build_instances};
use anyhow::Context;
use serde::Serialize;
use strata_data::{load_catalog, load_judgments};
use strata_model::{LoadOptions, TextTokenizer, load_model};

use crate::batch::{BatchPlan, Chunking, plan_batch};
use crate::losses::LossConfig;
use crate::optim::{AdamW, AdamWConfig, GradBuffer, GroupSettings};
use crate::step::{LOSS_PATH, TrainModule, batch_loss};

/// What to time.
#[derive(Clone, Debug)]
pub struct StepBench {
    /// Model directory.
    pub model: PathBuf,
    /// Catalog and judgments the instances come from.
    pub catalog: PathBuf,
    pub judgments: PathBuf,
    /// Instances in the batch.
    pub instances: usize,
    /// Items drawn per label (0, 1, 2); only instances holding every drawn item are kept, so
    /// each instance has `sum(items_per_label)` items.
    pub items_per_label: [usize; 3],
    /// Timed steps (after one warm-up step).
    pub steps: usize,
    /// Forward chunk limits (unset: the device's, [`Chunking::for_device`]).
    pub chunking: Option<Chunking>,
    /// Compute device (`strata_model::parse_device`'s names).
    pub device: String,
    /// Encode each repeated query or item once.
    pub dedup: bool,
    /// Encoder learning rate and the temperature's.
    pub lr: f64,
    pub temperature_lr: f64,
    /// Global gradient-norm bound.
    pub grad_clip: f64,
    /// Seed of the instance draw.
    pub seed: u64,
}

impl Default for StepBench {
    fn default() -> Self {
        StepBench {
            model: PathBuf::from("models/all-MiniLM-L6-v2"),
            catalog: PathBuf::from("../shared/data/homedepot/products.tsv"),
            judgments: PathBuf::from("../shared/data/homedepot/judgments.tsv"),
            instances: 16,
            items_per_label: [1, 1, 2],
            steps: 5,
            chunking: None,
            device: "cpu".into(),
            dedup: true,
            lr: 2e-5,
            temperature_lr: 1e-3,
            grad_clip: 1.0,
            seed: 0,
        }
    }
}

/// Seconds per step of each phase, averaged over the timed steps. On a GPU, whose work runs
/// behind the host's, each phase ends at a value read back: the loss (forward), the gradient
/// norm (backward and gradient collection, reported as `grads_s`) and the temperature
/// (optimizer).
#[derive(Clone, Debug, Serialize)]
pub struct StepTiming {
    pub system: &'static str,
    pub device: String,
    pub threads: usize,
    pub steps: usize,
    pub instances: usize,
    pub texts: usize,
    pub chunks: usize,
    pub tokens: usize,
    pub padded_tokens: usize,
    /// Batch layout, both towers and the loss.
    pub forward_s: f64,
    /// The backward pass.
    pub backward_s: f64,
    /// Reading the gradients out of the graph and clipping them.
    pub grads_s: f64,
    /// The AdamW update.
    pub optimizer_s: f64,
    pub step_s: f64,
    pub instances_per_s: f64,
    pub first_loss: f64,
    pub last_loss: f64,
}

/// The batch in a form the PyTorch script reads.
#[derive(Clone, Debug, Serialize)]
pub struct BatchDump {
    pub model: PathBuf,
    pub max_len: usize,
    pub temperature: f64,
    pub lr: f64,
    pub temperature_lr: f64,
    pub weight_decay: f64,
    pub epsilon: f64,
    pub grad_clip: f64,
    /// Distinct query texts.
    pub queries: Vec<String>,
    /// Distinct item texts.
    pub items: Vec<String>,
    /// Forward chunks: indices into `queries` / `items`.
    pub query_chunks: Vec<Vec<usize>>,
    pub item_chunks: Vec<Vec<usize>>,
    /// Per instance: its query, its items and their labels.
    pub instances: Vec<DumpInstance>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DumpInstance {
    pub query: usize,
    pub items: Vec<usize>,
    pub labels: Vec<u8>,
}

/// Draws the benchmark batch: instances of queries with every label level, each holding
/// exactly the drawn number of items.
pub fn bench_instances(b: &StepBench) -> anyhow::Result<(Vec<Instance>, Vec<String>)> {
    let catalog =
        load_catalog(&b.catalog).with_context(|| format!("loading {}", b.catalog.display()))?;
    let judgments = load_judgments(&b.judgments)
        .with_context(|| format!("loading {}", b.judgments.display()))?;
    let groups = QueryGroups::new(&catalog, &judgments)?;
    let cfg = InstanceConfig {
        items_per_label: b.items_per_label,
        per_query: PerQuery::Fixed(1),
        seed: b.seed,
        ..Default::default()
    };
    let want: usize = b.items_per_label.iter().sum();
    let (all, _) = build_instances(&groups, &cfg, 0)?;
    let picked: Vec<Instance> = all
        .into_iter()
        .filter(|i| i.items.len() == want)
        .take(b.instances)
        .collect();
    anyhow::ensure!(
        picked.len() == b.instances,
        "only {} queries have {:?} items per label (asked for {} instances)",
        picked.len(),
        b.items_per_label,
        b.instances
    );
    let texts = catalog.items().iter().map(|i| i.name.clone()).collect();
    Ok((picked, texts))
}

fn dump(
    plan: &BatchPlan,
    instances: &[Instance],
    texts: &[String],
    b: &StepBench,
    max_len: usize,
    tau: f64,
) -> BatchDump {
    let mut q_index: HashMap<&str, usize> = HashMap::new();
    let mut queries = Vec::new();
    let mut i_index: HashMap<u32, usize> = HashMap::new();
    let mut items = Vec::new();
    let mut out = Vec::new();
    for inst in instances {
        let q = if b.dedup {
            *q_index.entry(&inst.query).or_insert_with(|| {
                queries.push(inst.query.to_string());
                queries.len() - 1
            })
        } else {
            queries.push(inst.query.to_string());
            queries.len() - 1
        };
        let mut its = Vec::new();
        for &(item, _) in &inst.items {
            let k = if b.dedup {
                *i_index.entry(item).or_insert_with(|| {
                    items.push(texts[item as usize].clone());
                    items.len() - 1
                })
            } else {
                items.push(texts[item as usize].clone());
                items.len() - 1
            };
            its.push(k);
        }
        out.push(DumpInstance {
            query: q,
            items: its,
            labels: inst.items.iter().map(|x| x.1).collect(),
        });
    }
    let chunks = |layout: &crate::batch::SideLayout| {
        let mut at = 0;
        layout
            .chunks
            .iter()
            .map(|c| {
                let part = layout.order[at..at + c.batch].to_vec();
                at += c.batch;
                part
            })
            .collect()
    };
    let adam = AdamWConfig::default();
    BatchDump {
        model: b.model.clone(),
        max_len,
        temperature: tau,
        lr: b.lr,
        temperature_lr: b.temperature_lr,
        weight_decay: adam.weight_decay,
        epsilon: adam.epsilon,
        grad_clip: b.grad_clip,
        queries,
        items,
        query_chunks: chunks(&plan.queries),
        item_chunks: chunks(&plan.items),
        instances: out,
    }
}

/// Times `b.steps` training steps (after one warm-up step) on the benchmark batch. Returns the
/// timing and the batch for the PyTorch script.
pub fn bench_train_step(b: &StepBench) -> anyhow::Result<(StepTiming, BatchDump)> {
    let (instances, texts) = bench_instances(b)?;
    let device = strata_model::parse_device(&b.device)?.autodiff();
    let chunking = b.chunking.unwrap_or_else(|| Chunking::for_device(&device));
    let loaded = load_model(&b.model, &LoadOptions::default(), &device)?;
    let tokenizer = TextTokenizer::from_file(
        &loaded.tokenizer_path,
        loaded.config.max_len,
        loaded.config.encoder.pad_token_id as u32,
    )?;
    let loss_cfg = LossConfig::default();
    let loss = loss_cfg.init(&device)?;
    let tau = loss.temperature.as_ref().map_or(0.05, |t| t.value());
    let mut module = crate::step::fresh_params(TrainModule {
        tower: crate::trainer::without_dropout(loaded.model),
        loss,
    });
    let item_ids: HashMap<u32, Vec<u32>> = instances
        .iter()
        .flat_map(|i| i.items.iter().map(|x| x.0))
        .map(|i| Ok((i, tokenizer.ids(&texts[i as usize])?)))
        .collect::<anyhow::Result<_>>()?;
    let query_ids: Vec<Vec<u32>> = instances
        .iter()
        .map(|i| tokenizer.ids(&i.query))
        .collect::<anyhow::Result<_>>()?;
    let plan = plan_batch(
        &instances, &query_ids, &item_ids, &tokenizer, chunking, b.dedup,
    );
    let dumped = dump(&plan, &instances, &texts, b, loaded.config.max_len, tau);
    let mut opt = AdamW::new(AdamWConfig::default());
    let groups = |path: &str| GroupSettings {
        lr: if path.starts_with(LOSS_PATH) {
            b.temperature_lr
        } else {
            b.lr
        },
        decay: !(path.starts_with(LOSS_PATH)
            || path.ends_with("bias")
            || path.contains("layer_norm")),
    };
    let mut phases = [0f64; 4];
    let mut losses = Vec::new();
    for step in 0..=b.steps {
        let t0 = Instant::now();
        let loss = batch_loss(&module, &plan, &device)?;
        let value = loss.clone().into_scalar::<f64>();
        let t1 = Instant::now();
        let mut g = loss.backward();
        let t2 = Instant::now();
        let mut grads = GradBuffer::new();
        grads.accumulate(&module, &mut g, 1.0);
        grads.clip_global_norm(b.grad_clip);
        let t3 = Instant::now();
        module = opt.step(module, &grads, &groups);
        // Waits for the update (a GPU's work is queued in order).
        let _ = module.loss.temperature.as_ref().map(|t| t.value());
        let t4 = Instant::now();
        losses.push(value);
        if step > 0 {
            for (acc, d) in phases.iter_mut().zip([t1 - t0, t2 - t1, t3 - t2, t4 - t3]) {
                *acc += d.as_secs_f64();
            }
        }
    }
    let steps = b.steps.max(1) as f64;
    let [f, bw, g, o] = phases.map(|p| p / steps);
    let step_s = f + bw + g + o;
    let timing = StepTiming {
        system: "strata",
        device: b.device.clone(),
        threads: rayon::current_num_threads(),
        steps: b.steps,
        instances: instances.len(),
        texts: plan.queries.texts + plan.items.texts,
        chunks: plan.queries.chunks.len() + plan.items.chunks.len(),
        tokens: plan.tokens(),
        padded_tokens: plan.padded_tokens(),
        forward_s: f,
        backward_s: bw,
        grads_s: g,
        optimizer_s: o,
        step_s,
        instances_per_s: instances.len() as f64 / step_s,
        first_loss: losses[0],
        last_loss: *losses.last().unwrap_or(&f64::NAN),
    };
    Ok((timing, dumped))
}
