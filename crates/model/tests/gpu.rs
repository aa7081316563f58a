//! The GPU path against the CPU, built with the `wgpu` or `vulkan` feature (the CLI's default
//! `wgpu` feature turns it on in the workspace's tests). The device is `$STRATA_TEST_DEVICE`
//! (default `wgpu`, else `vulkan`): in CI, Mesa's software Vulkan driver (lavapipe, installed by
//! scripts/setup-vulkan.sh) runs the same kernels a GPU does. Without a working adapter the
//! tests fail, saying so.
//!
//! Tolerances: embeddings of the real model agree with the CPU to cosine >= 0.9999 per row and
//! reproduce the reference similarities to 1e-3; one backward pass of an InfoNCE loss through a
//! tiny model gives the
//! same loss to 1e-4 (relative) and every gradient to 1e-3 of its largest magnitude (or of a
//! thousandth of the largest gradient of the model, whichever is larger).
#![cfg(any(feature = "wgpu", feature = "vulkan"))]

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Device, Int, Tensor, TensorData};
use strata_model::{Embedder, LoadOptions, Side, TwoTower};
use strata_testkit::default_model;

fn gpu() -> Device {
    let name = std::env::var("STRATA_TEST_DEVICE").unwrap_or_else(|_| {
        if cfg!(feature = "wgpu") {
            "wgpu".into()
        } else {
            "vulkan".into()
        }
    });
    let device = strata_model::parse_device(&name).unwrap();
    // The adapter is found at the first operation: turn its failure into a clear message.
    let probe = device.clone();
    let works = std::panic::catch_unwind(move || {
        Tensor::<1>::from_floats([1.0, 2.0], &probe)
            .sum()
            .into_scalar::<f32>()
    });
    assert!(
        matches!(works, Ok(v) if v == 3.0),
        "no working {name} adapter: install a Vulkan driver (scripts/setup-vulkan.sh installs \
         Mesa's software one) or set STRATA_TEST_DEVICE"
    );
    device
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn real_model_embeddings_on_the_gpu_equal_the_cpu() {
    let texts = [
        "The weather is lovely today.",
        "It's so sunny outside!",
        "He drove to the stadium.",
        "Simpson Strong-Tie 12-Gauge Angle",
        "BEHR Premium Textured DeckOver 1-gal. #SC-141 Tugboat Wood and Concrete Coating",
        "angle bracket",
    ];
    let opts = LoadOptions::default();
    let cpu = Embedder::load_on(&default_model(), &opts, &Device::flex()).unwrap();
    let gpu = Embedder::load_on(&default_model(), &opts, &gpu()).unwrap();
    assert_eq!(gpu.precision(), None, "a GPU model runs the tensor model");
    let d = cpu.config().dim();
    for side in [Side::Query, Side::Item] {
        let a = cpu.embed(&texts, side).unwrap();
        let b = gpu.embed(&texts, side).unwrap();
        assert_eq!(a.len(), b.len());
        for i in 0..texts.len() {
            let (x, y) = (&a[i * d..(i + 1) * d], &b[i * d..(i + 1) * d]);
            let c = dot(x, y);
            assert!(
                c >= 0.9999,
                "{side:?} row {i}: cosine {c} between CPU and GPU"
            );
        }
        // The reference similarities of all-MiniLM-L6-v2 (as in tests/default_model.rs).
        let r = |i: usize| &b[i * d..(i + 1) * d];
        for (i, j, want) in [(0, 1, 0.6660), (0, 2, 0.1046), (1, 2, 0.1411)] {
            let got = dot(r(i), r(j));
            assert!((got - want).abs() < 1e-3, "{side:?} cos({i},{j}) = {got}");
        }
    }
}

#[test]
fn int8_on_the_gpu_is_a_clear_error() {
    let opts = LoadOptions {
        precision: Some(strata_model::Precision::Int8),
        ..Default::default()
    };
    let err = Embedder::load_on(&default_model(), &opts, &gpu())
        .err()
        .expect("int8 on a GPU must fail");
    assert!(format!("{err:#}").contains("CPU engine"), "{err:#}");
}

/// An InfoNCE loss (temperature 0.1) of three queries against three items (different token
/// ids on each side) through a tiny model, and its gradients.
fn backward(model: &TwoTower, device: &Device) -> (f32, Vec<(String, Vec<f32>)>) {
    let batch = |ids: Vec<i64>| {
        let mask: Vec<f32> = ids.iter().map(|&i| f32::from(i != 0)).collect();
        let ids: Tensor<2, Int> = Tensor::from_data(TensorData::new(ids, [3, 5]), device);
        let mask: Tensor<2> = Tensor::from_data(TensorData::new(mask, [3, 5]), device);
        (ids, mask)
    };
    let (qi, qm) = batch(vec![2, 7, 9, 3, 0, 2, 11, 12, 13, 3, 2, 5, 3, 0, 0]);
    let (di, dm) = batch(vec![2, 7, 21, 30, 3, 2, 12, 40, 3, 0, 2, 5, 44, 17, 3]);
    let q = model.embed(Side::Query, qi, qm);
    let d = model.embed(Side::Item, di, dm);
    let sim = q.matmul(d.transpose()) / 0.1;
    let eye: Tensor<2> = Tensor::eye(3, device);
    let loss = -(burn::tensor::activation::log_softmax(sim, 1) * eye).sum();
    let value = loss.clone().into_scalar::<f32>();
    let grads = loss.backward();
    (value, strata_testkit::gradients_by_path(model, &grads))
}

/// Moves every parameter to a device as a fresh leaf that requires a gradient.
struct ToDevice(Device);

impl ModuleMapper for ToDevice {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        Param::from_tensor(param.val().to_device(&self.0).detach().require_grad())
    }
}

#[test]
fn one_backward_pass_on_the_gpu_equals_the_cpu() {
    let cfg = strata_testkit::tiny_tower(50, Some(8));
    let cpu = Device::flex().autodiff();
    let model = strata_model::device::with_seed(&cpu, 7, || TwoTower::init(&cfg, &cpu));
    let gpu = gpu().autodiff();
    let on_gpu = model.clone().map(&mut ToDevice(gpu.clone()));
    let (loss_cpu, grads_cpu) = backward(&model, &cpu);
    let (loss_gpu, grads_gpu) = backward(&on_gpu, &gpu);
    assert!(
        (loss_cpu - loss_gpu).abs() <= 1e-4 * loss_cpu.abs().max(1.0),
        "loss {loss_cpu} on the CPU, {loss_gpu} on the GPU"
    );
    assert_eq!(grads_cpu.len(), grads_gpu.len());
    assert!(grads_cpu.len() > 10);
    // Each gradient to 1e-3 of its largest magnitude, or of a thousandth of the largest
    // gradient anywhere (for near-zero gradients, which float rounding dominates).
    let largest = |g: &[f32]| g.iter().fold(0f32, |m, x| m.max(x.abs()));
    let global = grads_cpu
        .iter()
        .map(|(_, g)| largest(g))
        .fold(0f32, f32::max);
    assert!(global > 0.0);
    let mut wrong = Vec::new();
    for ((path, a), (_, b)) in grads_cpu.iter().zip(&grads_gpu) {
        assert!(!a.is_empty(), "{path}: no gradient on the CPU");
        assert_eq!(a.len(), b.len(), "{path}: gradient sizes differ");
        let scale = largest(a).max(1e-3 * global);
        let diff = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        if diff > 1e-3 * scale {
            wrong.push(format!("{path}: differ by {diff} (scale {scale})"));
        }
    }
    assert!(
        wrong.is_empty(),
        "gradients on the GPU differ from the CPU's (largest gradient {global}):\n{}",
        wrong.join("\n")
    );
}
