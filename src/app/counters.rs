//! The counters log line: every counter (frames, drops, restarts,
//! deliveries, failures, WebSocket clients) once per period, so problems
//! show in the journal while the daemon runs, not only at exit.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::alert::Dispatcher;
use crate::control::Engine;
use crate::pool::PoolStats;

/// Figures from one run.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub frames_in: u64,
    pub scored: u64,
    /// Frames not scored because nothing moved (their last results stood).
    pub skipped_no_motion: u64,
    pub dropped_full: u64,
    pub dropped_stale: u64,
    pub occurrences: u64,
    pub messages_queued: u64,
    pub delivered: u64,
    pub delivery_failures: u64,
    /// Failed attempts that were scheduled again.
    pub delivery_retries: u64,
    pub stream_restarts: u64,
    pub mean_inference_ms: f64,
    pub mean_queue_ms: f64,
}

/// Logs every counter once per period, so drops and failures show up in the
/// journal while the daemon runs, not only at exit.
pub(super) async fn log_counters(
    every: Duration,
    engine: Arc<Engine>,
    pool: Arc<PoolStats>,
    dispatcher: Arc<Dispatcher>,
) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let drops = pool.drops_by_stream();
        for (id, s) in engine.stream_stats() {
            tracing::info!(
                stream = %id,
                frames = s.frames.load(Ordering::Relaxed),
                restarts = s.restarts.load(Ordering::Relaxed),
                undecoded_keyframes = s.undecoded.load(Ordering::Relaxed),
                dropped = drops.get(&id).copied().unwrap_or(0),
                up = engine.health(id.as_str()).up,
                "stream counters"
            );
        }
        let mut f = Summary::default();
        fill_pool_figures(&mut f, &pool);
        tracing::info!(
            scored = f.scored,
            skipped_no_motion = f.skipped_no_motion,
            dropped_full = f.dropped_full,
            dropped_stale = f.dropped_stale,
            errors = pool.errors.load(Ordering::Relaxed),
            mean_inference_ms = f.mean_inference_ms,
            mean_queue_ms = f.mean_queue_ms,
            "pool counters"
        );
        let hub = engine.hub().stats();
        tracing::info!(
            connected = hub.connected,
            sent = hub.sent,
            slow_disconnects = hub.slow_disconnects,
            "websocket counters"
        );
        for (name, t) in &dispatcher.stats() {
            tracing::info!(
                target = %name,
                delivered = t.delivered.load(Ordering::Relaxed),
                failed = t.failed.load(Ordering::Relaxed),
                retries = t.retries.load(Ordering::Relaxed),
                "delivery counters"
            );
        }
    }
}

pub(super) fn fill_pool_figures(s: &mut Summary, p: &PoolStats) {
    s.scored = p.scored.load(Ordering::Relaxed);
    s.skipped_no_motion = p.skipped_no_motion.load(Ordering::Relaxed);
    s.dropped_full = p.dropped_full.load(Ordering::Relaxed);
    s.dropped_stale = p.dropped_stale.load(Ordering::Relaxed);
    if s.scored > 0 {
        s.mean_inference_ms =
            p.inference_us.load(Ordering::Relaxed) as f64 / s.scored as f64 / 1000.0;
        s.mean_queue_ms = p.queued_us.load(Ordering::Relaxed) as f64 / s.scored as f64 / 1000.0;
    }
}
