//! The marketplace's relevance policy: it reads a query's intent (target product type or
//! category, brand, attributes, size; misspellings, plurals and Spanish/French words included)
//! and labels any (query, item) pair:
//!
//! * 2 (exact): the item is of the target type (or in the target category) and matches the
//!   brand, attributes and size the query names; for a brand-only query, any item of the brand.
//! * 1 (substitute or complement): the target type with another brand, size or attribute; a
//!   substitute type (spaghetti for penne); a complement type (pasta sauce for pasta).
//! * 0 otherwise, including a query with no recognisable intent.
//!
//! Label noise mimics a labeler that agrees with the policy on a fraction `1 - noise` of pairs:
//! a flipped label moves to an adjacent level 90% of the time. The noise of a pair is a fixed
//! function of the seed, the normalised query and the item id.

use std::collections::HashMap;

use super::lexicon::{Entity, LEXICON, Lexicon, NONE, norm_tokens};
use crate::hash::{combine, fnv1a64, hash_str, mix64, unit};
use crate::labeler::Labeler;
use crate::record::{Catalog, Item};
use crate::split::normalize_query;

/// What a query asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Target {
    Category(u16),
    Type(u16),
}

/// The parsed intent of a query.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueryIntent {
    pub(crate) target: Option<Target>,
    pub(crate) brand: Option<u16>,
    /// Sorted, distinct attribute ids.
    pub(crate) attrs: Vec<u16>,
    pub(crate) size: Option<u16>,
}

impl QueryIntent {
    /// Whether the query names neither a product nor a brand.
    pub fn is_empty(&self) -> bool {
        self.target.is_none() && self.brand.is_none()
    }

    /// A readable description, e.g. `type=Spaghetti brand=Casa Bella attrs=[organic]`.
    pub fn describe(&self) -> String {
        let lex = &*LEXICON;
        let mut parts = Vec::new();
        match self.target {
            Some(Target::Type(t)) => parts.push(format!("type={}", lex.types[t as usize].name)),
            Some(Target::Category(c)) => {
                parts.push(format!("category={}", lex.categories[c as usize].name))
            }
            None => {}
        }
        if let Some(b) = self.brand {
            parts.push(format!("brand={}", lex.brands[b as usize]));
        }
        if !self.attrs.is_empty() {
            let a: Vec<&str> = self
                .attrs
                .iter()
                .map(|&a| lex.attrs[a as usize].as_str())
                .collect();
            parts.push(format!("attrs=[{}]", a.join(", ")));
        }
        if let Some(s) = self.size {
            parts.push(format!("size={}", lex.sizes[s as usize]));
        }
        if parts.is_empty() {
            "(none)".into()
        } else {
            parts.join(" ")
        }
    }
}

/// The policy-relevant facts of an item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ItemFacts {
    pub ty: u16,
    pub brand: u16,
    pub size: u16,
    /// Attribute ids, `NONE`-padded.
    pub attrs: [u16; 6],
}

impl ItemFacts {
    pub(crate) fn has_attr(&self, a: u16) -> bool {
        self.attrs.contains(&a)
    }
}

/// Oracle settings.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OracleConfig {
    /// Probability that a pair's label differs from the policy (paper: 12.4%).
    pub noise: f64,
    pub seed: u64,
}

impl Default for OracleConfig {
    fn default() -> Self {
        OracleConfig {
            noise: 0.124,
            seed: 0,
        }
    }
}

/// The relevance policy of the synthetic marketplace.
#[derive(Clone, Debug)]
pub struct Oracle {
    cfg: OracleConfig,
}

impl Oracle {
    pub fn new(cfg: OracleConfig) -> anyhow::Result<Self> {
        anyhow::ensure!(
            (0.0..=1.0).contains(&cfg.noise),
            "label noise {} must be in [0, 1]",
            cfg.noise
        );
        Ok(Oracle { cfg })
    }

    pub fn config(&self) -> &OracleConfig {
        &self.cfg
    }

    pub(crate) fn lexicon(&self) -> &'static Lexicon {
        &LEXICON
    }

    /// Reads the intent of a query.
    pub fn parse(&self, query: &str) -> QueryIntent {
        let lex = self.lexicon();
        let tokens: Vec<String> = norm_tokens(query)
            .into_iter()
            .map(|t| {
                if lex.vocab.contains(&t) {
                    t
                } else {
                    lex.correct(&t).unwrap_or(t)
                }
            })
            .collect();
        let mut intent = QueryIntent::default();
        let mut i = 0;
        while i < tokens.len() {
            let mut matched = 0;
            for len in (1..=lex.max_phrase_tokens.min(tokens.len() - i)).rev() {
                let key = tokens[i..i + len].join(" ");
                if let Some(&e) = lex.phrases.get(&key) {
                    match e {
                        Entity::Type(t) if intent.target.is_none() => {
                            intent.target = Some(Target::Type(t))
                        }
                        Entity::Category(c) if intent.target.is_none() => {
                            intent.target = Some(Target::Category(c))
                        }
                        Entity::Brand(b) if intent.brand.is_none() => intent.brand = Some(b),
                        Entity::Attr(a) => intent.attrs.push(a),
                        Entity::Size(s) if intent.size.is_none() => intent.size = Some(s),
                        _ => {}
                    }
                    matched = len;
                    break;
                }
            }
            i += matched.max(1);
        }
        intent.attrs.sort_unstable();
        intent.attrs.dedup();
        intent
    }

    /// The facts of an item, from its taxonomy (aisle, category, type) and its `brand`,
    /// `size`, `color` and `features` attributes; `None` for an item of an unknown type.
    pub(crate) fn facts(&self, item: &Item) -> Option<ItemFacts> {
        let lex = self.lexicon();
        let ty = *lex.type_ids.get(item.taxonomy.get(2)?)?;
        if lex.categories[lex.types[ty as usize].category as usize].name != *item.taxonomy.get(1)? {
            return None;
        }
        let lookup = |text: &str| lex.phrases.get(&norm_tokens(text).join(" ")).copied();
        let brand = item
            .attributes
            .get("brand")
            .and_then(|b| lex.brand_ids.get(b.as_str()).copied())
            .unwrap_or(NONE);
        let size = match item.attributes.get("size").and_then(|s| lookup(s)) {
            Some(Entity::Size(s)) => s,
            _ => NONE,
        };
        let mut attrs = [NONE; 6];
        let mut k = 0;
        let values = item
            .attributes
            .get("color")
            .into_iter()
            .chain(item.attributes.get("features"))
            .flat_map(|v| v.split(','));
        for v in values {
            if let Some(Entity::Attr(a)) = lookup(v.trim())
                && k < attrs.len()
            {
                attrs[k] = a;
                k += 1;
            }
        }
        Some(ItemFacts {
            ty,
            brand,
            size,
            attrs,
        })
    }

    /// The policy label (no noise).
    pub(crate) fn policy(&self, q: &QueryIntent, f: &ItemFacts) -> u8 {
        let lex = self.lexicon();
        let details_match =
            q.attrs.iter().all(|&a| f.has_attr(a)) && q.size.is_none_or(|s| s == f.size);
        let Some(target) = q.target else {
            return match q.brand {
                Some(b) if b == f.brand => {
                    if details_match {
                        2
                    } else {
                        1
                    }
                }
                _ => 0,
            };
        };
        let category = lex.types[f.ty as usize].category;
        let on_target = match target {
            Target::Type(t) => t == f.ty,
            Target::Category(c) => c == category,
        };
        if on_target {
            let brand_ok = q.brand.is_none_or(|b| b == f.brand);
            return if brand_ok && details_match { 2 } else { 1 };
        }
        let related = match target {
            Target::Type(t) => lex.is_substitute(t, f.ty) || lex.is_complement(t, f.ty),
            Target::Category(c) => lex.categories[c as usize]
                .types
                .iter()
                .any(|&t| lex.is_complement(t, f.ty)),
        };
        u8::from(related)
    }

    /// Applies the label noise of the pair (normalised query, item id) to a policy label.
    pub(crate) fn noisy(&self, normalized_query: &str, item_id: &str, clean: u8) -> u8 {
        if self.cfg.noise <= 0.0 {
            return clean;
        }
        let h = combine(&[
            hash_str(self.cfg.seed, normalized_query),
            fnv1a64(item_id.as_bytes()),
            0x004e_4f49_5345,
        ]);
        if unit(h) >= self.cfg.noise {
            return clean;
        }
        let adjacent = unit(mix64(h)) < 0.9;
        match (clean, adjacent) {
            (0, true) => 1,
            (0, false) => 2,
            (2, true) => 1,
            (2, false) => 0,
            (_, _) => {
                if unit(mix64(h ^ 0x55)) < 0.5 {
                    0
                } else {
                    2
                }
            }
        }
    }

    /// The policy label of a query for an item (`None` for an item of an unknown type).
    pub fn clean_label_item(&self, query: &str, item: &Item) -> Option<u8> {
        let f = self.facts(item)?;
        Some(self.policy(&self.parse(query), &f))
    }

    /// The label with noise, as the labeler returns it.
    pub fn label_item(&self, query: &str, item: &Item) -> Option<u8> {
        let clean = self.clean_label_item(query, item)?;
        Some(self.noisy(&normalize_query(query), &item.id, clean))
    }
}

/// The oracle as a [`Labeler`] over a catalog (item ids resolve through it).
pub struct OracleLabeler {
    oracle: Oracle,
    ids: HashMap<String, u32>,
    facts: Vec<Option<ItemFacts>>,
    fingerprint: u64,
}

impl OracleLabeler {
    /// Prepares the facts of every catalog item.
    pub fn new(oracle: Oracle, catalog: &Catalog) -> Self {
        let facts: Vec<Option<ItemFacts>> = catalog.iter().map(|i| oracle.facts(i)).collect();
        let mut fingerprint = catalog.len() as u64;
        for (i, (item, f)) in catalog.iter().zip(&facts).enumerate() {
            let fh = f.map_or(0, |f| {
                combine(&[
                    u64::from(f.ty),
                    u64::from(f.brand),
                    u64::from(f.size),
                    f.attrs.iter().fold(0, |a, &x| mix64(a ^ u64::from(x))),
                ])
            });
            fingerprint =
                fingerprint.wrapping_add(mix64(fnv1a64(item.id.as_bytes()) ^ fh ^ i as u64));
        }
        let ids = catalog
            .iter()
            .enumerate()
            .map(|(i, it)| (it.id.clone(), i as u32))
            .collect();
        OracleLabeler {
            oracle,
            ids,
            facts,
            fingerprint,
        }
    }

    /// Items whose type the oracle knows.
    pub fn known_items(&self) -> usize {
        self.facts.iter().filter(|f| f.is_some()).count()
    }

    /// The policy label without noise (`None` for unknown items).
    pub fn clean_label(&self, query: &str, item_id: &str) -> Option<u8> {
        let f = self.facts[*self.ids.get(item_id)? as usize]?;
        Some(self.oracle.policy(&self.oracle.parse(query), &f))
    }

    pub fn oracle(&self) -> &Oracle {
        &self.oracle
    }
}

impl Labeler for OracleLabeler {
    fn label(&self, pairs: &[(String, String)]) -> anyhow::Result<Vec<Option<u8>>> {
        let mut intents: HashMap<&str, (QueryIntent, String)> = HashMap::new();
        Ok(pairs
            .iter()
            .map(|(q, id)| {
                let (intent, norm) = intents
                    .entry(q.as_str())
                    .or_insert_with(|| (self.oracle.parse(q), normalize_query(q)));
                let f = self.facts[*self.ids.get(id.as_str())? as usize]?;
                let clean = self.oracle.policy(intent, &f);
                Some(self.oracle.noisy(norm, id, clean))
            })
            .collect())
    }

    fn identity(&self) -> String {
        format!(
            "marketplace-oracle/v1 seed={} noise={} catalog={:016x}",
            self.oracle.cfg.seed, self.oracle.cfg.noise, self.fingerprint
        )
    }
}
