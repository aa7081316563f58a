//! The seam between the data/evaluation layers and the model: anything that turns texts into
//! L2-normalised vectors. `strata-model` implements it; evaluation, mining and serving use it
//! without depending on the tensor library.

/// Which tower a text goes through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Query,
    Item,
}

impl std::str::FromStr for Side {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "query" => Ok(Side::Query),
            "item" => Ok(Side::Item),
            other => Err(format!("unknown side {other:?} (expected query or item)")),
        }
    }
}

/// Encodes texts into L2-normalised embeddings.
pub trait TextEncoder: Send + Sync {
    /// Output dimension.
    fn dim(&self) -> usize;
    /// A short description of the model (a path or a name), recorded in reports.
    fn name(&self) -> String;
    /// Encodes `texts` through the tower of `side`; returns `texts.len() * dim()` floats,
    /// row-major, each row L2-normalised.
    fn encode(&self, texts: &[&str], side: Side) -> anyhow::Result<Vec<f32>>;
}
