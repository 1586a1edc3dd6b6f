//! Stopping a GStreamer pipeline without letting it take its camera down
//! with it. `set_state(Null)` normally returns in milliseconds, but rtspsrc
//! can deadlock in its teardown when the server ends the stream at the
//! moment it is stopped (seen in `sightline bench soak`: a camera whose
//! footage ended stayed silent for good, its supervisor thread stuck in
//! `set_state`). The teardown runs on a thread of its own; if it has not
//! finished within [`TEARDOWN_LIMIT`], that thread and its pipeline are
//! abandoned (logged and counted) and the caller goes on to build a new one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;

/// How long a pipeline's teardown may take before it is abandoned.
pub const TEARDOWN_LIMIT: Duration = Duration::from_secs(5);

/// Sets `pipeline` to Null, waiting at most `limit`; returns whether it
/// finished. A stuck teardown adds one to `abandoned`.
pub fn stop_pipeline(
    pipeline: gst::Pipeline,
    what: &str,
    limit: Duration,
    abandoned: &AtomicU64,
) -> bool {
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("teardown".into())
        .spawn(move || {
            let _ = pipeline.set_state(gst::State::Null);
            let _ = tx.send(());
        });
    if let Err(e) = spawned {
        // The pipeline went with the closure; nothing is left to stop here.
        tracing::error!(what, error = %e, "cannot start a thread to stop a pipeline");
        return false;
    }
    if rx.recv_timeout(limit).is_ok() {
        return true;
    }
    abandoned.fetch_add(1, Ordering::Relaxed);
    tracing::error!(
        what,
        limit_secs = limit.as_secs_f64(),
        "a GStreamer pipeline did not stop in time; it is abandoned and a new one starts"
    );
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipeline_that_stops_is_not_counted() {
        gst::init().expect("GStreamer");
        let p = gst::parse::launch("videotestsrc ! fakesink")
            .expect("pipeline")
            .downcast::<gst::Pipeline>()
            .expect("a pipeline");
        p.set_state(gst::State::Playing).expect("playing");
        let abandoned = AtomicU64::new(0);
        assert!(stop_pipeline(p, "test", TEARDOWN_LIMIT, &abandoned));
        assert_eq!(abandoned.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_teardown_that_hangs_is_abandoned_within_the_limit() {
        gst::init().expect("GStreamer");
        // A streaming thread held in a pad probe stands in for rtspsrc's
        // deadlock: set_state(Null) waits for it to leave.
        let p = gst::parse::launch("videotestsrc name=src ! fakesink")
            .expect("pipeline")
            .downcast::<gst::Pipeline>()
            .expect("a pipeline");
        let (entered_tx, entered_rx) = std::sync::mpsc::channel();
        let pad = p
            .by_name("src")
            .and_then(|s| s.static_pad("src"))
            .expect("src pad");
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            let _ = entered_tx.send(());
            std::thread::sleep(Duration::from_secs(3));
            gst::PadProbeReturn::Ok
        });
        p.set_state(gst::State::Playing).expect("playing");
        entered_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("a buffer reached the probe");
        let abandoned = AtomicU64::new(0);
        let t = std::time::Instant::now();
        let stopped = stop_pipeline(p, "test", Duration::from_millis(300), &abandoned);
        assert!(!stopped, "the teardown was held up");
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        assert_eq!(abandoned.load(Ordering::Relaxed), 1);
    }
}
