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
    /// The item text the model was trained with (written by the trainer): evaluation,
    /// indexing and mining with this model render items this way unless told otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_text: Option<strata_data::ItemTextConfig>,
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

/// How the projection heads of a model built from a Hugging Face folder start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeadInit {
    /// Both heads from one random linear map (burn's default initialisation).
    #[default]
    Random,
    /// Both heads the identity (weight I, bias 0): the new model's embeddings equal the
    /// pretrained encoder's, and training starts from its geometry. Needs square heads
    /// (projection dimension = the encoder's hidden size).
    Identity,
}

impl std::str::FromStr for HeadInit {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "random" => Ok(HeadInit::Random),
            "identity" => Ok(HeadInit::Identity),
            _ => Err(format!(
                "unknown head initialisation {s:?} (expected random or identity)"
            )),
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
        let item_encoder = cfg
            .asymmetric
            .then(|| BertEncoder::init(&cfg.encoder, device));
        let (query_head, item_head) = match cfg.projection_dim {
            None => (None, None),
            Some(d) => {
                let q = LinearConfig::new(cfg.encoder.hidden_size, d).init(device);
                let i = fresh_copy(&q);
                (Some(q), Some(i))
            }
        };
        TwoTower {
            encoder,
            item_encoder,
            query_head,
            item_head,
        }
    }

    /// Sets both projection heads to the identity ([`HeadInit::Identity`]). An error when the
    /// model has no heads or they are not square.
    pub fn set_identity_heads(&mut self) -> anyhow::Result<()> {
        for head in [&mut self.query_head, &mut self.item_head] {
            let Some(h) = head else {
                anyhow::bail!(
                    "identity projection heads (head_init = identity) need projection heads"
                );
            };
            let [d_in, d_out] = h.weight.val().dims();
            anyhow::ensure!(
                d_in == d_out,
                "identity projection heads (head_init = identity) must be square: the projection \
                 dimension is {d_out}, the encoder's hidden size {d_in}"
            );
            let device = h.weight.val().device();
            *h = Linear {
                weight: Param::from_tensor(Tensor::eye(d_in, &device)),
                bias: Some(Param::from_tensor(Tensor::zeros([d_out], &device))),
            };
        }
        Ok(())
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
/// distinct parameters) and, on an autodiff device, are new leaves of the graph (so each copy
/// receives only its own gradient), with the same values.
pub fn fresh_copy<M: Module>(m: &M) -> M {
    struct Fresh;
    impl ModuleMapper for Fresh {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            Param::from_tensor(param.val().detach())
        }
    }
    m.clone().map(&mut Fresh)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    fn tiny(asymmetric: bool, projection_dim: Option<usize>) -> TowerConfig {
        TowerConfig {
            encoder: EncoderConfig::tiny(50),
            projection_dim,
            asymmetric,
            query_prefix: String::new(),
            item_prefix: String::new(),
            max_len: 16,
            base_model: "tiny".into(),
            item_text: None,
        }
    }

    fn batch(device: &Device) -> (Tensor<2, Int>, Tensor<2>) {
        let ids = vec![2i64, 7, 9, 3, 0, 2, 11, 12, 13, 3, 2, 5, 3, 0, 0];
        let mask: Vec<f32> = ids
            .iter()
            .map(|&i| if i == 0 { 0.0 } else { 1.0 })
            .collect();
        (
            Tensor::from_data(TensorData::new(ids, [3, 5]), device),
            Tensor::from_data(TensorData::new(mask, [3, 5]), device),
        )
    }

    /// InfoNCE (temperature 0.1, over rows) of the fixture batch's queries against its texts
    /// rolled by one as items: a loss that depends on every output coordinate of both towers
    /// and is not symmetric in them (with the same texts on both sides, identical towers
    /// would make a symmetric loss constant).
    fn rolled_infonce(model: &TwoTower, device: &Device) -> Tensor<1> {
        let (ids, mask) = batch(device);
        let roll = Tensor::<1, Int>::from_data(TensorData::new(vec![1i64, 2, 0], [3]), device);
        let q = model.embed(Side::Query, ids.clone(), mask.clone());
        let d = model.embed(
            Side::Item,
            ids.select(0, roll.clone()),
            mask.select(0, roll),
        );
        let sim = q.matmul(d.transpose()) / 0.1;
        -(burn::tensor::activation::log_softmax(sim, 1) * Tensor::<2>::eye(3, device)).sum()
    }

    fn assert_all_params_get_gradients(cfg: TowerConfig) {
        let device = Device::flex().autodiff();
        device.seed(7);
        let model = TwoTower::init(&cfg, &device);
        let grads = rolled_infonce(&model, &device).backward();
        let (seen, missing) = strata_testkit::params_without_gradient(&model, &grads);
        assert!(seen > 10, "visited only {} parameters", seen);
        assert!(missing.is_empty(), "no gradient for: {:?}", missing);
    }

    /// The two heads start equal but are distinct leaves: each gets only its side's gradient
    /// (tied, both would get the sum of the two).
    #[test]
    fn the_heads_get_their_own_gradients_from_the_first_step() {
        let device = Device::flex().autodiff();
        device.seed(7);
        let model = TwoTower::init(&tiny(false, Some(8)), &device);
        let grads = rolled_infonce(&model, &device).backward();
        let grad = |h: &Option<Linear>| {
            h.as_ref()
                .unwrap()
                .weight
                .val()
                .grad(&grads)
                .unwrap()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
        };
        let (gq, gi) = (grad(&model.query_head), grad(&model.item_head));
        let norm = |g: &[f32]| g.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!(
            norm(&gq) > 1e-3 && norm(&gi) > 1e-3,
            "{} {}",
            norm(&gq),
            norm(&gi)
        );
        let diff: f32 = gq.iter().zip(&gi).map(|(a, b)| (a - b).abs()).sum();
        assert!(
            diff > 1e-3,
            "the heads got the same gradient: they are tied"
        );
    }

    #[test]
    fn every_parameter_receives_a_gradient_siamese() {
        assert_all_params_get_gradients(tiny(false, Some(8)));
    }

    #[test]
    fn every_parameter_receives_a_gradient_asymmetric() {
        assert_all_params_get_gradients(tiny(true, Some(8)));
    }

    #[test]
    fn embeddings_are_normalised_and_heads_start_identical() {
        let device = Device::flex();
        let model = TwoTower::init(&tiny(false, Some(8)), &device);
        let (ids, mask) = batch(&device);
        let q = model.embed(Side::Query, ids.clone(), mask.clone());
        let d = model.embed(Side::Item, ids, mask);
        assert_eq!(q.dims(), [3, 8]);
        let norms = q
            .clone()
            .powf_scalar(2.0)
            .sum_dim(1)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        for n in norms {
            assert!((n - 1.0).abs() < 1e-5);
        }
        let diff = (q - d).abs().max().into_scalar::<f32>();
        assert!(diff < 1e-6, "heads differ at init by {diff}");
    }

    #[test]
    fn identity_heads_keep_the_encoders_embeddings_and_get_gradients() {
        let device = Device::flex();
        device.seed(3);
        let plain = TwoTower::init(&tiny(false, None), &device);
        let hidden = EncoderConfig::tiny(50).hidden_size;
        let mut headed = TwoTower::init(&tiny(false, Some(hidden)), &device);
        headed.encoder = plain.encoder.clone();
        let (ids, mask) = batch(&device);
        let random = headed.embed(Side::Query, ids.clone(), mask.clone());
        headed.set_identity_heads().unwrap();
        for side in [Side::Query, Side::Item] {
            let a = plain.embed(side, ids.clone(), mask.clone());
            let b = headed.embed(side, ids.clone(), mask.clone());
            let diff = (a.clone() - b).abs().max().into_scalar::<f32>();
            assert!(
                diff < 1e-6,
                "{side:?}: identity heads changed embeddings by {diff}"
            );
            if side == Side::Query {
                let moved = (a - random.clone()).abs().max().into_scalar::<f32>();
                assert!(moved > 1e-3, "the random heads were already the identity");
            }
        }
        let err = TwoTower::init(&tiny(false, Some(8)), &device)
            .set_identity_heads()
            .unwrap_err()
            .to_string();
        assert!(err.contains("square"), "{err}");
        let err = plain.clone().set_identity_heads().unwrap_err().to_string();
        assert!(err.contains("need projection heads"), "{err}");

        let ad = Device::flex().autodiff();
        ad.seed(7);
        let mut model = TwoTower::init(&tiny(false, Some(hidden)), &ad);
        model.set_identity_heads().unwrap();
        let grads = rolled_infonce(&model, &ad).backward();
        let (_, missing) = strata_testkit::params_without_gradient(&model, &grads);
        assert!(missing.is_empty(), "no gradient for: {:?}", missing);
    }

    #[test]
    fn padding_does_not_change_an_embedding() {
        let device = Device::flex();
        let model = TwoTower::init(&tiny(false, None), &device);
        let alone = model.embed(
            Side::Query,
            Tensor::from_data(TensorData::new(vec![2i64, 7, 9, 3], [1, 4]), &device),
            Tensor::from_data(TensorData::new(vec![1f32; 4], [1, 4]), &device),
        );
        let (ids, mask) = batch(&device);
        let in_batch = model.embed(Side::Query, ids, mask).narrow(0, 0, 1);
        let diff = (alone - in_batch).abs().max().into_scalar::<f32>();
        assert!(diff < 1e-5, "padding changed the embedding by {diff}");
    }
}
