//! The marketplace vocabulary: departments, a taxonomy of aisles, categories and product types,
//! brands, sizes, features and colours, complement and substitute links, and a phrase index
//! that maps normalised query phrases to these entities.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

const DATA: &str = include_str!("lexicon_data.txt");

/// The parsed built-in lexicon.
pub(crate) static LEXICON: LazyLock<Lexicon> =
    LazyLock::new(|| Lexicon::parse(DATA).expect("the built-in marketplace lexicon is valid"));

/// Sentinel for "none" in compact ids.
pub(crate) const NONE: u16 = u16::MAX;

/// A name style of a department.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Style {
    Grocery,
    Household,
    Kitchen,
    Electronics,
    Apparel,
    Improvement,
    Pets,
    Beauty,
}

impl Style {
    fn parse(s: &str) -> Result<Style, String> {
        Ok(match s {
            "grocery" => Style::Grocery,
            "household" => Style::Household,
            "kitchen" => Style::Kitchen,
            "electronics" => Style::Electronics,
            "apparel" => Style::Apparel,
            "improvement" => Style::Improvement,
            "pets" => Style::Pets,
            "beauty" => Style::Beauty,
            other => return Err(format!("unknown department style {other:?}")),
        })
    }
}

pub(crate) struct Category {
    pub name: String,
    pub aisle: String,
    pub style: Style,
    pub synonyms: Vec<String>,
    pub spanish: Vec<String>,
    pub french: Vec<String>,
    pub brands: Vec<u16>,
    pub types: Vec<u16>,
}

pub(crate) struct ProductType {
    pub name: String,
    pub category: u16,
    pub synonyms: Vec<String>,
    pub spanish: Vec<String>,
    pub french: Vec<String>,
    pub sizes: Vec<u16>,
    /// Groups of mutually exclusive feature values (attribute ids).
    pub feature_groups: Vec<Vec<u16>>,
    /// Colour attribute ids (empty when the type has no colours).
    pub colors: Vec<u16>,
    /// Relative frequency in the catalog.
    pub weight: f64,
}

/// What a phrase refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Entity {
    Category(u16),
    Type(u16),
    Brand(u16),
    Attr(u16),
    Size(u16),
}

pub(crate) struct Lexicon {
    pub categories: Vec<Category>,
    pub types: Vec<ProductType>,
    pub brands: Vec<String>,
    /// Attribute values as written (lower case), e.g. `whole wheat`, `men's`, `navy`.
    pub attrs: Vec<String>,
    /// Whether an attribute is a gender (`men's`, `women's`, `kids'`).
    pub gender: Vec<bool>,
    pub sizes: Vec<String>,
    /// `complement[a * n + b]`: types a and b complement each other.
    complement: Vec<bool>,
    /// `substitute[a * n + b]`: types a and b substitute each other.
    substitute: Vec<bool>,
    /// Normalised phrase -> entity.
    pub phrases: HashMap<String, Entity>,
    /// Every token of every phrase.
    pub vocab: HashSet<String>,
    /// Vocabulary tokens grouped by length in characters, for fuzzy matching.
    vocab_by_len: HashMap<usize, Vec<(String, Vec<char>)>>,
    pub max_phrase_tokens: usize,
    pub brand_ids: HashMap<String, u16>,
    pub type_ids: HashMap<String, u16>,
    pub category_ids: HashMap<String, u16>,
}

/// Lower case with common Latin accents removed.
pub(crate) fn fold(text: &str) -> String {
    text.chars()
        .flat_map(char::to_lowercase)
        .map(|c| crate::spelling::strip_accent(c).unwrap_or(c))
        .collect()
}

/// A light plural stemmer, applied alike to lexicon phrases and query tokens.
pub(crate) fn stem(t: &str) -> String {
    let n = t.chars().count();
    if n >= 4 && t.ends_with("ies") {
        return format!("{}y", &t[..t.len() - 3]);
    }
    if n >= 5
        && (t.ends_with("shes") || t.ends_with("ches") || t.ends_with("xes") || t.ends_with("sses"))
    {
        return t[..t.len() - 2].to_string();
    }
    if n >= 3
        && t.ends_with('s')
        && !t.ends_with("ss")
        && !t.ends_with("us")
        && t.chars().rev().nth(1).is_some_and(|c| c.is_alphabetic())
    {
        return t[..t.len() - 1].to_string();
    }
    t.to_string()
}

/// Folded, apostrophe-free, stemmed tokens (runs of letters and digits).
pub(crate) fn norm_tokens(text: &str) -> Vec<String> {
    let folded: String = fold(text)
        .chars()
        .filter(|c| *c != '\'' && *c != '’')
        .collect();
    crate::tokens::tokens(&folded)
        .iter()
        .map(|t| stem(t))
        .collect()
}

fn list(field: &str) -> Vec<String> {
    field
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

impl Lexicon {
    fn parse(data: &str) -> Result<Lexicon, String> {
        let mut lex = Lexicon {
            categories: Vec::new(),
            types: Vec::new(),
            brands: Vec::new(),
            attrs: Vec::new(),
            gender: Vec::new(),
            sizes: Vec::new(),
            complement: Vec::new(),
            substitute: Vec::new(),
            phrases: HashMap::new(),
            vocab: HashSet::new(),
            vocab_by_len: HashMap::new(),
            max_phrase_tokens: 1,
            brand_ids: HashMap::new(),
            type_ids: HashMap::new(),
            category_ids: HashMap::new(),
        };
        let mut palettes: HashMap<String, Vec<u16>> = HashMap::new();
        let mut attr_ids: HashMap<String, u16> = HashMap::new();
        let mut size_ids: HashMap<String, u16> = HashMap::new();
        let mut style = Style::Grocery;
        let mut house: Option<u16> = None;
        let mut aisle = String::new();
        let mut links: Vec<(char, Vec<String>, usize)> = Vec::new();

        fn intern(map: &mut HashMap<String, u16>, list: &mut Vec<String>, key: &str) -> u16 {
            if let Some(&id) = map.get(key) {
                return id;
            }
            list.push(key.to_string());
            let id = (list.len() - 1) as u16;
            map.insert(key.to_string(), id);
            id
        }

        for (n, raw) in data.lines().enumerate() {
            let line_no = n + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (tag, rest) = line.split_at(1);
            let fields: Vec<&str> = rest.split('|').map(str::trim).collect();
            let err = |m: &str| format!("lexicon line {line_no}: {m}");
            match tag {
                "P" => {
                    let colors = list(
                        fields
                            .get(1)
                            .ok_or_else(|| err("palette without colours"))?,
                    );
                    let ids = colors
                        .iter()
                        .map(|c| intern(&mut attr_ids, &mut lex.attrs, c))
                        .collect();
                    palettes.insert(fields[0].to_string(), ids);
                }
                "D" => {
                    style = Style::parse(fields[0]).map_err(|e| err(&e))?;
                    let h = fields
                        .get(1)
                        .ok_or_else(|| err("department without house brand"))?;
                    house = Some(intern(&mut lex.brand_ids, &mut lex.brands, h));
                }
                "A" => aisle = fields[0].to_string(),
                "C" => {
                    if fields.len() != 5 {
                        return Err(err("a category needs 5 fields"));
                    }
                    let mut brands: Vec<u16> = list(fields[4])
                        .iter()
                        .map(|b| intern(&mut lex.brand_ids, &mut lex.brands, b))
                        .collect();
                    if let Some(h) = house
                        && !brands.contains(&h)
                    {
                        brands.push(h);
                    }
                    let id = lex.categories.len() as u16;
                    if lex.category_ids.insert(fields[0].to_string(), id).is_some() {
                        return Err(err("duplicate category name"));
                    }
                    lex.categories.push(Category {
                        name: fields[0].to_string(),
                        aisle: aisle.clone(),
                        style,
                        synonyms: list(fields[1]),
                        spanish: list(fields[2]),
                        french: list(fields[3]),
                        brands,
                        types: Vec::new(),
                    });
                }
                "T" => {
                    if fields.len() != 7 {
                        return Err(err("a type needs 7 fields"));
                    }
                    let category = lex
                        .categories
                        .len()
                        .checked_sub(1)
                        .ok_or_else(|| err("a type before any category"))?
                        as u16;
                    let sizes = list(fields[4])
                        .iter()
                        .map(|s| intern(&mut size_ids, &mut lex.sizes, s))
                        .collect();
                    let feature_groups = fields[5]
                        .split(';')
                        .map(list)
                        .filter(|g| !g.is_empty())
                        .map(|g| {
                            g.iter()
                                .map(|a| intern(&mut attr_ids, &mut lex.attrs, a))
                                .collect()
                        })
                        .collect();
                    let colors = if fields[6].is_empty() {
                        Vec::new()
                    } else {
                        palettes
                            .get(fields[6])
                            .cloned()
                            .ok_or_else(|| err(&format!("unknown palette {:?}", fields[6])))?
                    };
                    let id = lex.types.len() as u16;
                    if lex.type_ids.insert(fields[0].to_string(), id).is_some()
                        || lex.category_ids.contains_key(fields[0])
                    {
                        return Err(err(&format!("type name {:?} is not unique", fields[0])));
                    }
                    let h = crate::hash::hash_str(0x7459_5045, fields[0]);
                    lex.types.push(ProductType {
                        name: fields[0].to_string(),
                        category,
                        synonyms: list(fields[1]),
                        spanish: list(fields[2]),
                        french: list(fields[3]),
                        sizes,
                        feature_groups,
                        colors,
                        weight: 0.4 + 1.6 * crate::hash::unit(h),
                    });
                    lex.categories[category as usize].types.push(id);
                }
                "L" | "S" => {
                    let names: Vec<String> =
                        rest.split('~').map(|s| s.trim().to_string()).collect();
                    if names.len() < 2 {
                        return Err(err("a link needs at least two names"));
                    }
                    links.push((tag.chars().next().unwrap_or('L'), names, line_no));
                }
                other => return Err(err(&format!("unknown tag {other:?}"))),
            }
        }
        for (name, &id) in &lex.category_ids {
            if lex.type_ids.contains_key(name) {
                return Err(format!("category and type share the name {name:?} ({id})"));
            }
        }
        lex.gender = lex
            .attrs
            .iter()
            .map(|a| matches!(a.as_str(), "men's" | "women's" | "kids'"))
            .collect();

        // Links.
        let nt = lex.types.len();
        lex.complement = vec![false; nt * nt];
        lex.substitute = vec![false; nt * nt];
        for (tag, names, line_no) in links {
            let mut groups: Vec<Vec<u16>> = Vec::new();
            for n in &names {
                if let Some(&t) = lex.type_ids.get(n) {
                    groups.push(vec![t]);
                } else if let Some(&c) = lex.category_ids.get(n) {
                    if tag == 'S' {
                        return Err(format!(
                            "lexicon line {line_no}: substitutes must be types, {n:?} is a category"
                        ));
                    }
                    groups.push(lex.categories[c as usize].types.clone());
                } else {
                    return Err(format!("lexicon line {line_no}: unknown name {n:?}"));
                }
            }
            let table = if tag == 'L' {
                &mut lex.complement
            } else {
                &mut lex.substitute
            };
            for (i, a) in groups.iter().enumerate() {
                for b in groups.iter().skip(i + 1) {
                    for &x in a {
                        for &y in b {
                            table[x as usize * nt + y as usize] = true;
                            table[y as usize * nt + x as usize] = true;
                        }
                    }
                }
            }
        }

        // Phrases: explicit synonyms, names and values must not clash; display names of types
        // and categories are added only where free.
        let add =
            |lex: &mut Lexicon, phrase: &str, e: Entity, strict: bool| -> Result<(), String> {
                let toks = norm_tokens(phrase);
                if toks.is_empty() {
                    return Ok(());
                }
                let key = toks.join(" ");
                match lex.phrases.get(&key) {
                    Some(&old) if old != e => {
                        if strict {
                            return Err(format!(
                                "phrase {phrase:?} ({key:?}) means both {old:?} and {e:?}"
                            ));
                        }
                    }
                    Some(_) => {}
                    None => {
                        lex.max_phrase_tokens = lex.max_phrase_tokens.max(toks.len());
                        lex.vocab.extend(toks);
                        lex.phrases.insert(key, e);
                    }
                }
                Ok(())
            };
        for c in 0..lex.categories.len() {
            let cat = &lex.categories[c];
            let words: Vec<String> = cat
                .synonyms
                .iter()
                .chain(&cat.spanish)
                .chain(&cat.french)
                .cloned()
                .collect();
            for w in words {
                add(&mut lex, &w, Entity::Category(c as u16), true)?;
            }
        }
        for t in 0..lex.types.len() {
            let ty = &lex.types[t];
            let words: Vec<String> = ty
                .synonyms
                .iter()
                .chain(&ty.spanish)
                .chain(&ty.french)
                .cloned()
                .collect();
            for w in words {
                add(&mut lex, &w, Entity::Type(t as u16), true)?;
            }
        }
        for b in 0..lex.brands.len() {
            let name = lex.brands[b].clone();
            add(&mut lex, &name, Entity::Brand(b as u16), true)?;
        }
        for a in 0..lex.attrs.len() {
            let name = lex.attrs[a].clone();
            add(&mut lex, &name, Entity::Attr(a as u16), true)?;
        }
        for s in 0..lex.sizes.len() {
            let name = lex.sizes[s].clone();
            add(&mut lex, &name, Entity::Size(s as u16), true)?;
        }
        for t in 0..lex.types.len() {
            let name = lex.types[t].name.clone();
            add(&mut lex, &name, Entity::Type(t as u16), false)?;
        }
        for c in 0..lex.categories.len() {
            let name = lex.categories[c].name.clone();
            add(&mut lex, &name, Entity::Category(c as u16), false)?;
        }
        let mut by_len: HashMap<usize, Vec<(String, Vec<char>)>> = HashMap::new();
        for v in &lex.vocab {
            let chars: Vec<char> = v.chars().collect();
            by_len
                .entry(chars.len())
                .or_default()
                .push((v.clone(), chars));
        }
        for list in by_len.values_mut() {
            list.sort();
        }
        lex.vocab_by_len = by_len;
        Ok(lex)
    }

    pub(crate) fn is_complement(&self, a: u16, b: u16) -> bool {
        self.complement[a as usize * self.types.len() + b as usize]
    }

    pub(crate) fn is_substitute(&self, a: u16, b: u16) -> bool {
        self.substitute[a as usize * self.types.len() + b as usize]
    }

    /// Types linked to `t` as complements or substitutes.
    pub(crate) fn related_types(&self, t: u16) -> Vec<u16> {
        (0..self.types.len() as u16)
            .filter(|&x| x != t && (self.is_complement(t, x) || self.is_substitute(t, x)))
            .collect()
    }

    /// The vocabulary token closest to an unknown token, when unambiguous: edit distance 1 for
    /// tokens of 5-8 characters, 2 for longer ones.
    pub(crate) fn correct(&self, token: &str) -> Option<String> {
        let t: Vec<char> = token.chars().collect();
        let n = t.len();
        let max = match n {
            0..=4 => return None,
            5..=8 => 1,
            _ => 2,
        };
        let mut best: Option<(usize, &String)> = None;
        let mut tie = false;
        for len in n.saturating_sub(max)..=n + max {
            for (v, chars) in self.vocab_by_len.get(&len).into_iter().flatten() {
                let Some(d) = osa_within(&t, chars, max) else {
                    continue;
                };
                match best {
                    Some((bd, _)) if d > bd => {}
                    Some((bd, _)) if d == bd => tie = true,
                    _ => {
                        best = Some((d, v));
                        tie = false;
                    }
                }
            }
        }
        match best {
            Some((_, v)) if !tie => Some(v.clone()),
            _ => None,
        }
    }
}

/// Optimal-string-alignment distance if it is at most `max` (early exit otherwise).
fn osa_within(a: &[char], b: &[char], max: usize) -> Option<usize> {
    let m = b.len();
    let mut prev2: Vec<usize> = vec![0; m + 1];
    let mut prev: Vec<usize> = (0..=m).collect();
    let mut cur: Vec<usize> = vec![0; m + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        let mut row_min = cur[0];
        for j in 1..=m {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(prev2[j - 2] + 1);
            }
            cur[j] = v;
            row_min = row_min.min(v);
        }
        if row_min > max {
            return None;
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    (prev[m] <= max).then_some(prev[m])
}

/// Title case for names: `whole wheat` -> `Whole Wheat`, `t-shirt` -> `T-Shirt`, `4k` -> `4K`.
pub(crate) fn title(text: &str) -> String {
    const UPPER: &[&str] = &[
        "led", "oled", "tv", "tvs", "hdmi", "usb", "4k", "8k", "hdr", "bbq", "ssd", "ram", "rtx",
        "5g", "he", "xl", "oj", "wifi", "bpa", "k", "c", "s", "m", "l",
    ];
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if word.is_empty() {
            return;
        }
        let unit = word.trim_start_matches(|c: char| c.is_ascii_digit() || c == '.');
        if UPPER.contains(&word.as_str())
            || (unit.len() < word.len() && matches!(unit, "gb" | "tb" | "v" | "w"))
        {
            out.push_str(&word.to_uppercase());
        } else if unit.len() < word.len() && matches!(unit, "hz" | "ah") {
            out.push_str(&word[..word.len() - unit.len()]);
            out.push_str(if unit == "hz" { "Hz" } else { "Ah" });
        } else {
            let mut cs = word.chars();
            if let Some(f) = cs.next() {
                out.extend(f.to_uppercase());
                out.push_str(cs.as_str());
            }
        }
        word.clear();
    };
    for c in text.chars() {
        if c == ' ' || c == '-' || c == '/' {
            flush(&mut word, &mut out);
            out.push(c);
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_lexicon_parses_without_clashes() {
        let lex = &*LEXICON;
        assert!(lex.types.len() >= 90, "{} types", lex.types.len());
        assert!(lex.categories.len() >= 40);
        for c in &lex.categories {
            assert!(!c.types.is_empty(), "category {} has no types", c.name);
            assert!(
                c.brands.len() >= 2,
                "category {} has too few brands",
                c.name
            );
        }
        for t in &lex.types {
            assert!(
                !t.sizes.is_empty() && !t.synonyms.is_empty(),
                "type {}",
                t.name
            );
        }
        let pasta = lex.type_ids["Spaghetti"];
        let sauce = lex.type_ids["Marinara Sauce"];
        assert!(lex.is_complement(pasta, sauce) && lex.is_complement(sauce, pasta));
        assert!(lex.is_substitute(pasta, lex.type_ids["Penne"]));
        assert!(!lex.is_complement(pasta, lex.type_ids["Dish Soap"]));
    }

    #[test]
    fn normalisation_and_titles() {
        assert_eq!(norm_tokens("Men's T-Shirts"), ["men", "t", "shirt"]);
        assert_eq!(norm_tokens("Pâtes"), ["pate"]);
        assert_eq!(norm_tokens("brushes glass tvs"), ["brush", "glass", "tv"]);
        assert_eq!(title("4k smart led tv"), "4K Smart LED TV");
        assert_eq!(title("t-shirt"), "T-Shirt");
        assert_eq!(title("men's"), "Men's");
        assert_eq!(
            title("128gb 20v 120hz 2.0ah 1080p"),
            "128GB 20V 120Hz 2.0Ah 1080p"
        );
        let lex = &*LEXICON;
        assert_eq!(lex.correct("spahgetti").as_deref(), Some("spaghetti"));
        assert_eq!(lex.correct("zzzzzz"), None);
    }
}
