//! One occurrence's bookkeeping: its k-of-n state machine, its id, the best
//! frame and explanation so far, the objects involved, and how its start
//! and end messages are put together. An event has one per stream, or with
//! `per = "object"` one per tracked object.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::objects::Crossing;
use super::track::TrackedObject;
use super::{CompiledEvent, Occurrence, Phase, Rule, Timing, Tracker, Transition};
use crate::domain::MatchParams;
use crate::domain::{Detection, Picture, Scores};

/// Makes occurrence ids.
pub type NextId = Box<dyn FnMut() -> String + Send>;

/// One event's view of one frame.
#[derive(Debug, Default)]
pub struct Judgement {
    pub matched: bool,
    pub best: f32,
    pub count: usize,
    /// Detectors: label of the best object.
    pub label: Option<Arc<str>>,
    /// Text events: for a matching frame, what the alert should say about it.
    pub explanation: Option<String>,
}

/// The best frame of an occurrence so far.
#[derive(Clone)]
struct Shown {
    score: f32,
    picture: Option<Arc<Picture>>,
    boxes: Vec<Detection>,
}

/// What the frame being judged shows of the occurrence's objects.
pub struct Sighting {
    /// The boxes that count for it.
    pub boxes: Vec<Detection>,
    /// The tracked objects behind them.
    pub objects: Vec<TrackedObject>,
    /// When its objects began to qualify, if earlier than the frames that
    /// matched (a dwell rule matches only after the dwell): the occurrence's
    /// true start.
    pub onset: Option<f64>,
}

pub struct Occ {
    pub tracker: Tracker,
    occurrence_id: Option<String>,
    /// Text events: while idle, the explanation of the latest matching
    /// frame; while active, of the best one.
    explanation: Option<(f32, String)>,
    /// While active, the best frame so far.
    shown: Option<Shown>,
    /// The objects in the frame last judged.
    current: Vec<TrackedObject>,
    /// While active, every object seen during the occurrence.
    involved: BTreeMap<u64, TrackedObject>,
    /// A per-object occurrence's track.
    track_id: Option<u64>,
    /// While active: the true start, when it precedes the k-of-n window.
    onset: Option<f64>,
    /// When the last occurrence ended (no later one starts before it).
    ended_at: Option<f64>,
}

impl Occ {
    /// An occurrence of the event, or (with `track_id`) of one object.
    pub fn new(params: MatchParams, track_id: Option<u64>) -> Self {
        Occ {
            tracker: Tracker::new(params),
            occurrence_id: None,
            explanation: None,
            shown: None,
            current: Vec::new(),
            involved: BTreeMap::new(),
            track_id,
            onset: None,
            ended_at: None,
        }
    }

    /// Judges one frame; a start or end message when it caused one.
    pub fn step(
        &mut self,
        ev: &CompiledEvent,
        v: Judgement,
        seen: Sighting,
        s: &Scores,
        next_id: &mut NextId,
    ) -> Option<Occurrence> {
        self.current = seen.objects;
        let onset = seen.onset;
        let better = self.shown.as_ref().is_none_or(|b| v.best > b.score);
        if v.matched && (better || !self.tracker.active()) {
            self.shown = Some(Shown {
                score: v.best,
                picture: s.picture.clone(),
                boxes: seen.boxes,
            });
        }
        if let Some(text) = v.explanation {
            let better = self.explanation.as_ref().is_none_or(|(b, _)| v.best >= *b);
            if !self.tracker.active() || better {
                self.explanation = Some((v.best, text));
            }
        }
        let transition = self
            .tracker
            .observe(s.stream_secs, v.matched, v.best, v.count);
        if self.tracker.active() {
            for o in &self.current {
                self.involved.insert(o.track_id, o.clone());
            }
        }
        if let Some(Transition::Start { start, .. }) = &transition {
            let after_last = |o: &f64| self.ended_at.is_none_or(|e| *o > e);
            self.onset = onset.filter(|o| o < start && after_last(o));
        }
        Some(self.build(ev, next_id, transition?, s, v.label.as_deref()))
    }

    /// The message for a transition.
    pub fn build(
        &mut self,
        ev: &CompiledEvent,
        next_id: &mut NextId,
        tr: Transition,
        s: &Scores,
        label: Option<&str>,
    ) -> Occurrence {
        let (phase, mut start, end, best, count) = match tr {
            Transition::Start {
                start,
                last_match,
                best,
                count,
            } => (Phase::Start, start, last_match, best, count),
            Transition::End {
                start,
                end,
                best,
                count,
            } => (Phase::End, start, end, best, count),
        };
        start = match phase {
            Phase::Start => self.onset.unwrap_or(start),
            Phase::End => {
                self.ended_at = Some(s.stream_secs);
                self.onset.take().unwrap_or(start)
            }
        };
        let occurrence_id = match phase {
            Phase::Start => {
                let id = next_id();
                self.occurrence_id = Some(id.clone());
                id
            }
            Phase::End => self.occurrence_id.take().unwrap_or_else(next_id),
        };
        let (shown, objects, explanation) = match phase {
            Phase::Start => (
                self.shown.clone(),
                self.current.clone(),
                self.explanation.clone(),
            ),
            Phase::End => (
                self.shown.take(),
                std::mem::take(&mut self.involved).into_values().collect(),
                self.explanation.take(),
            ),
        };
        let (picture, boxes) = shown.map_or((None, Vec::new()), |b| (b.picture, b.boxes));
        let explanation = explanation
            .map(|(_, text)| text)
            .unwrap_or_else(|| match &ev.rule {
                Rule::Labels(r) => r.explain(count, best, label),
                Rule::Text(r) => format!("{:?} (best {best:.2})", r.texts[0]),
            });
        let mut occ = message(ev, s, occurrence_id, phase, (start, end), (best, count));
        occ.explanation = explanation;
        occ.picture = picture;
        occ.boxes = boxes;
        occ.objects = objects;
        occ.track_id = self.track_id;
        occ
    }
}

/// A message of `ev` about the frame `s`, with no evidence filled in yet.
fn message(
    ev: &CompiledEvent,
    s: &Scores,
    occurrence_id: String,
    phase: Phase,
    (start, end): (f64, f64),
    (best, count): (f32, usize),
) -> Occurrence {
    Occurrence {
        occurrence_id,
        phase,
        event_id: ev.id.clone(),
        label: ev.label.clone(),
        model: ev.model_name.clone(),
        stream_id: s.stream_id.clone(),
        start_time: start,
        end_time: end,
        confidence: best,
        count,
        explanation: String::new(),
        frame_wall: s.wall,
        frame_arrived: s.arrived,
        frame_time: s.stream_secs,
        picture: None,
        boxes: Vec::new(),
        objects: Vec::new(),
        track_id: None,
        crossing: None,
        timing: Timing {
            queue: s.queued,
            infer: s.inference,
            ..Timing::default()
        },
    }
}

/// A line crossing: an occurrence that starts and ends in the frame that
/// showed it (a start and an end message, one id).
pub fn crossed(
    ev: &CompiledEvent,
    c: Crossing,
    seen: Sighting,
    s: &Scores,
    next_id: &mut NextId,
) -> [Occurrence; 2] {
    let id = next_id();
    let t = s.stream_secs;
    let best = seen.objects.first().map_or(0.0, |o| o.best_score);
    let what = seen
        .objects
        .first()
        .map_or_else(|| ev.label.clone(), |o| o.label.to_string());
    let mut start = message(ev, s, id, Phase::Start, (t, t), (best, 1));
    start.explanation = format!(
        "{what} crossed the line ({}), crossing {}",
        match c.direction {
            crate::domain::Direction::In => "in",
            crate::domain::Direction::Out => "out",
            crate::domain::Direction::Any => "either way",
        },
        c.count
    );
    start.picture = s.picture.clone();
    start.boxes = seen.boxes;
    start.objects = seen.objects;
    start.track_id = Some(c.track_id);
    start.crossing = Some(c);
    let end = Occurrence {
        phase: Phase::End,
        ..start.clone()
    };
    [start, end]
}
