//! A stepped wall clock is noticed where an operator looks: `GET status`'s
//! `clock` and `/metrics`. The daemon runs on the machine's clocks except
//! that its wall clock can be stepped by the test (a stand-in for NTP's
//! first answer on a box without a real-time clock, which cannot be done to
//! the real clock of a shared machine); monotonic time and sleeps are real.

use crate::common;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use common::daemon::Daemon;
use sightline::clock::{Clocks, RealClocks, Sleep};

/// The machine's clocks with a wall clock that can be stepped.
#[derive(Default)]
struct SteppedWall {
    offset_ms: AtomicI64,
}

impl Clocks for SteppedWall {
    fn wall(&self) -> SystemTime {
        let off = self.offset_ms.load(Ordering::SeqCst);
        let real = RealClocks.wall();
        if off >= 0 {
            real + Duration::from_millis(off as u64)
        } else {
            real - Duration::from_millis(off.unsigned_abs())
        }
    }
    fn now(&self) -> Instant {
        RealClocks.now()
    }
    fn sleep(&self, d: Duration) -> Sleep {
        RealClocks.sleep(d)
    }
    fn sleep_until(&self, at: Instant) -> Sleep {
        RealClocks.sleep_until(at)
    }
    fn sleep_blocking(&self, d: Duration) {
        RealClocks.sleep_blocking(d)
    }
    fn jitter(&self) -> f64 {
        RealClocks.jitter()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wall_clock_step_shows_in_status_and_metrics() {
    let dir = tempfile::tempdir().expect("temp dir");
    let wall = Arc::new(SteppedWall::default());
    let d = Daemon::start_with_clocks(dir.path(), "", Arc::clone(&wall) as Arc<dyn Clocks>).await;
    let before = d.ok("GET", "status", None).await;
    assert_eq!(before["clock"]["jumps"], 0, "{}", before["clock"]);
    // An hour back, as NTP steps a clock that ran fast.
    wall.offset_ms.store(-3_600_000, Ordering::SeqCst);
    let after = d.ok("GET", "status", None).await;
    assert_eq!(after["clock"]["jumps"], 1, "{}", after["clock"]);
    let offset = after["clock"]["offset_ms"].as_i64().unwrap_or(0);
    assert!(
        (-3_602_000..=-3_598_000).contains(&offset),
        "the wall clock is an hour behind steady time: {offset}"
    );
    let (code, metrics) = d.call("GET", "metrics", None).await;
    assert_eq!(code, 200);
    let text = metrics.as_str().unwrap_or_default().to_string();
    let jumps: Option<f64> = text
        .lines()
        .find_map(|l| l.strip_prefix("sightline_clock_jumps_total "))
        .and_then(|v| v.trim().parse().ok());
    assert_eq!(jumps, Some(1.0), "{text}");
    d.stop().await;
}
