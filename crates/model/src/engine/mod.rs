//! A CPU inference engine for the two-tower model: the same computation as
//! [`TwoTower::embed`](crate::TwoTower::embed), on plain buffers instead of tensors.
//!
//! - **Packed tokens.** A batch is the concatenation of its texts' tokens, with no padding:
//!   the linear layers see every real token once and attention runs per text.
//! - **Precision.** [`Precision::F32`] computes the linear layers with the `gemm` crate (the
//!   library the flex backend also uses); [`Precision::Int8`] uses dynamically quantized int8
//!   products ([`int8`]), about twice the arithmetic throughput of f32 on AVX2 CPUs, at a small
//!   cost in accuracy that `strata eval` measures (README, "CPU inference engine and int8").
//!
//! Embeddings, layer norms, attention, GELU, pooling and the projection heads stay in f32.

pub mod int8;

use anyhow::{Context, bail};
use burn::module::Param;
use burn::nn::{LayerNorm, Linear};
use burn::tensor::Tensor;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::bert::BertEncoder;
use crate::kernels::{exp_f32, gelu_slice};
use crate::tower::{Side, TowerConfig, TwoTower};
use int8::QuantizedLinear;

/// Arithmetic of the engine's linear layers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f32 throughout (the reference).
    #[default]
    F32,
    /// int8 weights and activations in the encoder's linear layers.
    Int8,
}

impl Precision {
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Int8 => "int8",
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "f32" => Ok(Precision::F32),
            "int8" => Ok(Precision::Int8),
            other => bail!("unknown precision {other:?} (expected f32 or int8)"),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A linear layer `y = x W + b`, `W` row-major `[k, n]`.
enum Dense {
    F32 {
        w: Vec<f32>,
        b: Vec<f32>,
        k: usize,
        n: usize,
    },
    Int8(QuantizedLinear),
}

impl Dense {
    fn forward(&self, x: &[f32], m: usize) -> Vec<f32> {
        match self {
            Dense::Int8(q) => q.forward(x, m),
            Dense::F32 { w, b, k, n } => {
                let (k, n) = (*k, *n);
                assert_eq!(x.len(), m * k);
                let mut y = vec![0f32; m * n];
                for row in y.chunks_mut(n) {
                    row.copy_from_slice(b);
                }
                if m > 0 {
                    // SAFETY: `y` is `[m, n]`, `x` is `[m, k]` and `w` is `[k, n]`, all
                    // row-major (column stride 1, row stride = width), as passed.
                    unsafe {
                        gemm::gemm(
                            m,
                            n,
                            k,
                            y.as_mut_ptr(),
                            1,
                            n as isize,
                            true,
                            x.as_ptr(),
                            1,
                            k as isize,
                            w.as_ptr(),
                            1,
                            n as isize,
                            1.0,
                            1.0,
                            false,
                            false,
                            false,
                            gemm::Parallelism::Rayon(0),
                        );
                    }
                }
                y
            }
        }
    }
}

struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
    eps: f32,
}

impl Norm {
    /// Layer norm of each row of `x` in place.
    fn apply(&self, x: &mut [f32]) {
        let h = self.gamma.len();
        x.par_chunks_mut(h)
            .with_min_len(16)
            .for_each(|row| norm_row(row, &self.gamma, &self.beta, self.eps));
    }
}

multiversion! {
fn norm_row(row: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let h = row.len() as f32;
    let mean = sum8(row) / h;
    let mut acc = [0f32; 8];
    let mut chunks = row.chunks_exact(8);
    for c in &mut chunks {
        for i in 0..8 {
            let d = c[i] - mean;
            acc[i] += d * d;
        }
    }
    let tail: f32 = chunks.remainder().iter().map(|v| (v - mean) * (v - mean)).sum();
    let var = (acc.iter().sum::<f32>() + tail) / h;
    let inv = 1.0 / (var + eps).sqrt();
    for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
        *v = (*v - mean) * inv * g + b;
    }
}
}

struct Block {
    qkv: Dense,
    attn_out: Dense,
    norm1: Norm,
    inter: Dense,
    out: Dense,
    norm2: Norm,
}

/// One side's encoder and head, ready for [`FastTower::embed`].
struct FastEncoder {
    word: Vec<f32>,
    position: Vec<f32>,
    token_type: Vec<f32>,
    norm: Norm,
    blocks: Vec<Block>,
    hidden: usize,
    heads: usize,
    position_offset: usize,
    max_positions: usize,
}

/// The two-tower model converted for the CPU engine.
pub struct FastTower {
    /// The shared encoder (the query encoder of an asymmetric model).
    encoder: FastEncoder,
    /// The item encoder of an asymmetric model.
    item_encoder: Option<FastEncoder>,
    query_head: Option<Dense>,
    item_head: Option<Dense>,
    precision: Precision,
    dim: usize,
}

fn values<const D: usize>(t: Tensor<D>) -> anyhow::Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("cannot read model weights: {e:?}"))
}

fn param<const D: usize>(p: &Param<Tensor<D>>) -> anyhow::Result<Vec<f32>> {
    values(p.val())
}

fn dense(lin: &Linear, precision: Precision) -> anyhow::Result<Dense> {
    dense_parts(vec![lin], precision)
}

/// Several linear layers with the same input, as one layer with their outputs side by side.
fn dense_parts(parts: Vec<&Linear>, precision: Precision) -> anyhow::Result<Dense> {
    let k = parts[0].weight.dims()[0];
    let widths: Vec<usize> = parts.iter().map(|l| l.weight.dims()[1]).collect();
    let n: usize = widths.iter().sum();
    let mut w = vec![0f32; k * n];
    let mut b = vec![0f32; n];
    let mut col = 0;
    for (lin, &width) in parts.iter().zip(&widths) {
        if lin.weight.dims()[0] != k {
            bail!("fused linear layers have different input sizes");
        }
        let wv = param(&lin.weight)?;
        for r in 0..k {
            w[r * n + col..r * n + col + width].copy_from_slice(&wv[r * width..(r + 1) * width]);
        }
        if let Some(bias) = &lin.bias {
            b[col..col + width].copy_from_slice(&param(bias)?);
        }
        col += width;
    }
    Ok(match precision {
        Precision::F32 => Dense::F32 { w, b, k, n },
        Precision::Int8 => Dense::Int8(QuantizedLinear::new(&w, k, n, Some(&b))),
    })
}

fn norm(ln: &LayerNorm, eps: f64) -> anyhow::Result<Norm> {
    let gamma = param(&ln.gamma)?;
    let beta = match &ln.beta {
        Some(b) => param(b)?,
        None => vec![0.0; gamma.len()],
    };
    Ok(Norm {
        gamma,
        beta,
        eps: eps as f32,
    })
}

impl FastEncoder {
    fn new(enc: &BertEncoder, cfg: &TowerConfig, precision: Precision) -> anyhow::Result<Self> {
        let eps = cfg.encoder.layer_norm_eps;
        let emb = &enc.embeddings;
        let token_type = param(&emb.token_type_embeddings.weight)?;
        let hidden = enc.hidden_size();
        let blocks = enc
            .encoder
            .layer
            .iter()
            .map(|l| {
                let sa = &l.attention.self_attn;
                Ok(Block {
                    qkv: dense_parts(vec![&sa.query, &sa.key, &sa.value], precision)?,
                    attn_out: dense(&l.attention.output.dense, precision)?,
                    norm1: norm(&l.attention.output.layer_norm, eps)?,
                    inter: dense(&l.intermediate.dense, precision)?,
                    out: dense(&l.output.dense, precision)?,
                    norm2: norm(&l.output.layer_norm, eps)?,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let position = param(&emb.position_embeddings.weight)?;
        Ok(FastEncoder {
            word: param(&emb.word_embeddings.weight)?,
            max_positions: position.len() / hidden,
            position,
            token_type: token_type[..hidden].to_vec(),
            norm: norm(&emb.layer_norm, eps)?,
            blocks,
            hidden,
            heads: enc.num_heads,
            position_offset: enc.position_offset,
        })
    }

    /// Mean-pooled last hidden states `[n, hidden]` of token sequences (each at least one
    /// token).
    fn pooled(&self, seqs: &[&[u32]]) -> anyhow::Result<Vec<f32>> {
        let h = self.hidden;
        let mut offsets = Vec::with_capacity(seqs.len() + 1);
        offsets.push(0usize);
        for s in seqs {
            if s.is_empty() {
                bail!("cannot embed an empty token sequence");
            }
            if self.position_offset + s.len() > self.max_positions {
                bail!(
                    "a sequence of {} tokens exceeds the model's {} positions",
                    s.len(),
                    self.max_positions - self.position_offset
                );
            }
            offsets.push(offsets.last().unwrap() + s.len());
        }
        let total = *offsets.last().unwrap();
        let vocab = self.word.len() / h;
        let mut x = vec![0f32; total * h];
        for (s, seq) in seqs.iter().enumerate() {
            for (p, &id) in seq.iter().enumerate() {
                let id = id as usize;
                if id >= vocab {
                    bail!("token id {id} is outside the vocabulary of {vocab}");
                }
                let row = &mut x[(offsets[s] + p) * h..(offsets[s] + p + 1) * h];
                let word = &self.word[id * h..(id + 1) * h];
                let pos = &self.position[(self.position_offset + p) * h..][..h];
                for (((v, w), q), t) in row.iter_mut().zip(word).zip(pos).zip(&self.token_type) {
                    *v = w + q + t;
                }
            }
        }
        self.norm.apply(&mut x);
        for block in &self.blocks {
            x = self.block(block, x, total, &offsets);
        }
        // Mean pooling per text.
        let mut pooled = vec![0f32; seqs.len() * h];
        pooled.par_chunks_mut(h).enumerate().for_each(|(s, out)| {
            let (a, b) = (offsets[s], offsets[s + 1]);
            for t in a..b {
                for (o, v) in out.iter_mut().zip(&x[t * h..(t + 1) * h]) {
                    *o += v;
                }
            }
            let inv = 1.0 / (b - a) as f32;
            out.iter_mut().for_each(|o| *o *= inv);
        });
        Ok(pooled)
    }

    fn block(&self, b: &Block, x: Vec<f32>, total: usize, offsets: &[usize]) -> Vec<f32> {
        let h = self.hidden;
        let qkv = b.qkv.forward(&x, total);
        let ctx = self.attention(&qkv, total, offsets);
        let mut a = b.attn_out.forward(&ctx, total);
        add_assign(&mut a, &x);
        b.norm1.apply(&mut a);
        let mut inter = b.inter.forward(&a, total);
        gelu_slice(&mut inter);
        let mut out = b.out.forward(&inter, total);
        debug_assert_eq!(out.len(), total * h);
        add_assign(&mut out, &a);
        b.norm2.apply(&mut out);
        out
    }

    /// Multi-head self-attention of each text over its own tokens. `qkv` is `[total, 3h]`
    /// (queries, keys, values side by side); returns the context `[total, h]`.
    fn attention(&self, qkv: &[f32], total: usize, offsets: &[usize]) -> Vec<f32> {
        let h = self.hidden;
        let heads = self.heads;
        let hd = h / heads;
        let scale = 1.0 / (hd as f32).sqrt();
        let mut ctx = vec![0f32; total * h];
        // Split the output by text so that texts run in parallel.
        let mut parts: Vec<(usize, &mut [f32])> = Vec::with_capacity(offsets.len() - 1);
        let mut rest = ctx.as_mut_slice();
        for w in offsets.windows(2) {
            let (head, tail) = rest.split_at_mut((w[1] - w[0]) * h);
            parts.push((w[0], head));
            rest = tail;
        }
        parts
            .into_par_iter()
            .for_each(|(start, out)| attend(qkv, start, out, h, heads, scale));
        ctx
    }
}

/// Self-attention of one text (tokens `start..start + out.len() / h` of `qkv`) into `out`:
/// per head, `softmax(Q K^T * scale) V` with two small matrix products on strided views.
fn attend(qkv: &[f32], start: usize, out: &mut [f32], h: usize, heads: usize, scale: f32) {
    let hd = h / heads;
    let len = out.len() / h;
    let rows = &qkv[start * 3 * h..(start + len) * 3 * h];
    let mut scores = vec![0f32; len * len];
    let ld = 3 * h as isize;
    for hh in 0..heads {
        let q = rows[hh * hd..].as_ptr();
        let k = rows[h + hh * hd..].as_ptr();
        let v = rows[2 * h + hh * hd..].as_ptr();
        // SAFETY: scores is [len, len] row-major; Q, K and V are [len, hd] views of `rows`
        // with row stride 3h and column stride 1 (the last element read is in bounds: row
        // len - 1, column 2h + hh*hd + hd - 1 < 3h); K^T swaps K's strides; `out` is
        // [len, h] and the head writes its hd columns.
        unsafe {
            gemm::gemm(
                len,
                len,
                hd,
                scores.as_mut_ptr(),
                1,
                len as isize,
                false,
                q,
                1,
                ld,
                k,
                ld,
                1,
                0.0,
                scale,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
        softmax_rows(&mut scores, len);
        unsafe {
            gemm::gemm(
                len,
                hd,
                len,
                out[hh * hd..].as_mut_ptr(),
                1,
                h as isize,
                false,
                scores.as_ptr(),
                1,
                len as isize,
                v,
                1,
                ld,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
    }
}

multiversion! {
    /// Softmax of each row of a `[n, n]` matrix, in place.
    fn softmax_rows(m: &mut [f32], n: usize) {
        for row in m.chunks_exact_mut(n) {
            let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            row.iter_mut().for_each(|s| *s = exp_f32(*s - max));
            let inv = 1.0 / sum8(row);
            row.iter_mut().for_each(|s| *s *= inv);
        }
    }
}

fn add_assign(a: &mut [f32], b: &[f32]) {
    a.par_chunks_mut(1 << 14)
        .zip(b.par_chunks(1 << 14))
        .for_each(|(a, b)| a.iter_mut().zip(b).for_each(|(x, y)| *x += y));
}

/// Dot product with eight independent partial sums (vectorises without fast-math).
#[inline(always)]
fn dot8(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
fn sum8(a: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let mut c = a.chunks_exact(8);
    for x in &mut c {
        for i in 0..8 {
            acc[i] += x[i];
        }
    }
    acc.iter().sum::<f32>() + c.remainder().iter().sum::<f32>()
}

fn sum8_sq(a: &[f32]) -> f32 {
    dot8(a, a)
}

impl FastTower {
    /// Converts a model (weights are copied; the model itself is not needed afterwards).
    pub fn new(model: &TwoTower, cfg: &TowerConfig, precision: Precision) -> anyhow::Result<Self> {
        let encoder = FastEncoder::new(&model.encoder, cfg, precision)
            .context("cannot prepare the encoder")?;
        let item_encoder = model
            .item_encoder
            .as_ref()
            .map(|e| FastEncoder::new(e, cfg, precision))
            .transpose()
            .context("cannot prepare the item encoder")?;
        // The heads are small: f32 whatever the precision.
        let head = |h: &Option<Linear>| h.as_ref().map(|h| dense(h, Precision::F32)).transpose();
        Ok(FastTower {
            encoder,
            item_encoder,
            query_head: head(&model.query_head)?,
            item_head: head(&model.item_head)?,
            precision,
            dim: cfg.dim(),
        })
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// L2-normalised embeddings `[n, dim]` of token sequences (no padding; each sequence holds
    /// at least one token and at most the model's positions).
    pub fn embed(&self, side: Side, seqs: &[&[u32]]) -> anyhow::Result<Vec<f32>> {
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        let (enc, head) = match side {
            Side::Query => (&self.encoder, &self.query_head),
            Side::Item => (
                self.item_encoder.as_ref().unwrap_or(&self.encoder),
                &self.item_head,
            ),
        };
        let pooled = enc.pooled(seqs)?;
        let mut out = match head {
            Some(head) => head.forward(&pooled, seqs.len()),
            None => pooled,
        };
        debug_assert_eq!(out.len(), seqs.len() * self.dim);
        for row in out.chunks_mut(self.dim) {
            let norm = sum8_sq(row).sqrt().max(1e-12);
            row.iter_mut().for_each(|v| *v /= norm);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{EncoderConfig, EncoderFamily};
    use burn::tensor::{Device, Int, TensorData};

    fn config(
        asymmetric: bool,
        projection_dim: Option<usize>,
        family: EncoderFamily,
    ) -> TowerConfig {
        let mut encoder = EncoderConfig::tiny(60);
        encoder.family = family;
        encoder.pad_token_id = 1;
        TowerConfig {
            encoder,
            projection_dim,
            asymmetric,
            query_prefix: String::new(),
            item_prefix: String::new(),
            max_len: 32,
            base_model: "tiny".into(),
            item_text: None,
        }
    }

    /// Texts of different lengths (1 to 30 tokens), ids 2..60.
    fn seqs() -> Vec<Vec<u32>> {
        [1usize, 5, 30, 2, 17, 9]
            .iter()
            .enumerate()
            .map(|(s, &len)| {
                (0..len)
                    .map(|i| (2 + (s * 7 + i * 13) % 58) as u32)
                    .collect()
            })
            .collect()
    }

    /// The tensor model's embeddings of `seqs`, padded into one batch.
    fn reference(model: &TwoTower, side: Side, seqs: &[Vec<u32>], pad: u32) -> Vec<f32> {
        let device = Device::flex();
        let len = seqs.iter().map(|s| s.len()).max().unwrap();
        let mut ids = vec![pad as i64; seqs.len() * len];
        let mut mask = vec![0f32; seqs.len() * len];
        for (i, s) in seqs.iter().enumerate() {
            for (j, &t) in s.iter().enumerate() {
                ids[i * len + j] = t as i64;
                mask[i * len + j] = 1.0;
            }
        }
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [seqs.len(), len]), &device);
        let mask = Tensor::<2>::from_data(TensorData::new(mask, [seqs.len(), len]), &device);
        values(model.embed(side, ids, mask)).unwrap()
    }

    fn check(cfg: TowerConfig, seed: u64) {
        let device = Device::flex();
        let mut model = crate::with_seed(&device, seed, || TwoTower::init(&cfg, &device));
        // Untie the heads so that a mix-up of the sides would show.
        if let Some(h) = model.item_head.take() {
            let w = h.weight.val().mul_scalar(-1.5);
            model.item_head = Some(Linear {
                weight: Param::from_tensor(w),
                bias: h.bias,
            });
        }
        let seqs = seqs();
        let refs: Vec<&[u32]> = seqs.iter().map(|s| s.as_slice()).collect();
        let dim = cfg.dim();
        for side in [Side::Query, Side::Item] {
            let want = reference(&model, side, &seqs, cfg.encoder.pad_token_id as u32);
            let f32 = FastTower::new(&model, &cfg, Precision::F32).unwrap();
            let got = f32.embed(side, &refs).unwrap();
            assert_eq!(got.len(), want.len());
            let diff = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(diff < 2e-5, "{side:?}: f32 engine differs by {diff}");

            let int8 = FastTower::new(&model, &cfg, Precision::Int8).unwrap();
            let got = int8.embed(side, &refs).unwrap();
            for (a, b) in got.chunks(dim).zip(want.chunks(dim)) {
                let cos: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
                assert!(cos > 0.995, "{side:?}: int8 embedding has cosine {cos}");
            }
        }
    }

    #[test]
    fn engine_matches_the_tensor_model_siamese_with_heads() {
        check(config(false, Some(16), EncoderFamily::Bert), 3);
    }

    #[test]
    fn engine_matches_the_tensor_model_asymmetric() {
        check(config(true, Some(16), EncoderFamily::Bert), 4);
    }

    #[test]
    fn engine_matches_the_tensor_model_without_heads_roberta_positions() {
        check(config(false, None, EncoderFamily::XlmRoberta), 5);
    }

    #[test]
    fn bad_sequences_are_errors() {
        let cfg = config(false, None, EncoderFamily::Bert);
        let device = Device::flex();
        let model = crate::with_seed(&device, 1, || TwoTower::init(&cfg, &device));
        let engine = FastTower::new(&model, &cfg, Precision::F32).unwrap();
        let empty: &[u32] = &[];
        let err = engine.embed(Side::Query, &[&[2, 3], empty]).unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
        let long = vec![2u32; 65];
        let err = engine.embed(Side::Query, &[&long]).unwrap_err();
        assert!(err.to_string().contains("positions"), "{err}");
        let err = engine.embed(Side::Query, &[&[2, 600]]).unwrap_err();
        assert!(err.to_string().contains("vocabulary"), "{err}");
        assert!(engine.embed(Side::Item, &[]).unwrap().is_empty());
    }
}
