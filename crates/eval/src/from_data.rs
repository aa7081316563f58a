//! Conversion from strata-data's records into evaluation inputs.

use strata_data::{Catalog as DataCatalog, Judgment as DataJudgment};

pub use strata_data::ItemTextConfig;

use crate::input::{Corpus, InputError, Qrels};

/// The evaluation catalog of a strata-data catalog (same item order).
pub fn catalog(data: &DataCatalog, how: &ItemTextConfig) -> Result<Corpus, InputError> {
    Corpus::new(data.iter().map(|i| (i.id.clone(), how.render(i))))
}

/// Judgments grouped per query.
pub fn qrels(judgments: &[DataJudgment]) -> Result<Qrels, InputError> {
    Qrels::from_judgments(judgments)
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_data::Item;

    #[test]
    fn converts_records_keeping_order() {
        let mut a = Item::new("a", "Cordless Drill");
        a.taxonomy = vec!["Tools".into(), "Power Tools".into()];
        let b = Item::new("b", "Hammer");
        let data = DataCatalog::from_items(vec![a.clone(), b]).unwrap();
        let c = catalog(&data, &ItemTextConfig::name_only()).unwrap();
        assert_eq!(c.ids(), ["a", "b"]);
        assert_eq!(c.texts(), ["Cordless Drill", "Hammer"]);
        let c = catalog(&data, &ItemTextConfig::default()).unwrap();
        assert_eq!(c.texts()[0], "Cordless Drill, in Tools > Power Tools");
        assert_eq!(c.texts()[1], "Hammer");
        assert!(catalog(&DataCatalog::default(), &ItemTextConfig::name_only()).is_err());

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
    }
}
