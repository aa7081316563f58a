//! Tokens and token overlap as EVALUATION.md defines them: tokens are lower-cased runs of
//! letters and digits; overlap = |tokens(query) ∩ tokens(item text)| / |tokens(query)|.

use std::collections::HashSet;

/// Lower-cased runs of letters and digits.
pub fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in text.chars() {
        if c.is_alphanumeric() {
            cur.extend(c.to_lowercase());
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Share of the query's distinct tokens that occur in the item text (0 for a query without
/// tokens).
pub fn token_overlap(query: &str, item_text: &str) -> f64 {
    let q: HashSet<String> = tokens(query).into_iter().collect();
    if q.is_empty() {
        return 0.0;
    }
    let d: HashSet<String> = tokens(item_text).into_iter().collect();
    q.intersection(&d).count() as f64 / q.len() as f64
}

/// Pairs with at least this overlap count as lexically hard.
pub const HARD_OVERLAP: f64 = 0.7;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_overlap() {
        assert_eq!(
            tokens("Men's 3-in-1 JACKET, Größe L"),
            ["men", "s", "3", "in", "1", "jacket", "größe", "l"]
        );
        assert_eq!(token_overlap("red red shoes", "Shoes (Red)"), 1.0);
        assert!(
            (token_overlap("milk chocolate bar", "Chocolate Milk, 1 quart") - 2.0 / 3.0).abs()
                < 1e-12
        );
        assert_eq!(token_overlap("", "x"), 0.0);
    }
}
