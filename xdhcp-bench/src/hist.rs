//! The generator's latency histogram: an [`hdrhistogram`] of microseconds with fixed bounds,
//! and the few questions the report and plots ask of it.
//!
//! Recording happens on the generator's receive path, so it must never allocate: the bounds
//! are fixed when the histogram is made (no auto-resize) and values out of range are clamped.

use hdrhistogram::Histogram;

/// Largest value tracked: the generator's clock is microseconds in a wrapping `u32`.
const HIGHEST_US: u64 = u32::MAX as u64;
/// Significant digits kept: every value within 0.1 % of what was recorded.
const SIGNIFICANT_DIGITS: u8 = 3;

/// Request-to-reply times in microseconds.
#[derive(Debug, Clone)]
pub struct LatencyHistogram(Histogram<u64>);

impl Default for LatencyHistogram {
    fn default() -> LatencyHistogram {
        // Cannot fail: the bounds are constants HdrHistogram accepts (low >= 1, high >= 2 low).
        let h = Histogram::new_with_bounds(1, HIGHEST_US, SIGNIFICANT_DIGITS).expect("valid bounds");
        LatencyHistogram(h)
    }
}

impl LatencyHistogram {
    /// Records one value in microseconds.
    #[inline]
    pub fn record(&mut self, us: u32) {
        self.0.saturating_record(u64::from(us));
    }

    /// Number of values recorded.
    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// The smallest value recorded (to the histogram's precision).
    pub fn min(&self) -> Option<u32> {
        self.some(self.0.min())
    }

    /// The largest value recorded (to the histogram's precision, never below it).
    pub fn max(&self) -> Option<u32> {
        self.some(self.0.max())
    }

    pub fn mean(&self) -> Option<f64> {
        (!self.0.is_empty()).then(|| self.0.mean())
    }

    /// The value at or below which `q` (0..=1) of the values lie; never understated.
    pub fn quantile(&self, q: f64) -> Option<u32> {
        self.some(self.0.value_at_quantile(q))
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        // Cannot fail: every LatencyHistogram has the same bounds.
        self.0.add(&other.0).expect("same bounds");
    }

    /// Forgets every value (keeps the counts array).
    pub fn clear(&mut self) {
        self.0.reset();
    }

    fn some(&self, v: u64) -> Option<u32> {
        (!self.0.is_empty()).then(|| v.min(HIGHEST_US) as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_a_uniform_run() {
        let mut h = LatencyHistogram::default();
        assert_eq!((h.quantile(0.5), h.min(), h.max(), h.mean()), (None, None, None, None));
        for v in 1..=10_000 {
            h.record(v);
        }
        assert_eq!(h.count(), 10_000);
        assert_eq!(h.min(), Some(1));
        let max = h.max().unwrap();
        assert!((10_000..=10_010).contains(&max), "{max}");
        let p50 = h.quantile(0.5).unwrap();
        assert!((5000..=5005).contains(&p50), "{p50}");
        let p99 = h.quantile(0.99).unwrap();
        assert!((9900..=9910).contains(&p99), "{p99}");
        assert!(h.quantile(0.999).unwrap() <= max);
        assert_eq!(h.quantile(0.0), Some(1));
        let mut g = LatencyHistogram::default();
        g.merge(&h);
        g.merge(&h);
        assert_eq!(g.count(), 20_000);
        assert_eq!(g.quantile(0.5), h.quantile(0.5));
        g.clear();
        assert_eq!((g.count(), g.quantile(0.5)), (0, None));
    }

    #[test]
    fn extremes_are_kept_or_clamped() {
        let mut h = LatencyHistogram::default();
        h.record(0);
        h.record(u32::MAX);
        assert_eq!(h.min(), Some(0));
        assert_eq!(h.max(), Some(u32::MAX));
        assert_eq!(h.quantile(1.0), Some(u32::MAX));
    }
}
