//! The matcher stage: one thread that owns the [`Matcher`]. Scored frames
//! and control messages in; occurrences out to the delivery stage over a
//! bounded channel (a full channel makes matching wait: occurrences are
//! never dropped), and what each frame showed out to the scene stage (a
//! full channel drops that frame's record input, counted). Nothing here
//! touches the disk or the network.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use crossbeam_channel::{select, Receiver, Sender};

use super::{CompiledEvent, Matcher, Occurrence};
use crate::clock::Clocks;
use crate::domain::{Detection, Picture, Scores, StreamId};
use crate::metrics::Histogram;

/// Messages to the matcher stage.
pub enum MatchControl {
    Events(Vec<Arc<CompiledEvent>>),
    /// The streams with a running scene index.
    Indexed(std::collections::HashSet<StreamId>),
    /// A stream stopped, failed or finished: end its open occurrences.
    CloseStream(StreamId),
}

/// One matched frame, for the scene stage: the frame's scores and what it
/// showed (a detector's boxes, or the free-text events that matched).
pub struct Observed {
    pub scores: Scores,
    pub seen: Vec<Detection>,
    /// The track of each of `seen` (empty for free-text matches).
    pub tracks: Vec<Option<u64>>,
}

/// The stage's inputs and outputs.
pub struct MatchStage {
    pub matcher: Matcher,
    pub scores: Receiver<Scores>,
    pub control: Receiver<MatchControl>,
    pub occurrences: Sender<Occurrence>,
    pub observed: Sender<Observed>,
    /// Receives every scored frame after matching (demo, bench, tests).
    pub scored_hook: Option<Sender<Scores>>,
    pub clocks: Arc<dyn Clocks>,
    /// Frames the scene stage could not take.
    pub observed_dropped: Arc<AtomicU64>,
    /// Per frame, from the end of inference to matched.
    pub match_times: Arc<Histogram>,
    /// Where each stream's newest picture is left for the console.
    pub latest: Arc<LatestPictures>,
}

impl MatchStage {
    /// Runs until the pool closes its end; returns the occurrence messages made.
    pub fn run(self) -> u64 {
        let mut made = 0u64;
        let mut last_time: HashMap<StreamId, f64> = HashMap::new();
        let mut control = self.control.clone();
        let mut matcher = self.matcher;
        loop {
            select! {
                recv(self.scores) -> s => {
                    let Ok(s) = s else { break };
                    last_time.insert(s.stream_id.clone(), s.stream_secs);
                    let occs = matcher.observe(&s);
                    let now = self.clocks.now();
                    let inferred = s.arrived + s.queued + s.inference;
                    let matched = now.saturating_duration_since(inferred);
                    self.match_times.observe(matched);
                    for mut occ in occs {
                        occ.timing.matched = matched;
                        occ.timing.matched_at = Some(now);
                        made += 1;
                        tracing::info!(stream = %occ.stream_id, event = %occ.event_id, phase = ?occ.phase,
                            start = occ.start_time, end = occ.end_time, confidence = occ.confidence, "occurrence");
                        if self.occurrences.send(occ).is_err() {
                            tracing::error!("the delivery stage is gone; occurrence not delivered");
                        }
                    }
                    // A dual encoder names nothing by itself: its index
                    // records the free-text events that matched.
                    let (seen, tracks) = if s.embedding.is_some() {
                        (matcher.text_matches().to_vec(), Vec::new())
                    } else {
                        (s.detections.clone(), matcher.owners().to_vec())
                    };
                    if let Some(p) = &s.picture {
                        self.latest.put(&s.stream_id, Arc::clone(p), s.wall);
                    }
                    // The picture stays with the occurrences that need it: the
                    // scene stage and observers get the scores without it.
                    let s = Scores { picture: None, ..s };
                    if let Some(h) = &self.scored_hook {
                        let _ = h.try_send(s.clone());
                    }
                    if self.observed.try_send(Observed { scores: s, seen, tracks }).is_err() {
                        self.observed_dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                recv(control) -> c => match c {
                    Ok(MatchControl::Events(ev)) => matcher.set_events(ev),
                    Ok(MatchControl::Indexed(s)) => matcher.set_indexed(s),
                    Ok(MatchControl::CloseStream(id)) => {
                        // A stream that went away cannot show the end of what it saw.
                        let t = last_time.get(&id).copied().unwrap_or(0.0);
                        let (wall, now) = (self.clocks.wall(), self.clocks.now());
                        for occ in matcher.close_stream(&id, t, wall, now) {
                            made += 1;
                            let _ = self.occurrences.send(occ);
                        }
                    }
                    // Every control sender is gone; stop selecting on a closed
                    // channel (it would be ready forever and spin).
                    Err(_) => control = crossbeam_channel::never(),
                },
            }
        }
        made
    }
}

/// The newest picture each stream showed and when, for the console's
/// camera view (the matcher stage puts, the API reads).
#[derive(Default)]
pub struct LatestPictures(
    std::sync::Mutex<std::collections::HashMap<StreamId, (Arc<Picture>, SystemTime)>>,
);

impl LatestPictures {
    pub fn put(&self, stream: &StreamId, picture: Arc<Picture>, wall: SystemTime) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(stream.clone(), (picture, wall));
        }
    }

    /// The stream's newest picture and how long ago it was taken.
    pub fn get(&self, stream: &str) -> Option<(Arc<Picture>, std::time::Duration)> {
        let (picture, wall) = self.0.lock().ok()?.get(&StreamId::new(stream)).cloned()?;
        let age = SystemTime::now().duration_since(wall).unwrap_or_default();
        Some((picture, age))
    }
}
