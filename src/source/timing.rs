//! Time for one stream: stream seconds that keep rising across pipeline
//! rebuilds, the jittered backoff between rebuilds, and the stream's phase
//! (when its forced refreshes fall, so cameras started together spread out).

use std::time::{Duration, Instant};

use crate::domain::StreamId;

/// A number in [0, 1) that a stream id always gives, spread evenly over
/// ids (FNV-1a).
pub(super) fn phase_of(id: &StreamId) -> f64 {
    let h = id.as_str().bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (h % 1000) as f64 / 1000.0
}

/// Stream-time bookkeeping shared by the pipeline callbacks of one stream.
pub(super) struct StreamTime {
    /// Added to this run's relative pts so time keeps rising across rebuilds.
    offset: f64,
    first_pts: Option<f64>,
    last: Option<(f64, Instant)>,
}

impl StreamTime {
    pub(super) fn new() -> Self {
        StreamTime {
            offset: 0.0,
            first_pts: None,
            last: None,
        }
    }

    pub(super) fn stream_secs(&mut self, pts: f64, now: Instant) -> f64 {
        let first = *self.first_pts.get_or_insert(pts);
        let t = self.offset + (pts - first).max(0.0);
        self.last = Some((t, now));
        t
    }

    /// Prepares for a new pipeline: the next first frame continues from the
    /// last time seen plus the gap until `now`.
    pub(super) fn rebase(&mut self, now: Instant) {
        if let Some((t, at)) = self.last {
            self.offset = t + now.saturating_duration_since(at).as_secs_f64();
        }
        self.first_pts = None;
    }
}

/// `jitter` in `[0, 1)` spreads the delay over [50 %, 100 %] of the capped
/// exponential step.
pub(super) fn backoff_delay(failures: u32, cap: Duration, jitter: f64) -> Duration {
    let base = Duration::from_millis(250).saturating_mul(1u32 << failures.min(16));
    let capped = base.min(cap);
    // Jitter so cameras that died together do not reconnect in lockstep.
    capped.mul_f64(0.5 + jitter.clamp(0.0, 1.0) * 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let cap = Duration::from_secs(30);
        for failures in 0..40 {
            let d = backoff_delay(failures, cap, rand::random::<f64>());
            let full = Duration::from_millis(250)
                .saturating_mul(1u32 << failures.min(16))
                .min(cap);
            assert!(
                d >= full / 2 && d <= full,
                "{failures}: {d:?} not in [{:?}, {full:?}]",
                full / 2
            );
        }
        let many: Vec<Duration> = (0..50)
            .map(|_| backoff_delay(20, cap, rand::random::<f64>()))
            .collect();
        assert!(
            many.iter().any(|d| *d != many[0]),
            "jitter spreads reconnects"
        );
    }

    #[test]
    fn phases_are_fixed_per_id_and_spread_over_ids() {
        let id = |i: usize| StreamId::new(format!("cam{i}"));
        assert_eq!(phase_of(&id(7)), phase_of(&id(7)));
        // 48 cameras over six slots (a 3 s period at 0.5 s keyframes).
        let mut slots = [0usize; 6];
        for i in 0..48 {
            let p = phase_of(&id(i));
            assert!((0.0..1.0).contains(&p), "{p}");
            slots[(p * 6.0) as usize] += 1;
        }
        assert!(slots.iter().all(|n| *n >= 3 && *n <= 16), "{slots:?}");
    }

    #[test]
    fn stream_time_keeps_rising_across_a_rebuild() {
        let t0 = Instant::now();
        let mut c = StreamTime::new();
        assert_eq!(c.stream_secs(100.0, t0), 0.0);
        assert_eq!(c.stream_secs(102.5, t0), 2.5);
        let later = t0 + Duration::from_millis(20);
        c.rebase(later);
        // A new pipeline starts its pts from zero again.
        let t = c.stream_secs(0.0, later);
        assert!(t >= 2.52, "continues after the gap: {t}");
        assert!(c.stream_secs(1.0, later) > t);
    }
}
