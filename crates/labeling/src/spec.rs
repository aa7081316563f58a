//! Building the labeler a [`LabelerSpec`] names: the one place where every `--labeler` value
//! and the pipeline's `data.labeler` become a [`Labeler`], with the version its label cache is
//! keyed by and a sentence stating its policy.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context;
use strata_data::labeler::{JudgmentLookupLabeler, MinConfidence, UnknownPair};
use strata_data::marketplace::{Oracle, OracleLabeler};
use strata_data::{Catalog, Judgment, Labeler, LabelerSpec};

use crate::cross_encoder::CrossEncoderLabeler;
use crate::llm::{Guideline, LlmConfig, LlmLabeler};

/// What an LLM labeler is built from.
pub struct LlmSetup {
    pub config: LlmConfig,
    pub guideline: Guideline,
    /// Item id -> the text the LLM sees.
    pub item_texts: HashMap<String, String>,
}

/// What building a labeler may need besides its spec; each kind says which it reads.
#[derive(Default)]
pub struct LabelerInputs<'a> {
    /// The catalog: `cross-encoder=DIR` renders item texts from it, `oracle` labels its items.
    pub catalog: Option<&'a Catalog>,
    /// The judgments `lookup` answers from.
    pub lookup: Option<&'a [Judgment]>,
    /// What `lookup` answers for a pair it has no judgment for (None: abstain).
    pub unknown_label: Option<u8>,
    /// The policy oracle `oracle` asks (the synthetic marketplace's).
    pub oracle: Option<Oracle>,
    /// The client, guideline and item texts of `llm`.
    pub llm: Option<LlmSetup>,
    /// A progress bar while a cross-encoder labels.
    pub progress: bool,
    /// Pairs whose label the labeler gives a probability below this stay unlabeled
    /// ([`MinConfidence`]); part of the label-cache version.
    pub min_confidence: Option<f32>,
}

/// A labeler built from its spec.
pub struct BuiltLabeler {
    pub labeler: Box<dyn Labeler>,
    /// The label-cache version: answers cached under another version are not reused.
    pub version: String,
    /// What the labeler does with an unjudged pair, in one sentence (for reports).
    pub policy: String,
    /// The LLM labeler, for its run report.
    pub llm: Option<Arc<LlmLabeler>>,
}

/// Builds the labeler `spec` names, failing (naming `what`, a flag or a config field) when
/// `accepted` does not list its kind or an input it needs is missing.
///
/// `unjudged-zero` and `judged-only` are mining policies: mining keeps the label of every
/// judged pair itself, so they answer unjudged pairs only (0, or no label).
pub fn build_labeler(
    spec: &LabelerSpec,
    what: &str,
    accepted: &[&str],
    inputs: LabelerInputs<'_>,
) -> anyhow::Result<BuiltLabeler> {
    spec.expect(what, accepted)?;
    let min_confidence = inputs.min_confidence;
    let built = build_spec(spec, what, inputs)?;
    let Some(min) = min_confidence else {
        return Ok(built);
    };
    let BuiltLabeler {
        labeler,
        version,
        policy,
        llm,
    } = built;
    let labeler = MinConfidence::new(labeler, min).with_context(|| format!("{what}: {spec}"))?;
    Ok(BuiltLabeler {
        labeler: Box::new(labeler),
        version: format!("{version}-min-confidence-{min}"),
        policy: format!("{policy}; pairs it labels with a probability below {min} stay unlabeled"),
        llm,
    })
}

fn build_spec(
    spec: &LabelerSpec,
    what: &str,
    inputs: LabelerInputs<'_>,
) -> anyhow::Result<BuiltLabeler> {
    let built = |labeler: Box<dyn Labeler>, version: &str, policy: String| BuiltLabeler {
        labeler,
        version: version.to_string(),
        policy,
        llm: None,
    };
    Ok(match spec {
        LabelerSpec::UnjudgedZero => built(
            Box::new(JudgmentLookupLabeler::new(&[], UnknownPair::Fixed(0))?),
            "v1",
            "unjudged mined pairs are labeled 0 (policy: unjudged = irrelevant)".into(),
        ),
        LabelerSpec::JudgedOnly => built(
            Box::new(JudgmentLookupLabeler::new(&[], UnknownPair::Abstain)?),
            "v1",
            "only judged pairs are used (unjudged mined pairs stay unlabeled)".into(),
        ),
        LabelerSpec::Lookup => {
            let judgments = inputs
                .lookup
                .with_context(|| format!("{what}: labeler lookup needs judgments to look up"))?;
            let unknown = match inputs.unknown_label {
                Some(l) => UnknownPair::Fixed(l),
                None => UnknownPair::Abstain,
            };
            let policy = match inputs.unknown_label {
                Some(l) => format!("known judgments answer; pairs without one get label {l}"),
                None => "known judgments answer; pairs without one stay unlabeled".into(),
            };
            built(
                Box::new(JudgmentLookupLabeler::new(judgments, unknown)?),
                "judgments",
                policy,
            )
        }
        LabelerSpec::Oracle => {
            let oracle = inputs
                .oracle
                .with_context(|| format!("{what}: labeler oracle needs the policy oracle"))?;
            let catalog = inputs
                .catalog
                .with_context(|| format!("{what}: labeler oracle needs the catalog"))?;
            let l = OracleLabeler::new(oracle, catalog);
            anyhow::ensure!(
                l.known_items() > 0,
                "{what}: the oracle knows none of the catalog's items (it labels synthetic-marketplace catalogs)"
            );
            built(
                Box::new(l),
                "v1",
                "the synthetic marketplace's policy oracle labels unjudged mined pairs".into(),
            )
        }
        LabelerSpec::CrossEncoder(dir) => {
            let catalog = inputs
                .catalog
                .with_context(|| format!("{what}: labeler {spec} needs the catalog"))?;
            let l = CrossEncoderLabeler::load(dir, catalog)
                .with_context(|| format!("{what}: cannot load labeler {}", dir.display()))?
                .with_progress(inputs.progress);
            let version = format!("cross-encoder-{:016x}", l.fingerprint());
            built(
                Box::new(l),
                &version,
                format!(
                    "the cross-encoder labeler {} labels unjudged mined pairs",
                    dir.display()
                ),
            )
        }
        LabelerSpec::Llm => {
            let setup = inputs.llm.with_context(|| {
                format!("{what}: labeler llm needs an API configuration and a guideline")
            })?;
            let version = setup.guideline.version.clone();
            let policy = format!(
                "the LLM {} at {} labels pairs under guideline {version}",
                setup.config.model, setup.config.base_url
            );
            let l = Arc::new(LlmLabeler::new(
                setup.config,
                setup.guideline,
                setup.item_texts,
            )?);
            BuiltLabeler {
                labeler: Box::new(l.clone()),
                version,
                policy,
                llm: Some(l),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_data::Item;

    #[test]
    fn mining_policies_answer_unjudged_pairs_only() {
        let pairs = [("red drill".to_string(), "i1".to_string())];
        let zero = build_labeler(
            &LabelerSpec::UnjudgedZero,
            "--labeler",
            &["unjudged-zero"],
            LabelerInputs::default(),
        )
        .unwrap();
        assert_eq!(zero.labeler.label(&pairs).unwrap(), [Some(0)]);
        assert_eq!(zero.version, "v1");
        let only = build_labeler(
            &LabelerSpec::JudgedOnly,
            "--labeler",
            &["judged-only"],
            LabelerInputs::default(),
        )
        .unwrap();
        assert_eq!(only.labeler.label(&pairs).unwrap(), [None]);
        // A confidence threshold keeps certain labels, changes the cache version and says so.
        let inputs = |min| LabelerInputs {
            min_confidence: Some(min),
            ..Default::default()
        };
        let sure = build_labeler(
            &LabelerSpec::UnjudgedZero,
            "--labeler",
            &["unjudged-zero"],
            inputs(0.9),
        )
        .unwrap();
        assert_eq!(sure.labeler.label(&pairs).unwrap(), [Some(0)]);
        assert_eq!(sure.version, "v1-min-confidence-0.9");
        assert!(sure.policy.contains("below 0.9"), "{}", sure.policy);
        let e = build_labeler(
            &LabelerSpec::UnjudgedZero,
            "--labeler",
            &["unjudged-zero"],
            inputs(0.0),
        )
        .err()
        .unwrap();
        assert!(format!("{e:#}").contains("--labeler"), "{e:#}");
        assert!(format!("{e:#}").contains("min_confidence"), "{e:#}");
    }

    #[test]
    fn lookup_answers_known_pairs_and_the_unknown_label() {
        let js = [Judgment::new("red drill", "i1", 2)];
        let inputs = || LabelerInputs {
            lookup: Some(&js),
            unknown_label: Some(0),
            ..Default::default()
        };
        let l = build_labeler(&LabelerSpec::Lookup, "x", &["lookup"], inputs()).unwrap();
        let pairs = [
            ("red drill".to_string(), "i1".to_string()),
            ("red drill".to_string(), "i2".to_string()),
        ];
        assert_eq!(l.labeler.label(&pairs).unwrap(), [Some(2), Some(0)]);
        assert!(l.policy.contains("label 0"), "{}", l.policy);
    }

    #[test]
    fn refused_kinds_and_missing_inputs_name_the_field() {
        let e = build_labeler(
            &LabelerSpec::Llm,
            "data.labeler",
            &["oracle", "unjudged-zero"],
            LabelerInputs::default(),
        )
        .err()
        .unwrap();
        assert!(format!("{e:#}").contains("data.labeler"), "{e:#}");
        let e = build_labeler(
            &LabelerSpec::Lookup,
            "--labeler",
            &["lookup"],
            LabelerInputs::default(),
        )
        .err()
        .unwrap();
        assert!(
            format!("{e:#}").contains("--labeler: labeler lookup needs"),
            "{e:#}"
        );
        let catalog = Catalog::from_items(vec![Item::new("i1", "red drill")]).unwrap();
        let e = build_labeler(
            &LabelerSpec::CrossEncoder("/nonexistent/labeler".into()),
            "--labeler",
            &["cross-encoder"],
            LabelerInputs {
                catalog: Some(&catalog),
                ..Default::default()
            },
        )
        .err()
        .unwrap();
        assert!(
            format!("{e:#}").contains("cannot load labeler /nonexistent/labeler"),
            "{e:#}"
        );
    }
}
