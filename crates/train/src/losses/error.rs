//! Errors raised while building loss inputs or validating loss configurations.

/// Why a loss could not be built or evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LossError {
    /// A relevance label outside `{0, 1, 2}`.
    #[error("instance {instance}, item {item}: field `label` is {label}, expected 0, 1 or 2")]
    InvalidLabel {
        /// Index of the instance in the batch.
        instance: usize,
        /// Index of the item inside the instance.
        item: usize,
        /// The offending label.
        label: u8,
    },
    /// An instance with no items.
    #[error("instance {instance}: field `items` is empty, an instance needs at least two items")]
    EmptyInstance {
        /// Index of the instance in the batch.
        instance: usize,
    },
    /// An instance whose items all carry the same label, so no loss compares anything.
    #[error(
        "instance {instance}: every item has label {label}; an instance needs at least two distinct labels (paper eq. 1)"
    )]
    SingleLabel {
        /// Index of the instance in the batch.
        instance: usize,
        /// The only label present.
        label: u8,
    },
    /// A batch without instances.
    #[error("the batch holds no instances")]
    EmptyBatch,
    /// The padded width is smaller than the longest instance.
    #[error("padded width {width} is smaller than instance {instance} with {len} items")]
    WidthTooSmall {
        /// Requested width.
        width: usize,
        /// Index of the longest offending instance.
        instance: usize,
        /// Its number of items.
        len: usize,
    },
    /// A tensor whose shape does not fit the batch.
    #[error("tensor `{name}` has shape {actual:?}, expected {expected}")]
    Shape {
        /// Name of the argument.
        name: &'static str,
        /// Its actual shape.
        actual: Vec<usize>,
        /// A description of the expected shape.
        expected: String,
    },
    /// A label list whose length differs from the similarity matrix.
    #[error("field `labels` has {actual} entries, expected {expected} (one per row)")]
    LabelCount {
        /// Number of labels given.
        actual: usize,
        /// Number of rows in the similarity matrix.
        expected: usize,
    },
    /// A configuration value outside its valid range.
    #[error("loss config field `{field}` is {value}: {reason}")]
    InvalidConfig {
        /// Dotted path of the field, e.g. `temperature.min`.
        field: &'static str,
        /// The offending value.
        value: f64,
        /// What a valid value looks like.
        reason: &'static str,
    },
}

/// Checks that `dims` equals `expected`, naming the tensor otherwise.
pub(crate) fn check_dims<const D: usize>(
    name: &'static str,
    dims: [usize; D],
    expected: [usize; D],
) -> Result<(), LossError> {
    if dims == expected {
        Ok(())
    } else {
        Err(LossError::Shape {
            name,
            actual: dims.to_vec(),
            expected: format!("{expected:?}"),
        })
    }
}

/// Checks that a configuration value is finite and strictly positive.
pub(crate) fn check_positive(field: &'static str, value: f64) -> Result<(), LossError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(LossError::InvalidConfig {
            field,
            value,
            reason: "must be finite and > 0",
        })
    }
}

/// Checks that a configuration value is finite.
pub(crate) fn check_finite(field: &'static str, value: f64) -> Result<(), LossError> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(LossError::InvalidConfig {
            field,
            value,
            reason: "must be finite",
        })
    }
}
