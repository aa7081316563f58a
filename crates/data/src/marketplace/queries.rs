//! Queries and their judgments: queries are composed from an anchor item's facts in head and
//! tail shapes (product type, category, brand, attribute, size, Spanish, French, misspelled);
//! each query is judged on a mix of exact items, substitutes and complements, lexically
//! confusable negatives and random negatives.

use std::collections::{HashMap, HashSet};

use rayon::prelude::*;

use super::lexicon::NONE;
use super::oracle::{ItemFacts, Oracle, QueryIntent, Target};
use crate::hash::{Rng, combine};
use crate::progress::Progress;
use crate::record::{Engagement, Item};
use crate::spelling::{Noiser, NoiserConfig};
use crate::split::normalize_query;
use crate::tokens::{token_overlap, tokens};

/// The shape of a generated query.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum QueryKind {
    /// A product type: `spaghetti`.
    Type,
    /// A category: `pasta`.
    Category,
    /// A brand: `casa bella`.
    Brand,
    /// Brand and type: `casa bella spaghetti`.
    BrandType,
    /// Attribute and type: `gluten free spaghetti`, `navy hoodie`.
    AttributeType,
    /// Type and size: `spaghetti 16 oz`.
    SizeType,
    /// Brand, attribute and type: `casa bella organic spaghetti`.
    BrandAttributeType,
    /// A type or category in Spanish: `espaguetis`.
    Spanish,
    /// A type or category in French: `pâtes`.
    French,
    /// A misspelled type, category, brand-type or attribute-type query.
    Misspelled,
}

impl QueryKind {
    pub const ALL: [QueryKind; 10] = [
        QueryKind::Type,
        QueryKind::Category,
        QueryKind::Brand,
        QueryKind::BrandType,
        QueryKind::AttributeType,
        QueryKind::SizeType,
        QueryKind::BrandAttributeType,
        QueryKind::Spanish,
        QueryKind::French,
        QueryKind::Misspelled,
    ];

    const WEIGHTS: [f64; 10] = [0.18, 0.08, 0.05, 0.16, 0.15, 0.06, 0.07, 0.05, 0.04, 0.16];

    pub fn as_str(self) -> &'static str {
        match self {
            QueryKind::Type => "type",
            QueryKind::Category => "category",
            QueryKind::Brand => "brand",
            QueryKind::BrandType => "brand-type",
            QueryKind::AttributeType => "attribute-type",
            QueryKind::SizeType => "size-type",
            QueryKind::BrandAttributeType => "brand-attribute-type",
            QueryKind::Spanish => "spanish",
            QueryKind::French => "french",
            QueryKind::Misspelled => "misspelled",
        }
    }

    /// Head queries are short and broad (type, category, brand); the rest are tail queries.
    pub fn is_head(self) -> bool {
        matches!(
            self,
            QueryKind::Type | QueryKind::Category | QueryKind::Brand
        )
    }
}

impl std::fmt::Display for QueryKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A generated query with its intent and the item it was composed from.
pub(crate) struct Composed {
    pub text: String,
    pub kind: QueryKind,
    pub intent: QueryIntent,
    pub anchor: u32,
}

fn attr_text(oracle: &Oracle, a: u16, rng: &mut Rng) -> String {
    let lex = oracle.lexicon();
    let t = &lex.attrs[a as usize];
    if lex.gender[a as usize] && rng.chance(0.5) {
        t.replace('\'', "")
    } else {
        t.clone()
    }
}

fn pick_attr(f: &ItemFacts, rng: &mut Rng) -> Option<u16> {
    let attrs: Vec<u16> = f.attrs.iter().copied().filter(|&a| a != NONE).collect();
    (!attrs.is_empty()).then(|| *rng.pick(&attrs))
}

/// Composes one query of `kind` from an anchor item; `None` when the item lacks what the kind
/// needs.
fn compose(
    oracle: &Oracle,
    kind: QueryKind,
    anchor: u32,
    f: &ItemFacts,
    noiser: &Noiser,
    rng: &mut Rng,
) -> Option<Composed> {
    let lex = oracle.lexicon();
    let ty = &lex.types[f.ty as usize];
    let cat_id = ty.category;
    let cat = &lex.categories[cat_id as usize];
    let brand = (f.brand != NONE).then(|| lex.brands[f.brand as usize].to_lowercase());
    let type_word = rng.pick(&ty.synonyms).clone();
    let mut intent = QueryIntent {
        target: Some(Target::Type(f.ty)),
        ..Default::default()
    };
    let text = match kind {
        QueryKind::Type => type_word,
        QueryKind::Category => {
            intent.target = Some(Target::Category(cat_id));
            rng.pick(&cat.synonyms).clone()
        }
        QueryKind::Brand => {
            intent.target = None;
            intent.brand = Some(f.brand);
            brand?
        }
        QueryKind::BrandType => {
            intent.brand = Some(f.brand);
            format!("{} {type_word}", brand?)
        }
        QueryKind::AttributeType => {
            let a = pick_attr(f, rng)?;
            intent.attrs = vec![a];
            format!("{} {type_word}", attr_text(oracle, a, rng))
        }
        QueryKind::SizeType => {
            if f.size == NONE || lex.sizes[f.size as usize] == "standard" {
                return None;
            }
            intent.size = Some(f.size);
            format!("{type_word} {}", lex.sizes[f.size as usize])
        }
        QueryKind::BrandAttributeType => {
            let a = pick_attr(f, rng)?;
            intent.brand = Some(f.brand);
            intent.attrs = vec![a];
            format!("{} {} {type_word}", brand?, attr_text(oracle, a, rng))
        }
        QueryKind::Spanish | QueryKind::French => {
            let (t_words, c_words) = if kind == QueryKind::Spanish {
                (&ty.spanish, &cat.spanish)
            } else {
                (&ty.french, &cat.french)
            };
            if !c_words.is_empty() && (t_words.is_empty() || rng.chance(0.3)) {
                intent.target = Some(Target::Category(cat_id));
                rng.pick(c_words).clone()
            } else {
                rng.pick(t_words).clone()
            }
        }
        QueryKind::Misspelled => {
            const BASES: [QueryKind; 4] = [
                QueryKind::Type,
                QueryKind::BrandType,
                QueryKind::AttributeType,
                QueryKind::Category,
            ];
            let base = compose(oracle, *rng.pick(&BASES), anchor, f, noiser, rng)?;
            let noisy = noiser.noise(&base.text, rng)?;
            return Some(Composed {
                text: noisy,
                kind,
                intent: base.intent,
                anchor,
            });
        }
    };
    intent.attrs.sort_unstable();
    Some(Composed {
        text: text.to_lowercase(),
        kind,
        intent,
        anchor,
    })
}

/// Generates up to `n` distinct queries whose parsed intent is what they were composed for.
pub(crate) fn generate_queries(
    oracle: &Oracle,
    facts: &[ItemFacts],
    n: usize,
    seed: u64,
    progress: &dyn Progress,
) -> Vec<Composed> {
    progress.stage("queries", n as u64);
    let noiser = Noiser::new(NoiserConfig {
        p_substitute: 0.04,
        p_delete: 0.02,
        p_insert: 0.02,
        p_transpose: 0.02,
        max_edits: 2,
        min_word_len: 4,
    })
    .expect("valid noiser settings");
    let mut seen: HashSet<String> = HashSet::new();
    let mut out = Vec::with_capacity(n);
    if facts.is_empty() {
        return out;
    }
    let batch = 256;
    let mut attempt: u64 = 0;
    let max_attempts = 60 * n as u64 + 1000;
    while out.len() < n && attempt < max_attempts {
        let candidates: Vec<Option<Composed>> = (attempt..attempt + batch)
            .into_par_iter()
            .map(|a| {
                let mut rng = Rng::stream(seed ^ 0x5155_4552, a);
                let anchor = rng.below(facts.len()) as u32;
                let kind = QueryKind::ALL[rng.weighted(&QueryKind::WEIGHTS)];
                let c = compose(
                    oracle,
                    kind,
                    anchor,
                    &facts[anchor as usize],
                    &noiser,
                    &mut rng,
                )?;
                (oracle.parse(&c.text) == c.intent).then_some(c)
            })
            .collect();
        attempt += batch;
        for c in candidates.into_iter().flatten() {
            if out.len() < n && seen.insert(normalize_query(&c.text)) {
                out.push(c);
                progress.advance(1);
            }
        }
    }
    progress.finish();
    if out.len() < n {
        tracing::warn!(
            "the marketplace produced {} distinct queries of the {} asked for (the catalog is too small for more)",
            out.len(),
            n
        );
    }
    out
}

/// Most items judged per positive level of a query judged completely.
pub(crate) const COMPLETE_MAX_PER_LEVEL: usize = 60;

/// Indexes for judging queries.
pub(crate) struct JudgeIndex<'a> {
    pub oracle: &'a Oracle,
    pub facts: &'a [ItemFacts],
    pub items: &'a [Item],
    pub by_type: Vec<Vec<u32>>,
    pub by_brand: Vec<Vec<u32>>,
    pub postings: HashMap<String, Vec<u32>>,
}

impl<'a> JudgeIndex<'a> {
    pub(crate) fn new(oracle: &'a Oracle, facts: &'a [ItemFacts], items: &'a [Item]) -> Self {
        let lex = oracle.lexicon();
        let mut by_type = vec![Vec::new(); lex.types.len()];
        let mut by_brand = vec![Vec::new(); lex.brands.len()];
        let mut postings: HashMap<String, Vec<u32>> = HashMap::new();
        for (i, (f, item)) in facts.iter().zip(items).enumerate() {
            by_type[f.ty as usize].push(i as u32);
            if f.brand != NONE {
                by_brand[f.brand as usize].push(i as u32);
            }
            let mut toks = tokens(&item.name);
            toks.sort_unstable();
            toks.dedup();
            for t in toks {
                postings.entry(t).or_default().push(i as u32);
            }
        }
        JudgeIndex {
            oracle,
            facts,
            items,
            by_type,
            by_brand,
            postings,
        }
    }

    fn draw(list: &[u32], k: usize, rng: &mut Rng, out: &mut Vec<u32>) {
        if list.is_empty() {
            return;
        }
        for _ in 0..k {
            out.push(*rng.pick(list));
        }
    }

    /// Judged items of one query with their policy labels, shuffled.
    ///
    /// With `complete`, every label-2 and label-1 candidate is judged (up to
    /// [`COMPLETE_MAX_PER_LEVEL`] each) instead of a sample of one to three, and as many label-0
    /// items as the sample would have left room for; the random draws are the same either way.
    pub(crate) fn judge(
        &self,
        q: &Composed,
        per_query: usize,
        complete: bool,
        rng: &mut Rng,
    ) -> Vec<(u32, u8)> {
        let lex = self.oracle.lexicon();
        let intent = &q.intent;
        let mut cands: Vec<u32> = vec![q.anchor];
        match intent.target {
            Some(Target::Type(t)) => {
                Self::draw(&self.by_type[t as usize], 60, rng, &mut cands);
                for r in lex.related_types(t) {
                    Self::draw(&self.by_type[r as usize], 6, rng, &mut cands);
                }
            }
            Some(Target::Category(c)) => {
                let types = &lex.categories[c as usize].types;
                for _ in 0..60 {
                    Self::draw(&self.by_type[*rng.pick(types) as usize], 1, rng, &mut cands);
                }
                for &t in types {
                    for r in lex.related_types(t) {
                        Self::draw(&self.by_type[r as usize], 3, rng, &mut cands);
                    }
                }
            }
            None => {}
        }
        if let Some(b) = intent.brand {
            Self::draw(&self.by_brand[b as usize], 40, rng, &mut cands);
        }
        cands.sort_unstable();
        cands.dedup();
        let mut buckets: [Vec<u32>; 3] = Default::default();
        for &c in &cands {
            buckets[self.oracle.policy(intent, &self.facts[c as usize]) as usize].push(c);
        }
        let mut chosen: Vec<(u32, u8)> = Vec::with_capacity(per_query);
        let mut taken: HashSet<u32> = HashSet::new();
        let mut sampled = 0;
        for (label, lo, hi) in [(2u8, 1usize, 4usize), (1u8, 1, 3)] {
            let b = &mut buckets[label as usize];
            let k = rng.range(lo, hi).min(b.len());
            rng.partial_shuffle(b, k);
            sampled += k;
            let take = if complete {
                b.len().min(COMPLETE_MAX_PER_LEVEL)
            } else {
                k
            };
            for &i in &b[..take] {
                taken.insert(i);
                chosen.push((i, label));
            }
        }
        let zeros_needed = per_query.saturating_sub(sampled);
        let positives = chosen.len();
        // Lexically confusable negatives: items sharing query tokens, most overlap first.
        let qtokens = tokens(&q.text);
        let lists: Vec<&Vec<u32>> = qtokens
            .iter()
            .filter_map(|t| self.postings.get(t))
            .collect();
        // Every item that shares a query token is a candidate (not a sample of them), so that
        // the label-0 items with the highest overlap, the lexically hard negatives the margin
        // metrics are measured on, are found whenever the catalog has them.
        let mut confusable: Vec<(u32, u64, u32)> = Vec::new();
        let mut seen = HashSet::new();
        for list in &lists {
            for &i in list.iter() {
                if taken.contains(&i) || !seen.insert(i) {
                    continue;
                }
                if self.oracle.policy(intent, &self.facts[i as usize]) == 0 {
                    let o = token_overlap(&q.text, &self.items[i as usize].name);
                    confusable.push(((o * 1000.0) as u32, rng.next_u64(), i));
                }
            }
        }
        confusable.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        for &(_, _, i) in confusable.iter().take(zeros_needed.div_ceil(2)) {
            taken.insert(i);
            chosen.push((i, 0));
        }
        // Random negatives.
        let n = self.facts.len();
        let target = positives + zeros_needed;
        let mut tries = 0;
        while chosen.len() < target && tries < 40 * per_query {
            tries += 1;
            let i = rng.below(n) as u32;
            if !taken.contains(&i) && self.oracle.policy(intent, &self.facts[i as usize]) == 0 {
                taken.insert(i);
                chosen.push((i, 0));
            }
        }
        rng.shuffle(&mut chosen);
        chosen
    }
}

fn binomial(n: u32, p: f64, rng: &mut Rng) -> u32 {
    let p = p.clamp(0.0, 1.0);
    if n <= 200 {
        return (0..n).filter(|_| rng.chance(p)).count() as u32;
    }
    let mean = f64::from(n) * p;
    let sd = (mean * (1.0 - p)).sqrt();
    (mean + sd * rng.normal()).round().clamp(0.0, f64::from(n)) as u32
}

/// Simulated engagement for the judged items of one query: items are shown in an order driven
/// by their true relevance plus noise; impressions fall with position, clicks follow relevance
/// times a position bias with item-level noise, add-to-carts follow clicks and relevance.
pub(crate) fn simulate_engagement(kind: QueryKind, clean: &[u8], rng: &mut Rng) -> Vec<Engagement> {
    let base = if kind.is_head() { 600.0 } else { 90.0 } * (0.6 * rng.normal()).exp();
    let mut order: Vec<(f64, usize)> = clean
        .iter()
        .enumerate()
        .map(|(i, &l)| (f64::from(l) + 0.9 * rng.normal(), i))
        .collect();
    order.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut out = vec![Engagement::default(); clean.len()];
    for (pos, &(_, i)) in order.iter().enumerate() {
        let decay = (1.0 / (1.0 + pos as f64)).powf(0.6);
        let impressions = ((base * decay * (0.7 + 0.6 * rng.unit())).round() as u32).max(1);
        let label = clean[i] as usize;
        let ctr = [0.012, 0.05, 0.14][label]
            * (1.0 / (1.0 + pos as f64)).powf(0.5)
            * (0.35 * rng.normal()).exp();
        let clicks = binomial(impressions, ctr.min(0.9), rng);
        let add_to_carts = binomial(clicks, [0.03, 0.12, 0.3][label], rng);
        out[i] = Engagement {
            impressions,
            clicks,
            add_to_carts,
        };
    }
    out
}

/// Per-query random stream for judging.
pub(crate) fn judge_rng(seed: u64, q: usize) -> Rng {
    Rng::new(combine(&[seed, 0x4a55_4447, q as u64]))
}
