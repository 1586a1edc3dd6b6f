//! The bounded inference pool: a fixed set of worker threads, each owning
//! one scorer (one ONNX session) per loaded model, fed from one bounded
//! queue. A frame names the models to run on it; each gives its own
//! [`Scores`].
//!
//! Admission never blocks the caller (a GStreamer streaming thread). When the
//! queue is full the oldest queued frame *of the same stream* is replaced; if
//! that stream has nothing queued, the oldest frame of the stream with the most
//! queued frames goes, so one busy camera cannot starve the others. Workers
//! take frames round robin across streams (the stream served longest ago
//! first), so a camera sending ten times the frames gets no more of the
//! pool's time than any other. Frames that waited longer than `max_age` are
//! dropped at dequeue: scoring them could only produce a late alert. Every
//! drop is counted per stream and by reason, and a stream shedding frames is
//! reported degraded, with the frame rate it is actually getting.
//!
//! The queue is a `Mutex<VecDeque>` with a `Condvar` rather than a channel
//! because "evict the oldest frame of stream S" needs to reach into the middle
//! of the queue. Results leave through a bounded crossbeam channel whose
//! `send` blocks: scores are never dropped, and a slow matcher shows up as
//! queue drops here instead of as unbounded memory.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::domain::{Frame, Results, Scores, StreamId};
use crate::metrics::{Histogram, Snapshot};
use crate::model::{Content, ModelError};
use motion::Decision;

pub mod motion;

pub use crate::domain::Seen;

/// Something that scores frames; one per worker thread.
pub trait Scorer: Send {
    fn score(&mut self, frame: &Frame) -> Result<Seen, ModelError>;
}

impl Scorer for crate::model::Detector {
    fn score(&mut self, frame: &Frame) -> Result<Seen, ModelError> {
        Ok(Seen {
            detections: self.detect(&frame.rgb, Content(frame.content))?,
            embedding: None,
        })
    }
}

impl Scorer for crate::model::ImageEncoder {
    fn score(&mut self, frame: &Frame) -> Result<Seen, ModelError> {
        Ok(Seen {
            detections: Vec::new(),
            embedding: Some(self.embed(&frame.rgb)?.into()),
        })
    }
}

/// Pool sizing.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub workers: usize,
    pub capacity: usize,
    pub max_age: Duration,
}

/// What happened to a submitted frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    Queued,
    /// Queued, and an older frame of this stream was dropped to make room.
    QueuedReplacing,
    /// Queued, and another stream's oldest frame was dropped.
    QueuedEvicting(StreamId),
    /// Nothing moved: the stream's last results were passed on, unqueued.
    Repeated,
    /// The pool is shutting down.
    Closed,
}

/// Counters, readable at any time.
#[derive(Debug, Default)]
pub struct PoolStats {
    pub submitted: AtomicU64,
    pub scored: AtomicU64,
    pub dropped_full: AtomicU64,
    pub dropped_stale: AtomicU64,
    /// Frames not scored because nothing moved (their last results stood).
    pub skipped_no_motion: AtomicU64,
    pub errors: AtomicU64,
    /// Worker threads running.
    pub workers: AtomicU64,
    /// Sum of queue waits and inference times in microseconds, for averages.
    pub queued_us: AtomicU64,
    pub inference_us: AtomicU64,
    per_stream_drops: Mutex<HashMap<StreamId, Drops>>,
    per_model: Mutex<HashMap<(StreamId, usize), ModelCounters>>,
    flows: Mutex<HashMap<StreamId, Flow>>,
    /// How long frames waited in the queue before a worker took them.
    pub queue_wait: Histogram,
    /// Inference time per model (by place in the model set).
    inference_times: Mutex<HashMap<usize, Arc<Histogram>>>,
}

/// A stream's dropped frames, by reason.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Drops {
    /// Replaced or evicted because the queue was full.
    pub queue_full: u64,
    /// Waited longer than `max_age`.
    pub stale: u64,
}

/// Why a frame was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DropReason {
    QueueFull,
    Stale,
}

/// How long a stream's frame rate is measured over.
const FLOW_WINDOW: Duration = Duration::from_secs(10);

/// One stream's frames over the current and the last full window.
#[derive(Debug)]
struct Flow {
    start: Instant,
    served: u32,
    shed: u32,
    /// The last full window: frames served per second, frames shed.
    last: Option<(f64, u32)>,
}

/// Whether a stream gets all its frames through the pool.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct FlowView {
    /// Frames per second scored or skipped for no motion (last window).
    pub effective_fps: Option<f64>,
    /// Frames shed (queue full or stale) in the last and current windows.
    pub shed_recent: u32,
    pub degraded: bool,
}

/// One model's counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ModelCounters {
    /// Frames it scored.
    pub frames: u64,
    /// Frames meant for it that were dropped (queue full or stale).
    pub dropped: u64,
    /// Frames it did not score because nothing moved.
    pub skipped: u64,
    pub errors: u64,
    /// Total inference time, microseconds.
    pub inference_us: u64,
}

impl ModelCounters {
    /// Mean inference time in milliseconds (0 before the first frame).
    pub fn mean_inference_ms(&self) -> f64 {
        if self.frames == 0 {
            0.0
        } else {
            self.inference_us as f64 / self.frames as f64 / 1000.0
        }
    }
}

impl PoolStats {
    /// Frames dropped per stream (full queue or stale).
    pub fn drops_by_stream(&self) -> HashMap<StreamId, u64> {
        self.drops_by_reason()
            .into_iter()
            .map(|(s, d)| (s, d.queue_full + d.stale))
            .collect()
    }

    /// Frames dropped per stream, by reason.
    pub fn drops_by_reason(&self) -> HashMap<StreamId, Drops> {
        self.per_stream_drops
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }

    /// Every stream's counters per model, by (stream, model place).
    pub fn all_stream_models(&self) -> Vec<(StreamId, usize, ModelCounters)> {
        let mut out: Vec<_> = self
            .per_model
            .lock()
            .map(|m| m.iter().map(|((s, i), c)| (s.clone(), *i, *c)).collect())
            .unwrap_or_default();
        out.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        out
    }

    /// Inference time histograms, by model place.
    pub fn inference_times(&self) -> Vec<(usize, Snapshot)> {
        let mut out: Vec<_> = self
            .inference_times
            .lock()
            .map(|m| m.iter().map(|(i, h)| (*i, h.snapshot())).collect())
            .unwrap_or_default();
        out.sort_by_key(|(i, _)| *i);
        out
    }

    fn time_inference(&self, model: usize, d: Duration) {
        let h = self
            .inference_times
            .lock()
            .map(|mut m| Arc::clone(m.entry(model).or_default()));
        if let Ok(h) = h {
            h.observe(d);
        }
    }

    /// Each model's counters over every stream, by its place in the
    /// model set (`models` entries).
    pub fn by_model(&self, models: usize) -> Vec<ModelCounters> {
        let mut out = vec![ModelCounters::default(); models];
        if let Ok(m) = self.per_model.lock() {
            for ((_, i), c) in m.iter() {
                if let Some(o) = out.get_mut(*i) {
                    o.frames += c.frames;
                    o.dropped += c.dropped;
                    o.skipped += c.skipped;
                    o.errors += c.errors;
                    o.inference_us += c.inference_us;
                }
            }
        }
        out
    }

    /// One stream's counters per model that has seen its frames.
    pub fn stream_models(&self, stream: &StreamId) -> Vec<(usize, ModelCounters)> {
        self.all_stream_models()
            .into_iter()
            .filter(|(s, ..)| s == stream)
            .map(|(_, i, c)| (i, c))
            .collect()
    }

    fn model(&self, stream: &StreamId, i: usize, f: impl FnOnce(&mut ModelCounters)) {
        if let Ok(mut m) = self.per_model.lock() {
            f(m.entry((stream.clone(), i)).or_default());
        }
    }

    /// Counts a frame of `stream` served (`shed` false) or shed; logs when
    /// a stream starts or stops shedding.
    fn flow(&self, stream: &StreamId, shed: bool) {
        let Ok(mut m) = self.flows.lock() else { return };
        let now = Instant::now();
        let f = m.entry(stream.clone()).or_insert(Flow {
            start: now,
            served: 0,
            shed: 0,
            last: None,
        });
        let span = now.saturating_duration_since(f.start);
        if span >= FLOW_WINDOW {
            let fps = f64::from(f.served) / span.as_secs_f64();
            let was = f.last.is_some_and(|(_, s)| s > 0);
            if f.shed > 0 && !was {
                tracing::warn!(stream = %stream, effective_fps = format!("{fps:.2}"), shed = f.shed,
                    "stream degraded: the pool cannot keep up, frames are being shed");
            } else if f.shed == 0 && was {
                tracing::info!(stream = %stream, effective_fps = format!("{fps:.2}"),
                    "stream no longer degraded");
            }
            f.last = Some((fps, f.shed));
            (f.start, f.served, f.shed) = (now, 0, 0);
        }
        if shed {
            f.shed += 1;
        } else {
            f.served += 1;
        }
    }

    /// A stream's recent frame rate through the pool.
    pub fn flow_of(&self, stream: &StreamId) -> Option<FlowView> {
        let m = self.flows.lock().ok()?;
        let f = m.get(stream)?;
        let shed = f.shed + f.last.map_or(0, |(_, s)| s);
        Some(FlowView {
            effective_fps: f.last.map(|(fps, _)| fps),
            shed_recent: shed,
            degraded: shed > 0,
        })
    }

    /// Counts a dropped frame: in all, for its stream by reason, for each
    /// of its models, and in its stream's flow.
    fn drop_frame(&self, f: &Frame, why: DropReason) {
        self.flow(&f.stream_id, true);
        let total = match why {
            DropReason::QueueFull => &self.dropped_full,
            DropReason::Stale => &self.dropped_stale,
        };
        total.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut m) = self.per_stream_drops.lock() {
            let d = m.entry(f.stream_id.clone()).or_default();
            match why {
                DropReason::QueueFull => d.queue_full += 1,
                DropReason::Stale => d.stale += 1,
            }
        }
        for &i in f.models.iter() {
            self.model(&f.stream_id, i, |c| c.dropped += 1);
        }
    }
}

/// A frame waiting in the queue, with its stream branch's motion gate and
/// what the gate decided when the frame came in.
struct Job {
    frame: Frame,
    gate: Option<Arc<FrameGate>>,
    decided: Option<Decision<Results>>,
}

/// A motion gate over frames and the results they produced.
pub type FrameGate = motion::Gate<Results>;

struct State {
    items: VecDeque<Job>,
    closed: bool,
    /// When each stream was last served (a dequeue count), for round robin.
    served: HashMap<StreamId, u64>,
    turns: u64,
}

impl State {
    /// The oldest frame of the stream served longest ago.
    fn take(&mut self) -> Option<Job> {
        let never = 0;
        let i = (0..self.items.len()).min_by_key(|&i| {
            let s = &self.items[i].frame.stream_id;
            (self.served.get(s).copied().unwrap_or(never), i)
        })?;
        let f = self.items.remove(i)?;
        self.turns += 1;
        if self.served.len() > 4096 {
            let queued: std::collections::HashSet<&StreamId> =
                self.items.iter().map(|j| &j.frame.stream_id).collect();
            self.served.retain(|s, _| queued.contains(s));
        }
        self.served.insert(f.frame.stream_id.clone(), self.turns);
        Some(f)
    }
}

struct Queue {
    state: Mutex<State>,
    ready: Condvar,
    capacity: usize,
    stats: Arc<PoolStats>,
    /// Where frames motion gating lets stand on their last results go
    /// straight from `submit`, past the queue; taken on close so the
    /// matcher sees the end.
    results: Mutex<Option<Sender<Scores>>>,
}

/// Cheap handle for submitting frames; clone one per stream.
#[derive(Clone)]
pub struct Submitter {
    queue: Arc<Queue>,
}

impl Submitter {
    /// Queues a frame without blocking, dropping an older one if full.
    pub fn submit(&self, frame: Frame) -> Admission {
        self.submit_gated(frame, None)
    }

    /// [`Submitter::submit`] through the stream branch's motion gate: a
    /// frame the gate finds unchanged does not queue, and its stream's last
    /// results go to the matcher at once.
    pub fn submit_gated(&self, frame: Frame, gate: Option<&Arc<FrameGate>>) -> Admission {
        let mut job = Job {
            frame,
            gate: gate.cloned(),
            decided: None,
        };
        if let Some(gate) = gate {
            match gate.decide(&job.frame) {
                Decision::Repeat(last) => match self.room_for(last.len()) {
                    Some(tx) => return self.repeat_now(job.frame, &last, &tx),
                    // The matcher's channel is full: a worker passes the
                    // results on, in turn.
                    None => job.decided = Some(Decision::Repeat(last)),
                },
                d => job.decided = Some(d),
            }
        }
        let q = &self.queue;
        let Ok(mut st) = q.state.lock() else {
            return Admission::Closed;
        };
        if st.closed {
            return Admission::Closed;
        }
        q.stats.submitted.fetch_add(1, Ordering::Relaxed);
        let mut outcome = Admission::Queued;
        if st.items.len() >= q.capacity {
            let stream = &job.frame.stream_id;
            let victim = match st.items.iter().position(|j| &j.frame.stream_id == stream) {
                Some(i) => {
                    outcome = Admission::QueuedReplacing;
                    Some(i)
                }
                None => {
                    let busiest = busiest_stream(&st.items);
                    let i =
                        busiest.and_then(|s| st.items.iter().position(|j| j.frame.stream_id == s));
                    if let Some(i) = i {
                        outcome = Admission::QueuedEvicting(st.items[i].frame.stream_id.clone());
                    }
                    i
                }
            };
            if let Some(old) = victim.and_then(|i| st.items.remove(i)) {
                q.stats.drop_frame(&old.frame, DropReason::QueueFull);
            }
        }
        st.items.push_back(job);
        drop(st);
        q.ready.notify_one();
        outcome
    }

    /// The matcher's channel, if it has room for `n` more scores now.
    fn room_for(&self, n: usize) -> Option<Sender<Scores>> {
        let tx = self.queue.results.lock().ok()?.clone()?;
        tx.capacity()
            .is_none_or(|c| tx.len() + n <= c)
            .then_some(tx)
    }

    /// Sends `last` for `frame` to the matcher without queueing.
    fn repeat_now(&self, frame: Frame, last: &Results, tx: &Sender<Scores>) -> Admission {
        let stats = &self.queue.stats;
        stats.submitted.fetch_add(1, Ordering::Relaxed);
        stats.flow(&frame.stream_id, false);
        let seen = repeated(stats, &frame, last);
        send_scores(frame, seen, tx);
        Admission::Repeated
    }

    /// Frames waiting now.
    pub fn queued(&self) -> usize {
        self.queue.state.lock().map(|s| s.items.len()).unwrap_or(0)
    }
}

fn busiest_stream(items: &VecDeque<Job>) -> Option<StreamId> {
    let mut counts: HashMap<&StreamId, usize> = HashMap::new();
    for j in items {
        *counts.entry(&j.frame.stream_id).or_default() += 1;
    }
    // Ties go to the stream whose oldest frame is oldest (first seen).
    let max = counts.values().copied().max()?;
    items
        .iter()
        .find(|j| counts.get(&j.frame.stream_id) == Some(&max))
        .map(|j| j.frame.stream_id.clone())
}

/// The running pool. Dropping it without [`Pool::shutdown`] leaves the workers
/// to exit when the queue is closed by the last handle.
pub struct Pool {
    queue: Arc<Queue>,
    workers: Vec<JoinHandle<()>>,
    stats: Arc<PoolStats>,
}

impl Pool {
    /// Starts `cfg.workers` threads. `make_scorer(i)` runs on worker `i`'s own
    /// thread (ONNX sessions are created where they are used) and gives one
    /// scorer per model, in model-set order; the first error stops the start
    /// and is returned.
    pub fn start<F>(
        cfg: &PoolConfig,
        make_scorer: F,
        results: Sender<Scores>,
    ) -> Result<Pool, ModelError>
    where
        F: Fn(usize) -> Result<Vec<Box<dyn Scorer>>, ModelError> + Send + Sync + 'static,
    {
        let stats = Arc::new(PoolStats::default());
        stats
            .workers
            .store(cfg.workers.max(1) as u64, Ordering::Relaxed);
        let queue = Arc::new(Queue {
            state: Mutex::new(State {
                items: VecDeque::with_capacity(cfg.capacity),
                closed: false,
                served: HashMap::new(),
                turns: 0,
            }),
            ready: Condvar::new(),
            capacity: cfg.capacity.max(1),
            stats: Arc::clone(&stats),
            results: Mutex::new(Some(results.clone())),
        });
        let make_scorer = Arc::new(make_scorer);
        let (ready_tx, ready_rx) =
            crossbeam_channel::bounded::<Result<(), ModelError>>(cfg.workers);
        let mut workers = Vec::new();
        for i in 0..cfg.workers.max(1) {
            let queue = Arc::clone(&queue);
            let make = Arc::clone(&make_scorer);
            let results = results.clone();
            let ready = ready_tx.clone();
            let max_age = cfg.max_age;
            let handle = std::thread::Builder::new()
                .name(format!("infer-{i}"))
                .spawn(move || match make(i) {
                    Ok(scorers) => {
                        let _ = ready.send(Ok(()));
                        drop(ready);
                        worker_loop(&queue, scorers, &results, max_age);
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                    }
                })
                .map_err(|e| ModelError::Runtime(format!("cannot spawn worker thread: {e}")))?;
            workers.push(handle);
        }
        drop(ready_tx);
        let pool = Pool {
            queue,
            workers,
            stats,
        };
        for _ in 0..pool.workers.len() {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    pool.close();
                    return Err(e);
                }
                Err(_) => {
                    pool.close();
                    return Err(ModelError::Runtime(
                        "a worker thread died while loading the model".into(),
                    ));
                }
            }
        }
        Ok(pool)
    }

    /// A handle for submitting frames.
    pub fn submitter(&self) -> Submitter {
        Submitter {
            queue: Arc::clone(&self.queue),
        }
    }

    /// The pool's counters.
    pub fn stats(&self) -> Arc<PoolStats> {
        Arc::clone(&self.stats)
    }

    fn close(&self) {
        if let Ok(mut st) = self.queue.state.lock() {
            st.closed = true;
        }
        if let Ok(mut r) = self.queue.results.lock() {
            r.take();
        }
        self.queue.ready.notify_all();
    }

    /// Stops admitting, lets workers finish what is queued, and joins them.
    pub fn shutdown(mut self) {
        self.close();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn next_job(queue: &Queue) -> Option<Job> {
    let mut st = queue.state.lock().ok()?;
    loop {
        if let Some(f) = st.take() {
            return Some(f);
        }
        if st.closed {
            return None;
        }
        st = queue.ready.wait(st).ok()?;
    }
}

fn worker_loop(
    queue: &Queue,
    mut scorers: Vec<Box<dyn Scorer>>,
    results: &Sender<Scores>,
    max_age: Duration,
) {
    let stats = &queue.stats;
    while let Some(Job {
        frame,
        gate,
        decided,
    }) = next_job(queue)
    {
        let queued = Instant::now().saturating_duration_since(frame.arrived);
        if queued > max_age {
            stats.drop_frame(&frame, DropReason::Stale);
            continue;
        }
        stats.flow(&frame.stream_id, false);
        stats.queue_wait.observe(queued);
        let seen = match decided {
            Some(Decision::Repeat(last)) => repeated(stats, &frame, &last),
            decision => {
                let seen: Vec<_> = frame
                    .models
                    .iter()
                    .filter_map(|&m| score_one(stats, &mut scorers, &frame, m))
                    .collect();
                if let (Some(g), Some(Decision::Score(ticket))) = (&gate, decision) {
                    let r: Results = seen.iter().map(|(m, s, ..)| (*m, s.clone())).collect();
                    let occupied = r.iter().any(|(_, s)| !s.detections.is_empty());
                    g.scored(ticket, r, occupied);
                }
                seen
            }
        };
        if !send_scores(frame, seen, results) {
            return;
        }
    }
}

/// A frame's outcomes when its stream's last results stand for it.
fn repeated(stats: &PoolStats, frame: &Frame, last: &Results) -> Vec<Outcome> {
    stats.skipped_no_motion.fetch_add(1, Ordering::Relaxed);
    let queued = Instant::now().saturating_duration_since(frame.arrived);
    last.iter()
        .map(|(m, seen)| {
            stats.model(&frame.stream_id, *m, |c| c.skipped += 1);
            (*m, seen.clone(), queued, Duration::ZERO, true)
        })
        .collect()
}

/// One model's outcome for a frame: the model, what it saw, the queue wait,
/// the inference time, and whether it was repeated for an unchanged frame.
type Outcome = (usize, Seen, Duration, Duration, bool);

/// Hands each model's scores of `frame` to the matcher; false when the
/// matcher has gone.
fn send_scores(frame: Frame, seen: Vec<Outcome>, results: &Sender<Scores>) -> bool {
    // The picture goes along for snapshots, without a copy.
    let picture = Arc::new(crate::domain::Picture {
        width: frame.width,
        height: frame.height,
        rgb: frame.rgb,
        content: frame.content,
        aspect: frame.aspect,
    });
    for (model, seen, queued, inference, repeated) in seen {
        let scores = Scores {
            stream_id: frame.stream_id.clone(),
            seq: frame.seq,
            wall: frame.wall,
            arrived: frame.arrived,
            stream_secs: frame.stream_secs,
            detections: seen.detections,
            embedding: seen.embedding,
            model,
            queued,
            inference,
            repeated,
            picture: Some(Arc::clone(&picture)),
        };
        if results.send(scores).is_err() {
            return false;
        }
    }
    true
}

/// Runs model `m` on a frame, counting the outcome.
fn score_one(
    stats: &PoolStats,
    scorers: &mut [Box<dyn Scorer>],
    frame: &Frame,
    m: usize,
) -> Option<Outcome> {
    let Some(scorer) = scorers.get_mut(m) else {
        stats.errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(stream = %frame.stream_id, model = m, "frame names no loaded model");
        return None;
    };
    let started = Instant::now();
    let queued = started.saturating_duration_since(frame.arrived);
    match scorer.score(frame) {
        Ok(seen) => {
            let inference = started.elapsed();
            let us = inference.as_micros() as u64;
            stats.scored.fetch_add(1, Ordering::Relaxed);
            stats
                .queued_us
                .fetch_add(queued.as_micros() as u64, Ordering::Relaxed);
            stats.inference_us.fetch_add(us, Ordering::Relaxed);
            stats.time_inference(m, inference);
            stats.model(&frame.stream_id, m, |c| {
                c.frames += 1;
                c.inference_us += us;
            });
            Some((m, seen, queued, inference, false))
        }
        Err(e) => {
            stats.errors.fetch_add(1, Ordering::Relaxed);
            stats.model(&frame.stream_id, m, |c| c.errors += 1);
            tracing::warn!(stream = %frame.stream_id, model = m, error = %e, "scoring failed");
            None
        }
    }
}

#[cfg(test)]
mod tests;
