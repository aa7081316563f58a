//! Fixtures shared by strata's tests (a `publish = false` crate, used as a dev-dependency):
//!
//! - [`default_model`]: the real default model (all-MiniLM-L6-v2) that `scripts/setup.sh`
//!   installs. Tests that need it fail loudly, with how to install it, when it is missing;
//!   they never skip.
//! - [`word_tokenizer_json`] / [`word_tokenizer`]: a BERT-style word-level tokenizer over any
//!   vocabulary (`[PAD]` 0, `[UNK]` 1, `[CLS]` 2, `[SEP]` 3, then the words; lower-cased,
//!   split on whitespace; pairs get BERT segments).
//! - [`tiny_tower`]: the tiny two-tower configuration random test models use.

use std::path::PathBuf;

use strata_model::{EncoderConfig, TextTokenizer, TowerConfig};

/// Colours of the fixture catalogs: `COLOURS` x `THINGS` make item titles, queries name both.
pub const COLOURS: [&str; 6] = ["red", "blue", "green", "white", "black", "gray"];
/// Things of the fixture catalogs.
pub const THINGS: [&str; 6] = ["drill", "hammer", "saw", "lamp", "chair", "rope"];
/// Extra title words of the fixture catalogs.
pub const EXTRA: [&str; 6] = ["cordless", "steel", "heavy", "duty", "pro", "set"];

/// The fixture vocabulary: colours, things and extra words.
pub fn fixture_words() -> Vec<&'static str> {
    COLOURS
        .iter()
        .chain(&THINGS)
        .chain(&EXTRA)
        .copied()
        .collect()
}

/// The default model installed by `scripts/setup.sh` (`$STRATA_MODELS` or `<repo>/models`);
/// panics with how to install it when it is missing.
pub fn default_model() -> PathBuf {
    let base = std::env::var_os("STRATA_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models"));
    let dir = base.join("all-MiniLM-L6-v2");
    assert!(
        dir.join("model.safetensors").is_file(),
        "default model missing at {}: run scripts/setup.sh",
        dir.display()
    );
    dir
}

/// The number of ids of [`word_tokenizer_json`] over `words`.
pub fn vocab_size(words: &[&str]) -> usize {
    4 + words.len()
}

/// `tokenizer.json` text of a word-level tokenizer over `words` (see the crate docs).
pub fn word_tokenizer_json(words: &[&str]) -> String {
    let vocab: serde_json::Map<String, serde_json::Value> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
        .iter()
        .chain(words)
        .enumerate()
        .map(|(i, w)| (w.to_string(), serde_json::Value::from(i)))
        .collect();
    let special = |id: u32, content: &str| {
        serde_json::json!({"id": id, "content": content, "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true})
    };
    let cls = |t: u32| serde_json::json!({"SpecialToken": {"id": "[CLS]", "type_id": t}});
    let sep = |t: u32| serde_json::json!({"SpecialToken": {"id": "[SEP]", "type_id": t}});
    let seq = |id: &str, t: u32| serde_json::json!({"Sequence": {"id": id, "type_id": t}});
    serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [special(0, "[PAD]"), special(1, "[UNK]"), special(2, "[CLS]"), special(3, "[SEP]")],
        "normalizer": {"type": "Lowercase"},
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [cls(0), seq("A", 0), sep(0)],
            "pair": [cls(0), seq("A", 0), sep(0), seq("B", 1), sep(1)],
            "special_tokens": {
                "[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]},
                "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}
            }
        },
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"}
    })
    .to_string()
}

/// The tokenizer of [`word_tokenizer_json`], truncating at `max_len` tokens.
pub fn word_tokenizer(words: &[&str], max_len: usize) -> TextTokenizer {
    let inner: tokenizers::Tokenizer = word_tokenizer_json(words)
        .parse()
        .expect("the fixture tokenizer parses");
    TextTokenizer::new(inner, max_len, 0).expect("the fixture tokenizer")
}

/// A tiny Siamese two-tower configuration over `vocab_size` ids, truncating at 16 tokens.
pub fn tiny_tower(vocab_size: usize, projection_dim: Option<usize>) -> TowerConfig {
    TowerConfig {
        encoder: EncoderConfig::tiny(vocab_size),
        projection_dim,
        asymmetric: false,
        query_prefix: String::new(),
        item_prefix: String::new(),
        max_len: 16,
        base_model: "tiny".into(),
        item_text: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_word_tokenizer_numbers_words_after_the_special_tokens() {
        let t = word_tokenizer(&["red", "drill"], 8);
        let enc = t.inner().encode("Red DRILL saw", true).unwrap();
        // [CLS] red drill [UNK] [SEP]
        assert_eq!(enc.get_ids(), [2, 4, 5, 1, 3]);
        let pair = t.inner().encode(("red", "drill"), true).unwrap();
        assert_eq!(pair.get_ids(), [2, 4, 3, 5, 3]);
        assert_eq!(pair.get_type_ids(), [0, 0, 0, 1, 1]);
        assert_eq!(vocab_size(&["red", "drill"]), 6);
        assert_eq!(tiny_tower(6, Some(8)).dim(), 8);
    }
}
