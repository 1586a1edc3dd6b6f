//! Retention: every few seconds, and whenever a segment closes, clips
//! older than `clip_days` are forgotten (with their snapshots and MP4s),
//! then [`super::budget`] plans what goes so that segments, snapshots and
//! cached MP4s together stay within `max_gb`, and this carries it out:
//! segment files deleted, evicted clips' evidence deleted and their rows
//! marked expired.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::budget::{self, ClipUse};
use super::Recorder;
use crate::clock::Clocks;
use crate::store::Store;

/// How often retention runs when no segment closes.
pub const EVERY: Duration = Duration::from_secs(5);

/// Files in the evidence folder that no clip row names are deleted once
/// they are this old (a snapshot is written just before its clip row).
const ORPHAN_GRACE_MS: i64 = 10 * 60_000;

/// What one pass did.
#[derive(Debug, Default, PartialEq)]
pub struct Swept {
    pub segments: usize,
    pub expired: usize,
    /// Bytes of everything the recorder keeps, after the pass.
    pub bytes: u64,
}

/// The evidence folder's files by clip: `(all bytes, MP4 bytes)`, and the
/// bytes of files of no clip (transient MP4s, orphans).
struct EvidenceFiles {
    by_clip: HashMap<String, (u64, u64)>,
    /// `(file, bytes, modified Unix ms)` of files no live clip names.
    loose: Vec<(std::path::PathBuf, u64, i64)>,
}

fn evidence_files(dir: &Path, live: &HashSet<&str>) -> EvidenceFiles {
    let mut out = EvidenceFiles {
        by_clip: HashMap::new(),
        loose: Vec::new(),
    };
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Ok(meta) = e.metadata() else { continue };
        let id = name
            .strip_suffix("-clean.jpg")
            .or_else(|| name.strip_suffix(".jpg"))
            .or_else(|| name.strip_suffix(".mp4"));
        match id.filter(|id| live.contains(id)) {
            Some(id) => {
                let c = out.by_clip.entry(id.to_string()).or_default();
                c.0 += meta.len();
                if name.ends_with(".mp4") {
                    c.1 += meta.len();
                }
            }
            None => {
                let modified = meta.modified().map_or(0, crate::clock::unix_ms);
                out.loose.push((e.path(), meta.len(), modified));
            }
        }
    }
    out
}

fn remove_evidence(dir: &Path, id: &str, mp4_only: bool) {
    let names = [
        format!("{id}.mp4"),
        format!("{id}.jpg"),
        format!("{id}-clean.jpg"),
    ];
    for name in names.iter().take(if mp4_only { 1 } else { 3 }) {
        let _ = std::fs::remove_file(dir.join(name));
    }
}

/// One pass at wall time `now_ms`.
pub fn pass(recorder: &Recorder, store: &Store, now_ms: i64) -> anyhow::Result<Swept> {
    let s = &recorder.settings;
    let keep_since = now_ms - s.clip_keep.as_millis() as i64;
    let evidence = recorder.evidence_dir();
    for id in store.drop_clips(keep_since)? {
        remove_evidence(&evidence, &id, false);
    }
    let live = store.live_clips(keep_since)?;
    let ids: HashSet<&str> = live.iter().map(|c| c.id.as_str()).collect();
    let mut files = evidence_files(&evidence, &ids);
    let mut other = 0;
    for (path, bytes, modified) in std::mem::take(&mut files.loose) {
        let transient = path.to_string_lossy().ends_with(".mp4");
        if now_ms - modified > ORPHAN_GRACE_MS && !transient {
            let _ = std::fs::remove_file(&path);
        } else {
            other += bytes;
        }
    }
    let (pre, post) = (s.pre.as_millis() as i64, s.post.as_millis() as i64);
    let clips: Vec<ClipUse> = live
        .iter()
        .map(|c| {
            let (bytes, mp4_bytes) = files.by_clip.get(&c.id).copied().unwrap_or_default();
            ClipUse {
                id: c.id.clone(),
                stream: c.stream.clone(),
                from_ms: c.start_ms - pre,
                // A running clip needs everything from its start on.
                to_ms: c.end_ms.map_or(i64::MAX, |e| e + post),
                bytes,
                mp4_bytes,
                open: c.end_ms.is_none(),
            }
        })
        .collect();
    let cutoff = now_ms - s.max_age.as_millis() as i64;
    let plan = budget::plan(&recorder.segments(), &clips, other, s.max_bytes, cutoff);
    let segments = recorder.delete_segments(&plan.segments);
    for id in &plan.trimmed {
        remove_evidence(&evidence, id, true);
    }
    if !plan.expire.is_empty() {
        let reason = format!(
            "evicted to keep the recording within its budget ([recording] max_gb = {:.3}): \
             this camera's older evidence gave way to newer",
            s.max_bytes as f64 / 1e9
        );
        store.expire_clips(&plan.expire, &reason)?;
        for id in &plan.expire {
            remove_evidence(&evidence, id, false);
        }
    }
    Ok(Swept {
        segments,
        expired: plan.expire.len(),
        bytes: plan.total_after,
    })
}

/// Runs [`pass`] whenever a segment closes, and at least every [`EVERY`],
/// until the task is dropped.
pub async fn run(recorder: Arc<Recorder>, store: Arc<Store>, clocks: Arc<dyn Clocks>) {
    loop {
        tokio::select! {
            _ = clocks.sleep(EVERY) => {}
            _ = recorder.segment_closed.notified() => {}
        }
        let (r, s, now) = (
            Arc::clone(&recorder),
            Arc::clone(&store),
            recorder.steady_ms(),
        );
        match tokio::task::spawn_blocking(move || pass(&r, &s, now)).await {
            Ok(Ok(Swept {
                segments: 0,
                expired: 0,
                ..
            })) => {}
            // A full budget deletes a segment each time one closes: routine,
            // so only a clip losing its evidence is worth the log.
            Ok(Ok(w)) if w.expired == 0 => tracing::debug!(
                segments = w.segments,
                bytes = w.bytes,
                "recording retention deleted old footage"
            ),
            Ok(Ok(w)) => tracing::info!(
                segments = w.segments,
                expired_clips = w.expired,
                bytes = w.bytes,
                "recording retention deleted old footage and expired clips"
            ),
            Ok(Err(e)) => tracing::warn!(error = %format!("{e:#}"), "recording retention failed"),
            Err(e) => tracing::warn!(error = %e, "recording retention task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::clock::{simulated, Steady};
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
        let r = Recorder::new(
            settings,
            Signer::from_api_key("k"),
            Arc::clone(&clocks),
            Steady::new(clocks),
            None,
        )
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
            expired: None,
        })?;
        let gone = pass(&r, &store, t0 + 40_000)?.segments;
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

    /// Wall-clock steps (a year forward, an hour back) under simulated
    /// clocks: recordings are not deleted wholesale and a link signed
    /// before the step still opens after it.
    #[test]
    fn a_stepped_wall_clock_neither_deletes_recordings_nor_expires_links() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let cam = dir.path().join("cam");
        std::fs::create_dir_all(&cam)?;
        let t0 = 1_800_000_000_000i64;
        for i in 0..20 {
            std::fs::write(cam.join(format!("{}.ts", t0 + i * 2000)), vec![0u8; 1000])?;
        }
        let (sim, clocks) = simulated(UNIX_EPOCH + Duration::from_millis(t0 as u64 + 40_000));
        let settings = RecordSettings {
            dir: Some(dir.path().to_path_buf()),
            segment: Duration::from_secs(2),
            max_bytes: 1_000_000_000,
            max_age: Duration::from_secs(3600),
            clip_keep: Duration::from_secs(86_400),
            pre: Duration::from_secs(1),
            post: Duration::from_secs(1),
            min_free_bytes: 0,
            url_ttl: Duration::from_secs(600),
        };
        let r = Recorder::new(
            settings,
            Signer::from_api_key("k"),
            Arc::clone(&clocks),
            Steady::new(clocks),
            None,
        )
        .ok_or_else(|| anyhow::anyhow!("recorder"))?;
        let store = Store::open(None)?;
        let path = "/media/cam/o1/clip.mp4";
        let exp = r.link_expiry();
        let signed = r.signer.signed(path, exp);
        let sig = signed.rsplit("sig=").next().unwrap_or_default().to_string();
        let opens = |r: &Recorder| r.signer.check(path, exp, &sig, r.steady_ms() / 1000);
        assert!(opens(&r));
        for step in [365 * 86_400_000, -3_600_000] {
            sim.step_wall(step);
            sim.advance(Duration::from_secs(5));
            assert_eq!(pass(&r, &store, r.steady_ms())?.segments, 0, "step {step}");
            assert_eq!(std::fs::read_dir(&cam)?.count(), 20);
            assert!(opens(&r), "the link still opens after a step of {step} ms");
        }
        // Real time still counts: past the link's lifetime it expires, and
        // an hour on the footage ages out.
        sim.advance(Duration::from_secs(3_600));
        assert!(!opens(&r));
        assert_eq!(pass(&r, &store, r.steady_ms())?.segments, 20);
        Ok(())
    }
}
