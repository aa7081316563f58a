//! The serde loss configuration and the [`GradedLoss`](crate::losses::GradedLoss) module.

use burn::module::Module;
use burn::tensor::DType;

use super::infonce::rows;
use super::*;
use crate::losses::{
    CircleConfig, InfoNceConfig, LossConfig, LossInputs, Reduction, SupConConfig, TripletConfig,
    graded_supcon, graded_triplet, info_nce, multiclass_circle,
};

#[derive(serde::Deserialize, serde::Serialize, Debug, PartialEq)]
struct RunConfig {
    loss: LossConfig,
}

fn parse(text: &str) -> Result<RunConfig, toml::de::Error> {
    toml::from_str(text)
}

#[test]
fn toml_names_each_loss_and_fills_defaults() {
    let circle = parse("[loss]\nkind = \"circle\"\ngamma = 16.0\n").unwrap();
    assert_eq!(
        circle.loss,
        LossConfig::Circle(CircleConfig {
            gamma: 16.0,
            ..Default::default()
        })
    );
    let supcon = parse(
        "[loss]\nkind = \"supcon\"\nreduction = \"mean\"\n[loss.temperature]\ninitial = 0.1\n",
    )
    .unwrap();
    let LossConfig::Supcon(s) = supcon.loss else {
        panic!("expected supcon, got {:?}", supcon.loss)
    };
    assert_eq!(
        (s.reduction, s.temperature.initial, s.temperature.max),
        (Reduction::Mean, 0.1, 1.0)
    );
    assert_eq!(
        parse("[loss]\nkind = \"triplet\"\n").unwrap().loss.name(),
        "triplet"
    );
    assert_eq!(
        parse("[loss]\nkind = \"infonce\"\nscale = 10.0\n")
            .unwrap()
            .loss
            .name(),
        "infonce"
    );
}

#[test]
fn toml_round_trip() {
    for loss in [
        LossConfig::Supcon(SupConConfig::default()),
        LossConfig::Circle(CircleConfig::default()),
        LossConfig::Triplet(TripletConfig::default()),
        LossConfig::Infonce(InfoNceConfig::default()),
    ] {
        let text = toml::to_string(&RunConfig { loss }).unwrap();
        assert_eq!(parse(&text).unwrap().loss, loss, "{text}");
    }
}

#[test]
fn unknown_fields_and_invalid_values_are_named() {
    let typo = parse("[loss]\nkind = \"circle\"\ngama = 16.0\n").unwrap_err();
    assert!(typo.to_string().contains("gama"), "{typo}");
    let kind = parse("[loss]\nkind = \"hinge\"\n").unwrap_err();
    assert!(kind.to_string().contains("hinge"), "{kind}");
    let bad = parse("[loss]\nkind = \"supcon\"\n[loss.temperature]\ninitial = 2.0\n").unwrap();
    let err = bad.loss.validate().unwrap_err();
    assert!(err.to_string().contains("temperature.initial"), "{err}");
    assert!(bad.loss.init(&cpu()).is_err());
}

#[test]
fn only_supcon_carries_a_trainable_parameter() {
    assert_eq!(LossConfig::default().init(&cpu()).unwrap().num_params(), 1);
    let circle = LossConfig::Circle(CircleConfig::default());
    assert_eq!(circle.init(&cpu()).unwrap().num_params(), 0);
}

#[test]
fn forward_evaluates_the_configured_loss() {
    let device = cpu();
    let labels = vec![vec![2, 1, 0], vec![1, 0], vec![2, 1]];
    let targets = GradedTargets::new(&labels, &device).unwrap();
    let queries = matrix(rows(3, 4, 51).concat(), [3, 4], &device, DType::F64);
    let items = matrix(rows(7, 4, 52).concat(), [7, 4], &device, DType::F64);
    let scores = instance_scores(
        queries.clone(),
        items.clone(),
        targets.item_index(),
        targets.mask(),
    )
    .unwrap();
    let run = |config: LossConfig| {
        let inputs = LossInputs {
            queries: queries.clone(),
            items: items.clone(),
            targets: &targets,
        };
        scalar(
            config
                .init((&device, DType::F64))
                .unwrap()
                .forward(inputs)
                .unwrap(),
        )
    };
    let supcon = SupConConfig::default();
    let tau = supcon
        .temperature
        .init((&device, DType::F64))
        .unwrap()
        .tau();
    let expected = graded_supcon(scores.clone(), &targets, tau, supcon.reduction).unwrap();
    assert_eq!(run(LossConfig::Supcon(supcon)), scalar(expected));
    let circle = CircleConfig::default();
    let expected = multiclass_circle(scores.clone(), &targets, &circle).unwrap();
    assert_eq!(run(LossConfig::Circle(circle)), scalar(expected));
    let triplet = TripletConfig::default();
    let expected = graded_triplet(scores, &targets, &triplet).unwrap();
    assert_eq!(run(LossConfig::Triplet(triplet)), scalar(expected));
    // InfoNCE: positives are items 0, 3, 5 (each instance's best); label-0 items 2 and 4 are
    // the hard negatives.
    let infonce = InfoNceConfig::default();
    let select = |r: Vec<i64>| items.clone().select(0, int_vector(r, &device));
    let expected = info_nce(
        queries.clone(),
        select(vec![0, 3, 5]),
        Some(select(vec![2, 4])),
        &infonce,
    )
    .unwrap();
    assert_eq!(run(LossConfig::Infonce(infonce)), scalar(expected));
}

#[test]
fn forward_rejects_mismatched_embeddings() {
    let device = cpu();
    let targets = GradedTargets::new(&[vec![2, 0]], &device).unwrap();
    let inputs = LossInputs {
        queries: matrix(rows(1, 4, 1).concat(), [1, 4], &device, DType::F32),
        items: matrix(rows(3, 4, 2).concat(), [3, 4], &device, DType::F32),
        targets: &targets,
    };
    let err = LossConfig::default()
        .init(&device)
        .unwrap()
        .forward(inputs)
        .unwrap_err();
    assert!(err.to_string().contains("items"), "{err}");
}
