//! Events → occurrences. For every (stream, event) pair a [`state::Tracker`]
//! turns per-frame verdicts into start and end transitions. An event is
//! either a set of detector conditions ([`rule`]) or a free-text prompt for
//! a dual encoder ([`text`]), which also keeps a baseline per stream.
//! Detector boxes are also followed across frames per (stream, model)
//! ([`track`]), so alerts say which objects they are about. Pure:
//! no IO, no clock of its own (time is the frame's stream time), so it is
//! tested by feeding scores by hand.

mod by_object;
pub mod objects;
mod occ;
pub mod rule;
pub mod stage;
pub mod state;
pub mod text;
pub mod track;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::domain::{Detection, EventId, Picture, Scores, StreamId};
use crate::domain::{EventSpec, MatchParams, ObjectRules};
pub use objects::{Crossing, Facts, ObjectFacts};
pub use rule::{LabelRule, Verdict};
pub use state::{Tracker, Transition};
pub use text::{Baseline, TextRule, TextVerdict};
pub use track::{TrackParams, TrackedObject, Tracks};

use by_object::Objects;
use occ::{Judgement, Occ, Sighting};

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
    /// Detector events: rules over tracked objects.
    pub objects: Option<ObjectRules>,
    /// The model that scores it: only that model's scores reach it.
    pub model: usize,
    pub model_name: Arc<str>,
    /// The streams it is judged on: those an enabled alert wires it to.
    pub scope: Scope,
}

/// Where an event is judged. The daemon always says which streams
/// (VideoDB's model: an alert wires an event to an index), so a stream no
/// alert watches makes no occurrence, snapshot or clip for it.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Scope {
    /// Every stream (tests and tools that feed one stream by hand).
    #[default]
    Everywhere,
    /// These streams only.
    Only(std::collections::HashSet<StreamId>),
}

impl Scope {
    pub fn covers(&self, stream: &StreamId) -> bool {
        match self {
            Scope::Everywhere => true,
            Scope::Only(s) => s.contains(stream),
        }
    }
}

impl CompiledEvent {
    /// An event with the rule it was compiled to (by
    /// [`crate::control::compile_event`], which knows the loaded model).
    pub fn new(e: &EventSpec, rule: Rule, model: usize, model_name: Arc<str>) -> CompiledEvent {
        CompiledEvent {
            id: e.id.clone(),
            prompt: e.prompt.clone(),
            label: e.label.clone(),
            rule,
            matching: e.matching,
            objects: e.objects,
            model,
            model_name,
            scope: Scope::Everywhere,
        }
    }

    /// The same event, judged only on `scope`.
    pub fn judged_on(self, scope: Scope) -> CompiledEvent {
        CompiledEvent { scope, ..self }
    }

    /// A detector event's rules over tracked objects, if it has any.
    fn object_rules(&self) -> Option<(&LabelRule, ObjectRules)> {
        match (&self.rule, self.objects) {
            (Rule::Labels(r), Some(o)) => Some((r, o)),
            _ => None,
        }
    }

    /// The detections that count for this event (none for text events).
    fn boxes(&self, dets: &[Detection]) -> Vec<Detection> {
        match &self.rule {
            Rule::Labels(r) => dets.iter().filter(|d| r.counts(d)).cloned().collect(),
            Rule::Text(_) => Vec::new(),
        }
    }

    /// The tracked objects behind the boxes that count for this event.
    fn objects(
        &self,
        dets: &[Detection],
        owners: &[Option<u64>],
        tracks: &Tracks,
    ) -> Vec<TrackedObject> {
        match &self.rule {
            Rule::Labels(r) => tracks.objects(
                dets.iter()
                    .zip(owners)
                    .filter(|(d, _)| r.counts(d))
                    .map(|(_, o)| *o),
            ),
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
    /// The tracked objects involved: on a start, those in the frame that
    /// started it; on an end, every object seen during it (by track id).
    pub objects: Vec<TrackedObject>,
    /// `per = "object"`: the object this occurrence is about.
    pub track_id: Option<u64>,
    /// A line crossing: which way, and the count so far.
    pub crossing: Option<Crossing>,
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

/// One event on one stream.
struct Slot {
    baseline: Baseline,
    /// The event's occurrence (`per = "event"`, line crossings aside).
    main: Occ,
    /// What the event knows of the stream's tracked objects.
    facts: ObjectFacts,
    /// `per = "object"`: an occurrence per tracked object.
    per_object: BTreeMap<u64, Occ>,
}

/// Where a text event starts its baseline on a stream, given the first
/// frame it judges there: in the daemon, from the stream's stored frames
/// ([`crate::scene::embeddings::Embeddings::baseline`]).
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
    /// Detector boxes followed across frames, per (stream, model).
    tracks: HashMap<(StreamId, usize), Tracks>,
    /// The track of each box of the frame last observed (`None`: none).
    owners: Vec<Option<u64>>,
    /// Streams with a running scene index: every free-text event is judged
    /// there for the index's record, occurrences only where wired.
    indexed: std::collections::HashSet<StreamId>,
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
            tracks: HashMap::new(),
            owners: Vec::new(),
            indexed: Default::default(),
        }
    }

    /// The streams whose scene index records which free-text events match.
    pub fn set_indexed(&mut self, streams: std::collections::HashSet<StreamId>) {
        self.indexed = streams;
    }

    /// Starts text events' baselines from `source` instead of from the
    /// first frame each judges.
    pub fn with_baselines(mut self, source: BaselineSource) -> Self {
        self.baselines = Some(source);
        self
    }

    /// Replaces the events in force. Trackers of events that remain on a
    /// stream keep their state; the others are dropped without an end
    /// message (no alert is left to report it).
    pub fn set_events(&mut self, events: Vec<Arc<CompiledEvent>>) {
        self.slots
            .retain(|(stream, ev), _| events.iter().any(|e| &e.id == ev && e.scope.covers(stream)));
        self.events = events;
    }

    /// The tracks of a stream's boxes from one model (empty before its
    /// first frame).
    pub fn tracks(&self, stream: &StreamId, model: usize) -> &[track::Track] {
        self.tracks
            .get(&(stream.clone(), model))
            .map_or(&[][..], Tracks::live)
    }

    /// The track of each box of the frame last given to [`Matcher::observe`].
    pub fn owners(&self) -> &[Option<u64>] {
        &self.owners
    }

    /// Feeds one scored frame; returns the starts and ends it caused.
    pub fn observe(&mut self, s: &Scores) -> Vec<Occurrence> {
        let mut out = Vec::new();
        self.text_matches.clear();
        let tracks = self
            .tracks
            .entry((s.stream_id.clone(), s.model))
            .or_insert_with(|| Tracks::new(TrackParams::default()));
        self.owners = tracks.update(s.stream_secs, &s.detections);
        let owners = &self.owners;
        let indexed = self.indexed.contains(&s.stream_id);
        let judged = |ev: &&Arc<CompiledEvent>| {
            let recorded = indexed && matches!(ev.rule, Rule::Text(_));
            ev.model == s.model && (recorded || ev.scope.covers(&s.stream_id))
        };
        for ev in self.events.iter().filter(judged) {
            let slot = self
                .slots
                .entry((s.stream_id.clone(), ev.id.clone()))
                .or_insert_with(|| Slot {
                    baseline: match (&ev.rule, &self.baselines) {
                        (Rule::Text(r), Some(source)) => source(&s.stream_id, r, s),
                        _ => Baseline::default(),
                    },
                    main: Occ::new(ev.matching, None),
                    facts: ObjectFacts::default(),
                    per_object: BTreeMap::new(),
                });
            let v = ev.judge(s, &mut slot.baseline);
            if v.matched && matches!(ev.rule, Rule::Text(_)) {
                self.text_matches.push(Detection {
                    label: Arc::from(ev.label.as_str()),
                    score: v.best,
                    bbox: [0.0, 0.0, 1.0, 1.0],
                });
            }
            if !ev.scope.covers(&s.stream_id) {
                // Judged for the scene index only: no occurrence.
                continue;
            }
            let next_id = &mut self.next_id;
            match ev.object_rules() {
                None => {
                    let seen = Sighting {
                        boxes: ev.boxes(&s.detections),
                        objects: ev.objects(&s.detections, owners, tracks),
                        onset: None,
                    };
                    out.extend(slot.main.step(ev, v, seen, s, next_id));
                }
                Some((rule, rules)) => {
                    let facts = slot
                        .facts
                        .observe(&rules, s.stream_secs, tracks.live(), |tr| {
                            rule.counts(&Detection {
                                label: Arc::clone(&tr.label),
                                score: tr.best,
                                bbox: tr.bbox,
                            })
                        });
                    let on = Objects { s, owners, tracks };
                    out.extend(on.judge(ev, rule, rules, facts, slot, next_id));
                }
            }
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
        // Its objects are gone; their ids are not given out again.
        for ((s, _), tracks) in self.tracks.iter_mut() {
            if s == stream {
                tracks.clear();
            }
        }
        for ev in &self.events {
            let Some(slot) = self.slots.get_mut(&(stream.clone(), ev.id.clone())) else {
                continue;
            };
            slot.facts.clear();
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
            let occs = std::iter::once(&mut slot.main).chain(slot.per_object.values_mut());
            for occ in occs {
                if let Some(tr) = occ.tracker.close(t) {
                    out.push(occ.build(ev, &mut self.next_id, tr, &s, None));
                }
            }
            slot.per_object.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests;
