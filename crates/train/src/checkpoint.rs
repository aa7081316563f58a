//! Checkpoints: everything needed to continue a run exactly where it stopped.
//!
//! `RUN/checkpoints/step-000120/` holds (for the retriever; the labeler has no loss file and
//! its own `state.json` field names)
//! - `model/`: the two-tower model ([`strata_model::save_model`]);
//! - `loss.safetensors`: the loss parameters (the SupCon temperature);
//! - `optimizer.safetensors`: the AdamW moments and step counts;
//! - `state.json`: the update count, the data-order position and the dev history
//!   ([`TrainerState`], the retriever's names of [`RunState`]).
//!
//! A checkpoint is written under a temporary name and renamed into place, then
//! `checkpoints/latest` (itself written by rename) points at it, so a run killed at any moment
//! leaves either the previous or the new checkpoint complete. The data order needs no saved
//! random state: each epoch's instances are recomputed from the seed and the epoch number,
//! and dropout is reseeded from the seed and the update number.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::dev::DevScore;
use crate::optim::param_values;
use crate::run_loop::RunState;

/// Directory of the checkpoints inside a run directory.
pub const CHECKPOINTS: &str = "checkpoints";
/// File naming the newest complete checkpoint.
pub const LATEST: &str = "latest";
/// Sub-directory of a checkpoint holding the model.
pub const MODEL: &str = "model";
/// Loss parameters inside a checkpoint.
pub const LOSS_FILE: &str = "loss.safetensors";
/// Optimizer state inside a checkpoint.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// Trainer state inside a checkpoint.
pub const STATE_FILE: &str = "state.json";

/// One development evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct DevPoint {
    /// Updates done when it was measured.
    pub step: u64,
    /// The score.
    pub score: DevScore,
}

/// The trainer's position and history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Updates done.
    pub step: u64,
    /// Updates per epoch of the run (checked on resume: the data must not have changed).
    pub steps_per_epoch: u64,
    /// Instances per epoch (checked on resume).
    pub instances_per_epoch: usize,
    /// Seed of the run (checked on resume).
    pub seed: u64,
    /// Instances trained on so far.
    pub instances_seen: u64,
    /// Seconds spent in training steps so far.
    pub train_seconds: f64,
    /// Every development evaluation so far.
    pub dev: Vec<DevPoint>,
    /// The best of them.
    pub best: Option<DevPoint>,
}

impl From<RunState<DevPoint>> for TrainerState {
    fn from(s: RunState<DevPoint>) -> Self {
        TrainerState {
            step: s.step,
            steps_per_epoch: s.steps_per_epoch,
            instances_per_epoch: s.examples_per_epoch,
            seed: s.seed,
            instances_seen: s.examples_seen,
            train_seconds: s.train_seconds,
            dev: s.dev,
            best: s.best,
        }
    }
}

impl From<TrainerState> for RunState<DevPoint> {
    fn from(s: TrainerState) -> Self {
        RunState {
            step: s.step,
            steps_per_epoch: s.steps_per_epoch,
            examples_per_epoch: s.instances_per_epoch,
            seed: s.seed,
            examples_seen: s.instances_seen,
            train_seconds: s.train_seconds,
            dev: s.dev,
            best: s.best,
        }
    }
}

/// Name of the checkpoint directory of `step`.
pub fn checkpoint_name(step: u64) -> String {
    format!("step-{step:06}")
}

/// Writes `contents` to `path` through a temporary file and a rename.
pub fn write_atomic(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot move {} into place", path.display()))
}

/// Writes a checkpoint of `step` into `run/checkpoints` with `write` filling the directory,
/// points `latest` at it and removes all but the newest `keep` checkpoints. Returns its path.
pub fn write_checkpoint(
    run: &Path,
    step: u64,
    keep: usize,
    write: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<PathBuf> {
    let dir = run.join(CHECKPOINTS);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = checkpoint_name(step);
    let partial = dir.join(format!(".partial-{name}"));
    if partial.exists() {
        std::fs::remove_dir_all(&partial)
            .with_context(|| format!("cannot remove {}", partial.display()))?;
    }
    std::fs::create_dir_all(&partial)?;
    write(&partial).with_context(|| format!("writing checkpoint {}", partial.display()))?;
    let target = dir.join(&name);
    if target.exists() {
        std::fs::remove_dir_all(&target)
            .with_context(|| format!("cannot replace {}", target.display()))?;
    }
    std::fs::rename(&partial, &target)
        .with_context(|| format!("cannot move checkpoint into {}", target.display()))?;
    write_atomic(&dir.join(LATEST), name.as_bytes())?;
    let mut all = list_checkpoints(run)?;
    all.retain(|(s, _)| *s != step);
    let drop = all.len().saturating_sub(keep.saturating_sub(1));
    for (_, old) in all.into_iter().take(drop) {
        std::fs::remove_dir_all(&old)
            .with_context(|| format!("cannot remove {}", old.display()))?;
    }
    Ok(target)
}

/// Complete checkpoints of a run, oldest first.
pub fn list_checkpoints(run: &Path) -> anyhow::Result<Vec<(u64, PathBuf)>> {
    let dir = run.join(CHECKPOINTS);
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for entry in
        std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?
    {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().to_string();
        if let Some(step) = name
            .strip_prefix("step-")
            .and_then(|s| s.parse::<u64>().ok())
            && entry.path().join(STATE_FILE).is_file()
        {
            out.push((step, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// The newest complete checkpoint of a run (the one `latest` names, else the highest step).
pub fn latest_checkpoint(run: &Path) -> anyhow::Result<Option<PathBuf>> {
    let dir = run.join(CHECKPOINTS);
    if let Ok(name) = std::fs::read_to_string(dir.join(LATEST)) {
        let p = dir.join(name.trim());
        if p.join(STATE_FILE).is_file() {
            return Ok(Some(p));
        }
    }
    Ok(list_checkpoints(run)?.pop().map(|(_, p)| p))
}

/// Reads a checkpoint's trainer state.
pub fn read_state(checkpoint: &Path) -> anyhow::Result<TrainerState> {
    let p = checkpoint.join(STATE_FILE);
    let text =
        std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: invalid trainer state", p.display()))
}

/// Writes a checkpoint's trainer state.
pub fn write_state(checkpoint: &Path, state: &TrainerState) -> anyhow::Result<()> {
    let p = checkpoint.join(STATE_FILE);
    std::fs::write(&p, serde_json::to_string_pretty(state)?)
        .with_context(|| format!("cannot write {}", p.display()))
}

/// Writes every float parameter of `module` to a safetensors file, by module path.
pub fn save_params<M: Module>(module: &M, path: &Path) -> anyhow::Result<()> {
    use safetensors::tensor::{Dtype, TensorView};
    let values = param_values(module);
    let bytes: Vec<(String, Vec<u8>, usize)> = values
        .into_iter()
        .map(|(k, v)| {
            let n = v.len();
            (k, v.iter().flat_map(|x| x.to_le_bytes()).collect(), n)
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(k, b, n)| Ok((k.clone(), TensorView::new(Dtype::F32, vec![*n], b)?)))
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()?;
    safetensors::serialize_to_file(views, None, path)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Loads parameters written by [`save_params`] into `module` (same architecture); every
/// parameter of the module must be in the file with the right size.
pub fn load_params<M: Module>(module: M, path: &Path) -> anyhow::Result<M> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let file = safetensors::SafeTensors::deserialize(&bytes)
        .with_context(|| format!("{}: not a safetensors file", path.display()))?;
    let mut values: BTreeMap<String, Vec<f32>> = BTreeMap::new();
    for (name, view) in file.tensors() {
        values.insert(
            name,
            view.data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        );
    }
    struct Load {
        values: BTreeMap<String, Vec<f32>>,
        path: Vec<String>,
        error: Option<String>,
    }
    impl ModuleMapper for Load {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let key = self.path.join(".");
            let Some(v) = self.values.remove(&key) else {
                self.error
                    .get_or_insert(format!("parameter {key} is missing"));
                return param;
            };
            let (id, tensor, mapper) = param.consume();
            let shape = tensor.shape();
            if shape.num_elements() != v.len() {
                self.error.get_or_insert(format!(
                    "parameter {key} has {} values, the model expects {}",
                    v.len(),
                    shape.num_elements()
                ));
                return Param::from_mapped_value(id, tensor, mapper);
            }
            let require_grad = tensor.is_require_grad();
            let mut t = Tensor::<D>::from_data(TensorData::new(v, shape), &tensor.device());
            if require_grad {
                t = t.require_grad();
            }
            Param::from_mapped_value(id, t, mapper)
        }
    }
    let mut loader = Load {
        values,
        path: Vec::new(),
        error: None,
    };
    let module = module.map(&mut loader);
    if let Some(e) = loader.error {
        anyhow::bail!("{}: {e}", path.display());
    }
    Ok(module)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(step: u64) -> TrainerState {
        TrainerState {
            step,
            steps_per_epoch: 10,
            instances_per_epoch: 40,
            seed: 1,
            instances_seen: step * 4,
            train_seconds: 1.5,
            dev: vec![],
            best: None,
        }
    }

    #[test]
    fn checkpoints_rotate_and_latest_points_at_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path();
        for step in [2, 4, 6] {
            write_checkpoint(run, step, 2, |d| write_state(d, &state(step))).unwrap();
        }
        let all: Vec<u64> = list_checkpoints(run)
            .unwrap()
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        assert_eq!(all, vec![4, 6]);
        let latest = latest_checkpoint(run).unwrap().unwrap();
        assert_eq!(read_state(&latest).unwrap(), state(6));
        // A partial directory (a run killed while writing) is ignored.
        std::fs::create_dir_all(run.join(CHECKPOINTS).join(".partial-step-000008")).unwrap();
        std::fs::create_dir_all(run.join(CHECKPOINTS).join("step-000009")).unwrap();
        assert_eq!(latest_checkpoint(run).unwrap().unwrap(), latest);
        // A failing writer leaves the previous checkpoint in place.
        assert!(write_checkpoint(run, 8, 2, |_| anyhow::bail!("disk full")).is_err());
        assert_eq!(latest_checkpoint(run).unwrap().unwrap(), latest);
        assert!(latest_checkpoint(&run.join("nothing")).unwrap().is_none());
    }

    /// The loop's state is written under the retriever's field names, as before the loop
    /// was shared.
    #[test]
    fn the_state_keeps_the_retriever_field_names() {
        let text = r#"{"step":3,"steps_per_epoch":10,"instances_per_epoch":40,"seed":1,"instances_seen":12,"train_seconds":1.5,"dev":[],"best":null}"#;
        let saved: TrainerState = serde_json::from_str(text).unwrap();
        assert_eq!(saved, state(3));
        let general = RunState::from(saved);
        assert_eq!(
            (general.examples_per_epoch, general.examples_seen),
            (40, 12)
        );
        let again = serde_json::to_string(&TrainerState::from(general)).unwrap();
        assert_eq!(again, text);
    }

    #[test]
    fn parameters_round_trip() {
        use burn::nn::LinearConfig;
        use burn::tensor::Device;
        let device = Device::flex();
        device.seed(5);
        let a = LinearConfig::new(3, 2).init(&device);
        let b = LinearConfig::new(3, 2).init(&device);
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.safetensors");
        save_params(&a, &f).unwrap();
        let loaded = load_params(b, &f).unwrap();
        assert_eq!(param_values(&loaded), param_values(&a));
        let wrong = LinearConfig::new(4, 2).init(&device);
        let e = format!("{:#}", load_params(wrong, &f).unwrap_err());
        assert!(e.contains("weight"), "{e}");
    }
}
