//! Test fixtures: a word-level tokenizer, a tiny random model directory and a small synthetic
//! catalog with graded judgments that a tiny model can learn.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use strata_model::{EncoderConfig, TextTokenizer, TowerConfig, TwoTower, save_model};

/// Words of the synthetic catalog: `COLOURS` × `THINGS` make item titles, queries name both.
pub const COLOURS: [&str; 6] = ["red", "blue", "green", "white", "black", "gray"];
pub const THINGS: [&str; 6] = ["drill", "hammer", "saw", "lamp", "chair", "rope"];
const EXTRA: [&str; 6] = ["cordless", "steel", "heavy", "duty", "pro", "set"];

fn vocab() -> Vec<String> {
    let mut v: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    v.extend(
        COLOURS
            .iter()
            .chain(&THINGS)
            .chain(&EXTRA)
            .map(|s| s.to_string()),
    );
    v
}

/// Size of the fixture vocabulary.
pub fn vocab_size() -> usize {
    vocab().len()
}

/// A BERT-style word-level tokenizer over the fixture vocabulary, as `tokenizer.json` text.
pub fn tokenizer_json() -> String {
    let vocab: serde_json::Map<String, serde_json::Value> = vocab()
        .into_iter()
        .enumerate()
        .map(|(i, w)| (w, serde_json::Value::from(i)))
        .collect();
    let special = |id: u32, content: &str| {
        serde_json::json!({"id": id, "content": content, "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true})
    };
    serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [special(0, "[PAD]"), special(1, "[UNK]"), special(2, "[CLS]"), special(3, "[SEP]")],
        "normalizer": {"type": "Lowercase"},
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
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

/// The fixture tokenizer, truncating at `max_len`.
pub fn word_tokenizer(max_len: usize) -> TextTokenizer {
    let inner: tokenizers::Tokenizer = tokenizer_json().parse().expect("fixture tokenizer parses");
    TextTokenizer::new(inner, max_len, 0).expect("fixture tokenizer")
}

/// The tiny two-tower configuration of the tests.
pub fn tiny_config(projection_dim: Option<usize>) -> TowerConfig {
    TowerConfig {
        encoder: EncoderConfig::tiny(vocab_size()),
        projection_dim,
        asymmetric: false,
        query_prefix: String::new(),
        item_prefix: String::new(),
        max_len: 16,
        base_model: "tiny".into(),
        item_text: None,
    }
}

/// Writes a tiny random model directory (seeded) and returns its path.
pub fn tiny_model_dir(root: &Path, projection_dim: Option<usize>, seed: u64) -> PathBuf {
    let dir = root.join("tiny-model");
    let device = Device::flex();
    let cfg = tiny_config(projection_dim);
    let model = strata_model::with_seed(&device, seed, || TwoTower::init(&cfg, &device));
    save_model(&dir, &model, &cfg, &word_tokenizer(16)).expect("save tiny model");
    dir
}

/// Writes `products.tsv` and `judgments.tsv` of a synthetic catalog: items are
/// "<colour> <thing> [extra]"; query "<colour> <thing>" judges the matching items 2, items of
/// the same thing in another colour 1, and other things 0. Returns (catalog, judgments).
pub fn synthetic_data(root: &Path, queries: usize) -> (PathBuf, PathBuf) {
    let mut products = String::from("product_uid\tproduct_title\n");
    let mut id = 0;
    let mut ids = Vec::new();
    for (c, colour) in COLOURS.iter().enumerate() {
        for (t, thing) in THINGS.iter().enumerate() {
            for extra in [None, Some(EXTRA[(c + t) % EXTRA.len()])] {
                id += 1;
                let title = match extra {
                    Some(e) => format!("{e} {colour} {thing}"),
                    None => format!("{colour} {thing}"),
                };
                products.push_str(&format!("{id}\t{title}\n"));
                ids.push((id, c, t));
            }
        }
    }
    let mut judgments = String::from("query\tproduct_uid\tlabel\n");
    for q in 0..queries {
        let (c, t) = (q % COLOURS.len(), (q / COLOURS.len()) % THINGS.len());
        let query = format!("{} {}", COLOURS[c], THINGS[t]);
        for &(id, ic, it) in &ids {
            let label = if ic == c && it == t {
                2
            } else if it == t && (ic + 1) % COLOURS.len() == c {
                1
            } else if (it + 1) % THINGS.len() == t && ic == c {
                0
            } else {
                continue;
            };
            judgments.push_str(&format!("{query}\t{id}\t{label}\n"));
        }
    }
    let cat = root.join("products.tsv");
    let jud = root.join("judgments.tsv");
    std::fs::write(&cat, products).expect("write products");
    std::fs::write(&jud, judgments).expect("write judgments");
    (cat, jud)
}
