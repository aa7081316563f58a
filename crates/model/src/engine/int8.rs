//! Int8 linear layers for CPU inference (dynamic quantization, as PyTorch's
//! `quantize_dynamic` does for BERT, laid out for AVX2 CPUs without VNNI):
//!
//! - weights: symmetric, per output column, to `[-63, 63]`, quantized once;
//! - activations: asymmetric, per row (token), to `[0, 255]` with a zero point, at every call;
//! - products: `u8 x i8` pairs summed in i16 (`vpmaddubsw`), widened to i32 (`vpmaddwd`).
//!   Seven-bit weights keep a pair sum within i16 (2 x 255 x 63 = 32,130), so the integer
//!   product is exact and the AVX2 kernel equals the portable one bit for bit. (Eight-bit
//!   activations with seven-bit weights halve the embedding error of the opposite split:
//!   cosine to the f32 embedding 0.997-0.999 vs 0.994-0.997 on MiniLM.)
//!
//! `y[m, n] = sa[m] * sw[n] * (sum_k qa[m, k] qw[k, n] - za[m] * sum_k qw[k, n]) + bias[n]`.

use rayon::prelude::*;

/// Output columns per packed panel (two AVX2 registers of eight i32).
const NR: usize = 16;
/// Rows per micro-kernel call.
const MR: usize = 4;
/// Rows per parallel task (a multiple of `MR`); its activations stay in L2 while every panel
/// of the weights passes over them.
const MC: usize = 64;
/// Largest quantized activation value (eight bits unsigned, see the module docs).
const QMAX: f32 = 255.0;
/// Largest quantized weight magnitude.
const WMAX: f32 = 63.0;

/// A linear layer `y = x W + b` with int8 weights.
#[derive(Clone, Debug)]
pub struct QuantizedLinear {
    /// Input features (a multiple of 4 after padding: `k4 * 4`).
    k: usize,
    k4: usize,
    /// Output features.
    n: usize,
    /// Panels of `NR` columns: `[n_panels][k4][NR][4]`.
    packed: Vec<i8>,
    /// Per-column weight scale.
    scale: Vec<f32>,
    /// Per-column sum of the quantized weights (for the activations' zero points).
    col_sum: Vec<i32>,
    bias: Vec<f32>,
}

/// Activations quantized per row: `[rows rounded up to MR][k4 * 4]` bytes.
struct QuantizedRows {
    data: Vec<u8>,
    scale: Vec<f32>,
    zero: Vec<i32>,
}

impl QuantizedLinear {
    /// Quantizes `weight` (row-major `[k, n]`, the layout of `y = x W`) and keeps `bias`.
    pub fn new(weight: &[f32], k: usize, n: usize, bias: Option<&[f32]>) -> Self {
        assert_eq!(weight.len(), k * n, "weight is not [k, n]");
        let k4 = k.div_ceil(4);
        let panels = n.div_ceil(NR);
        let mut scale = vec![1f32; n];
        let mut q = vec![0i8; k * n];
        let mut col_sum = vec![0i32; n];
        for col in 0..n {
            let max = (0..k)
                .map(|r| weight[r * n + col].abs())
                .fold(0f32, f32::max);
            let s = if max > 0.0 { max / WMAX } else { 1.0 };
            scale[col] = s;
            for r in 0..k {
                let v = (weight[r * n + col] / s).round().clamp(-WMAX, WMAX) as i8;
                q[r * n + col] = v;
                col_sum[col] += v as i32;
            }
        }
        let mut packed = vec![0i8; panels * k4 * NR * 4];
        for p in 0..panels {
            for kk in 0..k4 {
                for j in 0..NR {
                    let col = p * NR + j;
                    if col >= n {
                        continue;
                    }
                    for t in 0..4 {
                        let row = kk * 4 + t;
                        if row < k {
                            packed[((p * k4 + kk) * NR + j) * 4 + t] = q[row * n + col];
                        }
                    }
                }
            }
        }
        QuantizedLinear {
            k,
            k4,
            n,
            packed,
            scale,
            col_sum,
            bias: bias.map(|b| b.to_vec()).unwrap_or_else(|| vec![0.0; n]),
        }
    }

    pub fn in_features(&self) -> usize {
        self.k
    }

    pub fn out_features(&self) -> usize {
        self.n
    }

    /// `y = x W + b` for `m` rows of `x` (row-major `[m, k]`); returns `[m, n]`.
    pub fn forward(&self, x: &[f32], m: usize) -> Vec<f32> {
        self.forward_with(x, m, simd_available())
    }

    /// As [`forward`](Self::forward), choosing the kernel (the portable one when `simd` is
    /// false or the CPU lacks AVX2).
    pub fn forward_with(&self, x: &[f32], m: usize, simd: bool) -> Vec<f32> {
        assert_eq!(x.len(), m * self.k, "input is not [m, k]");
        let qa = quantize_rows(x, m, self.k, self.k4);
        let mut out = vec![0f32; m * self.n];
        let simd = simd && simd_available();
        out.par_chunks_mut(MC * self.n)
            .enumerate()
            .for_each(|(chunk, out)| {
                let row0 = chunk * MC;
                let rows = out.len() / self.n;
                block(self, &qa, row0, rows, out, simd);
            });
        out
    }
}

multiversion! {
    /// Rows `row0..row0 + rows` of the output of `q` for the quantized input `qa`.
    fn block(
        q: &QuantizedLinear,
        qa: &QuantizedRows,
        row0: usize,
        rows: usize,
        out: &mut [f32],
        simd: bool,
    ) {
        let kb = q.k4 * 4;
        let mut acc = [[0i32; NR]; MR];
        for p in 0..q.n.div_ceil(NR) {
            let panel = &q.packed[p * q.k4 * NR * 4..(p + 1) * q.k4 * NR * 4];
            let col0 = p * NR;
            let cols = NR.min(q.n - col0);
            let sw = &q.scale[col0..col0 + cols];
            let cs = &q.col_sum[col0..col0 + cols];
            let bias = &q.bias[col0..col0 + cols];
            for r in (0..rows).step_by(MR) {
                let a = &qa.data[(row0 + r) * kb..(row0 + r + MR) * kb];
                kernel(a, kb, panel, q.k4, &mut acc, simd);
                for (i, acc) in acc.iter().enumerate().take(MR.min(rows - r)) {
                    let (sa, za) = (qa.scale[row0 + r + i], qa.zero[row0 + r + i]);
                    let dst = &mut out[(r + i) * q.n + col0..][..cols];
                    for ((((d, &a), &sw), &cs), &b) in
                        dst.iter_mut().zip(acc).zip(sw).zip(cs).zip(bias)
                    {
                        *d = sa * sw * (a - za * cs) as f32 + b;
                    }
                }
            }
        }
    }
}

/// Quantizes each row to `[0, 255]` with its own scale and zero point (the row's range, widened
/// to include 0 so that zero stays exact). Rows are padded to `MR` and columns to `k4 * 4`.
fn quantize_rows(x: &[f32], m: usize, k: usize, k4: usize) -> QuantizedRows {
    let kb = k4 * 4;
    let mp = m.div_ceil(MR) * MR;
    let mut data = vec![0u8; mp * kb];
    let mut scale = vec![1f32; mp];
    let mut zero = vec![0i32; mp];
    data.par_chunks_mut(kb)
        .zip(scale.par_iter_mut())
        .zip(zero.par_iter_mut())
        .take(m)
        .with_min_len(32)
        .enumerate()
        .for_each(|(row, ((dst, s), z))| {
            (*s, *z) = quantize_row(&x[row * k..(row + 1) * k], dst);
        });
    QuantizedRows { data, scale, zero }
}

/// Quantizes one row into `dst` (its first `src.len()` bytes); returns (scale, zero point).
/// Values round to nearest, ties to even, on both paths.
fn quantize_row(src: &[f32], dst: &mut [u8]) -> (f32, i32) {
    #[cfg(target_arch = "x86_64")]
    if simd_available() {
        // SAFETY: AVX2 is present.
        return unsafe { quantize_row_avx2(src, dst) };
    }
    let (lo, hi) = src
        .iter()
        .fold((0f32, 0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let (sc, inv, zp) = row_scale(lo, hi);
    for (d, &v) in dst.iter_mut().zip(src) {
        *d = (v * inv + zp).clamp(0.0, QMAX).round_ties_even() as u8;
    }
    (sc, zp as i32)
}

/// Scale, its inverse and the zero point of a row with range `[lo, hi]` (`lo <= 0 <= hi`).
#[inline(always)]
fn row_scale(lo: f32, hi: f32) -> (f32, f32, f32) {
    let range = hi - lo;
    let sc = if range > 0.0 { range / QMAX } else { 1.0 };
    let inv = 1.0 / sc;
    let zp = (-lo * inv).clamp(0.0, QMAX).round_ties_even();
    (sc, inv, zp)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn quantize_row_avx2(src: &[f32], dst: &mut [u8]) -> (f32, i32) {
    use std::arch::x86_64::*;
    let n8 = src.len() / 8 * 8;
    // SAFETY (whole body): every load reads `src[i..i + 8]` with `i + 8 <= n8 <= src.len()`,
    // every store writes `dst[i..i + 8]` with `dst.len() >= src.len()`.
    unsafe {
        let mut lo = _mm256_setzero_ps();
        let mut hi = _mm256_setzero_ps();
        for i in (0..n8).step_by(8) {
            let v = _mm256_loadu_ps(src.as_ptr().add(i));
            lo = _mm256_min_ps(lo, v);
            hi = _mm256_max_ps(hi, v);
        }
        let (mut l, mut h) = ([0f32; 8], [0f32; 8]);
        _mm256_storeu_ps(l.as_mut_ptr(), lo);
        _mm256_storeu_ps(h.as_mut_ptr(), hi);
        let mut lo_s = l.iter().fold(0f32, |a, &b| a.min(b));
        let mut hi_s = h.iter().fold(0f32, |a, &b| a.max(b));
        for &v in &src[n8..] {
            lo_s = lo_s.min(v);
            hi_s = hi_s.max(v);
        }
        let (sc, inv, zp) = row_scale(lo_s, hi_s);
        let (vinv, vzp) = (_mm256_set1_ps(inv), _mm256_set1_ps(zp));
        let (zero, top) = (_mm256_setzero_ps(), _mm256_set1_ps(QMAX));
        assert!(dst.len() >= src.len());
        for i in (0..n8).step_by(8) {
            let v = _mm256_loadu_ps(src.as_ptr().add(i));
            let v = _mm256_min_ps(
                _mm256_max_ps(_mm256_add_ps(_mm256_mul_ps(v, vinv), vzp), zero),
                top,
            );
            // Round to nearest even, then narrow 8 x i32 -> 8 x u8 (values are 0..=255).
            let q = _mm256_cvtps_epi32(v);
            let w = _mm256_packs_epi32(q, q);
            let b = _mm256_packus_epi16(w, w);
            let low = _mm_cvtsi128_si32(_mm256_castsi256_si128(b)) as u32;
            let high = _mm_cvtsi128_si32(_mm256_extracti128_si256::<1>(b)) as u32;
            let bytes = (low as u64 | ((high as u64) << 32)).to_le_bytes();
            dst[i..i + 8].copy_from_slice(&bytes);
        }
        for i in n8..src.len() {
            dst[i] = (src[i] * inv + zp).clamp(0.0, QMAX).round_ties_even() as u8;
        }
        (sc, zp as i32)
    }
}

/// Whether the AVX2 kernel can run on this CPU.
pub fn simd_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `acc[i][j] = sum_k a[i][k] * panel[k][j]` for `MR` rows of `a` (stride `lda` bytes).
fn kernel(a: &[u8], lda: usize, panel: &[i8], k4: usize, acc: &mut [[i32; NR]; MR], simd: bool) {
    debug_assert!(a.len() >= (MR - 1) * lda + k4 * 4 && panel.len() >= k4 * NR * 4);
    #[cfg(target_arch = "x86_64")]
    if simd {
        // SAFETY: AVX2 is present (checked by the caller through `simd_available`), and the
        // slices cover every byte the kernel reads (asserted above).
        unsafe { kernel_avx2(a.as_ptr(), lda, panel.as_ptr(), k4, acc) };
        return;
    }
    let _ = simd;
    for (i, acc_row) in acc.iter_mut().enumerate() {
        *acc_row = [0; NR];
        let row = &a[i * lda..i * lda + k4 * 4];
        for kk in 0..k4 {
            let block = &panel[kk * NR * 4..(kk + 1) * NR * 4];
            for (j, v) in acc_row.iter_mut().enumerate() {
                for t in 0..4 {
                    *v += row[kk * 4 + t] as i32 * block[j * 4 + t] as i32;
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn kernel_avx2(
    a: *const u8,
    lda: usize,
    b: *const i8,
    k4: usize,
    acc: &mut [[i32; NR]; MR],
) {
    use std::arch::x86_64::*;
    // SAFETY (whole body): the caller guarantees `a` covers `MR` rows of `k4 * 4` bytes at
    // stride `lda` and `b` covers `k4 * NR * 4` bytes.
    unsafe {
        let ones = _mm256_set1_epi16(1);
        let mut c = [_mm256_setzero_si256(); 2 * MR];
        for kk in 0..k4 {
            let b0 = _mm256_loadu_si256(b.add(kk * NR * 4) as *const __m256i);
            let b1 = _mm256_loadu_si256(b.add(kk * NR * 4 + 32) as *const __m256i);
            for i in 0..MR {
                let word = (a.add(i * lda + kk * 4) as *const i32).read_unaligned();
                let ai = _mm256_set1_epi32(word);
                let p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(ai, b0), ones);
                let p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(ai, b1), ones);
                c[2 * i] = _mm256_add_epi32(c[2 * i], p0);
                c[2 * i + 1] = _mm256_add_epi32(c[2 * i + 1], p1);
            }
        }
        for i in 0..MR {
            _mm256_storeu_si256(acc[i].as_mut_ptr() as *mut __m256i, c[2 * i]);
            _mm256_storeu_si256(acc[i].as_mut_ptr().add(8) as *mut __m256i, c[2 * i + 1]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: u64, n: usize, scale: f32) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 33) as f32 / (1u64 << 31) as f32 - 0.5) * 2.0 * scale
            })
            .collect()
    }

    fn reference(x: &[f32], w: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut y = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = b[j] as f64;
                for t in 0..k {
                    s += x[i * k + t] as f64 * w[t * n + j] as f64;
                }
                y[i * n + j] = s as f32;
            }
        }
        y
    }

    #[test]
    fn simd_and_portable_kernels_agree_bit_for_bit() {
        // Odd shapes: rows not a multiple of MR or MC, columns not a multiple of NR, k not a
        // multiple of 4.
        for &(m, k, n) in &[(1, 3, 1), (7, 38, 21), (130, 384, 40), (67, 101, 17)] {
            let x = lcg(1, m * k, 3.0);
            let w = lcg(2, k * n, 0.2);
            let b = lcg(3, n, 0.5);
            let q = QuantizedLinear::new(&w, k, n, Some(&b));
            let fast = q.forward_with(&x, m, true);
            let portable = q.forward_with(&x, m, false);
            assert_eq!(fast, portable, "m {m} k {k} n {n}");
        }
    }

    #[test]
    fn quantized_product_is_close_to_the_float_product() {
        let (m, k, n) = (33, 384, 50);
        let x = lcg(4, m * k, 2.0);
        let w = lcg(5, k * n, 0.1);
        let b = lcg(6, n, 0.3);
        let q = QuantizedLinear::new(&w, k, n, Some(&b));
        let y = q.forward(&x, m);
        let r = reference(&x, &w, &b, m, k, n);
        // Error bound: each of k products carries at most half a step of each operand's
        // quantization; with random signs the error grows like sqrt(k).
        let rms = (r.iter().map(|v| v * v).sum::<f32>() / r.len() as f32).sqrt();
        let err = (y
            .iter()
            .zip(&r)
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f32>()
            / r.len() as f32)
            .sqrt();
        assert!(err < 0.02 * rms, "rms error {err} vs rms {rms}");
        // A zero weight column gives exactly the bias.
        let mut w0 = w.clone();
        for row in 0..k {
            w0[row * n] = 0.0;
        }
        let y0 = QuantizedLinear::new(&w0, k, n, Some(&b)).forward(&x, m);
        for i in 0..m {
            assert_eq!(y0[i * n], b[0]);
        }
    }

    #[test]
    fn zero_rows_and_constant_rows_are_exact() {
        let (k, n) = (8, 3);
        let w = lcg(7, k * n, 1.0);
        let q = QuantizedLinear::new(&w, k, n, None);
        let y = q.forward(&[0.0; 8], 1);
        assert_eq!(y, vec![0.0; 3]);
        // A row of one repeated positive value: range [0, v], v maps to 255 exactly.
        let x = [0.5f32; 8];
        let y = q.forward(&x, 1);
        let r = reference(&x, &w, &[0.0; 3], 1, k, n);
        for (a, b) in y.iter().zip(&r) {
            assert!((a - b).abs() < 0.02, "{a} vs {b}");
        }
    }
}
