//! Camera ingest: one GStreamer pipeline per stream, on its own supervisor
//! thread. A pipeline that fails to open, errors, reaches end of stream (live
//! sources) or stalls is torn down and rebuilt after a capped, jittered
//! exponential backoff; other streams never notice. Stream time stays
//! monotonic across rebuilds. GStreamer types leave this module only through
//! the recording [`tap`], to the recorder's own pipeline: the rest of the
//! daemon sees [`Frame`]s handed to a [`Submitter`].

pub mod bitgate;
pub mod pipeline;
pub mod replay;
pub mod sampler;
pub mod tap;
pub mod teardown;
mod timing;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;

use crate::clock::Clocks;
use crate::domain::{Frame, StreamId};
use crate::domain::{SourceUrl, StreamSpec};
use crate::pool::motion::Gate;
use crate::pool::{FrameGate, Submitter};
pub use pipeline::Output;
use sampler::Sampler;
use timing::{backoff_delay, phase_of, StreamTime};

/// Something a stream reports about itself.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceEvent {
    /// The pipeline delivered its first frame.
    Up(StreamId),
    /// The pipeline failed or stalled; it will be retried after `retry_in`.
    Down {
        stream: StreamId,
        reason: String,
        retry_in: Duration,
    },
    /// A file source played to its end (live sources reconnect instead).
    Finished(StreamId),
}

/// One size a stream's sampled frames are fitted to, and the models (their
/// places in the model set) that score frames of that size.
#[derive(Debug, Clone, PartialEq)]
pub struct Branch {
    pub out: Output,
    pub models: Arc<[usize]>,
}

/// Callback for [`SourceEvent`]s.
pub type Reporter = Arc<dyn Fn(SourceEvent) + Send + Sync>;

/// Per-stream counters.
#[derive(Debug, Default)]
pub struct SourceStats {
    pub frames: AtomicU64,
    pub restarts: AtomicU64,
    /// Pipelines whose teardown hung and were left behind.
    pub abandoned: AtomicU64,
    /// Keyframes the compressed-domain gate left undecoded.
    pub undecoded: AtomicU64,
}

/// How streams are started: GStreamer pipelines in the daemon
/// ([`Gstreamer`]), decoded frames replayed in tests ([`replay::Replay`]).
pub trait Sources: Send + Sync {
    /// Starts a stream that hands its sampled frames to `submit`, fitted
    /// once per branch (at least one).
    fn spawn(
        &self,
        cfg: StreamSpec,
        branches: Vec<Branch>,
        submit: Submitter,
        report: Reporter,
        clocks: Arc<dyn Clocks>,
    ) -> std::io::Result<Box<dyn Running>>;
}

/// A running stream, as the control plane sees it.
pub trait Running: Send {
    fn id(&self) -> &StreamId;
    /// Frames handed to the pool and pipeline rebuilds.
    fn stats(&self) -> &Arc<SourceStats>;
    /// Changes the sampling rate and keyframe mode from the next frame on,
    /// without a rebuild.
    fn retune(&self, fps: f64, keyframes_only: bool);
    /// Stops the stream and waits for it (which may take long: callers
    /// bound the wait).
    fn stop(self: Box<Self>);
}

/// Streams as GStreamer pipelines; with [`tap::Taps`], streams recorded
/// from their detection URL hand their encoded video to the recorder.
#[derive(Clone, Default)]
pub struct Gstreamer {
    pub taps: Option<Arc<tap::Taps>>,
}

impl Sources for Gstreamer {
    fn spawn(
        &self,
        cfg: StreamSpec,
        branches: Vec<Branch>,
        submit: Submitter,
        report: Reporter,
        clocks: Arc<dyn Clocks>,
    ) -> std::io::Result<Box<dyn Running>> {
        let tap = self
            .taps
            .as_ref()
            .filter(|_| tap::Taps::carries(&cfg))
            .map(|t| t.get(&cfg.id));
        Ok(Box::new(spawn(cfg, branches, submit, report, clocks, tap)?))
    }
}

/// What can change in a running pipeline without rebuilding it: the
/// sampler (rate, keyframe mode) and the delta-unit filter before the
/// decoder. Shared by the supervisor, each pipeline run and the handle.
struct Tuning {
    sampler: Mutex<Sampler>,
    /// The current run's `keys` element, if a pipeline is up.
    keys: Mutex<Option<gst::Element>>,
}

/// A running stream; dropping it does not stop it, [`StreamHandle::stop`] does.
pub struct StreamHandle {
    pub id: StreamId,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub stats: Arc<SourceStats>,
    tuning: Arc<Tuning>,
}

impl Running for StreamHandle {
    fn id(&self) -> &StreamId {
        &self.id
    }

    fn stats(&self) -> &Arc<SourceStats> {
        &self.stats
    }

    fn retune(&self, fps: f64, keyframes_only: bool) {
        if let Ok(mut s) = self.tuning.sampler.lock() {
            s.retune(fps, keyframes_only);
        }
        if let Some(keys) = self.tuning.keys.lock().ok().and_then(|k| k.clone()) {
            keys.set_property_from_str("drop-buffer-flags", pipeline::key_flags(keyframes_only));
        }
    }

    fn stop(mut self: Box<Self>) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
impl StreamHandle {
    /// A handle whose thread ignores its stop flag for `hold`: a stand-in for
    /// a pipeline wedged in teardown, which no real camera produces on demand.
    pub(crate) fn wedged(id: StreamId, hold: Duration) -> Self {
        StreamHandle {
            id,
            stop: Arc::new(AtomicBool::new(false)),
            thread: Some(std::thread::spawn(move || std::thread::sleep(hold))),
            stats: Arc::default(),
            tuning: Arc::new(Tuning {
                sampler: Mutex::new(Sampler::new(1.0, false)),
                keys: Mutex::new(None),
            }),
        }
    }
}

/// Initialises GStreamer once; safe to call repeatedly.
pub fn init() -> Result<(), String> {
    gst::init().map_err(|e| format!("GStreamer init failed: {e}"))
}

/// Starts a stream's supervisor thread.
pub fn spawn(
    cfg: StreamSpec,
    branches: Vec<Branch>,
    submit: Submitter,
    report: Reporter,
    clocks: Arc<dyn Clocks>,
    tap: Option<Arc<tap::Tap>>,
) -> std::io::Result<StreamHandle> {
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(SourceStats::default());
    let tuning = Arc::new(Tuning {
        sampler: Mutex::new(Sampler::new(cfg.fps, cfg.keyframes_only)),
        keys: Mutex::new(None),
    });
    let id = cfg.id.clone();
    // One gate per branch, kept across rebuilds: each model size compares
    // with its own last scored frame.
    // Each stream its own phase of forced refreshes, the same across runs.
    let phase = phase_of(&id);
    let gates = branches
        .iter()
        .map(|_| Gate::with_phase(&cfg.motion, phase))
        .collect();
    let bits = bitgate::BitGate::new(&cfg.motion, phase);
    let run = Supervisor {
        bits,
        cfg,
        branches,
        gates,
        submit,
        report,
        stop: Arc::clone(&stop),
        stats: Arc::clone(&stats),
        tuning: Arc::clone(&tuning),
        clocks,
        tap,
    };
    let thread = std::thread::Builder::new()
        .name(format!("src-{id}"))
        .spawn(move || run.supervise())?;
    Ok(StreamHandle {
        id,
        stop,
        thread: Some(thread),
        stats,
        tuning,
    })
}

/// One stream's supervisor thread: builds the pipeline, watches it, and
/// rebuilds it after a backoff when it fails.
struct Supervisor {
    cfg: StreamSpec,
    branches: Vec<Branch>,
    /// Each branch's motion gate, when gating is on.
    gates: Vec<Option<Arc<FrameGate>>>,
    /// The compressed-domain gate before the decoder, when it is on.
    bits: Option<Arc<bitgate::BitGate>>,
    submit: Submitter,
    report: Reporter,
    stop: Arc<AtomicBool>,
    stats: Arc<SourceStats>,
    tuning: Arc<Tuning>,
    clocks: Arc<dyn Clocks>,
    tap: Option<Arc<tap::Tap>>,
}

/// What one pipeline run shares with its callbacks.
struct RunState {
    time: Arc<Mutex<StreamTime>>,
    seq: Arc<AtomicU64>,
    last_frame: Arc<Mutex<Option<Instant>>>,
    got_frame: Arc<AtomicBool>,
}

impl Supervisor {
    fn supervise(self) {
        let time = Arc::new(Mutex::new(StreamTime::new()));
        let seq = Arc::new(AtomicU64::new(0));
        let mut failures = 0u32;
        while !self.stop.load(Ordering::SeqCst) {
            if let Ok(mut c) = time.lock() {
                c.rebase(self.clocks.now());
            }
            let run = RunState {
                time: Arc::clone(&time),
                seq: Arc::clone(&seq),
                last_frame: Arc::default(),
                got_frame: Arc::default(),
            };
            match self.run_once(&run) {
                RunEnd::Stopped => break,
                RunEnd::Finished => {
                    (self.report)(SourceEvent::Finished(self.cfg.id.clone()));
                    break;
                }
                RunEnd::Failed { reason, had_frames } => {
                    failures = if had_frames { 0 } else { failures + 1 };
                    self.back_off(reason, failures);
                }
            }
        }
    }

    /// Reports the stream down and waits out the backoff (or a stop).
    fn back_off(&self, reason: String, failures: u32) {
        let delay = backoff_delay(failures, self.cfg.max_backoff, self.clocks.jitter());
        self.stats.restarts.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(stream = %self.cfg.id, %reason, retry_in_ms = delay.as_millis() as u64, "stream down");
        (self.report)(SourceEvent::Down {
            stream: self.cfg.id.clone(),
            reason,
            retry_in: delay,
        });
        let until = self.clocks.now() + delay;
        while !self.stop.load(Ordering::SeqCst) {
            let left = until.saturating_duration_since(self.clocks.now());
            if left.is_zero() {
                break;
            }
            self.clocks
                .sleep_blocking(left.min(Duration::from_millis(50)));
        }
    }

    fn run_once(&self, run: &RunState) -> RunEnd {
        let failed = |reason: String| RunEnd::Failed {
            reason,
            had_frames: false,
        };
        let outs: Vec<Output> = self.branches.iter().map(|b| b.out).collect();
        let line = pipeline::launch_line(&self.cfg, &outs, self.tap.is_some());
        let pipeline = match gst::parse::launch(&line) {
            Ok(p) => p,
            Err(e) => return failed(format!("cannot build pipeline: {e}")),
        };
        let Ok(pipeline) = pipeline.downcast::<gst::Pipeline>() else {
            return failed("launch line did not produce a pipeline".into());
        };
        // One decoder thread per stream: with many cameras on few cores, libav's
        // frame threading only adds buffered frames (memory, latency) per stream.
        pipeline.connect_deep_element_added(|_, _, element| {
            let is_libav = element
                .factory()
                .is_some_and(|f| f.name().starts_with("avdec_"));
            if is_libav && element.has_property("max-threads") {
                element.set_property("max-threads", 1i32);
            }
        });
        let (Some(gate), Some(keys)) = (
            pipeline.by_name(pipeline::GATE),
            pipeline.by_name(pipeline::KEYS),
        ) else {
            return failed("pipeline is missing its gate or keys element".into());
        };
        let sinks: Option<Vec<gst_app::AppSink>> = (0..self.branches.len())
            .map(|i| {
                pipeline
                    .by_name(&format!("{}{i}", pipeline::SINK))
                    .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
            })
            .collect();
        let Some(sinks) = sinks else {
            return failed("pipeline is missing an appsink".into());
        };
        if let Ok(mut k) = self.tuning.keys.lock() {
            *k = Some(keys.clone());
        }
        self.gate_frames(&gate, run);
        self.gate_keyframes(&keys, run);
        for (i, (sink, branch)) in sinks.iter().zip(&self.branches).enumerate() {
            let motion = self.gates.get(i).cloned().flatten();
            self.take_frames(sink, gate.static_pad("src"), run, (branch, motion), i == 0);
        }
        if let Some(tap) = &self.tap {
            let Some(tap_sink) = pipeline
                .by_name(pipeline::TAP)
                .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
            else {
                return failed("pipeline is missing its recording tap".into());
            };
            tap.upstream_restarted();
            feed_tap(&tap_sink, Arc::clone(tap));
        }
        if let Some(bus) = pipeline.bus() {
            bus.set_sync_handler(|_, msg| {
                lower_streaming_thread_priority(msg);
                gst::BusSyncReply::Pass
            });
        }
        let end = self.watch_bus(&pipeline, run);
        if let Ok(mut k) = self.tuning.keys.lock() {
            *k = None;
        }
        teardown::stop_pipeline(
            pipeline,
            &format!("stream {}", self.cfg.id),
            teardown::TEARDOWN_LIMIT,
            &self.stats.abandoned,
        );
        end
    }

    /// The sampler decides right after the decoder; refused frames go no further.
    fn gate_frames(&self, gate: &gst::Element, run: &RunState) {
        let Some(pad) = gate.static_pad("src") else {
            return;
        };
        let (time, tuning, clocks) = (
            Arc::clone(&run.time),
            Arc::clone(&self.tuning),
            Arc::clone(&self.clocks),
        );
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let Some(buf) = info.buffer() else {
                return gst::PadProbeReturn::Ok;
            };
            let pts = buf.pts().map_or(0.0, |p| p.nseconds() as f64 / 1e9);
            let key = !buf.flags().contains(gst::BufferFlags::DELTA_UNIT);
            let now = clocks.now();
            let t = time
                .lock()
                .map(|mut c| c.stream_secs(pts, now))
                .unwrap_or(0.0);
            let admit = tuning.sampler.lock().is_ok_and(|mut s| s.admit(t, key));
            if admit {
                gst::PadProbeReturn::Ok
            } else {
                gst::PadProbeReturn::Drop
            }
        });
    }

    /// In keyframe mode, the compressed-domain gate decides before the
    /// decoder (after the sampler: a keyframe it will refuse is not decoded
    /// either); a keyframe left undecoded still shows the stream alive.
    fn gate_keyframes(&self, keys: &gst::Element, run: &RunState) {
        let Some(gate) = self.bits.clone() else {
            return;
        };
        let (time, tuning, clocks) = (
            Arc::clone(&run.time),
            Arc::clone(&self.tuning),
            Arc::clone(&self.clocks),
        );
        let sampling = move |pts: f64| {
            let Ok(sampler) = tuning.sampler.lock() else {
                return bitgate::Sampling::Off;
            };
            if !sampler.keyframes_only() {
                return bitgate::Sampling::Off;
            }
            let now = clocks.now();
            match time.lock().map(|mut c| c.stream_secs(pts, now)) {
                Ok(t) if sampler.would_admit(t) => bitgate::Sampling::Due(t),
                Ok(_) => bitgate::Sampling::Early,
                Err(_) => bitgate::Sampling::Off,
            }
        };
        let (last_frame, stats, clocks, tuning) = (
            Arc::clone(&run.last_frame),
            Arc::clone(&self.stats),
            Arc::clone(&self.clocks),
            Arc::clone(&self.tuning),
        );
        let skipped = move |t: f64| {
            // The sample was taken and judged unchanged: the sampler's
            // grid moves on as if it had been decoded.
            if let Ok(mut s) = tuning.sampler.lock() {
                s.admit(t, true);
            }
            stats.undecoded.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut l) = last_frame.lock() {
                *l = Some(clocks.now());
            }
        };
        bitgate::watch(
            keys,
            bitgate::Wiring {
                gate,
                teachers: self.gates.iter().flatten().cloned().collect(),
                sampling: Box::new(sampling),
                skipped: Box::new(skipped),
            },
        );
    }

    /// Hands every frame the appsink gets to the pool.
    fn take_frames(
        &self,
        sink: &gst_app::AppSink,
        caps_source: Option<gst::Pad>,
        run: &RunState,
        (branch, motion): (&Branch, Option<Arc<FrameGate>>),
        first: bool,
    ) {
        let (id, submit, stats, seq) = (
            self.cfg.id.clone(),
            self.submit.clone(),
            Arc::clone(&self.stats),
            Arc::clone(&run.seq),
        );
        let (time, stop, clocks) = (
            Arc::clone(&run.time),
            Arc::clone(&self.stop),
            Arc::clone(&self.clocks),
        );
        let (last_frame, got_frame, report) = (
            Arc::clone(&run.last_frame),
            Arc::clone(&run.got_frame),
            Arc::clone(&self.report),
        );
        let letterbox = branch.out.resize == crate::model::Resize::Letterbox;
        let models = Arc::clone(&branch.models);
        // With several sizes, one sampled frame reaches several sinks; it
        // counts once, at the first.
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |appsink| {
                    let sample = appsink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    // A stopped stream submits nothing more, even if its
                    // pipeline is slow to tear down.
                    if stop.load(Ordering::SeqCst) {
                        return Err(gst::FlowError::Flushing);
                    }
                    let (arrived, wall) = (clocks.now(), clocks.wall());
                    // Converters keep the pts, so this is the time the gate saw.
                    let pts = sample
                        .buffer()
                        .and_then(|b| b.pts())
                        .map_or(0.0, |p| p.nseconds() as f64 / 1e9);
                    let t = time
                        .lock()
                        .map(|mut c| c.stream_secs(pts, arrived))
                        .unwrap_or(0.0);
                    let Some(frame) = copy_rgb(&sample) else {
                        tracing::warn!(stream = %id, "could not read a frame; skipped");
                        return Ok(gst::FlowSuccess::Ok);
                    };
                    let content = match (&caps_source, letterbox) {
                        (Some(p), true) => content_rect(p, frame.1, frame.2),
                        _ => [0.0, 0.0, 1.0, 1.0],
                    };
                    let aspect =
                        caps_source.as_ref().and_then(display_aspect).unwrap_or(0.0) as f32;
                    if let Ok(mut l) = last_frame.lock() {
                        *l = Some(arrived);
                    }
                    if !got_frame.swap(true, Ordering::SeqCst) {
                        tracing::info!(stream = %id, "stream up");
                        report(SourceEvent::Up(id.clone()));
                    }
                    if first {
                        stats.frames.fetch_add(1, Ordering::Relaxed);
                    }
                    let next = Frame {
                        stream_id: id.clone(),
                        seq: seq.fetch_add(1, Ordering::Relaxed),
                        wall,
                        arrived,
                        stream_secs: t,
                        width: frame.1,
                        height: frame.2,
                        rgb: frame.0,
                        content,
                        aspect,
                        models: Arc::clone(&models),
                    };
                    submit.submit_gated(next, motion.as_ref());
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
    }

    fn watch_bus(&self, pipeline: &gst::Pipeline, run: &RunState) -> RunEnd {
        let had = || run.got_frame.load(Ordering::SeqCst);
        if let Err(e) = pipeline.set_state(gst::State::Playing) {
            return RunEnd::Failed {
                reason: format!("cannot start pipeline: {e}"),
                had_frames: false,
            };
        }
        let Some(bus) = pipeline.bus() else {
            return RunEnd::Failed {
                reason: "pipeline has no bus".into(),
                had_frames: false,
            };
        };
        let started = self.clocks.now();
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return RunEnd::Stopped;
            }
            if let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(200)) {
                if let Some(end) = self.ended_by(&msg, had()) {
                    return end;
                }
            }
            // Stall watchdog: measured from the last frame, or from the start.
            let since = run
                .last_frame
                .lock()
                .ok()
                .and_then(|l| *l)
                .unwrap_or(started);
            let quiet = self.clocks.now().saturating_duration_since(since);
            if quiet > self.cfg.stall_timeout {
                return RunEnd::Failed {
                    reason: format!("no frame for {:.1} s (stalled)", quiet.as_secs_f64()),
                    had_frames: had(),
                };
            }
        }
    }

    /// Whether a bus message ends this run, and how.
    fn ended_by(&self, msg: &gst::Message, had_frames: bool) -> Option<RunEnd> {
        use gst::MessageView;
        match msg.view() {
            MessageView::Eos(_) if matches!(self.cfg.url, SourceUrl::File(_)) => {
                Some(RunEnd::Finished)
            }
            MessageView::Eos(_) => Some(RunEnd::Failed {
                reason: "end of stream".into(),
                had_frames,
            }),
            MessageView::Error(err) => {
                let from = err
                    .src()
                    .map(|s| s.path_string().to_string())
                    .unwrap_or_default();
                let debug = err.debug().map(|d| format!(" ({d})")).unwrap_or_default();
                let debug: String = debug.chars().take(300).collect();
                Some(RunEnd::Failed {
                    reason: format!("{from}: {}{debug}", err.error()),
                    had_frames,
                })
            }
            _ => None,
        }
    }
}

enum RunEnd {
    Stopped,
    Finished,
    Failed { reason: String, had_frames: bool },
}

/// Niceness of GStreamer streaming threads, relative to the inference workers
/// (`[runtime] streaming_nice`, default 5; one setting for the process).
///
/// When many cameras send keyframes at the same moment, the decoders and the
/// inference workers compete for the cores. The frames being scored are the
/// ones an alert waits for, so streaming threads yield to them: measured in
/// `benches/streams.rs` and `sightline bench` (docs/PERFORMANCE.md). Raising
/// priority needs privileges; lowering it does not.
static STREAMING_NICE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(5);

/// Sets the niceness streaming threads take when they start (0–19).
pub fn set_streaming_nice(nice: i32) {
    STREAMING_NICE.store(nice.clamp(0, 19), std::sync::atomic::Ordering::Relaxed);
}

/// A `stream-status` ENTER message is posted from the new streaming thread
/// itself, so a synchronous bus handler can renice that thread.
/// Every encoded unit of the tap branch goes to the recorder (or nowhere).
fn feed_tap(sink: &gst_app::AppSink, tap: Arc<tap::Tap>) {
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |appsink| {
                if let Ok(sample) = appsink.pull_sample() {
                    tap.push(&sample);
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
}

fn lower_streaming_thread_priority(msg: &gst::Message) {
    if let gst::MessageView::StreamStatus(s) = msg.view() {
        if s.get().0 == gst::StreamStatusType::Enter {
            // SAFETY: gettid and setpriority have no memory-safety preconditions.
            unsafe {
                let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
                let nice = STREAMING_NICE.load(std::sync::atomic::Ordering::Relaxed);
                libc::setpriority(libc::PRIO_PROCESS, tid, nice);
            }
        }
    }
}

/// Copies an RGB sample into a tightly packed buffer, honouring the row stride.
fn copy_rgb(sample: &gst::Sample) -> Option<(Vec<u8>, u32, u32)> {
    let caps = sample.caps()?;
    let info = gst_video::VideoInfo::from_caps(caps).ok()?;
    let buffer = sample.buffer()?;
    let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info).ok()?;
    let (w, h) = (info.width() as usize, info.height() as usize);
    let stride = frame.info().stride()[0] as usize;
    let data = frame.plane_data(0).ok()?;
    let mut out = Vec::with_capacity(w * h * 3);
    for row in 0..h {
        let start = row * stride;
        out.extend_from_slice(data.get(start..start + w * 3)?);
    }
    Some((out, w as u32, h as u32))
}

/// Display aspect ratio (width / height) of the decoded picture.
fn display_aspect(pad: &gst::Pad) -> Option<f64> {
    let info = pad
        .current_caps()
        .and_then(|c| gst_video::VideoInfo::from_caps(&c).ok())?;
    let par = info.par();
    Some(
        info.width() as f64 * par.numer() as f64
            / (info.height() as f64 * par.denom().max(1) as f64),
    )
}

/// Where a letterboxed picture sits in a `w`×`h` output, from the decoded caps.
fn content_rect(pad: &gst::Pad, w: u32, h: u32) -> [f32; 4] {
    let full = [0.0, 0.0, 1.0, 1.0];
    let Some(dar) = display_aspect(pad) else {
        return full;
    };
    let out = w as f64 / h as f64;
    if dar > out {
        let ch = out / dar;
        [
            0.0,
            ((1.0 - ch) / 2.0) as f32,
            1.0,
            ((1.0 + ch) / 2.0) as f32,
        ]
    } else {
        let cw = dar / out;
        [
            ((1.0 - cw) / 2.0) as f32,
            0.0,
            ((1.0 + cw) / 2.0) as f32,
            1.0,
        ]
    }
}
