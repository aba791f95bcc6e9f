//! A latency histogram in the manner of HdrHistogram: counts in logarithmic buckets, each power
//! of two split into 32 linear sub-buckets, so every recorded value is kept within 1/32 (about
//! 3 %) of its size, from 1 µs to 2^32 µs, in a fixed 7 KB array. Recording is two shifts and
//! an increment: no allocation, no search.

/// Sub-buckets per power of two, as a power of two: 2^5 = 32.
const SUB_BITS: u32 = 5;
const SUB: u32 = 1 << SUB_BITS;
/// Enough buckets for any `u32` value.
const BUCKETS: usize = (SUB + (32 - SUB_BITS) * SUB) as usize;

/// Counts of values (microseconds) in log-linear buckets, with the exact minimum, maximum and
/// sum.
#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u64; BUCKETS]>,
    total: u64,
    min: u32,
    max: u32,
    sum: u64,
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram").field("total", &self.total).field("min", &self.min).field("max", &self.max).finish()
    }
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram { counts: Box::new([0; BUCKETS]), total: 0, min: u32::MAX, max: 0, sum: 0 }
    }
}

#[inline]
fn index(v: u32) -> usize {
    if v < SUB {
        return v as usize;
    }
    let e = 31 - v.leading_zeros(); // position of the leading one, >= SUB_BITS
    let shift = e - SUB_BITS;
    let mant = (v >> shift) - SUB; // the SUB_BITS bits after the leading one
    (SUB + shift * SUB + mant) as usize
}

/// The largest value that falls into bucket `i` (what HdrHistogram calls the highest
/// equivalent value): percentiles never understate.
fn highest(i: usize) -> u32 {
    let i = i as u32;
    if i < SUB {
        return i;
    }
    let shift = (i - SUB) / SUB;
    let mant = (i - SUB) % SUB;
    let low = ((SUB + mant) as u64) << shift;
    (low + (1u64 << shift) - 1).min(u32::MAX as u64) as u32
}

impl Histogram {
    /// Records one value in microseconds.
    #[inline]
    pub fn record(&mut self, us: u32) {
        self.counts[index(us)] += 1;
        self.total += 1;
        self.sum += us as u64;
        self.min = self.min.min(us);
        self.max = self.max.max(us);
    }

    /// Number of values recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn min(&self) -> Option<u32> {
        (self.total > 0).then_some(self.min)
    }

    pub fn max(&self) -> Option<u32> {
        (self.total > 0).then_some(self.max)
    }

    pub fn mean(&self) -> Option<f64> {
        (self.total > 0).then(|| self.sum as f64 / self.total as f64)
    }

    /// The value at or below which `q` (0..=1) of the values lie, within the bucket precision,
    /// and never above the maximum.
    pub fn quantile(&self, q: f64) -> Option<u32> {
        if self.total == 0 {
            return None;
        }
        // The rank of the value asked for: at least the first, at most the last.
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(highest(i).clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.total += other.total;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// Forgets every value (keeps the array).
    pub fn clear(&mut self) {
        self.counts.fill(0);
        self.total = 0;
        self.sum = 0;
        self.min = u32::MAX;
        self.max = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_exact_below_32_and_within_1_32_above() {
        for v in (0..32).chain([33, 100, 1000, 65_537, 1 << 20, u32::MAX - 1, u32::MAX]) {
            let i = index(v);
            assert!(i < BUCKETS);
            let hi = highest(i);
            assert!(hi >= v, "{v}: bucket top {hi}");
            assert!((hi - v) as u64 * 32 <= v as u64, "{v}: bucket top {hi} too far");
            if v < 32 {
                assert_eq!(hi, v);
            }
        }
        // Buckets are ordered: a larger value never lands in an earlier bucket.
        let mut last = 0;
        for v in (0..100_000u32).step_by(7) {
            assert!(index(v) >= last);
            last = index(v);
        }
    }

    #[test]
    fn quantiles_of_a_uniform_run() {
        let mut h = Histogram::default();
        for v in 1..=10_000 {
            h.record(v);
        }
        assert_eq!(h.min(), Some(1));
        assert_eq!(h.max(), Some(10_000));
        let p50 = h.quantile(0.5).unwrap();
        assert!((5000..=5000 + 5000 / 32).contains(&p50), "{p50}");
        let p99 = h.quantile(0.99).unwrap();
        assert!((9900..=10_000).contains(&p99), "{p99}");
        assert_eq!(h.quantile(1.0), Some(10_000));
        assert_eq!(h.quantile(0.0), Some(1));
        let mut g = Histogram::default();
        g.merge(&h);
        assert_eq!(g.count(), 10_000);
        g.clear();
        assert_eq!(g.quantile(0.5), None);
    }
}
