//! Construction and validation of [`GradedTargets`].

use super::*;

#[test]
fn masks_counts_and_item_layout() {
    let labels = vec![vec![2, 0, 1], vec![1, 0]];
    let t = GradedTargets::new(&labels, &cpu()).unwrap();
    assert_eq!((t.n_instances(), t.width(), t.n_items()), (2, 3, 5));
    assert_eq!(t.counts(), &[[1, 1, 1], [1, 1, 0]]);
    let bools = |m: burn::tensor::Tensor<2, burn::tensor::Bool>| {
        m.into_data().iter::<bool>().collect::<Vec<_>>()
    };
    assert_eq!(bools(t.mask()), [true, true, true, true, true, false]);
    assert_eq!(
        bools(t.label_mask(0)),
        [false, true, false, false, true, false]
    );
    assert_eq!(
        bools(t.label_mask(2)),
        [true, false, false, false, false, false]
    );
    let index: Vec<i64> = t.item_index().into_data().iter::<i64>().collect();
    assert_eq!(index, [0, 1, 2, 3, 4, 3]);
    assert_eq!(t.best_item_rows(), [0, 3]);
    assert_eq!(t.irrelevant_item_rows(), [1, 4]);
}

#[test]
fn bad_instances_are_rejected_with_their_position() {
    let err = |labels: Vec<Vec<u8>>| GradedTargets::new(&labels, &cpu()).unwrap_err().to_string();
    let bad_label = err(vec![vec![2, 0], vec![1, 3]]);
    assert!(
        bad_label.contains("instance 1, item 1") && bad_label.contains("label"),
        "{bad_label}"
    );
    let single = err(vec![vec![2, 0], vec![2, 2]]);
    assert!(
        single.contains("instance 1") && single.contains("distinct"),
        "{single}"
    );
    assert!(err(vec![vec![2, 0], vec![]]).contains("instance 1"));
    assert!(err(vec![]).contains("no instances"));
    let narrow = GradedTargets::with_width(&[vec![2, 1, 0]], 2, &cpu()).unwrap_err();
    assert!(narrow.to_string().contains("width 2"), "{narrow}");
}

#[test]
fn out_of_range_item_index_is_an_error() {
    let device = cpu();
    let t = GradedTargets::new(&[vec![2, 0]], &device).unwrap();
    let q = matrix(vec![1.0, 0.0], [1, 2], &device, burn::tensor::DType::F32);
    let one_item = matrix(vec![1.0, 0.0], [1, 2], &device, burn::tensor::DType::F32);
    let err = instance_scores(q, one_item, t.item_index(), t.mask()).unwrap_err();
    assert!(err.to_string().contains("item_index"), "{err}");
}
