//! Labelers: lookup policy, persistent cache with hit/miss counts, object safety.

use std::sync::Mutex;

use strata_data::Judgment;
use strata_data::labeler::{CachedLabeler, JudgmentLookupLabeler, Labeler, UnknownPair};

/// Labels by query length and records every pair it was asked about.
struct Counting {
    asked: Mutex<Vec<(String, String)>>,
}

impl Labeler for Counting {
    fn label(&self, pairs: &[(String, String)]) -> anyhow::Result<Vec<Option<u8>>> {
        self.asked.lock().unwrap().extend(pairs.iter().cloned());
        Ok(pairs
            .iter()
            .map(|(q, _)| {
                if q == "abstain" {
                    None
                } else {
                    Some((q.len() % 3) as u8)
                }
            })
            .collect())
    }
    fn identity(&self) -> String {
        "counting-v1".into()
    }
}

fn counting() -> Counting {
    Counting {
        asked: Mutex::new(Vec::new()),
    }
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(q, i)| (q.to_string(), i.to_string()))
        .collect()
}

#[test]
fn lookup_labeler_answers_known_pairs_and_applies_the_unknown_policy() {
    let js = vec![
        Judgment::new("Red  Shoes", "1", 2),
        Judgment::new("red shoes", "2", 0),
    ];
    let abstain = JudgmentLookupLabeler::new(&js, UnknownPair::Abstain).unwrap();
    let p = pairs(&[
        ("red shoes", "1"),
        ("RED SHOES", "2"),
        ("red shoes", "3"),
        ("blue", "1"),
    ]);
    assert_eq!(abstain.label(&p).unwrap(), [Some(2), Some(0), None, None]);
    let zero = JudgmentLookupLabeler::new(&js, UnknownPair::Fixed(0)).unwrap();
    assert_eq!(
        zero.label(&p).unwrap(),
        [Some(2), Some(0), Some(0), Some(0)]
    );
    assert_ne!(abstain.identity(), zero.identity());
    let other = JudgmentLookupLabeler::new(&js[..1], UnknownPair::Abstain).unwrap();
    assert_ne!(abstain.identity(), other.identity());
    let conflict = vec![Judgment::new("a", "1", 2), Judgment::new("A", "1", 1)];
    assert!(JudgmentLookupLabeler::new(&conflict, UnknownPair::Abstain).is_err());
    assert!(JudgmentLookupLabeler::new(&js, UnknownPair::Fixed(3)).is_err());
    // Object safe.
    let boxed: Box<dyn Labeler> = Box::new(zero);
    assert_eq!(boxed.label(&p[..1]).unwrap(), [Some(2)]);
}

#[test]
fn cache_persists_across_runs_and_counts_hits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache/labels.jsonl");
    let batch = pairs(&[("ab", "1"), ("abc", "2"), ("ab", "1"), ("abstain", "3")]);
    {
        let cached = CachedLabeler::open(counting(), &path, "g1").unwrap();
        assert_eq!(
            cached.label(&batch).unwrap(),
            [Some(2), Some(0), Some(2), None]
        );
        // The repeated pair is asked once.
        assert_eq!(cached.inner().asked.lock().unwrap().len(), 3);
        assert_eq!((cached.hits(), cached.misses()), (0, 3));
        assert_eq!(cached.label(&batch[..2]).unwrap(), [Some(2), Some(0)]);
        assert_eq!((cached.hits(), cached.misses()), (2, 3));
        assert_eq!(cached.identity(), "counting-v1");
    }
    // A new run loads the file: nothing known is asked again; the abstention is retried.
    let cached = CachedLabeler::open(counting(), &path, "g1").unwrap();
    assert_eq!(cached.cached(), 2);
    assert_eq!(
        cached.label(&batch).unwrap(),
        [Some(2), Some(0), Some(2), None]
    );
    assert_eq!(
        *cached.inner().asked.lock().unwrap(),
        pairs(&[("abstain", "3")])
    );
    assert_eq!((cached.hits(), cached.misses()), (3, 1));
    drop(cached);
    // Another guideline version does not reuse the labels.
    let v2 = CachedLabeler::open(counting(), &path, "g2").unwrap();
    assert_eq!(v2.cached(), 0);
    v2.label(&batch[..1]).unwrap();
    assert_eq!(v2.misses(), 1);
    let lines = std::fs::read_to_string(&path).unwrap();
    assert_eq!(lines.lines().count(), 3);
    assert!(
        lines
            .lines()
            .all(|l| l.contains("\"labeler\":\"counting-v1\""))
    );
}

/// `Counting`, whose abstentions are answers (a deterministic model under a threshold).
struct Final(Counting);

impl Labeler for Final {
    fn label(&self, pairs: &[(String, String)]) -> anyhow::Result<Vec<Option<u8>>> {
        self.0.label(pairs)
    }
    fn identity(&self) -> String {
        self.0.identity()
    }
    fn abstentions_are_final(&self) -> bool {
        true
    }
}

#[test]
fn final_abstentions_are_cached_and_shared() {
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("labels");
    let batch = pairs(&[("ab", "1"), ("abstain", "3")]);
    let a = CachedLabeler::open_shared(Final(counting()), &shared, "a", "g").unwrap();
    assert_eq!(a.label(&batch).unwrap(), [Some(2), None]);
    assert_eq!(a.cached(), 2);
    let own = std::fs::read_to_string(shared.join("a.jsonl")).unwrap();
    assert!(
        own.lines().nth(1).unwrap().contains("\"label\":null"),
        "{own}"
    );
    drop(a);
    // Another writer (a Ray actor, the driver) reads both answers and asks nothing.
    let b = CachedLabeler::open_shared(Final(counting()), &shared, "b", "g").unwrap();
    assert_eq!(b.label(&batch).unwrap(), [Some(2), None]);
    assert_eq!((b.hits(), b.misses()), (2, 0));
    assert!(b.inner().0.asked.lock().unwrap().is_empty());
    // A line without a label field is an error, not an abstention.
    let bad = shared.join("z.jsonl");
    std::fs::write(
        &bad,
        "{\"labeler\":\"counting-v1\",\"guideline\":\"g\",\"query\":\"q\",\"item_id\":\"1\"}\n",
    )
    .unwrap();
    let err = CachedLabeler::open_shared(Final(counting()), &shared, "d", "g")
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("z.jsonl:1:") && err.contains("label"), "{err}");
}

#[test]
fn cache_file_errors_and_torn_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("labels.jsonl");
    let good = r#"{"labeler":"counting-v1","guideline":"g","query":"ab","item_id":"1","label":2}"#;
    // A torn last line (an interrupted write) is ignored and the next write starts on a new line.
    std::fs::write(&path, format!("{good}\n{{\"labeler\":\"coun")).unwrap();
    let cached = CachedLabeler::open(counting(), &path, "g").unwrap();
    assert_eq!(cached.cached(), 1);
    cached.label(&pairs(&[("abc", "9")])).unwrap();
    drop(cached);
    let reopened = CachedLabeler::open(counting(), &path, "g").unwrap();
    assert_eq!(reopened.cached(), 2);
    drop(reopened);
    // A malformed complete line is an error naming the file and line.
    std::fs::write(&path, format!("{good}\nnot json\n")).unwrap();
    let err = CachedLabeler::open(counting(), &path, "g")
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains(&format!("{}:2:", path.display())), "{err}");
    std::fs::write(&path, good.replace("\"label\":2", "\"label\":7") + "\n").unwrap();
    let err = CachedLabeler::open(counting(), &path, "g")
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains(&format!(
            "{}:1: field `label`: unknown label 7",
            path.display()
        )),
        "{err}"
    );
}

/// Fails on the `fail_at`-th call to `label`, after answering the earlier calls.
struct FailsLater {
    calls: Mutex<usize>,
    fail_at: usize,
}

impl Labeler for FailsLater {
    fn label(&self, pairs: &[(String, String)]) -> anyhow::Result<Vec<Option<u8>>> {
        let mut calls = self.calls.lock().unwrap();
        *calls += 1;
        anyhow::ensure!(*calls != self.fail_at, "scripted failure");
        Ok(pairs
            .iter()
            .map(|(q, _)| Some((q.len() % 3) as u8))
            .collect())
    }
    fn identity(&self) -> String {
        "counting-v1".into()
    }
}

#[test]
fn labels_before_an_error_are_persisted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.jsonl");
    let ps: Vec<(String, String)> = (0..10)
        .map(|i| (format!("query {i}"), format!("item{i}")))
        .collect();
    let failing = FailsLater {
        calls: Mutex::new(0),
        fail_at: 3,
    };
    let c = CachedLabeler::open(failing, &path, "g1")
        .unwrap()
        .with_chunk_size(3);
    assert!(c.label(&ps).is_err());
    drop(c);
    // Two chunks of three were answered before the failure and are in the file.
    let c = CachedLabeler::open(counting(), &path, "g1").unwrap();
    assert_eq!(c.cached(), 6);
    let got = c.label(&ps).unwrap();
    assert_eq!((c.hits(), c.misses()), (6, 4));
    assert_eq!(c.inner().asked.lock().unwrap().len(), 4);
    assert!(got.iter().all(Option::is_some));
}

#[test]
fn concurrent_callers_share_one_answer_per_pair() {
    /// Slow, so that callers overlap.
    struct Slow(Counting);
    impl Labeler for Slow {
        fn label(&self, pairs: &[(String, String)]) -> anyhow::Result<Vec<Option<u8>>> {
            std::thread::sleep(std::time::Duration::from_millis(30));
            self.0.label(pairs)
        }
        fn identity(&self) -> String {
            self.0.identity()
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let c = CachedLabeler::open(Slow(counting()), dir.path().join("c.jsonl"), "g1")
        .unwrap()
        .with_chunk_size(2);
    let ps: Vec<(String, String)> = (0..8).map(|i| (format!("q{i}"), format!("i{i}"))).collect();
    std::thread::scope(|s| {
        for t in 0..4 {
            let (c, ps) = (&c, &ps);
            s.spawn(move || {
                let mut mine = ps.clone();
                mine.rotate_left(t * 2);
                let got = c.label(&mine).unwrap();
                for (p, l) in mine.iter().zip(got) {
                    assert_eq!(l, Some((p.0.len() % 3) as u8));
                }
            });
        }
    });
    let mut asked = c.inner().0.asked.lock().unwrap().clone();
    assert_eq!(asked.len(), 8, "{asked:?}");
    asked.sort();
    asked.dedup();
    assert_eq!(asked.len(), 8);
    assert_eq!(c.hits() + c.misses(), 32);
}

#[test]
fn default_scores_are_certain() {
    let c = counting();
    let got = c
        .label_scored(&pairs(&[("ab", "x"), ("abstain", "y")]))
        .unwrap();
    let s = got[0].unwrap();
    assert_eq!(
        (s.label, s.probs, s.confidence()),
        (2, [0.0, 0.0, 1.0], 1.0)
    );
    assert!(got[1].is_none());
}

#[test]
fn shared_cache_directory_reuses_every_writers_labels_and_writes_only_its_own_file() {
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("labels");
    let batch = pairs(&[("ab", "1"), ("abc", "2")]);
    let a = CachedLabeler::open_shared(counting(), &shared, "worker-a", "g").unwrap();
    assert_eq!(a.label(&batch).unwrap(), [Some(2), Some(0)]);
    assert_eq!(a.path(), shared.join("worker-a.jsonl"));
    // A second writer sees what the first had persisted when it opened and asks only the rest.
    let b = CachedLabeler::open_shared(counting(), &shared, "worker-b", "g").unwrap();
    assert_eq!(b.cached(), 2);
    let more = pairs(&[("ab", "1"), ("abcd", "3")]);
    assert_eq!(b.label(&more).unwrap(), [Some(2), Some(1)]);
    assert_eq!(*b.inner().asked.lock().unwrap(), pairs(&[("abcd", "3")]));
    let lines = |w: &str| {
        std::fs::read_to_string(shared.join(format!("{w}.jsonl")))
            .unwrap()
            .lines()
            .count()
    };
    assert_eq!((lines("worker-a"), lines("worker-b")), (2, 1));
    drop((a, b));
    // `open` on an existing directory is the shared cache, under this process's own file.
    let c = CachedLabeler::open(counting(), &shared, "g").unwrap();
    assert_eq!(c.cached(), 3);
    assert_eq!(c.path().parent(), Some(shared.as_path()));
    assert!(
        c.path()
            .to_string_lossy()
            .ends_with(&format!("-{}.jsonl", std::process::id()))
    );
    drop(c);
    // Another writer's torn last line (a write in progress) is skipped, not cut off.
    let torn = "{\"labeler\":\"counting-v1\",\"gui";
    let other = shared.join("worker-c.jsonl");
    std::fs::write(&other, torn).unwrap();
    let d = CachedLabeler::open_shared(counting(), &shared, "worker-d", "g").unwrap();
    assert_eq!(d.cached(), 3);
    assert_eq!(std::fs::read_to_string(&other).unwrap(), torn);
    drop(d);
    // A malformed complete line in another writer's file is an error naming it.
    std::fs::write(&other, "not json\n").unwrap();
    let err = CachedLabeler::open_shared(counting(), &shared, "worker-d", "g")
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains(&format!("{}:1:", other.display())), "{err}");
    // Writer names stay inside the directory.
    for bad in ["", "../x", "a/b", ".hidden"] {
        assert!(
            CachedLabeler::open_shared(counting(), &shared, bad, "g").is_err(),
            "{bad}"
        );
    }
}
