//! Hand-written CPU kernels where the tensor library's generic version is slow: GELU (the
//! exact, erf-based form BERT uses). The flex backend evaluates `erf` (and, in the backward
//! pass, `exp`) with a scalar libm call per element on one thread; the rational approximation
//! here vectorises, runs on every core and stays within a few float32 ulps of the exact
//! function. Training uses it through a backend extension ([`GeluOps`]) whose autodiff
//! implementation has its own backward pass ([`GeluBackward`]); inference calls it directly.

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::tensor::FloatTensor;
use burn::backend::{
    Autodiff, AutodiffBackend, Backend, DType, Dispatch, Flex, TensorMetadata, backend_extension,
    ops::ActivationOps,
};
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// 1 / sqrt(2 pi).
const INV_SQRT_2PI: f32 = 0.398_942_3;
/// Elements per parallel task.
const CHUNK: usize = 16 * 1024;

/// `erf(x)` for f32 by a rational approximation on [-4, 4] (erf is ±1 to f32 precision beyond).
#[inline(always)]
pub fn erf_f32(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10_f32;
    p = p * x2 + 2.770_681_4e-8;
    p = p * x2 - 2.101_024e-6;
    p = p * x2 - 5.692_506_4e-5;
    p = p * x2 - 7.349_906_3e-4;
    p = p * x2 - 2.954_6e-3;
    p = p * x2 - 1.609_603_3e-2;
    let mut q = -1.456_607_2e-5_f32;
    q = q * x2 - 2.133_740_6e-4;
    q = q * x2 - 1.682_827e-3;
    q = q * x2 - 7.373_329e-3;
    q = q * x2 - 1.426_474e-2;
    x * p / q
}

/// `exp(x)` for f32: `x = n ln2 + r` (Cody-Waite split of ln 2, |r| <= ln2/2), a degree-7
/// polynomial for `e^r` and `2^n` from the exponent bits (relative error below 5e-7 on
/// [-87, 88]); vectorises, unlike the libm call.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.0, 88.0);
    // Round to nearest by the 1.5 * 2^23 trick (|x log2 e| < 2^22), which vectorises on every
    // x86-64 CPU; `f32::round` is a libm call without SSE4.1.
    const MAGIC: f32 = 12_582_912.0;
    let n = (x * std::f32::consts::LOG2_E + MAGIC) - MAGIC;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let mut p = 1.0 / 5040.0_f32;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// Exact GELU of one value: `x * Phi(x)`.
#[inline(always)]
pub fn gelu_f32(x: f32) -> f32 {
    0.5 * x * (1.0 + erf_f32(x * FRAC_1_SQRT_2))
}

/// Derivative of the exact GELU: `Phi(x) + x * phi(x)`.
#[inline(always)]
pub fn gelu_grad_f32(x: f32) -> f32 {
    let cdf = 0.5 * (1.0 + erf_f32(x * FRAC_1_SQRT_2));
    let pdf = INV_SQRT_2PI * exp_f32((-0.5 * x * x).max(-87.0));
    cdf + x * pdf
}

/// Exact (erf) GELU over a slice, in place.
pub fn gelu_slice(v: &mut [f32]) {
    v.par_chunks_mut(CHUNK).for_each(gelu_chunk);
}

multiversion! {
    fn gelu_chunk(chunk: &mut [f32]) {
        for x in chunk {
            *x = gelu_f32(*x);
        }
    }
}

multiversion! {
    fn gelu_backward_chunk(g: &mut [f32], x: &[f32]) {
        for (g, &x) in g.iter_mut().zip(x) {
            *g *= gelu_grad_f32(x);
        }
    }
}

/// `grad[i] *= GELU'(x[i])`, in place.
pub fn gelu_backward_slice(x: &[f32], grad: &mut [f32]) {
    grad.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(g, x)| gelu_backward_chunk(g, x));
}

/// The exact GELU as a backend operation, so that autodiff graphs can use the fast kernel
/// with a matching backward pass. Implemented for the flex backend and for autodiff over it;
/// [`gelu`] only routes flex tensors here.
#[backend_extension(Flex, Autodiff)]
pub trait GeluOps: Backend {
    /// `x * Phi(x)`, elementwise.
    fn erf_gelu(x: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// The backward pass of [`GeluOps::erf_gelu`] on a concrete backend.
pub trait GeluBackward: Backend {
    /// `grad * GELU'(x)`, elementwise.
    fn erf_gelu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// The f32 values of a flex tensor, row-major (None for another dtype).
fn flex_vec(t: &FloatTensor<Flex>) -> Option<Vec<f32>> {
    if t.dtype() != DType::F32 {
        return None;
    }
    let layout = t.layout();
    if layout.is_contiguous() && layout.start_offset() == 0 {
        return Some(t.storage::<f32>()[..layout.num_elements()].to_vec());
    }
    t.clone().into_data().try_into_vec::<f32>().ok()
}

impl GeluOps for Flex {
    fn erf_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        if x.dtype() != DType::F32 {
            return <Flex as ActivationOps<Flex>>::gelu(x);
        }
        let Some(mut out) = flex_vec(&x) else {
            return <Flex as ActivationOps<Flex>>::gelu(x);
        };
        gelu_slice(&mut out);
        FloatTensor::<Flex>::from_data(TensorData::new(out, x.shape()))
    }
}

impl GeluBackward for Flex {
    fn erf_gelu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        if x.dtype() != DType::F32 || grad.dtype() != DType::F32 || x.shape() != grad.shape() {
            return <Flex as ActivationOps<Flex>>::gelu_backward(x, grad);
        }
        let (Some(xv), Some(mut g)) = (flex_vec(&x), flex_vec(&grad)) else {
            return <Flex as ActivationOps<Flex>>::gelu_backward(x, grad);
        };
        gelu_backward_slice(&xv, &mut g);
        FloatTensor::<Flex>::from_data(TensorData::new(g, grad.shape()))
    }
}

impl<B: Backend + GeluOps + GeluBackward, C: CheckpointStrategy> GeluOps for Autodiff<B, C> {
    fn erf_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct Gelu;

        impl<B: Backend + GeluBackward> Backward<B, 1> for Gelu {
            type State = NodeId;

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                checkpointer: &mut Checkpointer,
            ) {
                let input = checkpointer.retrieve_node_output(ops.state);
                unary::<B, _>(ops.parents, ops.node, grads, |grad| {
                    B::erf_gelu_backward(input, grad)
                });
            }
        }

        match Gelu.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let state = prep.checkpoint(&x);
                let out = B::erf_gelu(<Self as AutodiffBackend>::inner(x));
                prep.finish(state, out)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::erf_gelu(<Self as AutodiffBackend>::inner(x)))
            }
        }
    }
}

/// Exact GELU: the fast kernel on the flex backend (with or without autodiff), the library's
/// op elsewhere (GPUs keep burn's device-native implementation).
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if !crate::device::is_cpu(&x.device()) {
        return burn::tensor::activation::gelu(x);
    }
    Tensor::from_dispatch(<Dispatch as GeluOps>::erf_gelu(x.into_dispatch()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    #[test]
    fn erf_matches_libm() {
        let mut worst = 0f32;
        for i in -60000..=60000 {
            let x = i as f32 * 1e-4;
            let e = (erf_f32(x) - libm_erf(x)).abs();
            worst = worst.max(e);
        }
        assert!(worst < 2e-6, "max |erf error| = {worst}");
    }

    fn libm_erf(x: f32) -> f32 {
        // Reference through f64: erf(x) = 1 - erfc(x); use the series/continued fraction of
        // the standard library-free implementation below (high precision in f64).
        erf_f64(x as f64) as f32
    }

    /// erf in f64 by its Maclaurin series (|x| <= 3) and asymptotic complement otherwise.
    fn erf_f64(x: f64) -> f64 {
        if x.abs() > 3.0 {
            // erfc continued fraction (Lentz), accurate for |x| > 3.
            let z = x.abs();
            let mut f = z;
            let mut c = z;
            let mut d = 0.0;
            for k in 1..200 {
                let a = k as f64 / 2.0;
                d = z + a * d;
                d = 1.0 / d;
                c = z + a / c;
                let delta = c * d;
                f *= delta;
                if (delta - 1.0).abs() < 1e-16 {
                    break;
                }
            }
            let erfc = (-z * z).exp() / (f * std::f64::consts::PI.sqrt());
            return x.signum() * (1.0 - erfc);
        }
        let mut sum = 0.0;
        let mut term = x;
        let mut n = 0.0;
        while term.abs() > 1e-18 {
            sum += term / (2.0 * n + 1.0);
            n += 1.0;
            term *= -x * x / n;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn fast_gelu_matches_the_library_op() {
        let device = Device::flex();
        let vals: Vec<f32> = (0..4000).map(|i| (i as f32 - 2000.0) * 0.005).collect();
        let t = Tensor::<2>::from_data(TensorData::new(vals, [40, 100]), &device);
        let fast = gelu(t.clone());
        let lib = burn::tensor::activation::gelu(t);
        let diff = (fast - lib).abs().max().into_scalar::<f32>();
        assert!(diff < 1e-5, "fast GELU differs by {diff}");
    }

    #[test]
    fn exp_matches_f64() {
        let mut worst = 0f64;
        for i in -86_990..=10_000 {
            let x = i as f32 * 1e-3;
            let want = (x as f64).exp();
            let rel = ((exp_f32(x) as f64 - want) / want).abs();
            worst = worst.max(rel);
        }
        assert!(worst < 3e-7, "max relative exp error {worst}");
    }

    fn vals<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().iter::<f32>().collect()
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    /// Values and gradients of the extension op equal burn's GELU under autodiff, for a
    /// contiguous input and for a transposed (strided) one, with a non-uniform upstream
    /// gradient.
    #[test]
    fn autodiff_gelu_matches_the_library_op_in_values_and_gradients() {
        let device = Device::flex().autodiff();
        let n = 96 * 130;
        let xs: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % n) as f32 / n as f32 * 12.0 - 6.0)
            .collect();
        let ws: Vec<f32> = (0..n).map(|i| 0.5 + (i % 17) as f32 * 0.1).collect();
        for transposed in [false, true] {
            let run = |fast: bool| {
                let x = Tensor::<2>::from_data(TensorData::new(xs.clone(), [96, 130]), &device)
                    .require_grad();
                let w = Tensor::<2>::from_data(TensorData::new(ws.clone(), [96, 130]), &device);
                let input = if transposed {
                    x.clone().transpose()
                } else {
                    x.clone()
                };
                let w = if transposed { w.transpose() } else { w };
                let y = if fast {
                    gelu(input)
                } else {
                    burn::tensor::activation::gelu(input)
                };
                let loss = (y.clone() * w).sum();
                let grads = loss.backward();
                (
                    vals(y.inner()),
                    vals(x.grad(&grads).expect("x has a gradient")),
                )
            };
            let (y_fast, g_fast) = run(true);
            let (y_lib, g_lib) = run(false);
            let dy = max_diff(&y_fast, &y_lib);
            let dg = max_diff(&g_fast, &g_lib);
            assert!(dy < 1e-5, "transposed {transposed}: values differ by {dy}");
            assert!(
                dg < 1e-5,
                "transposed {transposed}: gradients differ by {dg}"
            );
            assert!(g_fast.iter().any(|&g| g.abs() > 0.1), "a gradient of zeros");
        }
    }
}
