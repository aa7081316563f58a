//! The encoder's architecture, read from a Hugging Face `config.json`.

use std::path::Path;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// Which family of BERT-style encoder a checkpoint belongs to. The families differ in where
/// position ids start (XLM-RoBERTa and RoBERTa count from `pad_token_id + 1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EncoderFamily {
    Bert,
    Roberta,
    XlmRoberta,
}

/// Architecture hyper-parameters of a BERT-family encoder (the subset of `config.json` used).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EncoderConfig {
    pub family: EncoderFamily,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    pub pad_token_id: usize,
    pub hidden_dropout_prob: f64,
    pub attention_probs_dropout_prob: f64,
}

#[derive(Deserialize)]
struct HfConfig {
    model_type: Option<String>,
    vocab_size: Option<usize>,
    hidden_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    intermediate_size: Option<usize>,
    max_position_embeddings: Option<usize>,
    type_vocab_size: Option<usize>,
    layer_norm_eps: Option<f64>,
    pad_token_id: Option<usize>,
    hidden_act: Option<String>,
    hidden_dropout_prob: Option<f64>,
    attention_probs_dropout_prob: Option<f64>,
    position_embedding_type: Option<String>,
}

impl EncoderConfig {
    /// Reads and validates a Hugging Face `config.json`.
    pub fn from_hf_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read model config {}", path.display()))?;
        Self::from_hf_json(&text)
            .with_context(|| format!("invalid model config {}", path.display()))
    }

    /// Parses a Hugging Face `config.json` document.
    pub fn from_hf_json(text: &str) -> anyhow::Result<Self> {
        let hf: HfConfig = serde_json::from_str(text).context("config.json is not valid JSON")?;
        let model_type = hf.model_type.as_deref().unwrap_or("bert");
        let family = match model_type {
            "bert" => EncoderFamily::Bert,
            "roberta" => EncoderFamily::Roberta,
            "xlm-roberta" => EncoderFamily::XlmRoberta,
            other => bail!(
                "field `model_type`: unsupported model type {other:?} (strata supports bert, roberta, xlm-roberta)"
            ),
        };
        if let Some(act) = hf.hidden_act.as_deref()
            && act != "gelu"
        {
            bail!("field `hidden_act`: unsupported activation {act:?} (strata supports gelu)");
        }
        if let Some(p) = hf.position_embedding_type.as_deref()
            && p != "absolute"
        {
            bail!(
                "field `position_embedding_type`: unsupported value {p:?} (strata supports absolute)"
            );
        }
        fn req(v: Option<usize>, name: &str) -> anyhow::Result<usize> {
            match v {
                Some(0) => bail!("field `{name}` must be positive"),
                Some(v) => Ok(v),
                None => bail!("missing field `{name}`"),
            }
        }
        let cfg = EncoderConfig {
            family,
            vocab_size: req(hf.vocab_size, "vocab_size")?,
            hidden_size: req(hf.hidden_size, "hidden_size")?,
            num_hidden_layers: req(hf.num_hidden_layers, "num_hidden_layers")?,
            num_attention_heads: req(hf.num_attention_heads, "num_attention_heads")?,
            intermediate_size: req(hf.intermediate_size, "intermediate_size")?,
            max_position_embeddings: req(hf.max_position_embeddings, "max_position_embeddings")?,
            type_vocab_size: hf.type_vocab_size.unwrap_or(2).max(1),
            layer_norm_eps: hf.layer_norm_eps.unwrap_or(1e-12),
            pad_token_id: hf.pad_token_id.unwrap_or(match family {
                EncoderFamily::Bert => 0,
                _ => 1,
            }),
            hidden_dropout_prob: hf.hidden_dropout_prob.unwrap_or(0.1),
            attention_probs_dropout_prob: hf.attention_probs_dropout_prob.unwrap_or(0.1),
        };
        if !cfg.hidden_size.is_multiple_of(cfg.num_attention_heads) {
            bail!(
                "field `hidden_size` ({}) is not a multiple of `num_attention_heads` ({})",
                cfg.hidden_size,
                cfg.num_attention_heads
            );
        }
        Ok(cfg)
    }

    /// Writes the config back in Hugging Face form (for exported folders).
    pub fn to_hf_json(&self) -> serde_json::Value {
        let (model_type, arch) = match self.family {
            EncoderFamily::Bert => ("bert", "BertModel"),
            EncoderFamily::Roberta => ("roberta", "RobertaModel"),
            EncoderFamily::XlmRoberta => ("xlm-roberta", "XLMRobertaModel"),
        };
        serde_json::json!({
            "architectures": [arch],
            "model_type": model_type,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "intermediate_size": self.intermediate_size,
            "max_position_embeddings": self.max_position_embeddings,
            "type_vocab_size": self.type_vocab_size,
            "layer_norm_eps": self.layer_norm_eps,
            "pad_token_id": self.pad_token_id,
            "hidden_act": "gelu",
            "hidden_dropout_prob": self.hidden_dropout_prob,
            "attention_probs_dropout_prob": self.attention_probs_dropout_prob,
            "position_embedding_type": "absolute",
            "initializer_range": 0.02,
        })
    }

    /// First position id of a sequence (RoBERTa-style models offset by the padding index).
    pub fn position_offset(&self) -> usize {
        match self.family {
            EncoderFamily::Bert => 0,
            EncoderFamily::Roberta | EncoderFamily::XlmRoberta => self.pad_token_id + 1,
        }
    }

    /// Longest input (in tokens) the position table allows.
    pub fn max_input_tokens(&self) -> usize {
        self.max_position_embeddings - self.position_offset()
    }

    /// A tiny configuration for unit tests.
    pub fn tiny(vocab_size: usize) -> Self {
        EncoderConfig {
            family: EncoderFamily::Bert,
            vocab_size,
            hidden_size: 32,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            intermediate_size: 64,
            max_position_embeddings: 64,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            pad_token_id: 0,
            hidden_dropout_prob: 0.0,
            attention_probs_dropout_prob: 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_minilm_style_config() {
        let c = EncoderConfig::from_hf_json(
            r#"{"model_type":"bert","vocab_size":30522,"hidden_size":384,"num_hidden_layers":6,
               "num_attention_heads":12,"intermediate_size":1536,"max_position_embeddings":512,
               "type_vocab_size":2,"layer_norm_eps":1e-12,"pad_token_id":0,"hidden_act":"gelu"}"#,
        )
        .unwrap();
        assert_eq!(c.family, EncoderFamily::Bert);
        assert_eq!(c.position_offset(), 0);
        assert_eq!(c.max_input_tokens(), 512);
        let round = EncoderConfig::from_hf_json(&c.to_hf_json().to_string()).unwrap();
        assert_eq!(round, c);
    }

    #[test]
    fn xlm_roberta_offsets_positions() {
        let c = EncoderConfig::from_hf_json(
            r#"{"model_type":"xlm-roberta","vocab_size":250002,"hidden_size":384,"num_hidden_layers":12,
               "num_attention_heads":12,"intermediate_size":1536,"max_position_embeddings":514,
               "type_vocab_size":1,"pad_token_id":1}"#,
        )
        .unwrap();
        assert_eq!(c.position_offset(), 2);
        assert_eq!(c.max_input_tokens(), 512);
    }

    #[test]
    fn rejects_bad_configs_naming_the_field() {
        let e = EncoderConfig::from_hf_json(r#"{"model_type":"gpt2"}"#).unwrap_err();
        assert!(format!("{e:#}").contains("model_type"), "{e:#}");
        let e =
            EncoderConfig::from_hf_json(r#"{"model_type":"bert","vocab_size":10}"#).unwrap_err();
        assert!(format!("{e:#}").contains("hidden_size"), "{e:#}");
        let e = EncoderConfig::from_hf_json("{not json").unwrap_err();
        assert!(format!("{e:#}").contains("JSON"), "{e:#}");
    }
}
