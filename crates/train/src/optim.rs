//! AdamW with decoupled weight decay (Loshchilov & Hutter 2019), as PyTorch's `torch.optim.AdamW`
//! computes it, plus the pieces a trainer needs around it:
//!
//! - [`GradBuffer`]: the gradients of a module's parameters keyed by module path, summed over
//!   micro-batches (gradient accumulation), with global-norm clipping (PyTorch's
//!   `clip_grad_norm_`);
//! - [`AdamW`]: the update, one fused pass over each parameter's `f32` values, with a learning
//!   rate and a weight-decay switch per parameter path, and moments keyed by path so that they
//!   save and load across processes (parameter ids are not stable across a reload);
//! - [`ParamGroups`]: which learning rate and weight decay each path gets;
//! - [`Placement`]: where gradients and moments live. On the CPU backend they are host `f32`
//!   vectors updated by parallel fused loops (faster there than tensor operations); on a GPU
//!   they stay tensors on the parameter's device, so a step moves no gradient, moment or
//!   parameter through host memory, and clipping reads nothing back ([`GradNorm`] is read when
//!   the trainer logs it).
//!
//! The update per parameter `p` with gradient `g` at its step `t` (1-based):
//!
//! ```text
//! p ← p · (1 − lr·wd)
//! m ← β1·m + (1 − β1)·g          v ← β2·v + (1 − β2)·g²
//! p ← p − lr · (m / (1 − β1^t)) / (sqrt(v / (1 − β2^t)) + ε)
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Gradients, Tensor, TensorData};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Elements per parallel chunk of the fused loops.
const CHUNK: usize = 1 << 14;

/// AdamW hyper-parameters (PyTorch's names and defaults, except `epsilon`: see the field).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdamWConfig {
    /// Decay of the first moment.
    pub beta1: f64,
    /// Decay of the second moment.
    pub beta2: f64,
    /// Added to the root of the second moment. 1e-6 as in BERT and sentence-transformers
    /// fine-tuning (PyTorch's own default is 1e-8).
    pub epsilon: f64,
    /// Decoupled weight decay (PyTorch's AdamW default 0.01).
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-6,
            weight_decay: 0.01,
        }
    }
}

/// Learning rate and weight decay of the parameters at a module path.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GroupSettings {
    /// Learning rate at the current step (schedule already applied).
    pub lr: f64,
    /// Whether weight decay applies.
    pub decay: bool,
}

/// Assigns each parameter path its learning rate and weight-decay switch.
pub trait ParamGroups {
    /// Settings of the parameter at `path` (dot-separated module path).
    fn settings(&self, path: &str) -> GroupSettings;
}

impl<F: Fn(&str) -> GroupSettings> ParamGroups for F {
    fn settings(&self, path: &str) -> GroupSettings {
        self(path)
    }
}

/// Where the optimizer keeps a parameter's gradient and moments.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Placement {
    /// Host memory on the CPU backend, the parameter's device otherwise.
    #[default]
    Auto,
    /// Host `f32` vectors, updated by parallel fused loops.
    Host,
    /// Tensors on the parameter's device, updated by tensor operations.
    Device,
}

impl Placement {
    /// Whether values of a tensor on `device` are kept on the device.
    fn on_device(self, device: &burn::tensor::Device) -> bool {
        match self {
            Placement::Auto => !strata_model::device::is_cpu(device),
            Placement::Host => false,
            Placement::Device => true,
        }
    }
}

/// One parameter's values (a gradient or a moment), flattened.
#[derive(Clone, Debug)]
enum Values {
    Host(Vec<f32>),
    /// Boxed: a dispatch tensor is several hundred bytes.
    Device(Box<Tensor<1>>),
}

impl Values {
    /// The values of `t` (no autodiff), where `placement` puts them.
    fn of<const D: usize>(t: Tensor<D>, placement: Placement) -> Values {
        if placement.on_device(&t.device()) {
            let n = t.shape().num_elements();
            Values::Device(Box::new(t.reshape([n])))
        } else {
            Values::Host(tensor_values(t))
        }
    }

    fn zeros(n: usize, device: Option<&burn::tensor::Device>) -> Values {
        match device {
            Some(d) => Values::Device(Box::new(Tensor::zeros([n], d))),
            None => Values::Host(vec![0.0; n]),
        }
    }

    fn len(&self) -> usize {
        match self {
            Values::Host(v) => v.len(),
            Values::Device(t) => t.shape().num_elements(),
        }
    }

    /// A host copy.
    fn to_host(&self) -> Vec<f32> {
        match self {
            Values::Host(v) => v.clone(),
            Values::Device(t) => tensor_values((**t).clone()),
        }
    }

    /// The values as a tensor on `device` (moved there if held on the host).
    fn into_device(self, device: &burn::tensor::Device) -> Tensor<1> {
        match self {
            Values::Device(t) => *t,
            Values::Host(v) => {
                let n = v.len();
                Tensor::from_data(TensorData::new(v, [n]), device)
            }
        }
    }

    /// The values on the host (read back if held on a device).
    fn into_host(self) -> Vec<f32> {
        match self {
            Values::Host(v) => v,
            Values::Device(t) => tensor_values(*t),
        }
    }

    /// `self += scale · x`.
    fn add_scaled(&mut self, x: Values, scale: f32) {
        match self {
            Values::Host(acc) => add_scaled(acc, &x.into_host(), scale),
            Values::Device(acc) => {
                let x = x.into_device(&acc.device());
                let x = if scale == 1.0 { x } else { x.mul_scalar(scale) };
                **acc = (**acc).clone().add(x);
            }
        }
    }

    /// `self *= scale`.
    fn scale(&mut self, scale: f32) {
        match self {
            Values::Host(v) => scale_in_place(v, scale),
            Values::Device(t) => **t = (**t).clone().mul_scalar(scale),
        }
    }
}

/// One parameter's gradient.
#[derive(Clone, Debug)]
struct GradEntry {
    values: Values,
}

/// Gradients of a module's parameters by module path, accumulated over micro-batches.
#[derive(Clone, Debug, Default)]
pub struct GradBuffer {
    grads: BTreeMap<String, GradEntry>,
    micro_batches: usize,
    placement: Placement,
}

impl GradBuffer {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty buffer that keeps gradients where `placement` says.
    pub fn with_placement(placement: Placement) -> Self {
        GradBuffer {
            placement,
            ..Self::default()
        }
    }

    /// Adds `scale` times the gradients that `grads` holds for the parameters of `module`.
    /// Parameters without a gradient (frozen, or unused by the loss) are left out.
    pub fn accumulate<M: Module>(&mut self, module: &M, grads: &mut Gradients, scale: f32) {
        struct Collect<'a> {
            grads: &'a mut Gradients,
            path: Vec<String>,
            out: &'a mut BTreeMap<String, GradEntry>,
            scale: f32,
            placement: Placement,
        }
        impl ModuleVisitor for Collect<'_> {
            fn enter_module(&mut self, name: &str, _container_type: &str) {
                self.path.push(name.to_string());
            }
            fn exit_module(&mut self, _name: &str, _container_type: &str) {
                self.path.pop();
            }
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                let Some(grad) = param.val().grad_remove(self.grads) else {
                    return;
                };
                let values = Values::of(grad, self.placement);
                let path = self.path.join(".");
                match self.out.get_mut(&path) {
                    Some(entry) => entry.values.add_scaled(values, self.scale),
                    None => {
                        let mut values = values;
                        if self.scale != 1.0 {
                            values.scale(self.scale);
                        }
                        self.out.insert(path, GradEntry { values });
                    }
                }
            }
        }
        module.visit(&mut Collect {
            grads,
            path: Vec::new(),
            out: &mut self.grads,
            scale,
            placement: self.placement,
        });
        self.micro_batches += 1;
    }

    /// Number of micro-batches accumulated since the last [`clear`](Self::clear).
    pub fn micro_batches(&self) -> usize {
        self.micro_batches
    }

    /// Paths that hold a gradient.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.grads.keys().map(String::as_str)
    }

    /// The gradient of the parameter at `path` (a host copy).
    pub fn get(&self, path: &str) -> Option<Vec<f32>> {
        self.grads.get(path).map(|e| e.values.to_host())
    }

    /// Whether no gradient is held.
    pub fn is_empty(&self) -> bool {
        self.grads.is_empty()
    }

    /// L2 norm of all gradients together. On a device it stays a tensor until
    /// [`GradNorm::value`] reads it.
    pub fn norm(&self) -> GradNorm {
        let mut host_sq = 0f64;
        let mut device_sq: Option<Tensor<1>> = None;
        for e in self.grads.values() {
            match &e.values {
                Values::Host(v) => {
                    host_sq += v
                        .par_chunks(CHUNK)
                        .map(|c| c.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>())
                        .collect::<Vec<f64>>()
                        .into_iter()
                        .sum::<f64>()
                }
                Values::Device(t) => {
                    let sq = (**t).clone().powi_scalar(2).sum();
                    device_sq = Some(match device_sq {
                        Some(acc) => acc.add(sq),
                        None => sq,
                    });
                }
            }
        }
        GradNorm { host_sq, device_sq }
    }

    /// L2 norm of all gradients together (one value read back from a device).
    pub fn global_norm(&self) -> f64 {
        self.norm().value()
    }

    /// Scales every gradient so that the global norm is at most `max_norm` (as PyTorch's
    /// `clip_grad_norm_`: factor `max_norm / (norm + 1e-6)` when below 1). Returns the norm
    /// before clipping. When every gradient is on a device, the factor is computed and applied
    /// there and nothing is read back (the caller reads the norm when it logs it, after the
    /// update is queued); otherwise the norm is read first.
    pub fn clip_global_norm(&mut self, max_norm: f64) -> GradNorm {
        let norm = self.norm();
        let all_on_device = self
            .grads
            .values()
            .all(|e| matches!(e.values, Values::Device(_)));
        if let (true, Some(sq)) = (all_on_device, &norm.device_sq) {
            // min(1, max / (norm + 1e-6)): multiplying by exactly 1 leaves the values as they
            // are, as the host path's "factor < 1" test does.
            let factor = sq
                .clone()
                .sqrt()
                .add_scalar(1e-6)
                .recip()
                .mul_scalar(max_norm)
                .clamp_max(1.0);
            for e in self.grads.values_mut() {
                if let Values::Device(t) = &mut e.values {
                    **t = (**t).clone().mul(factor.clone());
                }
            }
            return norm;
        }
        let value = norm.clone().value();
        let factor = max_norm / (value + 1e-6);
        if factor < 1.0 {
            for e in self.grads.values_mut() {
                e.values.scale(factor as f32);
            }
        }
        norm
    }

    /// Drops every gradient.
    pub fn clear(&mut self) {
        self.grads.clear();
        self.micro_batches = 0;
    }
}

/// The global gradient norm of one update, read back from a device only by
/// [`value`](GradNorm::value).
#[derive(Clone, Debug)]
pub struct GradNorm {
    host_sq: f64,
    device_sq: Option<Tensor<1>>,
}

impl GradNorm {
    /// The norm (waits for the device's queued work when part of it is there).
    pub fn value(self) -> f64 {
        let device = self.device_sq.map_or(0.0, |t| t.into_scalar::<f64>());
        (self.host_sq + device).sqrt()
    }
}

/// The `f32` values of a tensor (moved out when possible).
pub(crate) fn tensor_values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .try_into_vec_as::<f32>()
        .expect("float tensors convert to f32")
}

fn add_scaled(acc: &mut [f32], x: &[f32], scale: f32) {
    acc.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(a, b)| {
            for (a, &b) in a.iter_mut().zip(b) {
                *a += scale * b;
            }
        });
}

fn scale_in_place(x: &mut [f32], scale: f32) {
    x.par_chunks_mut(CHUNK).for_each(|c| {
        for v in c {
            *v *= scale;
        }
    });
}

/// First and second moments of one parameter.
#[derive(Clone, Debug)]
struct Moments {
    m: Values,
    v: Values,
    /// Updates applied so far.
    t: u64,
}

/// The AdamW optimizer with its per-parameter state.
#[derive(Clone, Debug)]
pub struct AdamW {
    config: AdamWConfig,
    state: BTreeMap<String, Moments>,
    placement: Placement,
}

/// Metadata key of the per-parameter step counts in a saved state file.
const STEPS_KEY: &str = "strata.adamw.steps";
const CONFIG_KEY: &str = "strata.adamw.config";

impl AdamW {
    /// A fresh optimizer.
    pub fn new(config: AdamWConfig) -> Self {
        AdamW {
            config,
            state: BTreeMap::new(),
            placement: Placement::Auto,
        }
    }

    /// The same optimizer keeping its moments where `placement` says (a loaded state moves on
    /// its first update).
    pub fn with_placement(mut self, placement: Placement) -> Self {
        self.placement = placement;
        self
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &AdamWConfig {
        &self.config
    }

    /// Number of parameters with state.
    pub fn len(&self) -> usize {
        self.state.len()
    }

    /// Whether no parameter has state yet.
    pub fn is_empty(&self) -> bool {
        self.state.is_empty()
    }

    /// Applies one update to every parameter of `module` that has a gradient in `grads`.
    pub fn step<M: Module>(
        &mut self,
        module: M,
        grads: &GradBuffer,
        groups: &dyn ParamGroups,
    ) -> M {
        struct Update<'a> {
            opt: &'a mut AdamW,
            grads: &'a GradBuffer,
            groups: &'a dyn ParamGroups,
            path: Vec<String>,
        }
        impl ModuleMapper for Update<'_> {
            fn enter_module(&mut self, name: &str, _container_type: &str) {
                self.path.push(name.to_string());
            }
            fn exit_module(&mut self, _name: &str, _container_type: &str) {
                self.path.pop();
            }
            fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
                let path = self.path.join(".");
                let Some(entry) = self.grads.grads.get(&path) else {
                    return param;
                };
                let (id, tensor, mapper) = param.consume();
                let require_grad = tensor.is_require_grad();
                let autodiff = tensor.is_autodiff();
                let shape = tensor.shape();
                let settings = self.groups.settings(&path);
                let inner = tensor.inner();
                let device = inner.device();
                let mut updated = if self.opt.placement.on_device(&device) {
                    let n = shape.num_elements();
                    let p = inner.reshape([n]);
                    let g = entry.values.clone().into_device(&device);
                    self.opt
                        .update_device(&path, p, g, settings)
                        .reshape(shape.clone())
                } else {
                    let mut values = tensor_values(inner);
                    debug_assert_eq!(values.len(), entry.values.len(), "{path}");
                    let g = entry.values.to_host();
                    self.opt.update(&path, &mut values, &g, settings);
                    Tensor::<D>::from_data(TensorData::new(values, shape), &device)
                };
                if autodiff {
                    updated = updated.autodiff();
                }
                if require_grad {
                    updated = updated.require_grad();
                }
                Param::from_mapped_value(id, updated, mapper)
            }
        }
        module.map(&mut Update {
            opt: self,
            grads,
            groups,
            path: Vec::new(),
        })
    }

    /// The step's scalars for a parameter at its step `t`: weight-decay factor, step size,
    /// `1 / sqrt(1 - β2^t)`.
    fn scalars(&self, t: u64, s: GroupSettings) -> (f32, f32, f32) {
        let c = &self.config;
        let bc1 = 1.0 - c.beta1.powi(t as i32);
        let bc2 = 1.0 - c.beta2.powi(t as i32);
        let decay = if s.decay {
            (1.0 - s.lr * c.weight_decay) as f32
        } else {
            1.0
        };
        (decay, (s.lr / bc1) as f32, (1.0 / bc2.sqrt()) as f32)
    }

    /// The fused update of one parameter's values on the host.
    fn update(&mut self, path: &str, p: &mut [f32], g: &[f32], s: GroupSettings) {
        let n = p.len();
        let st = self
            .state
            .entry(path.to_string())
            .or_insert_with(|| Moments {
                m: Values::zeros(n, None),
                v: Values::zeros(n, None),
                t: 0,
            });
        st.t += 1;
        let t = st.t;
        let mut m = std::mem::replace(&mut st.m, Values::Host(Vec::new())).into_host();
        let mut v = std::mem::replace(&mut st.v, Values::Host(Vec::new())).into_host();
        let (decay, step_size, inv_sqrt_bc2) = self.scalars(t, s);
        let c = &self.config;
        let eps = c.epsilon as f32;
        let (b1, b2) = (c.beta1 as f32, c.beta2 as f32);
        let (one_b1, one_b2) = (1.0 - b1, 1.0 - b2);
        p.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
            .for_each(|((p, g), (m, v))| {
                for i in 0..p.len() {
                    let gi = g[i];
                    let mi = b1 * m[i] + one_b1 * gi;
                    let vi = b2 * v[i] + one_b2 * gi * gi;
                    m[i] = mi;
                    v[i] = vi;
                    let denom = vi.sqrt() * inv_sqrt_bc2 + eps;
                    p[i] = p[i] * decay - step_size * mi / denom;
                }
            });
        let st = self.state.get_mut(path).expect("inserted above");
        st.m = Values::Host(m);
        st.v = Values::Host(v);
    }

    /// The same update with tensor operations on the parameter's device; returns the new
    /// values.
    fn update_device(
        &mut self,
        path: &str,
        p: Tensor<1>,
        g: Tensor<1>,
        s: GroupSettings,
    ) -> Tensor<1> {
        let device = p.device();
        let n = p.shape().num_elements();
        let st = self
            .state
            .entry(path.to_string())
            .or_insert_with(|| Moments {
                m: Values::zeros(n, Some(&device)),
                v: Values::zeros(n, Some(&device)),
                t: 0,
            });
        st.t += 1;
        let t = st.t;
        let placeholder = || Values::Host(Vec::new());
        let m = std::mem::replace(&mut st.m, placeholder()).into_device(&device);
        let v = std::mem::replace(&mut st.v, placeholder()).into_device(&device);
        let (decay, step_size, inv_sqrt_bc2) = self.scalars(t, s);
        let c = &self.config;
        let (b1, b2, eps) = (c.beta1 as f32, c.beta2 as f32, c.epsilon as f32);
        let m = m.mul_scalar(b1).add(g.clone().mul_scalar(1.0 - b1));
        let v = v.mul_scalar(b2).add(g.powi_scalar(2).mul_scalar(1.0 - b2));
        let denom = v.clone().sqrt().mul_scalar(inv_sqrt_bc2).add_scalar(eps);
        let p = if decay == 1.0 { p } else { p.mul_scalar(decay) };
        let p = p.sub(m.clone().div(denom).mul_scalar(step_size));
        let st = self.state.get_mut(path).expect("inserted above");
        st.m = Values::Device(Box::new(m));
        st.v = Values::Device(Box::new(v));
        p
    }

    /// Writes the state (moments and step counts) to a safetensors file.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        use safetensors::tensor::{Dtype, TensorView};
        let bytes: Vec<(String, Vec<u8>, usize)> = self
            .state
            .iter()
            .flat_map(|(name, st)| {
                let (m, v) = (st.m.to_host(), st.v.to_host());
                [
                    (format!("m/{name}"), to_bytes(&m), m.len()),
                    (format!("v/{name}"), to_bytes(&v), v.len()),
                ]
            })
            .collect();
        let views = bytes
            .iter()
            .map(|(name, b, n)| Ok((name.clone(), TensorView::new(Dtype::F32, vec![*n], b)?)))
            .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()?;
        let steps: BTreeMap<&str, u64> =
            self.state.iter().map(|(k, s)| (k.as_str(), s.t)).collect();
        let mut meta = std::collections::HashMap::new();
        meta.insert(STEPS_KEY.to_string(), serde_json::to_string(&steps)?);
        meta.insert(CONFIG_KEY.to_string(), serde_json::to_string(&self.config)?);
        safetensors::serialize_to_file(views, Some(meta), path)
            .with_context(|| format!("cannot write optimizer state {}", path.display()))
    }

    /// Reads a state written by [`save`](Self::save); the hyper-parameters stay those of
    /// `config` (a resumed run may change them).
    pub fn load(config: AdamWConfig, path: &Path) -> anyhow::Result<Self> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read optimizer state {}", path.display()))?;
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
            .with_context(|| format!("{}: not a safetensors file", path.display()))?;
        let tensors = safetensors::SafeTensors::deserialize(&bytes)
            .with_context(|| format!("{}: not a safetensors file", path.display()))?;
        let steps_json = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get(STEPS_KEY))
            .with_context(|| format!("{}: missing metadata {STEPS_KEY}", path.display()))?;
        let steps: BTreeMap<String, u64> = serde_json::from_str(steps_json)
            .with_context(|| format!("{}: invalid metadata {STEPS_KEY}", path.display()))?;
        let read = |name: &str| -> anyhow::Result<Vec<f32>> {
            let view = tensors
                .tensor(name)
                .with_context(|| format!("{}: missing tensor {name}", path.display()))?;
            anyhow::ensure!(
                view.dtype() == safetensors::Dtype::F32,
                "{}: tensor {name} is {:?}, expected F32",
                path.display(),
                view.dtype()
            );
            Ok(view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect())
        };
        let mut state = BTreeMap::new();
        for (name, t) in steps {
            let m = read(&format!("m/{name}"))?;
            let v = read(&format!("v/{name}"))?;
            anyhow::ensure!(
                m.len() == v.len(),
                "{}: moments of {name} differ in size",
                path.display()
            );
            state.insert(
                name,
                Moments {
                    m: Values::Host(m),
                    v: Values::Host(v),
                    t,
                },
            );
        }
        Ok(AdamW {
            config,
            state,
            placement: Placement::Auto,
        })
    }

    /// Checks that every saved moment matches a gradient-receiving parameter of `module` in
    /// size, naming the first mismatch.
    pub fn check_against<M: Module>(&self, module: &M) -> anyhow::Result<()> {
        let sizes = param_sizes(module);
        for (name, st) in &self.state {
            match sizes.get(name) {
                None => {
                    anyhow::bail!("optimizer state names parameter {name}, which the model lacks")
                }
                Some(&n) if n != st.m.len() => anyhow::bail!(
                    "optimizer state of {name} has {} values, the parameter {n}",
                    st.m.len()
                ),
                _ => {}
            }
        }
        Ok(())
    }
}

fn to_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The float parameters of a module by path: their sizes, or also their values.
struct ParamWalk {
    path: Vec<String>,
    with_values: bool,
    sizes: BTreeMap<String, usize>,
    values: BTreeMap<String, Vec<f32>>,
}

impl ParamWalk {
    fn of<M: Module>(module: &M, with_values: bool) -> Self {
        let mut w = ParamWalk {
            path: Vec::new(),
            with_values,
            sizes: BTreeMap::new(),
            values: BTreeMap::new(),
        };
        module.visit(&mut w);
        w
    }
}

impl ModuleVisitor for ParamWalk {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let path = self.path.join(".");
        self.sizes
            .insert(path.clone(), param.lazy_shape().num_elements());
        if self.with_values {
            self.values.insert(path, tensor_values(param.val().inner()));
        }
    }
}

/// Number of values of every float parameter of `module`, by path.
pub fn param_sizes<M: Module>(module: &M) -> BTreeMap<String, usize> {
    ParamWalk::of(module, false).sizes
}

/// The values of every float parameter of `module`, by path (for tests and checksums).
pub fn param_values<M: Module>(module: &M) -> BTreeMap<String, Vec<f32>> {
    ParamWalk::of(module, true).values
}

/// Learning-rate factor of linear warmup followed by linear decay to zero.
///
/// `step` counts optimizer updates from 0: update `step` uses `factor(step)`. During warmup the
/// factor rises as `(step + 1) / warmup`; afterwards it falls linearly from 1 to reach 0 after
/// `total` updates.
pub fn warmup_linear(step: u64, warmup: u64, total: u64) -> f64 {
    if step < warmup {
        return (step + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup);
    if span == 0 {
        return 1.0;
    }
    (total.saturating_sub(step) as f64 / span as f64).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::Device;

    #[derive(Module, Debug)]
    struct Net {
        a: Linear,
        b: Linear,
    }

    fn net(device: &Device) -> Net {
        strata_model::with_seed(device, 3, || Net {
            a: LinearConfig::new(5, 4).init(device),
            b: LinearConfig::new(4, 3).init(device),
        })
    }

    fn loss(net: &Net, device: &Device, k: usize) -> Tensor<1> {
        let x: Vec<f32> = (0..10)
            .map(|i| ((i * 7 + k * 3) % 11) as f32 / 5.0 - 1.0)
            .collect();
        let x = Tensor::<2>::from_data(TensorData::new(x, [2, 5]), device);
        net.b
            .forward(net.a.forward(x).tanh())
            .powf_scalar(2.0)
            .sum()
    }

    fn constant(lr: f64, decay: bool) -> impl Fn(&str) -> GroupSettings {
        move |_: &str| GroupSettings { lr, decay }
    }

    #[test]
    fn paths_name_every_parameter() {
        let device = Device::flex().autodiff();
        let n = net(&device);
        let mut grads = loss(&n, &device, 0).backward();
        let mut buf = GradBuffer::new();
        buf.accumulate(&n, &mut grads, 1.0);
        let paths: Vec<&str> = buf.paths().collect();
        assert_eq!(paths, ["a.bias", "a.weight", "b.bias", "b.weight"]);
        assert_eq!(buf.get("a.weight").unwrap().len(), 20);
    }

    /// The fused update matches burn's reference AdamW (same betas, epsilon and decay) over
    /// several steps.
    #[test]
    fn matches_burn_reference_adamw() {
        use burn::optim::{AdamWConfig as BurnAdamW, GradientsParams};
        let device = Device::flex().autodiff();
        let cfg = AdamWConfig {
            beta1: 0.9,
            beta2: 0.98,
            epsilon: 1e-6,
            weight_decay: 0.05,
        };
        let lr = 0.01;
        // Parameters initialise lazily: read them once so both copies share the values.
        let mut ours = net(&device);
        let start = param_values(&ours);
        let mut theirs = crate::step::fresh_params(ours.clone());
        let mut opt = AdamW::new(cfg);
        let mut reference = BurnAdamW::new()
            .with_beta_1(cfg.beta1 as f32)
            .with_beta_2(cfg.beta2 as f32)
            .with_epsilon(cfg.epsilon as f32)
            .with_weight_decay(cfg.weight_decay as f32)
            .init();
        for k in 0..5 {
            let mut grads = loss(&ours, &device, k).backward();
            let mut buf = GradBuffer::new();
            buf.accumulate(&ours, &mut grads, 1.0);
            ours = opt.step(ours, &buf, &constant(lr, true));
            let grads = GradientsParams::from_grads(loss(&theirs, &device, k).backward(), &theirs);
            theirs = reference.step(lr, theirs, grads);
        }
        let (a, b) = (param_values(&ours), param_values(&theirs));
        for (path, va) in &a {
            let vb = &b[path];
            let worst = va
                .iter()
                .zip(vb)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-5, "{path}: differs by {worst}");
        }
        // And the parameters moved.
        assert!(start["a.weight"] != a["a.weight"]);
    }

    #[test]
    fn accumulation_sums_and_clipping_bounds_the_norm() {
        let device = Device::flex().autodiff();
        let n = net(&device);
        let mut one = GradBuffer::new();
        let mut g = loss(&n, &device, 1).backward();
        one.accumulate(&n, &mut g, 1.0);
        let mut two = GradBuffer::new();
        for _ in 0..2 {
            let mut g = loss(&n, &device, 1).backward();
            two.accumulate(&n, &mut g, 0.5);
        }
        assert_eq!(two.micro_batches(), 2);
        for p in one.paths() {
            let (x, y) = (one.get(p).unwrap(), two.get(p).unwrap());
            assert!(x.iter().zip(&y).all(|(a, b)| (a - b).abs() < 1e-6), "{p}");
        }
        let norm = one.global_norm();
        let manual: f64 = one
            .paths()
            .flat_map(|p| {
                one.get(p)
                    .unwrap()
                    .into_iter()
                    .map(|v| f64::from(v) * f64::from(v))
            })
            .sum::<f64>()
            .sqrt();
        assert!((norm - manual).abs() < 1e-9 && norm > 0.0);
        let before = one.clip_global_norm(norm / 4.0).value();
        assert!((before - norm).abs() < 1e-12);
        assert!((one.global_norm() - norm / 4.0).abs() < 1e-4 * norm);
        // A large bound leaves gradients alone.
        let unchanged = one.global_norm();
        one.clip_global_norm(unchanged * 10.0);
        assert!((one.global_norm() - unchanged).abs() < 1e-9);
    }

    #[test]
    fn state_round_trips_through_a_file() {
        let device = Device::flex().autodiff();
        let mut n = net(&device);
        let mut opt = AdamW::new(AdamWConfig::default());
        for k in 0..2 {
            let mut g = loss(&n, &device, k).backward();
            let mut buf = GradBuffer::new();
            buf.accumulate(&n, &mut g, 1.0);
            n = opt.step(n, &buf, &constant(1e-2, true));
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("opt.safetensors");
        opt.save(&file).unwrap();
        let loaded = AdamW::load(AdamWConfig::default(), &file).unwrap();
        assert_eq!(host_state(&loaded), host_state(&opt));
        loaded.check_against(&n).unwrap();
        assert!(loaded.check_against(&n.a).is_err());
    }

    fn host_state(opt: &AdamW) -> BTreeMap<String, (Vec<f32>, Vec<f32>, u64)> {
        opt.state
            .iter()
            .map(|(k, st)| (k.clone(), (st.m.to_host(), st.v.to_host(), st.t)))
            .collect()
    }

    fn worst_difference(a: &BTreeMap<String, Vec<f32>>, b: &BTreeMap<String, Vec<f32>>) -> f32 {
        assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
        a.iter()
            .flat_map(|(k, va)| va.iter().zip(&b[k]).map(|(x, y)| (x - y).abs()))
            .fold(0f32, f32::max)
    }

    /// Gradients and moments kept as device tensors (what a GPU gets) give the host loops'
    /// results: accumulation over two micro-batches, clipping, five updates with weight decay
    /// and a no-decay group, and a state saved by one placement and resumed by the other.
    #[test]
    fn device_placement_equals_host_placement() {
        let device = Device::flex().autodiff();
        let groups = |p: &str| GroupSettings {
            lr: 0.02,
            decay: p.ends_with("weight"),
        };
        let cfg = AdamWConfig {
            weight_decay: 0.1,
            ..Default::default()
        };
        let start = net(&device);
        let run =
            |placement: Placement, from: Net, opt: &mut AdamW, steps: std::ops::Range<usize>| {
                let mut n = from;
                let mut norms = Vec::new();
                for k in steps {
                    let mut buf = GradBuffer::with_placement(placement);
                    for part in 0..2 {
                        let mut g = loss(&n, &device, k + part).backward();
                        buf.accumulate(&n, &mut g, 0.5);
                    }
                    norms.push(buf.clip_global_norm(0.5).value());
                    n = opt.step(n, &buf, &groups);
                }
                (n, norms)
            };
        let mut host_opt = AdamW::new(cfg).with_placement(Placement::Host);
        let mut dev_opt = AdamW::new(cfg).with_placement(Placement::Device);
        let (host, host_norms) = run(Placement::Host, start.clone(), &mut host_opt, 0..5);
        let (dev, dev_norms) = run(Placement::Device, start.clone(), &mut dev_opt, 0..5);
        assert!(
            dev_opt
                .state
                .values()
                .all(|st| matches!(st.m, Values::Device(_)))
        );
        for (a, b) in host_norms.iter().zip(&dev_norms) {
            assert!((a - b).abs() < 1e-5 * a, "norms {a} vs {b}");
        }
        // Clipping was active (the bound is below the first norm), so the factor path ran.
        assert!(host_norms[0] > 0.5, "{host_norms:?}");
        let worst = worst_difference(&param_values(&host), &param_values(&dev));
        assert!(worst < 1e-6, "parameters differ by {worst}");
        let moved = worst_difference(&param_values(&start), &param_values(&host));
        assert!(moved > 1e-3, "the parameters moved by {moved} only");
        let (a, b) = (host_state(&host_opt), host_state(&dev_opt));
        for (k, (m, v, t)) in &a {
            let (m2, v2, t2) = &b[k];
            assert_eq!(t, t2);
            let d = m
                .iter()
                .zip(m2)
                .chain(v.iter().zip(v2))
                .map(|(x, y)| (x - y).abs());
            assert!(d.fold(0f32, f32::max) < 1e-6, "{k}");
        }
        // Saved from the device, resumed on the host, and the other way round.
        let dir = tempfile::tempdir().unwrap();
        let (fd, fh) = (
            dir.path().join("d.safetensors"),
            dir.path().join("h.safetensors"),
        );
        dev_opt.save(&fd).unwrap();
        host_opt.save(&fh).unwrap();
        let mut dev_to_host = AdamW::load(cfg, &fd)
            .unwrap()
            .with_placement(Placement::Host);
        let mut host_to_dev = AdamW::load(cfg, &fh)
            .unwrap()
            .with_placement(Placement::Device);
        let (x, _) = run(Placement::Host, dev, &mut dev_to_host, 5..7);
        let (y, _) = run(Placement::Device, host, &mut host_to_dev, 5..7);
        let worst = worst_difference(&param_values(&x), &param_values(&y));
        assert!(worst < 1e-6, "resumed runs differ by {worst}");
    }

    #[test]
    fn schedule_warms_up_then_decays_to_zero() {
        assert_eq!(warmup_linear(0, 4, 10), 0.25);
        assert_eq!(warmup_linear(3, 4, 10), 1.0);
        assert_eq!(warmup_linear(4, 4, 10), 1.0);
        assert_eq!(warmup_linear(7, 4, 10), 0.5);
        assert_eq!(warmup_linear(10, 4, 10), 0.0);
        assert_eq!(warmup_linear(0, 0, 10), 1.0);
        assert!((warmup_linear(9, 0, 10) - 0.1).abs() < 1e-12);
    }

    #[test]
    fn no_decay_group_is_not_shrunk() {
        // With a zero gradient the only change comes from weight decay.
        let device = Device::flex().autodiff();
        let n = net(&device);
        let before = param_values(&n);
        let mut buf = GradBuffer::new();
        for (path, v) in &before {
            buf.grads.insert(
                path.clone(),
                GradEntry {
                    values: Values::Host(vec![0.0; v.len()]),
                },
            );
        }
        let mut opt = AdamW::new(AdamWConfig {
            weight_decay: 0.5,
            ..Default::default()
        });
        let groups = |p: &str| GroupSettings {
            lr: 0.1,
            decay: p.starts_with('a'),
        };
        let after = param_values(&opt.step(n, &buf, &groups));
        for (path, v) in &before {
            let factor = if path.starts_with('a') { 0.95 } else { 1.0 };
            for (x, y) in v.iter().zip(&after[path]) {
                assert!((x * factor - y).abs() < 1e-6, "{path}");
            }
        }
    }
}
