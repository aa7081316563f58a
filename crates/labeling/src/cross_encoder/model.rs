//! The cross-encoder: a BERT-family encoder over `[CLS] query [SEP] item [SEP]` (token types
//! 0 then 1), attention-mask aware pooling, dropout and a linear head over the three
//! relevance levels.
//!
//! Field names make the saved keys those of Hugging Face's `BertForSequenceClassification`
//! (`bert.embeddings...`, `classifier.weight`); the pooling differs (see [`Pooling`]).

use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use strata_data::{ItemTextConfig, TaxonomyDepth};
use strata_model::bert::{BertEncoder, mean_pool};
use strata_model::{EncoderConfig, TextTokenizer};

/// Number of relevance levels the head predicts (0, 1, 2).
pub const NUM_LABELS: usize = 3;

/// How the encoder's hidden states become one vector per pair.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Mean over real tokens (padding excluded), as the sentence-transformers encoders were
    /// pretrained.
    #[default]
    Mean,
    /// The hidden state of the first token (`[CLS]`).
    Cls,
}

impl std::str::FromStr for Pooling {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "mean" => Ok(Pooling::Mean),
            "cls" => Ok(Pooling::Cls),
            other => Err(format!("unknown pooling {other:?} (expected mean or cls)")),
        }
    }
}

/// Everything needed to rebuild a [`CrossEncoder`] and feed it (saved as `labeler.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "StoredConfig")]
pub struct CrossEncoderConfig {
    /// Architecture of the encoder.
    pub encoder: EncoderConfig,
    /// Truncation length of a pair in tokens, special tokens included (longest-first).
    pub max_len: usize,
    /// Pooling of the hidden states.
    #[serde(default)]
    pub pooling: Pooling,
    /// Dropout before the head while training.
    pub head_dropout: f64,
    /// The item text the labeler reads (recorded in `labeler.json`; the labeler renders the
    /// catalog's items with it).
    pub item_text: ItemTextConfig,
    /// Where the encoder weights came from.
    #[serde(default)]
    pub base_model: String,
}

/// `labeler.json` as read: labelers written before the item text was one type recorded a
/// `taxonomy_depth` instead.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredConfig {
    encoder: EncoderConfig,
    max_len: usize,
    #[serde(default)]
    pooling: Pooling,
    head_dropout: f64,
    item_text: Option<ItemTextConfig>,
    taxonomy_depth: Option<TaxonomyDepth>,
    #[serde(default)]
    base_model: String,
}

impl TryFrom<StoredConfig> for CrossEncoderConfig {
    type Error = String;
    fn try_from(c: StoredConfig) -> Result<Self, String> {
        let item_text = match (c.item_text, c.taxonomy_depth) {
            (Some(t), None) => t,
            (None, Some(depth)) => ItemTextConfig {
                depth,
                template: None,
            },
            (None, None) => return Err("missing field `item_text`".into()),
            (Some(_), Some(_)) => {
                return Err("give `item_text` or the older `taxonomy_depth`, not both".into());
            }
        };
        Ok(CrossEncoderConfig {
            encoder: c.encoder,
            max_len: c.max_len,
            pooling: c.pooling,
            head_dropout: c.head_dropout,
            item_text,
            base_model: c.base_model,
        })
    }
}

/// The cross-encoder labeler model.
#[derive(Module, Debug)]
pub struct CrossEncoder {
    /// The encoder (`bert.*` keys).
    pub bert: BertEncoder,
    /// Dropout on the pooled vector.
    pub dropout: Dropout,
    /// Linear head `hidden -> 3` (`classifier.*` keys).
    pub classifier: Linear,
}

impl CrossEncoder {
    /// A randomly initialised model (the encoder is normally loaded afterwards).
    pub fn init(cfg: &CrossEncoderConfig, device: &Device) -> Self {
        CrossEncoder {
            bert: BertEncoder::init(&cfg.encoder, device),
            dropout: DropoutConfig::new(cfg.head_dropout).init(),
            classifier: LinearConfig::new(cfg.encoder.hidden_size, NUM_LABELS).init(device),
        }
    }

    /// Replaces the head with a seeded one: weights uniform in `±1/sqrt(hidden)` (PyTorch's
    /// `Linear` default) from strata's own generator, bias 0. Unlike the device's random
    /// source, which is shared by the whole process, the draw depends on `seed` alone.
    pub fn with_seeded_head(mut self, seed: u64, device: &Device) -> Self {
        let hidden = self.bert.hidden_size();
        let bound = 1.0 / (hidden as f64).sqrt();
        let mut rng = strata_data::hash::Rng::stream(seed, 0x4845_4144);
        let w: Vec<f32> = (0..hidden * NUM_LABELS)
            .map(|_| ((rng.unit() * 2.0 - 1.0) * bound) as f32)
            .collect();
        self.classifier.weight = Param::from_tensor(Tensor::from_data(
            TensorData::new(w, [hidden, NUM_LABELS]),
            device,
        ));
        self.classifier.bias = Some(Param::from_tensor(Tensor::zeros([NUM_LABELS], device)));
        self
    }

    /// Logits `[batch, 3]` of a padded batch of pairs.
    pub fn forward(&self, batch: &PairBatch, pooling: Pooling, device: &Device) -> Tensor<2> {
        let shape = [batch.batch, batch.len];
        let ids = Tensor::<2, Int>::from_data(TensorData::new(batch.ids.clone(), shape), device);
        let types =
            Tensor::<2, Int>::from_data(TensorData::new(batch.type_ids.clone(), shape), device);
        let mask = Tensor::<2>::from_data(TensorData::new(batch.mask.clone(), shape), device);
        let hidden = self.bert.forward_typed(ids, Some(types), mask.clone());
        let pooled = match pooling {
            Pooling::Mean => mean_pool(hidden, mask),
            Pooling::Cls => {
                let [b, _, h] = hidden.dims();
                hidden.narrow(1, 0, 1).reshape([b, h])
            }
        };
        self.classifier.forward(self.dropout.forward(pooled))
    }

    /// Class probabilities `[batch, 3]` of a padded batch of pairs.
    pub fn probabilities(&self, batch: &PairBatch, pooling: Pooling, device: &Device) -> Tensor<2> {
        softmax(self.forward(batch, pooling, device), 1)
    }
}

/// A tokenized (query, item text) pair.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PairTokens {
    /// Token ids.
    pub ids: Vec<u32>,
    /// Token type ids (0 query, 1 item).
    pub type_ids: Vec<u32>,
}

impl PairTokens {
    /// Tokenizes one pair.
    pub fn new(tokenizer: &TextTokenizer, query: &str, item: &str) -> anyhow::Result<Self> {
        let (ids, type_ids) = tokenizer.pair_ids_with_types(query, item)?;
        Ok(PairTokens { ids, type_ids })
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// Tokenizes many pairs in parallel.
pub fn tokenize_pairs(
    tokenizer: &TextTokenizer,
    pairs: &[(&str, &str)],
) -> anyhow::Result<Vec<PairTokens>> {
    use rayon::prelude::*;
    pairs
        .par_iter()
        .map(|(q, d)| PairTokens::new(tokenizer, q, d))
        .collect()
}

/// Pairs padded to the longest of them (row-major `[batch, len]`).
#[derive(Clone, Debug, PartialEq)]
pub struct PairBatch {
    pub ids: Vec<i64>,
    pub type_ids: Vec<i64>,
    pub mask: Vec<f32>,
    pub batch: usize,
    pub len: usize,
}

impl PairBatch {
    /// Pads `pairs` with `pad_id` (dynamic padding: to the batch's longest pair).
    pub fn pad(pairs: &[&PairTokens], pad_id: u32) -> Self {
        let len = pairs.iter().map(|p| p.len()).max().unwrap_or(0).max(1);
        let batch = pairs.len();
        let mut ids = vec![i64::from(pad_id); batch * len];
        let mut type_ids = vec![0i64; batch * len];
        let mut mask = vec![0f32; batch * len];
        for (row, p) in pairs.iter().enumerate() {
            for (j, (&t, &ty)) in p.ids.iter().zip(&p.type_ids).enumerate() {
                ids[row * len + j] = i64::from(t);
                type_ids[row * len + j] = i64::from(ty);
                mask[row * len + j] = 1.0;
            }
        }
        PairBatch {
            ids,
            type_ids,
            mask,
            batch,
            len,
        }
    }
}
