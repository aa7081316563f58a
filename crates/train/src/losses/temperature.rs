//! Learnable SupCon temperature τ (paper section 4.3: "We let τ be trained along with the
//! model").

use burn::module::{Module, Param};
use burn::tensor::{Tensor, TensorCreationOptions, TensorData};
use serde::{Deserialize, Serialize};

use super::error::{LossError, check_positive};

/// Initial value, bounds and trainability of the temperature.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TemperatureConfig {
    /// Starting value of τ. The default 0.05 matches the usual contrastive scale of 20.
    pub initial: f64,
    /// Lower bound of τ in the forward pass.
    pub min: f64,
    /// Upper bound of τ in the forward pass.
    pub max: f64,
    /// Whether τ receives gradients; `false` keeps it fixed at `initial`.
    pub learnable: bool,
}

impl Default for TemperatureConfig {
    fn default() -> Self {
        Self {
            initial: 0.05,
            min: 0.01,
            max: 1.0,
            learnable: true,
        }
    }
}

impl TemperatureConfig {
    /// Checks `0 < min <= initial <= max`.
    pub fn validate(&self) -> Result<(), LossError> {
        check_positive("temperature.min", self.min)?;
        check_positive("temperature.max", self.max)?;
        check_positive("temperature.initial", self.initial)?;
        if self.max < self.min {
            return Err(LossError::InvalidConfig {
                field: "temperature.max",
                value: self.max,
                reason: "must be >= temperature.min",
            });
        }
        if self.initial < self.min || self.initial > self.max {
            return Err(LossError::InvalidConfig {
                field: "temperature.initial",
                value: self.initial,
                reason: "must lie in [temperature.min, temperature.max]",
            });
        }
        Ok(())
    }

    /// Creates the temperature on a device (optionally with an explicit float dtype).
    pub fn init(
        &self,
        options: impl Into<TensorCreationOptions>,
    ) -> Result<LearnableTemperature, LossError> {
        self.validate()?;
        let value = Tensor::<1>::from_data(TensorData::new(vec![self.initial.ln()], [1]), options);
        let log_tau = Param::from_tensor(value).set_require_grad(self.learnable);
        Ok(LearnableTemperature {
            log_tau,
            min_tau: self.min,
            max_tau: self.max,
        })
    }
}

/// The temperature τ = clamp(exp(log_tau), min, max), trained in log space so that it stays
/// positive and its steps scale with its size.
#[derive(Module, Debug)]
pub struct LearnableTemperature {
    /// `log τ`, shape `[1]`.
    pub log_tau: Param<Tensor<1>>,
    /// Lower bound applied in the forward pass.
    pub min_tau: f64,
    /// Upper bound applied in the forward pass.
    pub max_tau: f64,
}

impl LearnableTemperature {
    /// τ as a `[1]` tensor, clamped into `[min_tau, max_tau]` (no gradient once clamped).
    pub fn tau(&self) -> Tensor<1> {
        self.log_tau.val().exp().clamp(self.min_tau, self.max_tau)
    }

    /// Current τ as a number (for logging).
    pub fn value(&self) -> f64 {
        self.tau().into_scalar::<f64>()
    }
}
