//! The segment index of one stream's recording: keyframe-aligned MPEG-TS
//! files named by the wall-clock millisecond their first frame arrived
//! (`<start_ms>.ts`). Pure bookkeeping: which segments cover a time span
//! and which contiguous ranges are recorded. The files are written by
//! `pipeline.rs`; what retention deletes is [`super::budget`]'s plan.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One segment file.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub start_ms: i64,
    /// `None` while it is being written.
    pub end_ms: Option<i64>,
    pub bytes: u64,
}

impl Segment {
    /// File name inside the stream's folder.
    pub fn name(&self) -> String {
        format!("{}.ts", self.start_ms)
    }
}

/// A stream's segments by start time.
#[derive(Debug, Default)]
pub struct Index {
    pub dir: PathBuf,
    segments: BTreeMap<i64, Segment>,
}

/// Gaps longer than this between segments split recorded ranges.
const GAP_MS: i64 = 1_500;

/// Longest a segment is taken to be when its end is not known.
const MAX_SEGMENT_MS: i64 = 60_000;

impl Index {
    /// The index of what `dir` holds (after a restart). A segment's end is
    /// the next one's start when they follow each other, else its file's
    /// modification time.
    pub fn scan(dir: &Path) -> Index {
        let mut found: Vec<(i64, u64, i64)> = Vec::new();
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                let Some(ms) = name.strip_suffix(".ts").and_then(|s| s.parse::<i64>().ok()) else {
                    continue;
                };
                let meta = e.metadata().ok();
                let bytes = meta.as_ref().map_or(0, |m| m.len());
                let mtime = meta
                    .and_then(|m| m.modified().ok())
                    .map_or(ms, crate::clock::unix_ms);
                found.push((ms, bytes, mtime));
            }
        }
        found.sort();
        let mut segments = BTreeMap::new();
        for (i, (ms, bytes, mtime)) in found.iter().enumerate() {
            let next = found.get(i + 1).map(|n| n.0);
            // A segment is never much longer than its target; a file time
            // far after its start means the clock moved, not the segment.
            let end = match next {
                Some(n) if n - mtime <= GAP_MS => n,
                _ => (*mtime).clamp(*ms, ms + MAX_SEGMENT_MS),
            };
            segments.insert(
                *ms,
                Segment {
                    start_ms: *ms,
                    end_ms: Some(end),
                    bytes: *bytes,
                },
            );
        }
        Index {
            dir: dir.to_path_buf(),
            segments,
        }
    }

    /// A new segment began at `start_ms`; the one before it ends there.
    pub fn open(&mut self, start_ms: i64) {
        if let Some((_, last)) = self.segments.iter_mut().next_back() {
            if last.end_ms.is_none() {
                last.end_ms = Some(start_ms);
                last.bytes = std::fs::metadata(self.dir.join(last.name())).map_or(0, |m| m.len());
            }
        }
        self.segments.insert(
            start_ms,
            Segment {
                start_ms,
                end_ms: None,
                bytes: 0,
            },
        );
    }

    /// The segment being written ended (the pipeline stopped) at `end_ms`.
    pub fn close(&mut self, end_ms: i64) {
        let dir = self.dir.clone();
        if let Some((_, last)) = self.segments.iter_mut().next_back() {
            if last.end_ms.is_none() {
                last.end_ms = Some(end_ms.max(last.start_ms));
                last.bytes = std::fs::metadata(dir.join(last.name())).map_or(0, |m| m.len());
            }
        }
    }

    /// Segments overlapping `[from_ms, to_ms]`, oldest first; the open one
    /// counts as running to `now_ms`.
    pub fn covering(&self, from_ms: i64, to_ms: i64, now_ms: i64) -> Vec<Segment> {
        self.segments
            .values()
            .filter(|s| s.start_ms <= to_ms && s.end_ms.unwrap_or(now_ms) >= from_ms)
            .cloned()
            .collect()
    }

    /// Whether a closed segment reaches `t_ms` (the clip up to there is on disk).
    pub fn closed_through(&self, t_ms: i64) -> bool {
        self.segments
            .values()
            .any(|s| s.end_ms.is_some_and(|e| e >= t_ms) && s.start_ms <= t_ms)
            || self
                .segments
                .values()
                .any(|s| s.start_ms > t_ms && s.end_ms.is_some())
    }

    /// Recorded ranges `(start_ms, end_ms)`, contiguous segments merged.
    pub fn ranges(&self, now_ms: i64) -> Vec<(i64, i64)> {
        let mut out: Vec<(i64, i64)> = Vec::new();
        for s in self.segments.values() {
            let end = s.end_ms.unwrap_or(now_ms);
            match out.last_mut() {
                Some(last) if s.start_ms - last.1 <= GAP_MS => last.1 = last.1.max(end),
                _ => out.push((s.start_ms, end)),
            }
        }
        out
    }

    /// Every segment, the open one too, oldest first.
    pub fn all(&self) -> impl Iterator<Item = &Segment> {
        self.segments.values()
    }

    /// Forgets a segment (its file was deleted).
    pub fn remove(&mut self, start_ms: i64) {
        self.segments.remove(&start_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covering_and_ranges_follow_the_segments() {
        let mut ix = Index::default();
        ix.open(1_000);
        ix.open(3_000);
        ix.open(5_000);
        ix.close(7_000);
        ix.open(20_000);
        let c: Vec<i64> = ix
            .covering(2_500, 5_500, 30_000)
            .iter()
            .map(|s| s.start_ms)
            .collect();
        assert_eq!(c, [1_000, 3_000, 5_000]);
        assert_eq!(ix.ranges(21_000), [(1_000, 7_000), (20_000, 21_000)]);
        assert!(ix.closed_through(6_900));
        assert!(
            !ix.closed_through(20_500),
            "the open segment is not on disk yet"
        );
    }
}
