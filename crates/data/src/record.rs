//! The records the data layer works with: catalog items, relevance judgments and the catalog
//! index that ties judgments to items.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};

/// Highest relevance label: 2 = relevant (exact), 1 = substitute or complement, 0 = irrelevant.
pub const MAX_LABEL: u8 = 2;

/// One catalog item.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// Unique item id.
    pub id: String,
    /// Item name (title).
    pub name: String,
    /// Taxonomy path from the broadest level down; any depth, possibly empty.
    #[serde(default)]
    pub taxonomy: Vec<String>,
    /// Free-text description.
    #[serde(default)]
    pub description: Option<String>,
    /// Further attributes (brand, size, colour, ...).
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

impl Item {
    /// An item with a name and no taxonomy, description or attributes.
    pub fn new(id: impl Into<String>, name: impl Into<String>) -> Self {
        Item {
            id: id.into(),
            name: name.into(),
            taxonomy: Vec::new(),
            description: None,
            attributes: BTreeMap::new(),
        }
    }
}

/// Where a judgment came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A human annotator.
    Human,
    /// A relevance labeler model (for example a finetuned LLM).
    Labeler,
    /// Found by hard-sample mining and labeled afterwards.
    Mined,
    /// A pair built from a synthetic query.
    Synthetic,
    /// A label corrected by an engagement audit's second labeler.
    Audit,
}

impl Source {
    /// All sources, in a fixed order.
    pub const ALL: [Source; 5] = [
        Source::Human,
        Source::Labeler,
        Source::Mined,
        Source::Synthetic,
        Source::Audit,
    ];

    /// The lower-case name used in files.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Human => "human",
            Source::Labeler => "labeler",
            Source::Mined => "mined",
            Source::Synthetic => "synthetic",
            Source::Audit => "audit",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Source {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "human" => Ok(Source::Human),
            "labeler" | "llm" => Ok(Source::Labeler),
            "mined" => Ok(Source::Mined),
            "synthetic" => Ok(Source::Synthetic),
            "audit" => Ok(Source::Audit),
            other => Err(format!(
                "unknown source {other:?} (expected human, labeler, mined, synthetic or audit)"
            )),
        }
    }
}

/// Engagement counts observed for a (query, item) pair.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Engagement {
    pub impressions: u32,
    pub clicks: u32,
    pub add_to_carts: u32,
}

/// One relevance judgment of an item for a query.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Judgment {
    pub query: String,
    pub item_id: String,
    /// 0, 1 or 2.
    pub label: u8,
    #[serde(default)]
    pub source: Option<Source>,
    #[serde(default)]
    pub engagement: Option<Engagement>,
}

impl Judgment {
    /// A judgment without source or engagement.
    pub fn new(query: impl Into<String>, item_id: impl Into<String>, label: u8) -> Self {
        Judgment {
            query: query.into(),
            item_id: item_id.into(),
            label,
            source: None,
            engagement: None,
        }
    }
}

/// Returned when a catalog is built from items that repeat an id.
#[derive(Debug, thiserror::Error)]
#[error("duplicate item id {id:?} (items #{first} and #{second})")]
pub struct DuplicateItemId {
    pub id: String,
    pub first: usize,
    pub second: usize,
}

/// A catalog: items in a fixed order plus an index from id to position.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    items: Vec<Item>,
    index: HashMap<String, u32>,
}

impl Catalog {
    /// Builds a catalog; item ids must be unique.
    pub fn from_items(items: Vec<Item>) -> Result<Self, DuplicateItemId> {
        assert!(
            items.len() < u32::MAX as usize,
            "catalogs are limited to u32::MAX items"
        );
        let mut index = HashMap::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            if let Some(first) = index.insert(item.id.clone(), i as u32) {
                return Err(DuplicateItemId {
                    id: item.id.clone(),
                    first: first as usize,
                    second: i,
                });
            }
        }
        Ok(Catalog { items, index })
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the catalog has no items.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The items in catalog order.
    pub fn items(&self) -> &[Item] {
        &self.items
    }

    /// The item at position `i`.
    pub fn get(&self, i: usize) -> Option<&Item> {
        self.items.get(i)
    }

    /// Position of the item with this id.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.index.get(id).map(|&i| i as usize)
    }

    /// The item with this id.
    pub fn by_id(&self, id: &str) -> Option<&Item> {
        self.index_of(id).map(|i| &self.items[i])
    }

    /// Whether an item with this id exists.
    pub fn contains(&self, id: &str) -> bool {
        self.index.contains_key(id)
    }

    /// Iterates over the items.
    pub fn iter(&self) -> std::slice::Iter<'_, Item> {
        self.items.iter()
    }

    /// Gives back the items.
    pub fn into_items(self) -> Vec<Item> {
        self.items
    }
}

impl<'a> IntoIterator for &'a Catalog {
    type Item = &'a Item;
    type IntoIter = std::slice::Iter<'a, Item>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}

/// A catalog together with judgments on its items.
#[derive(Clone, Debug, Default)]
pub struct Dataset {
    pub catalog: Catalog,
    pub judgments: Vec<Judgment>,
}
