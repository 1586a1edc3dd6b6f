//! Evidence: rolling recording of every recorded stream's encoded video
//! (keyframe-aligned MPEG-TS segments, never decoded), a clip per
//! occurrence (an HLS playlist over its segments and an MP4 remuxed from
//! them), JPEG snapshots with the detector's boxes, and retention by disk
//! budget and age that keeps the segments of recent clips. docs/EVIDENCE.md
//! has the figures and the rules.

pub mod budget;
pub mod clips;
pub mod evidence;
pub mod pipeline;
pub mod retention;
pub mod segments;
pub mod sign;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::clock::Clocks;
use crate::domain::StreamId;
use crate::domain::{RecordSettings, StreamSpec};
use crate::source::tap::Taps;
pub use pipeline::RecordStatus;
use segments::{Index, Segment};
pub use sign::Signer;

/// One stream being recorded.
struct Recording {
    stop: Arc<AtomicBool>,
    spec: StreamSpec,
}

/// Every stream's recording.
pub struct Recorder {
    pub settings: RecordSettings,
    dir: PathBuf,
    pub signer: Signer,
    clocks: Arc<dyn Clocks>,
    steady: Arc<crate::clock::Steady>,
    running: Mutex<HashMap<StreamId, Recording>>,
    indexes: Mutex<HashMap<String, Arc<Mutex<Index>>>>,
    statuses: Mutex<HashMap<String, Arc<Mutex<RecordStatus>>>>,
    /// The detection pipelines' encoded video, when the sources offer it.
    taps: Option<Arc<Taps>>,
    /// Told each time a segment closes: retention keeps the budget then.
    pub segment_closed: Arc<tokio::sync::Notify>,
}

/// Bytes of the files directly in `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let files = std::fs::read_dir(dir).into_iter().flatten().flatten();
    files
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// The budget estimate from what a recording folder holds, without a
/// running recorder (`check-config`); `None` when recording is off.
pub fn estimate_on_disk(settings: &RecordSettings) -> Option<budget::Estimate> {
    let dir = settings.dir.as_ref()?;
    let mut segments = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if e.path().is_dir() && safe_name(&name) && !name.starts_with('_') {
            let ix = Index::scan(&e.path());
            segments.extend(ix.all().map(|s| (name.clone(), s.clone())));
        }
    }
    let evidence = dir_bytes(&dir.join("_evidence"));
    Some(budget::estimate(
        &segments,
        evidence,
        settings.max_bytes,
        settings.clip_keep,
    ))
}

/// Whether a name is safe as one path component (stream ids, occurrence
/// ids): media paths never take anything else from a request.
pub fn safe_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl Recorder {
    /// Unix seconds (steady time) until which a media link signed now is
    /// valid.
    pub fn link_expiry(&self) -> i64 {
        self.steady_ms() / 1000 + self.settings.url_ttl.as_secs() as i64
    }

    /// Steady time now (see [`crate::clock::Steady`]): what link expiry and
    /// retention's ages are measured in, so a stepped wall clock neither
    /// expires every link nor deletes recordings wholesale.
    pub fn steady_ms(&self) -> i64 {
        self.steady.steady_ms()
    }

    /// A recorder, or `None` when recording is off (no directory). With
    /// `taps`, streams recorded from their detection URL are recorded from
    /// the detection pipeline's session instead of a second one.
    pub fn new(
        settings: RecordSettings,
        signer: Signer,
        clocks: Arc<dyn Clocks>,
        steady: Arc<crate::clock::Steady>,
        taps: Option<Arc<Taps>>,
    ) -> Option<Recorder> {
        let dir = settings.dir.clone()?;
        let r = Recorder {
            settings,
            dir,
            signer,
            steady,
            clocks,
            running: Mutex::default(),
            indexes: Mutex::default(),
            statuses: Mutex::default(),
            taps,
            segment_closed: Arc::default(),
        };
        // What earlier runs recorded is subject to retention too.
        if let Ok(entries) = std::fs::read_dir(&r.dir) {
            for e in entries.flatten().filter(|e| e.path().is_dir()) {
                let _ = r.index(&e.file_name().to_string_lossy());
            }
        }
        Some(r)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where snapshots and clip MP4s of occurrences go.
    pub fn evidence_dir(&self) -> PathBuf {
        self.dir.join("_evidence")
    }

    /// The segment index of a stream (read from disk the first time).
    pub fn index(&self, stream: &str) -> Option<Arc<Mutex<Index>>> {
        if !safe_name(stream) {
            return None;
        }
        let mut all = self.indexes.lock().ok()?;
        Some(Arc::clone(all.entry(stream.to_string()).or_insert_with(
            || Arc::new(Mutex::new(Index::scan(&self.dir.join(stream)))),
        )))
    }

    fn status(&self, stream: &str) -> Arc<Mutex<RecordStatus>> {
        let mut all = self.statuses.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(all.entry(stream.to_string()).or_default())
    }

    /// Records exactly these streams: starts the new ones, stops the others.
    pub fn set_streams(&self, wanted: Vec<StreamSpec>) {
        let Ok(mut running) = self.running.lock() else {
            return;
        };
        running.retain(|id, r| {
            let keep = wanted.iter().any(|w| &w.id == id && w == &r.spec);
            if !keep {
                r.stop.store(true, Ordering::SeqCst);
                tracing::info!(stream = %id, "recording stopped");
            }
            keep
        });
        for spec in wanted {
            if running.contains_key(&spec.id) {
                continue;
            }
            if let Some(r) = self.start(spec.clone()) {
                running.insert(spec.id.clone(), r);
            }
        }
    }

    fn start(&self, spec: StreamSpec) -> Option<Recording> {
        let index = self.index(spec.id.as_str())?;
        let stop = Arc::new(AtomicBool::new(false));
        let (input, from) = match (&self.taps, &spec.record_url) {
            (Some(taps), None) => (pipeline::Input::Tap(taps.get(&spec.id)), "tap"),
            (_, Some(url)) => (pipeline::Input::Url(url.clone()), "record_url"),
            (None, None) => (pipeline::Input::Url(spec.url.clone()), "url"),
        };
        let status = self.status(spec.id.as_str());
        if let Ok(mut s) = status.lock() {
            s.input = from;
        }
        let run = pipeline::RecorderRun {
            input,
            dir: self.dir.join(spec.id.as_str()),
            segment: self.settings.segment,
            min_free_bytes: self.settings.min_free_bytes,
            index,
            status,
            stop: Arc::clone(&stop),
            clocks: Arc::clone(&self.clocks),
            spec: spec.clone(),
            closed: Arc::clone(&self.segment_closed),
        };
        let id = spec.id.clone();
        match std::thread::Builder::new()
            .name(format!("rec-{id}"))
            .spawn(move || run.run())
        {
            Ok(_) => {
                tracing::info!(stream = %id, "recording");
                Some(Recording { stop, spec })
            }
            Err(e) => {
                tracing::error!(stream = %id, error = %e, "cannot start recording");
                None
            }
        }
    }

    /// Whether a stream is being recorded now.
    pub fn is_recording(&self, stream: &str) -> bool {
        self.running
            .lock()
            .is_ok_and(|r| r.keys().any(|k| k.as_str() == stream))
    }

    /// Stops every recording (at shutdown).
    pub fn stop_all(&self) {
        self.set_streams(Vec::new());
    }

    /// Segments of `stream` covering `[from_ms, to_ms]`, with their files.
    pub fn covering(&self, stream: &str, from_ms: i64, to_ms: i64) -> Vec<(PathBuf, Segment)> {
        let Some(ix) = self.index(stream) else {
            return Vec::new();
        };
        let now = self.clocks.wall_ms();
        let dir = self.dir.join(stream);
        ix.lock()
            .map(|ix| ix.covering(from_ms, to_ms, now))
            .unwrap_or_default()
            .into_iter()
            .map(|s| (dir.join(s.name()), s))
            .collect()
    }

    /// Whether the recording of `stream` is on disk through `t_ms`.
    pub fn on_disk_through(&self, stream: &str, t_ms: i64) -> bool {
        self.index(stream)
            .and_then(|ix| ix.lock().ok().map(|ix| ix.closed_through(t_ms)))
            .unwrap_or(false)
    }

    /// Recorded ranges of a stream, Unix ms.
    pub fn ranges(&self, stream: &str) -> Vec<(i64, i64)> {
        let now = self.clocks.wall_ms();
        self.index(stream)
            .and_then(|ix| ix.lock().ok().map(|ix| ix.ranges(now)))
            .unwrap_or_default()
    }

    /// What each stream's recorder says about itself.
    pub fn statuses(&self) -> Vec<(String, RecordStatus)> {
        let all = self.statuses.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<(String, RecordStatus)> = all
            .iter()
            .map(|(k, v)| (k.clone(), v.lock().map(|s| s.clone()).unwrap_or_default()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// How long the budget holds at the bitrate measured on disk.
    pub fn estimate(&self) -> budget::Estimate {
        let s = &self.settings;
        let evidence = dir_bytes(&self.evidence_dir());
        budget::estimate(&self.segments(), evidence, s.max_bytes, s.clip_keep)
    }

    /// Every stream's segments, the open ones too (their size so far).
    pub fn segments(&self) -> Vec<(String, Segment)> {
        let indexes = self.all_indexes();
        let mut all = Vec::new();
        for (stream, ix) in &indexes {
            if let Ok(ix) = ix.lock() {
                for s in ix.all() {
                    let mut s = s.clone();
                    if s.end_ms.is_none() {
                        let file = self.dir.join(stream).join(s.name());
                        s.bytes = std::fs::metadata(file).map_or(0, |m| m.len());
                    }
                    all.push((stream.clone(), s));
                }
            }
        }
        all
    }

    fn all_indexes(&self) -> Vec<(String, Arc<Mutex<Index>>)> {
        self.indexes
            .lock()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), Arc::clone(v))).collect())
            .unwrap_or_default()
    }

    /// Deletes segment files and forgets them; returns how many went.
    pub fn delete_segments(&self, gone: &[(String, Segment)]) -> usize {
        let indexes = self.all_indexes();
        let mut n = 0;
        for (stream, s) in gone {
            let path = self.dir.join(stream).join(s.name());
            if let Err(e) = std::fs::remove_file(&path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(file = %path.display(), error = %e, "cannot delete a segment");
                    continue;
                }
            }
            n += 1;
            if let Some((_, ix)) = indexes.iter().find(|(k, _)| k == stream) {
                if let Ok(mut ix) = ix.lock() {
                    ix.remove(s.start_ms);
                }
            }
        }
        n
    }
}
