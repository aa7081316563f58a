//! Spelling augmentation: retention, originals kept, bounded edits, determinism.

use strata_data::spelling::{
    NoiserConfig, SpellingConfig, SpellingMode, SpellingVariants, edit_distance,
};
use strata_data::{
    Judgment,
    marketplace::{Marketplace, MarketplaceConfig},
};

fn queries(n: usize) -> Vec<String> {
    let words = [
        "running",
        "shoes",
        "spaghetti",
        "organic",
        "cordless",
        "drill",
        "paper",
        "towels",
        "navy",
        "hoodie",
        "dish",
        "soap",
        "16",
        "oz",
        "tv",
    ];
    (0..n)
        .map(|i| {
            let a = words[i % words.len()];
            let b = words[(i / words.len()) % words.len()];
            let c = words[(i / 225) % words.len()];
            format!("{a} {b} {c} {i}")
        })
        .collect()
}

#[test]
fn retained_fraction_matches_the_setting() {
    let qs = queries(10_000);
    for retain in [0.3, 0.4, 0.5] {
        let cfg = SpellingConfig {
            retain,
            seed: 9,
            ..Default::default()
        };
        let v = SpellingVariants::generate(&qs, &cfg).unwrap();
        let frac = v.retained() as f64 / qs.len() as f64;
        assert!((frac - retain).abs() <= 0.01, "retain {retain}: {frac}");
        for (i, q) in qs.iter().enumerate() {
            if let Some(var) = v.get(i) {
                assert_ne!(&**var, q.as_str());
                let d = edit_distance(q, var);
                assert!(
                    (1..=cfg.noiser.max_edits).contains(&d),
                    "{q:?} -> {var:?}: {d}"
                );
            }
        }
    }
    assert!(
        SpellingVariants::generate(
            &qs,
            &SpellingConfig {
                retain: 1.5,
                ..Default::default()
            }
        )
        .is_err()
    );
}

#[test]
fn variants_are_deterministic_per_query() {
    let qs = queries(2_000);
    let cfg = SpellingConfig::default();
    let a = SpellingVariants::generate(&qs, &cfg).unwrap();
    let b = SpellingVariants::generate(&qs, &cfg).unwrap();
    let mut reversed = qs.clone();
    reversed.reverse();
    let c = SpellingVariants::generate(&reversed, &cfg).unwrap();
    for i in 0..qs.len() {
        assert_eq!(a.get(i), b.get(i));
        assert_eq!(
            a.get(i),
            c.get(qs.len() - 1 - i),
            "variant depends on list order"
        );
    }
    let other = SpellingVariants::generate(&qs, &SpellingConfig { seed: 1, ..cfg }).unwrap();
    assert!((0..qs.len()).any(|i| a.get(i) != other.get(i)));
    // Heavier noise still respects the edit bound.
    let heavy = SpellingConfig {
        noiser: NoiserConfig {
            p_substitute: 0.3,
            p_delete: 0.2,
            p_insert: 0.2,
            p_transpose: 0.2,
            max_edits: 3,
            min_word_len: 3,
        },
        retain: 1.0,
        seed: 3,
    };
    let h = SpellingVariants::generate(&qs, &heavy).unwrap();
    for (i, q) in qs.iter().enumerate() {
        let v = h.get(i).unwrap();
        assert!((1..=3).contains(&edit_distance(q, v)), "{q:?} -> {v:?}");
    }
}

#[test]
fn pairs_and_judgment_level_modes() {
    let qs: Vec<String> = queries(100);
    let v = SpellingVariants::generate(
        &qs,
        &SpellingConfig {
            retain: 0.4,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(v.retained(), 40);
    let pairs = v.pairs(&qs);
    assert_eq!(pairs.len(), 40);
    assert!(pairs.iter().all(|(c, n)| qs.contains(c) && c != n));
    let js: Vec<Judgment> = qs
        .iter()
        .map(|q| Judgment::new(q.clone(), "x", 1))
        .collect();
    assert_eq!(
        v.apply_to_judgments(&qs, &js, SpellingMode::Additive).len(),
        140
    );
}

#[test]
fn marketplace_queries_keep_the_retained_share() {
    let m = Marketplace::generate(&MarketplaceConfig {
        items: 500,
        queries: 200,
        ..Default::default()
    })
    .unwrap();
    let qs: Vec<&str> = m.queries.iter().map(|q| q.text.as_str()).collect();
    let v = SpellingVariants::generate(&qs, &SpellingConfig::default()).unwrap();
    assert!((v.retained() as i64 - 80).abs() <= 1);
}
