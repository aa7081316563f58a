//! Tokens for lexical overlap: lower-cased runs of letters and digits.

use std::collections::HashSet;

/// Lower-cased runs of alphanumeric characters (Unicode letters and digits), in order.
pub fn tokens(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(|t| t.to_lowercase())
        .collect()
}

/// Token overlap of a query with an item text:
/// `|tokens(query) ∩ tokens(item)| / |tokens(query)|`, over distinct tokens.
/// A query without tokens has overlap 0.
pub fn token_overlap(query: &str, item: &str) -> f64 {
    let q: HashSet<String> = tokens(query).into_iter().collect();
    if q.is_empty() {
        return 0.0;
    }
    let d: HashSet<String> = tokens(item).into_iter().collect();
    q.intersection(&d).count() as f64 / q.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_lowercased_alphanumeric_runs() {
        assert_eq!(
            tokens("BEHR 1-gal. #SC-141 Tugboat"),
            vec!["behr", "1", "gal", "sc", "141", "tugboat"]
        );
        assert_eq!(tokens("  --  "), Vec::<String>::new());
        assert_eq!(tokens("Größe 2x4"), vec!["größe", "2x4"]);
    }

    #[test]
    fn overlap_counts_distinct_query_tokens_found_in_the_item() {
        assert_eq!(
            token_overlap("angle bracket", "Simpson Strong-Tie 12-Gauge Angle"),
            0.5
        );
        assert_eq!(token_overlap("Angle angle", "angle"), 1.0);
        assert_eq!(token_overlap("a b c", "c b a d e"), 1.0);
        assert_eq!(token_overlap("", "anything"), 0.0);
        assert!((token_overlap("x y z", "y") - 1.0 / 3.0).abs() < 1e-12);
    }
}
