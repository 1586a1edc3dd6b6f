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
    Ok(recorder.retain(now_ms, |stream, seg| {
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::clock::simulated;
    use crate::domain::RecordSettings;
    use crate::record::{Recorder, Signer};
    use crate::store::ClipRow;

    /// Real segment files and a real (in-memory) SQLite clip table.
    #[test]
    fn old_segments_go_and_a_clips_segments_stay() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let cam = dir.path().join("cam");
        std::fs::create_dir_all(&cam)?;
        // 20 segments of 2 s, 100 kB each, from t = 1000 s.
        let t0 = 1_000_000i64;
        for i in 0..20 {
            std::fs::write(
                cam.join(format!("{}.ts", t0 + i * 2000)),
                vec![0u8; 100_000],
            )?;
        }
        let (_sim, clocks) = simulated(UNIX_EPOCH + Duration::from_millis(t0 as u64 + 40_000));
        let settings = RecordSettings {
            dir: Some(dir.path().to_path_buf()),
            segment: Duration::from_secs(2),
            max_bytes: 1_000_000,
            max_age: Duration::from_secs(3600),
            clip_keep: Duration::from_secs(7 * 86_400),
            pre: Duration::from_secs(1),
            post: Duration::from_secs(1),
            min_free_bytes: 0,
            url_ttl: Duration::from_secs(60),
        };
        let r = Recorder::new(settings, Signer::from_api_key("k"), clocks, None)
            .ok_or_else(|| anyhow::anyhow!("recorder"))?;
        let store = Store::open(None)?;
        // A clip over 1006-1008 s (segments from 1004 to 1010 s with roll).
        store.put_clip(&ClipRow {
            occurrence_id: "o1".into(),
            stream_id: "cam".into(),
            event_id: "e".into(),
            label: "person".into(),
            confidence: 0.9,
            explanation: "x".into(),
            start_ms: t0 + 6_000,
            end_ms: Some(t0 + 8_000),
            start_time: 6.0,
            end_time: 8.0,
            created_ms: t0 + 30_000,
        })?;
        let gone = pass(&r, &store, t0 + 40_000)?;
        let mut left: Vec<i64> = std::fs::read_dir(&cam)?
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_string_lossy()
                    .strip_suffix(".ts")?
                    .parse()
                    .ok()
            })
            .collect();
        left.sort();
        let left: Vec<i64> = left.iter().map(|ms| (ms - t0) / 1000).collect();
        // 2 MB over a 1 MB budget: the oldest go until 10 files are left,
        // except the three the clip needs (4-10 s with its roll), which stay
        // and count toward the budget.
        assert_eq!(gone, 10, "{left:?}");
        assert_eq!(left, [4, 6, 8, 26, 28, 30, 32, 34, 36, 38]);
        // A week later the clip is forgotten and its segments may go too.
        let week = t0 + 8 * 86_400_000;
        pass(&r, &store, week)?;
        assert!(store.clip("o1")?.is_none());
        assert_eq!(
            std::fs::read_dir(&cam)?.count(),
            0,
            "all older than max_hours"
        );
        Ok(())
    }
}
