//! Item generation: a product type (weighted), a brand, a size, features and a colour, and a
//! name in the catalog style of the item's department.

use std::collections::BTreeMap;

use rayon::prelude::*;

use super::lexicon::{Lexicon, Style, title};
use crate::hash::Rng;
use crate::progress::Progress;
use crate::record::Item;

#[derive(Clone, Copy)]
enum Slot {
    Brand,
    Gender,
    Feats,
    FeatsComma,
    Type,
    Size,
    Color,
}

/// (prefix, slot, suffix): the prefix and suffix are written only when the slot has a value
/// and something precedes it.
type Piece = (&'static str, Slot, &'static str);

fn templates(style: Style) -> &'static [&'static [Piece]] {
    use Slot::*;
    const SHELF: &[&[Piece]] = &[
        &[
            ("", Brand, ""),
            (" ", Feats, ""),
            (" ", Type, ""),
            (", ", Size, ""),
        ],
        &[
            ("", Brand, ""),
            (" ", Type, ""),
            (", ", FeatsComma, ""),
            (", ", Size, ""),
        ],
        &[
            ("", Brand, ""),
            (" ", Feats, ""),
            (" ", Type, ""),
            (" - ", Size, ""),
        ],
    ];
    const HOUSEHOLD: &[&[Piece]] = &[
        &[
            ("", Brand, ""),
            (" ", Feats, ""),
            (" ", Type, ""),
            (", ", Size, ""),
        ],
        &[
            ("", Brand, ""),
            (" ", Feats, ""),
            (" ", Type, ""),
            (" ", Size, ""),
        ],
    ];
    const KITCHEN: &[&[Piece]] = &[
        &[
            ("", Brand, ""),
            (" ", Size, ""),
            (" ", Feats, ""),
            (" ", Type, ""),
            (", ", Color, ""),
        ],
        &[
            ("", Brand, ""),
            (" ", Feats, ""),
            (" ", Type, ""),
            (" - ", Size, ""),
            (" - ", Color, ""),
        ],
    ];
    const ELECTRONICS: &[&[Piece]] = &[
        &[
            ("", Brand, ""),
            (" ", Size, ""),
            (" ", Feats, ""),
            (" ", Type, ""),
            (" - ", Color, ""),
        ],
        &[
            ("", Brand, ""),
            (" ", Feats, ""),
            (" ", Type, ""),
            (", ", Size, ""),
            (", ", Color, ""),
        ],
    ];
    const APPAREL: &[&[Piece]] = &[
        &[
            ("", Brand, ""),
            (" ", Gender, ""),
            (" ", Feats, ""),
            (" ", Type, ""),
            (" - ", Color, ""),
            (", ", Size, ""),
        ],
        &[
            ("", Brand, ""),
            (" ", Gender, ""),
            (" ", Type, ""),
            (", ", FeatsComma, ""),
            (", ", Color, ""),
        ],
    ];
    const IMPROVEMENT: &[&[Piece]] = &[
        &[
            ("", Brand, ""),
            (" ", Size, ""),
            (" ", Feats, ""),
            (" ", Type, ""),
            (" in ", Color, ""),
        ],
        &[
            ("", Brand, ""),
            (" ", Feats, ""),
            (" ", Type, ""),
            (" (", Size, ")"),
            (" in ", Color, ""),
        ],
    ];
    match style {
        Style::Grocery | Style::Pets | Style::Beauty => SHELF,
        Style::Household => HOUSEHOLD,
        Style::Kitchen => KITCHEN,
        Style::Electronics => ELECTRONICS,
        Style::Apparel => APPAREL,
        Style::Improvement => IMPROVEMENT,
    }
}

/// A size as catalogs print it: `55 inch` -> `55-Inch`, `12 count` -> `12 Count`,
/// `16 oz` and `1/2 in.` unchanged.
fn display_size(size: &str) -> String {
    const UNITS: &[&str] = &["oz", "fl", "lb", "ml", "in.", "ft", "gal.", "sq", "ft."];
    let words: Vec<String> = size
        .split(' ')
        .map(|w| {
            if UNITS.contains(&w) {
                w.to_string()
            } else {
                title(w)
            }
        })
        .collect();
    words.join(" ").replace(" Inch", "-Inch")
}

/// Cumulative type weights for weighted draws.
pub(crate) struct TypeSampler {
    cdf: Vec<f64>,
}

impl TypeSampler {
    pub(crate) fn new(lex: &Lexicon) -> Self {
        let mut acc = 0.0;
        let cdf = lex
            .types
            .iter()
            .map(|t| {
                acc += t.weight;
                acc
            })
            .collect();
        TypeSampler { cdf }
    }

    pub(crate) fn draw(&self, rng: &mut Rng) -> u16 {
        let x = rng.unit() * self.cdf.last().copied().unwrap_or(1.0);
        self.cdf
            .partition_point(|&c| c <= x)
            .min(self.cdf.len() - 1) as u16
    }
}

/// Generates item `i` of a catalog.
pub(crate) fn make_item(lex: &Lexicon, sampler: &TypeSampler, seed: u64, i: usize) -> Item {
    let mut rng = Rng::stream(seed, i as u64);
    let t = sampler.draw(&mut rng);
    let ty = &lex.types[t as usize];
    let cat = &lex.categories[ty.category as usize];
    let brand = &lex.brands[*rng.pick(&cat.brands) as usize];
    let size = &lex.sizes[*rng.pick(&ty.sizes) as usize];
    let mut gender: Option<&str> = None;
    let mut feats: Vec<&str> = Vec::new();
    for group in &ty.feature_groups {
        let is_gender = lex.gender[group[0] as usize];
        if rng.chance(if is_gender { 0.9 } else { 0.4 }) {
            let a = lex.attrs[*rng.pick(group) as usize].as_str();
            if is_gender {
                gender = Some(a);
            } else {
                feats.push(a);
            }
        }
    }
    let color = (!ty.colors.is_empty() && rng.chance(0.85))
        .then(|| lex.attrs[*rng.pick(&ty.colors) as usize].as_str());
    let type_word = if rng.chance(0.5) {
        &ty.synonyms[0]
    } else {
        rng.pick(&ty.synonyms)
    };

    let style = cat.style;
    let template = rng.pick(templates(style));
    let mut name = String::with_capacity(64);
    for &(prefix, slot, suffix) in template.iter() {
        let value = match slot {
            Slot::Brand => brand.clone(),
            Slot::Gender => gender.map(title).unwrap_or_default(),
            Slot::Feats => feats.iter().map(|f| title(f)).collect::<Vec<_>>().join(" "),
            Slot::FeatsComma => feats
                .iter()
                .map(|f| title(f))
                .collect::<Vec<_>>()
                .join(", "),
            Slot::Type => title(type_word),
            Slot::Size if size == "standard" => String::new(),
            Slot::Size => display_size(size),
            Slot::Color => color.map(title).unwrap_or_default(),
        };
        if value.is_empty() {
            continue;
        }
        if !name.is_empty() {
            name.push_str(prefix);
        }
        name.push_str(&value);
        name.push_str(suffix);
    }

    let facet = match feats.first() {
        Some(f) => format!("{} {}", title(f), ty.name),
        None => ty.name.clone(),
    };
    let mut attributes = BTreeMap::new();
    attributes.insert("brand".to_string(), brand.clone());
    attributes.insert("size".to_string(), size.clone());
    if let Some(c) = color {
        attributes.insert("color".to_string(), c.to_string());
    }
    let all_feats: Vec<&str> = gender.into_iter().chain(feats.iter().copied()).collect();
    if !all_feats.is_empty() {
        attributes.insert("features".to_string(), all_feats.join(", "));
    }
    Item {
        id: format!("SKU{i:07}"),
        name,
        taxonomy: vec![cat.aisle.clone(), cat.name.clone(), ty.name.clone(), facet],
        description: None,
        attributes,
    }
}

/// Generates `n` items in parallel; the result depends only on `seed` and `n`.
pub(crate) fn generate_items(
    lex: &Lexicon,
    n: usize,
    seed: u64,
    progress: &dyn Progress,
) -> Vec<Item> {
    let sampler = TypeSampler::new(lex);
    progress.stage("items", n as u64);
    const CHUNK: usize = 16_384;
    let chunks: Vec<Vec<Item>> = (0..n.div_ceil(CHUNK))
        .into_par_iter()
        .map(|c| {
            let items: Vec<Item> = (c * CHUNK..((c + 1) * CHUNK).min(n))
                .map(|i| make_item(lex, &sampler, seed, i))
                .collect();
            progress.advance(items.len() as u64);
            items
        })
        .collect();
    progress.finish();
    let mut out = Vec::with_capacity(n);
    for c in chunks {
        out.extend(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_display_like_catalogs() {
        assert_eq!(display_size("55 inch"), "55-Inch");
        assert_eq!(display_size("16 oz"), "16 oz");
        assert_eq!(display_size("12 count"), "12 Count");
        assert_eq!(display_size("1/2 in."), "1/2 in.");
        assert_eq!(display_size("size m"), "Size M");
    }
}
