//! Time as the daemon reads it: wall time, monotonic time, sleeping and
//! jitter, behind one [`Clocks`] trait. The daemon runs on [`RealClocks`];
//! tests run stages on [`SimClocks`], where time moves only when the test
//! says so, so "nothing happens before 5 s" is shown by moving the clock to
//! 4.999 s and looking, not by waiting.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A sleep that can be awaited from any task.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Where time comes from.
pub trait Clocks: Send + Sync + 'static {
    /// Wall-clock time (for timestamps and the outbox's schedule).
    fn wall(&self) -> SystemTime;
    /// Monotonic time (for timeouts, latencies and the stall watchdog).
    fn now(&self) -> Instant;
    /// Waits `d` (async).
    fn sleep(&self, d: Duration) -> Sleep;
    /// Waits until monotonic time `at` (at once if it has passed).
    fn sleep_until(&self, at: Instant) -> Sleep;
    /// Waits `d` on the calling thread (supervisor threads).
    fn sleep_blocking(&self, d: Duration);
    /// A value in `[0, 1)` for spreading retries.
    fn jitter(&self) -> f64;

    /// Wall-clock time in Unix milliseconds.
    fn wall_ms(&self) -> i64 {
        unix_ms(self.wall())
    }
}

/// Milliseconds since the Unix epoch (0 before it).
pub fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The machine's clocks.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealClocks;

impl Clocks for RealClocks {
    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn sleep(&self, d: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(d))
    }
    fn sleep_until(&self, at: Instant) -> Sleep {
        Box::pin(tokio::time::sleep_until(at.into()))
    }
    fn sleep_blocking(&self, d: Duration) {
        std::thread::sleep(d)
    }
    fn jitter(&self) -> f64 {
        rand::random::<f64>()
    }
}

/// The real clocks, shared.
pub fn real() -> Arc<dyn Clocks> {
    Arc::new(RealClocks)
}

/// Clocks that move only when [`SimClocks::advance`] is called. Sleepers
/// (async or blocking) wake when the time they wait for is reached.
pub struct SimClocks {
    wall0: SystemTime,
    mono0: Instant,
    jitter: f64,
    state: Arc<SimState>,
}

/// What sleepers wait on.
#[derive(Default)]
struct SimState {
    elapsed: Mutex<Duration>,
    /// Wall-clock steps (ms) made by [`SimClocks::step_wall`].
    stepped: std::sync::atomic::AtomicI64,
    moved: Condvar,
    wake: tokio::sync::Notify,
    sleepers: AtomicUsize,
}

impl SimState {
    fn elapsed(&self) -> Duration {
        *self.elapsed.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl SimClocks {
    /// Starts at `wall` with a fixed `jitter` (in `[0, 1)`).
    pub fn new(wall: SystemTime, jitter: f64) -> Arc<SimClocks> {
        Arc::new(SimClocks {
            wall0: wall,
            mono0: Instant::now(),
            jitter: jitter.clamp(0.0, 0.999_999),
            state: Arc::default(),
        })
    }

    /// Time since the start.
    pub fn elapsed(&self) -> Duration {
        self.state.elapsed()
    }

    /// Moves time forward by `d` and wakes whoever that concerns.
    pub fn advance(&self, d: Duration) {
        let st = &self.state;
        {
            let mut e = st.elapsed.lock().unwrap_or_else(|p| p.into_inner());
            *e += d;
        }
        st.moved.notify_all();
        st.wake.notify_waiters();
    }

    /// Steps the wall clock by `ms` (negative: back) without moving
    /// monotonic time, as NTP or an operator does to a real clock.
    pub fn step_wall(&self, ms: i64) {
        self.state.stepped.fetch_add(ms, Ordering::SeqCst);
    }

    /// How many sleeps are waiting right now.
    pub fn sleepers(&self) -> usize {
        self.state.sleepers.load(Ordering::SeqCst)
    }

    /// Waits (in real time, briefly) until at least `n` sleeps are waiting:
    /// the stages under test have done all they can at the current time.
    pub async fn settled(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.sleepers() < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// Counts a sleeper while it waits, also when its future is dropped.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::SeqCst);
        Waiting(n)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The simulated clocks as a trait object, keeping the handle for tests.
pub fn simulated(wall: SystemTime) -> (Arc<SimClocks>, Arc<dyn Clocks>) {
    let sim = SimClocks::new(wall, 0.5);
    let clocks: Arc<dyn Clocks> = Arc::clone(&sim) as _;
    (sim, clocks)
}

impl Clocks for SimClocks {
    fn wall(&self) -> SystemTime {
        let stepped = self.state.stepped.load(Ordering::SeqCst);
        let t = self.wall0 + self.elapsed();
        if stepped >= 0 {
            t + Duration::from_millis(stepped as u64)
        } else {
            t.checked_sub(Duration::from_millis(stepped.unsigned_abs()))
                .unwrap_or(UNIX_EPOCH)
        }
    }
    fn now(&self) -> Instant {
        self.mono0 + self.elapsed()
    }
    fn sleep(&self, d: Duration) -> Sleep {
        self.sleep_until(self.now() + d)
    }
    fn sleep_until(&self, at: Instant) -> Sleep {
        let st = Arc::clone(&self.state);
        let until = at.saturating_duration_since(self.mono0);
        Box::pin(async move {
            let _counted = Waiting::new(&st.sleepers);
            loop {
                let woken = st.wake.notified();
                tokio::pin!(woken);
                woken.as_mut().enable();
                if st.elapsed() >= until {
                    return;
                }
                woken.await;
            }
        })
    }
    fn sleep_blocking(&self, d: Duration) {
        let st = &self.state;
        let until = st.elapsed() + d;
        let _counted = Waiting::new(&st.sleepers);
        let mut e = st.elapsed.lock().unwrap_or_else(|p| p.into_inner());
        while *e < until {
            e = st.moved.wait(e).unwrap_or_else(|p| p.into_inner());
        }
    }
    fn jitter(&self) -> f64 {
        self.jitter
    }
}

/// A wall-clock step larger than this is a jump; smaller moves are NTP
/// slewing the clock, which steady time follows.
pub const JUMP_TOLERANCE_MS: i64 = 2_000;

/// Wall time without jumps, for what must not lurch when the wall clock is
/// stepped (NTP's first answer on a box without a real-time clock, an
/// operator, a step back): retention's ages, signed links' expiry, the
/// outbox's retry schedule. It starts at the wall clock, then moves with
/// monotonic time, following the wall clock while the two agree within
/// [`JUMP_TOLERANCE_MS`]; a larger step is counted as a jump and not
/// followed (until the next start). Payload timestamps and file names stay
/// on the wall clock. `sleep`, `now` and `jitter` are the inner clocks'.
pub struct Steady {
    inner: Arc<dyn Clocks>,
    state: Mutex<SteadyState>,
}

struct SteadyState {
    /// Steady time at `at`, Unix ms.
    ms: i64,
    at: Instant,
    /// Wall minus steady when the last jump was seen.
    offset_ms: i64,
    jumps: u64,
}

/// The wall-clock steps a [`Steady`] has seen.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct JumpView {
    /// Steps of the wall clock seen since the start.
    pub jumps: u64,
    /// How far the wall clock is from steady time now, ms (0 without jumps).
    pub offset_ms: i64,
}

impl Steady {
    pub fn new(inner: Arc<dyn Clocks>) -> Arc<Steady> {
        let state = SteadyState {
            ms: inner.wall_ms(),
            at: inner.now(),
            offset_ms: 0,
            jumps: 0,
        };
        Arc::new(Steady {
            inner,
            state: Mutex::new(state),
        })
    }

    /// Steady time now, Unix ms; notices jumps.
    pub fn steady_ms(&self) -> i64 {
        let (wall, now) = (self.inner.wall_ms(), self.inner.now());
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let steady = st.ms + now.saturating_duration_since(st.at).as_millis() as i64;
        let off = wall - steady;
        if (off - st.offset_ms).abs() > JUMP_TOLERANCE_MS {
            st.jumps += 1;
            tracing::warn!(
                step_ms = off - st.offset_ms,
                "the wall clock jumped: alert timestamps follow it; retention, link expiry and retries keep steady time"
            );
            st.offset_ms = off;
        }
        if off.abs() <= JUMP_TOLERANCE_MS {
            // In step with the wall clock (again): follow it.
            st.offset_ms = 0;
            st.ms = wall;
            st.at = now;
            return wall;
        }
        steady
    }

    pub fn jumps(&self) -> JumpView {
        let _ = self.steady_ms();
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        JumpView {
            jumps: st.jumps,
            offset_ms: st.offset_ms,
        }
    }
}

impl Clocks for Steady {
    fn wall(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.steady_ms().max(0) as u64)
    }
    fn now(&self) -> Instant {
        self.inner.now()
    }
    fn sleep(&self, d: Duration) -> Sleep {
        self.inner.sleep(d)
    }
    fn sleep_until(&self, at: Instant) -> Sleep {
        self.inner.sleep_until(at)
    }
    fn sleep_blocking(&self, d: Duration) {
        self.inner.sleep_blocking(d)
    }
    fn jitter(&self) -> f64 {
        self.inner.jitter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_simulated_sleep_ends_when_the_clock_reaches_it_and_not_before() {
        let (sim, clocks) = simulated(UNIX_EPOCH + Duration::from_secs(1_000));
        let t0 = clocks.now();
        let sleeping = tokio::spawn({
            let c = Arc::clone(&clocks);
            async move { c.sleep(Duration::from_secs(5)).await }
        });
        sim.settled(1).await;
        sim.advance(Duration::from_millis(4_999));
        tokio::task::yield_now().await;
        assert!(!sleeping.is_finished(), "woke before its time");
        sim.advance(Duration::from_millis(1));
        tokio::time::timeout(Duration::from_secs(5), sleeping)
            .await
            .expect("woke at its time")
            .expect("sleep task");
        assert_eq!(clocks.now() - t0, Duration::from_secs(5));
        assert_eq!(clocks.wall_ms(), 1_005_000);
        assert_eq!(sim.sleepers(), 0);
    }

    #[test]
    fn steady_time_does_not_follow_jumps_but_follows_slewing() {
        let (sim, clocks) = simulated(UNIX_EPOCH + Duration::from_secs(1_000));
        let steady = Steady::new(Arc::clone(&clocks));
        sim.advance(Duration::from_secs(10));
        assert_eq!(steady.steady_ms(), 1_010_000);
        // A year forward: steady time goes on from where it was.
        sim.step_wall(365 * 86_400_000);
        sim.advance(Duration::from_secs(5));
        assert_eq!(steady.steady_ms(), 1_015_000);
        assert_eq!(steady.jumps().jumps, 1);
        // An hour back from there (the wall is still a year ahead): one
        // more jump, steady time still only moves with real time.
        sim.step_wall(-3_600_000);
        sim.advance(Duration::from_secs(5));
        assert_eq!(steady.steady_ms(), 1_020_000);
        assert_eq!(
            steady.jumps(),
            JumpView {
                jumps: 2,
                offset_ms: 365 * 86_400_000 - 3_600_000
            }
        );
        // Set right again: steady follows the wall clock once they agree.
        sim.step_wall(-(365 * 86_400_000 - 3_600_000));
        assert_eq!(steady.steady_ms(), clocks.wall_ms());
        // Slewing (a second at a time) is followed, not counted.
        for _ in 0..5 {
            sim.step_wall(1_000);
            sim.advance(Duration::from_secs(1));
            assert_eq!(steady.steady_ms(), clocks.wall_ms());
        }
        assert_eq!(steady.jumps().jumps, 3, "only the setting right counted");
    }

    #[test]
    fn a_blocking_sleep_follows_the_simulated_clock() {
        let (sim, clocks) = simulated(UNIX_EPOCH);
        let t = std::thread::spawn(move || clocks.sleep_blocking(Duration::from_secs(30)));
        while sim.sleepers() == 0 {
            std::thread::yield_now();
        }
        assert!(!t.is_finished());
        sim.advance(Duration::from_secs(30));
        t.join().expect("the sleeper woke");
    }
}
