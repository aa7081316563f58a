//! strata's BERT-family encoder: BERT, RoBERTa and XLM-RoBERTa share this module.
//!
//! Field names follow the Hugging Face parameter names (`embeddings.word_embeddings`,
//! `encoder.layer.N.attention.self.query`, ...) so checkpoints load with a few key renames:
//! `self` is a Rust keyword (`self_attn` here) and `LayerNorm` is spelled `layer_norm`.

use burn::module::Module;
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear,
    LinearConfig,
};
use burn::tensor::activation::softmax;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Device, Int, Tensor};

use crate::config::EncoderConfig;

/// Token, position and token-type embeddings followed by layer norm.
#[derive(Module, Debug)]
pub struct Embeddings {
    pub word_embeddings: Embedding,
    pub position_embeddings: Embedding,
    pub token_type_embeddings: Embedding,
    pub layer_norm: LayerNorm,
    pub dropout: Dropout,
}

/// Multi-head self-attention projections (`attention.self` in Hugging Face names).
#[derive(Module, Debug)]
pub struct SelfAttention {
    pub query: Linear,
    pub key: Linear,
    pub value: Linear,
    pub dropout: Dropout,
}

/// Output projection + residual + layer norm (`attention.output` / `output`).
#[derive(Module, Debug)]
pub struct ResidualOutput {
    pub dense: Linear,
    pub layer_norm: LayerNorm,
    pub dropout: Dropout,
}

#[derive(Module, Debug)]
pub struct Attention {
    pub self_attn: SelfAttention,
    pub output: ResidualOutput,
}

#[derive(Module, Debug)]
pub struct Intermediate {
    pub dense: Linear,
}

/// One transformer block.
#[derive(Module, Debug)]
pub struct Layer {
    pub attention: Attention,
    pub intermediate: Intermediate,
    pub output: ResidualOutput,
}

#[derive(Module, Debug)]
pub struct LayerStack {
    pub layer: Vec<Layer>,
}

/// A BERT-family encoder returning the last hidden states.
#[derive(Module, Debug)]
pub struct BertEncoder {
    pub embeddings: Embeddings,
    pub encoder: LayerStack,
    #[module(skip)]
    pub num_heads: usize,
    #[module(skip)]
    pub position_offset: usize,
}

fn residual(cfg: &EncoderConfig, d_in: usize, device: &Device) -> ResidualOutput {
    ResidualOutput {
        dense: LinearConfig::new(d_in, cfg.hidden_size).init(device),
        layer_norm: LayerNormConfig::new(cfg.hidden_size)
            .with_epsilon(cfg.layer_norm_eps)
            .init(device),
        dropout: DropoutConfig::new(cfg.hidden_dropout_prob).init(),
    }
}

impl BertEncoder {
    /// A randomly initialised encoder (weights are normally loaded afterwards).
    pub fn init(cfg: &EncoderConfig, device: &Device) -> Self {
        let h = cfg.hidden_size;
        let layers = (0..cfg.num_hidden_layers)
            .map(|_| Layer {
                attention: Attention {
                    self_attn: SelfAttention {
                        query: LinearConfig::new(h, h).init(device),
                        key: LinearConfig::new(h, h).init(device),
                        value: LinearConfig::new(h, h).init(device),
                        dropout: DropoutConfig::new(cfg.attention_probs_dropout_prob).init(),
                    },
                    output: residual(cfg, h, device),
                },
                intermediate: Intermediate {
                    dense: LinearConfig::new(h, cfg.intermediate_size).init(device),
                },
                output: residual(cfg, cfg.intermediate_size, device),
            })
            .collect();
        BertEncoder {
            embeddings: Embeddings {
                word_embeddings: EmbeddingConfig::new(cfg.vocab_size, h).init(device),
                position_embeddings: EmbeddingConfig::new(cfg.max_position_embeddings, h)
                    .init(device),
                token_type_embeddings: EmbeddingConfig::new(cfg.type_vocab_size, h).init(device),
                layer_norm: LayerNormConfig::new(h)
                    .with_epsilon(cfg.layer_norm_eps)
                    .init(device),
                dropout: DropoutConfig::new(cfg.hidden_dropout_prob).init(),
            },
            encoder: LayerStack { layer: layers },
            num_heads: cfg.num_attention_heads,
            position_offset: cfg.position_offset(),
        }
    }

    /// Sets every dropout probability: `hidden` for the embeddings and residual outputs,
    /// `attention` for the attention probabilities.
    pub fn set_dropout(&mut self, hidden: f64, attention: f64) {
        self.embeddings.dropout.prob = hidden;
        for l in &mut self.encoder.layer {
            l.attention.self_attn.dropout.prob = attention;
            l.attention.output.dropout.prob = hidden;
            l.output.dropout.prob = hidden;
        }
    }

    /// Hidden size of the encoder.
    pub fn hidden_size(&self) -> usize {
        self.embeddings.word_embeddings.weight.dims()[1]
    }

    /// Runs the encoder. `ids`: `[batch, len]` token ids; `mask`: `[batch, len]` with 1.0 for
    /// real tokens and 0.0 for padding. Returns the last hidden states `[batch, len, hidden]`.
    pub fn forward(&self, ids: Tensor<2, Int>, mask: Tensor<2>) -> Tensor<3> {
        self.forward_typed(ids, None, mask)
    }

    /// As [`forward`](Self::forward), with `[batch, len]` token type ids (segment A = 0,
    /// segment B = 1) for a pair of texts in one sequence; `None` gives every token type 0.
    pub fn forward_typed(
        &self,
        ids: Tensor<2, Int>,
        token_types: Option<Tensor<2, Int>>,
        mask: Tensor<2>,
    ) -> Tensor<3> {
        let [batch, len] = ids.dims();
        let h = self.hidden_size();
        let emb = &self.embeddings;
        let words = emb.word_embeddings.forward(ids);
        let positions = emb
            .position_embeddings
            .weight
            .val()
            .narrow(0, self.position_offset, len)
            .unsqueeze_dim::<3>(0);
        let token_type = match token_types {
            Some(types) => emb.token_type_embeddings.forward(types),
            None => emb
                .token_type_embeddings
                .weight
                .val()
                .narrow(0, 0, 1)
                .unsqueeze_dim::<3>(0),
        };
        let mut x = emb
            .dropout
            .forward(emb.layer_norm.forward(words + positions + token_type));

        // Keys that are padding are masked out of every query's attention.
        let pad: Tensor<4, Bool> = mask
            .clone()
            .lower_elem(0.5)
            .reshape([batch, 1, 1, len])
            .expand([batch, self.num_heads, len, len]);
        for layer in &self.encoder.layer {
            x = layer.forward(x, pad.clone(), self.num_heads, h);
        }
        x
    }
}

impl Layer {
    fn forward(&self, x: Tensor<3>, pad: Tensor<4, Bool>, heads: usize, h: usize) -> Tensor<3> {
        let [batch, len, _] = x.dims();
        let hd = h / heads;
        let sa = &self.attention.self_attn;
        let split = |t: Tensor<3>| t.reshape([batch, len, heads, hd]).swap_dims(1, 2);
        let q = split(sa.query.forward(x.clone()));
        let k = split(sa.key.forward(x.clone()));
        let v = split(sa.value.forward(x.clone()));
        let training = sa.dropout.prob > 0.0 && x.device().is_autodiff();
        let ctx = if training {
            // Explicit attention so that dropout applies to the attention probabilities.
            let scores = q.matmul(k.swap_dims(2, 3)) * (1.0 / (hd as f64).sqrt());
            let scores = scores.mask_fill(pad, -1.0e9);
            let probs = sa.dropout.forward(softmax(scores, 3));
            probs.matmul(v)
        } else {
            attention(q, k, v, Some(pad), None, AttentionModuleOptions::default())
        };
        let ctx = ctx.swap_dims(1, 2).reshape([batch, len, h]);
        let out = &self.attention.output;
        let x = out
            .layer_norm
            .forward(out.dropout.forward(out.dense.forward(ctx)) + x);
        let inter = crate::kernels::gelu(self.intermediate.dense.forward(x.clone()));
        let out = &self.output;
        out.layer_norm
            .forward(out.dropout.forward(out.dense.forward(inter)) + x)
    }
}

/// Mean of the hidden states over real tokens: `[batch, len, hidden]` -> `[batch, hidden]`.
pub fn mean_pool(hidden: Tensor<3>, mask: Tensor<2>) -> Tensor<2> {
    let [batch, len, h] = hidden.dims();
    let m = mask.reshape([batch, len, 1]);
    let summed = (hidden * m.clone()).sum_dim(1).reshape([batch, h]);
    let counts = m.sum_dim(1).reshape([batch, 1]).clamp_min(1e-9);
    summed / counts
}

/// Scales each row to unit L2 norm.
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x
        .clone()
        .powf_scalar(2.0)
        .sum_dim(1)
        .sqrt()
        .clamp_min(1e-12);
    x / norm
}
