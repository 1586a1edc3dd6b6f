//! The durable outbox. A message is committed to SQLite (one row per target:
//! a webhook URL, or the MQTT broker; `synchronous=FULL`) before the first
//! attempt and leaves only when its receiver answered 2xx or the broker sent
//! PUBACK, so a crash or power cut loses nothing that was accepted: after a
//! restart each target's worker resumes from its rows.
//! Retries follow a schedule (default: at once, 5 s, 5 min, 30 min, 2 h,
//! 5 h, 10 h, 10 h) stretched by up to 20 % jitter, never shortened;
//! `Retry-After` is a floor. After the last attempt, on a refusal (4xx) or
//! when the receiver says 410 Gone, the row stays as a dead letter that the
//! API lists and can redeliver. A 410 also disables its URL (kept across
//! restarts) until one of its dead letters is redelivered.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::{sign, Delivery, Sink, SinkError, TargetStats};
use crate::clock::Clocks;

pub use crate::domain::DEFAULT_SCHEDULE;

pub use crate::store::{NewMessage, Outbox, OutboxRow as Row};

/// When the attempt after `attempts` failures is due, `None` when the
/// schedule is used up. `jitter` in `[0, 1)` stretches the gap by up to 20 %.
pub fn next_at(
    now: i64,
    attempts: u32,
    schedule: &[Duration],
    jitter: f64,
    retry_after: Option<Duration>,
) -> Option<i64> {
    let gap = schedule.get(attempts as usize)?;
    let gap = gap.mul_f64(1.0 + 0.2 * jitter.clamp(0.0, 1.0));
    let gap = gap.max(retry_after.unwrap_or_default());
    Some(now + gap.as_millis() as i64)
}

/// Settings of one target's worker.
pub struct WorkerConfig {
    pub target: String,
    pub schedule: Arc<[Duration]>,
    pub concurrency: usize,
    pub clock: Arc<dyn Clocks>,
    /// How often the worker looks for due rows without being woken.
    pub poll: Duration,
    /// Dead letters kept (all targets together); older ones are deleted.
    pub max_dead: usize,
    /// The site's alert stream, once the box joined one: each message is
    /// offered to it before the worker delivers it itself.
    pub site: super::handoff::Slot,
}

/// Runs a target's delivery loop until the process ends; returns its wake-up.
pub fn spawn_worker(
    rt: &tokio::runtime::Handle,
    cfg: WorkerConfig,
    sink: Arc<dyn Sink>,
    store: Arc<dyn Outbox>,
    stats: Arc<TargetStats>,
) -> Arc<Notify> {
    let wake = Arc::new(Notify::new());
    let waker = Arc::clone(&wake);
    let in_flight: Arc<Mutex<HashSet<i64>>> = Arc::default();
    let slots = Arc::new(tokio::sync::Semaphore::new(cfg.concurrency.max(1)));
    rt.spawn(async move {
        loop {
            let now = cfg.clock.wall_ms();
            // Anchored before the read: time that passes meanwhile shortens
            // the wait instead of stretching it.
            let next_poll = cfg.clock.now() + cfg.poll;
            let (s, t, f) = (
                Arc::clone(&store),
                cfg.target.clone(),
                Arc::clone(&in_flight),
            );
            let limit = cfg.concurrency.max(1) * 2;
            // Read and claim under the in-flight lock, which every attempt
            // also holds while it records its outcome: a row cannot be read
            // as due just before its attempt finishes and then claimed again.
            let due = tokio::task::spawn_blocking(move || {
                let mut claimed = f.lock().map_err(|_| anyhow::anyhow!("in-flight lock poisoned"))?;
                let rows = s.due(&t, now, limit + claimed.len())?;
                Ok::<_, anyhow::Error>(
                    rows.into_iter()
                        .filter(|r| claimed.insert(r.seq))
                        .collect::<Vec<_>>(),
                )
            })
            .await;
            stats.last_poll_ms.store(now, Ordering::SeqCst);
            let due = match due {
                Ok(Ok(rows)) => rows,
                Ok(Err(e)) => {
                    tracing::error!(target = %cfg.target, error = %format!("{e:#}"), "cannot read the outbox");
                    Vec::new()
                }
                Err(_) => Vec::new(),
            };
            let mut started = 0;
            for r in due {
                let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
                    return;
                };
                started += 1;
                stats.attempts.fetch_add(1, Ordering::SeqCst);
                let job = Attempt {
                    sink: Arc::clone(&sink),
                    store: Arc::clone(&store),
                    stats: Arc::clone(&stats),
                    schedule: Arc::clone(&cfg.schedule),
                    clock: Arc::clone(&cfg.clock),
                    in_flight: Arc::clone(&in_flight),
                    wake: Arc::clone(&waker),
                    max_dead: cfg.max_dead,
                    site: Arc::clone(&cfg.site),
                };
                tokio::spawn(async move {
                    job.run(r).await;
                    drop(permit);
                });
            }
            if started == 0 {
                tokio::select! {
                    _ = waker.notified() => {}
                    _ = cfg.clock.sleep_until(next_poll) => {}
                }
            }
        }
    });
    wake
}

/// One change to the outbox, run off the async threads.
type StoreOp = Box<dyn FnOnce(&dyn Outbox) -> anyhow::Result<()> + Send>;

struct Attempt {
    sink: Arc<dyn Sink>,
    store: Arc<dyn Outbox>,
    stats: Arc<TargetStats>,
    schedule: Arc<[Duration]>,
    clock: Arc<dyn Clocks>,
    in_flight: Arc<Mutex<HashSet<i64>>>,
    wake: Arc<Notify>,
    max_dead: usize,
    site: super::handoff::Slot,
}

/// Makes a row a dead letter, then keeps the dead letters within `keep`
/// (the oldest go first, with a warning): a receiver that refuses forever
/// cannot fill the disk.
fn bury(s: &dyn Outbox, seq: i64, attempts: u32, error: &str, keep: usize) -> anyhow::Result<()> {
    s.failed(seq, attempts, None, error)?;
    let deleted = s.trim_dead(keep)?;
    if deleted > 0 {
        tracing::warn!(
            deleted,
            kept = keep,
            "more dead letters than [state] max_dead_letters: the oldest were deleted"
        );
    }
    Ok(())
}

impl Attempt {
    /// Hands the message to the site, if the box is in one and the site
    /// takes it, else delivers it to the receiver; says which it was.
    async fn try_once(&self, target: &str, d: &Delivery) -> (bool, Result<(), SinkError>) {
        if let Some(site) = self.site.get() {
            if site.hand(target, d).await {
                self.stats.handed.fetch_add(1, Ordering::Relaxed);
                return (true, Ok(()));
            }
        }
        let started = std::time::Instant::now();
        let result = self.sink.deliver(d).await;
        self.stats.attempt_times.observe(started.elapsed());
        (false, result)
    }

    async fn run(self, r: Row) {
        let d = Delivery {
            message_id: r.message_id.as_str().into(),
            alert_id: r.alert_id.as_str().into(),
            body: r.body.clone().into(),
            topic: r.topic.clone(),
            secrets: r
                .secrets
                .iter()
                .filter_map(|s| sign::Secret::parse(s).ok())
                .collect::<Vec<_>>()
                .into(),
            frame_arrived: None,
        };
        let (handed, result) = self.try_once(&r.target, &d).await;
        let attempts = r.attempts + 1;
        let now = self.clock.wall_ms();
        let name = self.sink.name();
        let store = Arc::clone(&self.store);
        let (seq, target) = (r.seq, r.target.clone());
        let in_flight = Arc::clone(&self.in_flight);
        // Records the outcome and releases the claim in one step.
        let record = move |op: StoreOp| {
            tokio::task::spawn_blocking(move || {
                let mut claimed = in_flight
                    .lock()
                    .map_err(|_| anyhow::anyhow!("in-flight lock poisoned"))?;
                let r = op(store.as_ref());
                claimed.remove(&seq);
                r
            })
        };
        let write = match result {
            Ok(()) => {
                self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                match handed {
                    true => {
                        tracing::debug!(target = %name, message = %r.message_id, "alert handed to the site's stream")
                    }
                    false => {
                        tracing::info!(target = %name, message = %r.message_id, attempts, "alert delivered")
                    }
                }
                record(Box::new(move |s| s.done(seq))).await
            }
            Err(SinkError::Retry { message, after }) => {
                let at = next_at(now, attempts, &self.schedule, self.clock.jitter(), after);
                if at.is_some() {
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(target = %name, message = %r.message_id, attempts, error = %message,
                        retry_in_ms = at.map(|t| t - now), "delivery failed; will retry");
                } else {
                    self.stats.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(target = %name, message = %r.message_id, attempts, error = %message,
                        "delivery failed; schedule used up, kept as a dead letter");
                }
                let keep = self.max_dead;
                record(Box::new(move |s| match at {
                    Some(_) => s.failed(seq, attempts, at, &message),
                    None => bury(s, seq, attempts, &message, keep),
                }))
                .await
            }
            Err(SinkError::Permanent(m)) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(target = %name, message = %r.message_id, error = %m, "delivery refused; kept as a dead letter");
                let keep = self.max_dead;
                record(Box::new(move |s| bury(s, seq, attempts, &m, keep))).await
            }
            Err(SinkError::Gone(m)) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(target = %name, error = %m, "receiver is gone; target disabled");
                if let Ok(mut reason) = self.stats.disabled.lock() {
                    reason.get_or_insert(m.clone());
                }
                let keep = self.max_dead;
                record(Box::new(move |s| {
                    s.target_gone(&target, &m, now)?;
                    bury(s, seq, attempts, &m, keep)
                }))
                .await
            }
        };
        if let Ok(Err(e)) = write {
            tracing::error!(target = %name, error = %format!("{e:#}"), "cannot update the outbox");
        }
        self.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn the_schedule_is_stretched_by_jitter_never_shortened() {
        let s = DEFAULT_SCHEDULE;
        assert_eq!(next_at(1000, 0, s, 0.0, None), Some(1000));
        assert_eq!(next_at(0, 1, s, 0.0, None), Some(5_000));
        assert_eq!(next_at(0, 1, s, 0.999_999, None), Some(5_999));
        assert_eq!(next_at(0, 2, s, 0.5, None), Some(330_000));
        assert_eq!(next_at(0, 8, s, 0.0, None), None, "eight attempts in all");
        let after = Some(Duration::from_secs(60));
        assert_eq!(
            next_at(0, 1, s, 0.0, after),
            Some(60_000),
            "Retry-After is a floor"
        );
    }

    #[test]
    fn rows_live_until_acknowledged_and_dead_letters_can_return() -> anyhow::Result<()> {
        let store = Store::open(None)?;
        let secret = sign::Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .map_err(anyhow::Error::msg)?;
        let msg = |id: &'static str| NewMessage {
            target: "t",
            message_id: id,
            alert_id: "a",
            topic: "",
            body: b"{}",
            secrets: std::slice::from_ref(&secret),
        };
        let seqs = store.add(&[msg("m1"), msg("m2")], 100)?;
        let due = store.due("t", 100, 10)?;
        assert_eq!(due.len(), 2);
        assert_eq!(due[0].secrets, vec![secret.to_text()]);
        assert!(store.due("other", 100, 10)?.is_empty());
        store.done(seqs[0])?;
        store.failed(seqs[1], 1, Some(5_100), "500")?;
        assert!(store.due("t", 5_099, 10)?.is_empty(), "not due yet");
        assert_eq!(store.due("t", 5_100, 10)?.len(), 1);
        store.failed(seqs[1], 8, None, "500")?;
        assert!(store.due("t", i64::MAX, 10)?.is_empty());
        let dead = store.dead_letters(10)?;
        assert_eq!((dead.len(), dead[0].attempts), (1, 8));
        assert_eq!(store.redeliver(seqs[1], 9_000)?.as_deref(), Some("t"));
        assert_eq!(store.redeliver(seqs[1], 9_000)?, None, "no longer dead");
        assert_eq!(store.due("t", 9_000, 10)?[0].attempts, 0);
        Ok(())
    }

    /// Fails each message's first attempt, accepts the rest; counts attempts.
    #[derive(Default)]
    struct FailsOnce(Mutex<Vec<String>>);

    impl Sink for FailsOnce {
        fn name(&self) -> String {
            "fails-once".into()
        }
        fn deliver<'a>(&'a self, d: &'a Delivery) -> crate::alert::DeliverFuture<'a> {
            Box::pin(async move {
                let mut seen = self.0.lock().map_err(|_| SinkError::retry("poisoned"))?;
                let first = !seen.contains(&d.message_id.to_string());
                seen.push(d.message_id.to_string());
                if first {
                    Err(SinkError::retry("503"))
                } else {
                    Ok(())
                }
            })
        }
    }

    /// Waits (real time, briefly) until the sink has seen `n` attempts.
    async fn attempts(sink: &FailsOnce, n: usize) -> bool {
        for _ in 0..500 {
            if sink.0.lock().map_or(0, |s| s.len()) >= n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_retry_keeps_its_schedule_when_the_wall_clock_steps() -> anyhow::Result<()> {
        use crate::clock::{SimClocks, Steady};
        let start = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_780_000_000);
        let sim = SimClocks::new(start, 0.0);
        let steady = Steady::new(Arc::clone(&sim) as Arc<dyn Clocks>);
        let store: Arc<dyn Outbox> = Arc::new(Store::open(None)?);
        let sink = Arc::new(FailsOnce::default());
        let cfg = WorkerConfig {
            target: "t".into(),
            schedule: vec![Duration::ZERO, Duration::from_secs(5)].into(),
            concurrency: 1,
            clock: Arc::clone(&steady) as Arc<dyn Clocks>,
            poll: Duration::from_millis(500),
            max_dead: 10,
            site: Default::default(),
        };
        let msg = |id: &'static str| NewMessage {
            target: "t",
            message_id: id,
            alert_id: "a",
            topic: "",
            body: b"{}",
            secrets: &[],
        };
        store.add(&[msg("back")], steady.wall_ms())?;
        let rt = tokio::runtime::Handle::current();
        let sink_dyn: Arc<dyn Sink> = Arc::clone(&sink) as Arc<dyn Sink>;
        let wake = spawn_worker(&rt, cfg, sink_dyn, Arc::clone(&store), Arc::default());
        assert!(attempts(&sink, 1).await, "the first attempt");
        // An hour back: the retry 5 s later is still 5 s later, not an hour.
        sim.step_wall(-3_600_000);
        sim.advance(Duration::from_millis(4_000));
        wake.notify_one();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(sink.0.lock().map_or(0, |s| s.len()), 1, "not due 4 s after");
        sim.advance(Duration::from_millis(1_500));
        wake.notify_one();
        assert!(
            attempts(&sink, 2).await,
            "retried 5 s after, across the step back"
        );

        // A year forward: a new message's retry does not fire at once.
        store.add(&[msg("forward")], steady.wall_ms())?;
        wake.notify_one();
        assert!(attempts(&sink, 3).await, "the new message's first attempt");
        sim.step_wall(365 * 86_400_000);
        sim.advance(Duration::from_millis(1_000));
        wake.notify_one();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(sink.0.lock().map_or(0, |s| s.len()), 3, "not retried early");
        sim.advance(Duration::from_millis(4_500));
        wake.notify_one();
        assert!(attempts(&sink, 4).await, "retried on schedule");
        assert!(store.due("t", i64::MAX, 10)?.is_empty(), "both delivered");
        assert_eq!(steady.jumps().jumps, 2, "both steps noticed");
        Ok(())
    }
}
