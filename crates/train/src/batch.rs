//! Laying out a batch of training instances for the two towers.
//!
//! A batch is a group of instances (paper eq. 1), each a query with its own labelled items.
//! Every distinct query text and every distinct item of the batch is encoded once: the texts
//! of each side are sorted by token length and cut into chunks bounded in texts and padded
//! tokens ([`Chunking`]), so that short titles are not padded to the longest one. The plan
//! records where each instance's query and items land in the concatenated chunk outputs.

use std::collections::HashMap;

use crate::instances::Instance;
use strata_model::tokenize::length_batches;
use strata_model::{TextTokenizer, TokenBatch};

/// Limits of one forward chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Chunking {
    /// Most texts in one chunk.
    pub max_texts: usize,
    /// Most padded tokens (texts × longest length) in one chunk.
    pub max_tokens: usize,
}

impl Default for Chunking {
    fn default() -> Self {
        Chunking {
            max_texts: 256,
            max_tokens: 1024,
        }
    }
}

impl Chunking {
    /// Limits that suit `device`: the CPU's (above: small chunks keep the activations in
    /// cache and the threads busy) or a GPU's (one launch per 32,768 tokens, which fills a
    /// large GPU with MiniLM-sized models while a batch of 128 instances of 1 query and 4 items
    /// of 32 tokens stays one chunk per side).
    pub fn for_device(device: &burn::tensor::Device) -> Chunking {
        if strata_model::device::is_cpu(device) {
            Chunking::default()
        } else {
            Chunking {
                max_texts: 1024,
                max_tokens: 32_768,
            }
        }
    }

    /// One chunk per side, whatever its size (the plain layout, for comparisons).
    pub fn single() -> Self {
        Chunking {
            max_texts: usize::MAX,
            max_tokens: usize::MAX,
        }
    }
}

/// The token layout of one side (queries or items) of a batch.
#[derive(Clone, Debug, PartialEq)]
pub struct SideLayout {
    /// Padded chunks, in forward order.
    pub chunks: Vec<TokenBatch>,
    /// For each row of the concatenated chunk outputs, the index of its text in the side's
    /// list of distinct texts.
    pub order: Vec<usize>,
    /// Number of distinct texts.
    pub texts: usize,
    /// Real tokens over all chunks.
    pub tokens: usize,
}

impl SideLayout {
    /// Lays out token sequences (one per distinct text) in chunks.
    pub fn new(tokenizer: &TextTokenizer, seqs: &[&[u32]], chunking: Chunking) -> Self {
        let lengths: Vec<usize> = seqs.iter().map(|s| s.len()).collect();
        let groups = length_batches(&lengths, chunking.max_texts, chunking.max_tokens);
        let mut chunks = Vec::with_capacity(groups.len());
        let mut order = Vec::with_capacity(seqs.len());
        for g in groups {
            let part: Vec<&[u32]> = g.iter().map(|&i| seqs[i]).collect();
            chunks.push(tokenizer.pad(&part));
            order.extend(g);
        }
        SideLayout {
            chunks,
            order,
            texts: seqs.len(),
            tokens: lengths.iter().sum(),
        }
    }

    /// Row of the concatenated chunk outputs that holds each distinct text.
    pub fn rows_of_texts(&self) -> Vec<usize> {
        let mut rows = vec![0; self.order.len()];
        for (row, &text) in self.order.iter().enumerate() {
            rows[text] = row;
        }
        rows
    }

    /// Padded tokens over all chunks.
    pub fn padded_tokens(&self) -> usize {
        self.chunks.iter().map(|c| c.batch * c.len).sum()
    }
}

/// A batch of instances ready for the forward pass.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchPlan {
    /// Distinct query texts.
    pub queries: SideLayout,
    /// Distinct items.
    pub items: SideLayout,
    /// Per instance: row of its query in the concatenated query outputs.
    pub query_rows: Vec<usize>,
    /// Per item slot, instance after instance: row of the item in the concatenated item outputs.
    pub item_rows: Vec<usize>,
    /// Labels of each instance's items.
    pub labels: Vec<Vec<u8>>,
}

impl BatchPlan {
    /// Number of instances.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the batch holds no instances.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Real tokens of both sides.
    pub fn tokens(&self) -> usize {
        self.queries.tokens + self.items.tokens
    }

    /// Padded tokens of both sides.
    pub fn padded_tokens(&self) -> usize {
        self.queries.padded_tokens() + self.items.padded_tokens()
    }
}

/// Token ids of the items of a catalog, tokenized once.
pub trait ItemTokens {
    /// Token ids of catalog item `index` (with the item prefix and special tokens).
    fn item_tokens(&self, index: u32) -> &[u32];
}

impl ItemTokens for Vec<Vec<u32>> {
    fn item_tokens(&self, index: u32) -> &[u32] {
        &self[index as usize]
    }
}

impl ItemTokens for HashMap<u32, Vec<u32>> {
    fn item_tokens(&self, index: u32) -> &[u32] {
        self.get(&index).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// Builds the plan of a batch. `query_tokens` holds the token ids of each instance's query
/// (parallel to `instances`); `dedup` encodes repeated queries and items once (off: every slot
/// is encoded on its own, the plain layout used to check the optimised one).
pub fn plan_batch(
    instances: &[Instance],
    query_tokens: &[Vec<u32>],
    items: &dyn ItemTokens,
    tokenizer: &TextTokenizer,
    chunking: Chunking,
    dedup: bool,
) -> BatchPlan {
    assert_eq!(
        instances.len(),
        query_tokens.len(),
        "one token list per query"
    );
    // Distinct queries by text.
    let mut query_index: HashMap<&str, usize> = HashMap::new();
    let mut query_seqs: Vec<&[u32]> = Vec::new();
    let mut query_text_of_instance = Vec::with_capacity(instances.len());
    for (inst, toks) in instances.iter().zip(query_tokens) {
        let next = query_seqs.len();
        let k = if dedup {
            *query_index.entry(&inst.query).or_insert(next)
        } else {
            next
        };
        if k == next {
            query_seqs.push(toks);
        }
        query_text_of_instance.push(k);
    }
    // Distinct items by catalog index.
    let mut item_index: HashMap<u32, usize> = HashMap::new();
    let mut item_seqs: Vec<&[u32]> = Vec::new();
    let mut item_text_of_slot = Vec::new();
    let mut labels = Vec::with_capacity(instances.len());
    for inst in instances {
        let mut ls = Vec::with_capacity(inst.items.len());
        for &(item, label) in &inst.items {
            let next = item_seqs.len();
            let k = if dedup {
                *item_index.entry(item).or_insert(next)
            } else {
                next
            };
            if k == next {
                item_seqs.push(items.item_tokens(item));
            }
            item_text_of_slot.push(k);
            ls.push(label);
        }
        labels.push(ls);
    }
    let queries = SideLayout::new(tokenizer, &query_seqs, chunking);
    let items_layout = SideLayout::new(tokenizer, &item_seqs, chunking);
    let q_rows = queries.rows_of_texts();
    let i_rows = items_layout.rows_of_texts();
    BatchPlan {
        query_rows: query_text_of_instance.iter().map(|&k| q_rows[k]).collect(),
        item_rows: item_text_of_slot.iter().map(|&k| i_rows[k]).collect(),
        queries,
        items: items_layout,
        labels,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    pub(crate) fn word_tokenizer() -> TextTokenizer {
        crate::testutil::word_tokenizer(16)
    }

    fn inst(q: &str, items: &[(u32, u8)]) -> Instance {
        Instance {
            query_idx: 0,
            query: Arc::from(q),
            items: items.to_vec(),
        }
    }

    #[test]
    fn dedup_encodes_each_text_once_and_maps_every_slot() {
        let tok = word_tokenizer();
        let item_toks: Vec<Vec<u32>> = (0..6u32).map(|i| vec![1; 1 + i as usize]).collect();
        let instances = vec![
            inst("a b", &[(0, 2), (3, 0)]),
            inst("c", &[(3, 1), (5, 0), (1, 2)]),
            inst("a b", &[(0, 1), (2, 0)]),
        ];
        let qt: Vec<Vec<u32>> = instances
            .iter()
            .map(|i| vec![7; i.query.split(' ').count()])
            .collect();
        let chunking = Chunking {
            max_texts: 2,
            max_tokens: 100,
        };
        let plan = plan_batch(&instances, &qt, &item_toks, &tok, chunking, true);
        assert_eq!(plan.queries.texts, 2);
        assert_eq!(plan.items.texts, 5);
        assert_eq!(plan.item_rows.len(), 7);
        assert_eq!(plan.labels, vec![vec![2, 0], vec![1, 0, 2], vec![1, 0]]);
        // Chunks respect the limits and come longest first.
        assert!(plan.items.chunks.iter().all(|c| c.batch <= 2));
        assert_eq!(plan.items.chunks[0].len, 6);
        // Each slot's row holds the slot's item: its real length is item index + 1.
        let lens: Vec<usize> = plan
            .items
            .chunks
            .iter()
            .flat_map(|c| {
                (0..c.batch).map(move |r| {
                    c.mask[r * c.len..(r + 1) * c.len]
                        .iter()
                        .filter(|&&m| m > 0.0)
                        .count()
                })
            })
            .collect();
        let slots: Vec<u32> = instances
            .iter()
            .flat_map(|i| i.items.iter().map(|x| x.0))
            .collect();
        for (slot, &row) in plan.item_rows.iter().enumerate() {
            assert_eq!(lens[row], slots[slot] as usize + 1, "slot {slot}");
        }
        assert_eq!(plan.query_rows[0], plan.query_rows[2]);
        assert_ne!(plan.query_rows[0], plan.query_rows[1]);
        let plain = plan_batch(&instances, &qt, &item_toks, &tok, Chunking::single(), false);
        assert_eq!(plain.items.texts, 7);
        assert_eq!(plain.queries.chunks.len(), 1);
        assert!(plain.padded_tokens() > plan.padded_tokens());
        // Items 0,3,3,5,1,0,2 have 1,4,4,6,2,1,3 tokens; the queries 2,1,2.
        assert_eq!(plain.tokens(), 21 + 5);
    }
}
