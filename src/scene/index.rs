//! Scene indexes: what each running index saw, summarised per batch of
//! frames (`batch.time` stream seconds). Pure: scored frames in, records out;
//! the caller stores and publishes them.
//!
//! A frame scored by several models arrives once per model, with the same
//! stream time: it counts as one frame, and a batch is closed only when a
//! later frame arrives, so every model's view of its last frame is in it
//! (the record comes one sampled frame after the batch's end).
//!
//! A label's count is how many distinct tracked objects showed it in the
//! batch (a person standing in view for the whole batch is one person, and
//! two who walked through one after the other are two); boxes without a
//! track (low scores, free-text matches) count as the most seen in one frame.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::alert::payload::iso8601;
use crate::domain::{Detection, Scores, StreamId};
use crate::store::{Batch, LabelSummary, SceneRecord};

/// A running index as the aggregator needs it.
#[derive(Debug, Clone)]
pub struct ActiveIndex {
    pub id: String,
    pub stream: StreamId,
    pub batch: Batch,
    /// Lowest detection score that is counted.
    pub min_score: f32,
    /// WebSocket connection that receives the records.
    pub ws_connection: Option<String>,
}

#[derive(Default)]
struct Acc {
    start: Option<f64>,
    end: f64,
    /// Distinct frames (stream times) seen, and the wall time of the last.
    frames: u32,
    wall: Option<std::time::SystemTime>,
    /// Per label: the most boxes in one frame, and the best score.
    labels: BTreeMap<String, (u32, f32)>,
    /// Per label: the track ids seen.
    tracked: BTreeMap<String, BTreeSet<u64>>,
}

impl Acc {
    /// Whether the batch is whole: its time span or frame count reached.
    fn complete(&self, batch: &Batch) -> bool {
        let span = self.start.map_or(0.0, |s| self.end - s);
        self.frames > 0
            && (span >= batch.time || (batch.frame_count > 0 && self.frames >= batch.frame_count))
    }
}

/// Aggregates scored frames into scene records.
#[derive(Default)]
pub struct Indexer {
    by_stream: HashMap<StreamId, Vec<ActiveIndex>>,
    acc: HashMap<String, Acc>,
}

impl Indexer {
    /// Replaces the set of running indexes; batches of removed ones are dropped.
    pub fn set(&mut self, indexes: Vec<ActiveIndex>) {
        self.by_stream.clear();
        for i in indexes {
            self.by_stream.entry(i.stream.clone()).or_default().push(i);
        }
        let live: Vec<String> = self
            .by_stream
            .values()
            .flatten()
            .map(|i| i.id.clone())
            .collect();
        self.acc.retain(|id, _| live.contains(id));
    }

    /// Feeds one scored frame and what was seen in it (a detector's
    /// detections, or the free-text events that matched), with the track of
    /// each (`tracks[i]` for `seen[i]`; missing or `None`: untracked);
    /// returns the records of batches it completed, each with the index's
    /// WebSocket connection.
    pub fn observe(
        &mut self,
        s: &Scores,
        seen: &[Detection],
        tracks: &[Option<u64>],
    ) -> Vec<(SceneRecord, Option<String>)> {
        let Some(indexes) = self.by_stream.get(&s.stream_id) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for ix in indexes {
            let acc = self.acc.entry(ix.id.clone()).or_default();
            // A model's scores of a frame already counted (or, across
            // models, of an earlier one) join the batch without counting.
            let new_frame = acc.frames == 0 || s.stream_secs > acc.end;
            if new_frame && acc.complete(&ix.batch) {
                let done = std::mem::take(acc);
                out.push((record(ix, done), ix.ws_connection.clone()));
            }
            acc.start.get_or_insert(s.stream_secs);
            if new_frame {
                acc.frames += 1;
                acc.end = s.stream_secs;
                acc.wall = Some(s.wall);
            }
            let mut counts: BTreeMap<&str, (u32, f32)> = BTreeMap::new();
            for (i, d) in seen
                .iter()
                .enumerate()
                .filter(|(_, d)| d.score >= ix.min_score)
            {
                let e = counts.entry(&d.label).or_insert((0, 0.0));
                e.0 += 1;
                e.1 = e.1.max(d.score);
                if let Some(id) = tracks.get(i).copied().flatten() {
                    acc.tracked
                        .entry(d.label.to_string())
                        .or_default()
                        .insert(id);
                }
            }
            for (label, (n, best)) in counts {
                let e = acc.labels.entry(label.to_string()).or_insert((0, 0.0));
                e.0 = e.0.max(n);
                e.1 = e.1.max(best);
            }
        }
        out
    }
}

fn record(ix: &ActiveIndex, acc: Acc) -> SceneRecord {
    let tracked = acc.tracked;
    let labels: Vec<LabelSummary> = acc
        .labels
        .into_iter()
        .map(|(label, (most, best))| LabelSummary {
            count: tracked.get(&label).map_or(most, |ids| ids.len() as u32),
            label,
            best_score: (best as f64 * 1000.0).round() / 1000.0,
        })
        .collect();
    let description = if labels.is_empty() {
        "nothing detected".to_string()
    } else {
        labels
            .iter()
            .map(|l| format!("{} {} (best {:.2})", l.count, l.label, l.best_score))
            .collect::<Vec<_>>()
            .join(", ")
    };
    SceneRecord {
        rtstream_index_id: ix.id.clone(),
        rtstream_id: ix.stream.to_string(),
        start: acc.start.unwrap_or(acc.end),
        end: acc.end,
        timestamp: iso8601(acc.wall.unwrap_or(std::time::SystemTime::UNIX_EPOCH)),
        frames: acc.frames,
        labels,
        description,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Instant, SystemTime};

    use super::*;

    fn scores(stream: &str, t: f64, people: usize) -> Scores {
        Scores {
            stream_id: StreamId::new(stream),
            seq: 0,
            wall: SystemTime::now(),
            arrived: Instant::now(),
            stream_secs: t,
            model: 0,
            detections: (0..people)
                .map(|i| Detection {
                    label: Arc::from("person"),
                    score: 0.6 + i as f32 * 0.1,
                    bbox: [0.0, 0.0, 0.5, 0.5],
                })
                .collect(),
            embedding: None,
            queued: Default::default(),
            inference: Default::default(),
            repeated: false,
            picture: None,
        }
    }

    fn feed(ix: &mut Indexer, s: Scores) -> Vec<(SceneRecord, Option<String>)> {
        ix.observe(&s, &s.detections, &[])
    }

    fn index() -> ActiveIndex {
        ActiveIndex {
            id: "i1".into(),
            stream: StreamId::new("s1"),
            batch: Batch {
                time: 10.0,
                frame_count: 0,
            },
            min_score: 0.5,
            ws_connection: None,
        }
    }

    #[test]
    fn tracked_objects_count_once_per_batch() {
        let mut ix = Indexer::default();
        ix.set(vec![index()]);
        // One person standing for 9 s (track 7), then two who walked past
        // one after the other (tracks 8 and 9), one frame each.
        for i in 0..18 {
            assert!(ix
                .observe(
                    &scores("s1", i as f64 * 0.5, 1),
                    &scores("s1", 0.0, 1).detections,
                    &[Some(7)]
                )
                .is_empty());
        }
        ix.observe(
            &scores("s1", 9.0, 1),
            &scores("s1", 0.0, 1).detections,
            &[Some(8)],
        );
        ix.observe(
            &scores("s1", 9.5, 1),
            &scores("s1", 0.0, 1).detections,
            &[Some(9)],
        );
        assert!(ix.observe(&scores("s1", 10.0, 0), &[], &[]).is_empty());
        let r = ix.observe(&scores("s1", 10.5, 0), &[], &[]);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].0.frames, 21);
        assert_eq!(r[0].0.labels[0].count, 3, "three people, not 20 boxes");
    }

    #[test]
    fn frames_are_summarised_per_batch_and_per_stream() {
        let mut ix = Indexer::default();
        ix.set(vec![ActiveIndex {
            id: "i1".into(),
            stream: StreamId::new("s1"),
            batch: Batch {
                time: 1.0,
                frame_count: 0,
            },
            min_score: 0.5,
            ws_connection: None,
        }]);
        assert!(feed(&mut ix, scores("s1", 0.0, 1)).is_empty());
        assert!(
            feed(&mut ix, scores("s2", 0.5, 3)).is_empty(),
            "other stream"
        );
        assert!(feed(&mut ix, scores("s1", 0.5, 2)).is_empty());
        assert!(
            feed(&mut ix, scores("s1", 1.0, 0)).is_empty(),
            "closed by the next frame"
        );
        let r: Vec<SceneRecord> = feed(&mut ix, scores("s1", 1.5, 0))
            .into_iter()
            .map(|r| r.0)
            .collect();
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].start, r[0].end, r[0].frames), (0.0, 1.0, 3));
        assert_eq!(r[0].labels.len(), 1);
        assert_eq!(r[0].labels[0].count, 2, "most seen in one frame");
        assert_eq!(r[0].labels[0].best_score, 0.7);
        assert_eq!(r[0].description, "2 person (best 0.70)");
        ix.set(Vec::new());
        assert!(
            feed(&mut ix, scores("s1", 5.0, 1)).is_empty(),
            "index removed"
        );
    }

    #[test]
    fn a_frame_scored_by_two_models_is_one_frame_of_one_record() {
        let mut ix = Indexer::default();
        ix.set(vec![ActiveIndex {
            batch: Batch {
                time: 10.0,
                frame_count: 1,
            },
            ..index()
        }]);
        let cup = |t: f64| {
            let mut s = scores("s1", t, 0);
            s.model = 1;
            s.detections = vec![Detection {
                label: Arc::from("cup"),
                score: 0.62,
                bbox: [0.0, 0.0, 0.2, 0.2],
            }];
            s
        };
        // The person detector sees nobody, the 80-class one a cup, in the
        // same frame: one record naming the cup, not two that disagree.
        assert!(feed(&mut ix, scores("s1", 0.0, 0)).is_empty());
        assert!(feed(&mut ix, cup(0.0)).is_empty());
        let r = feed(&mut ix, scores("s1", 0.5, 0));
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!((r[0].0.start, r[0].0.end, r[0].0.frames), (0.0, 0.0, 1));
        assert_eq!(r[0].0.description, "1 cup (best 0.62)");
    }
}
