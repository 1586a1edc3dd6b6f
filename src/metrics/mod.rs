//! Prometheus metrics: latency histograms the stages fill as they work,
//! and the text exposition of them and of every counter the daemon keeps
//! ([`text`]), served at `GET /metrics`.

pub mod telemetry;
pub mod text;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Bucket upper bounds, in seconds: 1 ms to 10 s, about three per decade.
pub const BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A latency histogram, lock-free.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last is +Inf.
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_ns: AtomicU64,
}

/// A histogram's contents at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Cumulative counts per bucket of [`BUCKETS`], then +Inf (the total).
    pub cumulative: Vec<u64>,
    pub sum_secs: f64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(BUCKETS.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut total = 0;
        let cumulative = self
            .counts
            .iter()
            .map(|c| {
                total += c.load(Ordering::Relaxed);
                total
            })
            .collect();
        Snapshot {
            cumulative,
            sum_secs: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

impl Snapshot {
    /// Adds another histogram's contents (to sum targets of one kind).
    pub fn add(&mut self, other: &Snapshot) {
        if self.cumulative.is_empty() {
            *self = other.clone();
            return;
        }
        for (a, b) in self.cumulative.iter_mut().zip(&other.cumulative) {
            *a += b;
        }
        self.sum_secs += other.sum_secs;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(30));
        h.observe(Duration::from_secs(60));
        let s = h.snapshot();
        assert_eq!(s.cumulative[0], 1, "≤ 1 ms");
        assert_eq!(s.cumulative[5], 2, "≤ 50 ms");
        assert_eq!(s.cumulative[BUCKETS.len() - 1], 2, "≤ 10 s");
        assert_eq!(*s.cumulative.last().unwrap_or(&0), 3, "+Inf");
        assert!((s.sum_secs - 60.0305).abs() < 1e-6);
    }
}
