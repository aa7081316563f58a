//! Tests with tiny random-initialised models: gradients reach every parameter, training learns
//! a small synthetic task, labeler directories round-trip, runs resume exactly.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor};
use strata_data::{Catalog, Item, ItemTextConfig, Labeler};
use strata_model::{EncoderConfig, TextTokenizer, TwoTower, save_model};
use strata_train::optim::param_values;

use super::data::PairSource;
use super::labeler::CrossEncoderLabeler;
use super::model::{CrossEncoder, CrossEncoderConfig, PairBatch, Pooling, tokenize_pairs};
use super::store::{load_cross_encoder, load_tokenizer, predict, save_cross_encoder};
use super::train::{
    LabelerTrainConfig, LabelerTrainOptions, cross_entropy, resolve_labeler_dir, train_labeler,
};
use strata_data::split::SplitConfig;

use strata_testkit::{COLOURS, THINGS};

/// The fixture vocabulary: the colours and things.
fn words() -> Vec<&'static str> {
    COLOURS.iter().chain(&THINGS).copied().collect()
}

fn vocab_len() -> usize {
    strata_testkit::vocab_size(&words())
}

/// A BERT-style word-level tokenizer: `[CLS] a [SEP] b [SEP]`, token types 0 then 1.
fn tokenizer(max_len: usize) -> TextTokenizer {
    strata_testkit::word_tokenizer(&words(), max_len)
}

fn tiny_config() -> CrossEncoderConfig {
    CrossEncoderConfig {
        encoder: EncoderConfig::tiny(vocab_len()),
        max_len: 16,
        pooling: Pooling::Mean,
        head_dropout: 0.0,
        item_text: ItemTextConfig::name_only(),
        base_model: "tiny".into(),
    }
}

/// A tiny random encoder saved as a strata model directory (the starting point of runs).
fn tiny_encoder_dir(root: &Path) -> PathBuf {
    let dir = root.join("tiny-encoder");
    let device = Device::flex();
    device.seed(5);
    let cfg = strata_testkit::tiny_tower(vocab_len(), None);
    save_model(&dir, &TwoTower::init(&cfg, &device), &cfg, &tokenizer(16)).unwrap();
    dir
}

/// Items "<colour> <thing>"; query "<colour> <thing>" judges the same item 2, the same thing
/// in the other colours 1, and the other things in the same colour 0.
fn synthetic_data(root: &Path) -> (PathBuf, PathBuf) {
    let mut products = String::from("product_uid\tproduct_title\n");
    for (c, colour) in COLOURS.iter().enumerate() {
        for (t, thing) in THINGS.iter().enumerate() {
            products.push_str(&format!("{}\t{colour} {thing}\n", c * 10 + t));
        }
    }
    let mut judgments = String::from("query\tproduct_uid\tlabel\n");
    for (c, colour) in COLOURS.iter().enumerate() {
        for (t, thing) in THINGS.iter().enumerate() {
            for c2 in 0..COLOURS.len() {
                for t2 in 0..THINGS.len() {
                    let label = match (c2 == c, t2 == t) {
                        (true, true) => 2,
                        (false, true) => 1,
                        (true, false) => 0,
                        (false, false) => continue,
                    };
                    judgments.push_str(&format!("{colour} {thing}\t{}\t{label}\n", c2 * 10 + t2));
                }
            }
        }
    }
    let cat = root.join("products.tsv");
    let jud = root.join("judgments.tsv");
    std::fs::write(&cat, products).unwrap();
    std::fs::write(&jud, judgments).unwrap();
    (cat, jud)
}

fn catalog() -> Catalog {
    let mut items = Vec::new();
    for (c, colour) in COLOURS.iter().enumerate() {
        for (t, thing) in THINGS.iter().enumerate() {
            items.push(Item::new(
                (c * 10 + t).to_string(),
                format!("{colour} {thing}"),
            ));
        }
    }
    Catalog::from_items(items).unwrap()
}

#[test]
fn pair_encoding_has_segments_and_type_ids() {
    let tok = tokenizer(16);
    let p = &tokenize_pairs(&tok, &[("red drill", "blue drill saw")]).unwrap()[0];
    // [CLS] red drill [SEP] blue drill saw [SEP]
    assert_eq!(p.ids, vec![2, 4, 10, 3, 5, 10, 12, 3]);
    assert_eq!(p.type_ids, vec![0, 0, 0, 0, 1, 1, 1, 1]);
    // Truncation is longest-first and keeps both segments.
    let short = tokenizer(6);
    let p = &tokenize_pairs(&short, &[("red drill", "blue drill saw lamp")]).unwrap()[0];
    assert_eq!(p.len(), 6);
    assert_eq!(p.type_ids.iter().filter(|&&t| t == 0).count(), 3);
    let b = PairBatch::pad(
        &[&tokenize_pairs(&tok, &[("red", "drill")]).unwrap()[0], p],
        0,
    );
    assert_eq!((b.batch, b.len), (2, 6));
    assert_eq!(&b.ids[..6], &[2, 4, 3, 10, 3, 0]);
    assert_eq!(&b.type_ids[..6], &[0, 0, 0, 1, 1, 0]);
    assert_eq!(&b.mask[..6], &[1.0, 1.0, 1.0, 1.0, 1.0, 0.0]);
}

#[test]
fn every_parameter_receives_a_gradient() {
    let device = Device::flex().autodiff();
    device.seed(7);
    let cfg = tiny_config();
    let model = CrossEncoder::init(&cfg, &device);
    let tok = tokenizer(16);
    let pairs = tokenize_pairs(
        &tok,
        &[
            ("red drill", "red drill"),
            ("blue saw", "green lamp"),
            ("gray rope", "gray rope chair"),
        ],
    )
    .unwrap();
    let refs: Vec<_> = pairs.iter().collect();
    for pooling in [Pooling::Mean, Pooling::Cls] {
        let logits = model.forward(&PairBatch::pad(&refs, 0), pooling, &device);
        assert_eq!(logits.dims(), [3, 3]);
        let loss = cross_entropy(logits, &[2, 0, 1], Some([1.0, 2.0, 0.5]), &device).unwrap();
        let grads = loss.backward();
        let (seen, missing) = strata_testkit::params_without_gradient(&model, &grads);
        assert!(seen > 20, "visited only {} parameters", seen);
        assert!(
            missing.is_empty(),
            "{pooling:?}: no gradient for {:?}",
            missing
        );
    }
}

#[test]
fn cross_entropy_matches_hand_computation() {
    let device = Device::flex();
    let logits = Tensor::<2>::from_data(
        burn::tensor::TensorData::new(vec![0.0f32, 0.0, 0.0, 1.0, 2.0, 3.0], [2, 3]),
        &device,
    );
    let lse = (1f64.exp() + 2f64.exp() + 3f64.exp()).ln();
    // Row 0: uniform, label 2; row 1: label 1 (logit 2).
    let nll = [3f64.ln(), lse - 2.0];
    // Labels 2 and 1 with weights w2 = 0.5, w1 = 2.
    let got = cross_entropy(logits.clone(), &[2, 1], Some([1.0, 2.0, 0.5]), &device)
        .unwrap()
        .into_scalar::<f64>();
    let want = (0.5 * nll[0] + 2.0 * nll[1]) / 2.5;
    assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    let plain = cross_entropy(logits.clone(), &[2, 1], None, &device)
        .unwrap()
        .into_scalar::<f64>();
    assert!((plain - (nll[0] + nll[1]) / 2.0).abs() < 1e-5);
    assert!(cross_entropy(logits, &[3, 1], None, &device).is_err());
}

#[test]
fn labeler_directory_round_trip_gives_identical_probabilities() {
    let root = tempfile::tempdir().unwrap();
    let device = Device::flex();
    device.seed(11);
    let cfg = tiny_config();
    let model = CrossEncoder::init(&cfg, &device);
    let tok = tokenizer(cfg.max_len);
    let dir = root.path().join("labeler");
    let fp = save_cross_encoder(&dir, &model, &cfg, &tok).unwrap();
    let loaded = load_cross_encoder(&dir, &device).unwrap();
    assert_eq!(loaded.config, cfg);
    assert_eq!(loaded.fingerprint, fp);
    let tok2 = load_tokenizer(&loaded.tokenizer_path, &loaded.config).unwrap();
    let texts = [("red drill", "red drill"), ("blue", "gray rope chair lamp")];
    let limits = strata_model::BatchLimits {
        max_batch: 8,
        max_tokens: 256,
    };
    let a = predict(
        &model,
        &cfg,
        0,
        &tokenize_pairs(&tok, &texts).unwrap(),
        limits,
        &device,
        false,
    )
    .unwrap();
    let b = predict(
        &loaded.model,
        &loaded.config,
        0,
        &tokenize_pairs(&tok2, &texts).unwrap(),
        limits,
        &device,
        false,
    )
    .unwrap();
    assert_eq!(a, b);
    for p in &a {
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{p:?}");
    }
    // Hugging Face names: `bert.*` encoder keys, `classifier.*` head in PyTorch layout.
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let names: Vec<String> = st.names().into_iter().map(String::from).collect();
    for key in [
        "bert.embeddings.word_embeddings.weight",
        "bert.embeddings.LayerNorm.weight",
        "bert.encoder.layer.1.attention.self.query.weight",
        "bert.encoder.layer.0.attention.output.LayerNorm.bias",
        "classifier.weight",
        "classifier.bias",
    ] {
        assert!(
            names.iter().any(|n| n == key),
            "{key} missing from {names:?}"
        );
    }
    assert_eq!(st.tensor("classifier.weight").unwrap().shape(), &[3, 32]);
    // A bad config names the file.
    std::fs::write(dir.join("labeler.json"), "{\"max_len\": 3}").unwrap();
    let e = load_cross_encoder(&dir, &device).unwrap_err();
    assert!(format!("{e:#}").contains("labeler.json"), "{e:#}");
}

#[test]
fn labeler_labels_pairs_by_item_id_with_its_probabilities() {
    let device = Device::flex();
    device.seed(3);
    let cfg = tiny_config();
    let model = CrossEncoder::init(&cfg, &device);
    let labeler = CrossEncoderLabeler::new(
        model,
        cfg,
        tokenizer(16),
        0xabc,
        "tiny".into(),
        &catalog(),
        device,
    );
    let pairs: Vec<(String, String)> = vec![
        ("red drill".into(), "0".into()),
        ("blue saw".into(), "12".into()),
        ("gray lamp".into(), "53".into()),
    ];
    let probs = labeler.probabilities(&pairs).unwrap();
    let labels = labeler.label(&pairs).unwrap();
    for (p, l) in probs.iter().zip(&labels) {
        let l = l.expect("the cross-encoder never abstains") as usize;
        assert!(p.iter().all(|&x| x <= p[l]), "{p:?} labeled {l}");
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{p:?}");
    }
    // By item id equals by item text.
    let by_text = labeler
        .text_probabilities(&[("blue saw", "blue saw")])
        .unwrap();
    assert_eq!(by_text[0], probs[1]);
    assert!(labeler.identity().contains("fingerprint=0000000000000abc"));
    let e = labeler
        .label(&[("red drill".into(), "999".into())])
        .unwrap_err();
    assert!(format!("{e:#}").contains("\"999\""), "{e:#}");
}

fn run_config(root: &Path, out: &str, max_steps: u64) -> LabelerTrainConfig {
    let (catalog, judgments) = synthetic_data(root);
    LabelerTrainConfig {
        data: PairSource {
            catalog,
            judgments,
            split: SplitConfig::new(0.8, 0.2, 0.0, 0).unwrap(),
            item_text: ItemTextConfig::name_only(),
            taxonomy_depth: None,
        },
        out: root.join(out),
        init: tiny_encoder_dir(root),
        max_len: 16,
        dropout: 0.0,
        head_dropout: 0.0,
        epochs: 60,
        batch_size: 16,
        lr: 2e-3,
        head_lr: 5e-3,
        warmup_ratio: 0.05,
        max_steps,
        eval_every: 0,
        max_dev_pairs: 0,
        seed: 9,
        ..Default::default()
    }
}

#[test]
fn training_learns_a_synthetic_task() {
    let root = tempfile::tempdir().unwrap();
    let cfg = run_config(root.path(), "run", 0);
    let s = train_labeler(&cfg, &LabelerTrainOptions::default()).unwrap();
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(cfg.out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let losses: Vec<f64> = lines.iter().filter_map(|v| v["loss"].as_f64()).collect();
    assert_eq!(losses.len() as u64, s.steps);
    let mean = |x: &[f64]| x.iter().sum::<f64>() / x.len() as f64;
    let (first, last) = (mean(&losses[..20]), mean(&losses[losses.len() - 20..]));
    assert!(last < first * 0.3, "loss {first:.4} -> {last:.4}");
    let best = s.best.expect("dev evaluated");
    assert!(best.accuracy > 0.9, "dev accuracy {best:?}");
    assert!(cfg.out.join("config.json").is_file() && cfg.out.join("summary.json").is_file());
    // The best labeler labels the dev pairs as well as the run measured.
    let dir = resolve_labeler_dir(&cfg.out);
    assert!(dir.ends_with("best"));
    let labeler = CrossEncoderLabeler::load(&dir, &catalog()).unwrap();
    let data = super::data::LabeledPairs::load(&cfg.data, &ItemTextConfig::name_only()).unwrap();
    let pairs: Vec<(String, String)> = data
        .dev
        .iter()
        .map(|j| (j.query.clone(), j.item_id.clone()))
        .collect();
    let labels = labeler.label(&pairs).unwrap();
    let right = labels
        .iter()
        .zip(&data.dev)
        .filter(|(l, j)| **l == Some(j.label))
        .count();
    let acc = right as f64 / pairs.len() as f64;
    assert!((acc - best.accuracy).abs() < 1e-9, "{acc} vs {best:?}");
}

#[test]
fn resumed_run_ends_where_an_uninterrupted_one_does() {
    let root = tempfile::tempdir().unwrap();
    // Dropout off: the device's random source is process-wide and tests run in parallel, so
    // dropout draws here would depend on the other tests.
    let mut whole = run_config(root.path(), "whole", 12);
    whole.checkpoint_every = 5;
    let mut split = whole.clone();
    split.out = root.path().join("split");
    let w = train_labeler(&whole, &LabelerTrainOptions::default()).unwrap();
    let stopped = train_labeler(
        &split,
        &LabelerTrainOptions {
            stop_after: Some(7),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(stopped.stopped_early && stopped.model_dir.is_none());
    // Without --resume an existing run is refused.
    let e = train_labeler(&split, &LabelerTrainOptions::default()).unwrap_err();
    assert!(format!("{e:#}").contains("--resume"), "{e:#}");
    let resumed = train_labeler(
        &split,
        &LabelerTrainOptions {
            resume: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(resumed.resumed_from, Some(5));
    assert_eq!(resumed.steps, 12);
    assert_eq!(resumed.pairs_seen, w.pairs_seen);
    assert!(w.pairs_seen > 11 * 13 && w.pairs_seen <= 12 * 16);
    let device = Device::flex();
    let a = param_values(
        &load_cross_encoder(&whole.out.join("model"), &device)
            .unwrap()
            .model,
    );
    let b = param_values(
        &load_cross_encoder(&split.out.join("model"), &device)
            .unwrap()
            .model,
    );
    assert_eq!(a.len(), b.len());
    for (k, va) in &a {
        let worst = va
            .iter()
            .zip(&b[k])
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-6, "{k} differs by {worst}");
    }
    // The metrics log has one record per update, interrupted updates dropped.
    let steps: Vec<u64> = std::fs::read_to_string(split.out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v.get("loss").is_some())
        .map(|v| v["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, (1..=12).collect::<Vec<u64>>());
}

#[test]
fn bad_judgments_name_file_line_and_field_and_leave_no_run() {
    let root = tempfile::tempdir().unwrap();
    let mut cfg = run_config(root.path(), "run", 5);
    let bad = root.path().join("bad.tsv");
    std::fs::write(
        &bad,
        "query\tproduct_uid\tlabel\nred drill\t0\t2\nred saw\t2\t5\n",
    )
    .unwrap();
    cfg.data.judgments = bad;
    let e = format!(
        "{:#}",
        train_labeler(&cfg, &LabelerTrainOptions::default()).unwrap_err()
    );
    assert!(e.contains("bad.tsv:3") && e.contains("label"), "{e}");
    assert!(!cfg.out.exists());
    // An unknown item is named too.
    std::fs::write(
        &cfg.data.judgments,
        "query\tproduct_uid\tlabel\nred drill\t999\t2\n",
    )
    .unwrap();
    let e = format!(
        "{:#}",
        train_labeler(&cfg, &LabelerTrainOptions::default()).unwrap_err()
    );
    assert!(e.contains("bad.tsv:2") && e.contains("999"), "{e}");
}
