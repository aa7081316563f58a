//! Test helpers: a deterministic bag-of-tokens encoder.

use strata_data::{Side, TextEncoder};

/// Embeds a text as the normalised sum of pseudo-random vectors, one per lower-cased token
/// (the same for queries and items).
pub struct HashEncoder {
    pub dim: usize,
}

fn token_vector(token: &str, dim: usize) -> Vec<f32> {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in token.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    (0..dim)
        .map(|_| {
            h ^= h << 13;
            h ^= h >> 7;
            h ^= h << 17;
            (h % 2001) as f32 / 1000.0 - 1.0
        })
        .collect()
}

impl TextEncoder for HashEncoder {
    fn dim(&self) -> usize {
        self.dim
    }

    fn name(&self) -> String {
        "hash-bag-of-tokens".into()
    }

    fn encode(&self, texts: &[&str], _side: Side) -> anyhow::Result<Vec<f32>> {
        let mut out = Vec::with_capacity(texts.len() * self.dim);
        for t in texts {
            let mut v = vec![0f32; self.dim];
            for tok in strata_eval::tokens::tokens(t) {
                for (a, b) in v.iter_mut().zip(token_vector(&tok, self.dim)) {
                    *a += b;
                }
            }
            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            if n == 0.0 {
                v[0] = 1.0;
            } else {
                v.iter_mut().for_each(|x| *x /= n);
            }
            out.extend(v);
        }
        Ok(out)
    }
}
