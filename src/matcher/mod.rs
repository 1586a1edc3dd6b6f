//! Events → occurrences. For every (stream, event) pair a [`state::Tracker`]
//! turns per-frame verdicts into start and end transitions. An event is
//! either a set of detector conditions ([`rule`]) or a free-text prompt for
//! a dual encoder ([`text`]), which also keeps a baseline per stream. Pure:
//! no IO, no clock of its own (time is the frame's stream time), so it is
//! tested by feeding scores by hand.

pub mod rule;
pub mod stage;
pub mod state;
pub mod text;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::domain::{EventSpec, MatchParams};
use crate::types::{Detection, EventId, Picture, Scores, StreamId};
pub use rule::{resolve_classes, LabelRule, Verdict};
pub use state::{Tracker, Transition};
pub use text::{Baseline, TextRule, TextVerdict};

/// Whether a message opens or closes an occurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Start,
    End,
}

/// How an event judges a frame.
#[derive(Debug, Clone)]
pub enum Rule {
    /// Detector conditions over labelled boxes.
    Labels(LabelRule),
    /// A prompt scored against the frame's embedding.
    Text(TextRule),
}

/// An event compiled for the loaded model.
#[derive(Debug, Clone)]
pub struct CompiledEvent {
    pub id: EventId,
    pub prompt: String,
    pub label: String,
    pub rule: Rule,
    pub matching: MatchParams,
    /// The model that scores it: only that model's scores reach it.
    pub model: usize,
    pub model_name: Arc<str>,
}

impl CompiledEvent {
    /// An event with the rule it was compiled to (by
    /// [`crate::engine::compile_event`], which knows the loaded model).
    pub fn new(e: &EventSpec, rule: Rule, model: usize, model_name: Arc<str>) -> CompiledEvent {
        CompiledEvent {
            id: e.id.clone(),
            prompt: e.prompt.clone(),
            label: e.label.clone(),
            rule,
            matching: e.matching,
            model,
            model_name,
        }
    }

    /// The detections that count for this event (none for text events).
    fn boxes(&self, dets: &[Detection]) -> Vec<Detection> {
        match &self.rule {
            Rule::Labels(r) => dets.iter().filter(|d| r.counts(d)).cloned().collect(),
            Rule::Text(_) => Vec::new(),
        }
    }

    /// Judges one frame; moves a text event's stream baseline.
    fn judge(&self, s: &Scores, baseline: &mut Baseline) -> Judgement {
        match &self.rule {
            Rule::Labels(r) => {
                let v = r.evaluate(&s.detections);
                Judgement {
                    matched: v.matched,
                    best: v.best,
                    count: v.count,
                    label: v.label,
                    explanation: None,
                }
            }
            Rule::Text(r) => match &s.embedding {
                Some(e) => {
                    let v = r.evaluate(e, s.stream_secs, baseline);
                    Judgement {
                        matched: v.matched,
                        best: v.confidence,
                        count: usize::from(v.matched),
                        label: None,
                        explanation: v.matched.then(|| r.explain(&v)),
                    }
                }
                None => Judgement::default(),
            },
        }
    }
}

/// One event's view of one frame.
#[derive(Debug, Default)]
struct Judgement {
    matched: bool,
    best: f32,
    count: usize,
    /// Detectors: label of the best object.
    label: Option<Arc<str>>,
    /// Text events: for a matching frame, what the alert should say about it.
    explanation: Option<String>,
}

/// One start or end of an occurrence of an event on a stream.
#[derive(Debug, Clone)]
pub struct Occurrence {
    pub occurrence_id: String,
    pub phase: Phase,
    pub event_id: EventId,
    pub label: String,
    /// The model that scored it.
    pub model: Arc<str>,
    pub stream_id: StreamId,
    pub start_time: f64,
    pub end_time: f64,
    pub confidence: f32,
    pub count: usize,
    pub explanation: String,
    /// Wall-clock time of the frame that caused this message.
    pub frame_wall: SystemTime,
    /// When that frame arrived from the pipeline (for latency).
    pub frame_arrived: Instant,
    /// Stream seconds of that frame (maps stream time to wall time).
    pub frame_time: f64,
    /// The frame to show for this message: at start the frame that
    /// started the occurrence, at end its best-scoring frame.
    pub picture: Option<Arc<Picture>>,
    /// The boxes that matched in that frame (empty for text events).
    pub boxes: Vec<Detection>,
    /// Where the time went for the frame behind it.
    pub timing: Timing,
}

/// How long the frame behind an occurrence spent in each stage.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timing {
    /// Waiting in the pool's queue.
    pub queue: Duration,
    /// In the model (zero when the frame repeated the last results).
    pub infer: Duration,
    /// From the end of inference to the occurrence leaving the matcher.
    pub matched: Duration,
    /// When it left the matcher; `None` for occurrences no frame made.
    pub matched_at: Option<Instant>,
}

/// The best frame of an occurrence so far.
#[derive(Clone)]
struct Shown {
    score: f32,
    picture: Option<Arc<Picture>>,
    boxes: Vec<Detection>,
}

struct Slot {
    tracker: Tracker,
    occurrence_id: Option<String>,
    baseline: Baseline,
    /// Text events: while idle, the explanation of the latest matching
    /// frame; while active, of the best one.
    explanation: Option<(f32, String)>,
    /// While active, the best frame so far.
    shown: Option<Shown>,
}

/// Where a text event starts its baseline on a stream, given the first
/// frame it judges there: in the daemon, from the stream's stored frames
/// ([`crate::embeddings::Embeddings::baseline`]).
pub type BaselineSource = Box<dyn Fn(&StreamId, &TextRule, &Scores) -> Baseline + Send>;

/// All trackers for all streams and events.
pub struct Matcher {
    events: Vec<Arc<CompiledEvent>>,
    slots: HashMap<(StreamId, EventId), Slot>,
    next_id: Box<dyn FnMut() -> String + Send>,
    /// Without one, a text event's baseline starts at the first frame it judges.
    baselines: Option<BaselineSource>,
    /// The free-text events that matched the frame last observed.
    text_matches: Vec<Detection>,
}

impl Matcher {
    /// A matcher for these events; occurrence ids are random UUIDs.
    pub fn new(events: Vec<Arc<CompiledEvent>>) -> Self {
        Self::with_ids(events, Box::new(|| uuid::Uuid::new_v4().to_string()))
    }

    /// A matcher with a chosen id generator (for deterministic tests).
    pub fn with_ids(
        events: Vec<Arc<CompiledEvent>>,
        next_id: Box<dyn FnMut() -> String + Send>,
    ) -> Self {
        Matcher {
            events,
            slots: HashMap::new(),
            next_id,
            baselines: None,
            text_matches: Vec::new(),
        }
    }

    /// Starts text events' baselines from `source` instead of from the
    /// first frame each judges.
    pub fn with_baselines(mut self, source: BaselineSource) -> Self {
        self.baselines = Some(source);
        self
    }

    /// Replaces the events in force. Trackers of events that remain keep
    /// their state; those of removed events are dropped without an end
    /// message (the event no longer exists to be reported).
    pub fn set_events(&mut self, events: Vec<Arc<CompiledEvent>>) {
        self.slots
            .retain(|(_, ev), _| events.iter().any(|e| &e.id == ev));
        self.events = events;
    }

    /// Feeds one scored frame; returns the starts and ends it caused.
    pub fn observe(&mut self, s: &Scores) -> Vec<Occurrence> {
        let mut out = Vec::new();
        self.text_matches.clear();
        for ev in self.events.iter().filter(|ev| ev.model == s.model) {
            let slot = self
                .slots
                .entry((s.stream_id.clone(), ev.id.clone()))
                .or_insert_with(|| Slot {
                    tracker: Tracker::new(ev.matching),
                    occurrence_id: None,
                    baseline: match (&ev.rule, &self.baselines) {
                        (Rule::Text(r), Some(source)) => source(&s.stream_id, r, s),
                        _ => Baseline::default(),
                    },
                    explanation: None,
                    shown: None,
                });
            let v = ev.judge(s, &mut slot.baseline);
            let better = slot.shown.as_ref().is_none_or(|b| v.best > b.score);
            if v.matched && (better || !slot.tracker.active()) {
                slot.shown = Some(Shown {
                    score: v.best,
                    picture: s.picture.clone(),
                    boxes: ev.boxes(&s.detections),
                });
            }
            if v.matched && matches!(ev.rule, Rule::Text(_)) {
                self.text_matches.push(Detection {
                    label: Arc::from(ev.label.as_str()),
                    score: v.best,
                    bbox: [0.0, 0.0, 1.0, 1.0],
                });
            }
            if let Some(text) = v.explanation {
                let better = slot.explanation.as_ref().is_none_or(|(b, _)| v.best >= *b);
                if !slot.tracker.active() || better {
                    slot.explanation = Some((v.best, text));
                }
            }
            let Some(tr) = slot
                .tracker
                .observe(s.stream_secs, v.matched, v.best, v.count)
            else {
                continue;
            };
            out.push(build(
                ev,
                slot,
                &mut self.next_id,
                tr,
                s,
                v.label.as_deref(),
            ));
        }
        out
    }

    /// The free-text events that matched the frame last given to
    /// [`Matcher::observe`], as whole-frame detections named by the event's
    /// label: what a dual-encoder stream's scene index records.
    pub fn text_matches(&self) -> &[Detection] {
        &self.text_matches
    }

    /// Ends every open occurrence of a stream (it stopped or was removed) at
    /// stream time `t`; `wall` and `now` say when (from the caller's clocks).
    pub fn close_stream(
        &mut self,
        stream: &StreamId,
        t: f64,
        wall: SystemTime,
        now: Instant,
    ) -> Vec<Occurrence> {
        let mut out = Vec::new();
        for ev in &self.events {
            let Some(slot) = self.slots.get_mut(&(stream.clone(), ev.id.clone())) else {
                continue;
            };
            if let Some(tr) = slot.tracker.close(t) {
                let s = Scores {
                    stream_id: stream.clone(),
                    seq: 0,
                    wall,
                    arrived: now,
                    stream_secs: t,
                    detections: Vec::new(),
                    embedding: None,
                    repeated: false,
                    model: ev.model,
                    queued: Default::default(),
                    inference: Default::default(),
                    picture: None,
                };
                out.push(build(ev, slot, &mut self.next_id, tr, &s, None));
            }
        }
        out
    }
}

fn build(
    ev: &CompiledEvent,
    slot: &mut Slot,
    next_id: &mut Box<dyn FnMut() -> String + Send>,
    tr: Transition,
    s: &Scores,
    label: Option<&str>,
) -> Occurrence {
    let (phase, start, end, best, count) = match tr {
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
    let occurrence_id = match phase {
        Phase::Start => {
            let id = next_id();
            slot.occurrence_id = Some(id.clone());
            id
        }
        Phase::End => slot.occurrence_id.take().unwrap_or_else(next_id),
    };
    let shown = match phase {
        Phase::Start => slot.shown.clone(),
        Phase::End => slot.shown.take(),
    };
    let (picture, boxes) = shown.map_or((None, Vec::new()), |b| (b.picture, b.boxes));
    let explanation = match phase {
        Phase::Start => slot.explanation.clone(),
        Phase::End => slot.explanation.take(),
    }
    .map(|(_, text)| text)
    .unwrap_or_else(|| match &ev.rule {
        Rule::Labels(r) => r.explain(count, best, label),
        Rule::Text(r) => format!("{:?} (best {best:.2})", r.texts[0]),
    });
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
        explanation,
        frame_wall: s.wall,
        frame_arrived: s.arrived,
        frame_time: s.stream_secs,
        picture,
        boxes,
        timing: Timing {
            queue: s.queued,
            infer: s.inference,
            ..Timing::default()
        },
    }
}

#[cfg(test)]
mod tests;
