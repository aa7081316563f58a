//! The two-tower retriever of paper section 4.1: a Siamese encoder (one shared BERT) with
//! separate query and item projection heads, mean pooling and L2 normalisation. The
//! asymmetric variant unties the encoders (an item encoder of its own) for the ablation.

use burn::module::{Module, ModuleMapper, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::bert::{BertEncoder, l2_normalize, mean_pool};
use crate::config::EncoderConfig;
pub use strata_data::Side;

/// Everything needed to rebuild a [`TwoTower`] (saved as `strata.json` in a model directory).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TowerConfig {
    /// Architecture of the (shared) encoder.
    pub encoder: EncoderConfig,
    /// Output dimension of the projection heads; `None` keeps the encoder's dimension and
    /// uses no head.
    pub projection_dim: Option<usize>,
    /// Untied query and item encoders (the ablation of paper Table 1/4).
    #[serde(default)]
    pub asymmetric: bool,
    /// Text prepended to every query (e5 models want "query: ").
    #[serde(default)]
    pub query_prefix: String,
    /// Text prepended to every item (e5 models want "passage: ").
    #[serde(default)]
    pub item_prefix: String,
    /// Truncation length in tokens (including special tokens).
    pub max_len: usize,
    /// Where the encoder weights came from (recorded for reports).
    #[serde(default)]
    pub base_model: String,
}

impl TowerConfig {
    /// Output dimension of the embeddings.
    pub fn dim(&self) -> usize {
        self.projection_dim.unwrap_or(self.encoder.hidden_size)
    }

    /// The text prefix of a side.
    pub fn prefix(&self, side: Side) -> &str {
        match side {
            Side::Query => &self.query_prefix,
            Side::Item => &self.item_prefix,
        }
    }
}

/// The two-tower model.
#[derive(Module, Debug)]
pub struct TwoTower {
    /// The shared encoder (the query encoder in the asymmetric variant).
    pub encoder: BertEncoder,
    /// The item encoder of the asymmetric variant.
    pub item_encoder: Option<BertEncoder>,
    pub query_head: Option<Linear>,
    pub item_head: Option<Linear>,
}

impl TwoTower {
    /// A model with random weights. Both heads start from the same random projection so that
    /// query and item embeddings begin in one space (a pretrained encoder's similarities are
    /// approximately preserved by a shared random projection, not by two different ones).
    pub fn init(cfg: &TowerConfig, device: &Device) -> Self {
        let encoder = BertEncoder::init(&cfg.encoder, device);
        let item_encoder = cfg.asymmetric.then(|| BertEncoder::init(&cfg.encoder, device));
        let (query_head, item_head) = match cfg.projection_dim {
            None => (None, None),
            Some(d) => {
                let q = LinearConfig::new(cfg.encoder.hidden_size, d).init(device);
                let i = fresh_copy(&q);
                (Some(q), Some(i))
            }
        };
        TwoTower { encoder, item_encoder, query_head, item_head }
    }

    /// Makes the asymmetric variant's item encoder an independent copy of the shared encoder
    /// (used when one pretrained checkpoint initialises both towers).
    pub fn copy_encoder_to_item_encoder(mut self) -> Self {
        if self.item_encoder.is_some() {
            self.item_encoder = Some(fresh_copy(&self.encoder));
        }
        self
    }

    /// Pooled, projected, L2-normalised embeddings `[batch, dim]` of one side.
    pub fn embed(&self, side: Side, ids: Tensor<2, Int>, mask: Tensor<2>) -> Tensor<2> {
        let pooled = self.pooled(side, ids, mask);
        l2_normalize(self.project(side, pooled))
    }

    /// Mean-pooled encoder output `[batch, hidden]` (before the head).
    pub fn pooled(&self, side: Side, ids: Tensor<2, Int>, mask: Tensor<2>) -> Tensor<2> {
        let enc = match (side, &self.item_encoder) {
            (Side::Item, Some(e)) => e,
            _ => &self.encoder,
        };
        mean_pool(enc.forward(ids, mask.clone()), mask)
    }

    /// Applies the side's projection head (identity without one).
    pub fn project(&self, side: Side, pooled: Tensor<2>) -> Tensor<2> {
        let head = match side {
            Side::Query => &self.query_head,
            Side::Item => &self.item_head,
        };
        match head {
            Some(h) => h.forward(pooled),
            None => pooled,
        }
    }
}

/// A copy of a module whose parameters have new identities (so an optimizer treats them as
/// distinct parameters), with the same values.
pub fn fresh_copy<M: Module>(m: &M) -> M {
    struct Fresh;
    impl ModuleMapper for Fresh {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            Param::from_tensor(param.val())
        }
    }
    m.clone().map(&mut Fresh)
}
