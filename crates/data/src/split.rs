//! Deterministic train/dev/test split by query: a stable hash of the normalised query decides,
//! so a query (in any casing or spacing) never lands in two splits.

use crate::hash::{hash_str, unit};
use crate::record::Judgment;

/// Lower-case and collapse whitespace.
pub fn normalize_query(query: &str) -> String {
    let mut out = String::with_capacity(query.len());
    for w in query.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(w.chars().flat_map(char::to_lowercase));
    }
    out
}

/// One of the three splits.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Dev,
    Test,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Dev, Split::Test];

    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Dev => "dev",
            Split::Test => "test",
        }
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Split {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "train" => Ok(Split::Train),
            "dev" | "valid" | "validation" => Ok(Split::Dev),
            "test" => Ok(Split::Test),
            other => Err(format!(
                "unknown split {other:?} (expected train, dev or test)"
            )),
        }
    }
}

/// Split fractions and the seed of the hash.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SplitConfig {
    pub train: f64,
    pub dev: f64,
    pub test: f64,
    pub seed: u64,
}

impl Default for SplitConfig {
    fn default() -> Self {
        SplitConfig {
            train: 0.8,
            dev: 0.1,
            test: 0.1,
            seed: 0,
        }
    }
}

impl SplitConfig {
    /// Fractions must be non-negative and sum to 1 (within 1e-6).
    pub fn new(train: f64, dev: f64, test: f64, seed: u64) -> anyhow::Result<Self> {
        let cfg = SplitConfig {
            train,
            dev,
            test,
            seed,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the fractions.
    pub fn validate(&self) -> anyhow::Result<()> {
        for (n, f) in [
            ("train", self.train),
            ("dev", self.dev),
            ("test", self.test),
        ] {
            anyhow::ensure!(
                f.is_finite() && f >= 0.0,
                "split fraction {n} = {f} must be >= 0"
            );
        }
        let sum = self.train + self.dev + self.test;
        anyhow::ensure!(
            (sum - 1.0).abs() < 1e-6,
            "split fractions sum to {sum}, not 1"
        );
        Ok(())
    }

    /// The split of a query.
    pub fn assign(&self, query: &str) -> Split {
        let u = unit(hash_str(self.seed, &normalize_query(query)));
        if u < self.train {
            Split::Train
        } else if u < self.train + self.dev {
            Split::Dev
        } else {
            Split::Test
        }
    }

    /// Partitions judgments by the split of their query, keeping their order.
    pub fn split_judgments(&self, judgments: &[Judgment]) -> SplitJudgments {
        let mut out = SplitJudgments::default();
        let mut cache: std::collections::HashMap<&str, Split> = std::collections::HashMap::new();
        for j in judgments {
            let s = *cache
                .entry(j.query.as_str())
                .or_insert_with(|| self.assign(&j.query));
            out.get_mut(s).push(j.clone());
        }
        out
    }
}

/// Judgments partitioned by split.
#[derive(Clone, Debug, Default)]
pub struct SplitJudgments {
    pub train: Vec<Judgment>,
    pub dev: Vec<Judgment>,
    pub test: Vec<Judgment>,
}

impl SplitJudgments {
    pub fn get(&self, s: Split) -> &Vec<Judgment> {
        match s {
            Split::Train => &self.train,
            Split::Dev => &self.dev,
            Split::Test => &self.test,
        }
    }

    pub fn get_mut(&mut self, s: Split) -> &mut Vec<Judgment> {
        match s {
            Split::Train => &mut self.train,
            Split::Dev => &mut self.dev,
            Split::Test => &mut self.test,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn normalisation() {
        assert_eq!(normalize_query("  Angle   BRACKET\t"), "angle bracket");
        assert_eq!(normalize_query("Crème  Brûlée"), "crème brûlée");
    }

    #[test]
    fn queries_stay_in_one_split_and_fractions_hold() {
        let cfg = SplitConfig::new(0.7, 0.1, 0.2, 42).unwrap();
        let variants = ["Angle Bracket", "angle  bracket", " ANGLE bracket "];
        let s = cfg.assign(variants[0]);
        assert!(variants.iter().all(|v| cfg.assign(v) == s));
        let mut counts: HashMap<Split, usize> = HashMap::new();
        for i in 0..20_000 {
            *counts.entry(cfg.assign(&format!("query {i}"))).or_default() += 1;
        }
        let frac = |s: Split| counts[&s] as f64 / 20_000.0;
        assert!((frac(Split::Train) - 0.7).abs() < 0.015, "{counts:?}");
        assert!((frac(Split::Dev) - 0.1).abs() < 0.015, "{counts:?}");
        assert!((frac(Split::Test) - 0.2).abs() < 0.015, "{counts:?}");
        // A different seed gives a different assignment.
        let other = SplitConfig::new(0.7, 0.1, 0.2, 43).unwrap();
        assert!((0..200).any(|i| cfg.assign(&format!("q{i}")) != other.assign(&format!("q{i}"))));
        assert!(SplitConfig::new(0.7, 0.2, 0.2, 0).is_err());
        assert!(SplitConfig::new(1.1, -0.1, 0.0, 0).is_err());
    }

    #[test]
    fn split_judgments_partitions() {
        let cfg = SplitConfig::new(0.5, 0.0, 0.5, 1).unwrap();
        let js: Vec<Judgment> = (0..100)
            .flat_map(|q| {
                (0..3).map(move |i| Judgment::new(format!("Query {q}"), format!("item{i}"), 0))
            })
            .collect();
        let parts = cfg.split_judgments(&js);
        assert_eq!(parts.train.len() + parts.dev.len() + parts.test.len(), 300);
        assert!(parts.dev.is_empty());
        for j in &parts.train {
            assert!(
                parts
                    .test
                    .iter()
                    .all(|t| normalize_query(&t.query) != normalize_query(&j.query))
            );
        }
    }
}
