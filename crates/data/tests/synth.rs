//! Synthetic queries for items without positives, labeled by a labeler.

use std::collections::HashSet;

use strata_data::labeler::{JudgmentLookupLabeler, UnknownPair};
use strata_data::marketplace::{Marketplace, MarketplaceConfig};
use strata_data::split::{Split, normalize_query};
use strata_data::synth::{self, SyntheticConfig};
use strata_data::{Item, Source, hash::Rng};

#[test]
fn synthetic_queries_cover_items_without_positives() {
    let m = Marketplace::generate(&MarketplaceConfig {
        label_noise: 0.0,
        ..Default::default()
    })
    .unwrap();
    let train = m.judgments_in(Split::Train);
    let without: HashSet<u32> = synth::items_without_positive(&m.catalog, &train)
        .into_iter()
        .collect();
    let positives: HashSet<&str> = train
        .iter()
        .filter(|j| j.label > 0)
        .map(|j| j.item_id.as_str())
        .collect();
    assert_eq!(without.len(), m.catalog.len() - positives.len());
    let real: HashSet<String> = train.iter().map(|j| normalize_query(&j.query)).collect();
    let cfg = SyntheticConfig {
        ratio: 0.2,
        negatives_per_query: 4,
        seed: 3,
        batch: 64,
    };
    let sq = synth::generate(&m.catalog, &train, &cfg).unwrap();
    assert_eq!(sq.len(), (0.2 * real.len() as f64).round() as usize);
    let mut seen = HashSet::new();
    for q in &sq {
        assert!(without.contains(&q.source_item));
        assert_eq!(q.candidates[0], q.source_item);
        assert_eq!(q.candidates.len(), 5);
        assert!(!real.contains(&q.query), "{} repeats a real query", q.query);
        assert!(seen.insert(q.query.clone()));
    }
    assert_eq!(synth::generate(&m.catalog, &train, &cfg).unwrap(), sq);

    let (judgments, stats) = synth::label(&m.catalog, &sq, &m.labeler(), cfg.batch).unwrap();
    assert_eq!(stats.pairs, 5 * sq.len());
    assert_eq!(stats.abstained, 0);
    assert_eq!(stats.per_label.iter().sum::<usize>(), judgments.len());
    assert!(
        judgments
            .iter()
            .all(|j| j.source == Some(Source::Synthetic))
    );
    // Queries made from an item's own features mostly describe it exactly.
    assert!(stats.source_exact * 10 >= sq.len() * 6, "{stats:?}");
    // A lookup labeler without these pairs abstains on all of them.
    let lookup = JudgmentLookupLabeler::new(&train, UnknownPair::Abstain).unwrap();
    let (none, stats) = synth::label(&m.catalog, &sq, &lookup, 100).unwrap();
    assert!(none.is_empty());
    assert_eq!(stats.abstained, stats.pairs);
}

#[test]
fn queries_come_from_item_features() {
    let mut item = Item::new("1", "Casa Bella Whole Wheat Spaghetti, 16 oz");
    item.taxonomy = vec![
        "Pantry".into(),
        "Pasta".into(),
        "Spaghetti".into(),
        "Whole Wheat Spaghetti".into(),
    ];
    item.attributes.insert("brand".into(), "Casa Bella".into());
    item.attributes
        .insert("features".into(), "whole wheat, organic".into());
    let mut rng = Rng::new(1);
    let vocab: HashSet<&str> = ["casa", "bella", "whole", "wheat", "spaghetti", "organic"]
        .into_iter()
        .collect();
    for _ in 0..200 {
        let q = synth::query_from_item(&item, &mut rng).unwrap();
        assert!(q.split(' ').all(|t| vocab.contains(t)), "{q}");
    }
    // Name-only items (Home Depot) give spans of the name.
    let hd = Item::new("2", "Simpson Strong-Tie 12-Gauge Angle");
    for _ in 0..50 {
        let q = synth::query_from_item(&hd, &mut rng).unwrap();
        assert!(
            q.split(' ')
                .all(|t| ["simpson", "strong", "tie", "gauge", "angle"].contains(&t)),
            "{q}"
        );
    }
}
