//! Frame embeddings of dual-encoder models, kept per stream for a bounded
//! time so an operator can search what a camera saw and backtest a rule
//! before enabling it.
//!
//! Each embedding is stored as 8-bit integers with one scale per frame
//! (512 bytes for a 512-value CLIP embedding instead of 2 KiB); similarities
//! computed from them differ from full precision by well under 0.01. The
//! store lives in memory for speed and is written to SQLite in batches
//! (`store.rs`), from which it is reloaded at start. Search and backtest are
//! pure functions over a stream's frames.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::domain::{FrameEmbedding, MatchParams};
use crate::matcher::text::{softmax_first, TextRule};
use crate::matcher::{Baseline, Tracker, Transition};

/// How many time constants of stored frames a new baseline is built from.
const BASELINE_SPAN: f64 = 5.0;

/// Every stream's recent frames.
#[derive(Debug)]
pub struct Embeddings {
    streams: Mutex<HashMap<String, VecDeque<FrameEmbedding>>>,
    keep_ms: i64,
}

impl Embeddings {
    /// A store keeping `hours` of frames per stream.
    pub fn new(hours: f64) -> Embeddings {
        Embeddings {
            streams: Mutex::new(HashMap::new()),
            keep_ms: (hours * 3_600_000.0) as i64,
        }
    }

    /// Whether anything is kept at all.
    pub fn enabled(&self) -> bool {
        self.keep_ms > 0
    }

    /// Oldest wall time still kept, given the newest.
    pub fn cutoff(&self, newest_ms: i64) -> i64 {
        newest_ms - self.keep_ms
    }

    /// Adds a frame (frames of a stream arrive in time order) and drops
    /// what has aged out of that stream.
    pub fn push(&self, stream: &str, e: FrameEmbedding) {
        if !self.enabled() {
            return;
        }
        let cutoff = self.cutoff(e.wall_ms);
        let mut map = self.lock();
        let q = map.entry(stream.to_string()).or_default();
        q.push_back(e);
        while q.front().is_some_and(|f| f.wall_ms < cutoff) {
            q.pop_front();
        }
    }

    /// Forgets a stream (it was deleted).
    pub fn remove(&self, stream: &str) {
        self.lock().remove(stream);
    }

    /// Number of frames kept for a stream.
    pub fn len(&self, stream: &str) -> usize {
        self.lock().get(stream).map_or(0, VecDeque::len)
    }

    /// Runs `f` over a stream's frames (oldest first) within `[from, to]`
    /// Unix milliseconds. The lock is held only to copy the list (the
    /// embeddings themselves are shared), so the matcher is not held up.
    pub fn with<R>(
        &self,
        stream: &str,
        from: i64,
        to: i64,
        f: impl FnOnce(&[&FrameEmbedding]) -> R,
    ) -> R {
        let frames: Vec<FrameEmbedding> = {
            let map = self.lock();
            map.get(stream)
                .map(|q| {
                    let first = q.partition_point(|e| e.wall_ms < from);
                    q.range(first..)
                        .take_while(|e| e.wall_ms <= to)
                        .cloned()
                        .collect()
                })
                .unwrap_or_default()
        };
        let refs: Vec<&FrameEmbedding> = frames.iter().collect();
        f(&refs)
    }

    /// The baseline `rule` starts from on `stream` at the frame of wall time
    /// `now_ms` and stream time `now_t`: its usual level over the frames
    /// stored before that one, as if it had been judging them all along.
    /// Frames older than five time constants (under 1 % of the weight) are
    /// skipped. With nothing stored it starts empty, from the frame itself.
    pub fn baseline(&self, stream: &str, rule: &TextRule, now_ms: i64, now_t: f64) -> Baseline {
        let from = now_ms.saturating_sub((BASELINE_SPAN * rule.baseline_secs * 1000.0) as i64);
        self.with(stream, from, now_ms.saturating_sub(1), |frames| {
            let mut b = Baseline::default();
            for e in frames {
                let t = now_t - (now_ms - e.wall_ms) as f64 / 1000.0;
                b.follow(e.dot(&rule.vectors[0]), t, rule.baseline_secs);
            }
            b
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, VecDeque<FrameEmbedding>>> {
        self.streams.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A time range where a query matched.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Hit {
    /// Unix seconds.
    pub start: f64,
    pub end: f64,
    /// Stream seconds (as in alerts' `start_time`/`end_time`).
    pub stream_start: f64,
    pub stream_end: f64,
    /// Best calibrated score in the range.
    pub score: f32,
    pub frames: usize,
}

fn quantise_all(vectors: &[Arc<[f32]>]) -> Vec<FrameEmbedding> {
    vectors
        .iter()
        .map(|v| FrameEmbedding::new(0, 0.0, v))
        .collect()
}

fn similarities(frame: &FrameEmbedding, texts: &[FrameEmbedding], out: &mut [f32]) {
    for (s, t) in out.iter_mut().zip(texts) {
        *s = frame.dot_quantised(t);
    }
}

/// Largest gap between frames of one range: a few sampling intervals.
fn gap_ms(frames: &[&FrameEmbedding]) -> i64 {
    let mut steps: Vec<i64> = frames
        .windows(2)
        .take(1000)
        .map(|w| w[1].wall_ms - w[0].wall_ms)
        .collect();
    steps.sort_unstable();
    let median = steps.get(steps.len() / 2).copied().unwrap_or(1000);
    (median * 5 / 2).max(1000)
}

/// Ranges of frames whose calibrated score for the query (softmax of the
/// first vector against the others) is at least `threshold`, best first.
pub fn search(
    frames: &[&FrameEmbedding],
    vectors: &[Arc<[f32]>],
    scale: f32,
    threshold: f32,
) -> Vec<Hit> {
    let gap = gap_ms(frames);
    let mut hits: Vec<Hit> = Vec::new();
    let mut last_ms = i64::MIN;
    let texts = quantise_all(vectors);
    let mut sims = vec![0.0f32; vectors.len()];
    for e in frames {
        similarities(e, &texts, &mut sims);
        let (score, _) = softmax_first(&sims, scale);
        if score < threshold {
            continue;
        }
        let secs = e.wall_ms as f64 / 1000.0;
        match hits.last_mut() {
            Some(h) if e.wall_ms - last_ms <= gap => {
                h.end = secs;
                h.stream_end = e.t;
                h.score = h.score.max(score);
                h.frames += 1;
            }
            _ => hits.push(Hit {
                start: secs,
                end: secs,
                stream_start: e.t,
                stream_end: e.t,
                score,
                frames: 1,
            }),
        }
        last_ms = e.wall_ms;
    }
    hits.sort_by(|a, b| b.score.total_cmp(&a.score));
    hits
}

/// An occurrence a rule would have produced.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Replayed {
    /// Unix seconds.
    pub start: f64,
    pub end: f64,
    pub start_time: f64,
    pub end_time: f64,
    pub confidence: f32,
    /// Still open at the last stored frame.
    pub open: bool,
}

/// Replays a text rule over stored frames with the event's matching
/// settings, as the matcher would have run it live: from `baseline` (what
/// the frames before these give, [`Embeddings::baseline`] on the wall clock
/// in seconds), k-of-n start, end after misses, cooldown.
pub fn backtest(
    frames: &[&FrameEmbedding],
    rule: &TextRule,
    matching: MatchParams,
    mut baseline: Baseline,
) -> Vec<Replayed> {
    let mut tracker = Tracker::new(matching);
    let mut out: Vec<Replayed> = Vec::new();
    // Times fed to the tracker are wall seconds (stream time restarts with
    // the daemon); map them back to stream time for the report.
    let stream_time = |secs: f64| {
        let ms = (secs * 1000.0).round() as i64;
        let i = frames.partition_point(|e| e.wall_ms < ms);
        frames.get(i).map_or(0.0, |e| e.t)
    };
    let texts = quantise_all(&rule.vectors);
    let mut sims = vec![0.0f32; texts.len()];
    for e in frames {
        similarities(e, &texts, &mut sims);
        let secs = e.wall_ms as f64 / 1000.0;
        let verdict = rule.evaluate_similarities(&sims, secs, &mut baseline);
        let best = verdict.confidence;
        match tracker.observe(secs, verdict.matched, best, usize::from(verdict.matched)) {
            Some(Transition::Start { start, .. }) => out.push(Replayed {
                start,
                end: secs,
                start_time: stream_time(start),
                end_time: e.t,
                confidence: best,
                open: true,
            }),
            Some(Transition::End { end, best, .. }) => {
                if let Some(o) = out.last_mut() {
                    o.end = end;
                    o.end_time = stream_time(end);
                    o.confidence = best;
                    o.open = false;
                }
            }
            None => {
                if let Some(o) = out.last_mut().filter(|o| o.open && verdict.matched) {
                    o.end = secs;
                    o.end_time = e.t;
                    o.confidence = o.confidence.max(best);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: &[f32]) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    }

    #[test]
    fn quantised_dot_products_stay_close() {
        let a = unit(
            &(0..512)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
                .collect::<Vec<_>>(),
        );
        let b = unit(
            &(0..512)
                .map(|i| ((i * 53 % 97) as f32 - 48.0) / 5.0)
                .collect::<Vec<_>>(),
        );
        let exact: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        let e = FrameEmbedding::new(0, 0.0, &a);
        assert!((e.dot(&b) - exact).abs() < 0.01, "{} vs {exact}", e.dot(&b));
        assert!((e.dot(&a) - 1.0).abs() < 0.01);
        let both = e.dot_quantised(&FrameEmbedding::new(0, 0.0, &b));
        assert!((both - exact).abs() < 0.01, "{both} vs {exact}");
    }

    #[test]
    fn frames_age_out_per_stream() {
        let s = Embeddings::new(1.0);
        for i in 0..10 {
            s.push("a", FrameEmbedding::new(i * 600_000, i as f64, &[1.0, 0.0]));
        }
        // 90 min is the newest: an hour keeps 30..90 min.
        assert_eq!(s.len("a"), 7);
        assert_eq!(s.with("a", 0, i64::MAX, |f| f[0].wall_ms), 1_800_000);
        let off = Embeddings::new(0.0);
        off.push("a", FrameEmbedding::new(0, 0.0, &[1.0]));
        assert_eq!(off.len("a"), 0);
    }

    /// Feeds `frames` red frames from wall second 600 (stream time 0 to
    /// this matcher) after 600 s of stored blue ones; returns the starts.
    fn red_after_stored_blue(with_history: bool) -> usize {
        use crate::domain::{EventId, Scores, StreamId};
        use crate::matcher::{CompiledEvent, Matcher, Phase, Rule};
        use std::time::{Duration, Instant, SystemTime};

        let (blue, red) = (unit(&[0.2, 1.0]), unit(&[1.0, 0.3]));
        let store = Arc::new(Embeddings::new(24.0));
        for i in 0..600 {
            store.push("cam", FrameEmbedding::new(i * 1000, i as f64, &blue));
        }
        let rule = TextRule {
            texts: vec!["red".into(), "blue".into()],
            vectors: vec![unit(&[1.0, 0.0]).into(), unit(&[0.0, 1.0]).into()],
            scale: 100.0,
            min_confidence: 0.5,
            min_lift: 2.0,
            baseline_secs: 600.0,
            truncated: false,
        };
        let ev = Arc::new(CompiledEvent {
            id: EventId::new("red"),
            prompt: "red".into(),
            label: "red".into(),
            rule: Rule::Text(rule),
            matching: MatchParams::default(),
            objects: None,
            model: 0,
            model_name: "clip".into(),
            scope: Default::default(),
        });
        let mut m = Matcher::new(vec![ev]);
        if with_history {
            let kept = Arc::clone(&store);
            m = m.with_baselines(Box::new(move |stream, rule, s| {
                let ms = s
                    .wall
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64);
                kept.baseline(stream.as_str(), rule, ms, s.stream_secs)
            }));
        }
        let mut starts = 0;
        for i in 0..10 {
            let ms = 600_000 + i * 500;
            // As the daemon does: the frame is stored before it is judged.
            store.push("cam", FrameEmbedding::new(ms, i as f64 * 0.5, &red));
            let s = Scores {
                stream_id: StreamId::new("cam"),
                seq: i as u64,
                wall: SystemTime::UNIX_EPOCH + Duration::from_millis(ms as u64),
                arrived: Instant::now(),
                stream_secs: i as f64 * 0.5,
                detections: Vec::new(),
                embedding: Some(red.clone().into()),
                model: 0,
                queued: Duration::ZERO,
                inference: Duration::ZERO,
                repeated: false,
                picture: None,
            };
            starts += m
                .observe(&s)
                .iter()
                .filter(|o| o.phase == Phase::Start)
                .count();
        }
        starts
    }

    #[test]
    fn a_new_rule_compares_what_is_in_view_with_what_the_stream_usually_shows() {
        // Red was already in view when the rule began: measured against the
        // stored blue hour it is new; measured against its own first frame
        // it would be the norm and never fire.
        assert_eq!(red_after_stored_blue(true), 1);
        assert_eq!(red_after_stored_blue(false), 0);
    }

    #[test]
    fn a_baseline_is_built_only_from_frames_before_the_one_judged() {
        let s = Embeddings::new(24.0);
        let rule = |tau| TextRule {
            texts: vec!["x".into()],
            vectors: vec![unit(&[1.0, 0.0]).into()],
            scale: 100.0,
            min_confidence: 0.5,
            min_lift: 2.0,
            baseline_secs: tau,
            truncated: false,
        };
        assert_eq!(s.baseline("cam", &rule(600.0), 10_000, 0.0).mean(), None);
        for i in 0..10 {
            s.push(
                "cam",
                FrameEmbedding::new(i * 1000, i as f64, &unit(&[0.0, 1.0])),
            );
        }
        s.push("cam", FrameEmbedding::new(10_000, 10.0, &unit(&[1.0, 0.0])));
        let m = s.baseline("cam", &rule(600.0), 10_000, 0.0).mean().unwrap();
        assert!(
            m.abs() < 0.01,
            "the frame being judged is not its own baseline: {m}"
        );
        // Five time constants back at most: with tau = 1 s the red frame
        // 6 s back is not read (it would leave e^-2 = 0.14 of itself).
        s.push("cam", FrameEmbedding::new(24_000, 24.0, &unit(&[1.0, 0.0])));
        s.push("cam", FrameEmbedding::new(26_000, 26.0, &unit(&[0.0, 1.0])));
        let m = s.baseline("cam", &rule(1.0), 30_000, 0.0).mean().unwrap();
        assert!(m.abs() < 0.01, "only the frame 4 s back counts: {m}");
    }

    #[test]
    fn search_merges_neighbouring_frames_into_ranges() {
        let s = Embeddings::new(24.0);
        let (yes, no) = (unit(&[1.0, 0.1]), unit(&[0.1, 1.0]));
        for i in 0..60 {
            let v = if (10..20).contains(&i) || (40..45).contains(&i) {
                &yes
            } else {
                &no
            };
            s.push("a", FrameEmbedding::new(i * 1000, i as f64, v));
        }
        let q: Vec<Arc<[f32]>> = vec![unit(&[1.0, 0.0]).into(), unit(&[0.0, 1.0]).into()];
        let hits = s.with("a", 0, i64::MAX, |f| search(f, &q, 100.0, 0.5));
        assert_eq!(hits.len(), 2, "{hits:?}");
        assert_eq!(
            (hits[0].stream_start, hits[0].stream_end, hits[0].frames),
            (10.0, 19.0, 10)
        );
        assert_eq!((hits[1].stream_start, hits[1].stream_end), (40.0, 44.0));
    }
}
