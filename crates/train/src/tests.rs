//! Trainer tests on tiny random models and a synthetic catalog.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::instances::Instance;
use burn::tensor::Device;
use strata_model::{LoadOptions, TwoTower, load_model};

use crate::batch::{Chunking, plan_batch};
use crate::config::TrainConfig;
use crate::losses::{LossConfig, SupConConfig};
use crate::optim::{AdamW, AdamWConfig, GradBuffer, GroupSettings, param_values};
use crate::step::{TrainModule, batch_loss};
use crate::testutil::{
    COLOURS, THINGS, synthetic_data, tiny_config, tiny_model_dir, word_tokenizer,
};
use crate::trainer::{TrainOptions, train_with};

/// A fixed batch: query "<colour> <thing>" with items (catalog indices as laid out by
/// `synthetic_data`: item of colour c, thing t, variant v is 12c + 2t + v).
fn fixed_batch() -> Vec<Instance> {
    let idx = |c: usize, t: usize, v: usize| (12 * c + 2 * t + v) as u32;
    (0..6)
        .map(|k| {
            let (c, t) = (k % 6, (k * 5) % 6);
            Instance {
                query_idx: k as u32,
                query: Arc::from(format!("{} {}", COLOURS[c], THINGS[t]).as_str()),
                items: vec![
                    (idx(c, t, 0), 2),
                    (idx(c, t, 1), 2),
                    (idx((c + 5) % 6, t, 0), 1),
                    (idx(c, (t + 5) % 6, 1), 0),
                    (idx((c + 2) % 6, (t + 1) % 6, 0), 0),
                ],
            }
        })
        .collect()
}

fn item_tokens() -> Vec<Vec<u32>> {
    let tok = word_tokenizer(16);
    let mut out = Vec::new();
    for c in COLOURS {
        for t in THINGS {
            out.push(tok.ids(&format!("{c} {t}")).unwrap());
            out.push(tok.ids(&format!("heavy {c} {t}")).unwrap());
        }
    }
    out
}

fn tiny_module(projection: Option<usize>, loss: LossConfig, device: &Device) -> TrainModule {
    strata_model::with_seed(device, 11, || {
        crate::step::fresh_params(TrainModule {
            tower: TwoTower::init(&tiny_config(projection), device),
            loss: loss.init(device).unwrap(),
        })
    })
}

fn grads_of(
    module: &TrainModule,
    chunking: Chunking,
    dedup: bool,
    device: &Device,
) -> (f64, GradBuffer) {
    let tok = word_tokenizer(16);
    let batch = fixed_batch();
    let queries: Vec<Vec<u32>> = batch.iter().map(|i| tok.ids(&i.query).unwrap()).collect();
    let plan = plan_batch(&batch, &queries, &item_tokens(), &tok, chunking, dedup);
    let loss = batch_loss(module, &plan, device).unwrap();
    let value = loss.clone().into_scalar::<f64>();
    let mut g = loss.backward();
    let mut buf = GradBuffer::new();
    buf.accumulate(module, &mut g, 1.0);
    (value, buf)
}

fn lr(path: &str) -> GroupSettings {
    GroupSettings {
        lr: if path.starts_with("loss") { 1e-2 } else { 3e-3 },
        decay: true,
    }
}

#[test]
fn every_parameter_gets_a_gradient_and_moves() {
    let device = Device::flex().autodiff();
    let module = tiny_module(Some(8), LossConfig::default(), &device);
    let before = param_values(&module);
    let (_, grads) = grads_of(&module, Chunking::default(), true, &device);
    let with_grad: Vec<&str> = grads.paths().collect();
    for path in before.keys() {
        assert!(with_grad.contains(&path.as_str()), "no gradient for {path}");
        let g = grads.get(path).unwrap();
        assert!(g.iter().any(|&x| x != 0.0), "zero gradient for {path}");
    }
    for must in [
        "loss.temperature.log_tau",
        "tower.query_head.weight",
        "tower.item_head.weight",
    ] {
        assert!(
            before.contains_key(must),
            "{must} missing from {:?}",
            before.keys()
        );
    }
    let mut opt = AdamW::new(AdamWConfig::default());
    let after = param_values(&opt.step(module, &grads, &lr));
    for (path, v) in &before {
        assert_ne!(v, &after[path], "{path} did not change");
    }
}

#[test]
fn a_frozen_temperature_gets_no_gradient_and_stays() {
    let device = Device::flex().autodiff();
    let mut cfg = SupConConfig::default();
    cfg.temperature.learnable = false;
    let module = tiny_module(None, LossConfig::Supcon(cfg), &device);
    let tau = module.loss.temperature.as_ref().unwrap().value();
    let (_, grads) = grads_of(&module, Chunking::default(), true, &device);
    assert!(grads.get("loss.temperature.log_tau").is_none());
    assert!(
        grads
            .get("tower.encoder.embeddings.word_embeddings.weight")
            .is_some()
    );
    let mut opt = AdamW::new(AdamWConfig::default());
    let module = opt.step(module, &grads, &lr);
    assert_eq!(module.loss.temperature.as_ref().unwrap().value(), tau);
}

/// The lowest value a loss can take on the fixed batch: 0 for the margin losses; for graded
/// SupCon (a cross-entropy against the target distribution r_i / Σ r) the entropy of each
/// instance's target distribution.
fn loss_floor(loss: &LossConfig) -> f64 {
    match loss {
        LossConfig::Supcon(_) => fixed_batch()
            .iter()
            .map(|inst| {
                let total: f64 = inst.items.iter().map(|&(_, l)| f64::from(l)).sum();
                -inst
                    .items
                    .iter()
                    .filter(|&&(_, l)| l > 0)
                    .map(|&(_, l)| {
                        let p = f64::from(l) / total;
                        p * p.ln()
                    })
                    .sum::<f64>()
            })
            .sum(),
        _ => 0.0,
    }
}

#[test]
fn steps_reduce_the_loss_on_a_fixed_batch() {
    for loss in [
        LossConfig::default(),
        LossConfig::Circle(Default::default()),
        LossConfig::Triplet(Default::default()),
    ] {
        let device = Device::flex().autodiff();
        let mut module = tiny_module(Some(8), loss, &device);
        let mut opt = AdamW::new(AdamWConfig::default());
        let mut losses = Vec::new();
        for _ in 0..15 {
            let (l, grads) = grads_of(&module, Chunking::default(), true, &device);
            losses.push(l);
            module = opt.step(module, &grads, &lr);
        }
        let floor = loss_floor(&loss);
        let (first, last) = (losses[0] - floor, *losses.last().unwrap() - floor);
        assert!(
            last >= -1e-4 && last < 0.3 * first,
            "{}: excess loss over the floor {floor} went from {first} to {last}: {losses:?}",
            loss.name()
        );
    }
}

/// The deduplicated, length-sorted chunked layout computes the same loss and gradients as
/// encoding every slot in one padded batch.
#[test]
fn chunked_dedup_layout_matches_the_plain_one() {
    let device = Device::flex().autodiff();
    let module = tiny_module(Some(8), LossConfig::default(), &device);
    let small = Chunking {
        max_texts: 3,
        max_tokens: 12,
    };
    let (l1, g1) = grads_of(&module, small, true, &device);
    let (l2, g2) = grads_of(&module, Chunking::single(), false, &device);
    assert!(
        (l1 - l2).abs() < 1e-5 * l2.abs().max(1.0),
        "loss {l1} vs {l2}"
    );
    for path in g2.paths() {
        let (a, b) = (g1.get(path).unwrap(), g2.get(path).unwrap());
        let scale = b.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-6);
        let worst = a
            .iter()
            .zip(&b)
            .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(
            worst <= 1e-4 * scale.max(1.0),
            "{path}: gradients differ by {worst} (scale {scale})"
        );
    }
}

fn run_config(root: &Path, out: &str) -> TrainConfig {
    let (catalog, judgments) = synthetic_data(root, 36);
    let mut cfg = TrainConfig {
        out: root.join(out),
        seed: 5,
        threads: 2,
        ..Default::default()
    };
    cfg.data.catalog = catalog;
    cfg.data.judgments = Some(judgments);
    cfg.data.dev_fraction = 0.25;
    cfg.data.items_per_label = [2, 1, 1];
    cfg.data.instances_per_query = 2;
    cfg.model.init = tiny_model_dir(root, Some(16), 3);
    cfg.train.batch_size = 8;
    cfg.train.lr = 2e-3;
    cfg.train.head_lr = 2e-3;
    cfg.train.temperature_lr = 1e-2;
    cfg.train.warmup_steps = Some(2);
    cfg
}

fn model_values(dir: &Path) -> BTreeMap<String, Vec<f32>> {
    let m = load_model(dir, &LoadOptions::default(), &Device::flex()).unwrap();
    param_values(&m.model)
}

fn metric_lines(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn close(a: &BTreeMap<String, Vec<f32>>, b: &BTreeMap<String, Vec<f32>>, tol: f32) {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (k, va) in a {
        let worst = va
            .iter()
            .zip(&b[k])
            .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(worst <= tol, "{k}: differs by {worst}");
    }
}

/// A run stopped after 5 updates (its last checkpoint at 4) and resumed reaches the same
/// weights and losses as an uninterrupted run.
#[test]
fn resumed_run_matches_an_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = run_config(dir.path(), "whole");
    cfg.train.epochs = 2;
    cfg.train.checkpoint_every = 2;
    cfg.eval.every = 3;
    let whole = train_with(&cfg, &TrainOptions::default()).unwrap();
    assert!(whole.total_steps >= 8, "only {} updates", whole.total_steps);

    cfg.out = dir.path().join("split");
    let stop = TrainOptions {
        stop_after: Some(5),
        ..Default::default()
    };
    let first = train_with(&cfg, &stop).unwrap();
    assert!(first.stopped_early && first.model_dir.is_none());
    assert_eq!(first.steps, 5);
    let e = train_with(&cfg, &TrainOptions::default()).unwrap_err();
    assert!(format!("{e:#}").contains("--resume"), "{e:#}");
    let resume = TrainOptions {
        resume: true,
        ..Default::default()
    };
    let second = train_with(&cfg, &resume).unwrap();
    assert_eq!(second.resumed_from, Some(4));
    assert_eq!(second.steps, whole.steps);

    close(
        &model_values(&dir.path().join("whole/model")),
        &model_values(&dir.path().join("split/model")),
        1e-5,
    );
    let (a, b) = (
        metric_lines(&dir.path().join("whole")),
        metric_lines(&dir.path().join("split")),
    );
    assert_eq!(a.len(), b.len(), "metrics.jsonl lengths differ");
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x["step"], y["step"]);
        for key in ["loss", "temperature", "dev_ndcg@10"] {
            if let (Some(p), Some(q)) = (x[key].as_f64(), y[key].as_f64()) {
                assert!(
                    (p - q).abs() <= 1e-4 * p.abs().max(1.0),
                    "step {}: {key} {p} vs {q}",
                    x["step"]
                );
            }
        }
    }
    assert_eq!(whole.best.map(|b| b.step), second.best.map(|b| b.step));
}

/// A full run on the synthetic catalog writes every artefact and learns the task.
#[test]
fn training_writes_the_run_directory_and_improves_dev_ndcg() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = run_config(dir.path(), "run");
    cfg.train.epochs = 6;
    cfg.eval.at_start = true;
    cfg.eval.every = 0;
    let summary = train_with(&cfg, &TrainOptions::default()).unwrap();
    let run = dir.path().join("run");
    for f in [
        "config.toml",
        "metrics.jsonl",
        "summary.json",
        "model/strata.json",
        "best/model.safetensors",
    ] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    assert!(
        !crate::checkpoint::list_checkpoints(&run)
            .unwrap()
            .is_empty()
    );
    // The saved config reads back as the one that ran.
    let saved = TrainConfig::from_toml_file(&run.join("config.toml")).unwrap();
    assert_eq!(saved, cfg);
    // The models record the item text they learned on; evaluation, indexing and mining with
    // them default to it.
    let want = cfg.data.item_text.clone();
    for m in ["model", "best"] {
        assert_eq!(
            strata_model::recorded_item_text(&run.join(m)).unwrap(),
            Some(want.clone()),
            "{m}"
        );
        assert_eq!(
            strata_model::item_text_for(Some(&run.join(m)), None).unwrap(),
            want
        );
        let name = strata_data::ItemTextConfig::name_only();
        assert_eq!(
            strata_model::item_text_for(Some(&run.join(m)), Some(name.clone())).unwrap(),
            name
        );
    }
    // One dev point at the start and one per epoch.
    assert_eq!(summary.dev.len(), 1 + cfg.train.epochs);
    let start = summary.dev[0].score.ndcg_at_10;
    let best = summary.best.unwrap().score.ndcg_at_10;
    assert!(
        best > start + 0.05,
        "dev NDCG@10 went from {start} to best {best}"
    );
    // The training loss fell.
    let lines = metric_lines(&run);
    let losses: Vec<f64> = lines
        .iter()
        .filter_map(|l| l["loss_per_instance"].as_f64())
        .collect();
    let k = losses.len() / 4;
    let head: f64 = losses[..k].iter().sum::<f64>() / k as f64;
    let tail: f64 = losses[losses.len() - k..].iter().sum::<f64>() / k as f64;
    assert!(tail < head, "loss per instance {head} -> {tail}");
    assert_eq!(losses.len() as u64, summary.total_steps);
    // The best model is the one that scored best: re-evaluating it gives the same NDCG.
    let dev_run = crate::trainer::evaluate_model(&cfg, &run.join("best")).unwrap();
    assert!(
        (dev_run.ndcg_at_10 - best).abs() < 1e-6,
        "{} vs {best}",
        dev_run.ndcg_at_10
    );
    // Continuing from the run directory (stage 2) starts from its best model.
    let mut next = cfg.clone();
    next.out = dir.path().join("stage2");
    next.model.init = run.clone();
    next.loss = LossConfig::Circle(Default::default());
    next.train.max_steps = 2;
    next.eval.at_start = true;
    let s2 = train_with(&next, &TrainOptions::default()).unwrap();
    assert!((s2.dev[0].score.ndcg_at_10 - best).abs() < 1e-6);
    assert_eq!(s2.steps, 2);
}

/// Random catalog negatives (data.random_negatives) train without diverging: finite losses
/// and gradient norms throughout, and more items per instance than the judged ones.
#[test]
fn random_negatives_train_with_finite_gradients() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = run_config(dir.path(), "rn");
    cfg.train.max_steps = 4;
    cfg.train.grad_clip = 1.0;
    // Random negatives can be any catalog item: every one must be tokenized (an item left
    // untokenized is an empty sequence, and its gradients are NaN).
    let judged_only = crate::data::TrainData::load(&cfg)
        .unwrap()
        .train_items()
        .len();
    cfg.data.random_negatives = 3;
    let data = crate::data::TrainData::load(&cfg).unwrap();
    assert_eq!(data.train_items().len(), data.catalog.len());
    assert!(judged_only <= data.catalog.len());
    let summary = crate::train(&cfg).unwrap();
    assert!(summary.final_loss.is_some_and(|l| l.is_finite()));
    let lines = metric_lines(&cfg.out);
    let steps: Vec<&serde_json::Value> = lines.iter().filter(|l| l.get("loss").is_some()).collect();
    assert_eq!(steps.len(), 4);
    for l in steps {
        assert!(l["loss"].as_f64().is_some_and(f64::is_finite), "{l}");
        assert!(l["grad_norm"].as_f64().is_some_and(f64::is_finite), "{l}");
    }
}

/// Grade-aware batch negatives (data.batch_negatives) reach the loss: with the same instances
/// in the same order, graded SupCon's first loss is larger (its denominator gains every
/// unjudged item of the batch), circle loss trains with finite losses and gradients, and the
/// resolved config records the option.
#[test]
fn batch_negatives_enter_the_loss() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = run_config(dir.path(), "plain");
    cfg.train.max_steps = 1;
    cfg.loss = LossConfig::Supcon(Default::default());
    let plain = crate::data::TrainData::load(&cfg).unwrap();
    let mut bn = cfg.clone();
    bn.out = dir.path().join("bn");
    bn.data.batch_negatives = true;
    let with = crate::data::TrainData::load(&bn).unwrap();
    // The synthetic queries all hold two label levels: the same instances, same order.
    assert_eq!(
        plain.epoch_instances(0).unwrap(),
        with.epoch_instances(0).unwrap()
    );
    let a = crate::train(&cfg).unwrap().final_loss.unwrap();
    let b = crate::train(&bn).unwrap().final_loss.unwrap();
    assert!(a.is_finite() && b.is_finite());
    assert!(b > a + 1e-3, "batch negatives {b} vs plain {a}");
    let resolved = std::fs::read_to_string(bn.out.join("config.toml")).unwrap();
    assert!(resolved.contains("batch_negatives = true"), "{resolved}");

    let mut circle = bn.clone();
    circle.out = dir.path().join("circle");
    circle.loss = LossConfig::Circle(Default::default());
    circle.train.max_steps = 3;
    circle.data.batch_negatives_max = 4;
    let s = crate::train(&circle).unwrap();
    assert!(s.final_loss.is_some_and(f64::is_finite));
    for l in metric_lines(&circle.out)
        .iter()
        .filter(|l| l.get("loss").is_some())
    {
        assert!(l["grad_norm"].as_f64().is_some_and(f64::is_finite), "{l}");
    }
}

/// A run that fails before training (bad data) leaves nothing that blocks its rerun, and an
/// `--overwrite` that fails to start keeps the earlier run's model.
#[test]
fn a_run_that_failed_to_start_does_not_block_its_rerun() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = run_config(dir.path(), "run");
    cfg.train.max_steps = 1;
    let good = cfg.data.catalog.clone();
    let bad = dir.path().join("bad.tsv");
    std::fs::write(&bad, "item_id\tname\n").unwrap();
    cfg.data.catalog = bad.clone();
    assert!(crate::train(&cfg).is_err());
    cfg.data.catalog = good;
    let first = crate::train(&cfg).unwrap();
    assert_eq!(first.steps, 1);
    // Now the directory holds a run: a plain start is refused, an overwrite with bad data
    // fails without touching the model.
    assert!(crate::train(&cfg).is_err());
    let before = model_values(&cfg.out.join(crate::trainer::FINAL_MODEL));
    let mut broken = cfg.clone();
    broken.data.catalog = bad;
    let opts = TrainOptions {
        overwrite: true,
        ..Default::default()
    };
    assert!(train_with(&broken, &opts).is_err());
    assert_eq!(
        before,
        model_values(&cfg.out.join(crate::trainer::FINAL_MODEL))
    );
}

/// `model.head_init` shapes a new model's heads only: starting from a saved strata model (which
/// keeps its heads) with it set is an error that names the field, before any work.
#[test]
fn head_init_on_a_saved_model_names_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = run_config(dir.path(), "identity");
    cfg.model.projection_dim = Some(16);
    cfg.model.head_init = strata_model::HeadInit::Identity;
    let e = format!("{:#}", crate::train(&cfg).unwrap_err());
    assert!(
        e.contains("model.head_init") && e.contains("saved strata model"),
        "{e}"
    );
    assert!(!cfg.out.join(crate::trainer::FINAL_MODEL).exists());
}

/// Training judgments that name an item the catalog lacks are reported with the file and
/// line, not a position in the training split.
#[test]
fn unknown_items_in_training_judgments_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = run_config(dir.path(), "unknown");
    let path = dir.path().join("train.tsv");
    let judgments = cfg.data.judgments.take().unwrap();
    let text = std::fs::read_to_string(&judgments).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let header = lines[0].clone();
    assert!(header.starts_with("query\tproduct_uid\tlabel"), "{header}");
    lines.insert(5, "some query\tno-such-item\t2".into());
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    cfg.data.train_judgments = Some(path.clone());
    let e = format!("{:#}", crate::train(&cfg).unwrap_err());
    assert!(
        e.contains(&format!("{}:6: field `product_uid`", path.display()))
            && e.contains("no-such-item"),
        "{e}"
    );
}

/// Training on the GPU path (`$STRATA_TEST_DEVICE`, default `wgpu`; in CI Mesa's software
/// Vulkan driver runs the kernels) follows the CPU's run update by update: gradients and AdamW
/// moments stay on the device there ([`crate::optim::Placement::Auto`]), a run stopped after 3
/// updates resumes from its checkpoint (moments saved from the device, loaded back onto it),
/// and each of the 5 losses equals the CPU run's to 1e-3 (relative), while the loss moves by
/// more than that over the run (a wrong update would show).
#[cfg(feature = "wgpu")]
#[test]
fn a_training_run_on_the_gpu_follows_the_cpu() {
    let name = std::env::var("STRATA_TEST_DEVICE").unwrap_or_else(|_| "wgpu".into());
    let device = strata_model::parse_device(&name).unwrap();
    let probe = device.clone();
    let works = std::panic::catch_unwind(move || {
        burn::tensor::Tensor::<1>::from_floats([1.0, 2.0], &probe)
            .sum()
            .into_scalar::<f32>()
    });
    assert!(
        matches!(works, Ok(v) if v == 3.0),
        "no working {name} adapter: install a Vulkan driver (scripts/setup-vulkan.sh installs \
         Mesa's software one) or set STRATA_TEST_DEVICE"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = run_config(dir.path(), "cpu");
    cfg.train.max_steps = 5;
    cfg.train.checkpoint_every = 2;
    cfg.eval.every = 0;
    train_with(&cfg, &TrainOptions::default()).unwrap();
    let mut gpu = cfg.clone();
    gpu.out = dir.path().join("gpu");
    gpu.device = name;
    let stop = TrainOptions {
        stop_after: Some(3),
        ..Default::default()
    };
    assert!(train_with(&gpu, &stop).unwrap().stopped_early);
    let resume = TrainOptions {
        resume: true,
        ..Default::default()
    };
    assert_eq!(train_with(&gpu, &resume).unwrap().resumed_from, Some(2));
    let losses = |run: &Path| -> Vec<f64> {
        metric_lines(run)
            .iter()
            .filter_map(|l| l.get("loss").and_then(|v| v.as_f64()))
            .collect()
    };
    let (a, b) = (losses(&cfg.out), losses(&gpu.out));
    // The resumed run's log keeps the records up to its checkpoint and appends the rest.
    assert_eq!((a.len(), b.len()), (5, 5), "{a:?} {b:?}");
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(
            (x - y).abs() <= 1e-3 * x.abs().max(1.0),
            "update {}: loss {x} on the CPU, {y} on the GPU ({a:?} vs {b:?})",
            i + 1
        );
    }
    let moved = a.iter().fold(0f64, |m, x| m.max((x - a[0]).abs()));
    assert!(moved > 1e-2 * a[0].abs(), "the loss hardly moved: {a:?}");
}

/// `seeds = 3`: three runs, each the same as a single run of its seed, and their mean in
/// `out/model`; the soup's dev score is the score of that model. Stopped in its second run and
/// resumed, it keeps the first run, continues the second and reaches the same soup.
#[test]
fn a_seed_soup_averages_its_runs_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = run_config(dir.path(), "soup");
    cfg.train.epochs = 2;
    cfg.train.checkpoint_every = 2;
    cfg.seeds = 3;
    let soup = train_with(&cfg, &TrainOptions::default()).unwrap();
    let out = dir.path().join("soup");
    assert_eq!(soup.model_dir.as_deref(), Some(out.join("model").as_path()));
    assert_eq!(soup.seeds.len(), 3);
    assert!(!soup.stopped_early);
    assert_eq!(soup.steps, soup.seeds.iter().map(|s| s.steps).sum::<u64>());
    assert_eq!(soup.total_steps, soup.steps);

    // Each run is the single run of its seed, in out/seed-<S>.
    let runs: Vec<BTreeMap<String, Vec<f32>>> = (5..8)
        .map(|s| model_values(&out.join(format!("seed-{s}/model"))))
        .collect();
    let mut single = cfg.clone();
    single.seeds = 1;
    single.seed = 6;
    single.out = dir.path().join("single-6");
    train_with(&single, &TrainOptions::default()).unwrap();
    close(&model_values(&single.out.join("model")), &runs[1], 0.0);
    // The seeds give different models, and the soup is their mean.
    let soup_values = model_values(&out.join("model"));
    let mut moved = 0;
    for (k, v) in &soup_values {
        for (i, x) in v.iter().enumerate() {
            let want = runs.iter().map(|r| r[k][i] as f64).sum::<f64>() / 3.0;
            assert!(
                (*x as f64 - want).abs() <= 1e-6 * want.abs().max(1.0),
                "{k}[{i}]"
            );
        }
        moved += usize::from(runs[0][k] != runs[1][k]);
    }
    assert!(
        moved * 2 > soup_values.len(),
        "{moved} of {}",
        soup_values.len()
    );

    // Its dev score is the soup model's, and the summary and configuration are written.
    let dev = soup.dev.last().expect("the soup's dev score");
    assert_eq!(dev.step, soup.steps);
    let score = crate::trainer::evaluate_model(&cfg, &out.join("model")).unwrap();
    assert_eq!(dev.score, score);
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(saved["seeds"].as_array().unwrap().len(), 3);
    let resolved = TrainConfig::from_toml_file(&out.join("config.toml")).unwrap();
    assert_eq!(resolved, cfg);

    // A second start needs --resume or --overwrite.
    let e = train_with(&cfg, &TrainOptions::default()).unwrap_err();
    assert!(format!("{e:#}").contains("--resume"), "{e:#}");

    // Stopped in the second run, then resumed: the first run is kept (its metrics untouched),
    // the second continues from its checkpoint, and the soup is the same.
    cfg.out = dir.path().join("split");
    let per_run = soup.seeds[0].total_steps;
    let stop = TrainOptions {
        stop_after: Some(per_run / 2 + 1),
        ..Default::default()
    };
    // The first run stops too (stop_after counts each run's updates): resume it to its end.
    let first = train_with(&cfg, &stop).unwrap();
    assert!(first.stopped_early && first.model_dir.is_none());
    assert!(!cfg.out.join("model").exists());
    assert!(crate::can_resume(&cfg).unwrap());
    let resume = TrainOptions {
        resume: true,
        ..Default::default()
    };
    let mut second_stop = stop.clone();
    second_stop.resume = true;
    let second = train_with(&cfg, &second_stop).unwrap();
    assert!(second.stopped_early);
    assert_eq!(
        second.seeds.len(),
        2,
        "the first run finished, the second stopped"
    );
    let metrics_first = std::fs::read(cfg.out.join("seed-5/metrics.jsonl")).unwrap();
    let done = train_with(&cfg, &resume).unwrap();
    assert!(!done.stopped_early);
    assert_eq!(done.seeds[1].resumed_from.map(|s| s > 0), Some(true));
    assert_eq!(
        std::fs::read(cfg.out.join("seed-5/metrics.jsonl")).unwrap(),
        metrics_first
    );
    close(&model_values(&cfg.out.join("model")), &soup_values, 1e-5);

    // --overwrite trains again and replaces the soup only when the new one is complete.
    let again = TrainOptions {
        overwrite: true,
        ..Default::default()
    };
    let redone = train_with(&cfg, &again).unwrap();
    assert_eq!(redone.seeds.len(), 3);
    assert!(redone.seeds.iter().all(|s| s.resumed_from.is_none()));
    close(&model_values(&cfg.out.join("model")), &soup_values, 1e-5);
    assert!(!cfg.out.join("model.old").exists());
    assert!(!cfg.out.join("model.averaging").exists());

    // seeds = 0 names the field.
    cfg.seeds = 0;
    let e = train_with(&cfg, &TrainOptions::default()).unwrap_err();
    assert!(format!("{e:#}").contains("`seeds`"), "{e:#}");
}
