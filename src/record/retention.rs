//! Retention: every few seconds, clips older than `clip_days` are forgotten
//! (with their snapshots and MP4s), then segments older than `max_hours` or
//! beyond the `max_gb` budget are deleted oldest first, except segments
//! that a kept clip (with its pre- and post-roll) needs.

use std::sync::Arc;
use std::time::Duration;

use super::Recorder;
use crate::clock::Clocks;
use crate::store::Store;

/// How often retention runs.
pub const EVERY: Duration = Duration::from_secs(5);

/// One pass. Returns the segment files deleted.
pub fn pass(recorder: &Recorder, store: &Store, now_ms: i64) -> anyhow::Result<usize> {
    let s = &recorder.settings;
    let keep_since = now_ms - s.clip_keep.as_millis() as i64;
    let evidence = recorder.evidence_dir();
    for id in store.drop_clips(keep_since)? {
        for name in [
            format!("{id}.jpg"),
            format!("{id}-clean.jpg"),
            format!("{id}.mp4"),
        ] {
            let _ = std::fs::remove_file(evidence.join(name));
        }
    }
    let spans = store.kept_spans(keep_since, now_ms)?;
    let (pre, post) = (s.pre.as_millis() as i64, s.post.as_millis() as i64);
    Ok(recorder.retain(|stream, seg| {
        let end = seg.end_ms.unwrap_or(i64::MAX);
        spans
            .iter()
            .any(|(st, a, b)| st == stream && seg.start_ms <= b + post && end >= a - pre)
    }))
}

/// Runs [`pass`] every [`EVERY`] until the task is dropped.
pub async fn run(recorder: Arc<Recorder>, store: Arc<Store>, clocks: Arc<dyn Clocks>) {
    loop {
        clocks.sleep(EVERY).await;
        let (r, s, now) = (Arc::clone(&recorder), Arc::clone(&store), clocks.wall_ms());
        match tokio::task::spawn_blocking(move || pass(&r, &s, now)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(segments = n, "recording retention deleted old segments"),
            Ok(Err(e)) => tracing::warn!(error = %format!("{e:#}"), "recording retention failed"),
            Err(e) => tracing::warn!(error = %e, "recording retention task failed"),
        }
    }
}
