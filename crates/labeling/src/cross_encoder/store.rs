//! Labeler directories and batched inference.
//!
//! A labeler directory holds
//! - `labeler.json`: the [`CrossEncoderConfig`];
//! - `model.safetensors`: encoder and head in PyTorch layout with Hugging Face names
//!   (`bert.embeddings.word_embeddings.weight`, ..., `classifier.weight` `[3, hidden]`);
//! - `tokenizer.json`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use burn::module::Module;
use burn::tensor::Device;
use indicatif::{ProgressBar, ProgressStyle};
use strata_data::hash::fnv1a64;
use strata_model::store::{ModelDirKind, load_hf_module, model_dir_kind, save_hf_module};
use strata_model::tokenize::length_batches;
use strata_model::{BatchLimits, LoadOptions, TextTokenizer, load_model};

use super::model::{CrossEncoder, CrossEncoderConfig, NUM_LABELS, PairBatch, PairTokens};

/// Configuration file of a labeler directory.
pub const LABELER_CONFIG: &str = "labeler.json";
/// Weights file of a labeler directory.
pub const WEIGHTS: &str = "model.safetensors";
/// Tokenizer file of a labeler directory.
pub const TOKENIZER: &str = "tokenizer.json";

/// A cross-encoder with its configuration and tokenizer.
#[derive(Clone, Debug)]
pub struct LoadedCrossEncoder {
    pub model: CrossEncoder,
    pub config: CrossEncoderConfig,
    pub tokenizer_path: PathBuf,
    /// Hash of the weights file (identifies the labeler in caches).
    pub fingerprint: u64,
}

/// Whether `dir` is a labeler directory.
pub fn is_labeler_dir(dir: &Path) -> bool {
    dir.join(LABELER_CONFIG).is_file()
}

/// Hash of a weights file.
pub fn file_fingerprint(file: &Path) -> anyhow::Result<u64> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    Ok(fnv1a64(&bytes))
}

/// Loads a labeler directory onto `device`.
pub fn load_cross_encoder(dir: &Path, device: &Device) -> anyhow::Result<LoadedCrossEncoder> {
    let cfg_path = dir.join(LABELER_CONFIG);
    let text = std::fs::read_to_string(&cfg_path).with_context(|| {
        format!(
            "cannot read {} (is {} a labeler directory?)",
            cfg_path.display(),
            dir.display()
        )
    })?;
    let config: CrossEncoderConfig = serde_json::from_str(&text)
        .with_context(|| format!("{}: invalid labeler config", cfg_path.display()))?;
    anyhow::ensure!(
        config.max_len >= 3 && config.max_len <= config.encoder.max_input_tokens(),
        "{}: field max_len = {} must be between 3 and {}",
        cfg_path.display(),
        config.max_len,
        config.encoder.max_input_tokens()
    );
    let tokenizer_path = dir.join(TOKENIZER);
    anyhow::ensure!(
        tokenizer_path.is_file(),
        "labeler directory {} lacks {TOKENIZER}",
        dir.display()
    );
    let mut model = CrossEncoder::init(&config, device);
    let file = dir.join(WEIGHTS);
    load_hf_module(&mut model, &file, "cross-encoder")?;
    Ok(LoadedCrossEncoder {
        model,
        config,
        tokenizer_path,
        fingerprint: file_fingerprint(&file)?,
    })
}

/// A fresh cross-encoder from a pretrained encoder: a Hugging Face folder or a strata model
/// directory (its shared encoder); the head is random (seeded). `config` is completed with
/// the encoder's architecture and `max_len` is capped by its position table.
pub fn cross_encoder_from_encoder(
    dir: &Path,
    max_len: usize,
    pooling: super::model::Pooling,
    head_dropout: f64,
    item_text: strata_data::ItemTextConfig,
    seed: u64,
    device: &Device,
) -> anyhow::Result<LoadedCrossEncoder> {
    model_dir_kind(dir)?;
    let opts = LoadOptions {
        max_len: Some(max_len),
        seed,
        ..Default::default()
    };
    let loaded = load_model(dir, &opts, device)
        .with_context(|| format!("loading the encoder {}", dir.display()))?;
    let encoder_cfg = loaded.config.encoder.clone();
    let config = CrossEncoderConfig {
        max_len: max_len.min(encoder_cfg.max_input_tokens()),
        encoder: encoder_cfg,
        pooling,
        head_dropout,
        item_text,
        base_model: match model_dir_kind(dir)? {
            ModelDirKind::HuggingFace => dir.display().to_string(),
            ModelDirKind::Strata if !loaded.config.base_model.is_empty() => {
                format!("{} (from {})", dir.display(), loaded.config.base_model)
            }
            ModelDirKind::Strata => dir.display().to_string(),
        },
    };
    let mut model = CrossEncoder::init(&config, device).with_seeded_head(seed, device);
    model.bert = loaded.model.encoder;
    Ok(LoadedCrossEncoder {
        model,
        config,
        tokenizer_path: loaded.tokenizer_path,
        fingerprint: 0,
    })
}

/// Writes a labeler directory (creating it) and returns the fingerprint of its weights.
pub fn save_cross_encoder(
    dir: &Path,
    model: &CrossEncoder,
    config: &CrossEncoderConfig,
    tokenizer: &TextTokenizer,
) -> anyhow::Result<u64> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = dir.join(format!("{WEIGHTS}.tmp"));
    save_hf_module(model, &tmp)?;
    tokenizer
        .inner()
        .save(dir.join(TOKENIZER), false)
        .map_err(|e| anyhow::anyhow!("cannot write tokenizer in {}: {e}", dir.display()))?;
    let cfg_tmp = dir.join(format!("{LABELER_CONFIG}.tmp"));
    std::fs::write(&cfg_tmp, serde_json::to_string_pretty(config)?)
        .with_context(|| format!("cannot write {}", cfg_tmp.display()))?;
    std::fs::rename(&tmp, dir.join(WEIGHTS))?;
    std::fs::rename(&cfg_tmp, dir.join(LABELER_CONFIG))?;
    file_fingerprint(&dir.join(WEIGHTS))
}

/// Loads the tokenizer of a cross-encoder, truncating pairs at the configured length.
pub fn load_tokenizer(path: &Path, config: &CrossEncoderConfig) -> anyhow::Result<TextTokenizer> {
    TextTokenizer::from_file(path, config.max_len, config.encoder.pad_token_id as u32)
}

/// Class probabilities of tokenized pairs, in input order, in length-sorted batches. `model`
/// should be on an inference (non-autodiff) device.
pub fn predict(
    model: &CrossEncoder,
    config: &CrossEncoderConfig,
    pad_id: u32,
    pairs: &[PairTokens],
    limits: BatchLimits,
    device: &Device,
    progress: bool,
) -> anyhow::Result<Vec<[f32; NUM_LABELS]>> {
    let lengths: Vec<usize> = pairs.iter().map(PairTokens::len).collect();
    let batches = length_batches(&lengths, limits.max_batch, limits.max_tokens);
    let bar = (progress && pairs.len() >= 256).then(|| {
        let b = ProgressBar::new(pairs.len() as u64);
        b.set_style(
            ProgressStyle::with_template(
                "{spinner} labeling pairs [{bar:30}] {pos}/{len} {per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        b
    });
    let mut out = vec![[0f32; NUM_LABELS]; pairs.len()];
    for batch in batches {
        let refs: Vec<&PairTokens> = batch.iter().map(|&i| &pairs[i]).collect();
        let pb = PairBatch::pad(&refs, pad_id);
        let probs = model
            .probabilities(&pb, config.pooling, device)
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("cannot read probabilities back: {e:?}"))?;
        for (row, &i) in batch.iter().enumerate() {
            out[i].copy_from_slice(&probs[row * NUM_LABELS..(row + 1) * NUM_LABELS]);
        }
        if let Some(b) = &bar {
            b.inc(batch.len() as u64);
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(out)
}

/// The most probable level of each probability row (ties go to the lower level).
pub fn argmax(probs: &[[f32; NUM_LABELS]]) -> Vec<u8> {
    probs
        .iter()
        .map(|p| {
            let mut best = 0;
            for k in 1..NUM_LABELS {
                if p[k] > p[best] {
                    best = k;
                }
            }
            best as u8
        })
        .collect()
}

/// The model with its parameters moved off the autodiff graph (for inference).
pub fn for_inference(model: &CrossEncoder) -> CrossEncoder {
    model.clone().valid()
}
