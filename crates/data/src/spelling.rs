//! Spelling variation augmentation (paper 4.2, Table 6).
//!
//! A probabilistic character noiser in the spirit of NeuSpell's: per eligible character it may
//! substitute a QWERTY keyboard neighbour (or drop an accent), delete the character, insert a
//! neighbour after it, or swap it with the next one. One variant is drawn per query, a fixed
//! fraction of queries keep theirs, and the variants are used in one of three ways:
//! additively (extra instances with the variant as anchor, the paper's choice), in place of
//! the clean query, or as clean/noisy pairs for a cosine regularisation term.

use std::sync::Arc;

use crate::hash::{Rng, hash_str};
use crate::record::Judgment;
use crate::split::normalize_query;

/// QWERTY neighbours of a lower-case ASCII letter.
pub fn keyboard_neighbours(c: char) -> &'static str {
    match c {
        'q' => "wa",
        'w' => "qeas",
        'e' => "wrsd",
        'r' => "etdf",
        't' => "ryfg",
        'y' => "tugh",
        'u' => "yihj",
        'i' => "uojk",
        'o' => "ipkl",
        'p' => "ol",
        'a' => "qwsz",
        's' => "awedxz",
        'd' => "serfcx",
        'f' => "drtgvc",
        'g' => "ftyhbv",
        'h' => "gyujnb",
        'j' => "huikmn",
        'k' => "jiolm",
        'l' => "kop",
        'z' => "asx",
        'x' => "zsdc",
        'c' => "xdfv",
        'v' => "cfgb",
        'b' => "vghn",
        'n' => "bhjm",
        'm' => "njk",
        _ => "",
    }
}

/// The letter without its accent, for common Latin accented letters.
pub(crate) fn strip_accent(c: char) -> Option<char> {
    let base = match c {
        'á' | 'à' | 'â' | 'ä' | 'ã' => 'a',
        'é' | 'è' | 'ê' | 'ë' => 'e',
        'í' | 'ì' | 'î' | 'ï' => 'i',
        'ó' | 'ò' | 'ô' | 'ö' | 'õ' => 'o',
        'ú' | 'ù' | 'û' | 'ü' => 'u',
        'ñ' => 'n',
        'ç' => 'c',
        _ => return None,
    };
    Some(base)
}

/// A typo for `c`: an accent dropped, or a keyboard neighbour in the same case.
fn typo(c: char, rng: &mut Rng) -> Option<char> {
    if let Some(b) = strip_accent(c) {
        return Some(b);
    }
    let lower = c.to_ascii_lowercase();
    let n = keyboard_neighbours(lower);
    if n.is_empty() {
        return None;
    }
    let r = n.as_bytes()[rng.below(n.len())] as char;
    Some(if c.is_ascii_uppercase() {
        r.to_ascii_uppercase()
    } else {
        r
    })
}

/// Unrestricted Damerau-Levenshtein distance (insertions, deletions, substitutions and
/// transpositions of adjacent characters), over characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let (n, m) = (a.len(), b.len());
    let inf = n + m;
    let w = m + 2;
    let mut d = vec![0usize; (n + 2) * w];
    d[0] = inf;
    for i in 0..=n {
        d[(i + 1) * w] = inf;
        d[(i + 1) * w + 1] = i;
    }
    for j in 0..=m {
        d[j + 1] = inf;
        d[w + j + 1] = j;
    }
    let mut last_row: std::collections::HashMap<char, usize> = std::collections::HashMap::new();
    for i in 1..=n {
        let mut last_match_col = 0;
        for j in 1..=m {
            let i1 = *last_row.get(&b[j - 1]).unwrap_or(&0);
            let j1 = last_match_col;
            let cost = if a[i - 1] == b[j - 1] {
                last_match_col = j;
                0
            } else {
                1
            };
            let sub = d[i * w + j] + cost;
            let ins = d[(i + 1) * w + j] + 1;
            let del = d[i * w + j + 1] + 1;
            let trans = d[i1 * w + j1] + (i - i1 - 1) + 1 + (j - j1 - 1);
            d[(i + 1) * w + j + 1] = sub.min(ins).min(del).min(trans);
        }
        last_row.insert(a[i - 1], i);
    }
    d[(n + 1) * w + m + 1]
}

/// Per-character edit probabilities and limits.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NoiserConfig {
    pub p_substitute: f64,
    pub p_delete: f64,
    pub p_insert: f64,
    pub p_transpose: f64,
    /// At most this many edits per variant (at least one is always made).
    pub max_edits: usize,
    /// Only letters in words at least this long are edited (keeps sizes and short tokens).
    pub min_word_len: usize,
}

impl Default for NoiserConfig {
    fn default() -> Self {
        NoiserConfig {
            p_substitute: 0.03,
            p_delete: 0.015,
            p_insert: 0.015,
            p_transpose: 0.015,
            max_edits: 2,
            min_word_len: 3,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Substitute,
    Delete,
    Insert,
    Transpose,
}

/// The character noiser.
#[derive(Clone, Debug)]
pub struct Noiser {
    cfg: NoiserConfig,
}

impl Noiser {
    /// Checks the probabilities (each in [0, 1], summing to at most 1) and `max_edits >= 1`.
    pub fn new(cfg: NoiserConfig) -> anyhow::Result<Self> {
        let ps = [
            cfg.p_substitute,
            cfg.p_delete,
            cfg.p_insert,
            cfg.p_transpose,
        ];
        anyhow::ensure!(
            ps.iter().all(|p| (0.0..=1.0).contains(p)) && ps.iter().sum::<f64>() <= 1.0 + 1e-9,
            "noiser probabilities must be in [0, 1] and sum to at most 1: {ps:?}"
        );
        anyhow::ensure!(cfg.max_edits >= 1, "max_edits must be at least 1");
        Ok(Noiser { cfg })
    }

    pub fn config(&self) -> &NoiserConfig {
        &self.cfg
    }

    fn eligible(&self, chars: &[char]) -> Vec<bool> {
        let mut out = vec![false; chars.len()];
        let mut i = 0;
        while i < chars.len() {
            if chars[i].is_alphanumeric() {
                let start = i;
                while i < chars.len() && chars[i].is_alphanumeric() {
                    i += 1;
                }
                if i - start >= self.cfg.min_word_len {
                    for k in start..i {
                        out[k] = chars[k].is_alphabetic();
                    }
                }
            } else {
                i += 1;
            }
        }
        out
    }

    /// Applies `op` at `pos`; `None` when it would not change the text.
    fn apply(chars: &[char], pos: usize, op: Op, rng: &mut Rng) -> Option<Vec<char>> {
        let mut out = chars.to_vec();
        match op {
            Op::Substitute => out[pos] = typo(chars[pos], rng)?,
            Op::Delete => {
                out.remove(pos);
            }
            Op::Insert => out.insert(pos + 1, typo(chars[pos], rng)?),
            Op::Transpose => {
                if pos + 1 >= chars.len()
                    || chars[pos] == chars[pos + 1]
                    || !chars[pos + 1].is_alphabetic()
                {
                    return None;
                }
                out.swap(pos, pos + 1);
            }
        }
        Some(out)
    }

    /// A misspelled variant of `text` with between 1 and `max_edits` edits, or `None` when the
    /// text has no editable letter.
    pub fn noise(&self, text: &str, rng: &mut Rng) -> Option<String> {
        let chars: Vec<char> = text.chars().collect();
        let eligible = self.eligible(&chars);
        let positions: Vec<usize> = (0..chars.len()).filter(|&i| eligible[i]).collect();
        if positions.is_empty() {
            return None;
        }
        let c = &self.cfg;
        let mut out: Vec<char> = Vec::with_capacity(chars.len() + 2);
        let mut edits = 0;
        let mut i = 0;
        while i < chars.len() {
            let ch = chars[i];
            if eligible[i] && edits < c.max_edits {
                let u = rng.unit();
                if u < c.p_substitute {
                    if let Some(t) = typo(ch, rng) {
                        out.push(t);
                        edits += 1;
                        i += 1;
                        continue;
                    }
                } else if u < c.p_substitute + c.p_delete {
                    edits += 1;
                    i += 1;
                    continue;
                } else if u < c.p_substitute + c.p_delete + c.p_insert {
                    if let Some(t) = typo(ch, rng) {
                        out.push(ch);
                        out.push(t);
                        edits += 1;
                        i += 1;
                        continue;
                    }
                } else if u < c.p_substitute + c.p_delete + c.p_insert + c.p_transpose
                    && i + 1 < chars.len()
                    && eligible[i + 1]
                    && chars[i + 1] != ch
                {
                    out.push(chars[i + 1]);
                    out.push(ch);
                    edits += 1;
                    i += 2;
                    continue;
                }
            }
            out.push(ch);
            i += 1;
        }
        if edits == 0 {
            const OPS: [Op; 4] = [Op::Substitute, Op::Delete, Op::Insert, Op::Transpose];
            for _ in 0..32 {
                let pos = *rng.pick(&positions);
                if let Some(v) = Self::apply(&chars, pos, *rng.pick(&OPS), rng) {
                    return Some(v.into_iter().collect());
                }
            }
            // Deletion always changes the text.
            let pos = *rng.pick(&positions);
            return Self::apply(&chars, pos, Op::Delete, rng).map(|v| v.into_iter().collect());
        }
        let s: String = out.into_iter().collect();
        (s != text).then_some(s)
    }
}

/// How spelling variants enter training.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SpellingMode {
    /// Keep every original instance and add copies anchored on the variant (paper's choice).
    Additive,
    /// Replace the anchor of the selected queries by their variant.
    InPlace,
}

impl std::str::FromStr for SpellingMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "additive" => Ok(SpellingMode::Additive),
            "in-place" | "inplace" => Ok(SpellingMode::InPlace),
            other => Err(format!(
                "unknown spelling mode {other:?} (expected additive or in-place)"
            )),
        }
    }
}

/// Settings of the augmentation.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SpellingConfig {
    pub noiser: NoiserConfig,
    /// Fraction of queries whose variant is kept (paper: 0.3-0.5).
    pub retain: f64,
    pub seed: u64,
}

impl Default for SpellingConfig {
    fn default() -> Self {
        SpellingConfig {
            noiser: NoiserConfig::default(),
            retain: 0.4,
            seed: 0,
        }
    }
}

/// One drawn variant per query, and which of them are retained.
///
/// Each query's variant and its selection depend only on the seed and the normalised query
/// text, so the same query gets the same variant in any list. Exactly
/// `round(retain * queries)` variants are retained (fewer only when fewer queries have an
/// editable letter).
#[derive(Clone, Debug)]
pub struct SpellingVariants {
    variants: Vec<Option<Arc<str>>>,
}

impl SpellingVariants {
    /// Draws variants for `queries` (indexed like them).
    pub fn generate<S: AsRef<str> + Sync>(
        queries: &[S],
        cfg: &SpellingConfig,
    ) -> anyhow::Result<Self> {
        use rayon::prelude::*;
        anyhow::ensure!(
            (0.0..=1.0).contains(&cfg.retain),
            "retain fraction {} must be in [0, 1]",
            cfg.retain
        );
        let noiser = Noiser::new(cfg.noiser)?;
        let drawn: Vec<Option<(u64, String)>> = queries
            .par_iter()
            .map(|q| {
                let q = q.as_ref();
                let norm = normalize_query(q);
                let mut rng = Rng::new(hash_str(cfg.seed, &norm));
                let v = noiser.noise(q, &mut rng)?;
                Some((hash_str(cfg.seed ^ 0x5245_5441_494e, &norm), v))
            })
            .collect();
        let mut candidates: Vec<(u64, usize)> = drawn
            .iter()
            .enumerate()
            .filter_map(|(i, d)| d.as_ref().map(|(h, _)| (*h, i)))
            .collect();
        candidates.sort_unstable();
        let target = ((cfg.retain * queries.len() as f64).round() as usize).min(candidates.len());
        let mut variants: Vec<Option<Arc<str>>> = vec![None; queries.len()];
        for &(_, i) in &candidates[..target] {
            variants[i] = drawn[i].as_ref().map(|(_, v)| Arc::from(v.as_str()));
        }
        Ok(SpellingVariants { variants })
    }

    /// The retained variant of query `q`, if any.
    pub fn get(&self, q: usize) -> Option<&Arc<str>> {
        self.variants.get(q).and_then(Option::as_ref)
    }

    /// Number of queries covered.
    pub fn len(&self) -> usize {
        self.variants.len()
    }

    /// Whether no queries are covered.
    pub fn is_empty(&self) -> bool {
        self.variants.is_empty()
    }

    /// Number of retained variants.
    pub fn retained(&self) -> usize {
        self.variants.iter().filter(|v| v.is_some()).count()
    }

    /// (clean, noisy) pairs for a cosine regularisation term, given the clean queries.
    pub fn pairs<S: AsRef<str>>(&self, queries: &[S]) -> Vec<(String, String)> {
        self.variants
            .iter()
            .enumerate()
            .filter_map(|(i, v)| {
                v.as_ref()
                    .map(|v| (queries[i].as_ref().to_string(), v.to_string()))
            })
            .collect()
    }

    /// Applies the variants at the judgment level; `queries` is the list the variants were
    /// drawn for. Additive mode appends a copy of each judgment of a retained query with the
    /// variant as its query.
    pub fn apply_to_judgments<S: AsRef<str>>(
        &self,
        queries: &[S],
        judgments: &[Judgment],
        mode: SpellingMode,
    ) -> Vec<Judgment> {
        let lookup: std::collections::HashMap<&str, &Arc<str>> = queries
            .iter()
            .enumerate()
            .filter_map(|(i, q)| self.get(i).map(|v| (q.as_ref(), v)))
            .collect();
        let with_variant = |j: &Judgment| {
            lookup.get(j.query.as_str()).map(|v| Judgment {
                query: v.to_string(),
                ..j.clone()
            })
        };
        match mode {
            SpellingMode::InPlace => judgments
                .iter()
                .map(|j| with_variant(j).unwrap_or_else(|| j.clone()))
                .collect(),
            SpellingMode::Additive => {
                let mut out = judgments.to_vec();
                out.extend(judgments.iter().filter_map(with_variant));
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_known_values() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("ca", "abc"), 2);
        assert_eq!(edit_distance("spaghetti", "spahgetti"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("café", "cafe"), 1);
    }

    #[test]
    fn short_words_and_digits_are_left_alone() {
        let n = Noiser::new(NoiserConfig::default()).unwrap();
        let mut rng = Rng::new(3);
        assert_eq!(n.noise("16 oz", &mut rng), None);
        for _ in 0..200 {
            let v = n.noise("tv 16 oz spaghetti", &mut rng).unwrap();
            assert!(v.starts_with("tv 16 oz "), "{v}");
        }
    }
}
