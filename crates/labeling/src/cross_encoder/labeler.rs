//! [`CrossEncoderLabeler`]: a trained cross-encoder as a [`Labeler`] of (query, item id) pairs.

use std::collections::HashMap;
use std::path::Path;

use burn::tensor::Device;
use strata_data::labeler::ScoredLabel;
use strata_data::{Catalog, Labeler};
use strata_model::{BatchLimits, TextTokenizer};

use super::model::{CrossEncoder, CrossEncoderConfig, NUM_LABELS, tokenize_pairs};
use super::store::{argmax, for_inference, load_cross_encoder, load_tokenizer, predict};

/// Labels (query, item id) pairs with a cross-encoder over the catalog's item texts
/// (name and taxonomy as the labeler was trained with), in length-sorted batches.
pub struct CrossEncoderLabeler {
    model: CrossEncoder,
    config: CrossEncoderConfig,
    tokenizer: TextTokenizer,
    device: Device,
    name: String,
    fingerprint: u64,
    item_texts: HashMap<String, String>,
    limits: BatchLimits,
    progress: bool,
}

impl CrossEncoderLabeler {
    /// Loads a labeler directory on the CPU, labeling items of `catalog`.
    pub fn load(dir: &Path, catalog: &Catalog) -> anyhow::Result<Self> {
        Self::load_on(dir, catalog, &Device::flex())
    }

    /// Loads a labeler directory onto `device`.
    pub fn load_on(dir: &Path, catalog: &Catalog, device: &Device) -> anyhow::Result<Self> {
        let loaded = load_cross_encoder(dir, device)?;
        let tokenizer = load_tokenizer(&loaded.tokenizer_path, &loaded.config)?;
        Ok(Self::new(
            loaded.model,
            loaded.config,
            tokenizer,
            loaded.fingerprint,
            dir.display().to_string(),
            catalog,
            device.clone(),
        ))
    }

    /// Wraps an in-memory model.
    pub fn new(
        model: CrossEncoder,
        config: CrossEncoderConfig,
        tokenizer: TextTokenizer,
        fingerprint: u64,
        name: String,
        catalog: &Catalog,
        device: Device,
    ) -> Self {
        let item_texts = catalog
            .iter()
            .map(|i| (i.id.clone(), config.item_text.render(i)))
            .collect();
        CrossEncoderLabeler {
            model: for_inference(&model),
            config,
            tokenizer,
            device,
            name,
            fingerprint,
            item_texts,
            limits: BatchLimits {
                max_batch: 64,
                max_tokens: 4096,
            },
            progress: false,
        }
    }

    /// Sets the batch limits.
    pub fn with_limits(mut self, limits: BatchLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Shows a progress bar on stderr for large inputs.
    pub fn with_progress(mut self, progress: bool) -> Self {
        self.progress = progress;
        self
    }

    /// The model's configuration.
    pub fn config(&self) -> &CrossEncoderConfig {
        &self.config
    }

    /// Where the model came from (its directory, or a name given to [`new`](Self::new)).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Hash of the weights.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// Probabilities of levels 0, 1, 2 for (query, item id) pairs; an item id that is not in
    /// the catalog is an error naming the pair.
    pub fn probabilities(&self, pairs: &[(String, String)]) -> anyhow::Result<Vec<[f32; 3]>> {
        let texts = pairs
            .iter()
            .enumerate()
            .map(|(k, (q, id))| {
                self.item_texts
                    .get(id)
                    .map(|t| (q.as_str(), t.as_str()))
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "pair {k} ({q:?}, {id:?}): item {id:?} is not in the labeler's catalog"
                        )
                    })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        self.text_probabilities(&texts)
    }

    /// Probabilities of levels 0, 1, 2 for (query, item text) pairs.
    pub fn text_probabilities(
        &self,
        pairs: &[(&str, &str)],
    ) -> anyhow::Result<Vec<[f32; NUM_LABELS]>> {
        let tokens = tokenize_pairs(&self.tokenizer, pairs)?;
        predict(
            &self.model,
            &self.config,
            self.tokenizer.pad_id(),
            &tokens,
            self.limits,
            &self.device,
            self.progress,
        )
    }
}

impl Labeler for CrossEncoderLabeler {
    fn label(&self, pairs: &[(String, String)]) -> anyhow::Result<Vec<Option<u8>>> {
        let probs = self.probabilities(pairs)?;
        Ok(argmax(&probs).into_iter().map(Some).collect())
    }

    /// The softmax over the three levels, with the most probable level as the label.
    fn label_scored(&self, pairs: &[(String, String)]) -> anyhow::Result<Vec<Option<ScoredLabel>>> {
        let probs = self.probabilities(pairs)?;
        Ok(argmax(&probs)
            .into_iter()
            .zip(probs)
            .map(|(label, probs)| Some(ScoredLabel { label, probs }))
            .collect())
    }

    /// The model is deterministic and always answers, so a confidence threshold over it
    /// holds the same pairs back every time.
    fn abstentions_are_final(&self) -> bool {
        true
    }

    fn identity(&self) -> String {
        // The weights' hash, not the directory, identifies the model: a moved labeler keeps
        // its cache entries.
        format!(
            "cross-encoder fingerprint={:016x} max_len={} pooling={:?} taxonomy={:?}{}",
            self.fingerprint,
            self.config.max_len,
            self.config.pooling,
            self.config.item_text.depth,
            match &self.config.item_text.template {
                Some(t) => format!(" template={}", t.as_str()),
                None => String::new(),
            }
        )
    }
}
