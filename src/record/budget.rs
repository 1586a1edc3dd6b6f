//! The recording budget: one ceiling (`[recording] max_gb`) for everything
//! the recorder writes, segments, snapshots and cached MP4s alike. Pure
//! planning over what is on disk; [`super::retention`] carries the plan out.
//!
//! The order of sacrifice:
//! 1. segments no kept clip needs, older than `max_hours`;
//! 2. over the budget, segments no kept clip needs, oldest first;
//! 3. still over, evidence: the camera using the most bytes gives way first
//!    (so one busy camera cannot evict every other camera's evidence), its
//!    oldest ended clip expiring whole (snapshots, MP4, the segments only
//!    it needed); a camera's newest clip and a running occurrence's clip
//!    never expire, they lose their oldest segments instead (an occurrence
//!    that never ends stays playable from where its recording now begins).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use super::segments::Segment;

/// A kept clip as the budget sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipUse {
    pub id: String,
    pub stream: String,
    /// The span its segments must cover (with pre- and post-roll; an open
    /// clip runs on, `i64::MAX`), Unix ms.
    pub from_ms: i64,
    pub to_ms: i64,
    /// Bytes of its snapshots and cached MP4.
    pub bytes: u64,
    /// Of which the cached MP4.
    pub mp4_bytes: u64,
    /// The occurrence still runs: it never expires whole.
    pub open: bool,
}

/// What retention deletes.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    pub segments: Vec<(String, Segment)>,
    /// Clips that expire whole.
    pub expire: Vec<String>,
    /// Clips that lost segments: their cached MP4 no longer matches.
    pub trimmed: Vec<String>,
    /// Bytes on disk once the plan is carried out.
    pub total_after: u64,
}

struct Seg<'a> {
    stream: &'a str,
    s: &'a Segment,
    /// Kept clips that need it.
    needed_by: u32,
    gone: bool,
}

impl Seg<'_> {
    /// Closed, not deleted, needed by no kept clip.
    fn free(&self) -> bool {
        !self.gone && self.needed_by == 0 && self.s.end_ms.is_some()
    }
}

/// One planning pass in progress.
struct Pass<'a> {
    segs: Vec<Seg<'a>>,
    clips: &'a [ClipUse],
    /// Per clip, the segments it needs.
    needs: Vec<Vec<usize>>,
    alive: Vec<bool>,
    trimmed: Vec<bool>,
    /// Bytes per stream.
    usage: HashMap<&'a str, u64>,
    total: u64,
    out: Plan,
}

impl<'a> Pass<'a> {
    fn new(segments: &'a [(String, Segment)], clips: &'a [ClipUse], other: u64) -> Self {
        let mut segs: Vec<Seg> = segments
            .iter()
            .map(|(stream, s)| Seg {
                stream,
                s,
                needed_by: 0,
                gone: false,
            })
            .collect();
        segs.sort_by_key(|g| (g.s.start_ms, g.stream));
        // A stream's segments in time order normally do not overlap, so a
        // clip's are found by two binary searches instead of a scan of every
        // segment. After the wall clock stepped back, names can overlap:
        // that stream's segments are then scanned.
        let mut by_stream: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, g) in segs.iter().enumerate() {
            by_stream.entry(g.stream).or_default().push(i);
        }
        let end = |i: usize| segs[i].s.end_ms.unwrap_or(i64::MAX);
        let ordered: HashMap<&str, bool> = by_stream
            .iter()
            .map(|(s, own)| {
                (
                    *s,
                    own.windows(2).all(|w| end(w[0]) <= segs[w[1]].s.start_ms),
                )
            })
            .collect();
        let needs: Vec<Vec<usize>> = clips
            .iter()
            .map(|c| {
                let Some(own) = by_stream.get(c.stream.as_str()) else {
                    return Vec::new();
                };
                if !ordered.get(c.stream.as_str()).copied().unwrap_or(false) {
                    let hit = |&&i: &&usize| segs[i].s.start_ms <= c.to_ms && end(i) >= c.from_ms;
                    return own.iter().filter(hit).copied().collect();
                }
                let from = own.partition_point(|&i| end(i) < c.from_ms);
                let to = own.partition_point(|&i| segs[i].s.start_ms <= c.to_ms);
                own[from..to.max(from)].to_vec()
            })
            .collect();
        for &i in needs.iter().flatten() {
            segs[i].needed_by += 1;
        }
        let mut usage: HashMap<&str, u64> = HashMap::new();
        for g in &segs {
            *usage.entry(g.stream).or_default() += g.s.bytes;
        }
        for c in clips {
            *usage.entry(c.stream.as_str()).or_default() += c.bytes;
        }
        let total = other + usage.values().sum::<u64>();
        Pass {
            segs,
            clips,
            needs,
            alive: vec![true; clips.len()],
            trimmed: vec![false; clips.len()],
            usage,
            total,
            out: Plan::default(),
        }
    }

    fn forget(&mut self, stream: &str, bytes: u64) {
        self.total = self.total.saturating_sub(bytes);
        if let Some(u) = self.usage.get_mut(stream) {
            *u = u.saturating_sub(bytes);
        }
    }

    fn drop_segment(&mut self, i: usize) {
        let g = &mut self.segs[i];
        g.gone = true;
        let (stream, s) = (g.stream, g.s);
        self.forget(stream, s.bytes);
        self.out.segments.push((stream.to_string(), s.clone()));
    }

    /// Expires a clip whole; returns the segments nothing needs any more.
    fn expire(&mut self, c: usize) -> Vec<usize> {
        self.alive[c] = false;
        let clip = &self.clips[c];
        self.out.expire.push(clip.id.clone());
        self.forget(&clip.stream, clip.bytes);
        let mut freed = Vec::new();
        for &i in &self.needs[c] {
            self.segs[i].needed_by -= 1;
            if self.segs[i].free() {
                freed.push(i);
            }
        }
        freed
    }

    /// Deletes the oldest closed segment of a stream's newest clip; false
    /// when there is none.
    fn trim(&mut self, stream: &str, own: &[usize]) -> bool {
        let oldest = (0..self.segs.len()).find(|&i| {
            let g = &self.segs[i];
            !g.gone && g.stream == stream && g.s.end_ms.is_some()
        });
        let Some(i) = oldest else {
            return false;
        };
        self.drop_segment(i);
        for &c in own {
            if self.needs[c].contains(&i) && !self.trimmed[c] {
                self.trimmed[c] = true;
                self.out.trimmed.push(self.clips[c].id.clone());
                self.forget(stream, self.clips[c].mp4_bytes);
            }
        }
        true
    }

    /// The busiest camera that still has something to give.
    fn busiest(&self, exhausted: &[&str]) -> Option<&'a str> {
        self.usage
            .iter()
            .filter(|(s, _)| !exhausted.contains(s))
            .max_by_key(|(s, u)| (**u, Reverse(**s)))
            .map(|(s, _)| *s)
    }
}

/// Plans one pass over `segments` (every stream's, the open ones too, which
/// are never deleted) and `clips` (kept, not expired), with `other_bytes`
/// on disk that nothing here can delete (transient files), for `max_bytes`
/// in all and segments ending before `cutoff_ms` being too old.
pub fn plan(
    segments: &[(String, Segment)],
    clips: &[ClipUse],
    other_bytes: u64,
    max_bytes: u64,
    cutoff_ms: i64,
) -> Plan {
    let mut p = Pass::new(segments, clips, other_bytes);
    // 1. Too old and needed by nothing.
    for i in 0..p.segs.len() {
        if p.segs[i].free() && p.segs[i].s.end_ms.is_some_and(|e| e < cutoff_ms) {
            p.drop_segment(i);
        }
    }
    // 2. and 3. Over the budget.
    let mut unneeded: BinaryHeap<Reverse<usize>> = (0..p.segs.len())
        .filter(|&i| p.segs[i].free())
        .map(Reverse)
        .collect();
    let mut exhausted: Vec<&str> = Vec::new();
    while p.total > max_bytes {
        if let Some(Reverse(i)) = unneeded.pop() {
            if p.segs[i].free() {
                p.drop_segment(i);
            }
            continue;
        }
        let Some(stream) = p.busiest(&exhausted) else {
            break;
        };
        let mut own: Vec<usize> = (0..clips.len())
            .filter(|&c| p.alive[c] && clips[c].stream == stream)
            .collect();
        own.sort_by_key(|&c| (clips[c].from_ms, c));
        // The oldest ended clip that is not the camera's newest.
        let newest = own.last().copied();
        let victim = own
            .iter()
            .copied()
            .find(|&c| !clips[c].open && Some(c) != newest);
        if let Some(c) = victim {
            unneeded.extend(p.expire(c).into_iter().map(Reverse));
        } else if !p.trim(stream, &own) {
            exhausted.push(stream);
        }
    }
    p.out.total_after = p.total;
    p.out
}

/// How long the budget holds at the bitrate measured on disk.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Estimate {
    pub max_bytes: u64,
    pub used_bytes: u64,
    /// Video of every recorded stream plus the snapshots' share; `None`
    /// until 10 s of some stream are on disk.
    pub bytes_per_hour: Option<f64>,
    pub holds_hours: Option<f64>,
    pub clip_days: f64,
    /// Said when the budget cannot hold `clip_days` of recording.
    pub warning: Option<String>,
}

/// Least recorded time a stream's bitrate is measured over.
const MEASURE_MS: i64 = 10_000;

/// The estimate for `segments` on disk (closed ones measure the bitrate)
/// and `evidence_bytes` of snapshots and MP4s beside them.
pub fn estimate(
    segments: &[(String, Segment)],
    evidence_bytes: u64,
    max_bytes: u64,
    clip_keep: std::time::Duration,
) -> Estimate {
    let mut per: HashMap<&str, (u64, i64)> = HashMap::new();
    for (stream, s) in segments {
        if let Some(end) = s.end_ms.filter(|e| *e > s.start_ms) {
            let e = per.entry(stream).or_default();
            e.0 += s.bytes;
            e.1 += end - s.start_ms;
        }
    }
    let video: f64 = per
        .values()
        .filter(|(_, ms)| *ms >= MEASURE_MS)
        .map(|(b, ms)| *b as f64 / *ms as f64 * 3_600_000.0)
        .sum();
    let seg_bytes: u64 = segments.iter().map(|(_, s)| s.bytes).sum();
    let share = if seg_bytes > 0 {
        evidence_bytes as f64 / seg_bytes as f64
    } else {
        0.0
    };
    let bytes_per_hour = (video > 0.0).then_some(video * (1.0 + share));
    let holds_hours = bytes_per_hour.map(|r| max_bytes as f64 / r);
    let clip_days = clip_keep.as_secs_f64() / 86_400.0;
    let warning = holds_hours.filter(|h| *h < clip_days * 24.0).map(|h| {
        format!(
            "at the measured {:.0} MB/h the {:.2} GB budget ([recording] max_gb) holds about {h:.1} hours, \
             less than clip_days = {clip_days} ({:.0} h): older clips will expire before then; \
             raise max_gb or lower clip_days",
            bytes_per_hour.unwrap_or(0.0) / 1e6,
            max_bytes as f64 / 1e9,
            clip_days * 24.0
        )
    });
    Estimate {
        max_bytes,
        used_bytes: seg_bytes + evidence_bytes,
        bytes_per_hour,
        holds_hours,
        clip_days,
        warning,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(stream: &str, from: i64, n: i64, bytes: u64) -> Vec<(String, Segment)> {
        (0..n)
            .map(|i| {
                let s = Segment {
                    start_ms: from + i * 1000,
                    end_ms: Some(from + i * 1000 + 1000),
                    bytes,
                };
                (stream.to_string(), s)
            })
            .collect()
    }

    fn clip(id: &str, stream: &str, from: i64, to: i64, bytes: u64) -> ClipUse {
        ClipUse {
            id: id.into(),
            stream: stream.into(),
            from_ms: from,
            to_ms: to,
            bytes,
            mp4_bytes: 0,
            open: false,
        }
    }

    fn starts(p: &Plan, stream: &str) -> Vec<i64> {
        p.segments
            .iter()
            .filter(|(s, _)| s == stream)
            .map(|(_, s)| s.start_ms / 1000)
            .collect()
    }

    #[test]
    fn unneeded_footage_goes_before_any_evidence() {
        let all = segs("a", 0, 10, 100);
        let clips = [clip("c1", "a", 2_100, 2_500, 50)];
        // 1,050 bytes for 800: three unneeded segments go, oldest first.
        let p = plan(&all, &clips, 0, 800, i64::MIN);
        assert_eq!(starts(&p, "a"), [0, 1, 3]);
        assert!(p.expire.is_empty());
        assert_eq!(p.total_after, 750);
    }

    #[test]
    fn overlapping_segment_names_after_a_step_back_keep_what_a_clip_needs() {
        // Ten segments, then the wall clock stepped back 5 s: five more
        // named over the end of the first ten. A clip in the second run.
        let mut all = segs("a", 0, 10, 100);
        all.extend(segs("a", 5_000, 5, 100));
        let clips = [clip("c", "a", 6_100, 6_500, 0)];
        let p = plan(&all, &clips, 0, 200, i64::MIN);
        let kept: Vec<i64> = all
            .iter()
            .map(|(_, s)| s.start_ms)
            .filter(|t| !p.segments.iter().any(|(_, d)| d.start_ms == *t))
            .collect();
        assert!(
            kept.contains(&6_000),
            "both segments named 6 s stay: {kept:?}"
        );
        let deleted_6s = p
            .segments
            .iter()
            .filter(|(_, d)| d.start_ms == 6_000)
            .count();
        assert_eq!(deleted_6s, 0, "{:?}", p.segments);
    }

    #[test]
    fn kept_clips_give_way_oldest_first_when_they_alone_are_too_many() {
        // Every segment belongs to a clip: three clips, 300 bytes each with
        // their 50-byte snapshots, for a budget of 400.
        let all = segs("a", 0, 6, 100);
        let clips = [
            clip("old", "a", 100, 1_500, 50),
            clip("mid", "a", 2_100, 3_500, 50),
            clip("new", "a", 4_100, 5_500, 50),
        ];
        let p = plan(&all, &clips, 0, 400, i64::MIN);
        assert_eq!(p.expire, ["old", "mid"]);
        // The segments they needed follow until the total fits.
        assert_eq!(starts(&p, "a"), [0, 1, 2]);
        assert_eq!(p.total_after, 350);
    }

    #[test]
    fn the_busiest_camera_gives_way_first() {
        // "busy" uses 1,000 bytes in ten clips, "quiet" 200 in two.
        let mut all = segs("busy", 0, 10, 80);
        all.extend(segs("quiet", 0, 2, 80));
        let mut clips: Vec<ClipUse> = (0..10)
            .map(|i| clip(&format!("b{i}"), "busy", i * 1000 + 100, i * 1000 + 500, 20))
            .collect();
        clips.push(clip("q0", "quiet", 100, 500, 20));
        clips.push(clip("q1", "quiet", 1_100, 1_500, 20));
        let p = plan(&all, &clips, 0, 800, i64::MIN);
        assert!(p.total_after <= 800);
        assert!(
            p.expire.iter().all(|c| c.starts_with('b')),
            "the quiet camera keeps its evidence: {:?}",
            p.expire
        );
        assert_eq!(p.expire.len(), 4);
    }

    #[test]
    fn an_occurrence_that_never_ends_loses_its_oldest_footage_only() {
        // One open clip over everything, an open segment being written.
        let mut all = segs("a", 0, 10, 100);
        all.push((
            "a".into(),
            Segment {
                start_ms: 10_000,
                end_ms: None,
                bytes: 60,
            },
        ));
        let clips = [
            ClipUse {
                open: true,
                ..clip("open", "a", 0, 10_500, 40)
            },
            // Ended clips inside it: the older gives way first; the newest
            // and the open one (the oldest by its start) never do.
            clip("ended", "a", 3_100, 3_500, 100),
            clip("newest", "a", 6_100, 6_500, 100),
        ];
        let p = plan(&all, &clips, 0, 500, i64::MIN);
        assert_eq!(p.expire, ["ended"], "the running occurrence never expires");
        assert_eq!(starts(&p, "a"), [0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(p.trimmed, ["open", "newest"]);
        assert_eq!(p.total_after, 500);
    }

    #[test]
    fn age_deletes_only_what_no_clip_needs() {
        let all = segs("a", 0, 6, 100);
        let clips = [clip("c", "a", 1_100, 1_500, 0)];
        let p = plan(&all, &clips, 0, u64::MAX, 4_000);
        assert_eq!(starts(&p, "a"), [0, 2]);
    }

    #[test]
    fn the_estimate_warns_when_the_budget_cannot_hold_clip_days() {
        // Two minutes at 1 MB/s on one stream, 10% snapshots on top.
        let all = segs("a", 0, 120, 1_000_000);
        let day = std::time::Duration::from_secs(86_400);
        let e = estimate(&all, 12_000_000, 36_000_000_000, day);
        let rate = e.bytes_per_hour.expect("measured");
        assert!((rate - 3.96e9).abs() < 1e6, "{rate}");
        let h = e.holds_hours.expect("hours");
        assert!((h - 9.09).abs() < 0.01, "{h}");
        assert!(e
            .warning
            .as_deref()
            .is_some_and(|w| w.contains("clip_days = 1")));
        let big = estimate(&all, 0, 200_000_000_000, day);
        assert_eq!(big.warning, None, "{big:?}");
        // Under 10 s recorded: nothing measured, nothing claimed.
        let short = estimate(&segs("a", 0, 5, 1_000_000), 0, 1, day);
        assert_eq!((short.bytes_per_hour, short.warning), (None, None));
    }

    #[test]
    fn nothing_left_to_give_stops_the_pass() {
        let all = vec![(
            "a".to_string(),
            Segment {
                start_ms: 0,
                end_ms: None,
                bytes: 1_000,
            },
        )];
        let p = plan(&all, &[clip("c", "a", 0, 1, 10)], 5, 100, i64::MIN);
        assert!(p.segments.is_empty() && p.expire.is_empty());
        assert_eq!(p.total_after, 1_015);
    }
}
