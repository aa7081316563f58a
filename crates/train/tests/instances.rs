//! Training instances: forms, label levels, determinism.

use std::collections::{HashMap, HashSet};

use strata_data::{Catalog, Item, Judgment};
use strata_train::instances::{Form, InstanceConfig, PerQuery, QueryGroups, build_instances};

/// A catalog of 100 items and judgments with known label mixes:
/// q0: 2,1,0; q1: 2,0; q2: 1,0; q3: 2,1; q4: only 0; q5: only 2; q6..q59: random mixes.
fn data() -> (Catalog, Vec<Judgment>) {
    let catalog = Catalog::from_items(
        (0..100)
            .map(|i| Item::new(format!("i{i}"), format!("item {i}")))
            .collect(),
    )
    .unwrap();
    let mut js = Vec::new();
    let mut add = |q: &str, items: std::ops::Range<usize>, label: u8| {
        for i in items {
            js.push(Judgment::new(q, format!("i{i}"), label));
        }
    };
    add("q0", 0..5, 2);
    add("q0", 5..8, 1);
    add("q0", 8..30, 0);
    add("q1", 0..3, 2);
    add("q1", 30..40, 0);
    add("q2", 40..42, 1);
    add("q2", 42..45, 0);
    add("q3", 45..47, 2);
    add("q3", 47..50, 1);
    add("q4", 50..60, 0);
    add("q5", 60..62, 2);
    let mut x: u64 = 7;
    for q in 6..60 {
        for i in 0..12 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            js.push(Judgment::new(
                format!("q{q}"),
                format!("i{}", (q * 7 + i * 13) % 100),
                ((x >> 33) % 3) as u8,
            ));
        }
    }
    (catalog, js)
}

#[test]
fn instances_have_two_levels_and_the_query_form() {
    let (catalog, js) = data();
    let groups = QueryGroups::new(&catalog, &js).unwrap();
    let judged: HashMap<(&str, u32), u8> = js
        .iter()
        .map(|j| {
            (
                (
                    j.query.as_str(),
                    catalog.index_of(&j.item_id).unwrap() as u32,
                ),
                j.label,
            )
        })
        .collect();
    let cfg = InstanceConfig {
        items_per_label: [3, 2, 1],
        per_query: PerQuery::Cover { max: 10 },
        seed: 5,
        ..Default::default()
    };
    let (instances, stats) = build_instances(&groups, &cfg, 0).unwrap();
    assert_eq!(stats.queries, 60);
    assert_eq!(stats.single_level_queries, 2); // q4 and q5
    assert_eq!(stats.instances, instances.len());
    assert_eq!(stats.per_form.iter().sum::<usize>(), instances.len());
    for inst in &instances {
        let q = groups.query(inst.query_idx as usize).clone();
        assert_eq!(inst.query, q);
        let levels: HashSet<u8> = inst.items.iter().map(|p| p.1).collect();
        assert!(levels.len() >= 2, "{inst:?}");
        assert_eq!(
            Form::from_levels(groups.levels(inst.query_idx as usize)),
            inst.form()
        );
        let distinct: HashSet<u32> = inst.items.iter().map(|p| p.0).collect();
        assert_eq!(
            distinct.len(),
            inst.items.len(),
            "an item repeats within {inst:?}"
        );
        for &(item, label) in &inst.items {
            assert_eq!(judged[&(&*q, item)], label, "{q} item {item}");
        }
        for l in 0..3u8 {
            let n = inst.items.iter().filter(|p| p.1 == l).count();
            assert!(n <= cfg.items_per_label[l as usize]);
        }
    }
    let form_of = |name: &str| {
        instances
            .iter()
            .find(|i| &*i.query == name)
            .and_then(|i| i.form())
    };
    assert_eq!(form_of("q0"), Some(Form::TwoOneZero));
    assert_eq!(form_of("q1"), Some(Form::TwoZero));
    assert_eq!(form_of("q2"), Some(Form::OneZero));
    assert_eq!(form_of("q3"), Some(Form::TwoOne));
    assert!(form_of("q4").is_none() && form_of("q5").is_none());
    // Cover mode: q0 has 22 label-0 items at 3 per instance -> 8 instances using all of them.
    let q0: Vec<_> = instances.iter().filter(|i| &*i.query == "q0").collect();
    assert_eq!(q0.len(), 8);
    let zeros: HashSet<u32> = q0
        .iter()
        .flat_map(|i| i.items.iter().filter(|p| p.1 == 0).map(|p| p.0))
        .collect();
    assert_eq!(zeros.len(), 22);
}

#[test]
fn the_seed_and_epoch_determine_the_instances() {
    let (catalog, js) = data();
    let groups = QueryGroups::new(&catalog, &js).unwrap();
    let cfg = InstanceConfig {
        seed: 11,
        ..Default::default()
    };
    let (a, _) = build_instances(&groups, &cfg, 3).unwrap();
    let (b, _) = build_instances(&groups, &cfg, 3).unwrap();
    assert_eq!(a, b);
    // Independent of the number of threads.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let (c, _) = pool.install(|| build_instances(&groups, &cfg, 3).unwrap());
    assert_eq!(a, c);
    let (d, _) = build_instances(&groups, &cfg, 4).unwrap();
    assert_ne!(a, d);
    let (e, _) = build_instances(&groups, &InstanceConfig { seed: 12, ..cfg }, 3).unwrap();
    assert_ne!(a, e);
    let fixed = InstanceConfig {
        per_query: PerQuery::Fixed(2),
        ..cfg
    };
    let (f, stats) = build_instances(&groups, &fixed, 0).unwrap();
    assert_eq!(f.len(), 2 * stats.used_queries);
    assert!(
        build_instances(
            &groups,
            &InstanceConfig {
                items_per_label: [0, 1, 1],
                ..cfg
            },
            0
        )
        .is_err()
    );
}

#[test]
fn unknown_items_and_conflicts_are_errors() {
    let (catalog, mut js) = data();
    js.push(Judgment::new("q0", "nope", 1));
    let err = QueryGroups::new(&catalog, &js).unwrap_err().to_string();
    assert!(
        err.contains("\"nope\"") && err.contains("not in the catalog"),
        "{err}"
    );
    js.pop();
    js.push(Judgment::new("q0", "i0", 0));
    assert!(
        QueryGroups::new(&catalog, &js)
            .unwrap_err()
            .to_string()
            .contains("conflicting")
    );
}

#[test]
fn random_negatives_are_unjudged_distinct_catalog_items() {
    let (catalog, js) = data();
    let groups = QueryGroups::new(&catalog, &js).unwrap();
    let base = InstanceConfig {
        seed: 3,
        ..Default::default()
    };
    let cfg = InstanceConfig {
        random_negatives: 3,
        catalog_items: catalog.len() as u32,
        ..base
    };
    let (plain, _) = build_instances(&groups, &base, 0).unwrap();
    let (with, _) = build_instances(&groups, &cfg, 0).unwrap();
    assert_eq!(plain.len(), with.len());
    for (p, w) in plain.iter().zip(&with) {
        // The judged part is unchanged; three label-0 items follow.
        assert_eq!(&w.items[..p.items.len()], &p.items[..]);
        let extra = &w.items[p.items.len()..];
        assert_eq!(extra.len(), 3, "{w:?}");
        let q = w.query_idx as usize;
        let judged: HashSet<u32> = (0..=2u8)
            .flat_map(|l| groups.items(q, l).iter().copied())
            .collect();
        let distinct: HashSet<u32> = extra.iter().map(|e| e.0).collect();
        assert_eq!(distinct.len(), 3);
        for &(i, l) in extra {
            assert_eq!(l, 0);
            assert!((i as usize) < catalog.len());
            assert!(
                !judged.contains(&i),
                "judged item {i} drawn as a random negative"
            );
        }
    }
    // Deterministic, and a catalog too small is refused.
    assert_eq!(build_instances(&groups, &cfg, 0).unwrap().0, with);
    let tiny = InstanceConfig {
        random_negatives: 3,
        catalog_items: 3,
        ..base
    };
    assert!(build_instances(&groups, &tiny, 0).is_err());
}

/// Batch negatives: every added slot is label 0, an item of another instance of the batch,
/// never judged for the instance's query (any label), never repeated; the original items keep
/// their labels and order; single-level queries train only with them.
#[test]
fn batch_negatives_are_unjudged_items_of_other_instances() {
    use strata_train::instances::with_batch_negatives;
    let (catalog, js) = data();
    let groups = QueryGroups::new(&catalog, &js).unwrap();
    let judged: HashSet<(String, u32)> = js
        .iter()
        .map(|j| {
            (
                j.query.clone(),
                catalog.index_of(&j.item_id).unwrap() as u32,
            )
        })
        .collect();
    let plain = InstanceConfig {
        items_per_label: [2, 1, 1],
        per_query: PerQuery::Fixed(1),
        seed: 3,
        ..Default::default()
    };
    let (without, stats) = build_instances(&groups, &plain, 0).unwrap();
    assert!(without.iter().all(|i| i.query.as_ref() != "q5"));
    assert_eq!(stats.single_level_instances, 0);
    let single = InstanceConfig {
        single_level: true,
        ..plain
    };
    let (all, stats) = build_instances(&groups, &single, 0).unwrap();
    // q5 (only label 2) now yields an instance; q4 (only label 0) still does not.
    let q5 = all.iter().find(|i| i.query.as_ref() == "q5").unwrap();
    assert!(q5.items.iter().all(|&(_, l)| l == 2));
    assert!(all.iter().all(|i| i.query.as_ref() != "q4"));
    assert!(stats.single_level_instances >= 1);
    assert_eq!(
        stats.single_level_queries, 1,
        "only q4 (judged 0 only) yields nothing"
    );

    let batch = &all[..16];
    let pool: HashSet<u32> = batch
        .iter()
        .flat_map(|i| i.items.iter().map(|x| x.0))
        .collect();
    let (out, st) = with_batch_negatives(batch, &groups, None);
    assert_eq!(st.dropped, 0);
    assert_eq!(out.len(), batch.len());
    let mut added = 0;
    for (o, orig) in out.iter().zip(batch) {
        assert_eq!(o.query_idx, orig.query_idx);
        assert_eq!(&o.items[..orig.items.len()], &orig.items[..]);
        let extra = &o.items[orig.items.len()..];
        let mut seen = HashSet::new();
        for &(item, label) in extra {
            assert_eq!(label, 0);
            assert!(pool.contains(&item));
            assert!(
                !judged.contains(&(o.query.to_string(), item)),
                "{} {item}",
                o.query
            );
            assert!(seen.insert(item));
            assert!(!orig.items.iter().any(|&(x, _)| x == item));
        }
        // Every unjudged pool item is there: nothing is passed over silently.
        let expected = pool
            .iter()
            .filter(|&&i| !judged.contains(&(o.query.to_string(), i)))
            .filter(|&&i| !orig.items.iter().any(|&(x, _)| x == i))
            .count();
        assert_eq!(extra.len(), expected, "{}", o.query);
        added += extra.len();
        let levels: HashSet<u8> = o.items.iter().map(|x| x.1).collect();
        assert!(levels.len() >= 2);
    }
    assert_eq!(added, st.added);
    assert!(st.added > 0 && st.judged_skipped > 0);
    // A cap bounds the added slots.
    let (capped, st) = with_batch_negatives(batch, &groups, Some(3));
    assert!(
        capped
            .iter()
            .zip(&out)
            .all(|(c, o)| c.items.len() <= o.items.len())
    );
    assert!(st.added <= 3 * capped.len());
    // A single-level instance alone in its batch has nothing to contrast: left out, counted.
    let (alone, st) = with_batch_negatives(std::slice::from_ref(q5), &groups, None);
    assert!(alone.is_empty());
    assert_eq!(st.dropped, 1);
}

#[test]
fn spelling_variants_apply_additively_and_in_place() {
    use std::sync::Arc;
    use strata_data::spelling::{SpellingConfig, SpellingMode, SpellingVariants};
    use strata_train::instances::{Instance, apply_spelling};
    let qs: Vec<String> = (0..100).map(|i| format!("cordless drill {i}")).collect();
    let forty_percent = SpellingConfig {
        retain: 0.4,
        ..Default::default()
    };
    let v = SpellingVariants::generate(&qs, &forty_percent).unwrap();
    assert_eq!(v.retained(), 40);
    let instances: Vec<Instance> = qs
        .iter()
        .enumerate()
        .map(|(i, q)| Instance {
            query_idx: i as u32,
            query: Arc::from(q.as_str()),
            items: vec![(i as u32, 2), (1000, 0)],
        })
        .collect();
    let add = apply_spelling(&v, instances.clone(), SpellingMode::Additive);
    assert_eq!(add.len(), 140);
    assert_eq!(
        &add[..100],
        instances.as_slice(),
        "originals must all be kept"
    );
    for extra in &add[100..] {
        let orig = &instances[extra.query_idx as usize];
        assert_eq!(extra.items, orig.items);
        assert_eq!(Some(&extra.query), v.get(extra.query_idx as usize));
    }
    let inplace = apply_spelling(&v, instances.clone(), SpellingMode::InPlace);
    assert_eq!(inplace.len(), 100);
    assert_eq!(
        inplace
            .iter()
            .zip(&instances)
            .filter(|(a, b)| a.query != b.query)
            .count(),
        40
    );
}
