//! Item text for the item tower: the name plus the taxonomy path in natural language
//! (paper 4.2), e.g. `Barilla Spaghetti 16 oz, in Pantry > Pasta`.

use crate::record::Item;

/// How much of the taxonomy path goes into the item text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TaxonomyDepth {
    /// Name only.
    None,
    /// The first `n` levels (the paper uses 2).
    First(usize),
    /// The last `n` levels (the most specific ones).
    Last(usize),
    /// The whole path.
    All,
}

impl TaxonomyDepth {
    /// The levels of `taxonomy` this depth keeps.
    pub fn select<'a>(&self, taxonomy: &'a [String]) -> &'a [String] {
        match *self {
            TaxonomyDepth::None => &[],
            TaxonomyDepth::First(n) => &taxonomy[..n.min(taxonomy.len())],
            TaxonomyDepth::Last(n) => &taxonomy[taxonomy.len() - n.min(taxonomy.len())..],
            TaxonomyDepth::All => taxonomy,
        }
    }
}

impl std::str::FromStr for TaxonomyDepth {
    type Err = String;
    /// `none`, `all`, `N` or `first:N` (first N levels), `last:N`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase();
        let num = |t: &str| {
            t.parse::<usize>().map_err(|_| {
                format!("bad taxonomy depth {s:?} (expected none, all, N, first:N or last:N)")
            })
        };
        match s.as_str() {
            "none" | "0" => Ok(TaxonomyDepth::None),
            "all" => Ok(TaxonomyDepth::All),
            _ => {
                if let Some(n) = s.strip_prefix("first:") {
                    Ok(TaxonomyDepth::First(num(n)?))
                } else if let Some(n) = s.strip_prefix("last:") {
                    Ok(TaxonomyDepth::Last(num(n)?))
                } else {
                    Ok(TaxonomyDepth::First(num(&s)?))
                }
            }
        }
    }
}

/// One piece of a template.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Name,
    Taxonomy,
    Description,
    Attribute(String),
}

/// A validated template with the placeholders `{name}`, `{taxonomy}` (the selected levels
/// joined by ` > `), `{description}` and `{attr:KEY}`; `{{` and `}}` are literal braces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    source: String,
    pieces: Vec<Piece>,
}

impl Template {
    /// Parses a template; unknown placeholders and unbalanced braces are errors.
    pub fn parse(source: &str) -> anyhow::Result<Self> {
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut pos = 0;
        while let Some(c) = source[pos..].chars().next() {
            let rest = &source[pos + c.len_utf8()..];
            match c {
                '{' if rest.starts_with('{') => {
                    lit.push('{');
                    pos += 2;
                }
                '}' if rest.starts_with('}') => {
                    lit.push('}');
                    pos += 2;
                }
                '{' => {
                    let end = rest.find('}').ok_or_else(|| {
                        anyhow::anyhow!("template {source:?}: unclosed '{{' at byte {pos}")
                    })?;
                    let key = &rest[..end];
                    let piece = match key {
                        "name" => Piece::Name,
                        "taxonomy" => Piece::Taxonomy,
                        "description" => Piece::Description,
                        k if k.starts_with("attr:") && k.len() > 5 => {
                            Piece::Attribute(k[5..].to_string())
                        }
                        k => anyhow::bail!(
                            "template {source:?}: unknown placeholder {{{k}}} (expected name, taxonomy, description or attr:KEY)"
                        ),
                    };
                    if !lit.is_empty() {
                        pieces.push(Piece::Literal(std::mem::take(&mut lit)));
                    }
                    pieces.push(piece);
                    pos += 1 + end + 1;
                }
                '}' => anyhow::bail!("template {source:?}: unmatched '}}' at byte {pos}"),
                c => {
                    lit.push(c);
                    pos += c.len_utf8();
                }
            }
        }
        if !lit.is_empty() {
            pieces.push(Piece::Literal(lit));
        }
        Ok(Template {
            source: source.to_string(),
            pieces,
        })
    }

    /// The template text.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

/// How item text is built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemTextConfig {
    /// Levels of the taxonomy to include (default: the first 2, as in the paper).
    pub depth: TaxonomyDepth,
    /// A custom template; default `{name}, in {taxonomy}`, or just the name when the item has
    /// no (selected) taxonomy.
    pub template: Option<Template>,
}

impl Default for ItemTextConfig {
    fn default() -> Self {
        ItemTextConfig {
            depth: TaxonomyDepth::First(2),
            template: None,
        }
    }
}

impl ItemTextConfig {
    /// Name only.
    pub fn name_only() -> Self {
        ItemTextConfig {
            depth: TaxonomyDepth::None,
            template: None,
        }
    }

    /// The text of one item.
    pub fn render(&self, item: &Item) -> String {
        let levels = self.depth.select(&item.taxonomy);
        let Some(t) = &self.template else {
            if levels.is_empty() {
                return item.name.clone();
            }
            return format!("{}, in {}", item.name, levels.join(" > "));
        };
        let mut out = String::with_capacity(item.name.len() + 32);
        for p in &t.pieces {
            match p {
                Piece::Literal(s) => out.push_str(s),
                Piece::Name => out.push_str(&item.name),
                Piece::Taxonomy => out.push_str(&levels.join(" > ")),
                Piece::Description => out.push_str(item.description.as_deref().unwrap_or("")),
                Piece::Attribute(k) => {
                    out.push_str(item.attributes.get(k).map(String::as_str).unwrap_or(""))
                }
            }
        }
        out.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    /// The texts of all items, in order.
    pub fn render_all<'a>(&self, items: impl IntoIterator<Item = &'a Item>) -> Vec<String> {
        items.into_iter().map(|i| self.render(i)).collect()
    }
}

impl TaxonomyDepth {
    /// The first `levels` levels (0: none), the form configuration files use.
    pub fn first(levels: usize) -> Self {
        match levels {
            0 => TaxonomyDepth::None,
            n => TaxonomyDepth::First(n),
        }
    }
}

impl std::fmt::Display for TaxonomyDepth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TaxonomyDepth::None => f.write_str("none"),
            TaxonomyDepth::All => f.write_str("all"),
            TaxonomyDepth::First(n) => write!(f, "{n}"),
            TaxonomyDepth::Last(n) => write!(f, "last:{n}"),
        }
    }
}

impl ItemTextConfig {
    /// The name and the first `levels` taxonomy levels (0: the name only), the form older
    /// configurations and the `--taxonomy-depth` flags give.
    pub fn with_taxonomy_levels(levels: usize) -> Self {
        ItemTextConfig {
            depth: TaxonomyDepth::first(levels),
            template: None,
        }
    }

    /// This item text settled with a configuration's older `taxonomy_depth` field (`section`
    /// names its table): the depth replaces a default item text; an item text and a depth
    /// that disagree are an error naming both fields.
    pub fn with_legacy_depth(self, depth: Option<usize>, section: &str) -> anyhow::Result<Self> {
        let Some(levels) = depth else {
            return Ok(self);
        };
        let legacy = ItemTextConfig::with_taxonomy_levels(levels);
        anyhow::ensure!(
            self == ItemTextConfig::default() || self == legacy,
            "config fields `{section}.item_text` ({self}) and `{section}.taxonomy_depth` ({levels}) disagree: give `{section}.item_text` only"
        );
        Ok(legacy)
    }
}

/// The written form, used by `--item-text`, index manifests and model directories:
/// `name` (the name only), `name+taxonomy` (the name and the first two taxonomy levels, the
/// default), `name+taxonomy:DEPTH` (DEPTH as [`TaxonomyDepth`] reads it: `3`, `all`,
/// `last:1`) and `template:DEPTH:TEMPLATE` (a [`Template`]).
impl std::fmt::Display for ItemTextConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.template, self.depth) {
            (Some(t), d) => write!(f, "template:{d}:{}", t.as_str()),
            (None, TaxonomyDepth::None) => f.write_str("name"),
            (None, TaxonomyDepth::First(2)) => f.write_str("name+taxonomy"),
            (None, d) => write!(f, "name+taxonomy:{d}"),
        }
    }
}

impl std::str::FromStr for ItemTextConfig {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let plain = |depth| ItemTextConfig {
            depth,
            template: None,
        };
        match s {
            "name" => return Ok(plain(TaxonomyDepth::None)),
            "name+taxonomy" => return Ok(ItemTextConfig::default()),
            _ => {}
        }
        if let Some(d) = s.strip_prefix("name+taxonomy:") {
            return Ok(plain(d.parse()?));
        }
        if let Some(rest) = s.strip_prefix("template:") {
            // The depth never holds ':' except after `last`.
            let (depth, template) = match rest.strip_prefix("last:") {
                Some(r) => {
                    let (n, t) = r
                        .split_once(':')
                        .ok_or("template: expected DEPTH:TEMPLATE")?;
                    (format!("last:{n}"), t)
                }
                None => {
                    let (d, t) = rest
                        .split_once(':')
                        .ok_or("template: expected DEPTH:TEMPLATE")?;
                    (d.to_string(), t)
                }
            };
            return Ok(ItemTextConfig {
                depth: depth.parse()?,
                template: Some(Template::parse(template).map_err(|e| e.to_string())?),
            });
        }
        Err(format!(
            "unknown item text {s:?} (expected name, name+taxonomy, name+taxonomy:DEPTH or template:DEPTH:TEMPLATE)"
        ))
    }
}

impl serde::Serialize for ItemTextConfig {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ItemTextConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_text_round_trips_through_its_written_form() {
        for text in [
            "name",
            "name+taxonomy",
            "name+taxonomy:3",
            "name+taxonomy:all",
            "name+taxonomy:last:1",
            "template:2:{name} ({taxonomy})",
            "template:last:1:{name}: {attr:brand}",
        ] {
            let c: ItemTextConfig = text.parse().unwrap();
            assert_eq!(c.to_string(), text);
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(serde_json::from_str::<ItemTextConfig>(&json).unwrap(), c);
        }
        assert_eq!(
            "name".parse::<ItemTextConfig>().unwrap(),
            ItemTextConfig::name_only()
        );
        assert_eq!(
            "name+taxonomy".parse::<ItemTextConfig>().unwrap(),
            ItemTextConfig::default()
        );
        assert_eq!(
            ItemTextConfig::with_taxonomy_levels(0),
            ItemTextConfig::name_only()
        );
        assert_eq!(
            ItemTextConfig::with_taxonomy_levels(2),
            ItemTextConfig::default()
        );
        let mut it = item();
        it.taxonomy = vec!["Tools".into(), "Drills".into(), "Cordless".into()];
        let three: ItemTextConfig = "name+taxonomy:3".parse().unwrap();
        assert!(three.render(&it).ends_with("Tools > Drills > Cordless"));
        for bad in [
            "title",
            "name+taxonomy:deep",
            "template:2:{nope}",
            "template:2",
        ] {
            let e = bad.parse::<ItemTextConfig>().unwrap_err();
            assert!(!e.is_empty(), "{bad}");
        }
    }

    fn item() -> Item {
        let mut i = Item::new("1", "Barilla Spaghetti 16 oz");
        i.taxonomy = vec![
            "Pantry".into(),
            "Pasta".into(),
            "Spaghetti".into(),
            "Thin Spaghetti".into(),
        ];
        i.attributes.insert("brand".into(), "Barilla".into());
        i
    }

    #[test]
    fn depths_and_default_format() {
        let i = item();
        assert_eq!(
            ItemTextConfig::default().render(&i),
            "Barilla Spaghetti 16 oz, in Pantry > Pasta"
        );
        let all = ItemTextConfig {
            depth: TaxonomyDepth::All,
            template: None,
        };
        assert_eq!(
            all.render(&i),
            "Barilla Spaghetti 16 oz, in Pantry > Pasta > Spaghetti > Thin Spaghetti"
        );
        let last = ItemTextConfig {
            depth: TaxonomyDepth::Last(1),
            template: None,
        };
        assert_eq!(
            last.render(&i),
            "Barilla Spaghetti 16 oz, in Thin Spaghetti"
        );
        assert_eq!(
            ItemTextConfig::name_only().render(&i),
            "Barilla Spaghetti 16 oz"
        );
        // No taxonomy (Home Depot): just the name.
        assert_eq!(
            ItemTextConfig::default().render(&Item::new("2", "Angle Bracket")),
            "Angle Bracket"
        );
        assert_eq!(
            "last:2".parse::<TaxonomyDepth>().unwrap(),
            TaxonomyDepth::Last(2)
        );
        assert_eq!(
            "2".parse::<TaxonomyDepth>().unwrap(),
            TaxonomyDepth::First(2)
        );
        assert!("two".parse::<TaxonomyDepth>().is_err());
    }

    #[test]
    fn templates() {
        let cfg = ItemTextConfig {
            depth: TaxonomyDepth::First(1),
            template: Some(
                Template::parse("{attr:brand} | {name} {{{taxonomy}}} {attr:color}").unwrap(),
            ),
        };
        assert_eq!(
            cfg.render(&item()),
            "Barilla | Barilla Spaghetti 16 oz {Pantry}"
        );
        assert!(
            Template::parse("{nmae}")
                .unwrap_err()
                .to_string()
                .contains("unknown placeholder")
        );
        assert!(Template::parse("{name").is_err());
        assert!(Template::parse("name}").is_err());
    }

    #[test]
    fn legacy_taxonomy_depth_settles_with_the_item_text() {
        let d = ItemTextConfig::default();
        assert_eq!(d.clone().with_legacy_depth(None, "data").unwrap(), d);
        assert_eq!(
            d.clone().with_legacy_depth(Some(0), "data").unwrap(),
            ItemTextConfig::name_only()
        );
        let three = ItemTextConfig::with_taxonomy_levels(3);
        assert_eq!(
            three.clone().with_legacy_depth(Some(3), "data").unwrap(),
            three
        );
        let e = three
            .with_legacy_depth(Some(1), "data")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`data.item_text`") && e.contains("`data.taxonomy_depth` (1)"),
            "{e}"
        );
    }
}
