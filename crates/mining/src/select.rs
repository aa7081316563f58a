//! The selection rules of paper section 4.4, as a pure function so they can be checked exactly.

/// One retrieved (query, item) pair.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub query: String,
    pub item_id: String,
    /// 1-based rank in the query's top k.
    pub rank: usize,
    /// The label of the original training data, where the pair is already judged.
    pub judged: Option<u8>,
    /// The labeler's answer for an unjudged pair (`None`: not labeled).
    pub label: Option<u8>,
}

/// Where the ranks split into "top" and "bottom".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SelectionRules {
    /// Ranks `1..=split` are "above k/2".
    pub split: usize,
    /// Negatives are taken from this rank on.
    pub negatives_from_rank: usize,
}

/// Indices (into the candidate list) of the selected new pairs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    pub hard_negatives: Vec<usize>,
    pub hard_positives: Vec<usize>,
}

/// Selects hard negatives (newly labeled 0, ranked in `negatives_from_rank..=split`) and hard
/// positives (newly labeled >= 1, ranked below `split`). Pairs that are already judged are
/// never selected: they are in the original data, which is kept whole. Unlabeled pairs are
/// never selected (a missing label is not a negative).
pub fn select_candidates(candidates: &[Candidate], rules: &SelectionRules) -> Selection {
    let mut s = Selection::default();
    for (i, c) in candidates.iter().enumerate() {
        if c.judged.is_some() {
            continue;
        }
        match c.label {
            Some(0) if c.rank >= rules.negatives_from_rank && c.rank <= rules.split => {
                s.hard_negatives.push(i)
            }
            Some(l) if l >= 1 && c.rank > rules.split => s.hard_positives.push(i),
            _ => {}
        }
    }
    s
}
