//! Camera ingest: one GStreamer pipeline per stream, on its own supervisor
//! thread. A pipeline that fails to open, errors, reaches end of stream (live
//! sources) or stalls is torn down and rebuilt after a capped, jittered
//! exponential backoff; other streams never notice. Stream time stays
//! monotonic across rebuilds. GStreamer types never leave this module: the
//! rest of the daemon sees [`Frame`]s handed to a [`Submitter`].

pub mod pipeline;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;

use crate::domain::{SourceUrl, StreamSpec};
use crate::pool::Submitter;
use crate::sampler::Sampler;
use crate::types::{Frame, StreamId};
pub use pipeline::Output;

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

/// Callback for [`SourceEvent`]s.
pub type Reporter = Arc<dyn Fn(SourceEvent) + Send + Sync>;

/// Per-stream counters.
#[derive(Debug, Default)]
pub struct SourceStats {
    pub frames: AtomicU64,
    pub restarts: AtomicU64,
}

/// A running stream; dropping it does not stop it, [`StreamHandle::stop`] does.
pub struct StreamHandle {
    pub id: StreamId,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub stats: Arc<SourceStats>,
}

impl StreamHandle {
    /// Stops the pipeline and waits for its thread.
    pub fn stop(mut self) {
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
    out: Output,
    submit: Submitter,
    report: Reporter,
) -> std::io::Result<StreamHandle> {
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(SourceStats::default());
    let id = cfg.id.clone();
    let (stop2, stats2) = (Arc::clone(&stop), Arc::clone(&stats));
    let thread = std::thread::Builder::new()
        .name(format!("src-{}", cfg.id))
        .spawn(move || supervise(cfg, out, submit, report, stop2, stats2))?;
    Ok(StreamHandle {
        id,
        stop,
        thread: Some(thread),
        stats,
    })
}

/// Stream-time bookkeeping shared by the pipeline callbacks of one stream.
struct Clock {
    /// Added to this run's relative pts so time keeps rising across rebuilds.
    offset: f64,
    first_pts: Option<f64>,
    last: Option<(f64, Instant)>,
}

impl Clock {
    fn stream_secs(&mut self, pts: f64) -> f64 {
        let first = *self.first_pts.get_or_insert(pts);
        let t = self.offset + (pts - first).max(0.0);
        self.last = Some((t, Instant::now()));
        t
    }

    /// Prepares for a new pipeline: the next first frame continues from the
    /// last time seen plus the wall-clock gap.
    fn rebase(&mut self) {
        if let Some((t, at)) = self.last {
            self.offset = t + at.elapsed().as_secs_f64();
        }
        self.first_pts = None;
    }
}

fn backoff_delay(failures: u32, cap: Duration) -> Duration {
    let base = Duration::from_millis(250).saturating_mul(1u32 << failures.min(16));
    let capped = base.min(cap);
    // Jitter in [50%, 100%] of the capped delay so cameras that died together
    // do not reconnect in lockstep.
    capped.mul_f64(0.5 + rand::random::<f64>() * 0.5)
}

fn supervise(
    cfg: StreamSpec,
    out: Output,
    submit: Submitter,
    report: Reporter,
    stop: Arc<AtomicBool>,
    stats: Arc<SourceStats>,
) {
    let clock = Arc::new(Mutex::new(Clock {
        offset: 0.0,
        first_pts: None,
        last: None,
    }));
    let seq = Arc::new(AtomicU64::new(0));
    let mut failures = 0u32;
    while !stop.load(Ordering::SeqCst) {
        if let Ok(mut c) = clock.lock() {
            c.rebase();
        }
        let outcome = run_once(&cfg, out, &submit, &report, &stop, &stats, &clock, &seq);
        match outcome {
            RunEnd::Stopped => break,
            RunEnd::Finished => {
                report(SourceEvent::Finished(cfg.id.clone()));
                break;
            }
            RunEnd::Failed { reason, had_frames } => {
                failures = if had_frames { 0 } else { failures + 1 };
                let delay = backoff_delay(failures, cfg.max_backoff);
                stats.restarts.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(stream = %cfg.id, %reason, retry_in_ms = delay.as_millis() as u64, "stream down");
                report(SourceEvent::Down {
                    stream: cfg.id.clone(),
                    reason,
                    retry_in: delay,
                });
                let until = Instant::now() + delay;
                while Instant::now() < until && !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }
}

enum RunEnd {
    Stopped,
    Finished,
    Failed { reason: String, had_frames: bool },
}

#[allow(clippy::too_many_arguments)]
fn run_once(
    cfg: &StreamSpec,
    out: Output,
    submit: &Submitter,
    report: &Reporter,
    stop: &Arc<AtomicBool>,
    stats: &Arc<SourceStats>,
    clock: &Arc<Mutex<Clock>>,
    seq: &Arc<AtomicU64>,
) -> RunEnd {
    let failed = |reason: String| RunEnd::Failed {
        reason,
        had_frames: false,
    };
    let line = pipeline::launch_line(cfg, out);
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
    let (Some(gate), Some(sink)) = (
        pipeline.by_name(pipeline::GATE),
        pipeline.by_name(pipeline::SINK),
    ) else {
        return failed("pipeline is missing its gate or sink element".into());
    };
    let Ok(sink) = sink.downcast::<gst_app::AppSink>() else {
        return failed("sink is not an appsink".into());
    };

    // The sampler decides right after the decoder; refused frames go no further.
    let sampler = Arc::new(Mutex::new(Sampler::new(cfg.fps, cfg.keyframes_only)));
    if let Some(pad) = gate.static_pad("src") {
        let (clock, sampler) = (Arc::clone(clock), Arc::clone(&sampler));
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let Some(buf) = info.buffer() else {
                return gst::PadProbeReturn::Ok;
            };
            let pts = buf.pts().map_or(0.0, |p| p.nseconds() as f64 / 1e9);
            let key = !buf.flags().contains(gst::BufferFlags::DELTA_UNIT);
            let t = clock.lock().map(|mut c| c.stream_secs(pts)).unwrap_or(0.0);
            let admit = sampler.lock().map(|mut s| s.admit(t, key)).unwrap_or(false);
            if admit {
                gst::PadProbeReturn::Ok
            } else {
                gst::PadProbeReturn::Drop
            }
        });
    }

    let last_frame = Arc::new(Mutex::new(None::<Instant>));
    let got_frame = Arc::new(AtomicBool::new(false));
    {
        let (id, submit, stats, seq) = (
            cfg.id.clone(),
            submit.clone(),
            Arc::clone(stats),
            Arc::clone(seq),
        );
        let (clock, stop) = (Arc::clone(clock), Arc::clone(stop));
        let (last_frame, got_frame, report) = (
            Arc::clone(&last_frame),
            Arc::clone(&got_frame),
            Arc::clone(report),
        );
        let letterbox = out.resize == crate::model::Resize::Letterbox;
        let caps_source = gate.static_pad("src");
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |appsink| {
                    let sample = appsink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    // A stopped stream submits nothing more, even if its
                    // pipeline is slow to tear down.
                    if stop.load(Ordering::SeqCst) {
                        return Err(gst::FlowError::Flushing);
                    }
                    let arrived = Instant::now();
                    let wall = SystemTime::now();
                    // Converters keep the pts, so this is the time the gate saw.
                    let pts = sample
                        .buffer()
                        .and_then(|b| b.pts())
                        .map_or(0.0, |p| p.nseconds() as f64 / 1e9);
                    let t = clock.lock().map(|mut c| c.stream_secs(pts)).unwrap_or(0.0);
                    let Some(frame) = copy_rgb(&sample) else {
                        tracing::warn!(stream = %id, "could not read a frame; skipped");
                        return Ok(gst::FlowSuccess::Ok);
                    };
                    let content = if letterbox {
                        caps_source
                            .as_ref()
                            .map_or([0.0, 0.0, 1.0, 1.0], |p| content_rect(p, frame.1, frame.2))
                    } else {
                        [0.0, 0.0, 1.0, 1.0]
                    };
                    if let Ok(mut l) = last_frame.lock() {
                        *l = Some(arrived);
                    }
                    if !got_frame.swap(true, Ordering::SeqCst) {
                        tracing::info!(stream = %id, "stream up");
                        report(SourceEvent::Up(id.clone()));
                    }
                    stats.frames.fetch_add(1, Ordering::Relaxed);
                    submit.submit(Frame {
                        stream_id: id.clone(),
                        seq: seq.fetch_add(1, Ordering::Relaxed),
                        wall,
                        arrived,
                        stream_secs: t,
                        width: frame.1,
                        height: frame.2,
                        rgb: frame.0,
                        content,
                    });
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
    }

    if let Some(bus) = pipeline.bus() {
        bus.set_sync_handler(|_, msg| {
            lower_streaming_thread_priority(msg);
            gst::BusSyncReply::Pass
        });
    }
    let end = watch_bus(cfg, &pipeline, stop, &last_frame, &got_frame);
    let _ = pipeline.set_state(gst::State::Null);
    end
}

fn watch_bus(
    cfg: &StreamSpec,
    pipeline: &gst::Pipeline,
    stop: &AtomicBool,
    last_frame: &Mutex<Option<Instant>>,
    got_frame: &AtomicBool,
) -> RunEnd {
    let had = || got_frame.load(Ordering::SeqCst);
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
    let started = Instant::now();
    loop {
        if stop.load(Ordering::SeqCst) {
            return RunEnd::Stopped;
        }
        if let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(200)) {
            use gst::MessageView;
            match msg.view() {
                MessageView::Eos(_) => {
                    if matches!(cfg.url, SourceUrl::File(_)) {
                        return RunEnd::Finished;
                    }
                    return RunEnd::Failed {
                        reason: "end of stream".into(),
                        had_frames: had(),
                    };
                }
                MessageView::Error(err) => {
                    let from = err
                        .src()
                        .map(|s| s.path_string().to_string())
                        .unwrap_or_default();
                    let debug = err.debug().map(|d| format!(" ({d})")).unwrap_or_default();
                    let debug: String = debug.chars().take(300).collect();
                    return RunEnd::Failed {
                        reason: format!("{from}: {}{debug}", err.error()),
                        had_frames: had(),
                    };
                }
                _ => {}
            }
        }
        // Stall watchdog: measured from the last frame, or from the start.
        let since = last_frame.lock().ok().and_then(|l| *l).unwrap_or(started);
        if since.elapsed() > cfg.stall_timeout {
            return RunEnd::Failed {
                reason: format!(
                    "no frame for {:.1} s (stalled)",
                    since.elapsed().as_secs_f64()
                ),
                had_frames: had(),
            };
        }
    }
}

/// Niceness of GStreamer streaming threads, relative to the inference workers.
///
/// When many cameras send keyframes at the same moment, the decoders and the
/// inference workers compete for the cores. The frames being scored are the
/// ones an alert waits for, so streaming threads yield to them: measured in
/// `benches/streams.rs` (docs/PERFORMANCE.md). Raising priority needs
/// privileges; lowering it does not.
const STREAMING_NICE: libc::c_int = 5;

/// A `stream-status` ENTER message is posted from the new streaming thread
/// itself, so a synchronous bus handler can renice that thread.
fn lower_streaming_thread_priority(msg: &gst::Message) {
    if let gst::MessageView::StreamStatus(s) = msg.view() {
        if s.get().0 == gst::StreamStatusType::Enter {
            // SAFETY: gettid and setpriority have no memory-safety preconditions.
            unsafe {
                let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
                libc::setpriority(libc::PRIO_PROCESS, tid, STREAMING_NICE);
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

/// Where a letterboxed picture sits in a `w`×`h` output, from the decoded caps.
fn content_rect(pad: &gst::Pad, w: u32, h: u32) -> [f32; 4] {
    let full = [0.0, 0.0, 1.0, 1.0];
    let Some(info) = pad
        .current_caps()
        .and_then(|c| gst_video::VideoInfo::from_caps(&c).ok())
    else {
        return full;
    };
    let par = info.par();
    let dar = info.width() as f64 * par.numer() as f64
        / (info.height() as f64 * par.denom().max(1) as f64);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let cap = Duration::from_secs(30);
        for failures in 0..40 {
            let d = backoff_delay(failures, cap);
            let full = Duration::from_millis(250)
                .saturating_mul(1u32 << failures.min(16))
                .min(cap);
            assert!(
                d >= full / 2 && d <= full,
                "{failures}: {d:?} not in [{:?}, {full:?}]",
                full / 2
            );
        }
        let many: Vec<Duration> = (0..50).map(|_| backoff_delay(20, cap)).collect();
        assert!(
            many.iter().any(|d| *d != many[0]),
            "jitter spreads reconnects"
        );
    }

    #[test]
    fn stream_time_keeps_rising_across_a_rebuild() {
        let mut c = Clock {
            offset: 0.0,
            first_pts: None,
            last: None,
        };
        assert_eq!(c.stream_secs(100.0), 0.0);
        assert_eq!(c.stream_secs(102.5), 2.5);
        std::thread::sleep(Duration::from_millis(20));
        c.rebase();
        // A new pipeline starts its pts from zero again.
        let t = c.stream_secs(0.0);
        assert!(t >= 2.52, "continues after the gap: {t}");
        assert!(c.stream_secs(1.0) > t);
    }
}
