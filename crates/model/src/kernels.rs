//! Hand-written CPU kernels for the inference path where the tensor library's generic version
//! is slow: GELU (the exact, erf-based form BERT uses). The flex backend evaluates `erf` with a
//! scalar libm call per element; this rational approximation vectorises and stays within
//! a few float32 ulps of the exact function.

use burn::tensor::{Device, Tensor, TensorData};

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

/// Exact (erf) GELU over a slice, in place.
pub fn gelu_slice(v: &mut [f32]) {
    use rayon::prelude::*;
    const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
    v.par_chunks_mut(16 * 1024).for_each(|chunk| {
        for x in chunk {
            *x = 0.5 * *x * (1.0 + erf_f32(*x * FRAC_1_SQRT_2));
        }
    });
}

/// GELU for a tensor: the fast kernel on the CPU inference path, the library's op elsewhere
/// (autodiff graphs and GPUs keep burn's differentiable, device-native implementation).
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let device = x.device();
    if device.is_autodiff() || device != Device::flex() {
        return burn::tensor::activation::gelu(x);
    }
    let shape = x.shape();
    match x.clone().into_data().try_into_vec::<f32>() {
        Ok(mut v) => {
            gelu_slice(&mut v);
            Tensor::from_data(TensorData::new(v, shape), &device)
        }
        Err(_) => burn::tensor::activation::gelu(x),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
