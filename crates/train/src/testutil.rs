//! Test fixtures: a word-level tokenizer, a tiny random model directory and a small synthetic
//! catalog with graded judgments that a tiny model can learn.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use strata_model::{TextTokenizer, TowerConfig, TwoTower, save_model};

/// Words of the synthetic catalog: `COLOURS` × `THINGS` make item titles, queries name both.
pub use strata_testkit::{COLOURS, EXTRA, THINGS, fixture_words as words};

/// Size of the fixture vocabulary.
pub fn vocab_size() -> usize {
    strata_testkit::vocab_size(&words())
}

/// The fixture tokenizer, truncating at `max_len`.
pub fn word_tokenizer(max_len: usize) -> TextTokenizer {
    strata_testkit::word_tokenizer(&words(), max_len)
}

/// The tiny two-tower configuration of the tests.
pub fn tiny_config(projection_dim: Option<usize>) -> TowerConfig {
    strata_testkit::tiny_tower(vocab_size(), projection_dim)
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
