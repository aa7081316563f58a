//! Padded graded targets for a batch of training instances (paper eq. 1).
//!
//! A batch holds `n` instances, each a query with its own items and their relevance labels
//! (2 = exact, 1 = substitute/complement, 0 = irrelevant). The losses work on padded
//! `[n, width]` score matrices; [`GradedTargets`] holds the matching padding mask and the
//! per-label masks, computed once per batch.

use burn::tensor::{Bool, DType, Device, Int, Tensor, TensorData};

use super::error::LossError;

/// Number of relevance levels.
pub const NUM_LABELS: usize = 3;

/// Labels, masks and item layout of a padded batch of graded instances.
///
/// Items are laid out contiguously: instance 0's items first, then instance 1's, and so on,
/// which is the row order [`GradedTargets::item_index`] expects of the item embedding matrix.
#[derive(Debug, Clone)]
pub struct GradedTargets {
    labels: Vec<Vec<u8>>,
    width: usize,
    counts: Vec<[usize; NUM_LABELS]>,
    mask: Tensor<2, Bool>,
    label_masks: [Tensor<2, Bool>; NUM_LABELS],
    label_values: Tensor<2>,
    item_index: Tensor<2, Int>,
    device: Device,
}

impl GradedTargets {
    /// Builds the targets of a batch, padded to its longest instance.
    ///
    /// Every instance must hold at least two items with at least two distinct labels, each
    /// label in `{0, 1, 2}` (the formats of paper eq. 1).
    pub fn new(labels: &[Vec<u8>], device: &Device) -> Result<Self, LossError> {
        let width = labels.iter().map(Vec::len).max().unwrap_or(0);
        Self::with_width(labels, width, device)
    }

    /// Builds the targets padded to `width` columns (at least the longest instance).
    pub fn with_width(
        labels: &[Vec<u8>],
        width: usize,
        device: &Device,
    ) -> Result<Self, LossError> {
        if labels.is_empty() {
            return Err(LossError::EmptyBatch);
        }
        let mut counts = Vec::with_capacity(labels.len());
        for (instance, items) in labels.iter().enumerate() {
            if items.is_empty() {
                return Err(LossError::EmptyInstance { instance });
            }
            if items.len() > width {
                return Err(LossError::WidthTooSmall {
                    width,
                    instance,
                    len: items.len(),
                });
            }
            let mut count = [0usize; NUM_LABELS];
            for (item, &label) in items.iter().enumerate() {
                if usize::from(label) >= NUM_LABELS {
                    return Err(LossError::InvalidLabel {
                        instance,
                        item,
                        label,
                    });
                }
                count[usize::from(label)] += 1;
            }
            if count.iter().filter(|&&c| c > 0).count() < 2 {
                return Err(LossError::SingleLabel {
                    instance,
                    label: items[0],
                });
            }
            counts.push(count);
        }

        let n = labels.len();
        let mut valid = vec![false; n * width];
        let mut per_label = [
            vec![false; n * width],
            vec![false; n * width],
            vec![false; n * width],
        ];
        let mut values = vec![0.0f32; n * width];
        let mut index = vec![0i64; n * width];
        let mut offset = 0i64;
        for (row, items) in labels.iter().enumerate() {
            for (col, &label) in items.iter().enumerate() {
                let at = row * width + col;
                valid[at] = true;
                per_label[usize::from(label)][at] = true;
                values[at] = f32::from(label);
                index[at] = offset + col as i64;
            }
            // Padding points at the instance's first item: a valid row, masked out later.
            for col in items.len()..width {
                index[row * width + col] = offset;
            }
            offset += items.len() as i64;
        }

        let bool_tensor =
            |v: Vec<bool>| Tensor::<2, Bool>::from_data(TensorData::new(v, [n, width]), device);
        let [l0, l1, l2] = per_label;
        Ok(Self {
            labels: labels.to_vec(),
            width,
            counts,
            mask: bool_tensor(valid),
            label_masks: [bool_tensor(l0), bool_tensor(l1), bool_tensor(l2)],
            label_values: Tensor::from_data(TensorData::new(values, [n, width]), device),
            item_index: Tensor::from_data(TensorData::new(index, [n, width]), device),
            device: device.clone(),
        })
    }

    /// Number of instances in the batch.
    pub fn n_instances(&self) -> usize {
        self.labels.len()
    }

    /// Padded width (columns of the score matrix).
    pub fn width(&self) -> usize {
        self.width
    }

    /// Total number of real items (rows of the contiguous item embedding matrix).
    pub fn n_items(&self) -> usize {
        self.labels.iter().map(Vec::len).sum()
    }

    /// The labels of each instance, as given.
    pub fn labels(&self) -> &[Vec<u8>] {
        &self.labels
    }

    /// Number of items per label in each instance: `counts()[i][l]`.
    pub fn counts(&self) -> &[[usize; NUM_LABELS]] {
        &self.counts
    }

    /// `[n, width]` mask, true where a column holds a real item.
    pub fn mask(&self) -> Tensor<2, Bool> {
        self.mask.clone()
    }

    /// `[n, width]` mask, true where a column holds an item with `label`.
    ///
    /// # Panics
    /// If `label > 2`.
    pub fn label_mask(&self, label: usize) -> Tensor<2, Bool> {
        self.label_masks[label].clone()
    }

    /// `[n, width]` label values as floats in `dtype` (padding is 0).
    pub fn label_values(&self, dtype: DType) -> Tensor<2> {
        self.label_values.clone().cast(dtype)
    }

    /// `[n, width]` row of each item in the contiguous item matrix (padding points at a valid
    /// row of the same instance and must be masked).
    pub fn item_index(&self) -> Tensor<2, Int> {
        self.item_index.clone()
    }

    /// Device the tensors live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// `[n, 1]` per-instance column built from `f(counts)` in `dtype`.
    pub(crate) fn per_instance(
        &self,
        dtype: DType,
        f: impl Fn(&[usize; NUM_LABELS]) -> f64,
    ) -> Tensor<2> {
        let values: Vec<f64> = self.counts.iter().map(f).collect();
        let n = values.len();
        Tensor::from_data(TensorData::new(values, [n, 1]), (&self.device, dtype))
    }

    /// Contiguous row of the highest-labelled item of each instance (the first on ties).
    pub fn best_item_rows(&self) -> Vec<usize> {
        let mut offset = 0;
        let mut rows = Vec::with_capacity(self.labels.len());
        for items in &self.labels {
            let best = items.iter().copied().max().unwrap_or(0);
            let pos = items.iter().position(|&l| l == best).unwrap_or(0);
            rows.push(offset + pos);
            offset += items.len();
        }
        rows
    }

    /// Contiguous rows of every item with label 0, in batch order.
    pub fn irrelevant_item_rows(&self) -> Vec<usize> {
        let mut offset = 0;
        let mut rows = Vec::new();
        for items in &self.labels {
            rows.extend(
                items
                    .iter()
                    .enumerate()
                    .filter(|(_, l)| **l == 0)
                    .map(|(i, _)| offset + i),
            );
            offset += items.len();
        }
        rows
    }

    /// Checks that `scores` is `[n_instances, width]`.
    pub(crate) fn check_scores(&self, scores: &Tensor<2>) -> Result<(), LossError> {
        super::error::check_dims("scores", scores.dims(), [self.n_instances(), self.width])
    }
}
