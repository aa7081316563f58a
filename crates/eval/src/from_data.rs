//! Conversion from strata-data's records into evaluation inputs.

use strata_data::{Catalog as DataCatalog, Item, Judgment as DataJudgment};

use crate::input::{Catalog, InputError, Qrels};

/// Which item fields make up the text that is embedded and indexed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ItemText {
    /// The item name (title) only.
    Name,
    /// The name followed by the first two taxonomy levels in natural language, exactly as the
    /// trainer and the miner build item text (`strata_data::ItemTextConfig::default()`):
    /// `name, in level 1 > level 2`. Items without a taxonomy get their name.
    #[default]
    NameAndTaxonomy,
}

impl std::str::FromStr for ItemText {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "name" => Ok(ItemText::Name),
            "name+taxonomy" => Ok(ItemText::NameAndTaxonomy),
            o => Err(format!(
                "unknown item text {o:?} (expected name or name+taxonomy)"
            )),
        }
    }
}

impl std::fmt::Display for ItemText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ItemText::Name => "name",
            ItemText::NameAndTaxonomy => "name+taxonomy",
        })
    }
}

/// The text of one item.
pub fn item_text(item: &Item, how: ItemText) -> String {
    match how {
        ItemText::NameAndTaxonomy => strata_data::ItemTextConfig::default().render(item),
        ItemText::Name => item.name.clone(),
    }
}

/// The evaluation catalog of a strata-data catalog (same item order).
pub fn catalog(data: &DataCatalog, how: ItemText) -> Result<Catalog, InputError> {
    Catalog::new(data.iter().map(|i| (i.id.clone(), item_text(i, how))))
}

/// Judgments grouped per query.
pub fn qrels(judgments: &[DataJudgment]) -> Result<Qrels, InputError> {
    let mut q = Qrels::new();
    for j in judgments {
        q.push(j.query.clone(), j.item_id.clone(), j.label)?;
    }
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_records_keeping_order() {
        let mut a = Item::new("a", "Cordless Drill");
        a.taxonomy = vec!["Tools".into(), "Power Tools".into()];
        let b = Item::new("b", "Hammer");
        let data = DataCatalog::from_items(vec![a.clone(), b]).unwrap();
        let c = catalog(&data, ItemText::Name).unwrap();
        assert_eq!(c.ids(), ["a", "b"]);
        assert_eq!(c.texts(), ["Cordless Drill", "Hammer"]);
        let c = catalog(&data, ItemText::NameAndTaxonomy).unwrap();
        assert_eq!(c.texts()[0], "Cordless Drill, in Tools > Power Tools");
        assert_eq!(c.texts()[1], "Hammer");
        assert!(catalog(&DataCatalog::default(), ItemText::Name).is_err());

        let q = qrels(&[
            DataJudgment::new("drill", "a", 2),
            DataJudgment::new("drill", "b", 0),
        ])
        .unwrap();
        assert_eq!(q.len(), 1);
        assert_eq!(
            q.queries()[0].judged,
            vec![("a".to_string(), 2), ("b".to_string(), 0)]
        );
        assert!(qrels(&[DataJudgment::new("x", "a", 7)]).is_err());
        assert_eq!(
            "name+taxonomy".parse::<ItemText>().unwrap(),
            ItemText::NameAndTaxonomy
        );
    }
}
