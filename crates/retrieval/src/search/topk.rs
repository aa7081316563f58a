//! A bounded top-k selection: keeps the `k` best (highest score, then lowest item) entries.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::Hit;

/// Entry ordered so that the heap's top is the worst kept entry.
#[derive(Clone, Copy)]
struct Worst(Hit);

impl PartialEq for Worst {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Worst {}
impl PartialOrd for Worst {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Worst {
    /// "Greater" = worse: lower score, or equal score and higher item.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .0
            .score
            .total_cmp(&self.0.score)
            .then(self.0.item.cmp(&other.0.item))
    }
}

/// Keeps the best `k` hits seen so far.
pub struct TopK {
    k: usize,
    heap: BinaryHeap<Worst>,
}

impl TopK {
    /// An empty selection of capacity `k`.
    pub fn new(k: usize) -> Self {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
        }
    }

    /// The score an entry must beat (or tie with a lower item) to enter, once full.
    #[inline]
    pub fn threshold(&self) -> f32 {
        if self.heap.len() < self.k {
            f32::NEG_INFINITY
        } else {
            self.heap.peek().map_or(f32::NEG_INFINITY, |w| w.0.score)
        }
    }

    /// Offers one hit.
    #[inline]
    pub fn push(&mut self, item: u32, score: f32) {
        if self.k == 0 {
            return;
        }
        let w = Worst(Hit { item, score });
        if self.heap.len() < self.k {
            self.heap.push(w);
        } else if let Some(top) = self.heap.peek()
            && w < *top
        {
            self.heap.pop();
            self.heap.push(w);
        }
    }

    /// The kept hits, best first.
    pub fn into_sorted(self) -> Vec<Hit> {
        let mut v: Vec<Worst> = self.heap.into_vec();
        v.sort();
        v.into_iter().map(|w| w.0).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_best_with_ties_by_lowest_item() {
        let mut t = TopK::new(3);
        for (i, s) in [(5, 0.5), (1, 0.9), (2, 0.5), (7, 0.1), (3, 0.5), (0, 0.95)] {
            t.push(i, s);
        }
        let items: Vec<u32> = t.into_sorted().iter().map(|h| h.item).collect();
        assert_eq!(items, vec![0, 1, 2]);
        let mut t = TopK::new(0);
        t.push(1, 1.0);
        assert!(t.into_sorted().is_empty());
    }
}
