//! Fixtures shared by strata's tests (a `publish = false` crate, used as a dev-dependency):
//!
//! - [`default_model`]: the real default model (all-MiniLM-L6-v2) that `scripts/setup.sh`
//!   installs. Tests that need it fail loudly, with how to install it, when it is missing;
//!   they never skip.
//! - [`word_tokenizer_json`] / [`word_tokenizer`]: a BERT-style word-level tokenizer over any
//!   vocabulary (`[PAD]` 0, `[UNK]` 1, `[CLS]` 2, `[SEP]` 3, then the words; lower-cased,
//!   split on whitespace; pairs get BERT segments).
//! - [`tiny_tower`]: the tiny two-tower configuration random test models use.
//! - [`params_without_gradient`]: the gradient-coverage check every trainable module's tests
//!   run (every parameter must receive a gradient).
//! - [`homedepot_dir`]: the real Home Depot judgments; tests that need them fail loudly when
//!   they are missing.

use std::path::PathBuf;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Gradients, Tensor};
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

/// The Home Depot judgments (`products.tsv`, `judgments.tsv`): `$STRATA_HOMEDEPOT` or the
/// workspace's `../shared/data/homedepot`. Panics, naming where it looked, when they are missing:
/// tests that need them run in CI and never skip.
pub fn homedepot_dir() -> PathBuf {
    let dir = std::env::var_os("STRATA_HOMEDEPOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/homedepot")
        });
    assert!(
        dir.join("products.tsv").is_file() && dir.join("judgments.tsv").is_file(),
        "Home Depot data missing at {} (products.tsv, judgments.tsv): set STRATA_HOMEDEPOT or \
         place the shared data next to the repository",
        dir.display()
    );
    dir.canonicalize().unwrap_or(dir)
}

/// Visits float parameters, recording those whose gradient is absent or all zero.
struct GradCheck<'a> {
    grads: &'a Gradients,
    path: Vec<String>,
    missing: Vec<String>,
    seen: usize,
}

impl ModuleVisitor for GradCheck<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.seen += 1;
        let ok = param
            .val()
            .grad(self.grads)
            .is_some_and(|g| g.abs().max().into_scalar::<f32>() > 0.0);
        if !ok {
            self.missing.push(self.path.join("."));
        }
    }
}

/// How many float parameters `module` has, and the paths of those that got no nonzero
/// gradient in `grads` (from a loss over the module's outputs).
pub fn params_without_gradient(module: &impl Module, grads: &Gradients) -> (usize, Vec<String>) {
    let mut check = GradCheck {
        grads,
        path: vec![],
        missing: vec![],
        seen: 0,
    };
    module.visit(&mut check);
    (check.seen, check.missing)
}

/// Collects every float parameter's gradient as (path, values).
struct GradCollect<'a> {
    grads: &'a Gradients,
    path: Vec<String>,
    out: Vec<(String, Vec<f32>)>,
}

impl ModuleVisitor for GradCollect<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let values = param
            .val()
            .grad(self.grads)
            .map(|g| g.into_data().try_to_vec::<f32>().expect("an f32 gradient"))
            .unwrap_or_default();
        self.out.push((self.path.join("."), values));
    }
}

/// Every float parameter's gradient in `grads` as (path, values, empty when absent), in the
/// module's visiting order: what two devices' backward passes are compared by.
pub fn gradients_by_path(module: &impl Module, grads: &Gradients) -> Vec<(String, Vec<f32>)> {
    let mut c = GradCollect {
        grads,
        path: vec![],
        out: vec![],
    };
    module.visit(&mut c);
    c.out
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
