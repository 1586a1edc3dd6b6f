//! Free space where the state lives, watched: a warning in the log when it
//! falls below `[state] min_free_mb` (before SQLite hits the wall and the
//! outbox has to hold messages in memory), another when it is back, and the
//! figures in `GET status`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::Serialize;

/// How often the watch looks.
pub const CHECK_EVERY: Duration = Duration::from_secs(5);

/// Free bytes on the filesystem holding `dir` (None if it cannot be read).
pub fn free_bytes(dir: &Path) -> Option<u64> {
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: `c` is a valid NUL-terminated path and `s` a properly sized,
    // zeroed out-parameter that statvfs fills.
    unsafe {
        let mut s: libc::statvfs = std::mem::zeroed();
        (libc::statvfs(c.as_ptr(), &mut s) == 0).then(|| s.f_bavail as u64 * s.f_frsize as u64)
    }
}

/// The state directory's free space against its threshold.
pub struct SpaceWatch {
    dir: PathBuf,
    min_free: u64,
    low: AtomicBool,
    /// Times it went low.
    warnings: AtomicU64,
}

/// What `GET status` shows.
#[derive(Debug, Serialize)]
pub struct SpaceView {
    pub free_mb: Option<f64>,
    pub min_free_mb: f64,
    pub low: bool,
    pub warnings: u64,
}

impl SpaceWatch {
    /// Watches `dir`; a `min_free` of 0 never warns.
    pub fn new(dir: &Path, min_free: u64) -> SpaceWatch {
        SpaceWatch {
            dir: dir.to_path_buf(),
            min_free,
            low: AtomicBool::new(false),
            warnings: AtomicU64::new(0),
        }
    }

    /// Looks now; logs when the state crosses the threshold either way.
    pub fn check(&self) -> SpaceView {
        let free = free_bytes(&self.dir);
        let low = free.is_some_and(|f| f < self.min_free);
        let was = self.low.swap(low, Ordering::Relaxed);
        let mb = |b: u64| b as f64 / 1e6;
        if low && !was {
            self.warnings.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                dir = %self.dir.display(), free_mb = free.map(mb), min_free_mb = mb(self.min_free),
                "state disk is low on space: once it is full, alerts are held in memory \
                 (bounded) until space returns; free some now"
            );
        } else if was && !low {
            tracing::info!(dir = %self.dir.display(), free_mb = free.map(mb),
                "state disk has space again");
        }
        SpaceView {
            free_mb: free.map(mb),
            min_free_mb: mb(self.min_free),
            low,
            warnings: self.warnings.load(Ordering::Relaxed),
        }
    }

    /// Checks every [`CHECK_EVERY`] until the watch is dropped.
    pub fn spawn(self: &Arc<Self>) {
        let weak: Weak<SpaceWatch> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(CHECK_EVERY);
            loop {
                tick.tick().await;
                let Some(w) = weak.upgrade() else { break };
                let _ = tokio::task::spawn_blocking(move || w.check()).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_once_per_crossing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let never = SpaceWatch::new(dir.path(), 0);
        assert!(!never.check().low);
        let always = SpaceWatch::new(dir.path(), u64::MAX);
        let v = always.check();
        assert!(v.low && v.free_mb.is_some());
        assert_eq!(always.check().warnings, 1, "still low: no second warning");
    }
}
