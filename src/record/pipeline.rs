//! One stream's recorder: a GStreamer pipeline of its own that stores the
//! camera's encoded video as it arrives, without decoding, cut into
//! keyframe-aligned MPEG-TS segments by `splitmuxsink`. Its input is either
//! the detection pipeline's [`Tap`] (the same camera session, split before
//! the decoder) or, for a stream with a `record_url` (a camera's main
//! stream), a camera session of its own. Either way it is a pipeline apart
//! from detection's: a full disk or a failing write stops recording, never
//! detection. It restarts after failures, and pauses while the disk is
//! short of space.

use crate::source::teardown::{stop_pipeline, TEARDOWN_LIMIT};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;

use super::segments::Index;
use crate::clock::Clocks;
use crate::domain::{SourceUrl, StreamSpec};
use crate::source::tap::Tap;

/// What a recorder reports about itself.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RecordStatus {
    pub recording: bool,
    /// Why recording is paused (e.g. the disk is full), while it is.
    pub paused: Option<String>,
    pub last_error: Option<String>,
    /// Where the video comes from: `tap` (the detection pipeline's camera
    /// session), `record_url` or `url` (a session of the recorder's own).
    pub input: &'static str,
    /// Recording pipelines whose teardown hung and were left behind.
    pub abandoned: u64,
}

/// Everything one recorder thread needs.
pub struct RecorderRun {
    pub spec: StreamSpec,
    pub input: Input,
    pub dir: PathBuf,
    pub segment: Duration,
    pub min_free_bytes: u64,
    pub index: Arc<Mutex<Index>>,
    pub status: Arc<Mutex<RecordStatus>>,
    pub stop: Arc<AtomicBool>,
    pub clocks: Arc<dyn Clocks>,
    /// Told each time a segment closes (retention runs then).
    pub closed: Arc<tokio::sync::Notify>,
}

/// Where a recorder's video comes from.
pub enum Input {
    /// The detection pipeline's encoded units.
    Tap(Arc<Tap>),
    /// A camera session of the recorder's own.
    Url(SourceUrl),
}

/// The recorder's element that the tap feeds.
const TAP_SRC: &str = "tapped";

fn source(input: &Input, spec: &StreamSpec) -> String {
    let url = match input {
        // Queued in the appsrc, so the detection thread that pushes only
        // ever appends; the tap bounds the queue.
        Input::Tap(_) => return format!("appsrc name={TAP_SRC} format=time is-live=true"),
        Input::Url(u) => u,
    };
    let proto = match spec.transport {
        crate::domain::Transport::Tcp => "tcp",
        crate::domain::Transport::Udp => "udp",
    };
    let q = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    match url {
        // Straight to the depayloader: parsebin would add a typefinder and
        // a second parser per stream for nothing (recording is H.264 only).
        SourceUrl::Rtsp(u) => format!(
            "rtspsrc location={} protocols={proto} latency=100 ! rtph264depay",
            q(u)
        ),
        // A file plays at its own pace, as a camera would deliver it.
        SourceUrl::File(p) => format!(
            "filesrc location={} ! parsebin ! identity sync=true",
            q(&p.to_string_lossy())
        ),
        SourceUrl::Test(pattern) => format!(
            "videotestsrc pattern={pattern} is-live=true ! video/x-raw,width=640,height=480,framerate=10/1 ! \
             x264enc tune=zerolatency speed-preset=ultrafast key-int-max=10 ! h264parse"
        ),
    }
}

/// The recording launch line: no decoder anywhere.
pub fn launch_line(input: &Input, spec: &StreamSpec, segment: Duration) -> String {
    format!(
        "{} ! h264parse config-interval=-1 ! video/x-h264,stream-format=byte-stream,alignment=au ! \
         splitmuxsink name=rec muxer-factory=mpegtsmux max-size-time={} send-keyframe-requests=false",
        source(input, spec),
        segment.as_nanos()
    )
}

impl RecorderRun {
    fn set(&self, f: impl FnOnce(&mut RecordStatus)) {
        if let Ok(mut s) = self.status.lock() {
            f(&mut s);
        }
    }

    /// Records until stopped, rebuilding the pipeline after failures.
    pub fn run(self) {
        let mut failures = 0u32;
        while !self.stop.load(Ordering::SeqCst) {
            if !self.wait_for_space() {
                break;
            }
            let ended = self.run_once();
            if let Ok(mut ix) = self.index.lock() {
                ix.close(self.clocks.wall_ms());
            }
            self.set(|s| s.recording = false);
            match ended {
                Ok(()) => break,
                Err(e) => {
                    failures += 1;
                    tracing::warn!(stream = %self.spec.id, error = %e, "recording stopped; retrying");
                    self.set(|s| s.last_error = Some(e));
                    let delay = Duration::from_millis(500 * u64::from(failures.min(20)));
                    self.pause(delay);
                }
            }
        }
    }

    /// Sleeps `d` in short steps so a stop is seen.
    fn pause(&self, d: Duration) {
        let until = self.clocks.now() + d;
        while !self.stop.load(Ordering::SeqCst) && self.clocks.now() < until {
            self.clocks.sleep_blocking(Duration::from_millis(100));
        }
    }

    /// Waits until the disk has room; says so while it has not. False if
    /// stopped meanwhile.
    fn wait_for_space(&self) -> bool {
        let _ = std::fs::create_dir_all(&self.dir);
        let mut said = false;
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return false;
            }
            let free = crate::store::space::free_bytes(&self.dir).unwrap_or(u64::MAX);
            if free >= self.min_free_bytes {
                if said {
                    tracing::info!(stream = %self.spec.id, "disk space is back; recording resumes");
                }
                self.set(|s| s.paused = None);
                return true;
            }
            if !said {
                tracing::warn!(stream = %self.spec.id, dir = %self.dir.display(), free_bytes = free,
                    "recording paused: the disk is full (detection and delivery go on)");
                said = true;
            }
            let why = format!("disk full: {free} bytes free in {}", self.dir.display());
            self.set(|s| s.paused = Some(why));
            self.pause(Duration::from_secs(1));
        }
    }

    fn run_once(&self) -> Result<(), String> {
        let line = launch_line(&self.input, &self.spec, self.segment);
        let pipeline = gst::parse::launch(&line)
            .map_err(|e| format!("cannot build the recording pipeline: {e}"))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| "the recording line is not a pipeline".to_string())?;
        let rec = pipeline
            .by_name("rec")
            .ok_or_else(|| "the recording pipeline has no splitmuxsink".to_string())?;
        let (dir, index, clocks, closed) = (
            self.dir.clone(),
            Arc::clone(&self.index),
            Arc::clone(&self.clocks),
            Arc::clone(&self.closed),
        );
        rec.connect("format-location", false, move |_| {
            let ms = clocks.wall_ms();
            if let Ok(mut ix) = index.lock() {
                ix.open(ms);
            }
            closed.notify_one();
            Some(dir.join(format!("{ms}.ts")).to_string_lossy().to_value())
        });
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| format!("cannot start recording: {e}"))?;
        self.set(|s| s.recording = true);
        let tapped = match &self.input {
            Input::Tap(tap) => {
                let src = pipeline
                    .by_name(TAP_SRC)
                    .and_then(|e| e.downcast::<gstreamer_app::AppSrc>().ok())
                    .ok_or("the recording pipeline has no appsrc")?;
                tap.attach(src.clone());
                Some((tap.as_ref(), src))
            }
            Input::Url(_) => None,
        };
        let end = self.watch(&pipeline, tapped.as_ref());
        if let Some((tap, _)) = tapped {
            tap.detach();
        }
        let stuck = std::sync::atomic::AtomicU64::new(0);
        let what = format!("recording of {}", self.spec.id);
        if !stop_pipeline(pipeline, &what, TEARDOWN_LIMIT, &stuck) {
            self.set(|s| s.abandoned += stuck.into_inner());
        }
        end
    }

    /// How long a tapped recorder waits for video before it closes its
    /// segment (so clips of what came before become whole).
    fn starved_limit(&self) -> Duration {
        (self.segment * 2).max(Duration::from_secs(4))
    }

    /// Ends the pipeline cleanly: the segment being written is finished so
    /// it plays.
    fn finish(&self, pipeline: &gst::Pipeline, tapped: Option<&(&Tap, gstreamer_app::AppSrc)>) {
        match tapped {
            Some((tap, src)) => {
                tap.detach();
                let _ = src.end_of_stream();
            }
            None => {
                pipeline.send_event(gst::event::Eos::new());
            }
        }
        if let Some(bus) = pipeline.bus() {
            let _ = bus.timed_pop_filtered(
                gst::ClockTime::from_seconds(2),
                &[gst::MessageType::Eos, gst::MessageType::Error],
            );
        }
    }

    fn watch(
        &self,
        pipeline: &gst::Pipeline,
        tapped: Option<&(&Tap, gstreamer_app::AppSrc)>,
    ) -> Result<(), String> {
        let bus = pipeline.bus().ok_or("the recording pipeline has no bus")?;
        loop {
            if self.stop.load(Ordering::SeqCst) {
                self.finish(pipeline, tapped);
                return Ok(());
            }
            if let Some((tap, _)) = tapped.filter(|(t, _)| t.starved_for() > self.starved_limit()) {
                let waited = tap.starved_for();
                self.finish(pipeline, tapped);
                if matches!(self.spec.url, SourceUrl::File(_)) {
                    return Ok(()); // the file played out: so does its recording
                }
                return Err(format!(
                    "no video from the stream for {} s",
                    waited.as_secs()
                ));
            }
            let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(200)) else {
                continue;
            };
            match msg.view() {
                gst::MessageView::Eos(_)
                    if matches!(self.input, Input::Url(SourceUrl::File(_))) =>
                {
                    return Ok(())
                }
                gst::MessageView::Eos(_) => return Err("end of stream".into()),
                gst::MessageView::Error(e) => {
                    let from = e
                        .src()
                        .map(|s| s.path_string().to_string())
                        .unwrap_or_default();
                    return Err(format!("{from}: {}", e.error()));
                }
                _ => {}
            }
        }
    }
}
