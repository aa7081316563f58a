//! Descriptive statistics: means, quartiles and kernel density estimates.

use serde::{Deserialize, Serialize};

/// Count, mean and quartiles of a sample.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub count: usize,
    pub mean: f64,
    pub min: f64,
    pub q1: f64,
    pub median: f64,
    pub q3: f64,
    pub max: f64,
}

impl Summary {
    /// Summarises a sample; `None` when it is empty. Quartiles interpolate linearly between
    /// order statistics (the common "type 7" definition).
    pub fn of(values: &[f64]) -> Option<Summary> {
        if values.is_empty() {
            return None;
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        Some(Summary {
            count: v.len(),
            mean: v.iter().sum::<f64>() / v.len() as f64,
            min: v[0],
            q1: quantile_sorted(&v, 0.25),
            median: quantile_sorted(&v, 0.5),
            q3: quantile_sorted(&v, 0.75),
            max: v[v.len() - 1],
        })
    }
}

/// The `p`-quantile of a sorted, non-empty sample (linear interpolation).
pub fn quantile_sorted(sorted: &[f64], p: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * p.clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    let hi = h.ceil() as usize;
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// Gaussian kernel density estimate of `values` at each point of `grid`, with Silverman's
/// rule-of-thumb bandwidth (a small floor keeps constant samples drawable).
pub fn kde(values: &[f64], grid: &[f64]) -> Vec<f64> {
    let n = values.len();
    if n == 0 {
        return vec![0.0; grid.len()];
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n.max(2) - 1) as f64;
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let iqr = quantile_sorted(&sorted, 0.75) - quantile_sorted(&sorted, 0.25);
    let sd = var.sqrt();
    let spread = if iqr > 0.0 { sd.min(iqr / 1.34) } else { sd };
    let range = sorted[n - 1] - sorted[0];
    let h = (0.9 * spread * (n as f64).powf(-0.2)).max(1e-3 * range.max(1e-3));
    let norm = 1.0 / (n as f64 * h * (2.0 * std::f64::consts::PI).sqrt());
    grid.iter()
        .map(|&x| {
            // Only points within 5 bandwidths contribute noticeably.
            let lo = sorted.partition_point(|&v| v < x - 5.0 * h);
            let hi = sorted.partition_point(|&v| v <= x + 5.0 * h);
            sorted[lo..hi]
                .iter()
                .map(|&v| (-0.5 * ((x - v) / h).powi(2)).exp())
                .sum::<f64>()
                * norm
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_known_sample() {
        let s = Summary::of(&[4.0, 1.0, 3.0, 2.0, 5.0]).unwrap();
        assert_eq!(
            (s.count, s.mean, s.min, s.q1, s.median, s.q3, s.max),
            (5, 3.0, 1.0, 2.0, 3.0, 4.0, 5.0)
        );
        let s = Summary::of(&[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!((s.q1, s.median, s.q3), (1.75, 2.5, 3.25));
        assert!(Summary::of(&[]).is_none());
    }

    #[test]
    fn kde_integrates_to_one_and_peaks_at_the_mode() {
        let values: Vec<f64> = (0..200).map(|i| ((i % 20) as f64 - 10.0) / 10.0).collect();
        let grid: Vec<f64> = (0..=400).map(|i| -3.0 + 6.0 * i as f64 / 400.0).collect();
        let d = kde(&values, &grid);
        let integral: f64 = d.iter().sum::<f64>() * (6.0 / 400.0);
        assert!((integral - 1.0).abs() < 0.01, "{integral}");
        let at = |x: f64| d[((x + 3.0) / 6.0 * 400.0).round() as usize];
        assert!(at(0.0) > at(2.0) * 10.0);
        assert!(
            kde(&[0.5; 10], &[0.5])
                .iter()
                .all(|v| v.is_finite() && *v > 0.0)
        );
    }
}
