//! The recording tap: the detection pipeline's parsed, still-encoded video,
//! handed to the stream's recorder without a second camera session.
//!
//! The detection pipeline splits right after parsing (`tee`); one branch
//! goes on to the decoder, the other ends in an `appsink` whose callback
//! gives each access unit to [`Tap::push`]. The recorder owns a pipeline of
//! its own that starts with an `appsrc` and [`Tap::attach`]es it. The two
//! pipelines share nothing else, so a recorder that fails (a full disk, a
//! write error) or is slow never stalls or ends detection: the tap only ever
//! drops. Timestamps are rebased so the recorder sees one rising timeline
//! from its first keyframe on, across rebuilds of the detection pipeline.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use gstreamer as gst;
use gstreamer_app as gst_app;

use crate::domain::StreamId;
use crate::domain::StreamSpec;

/// What the recorder may hold queued before the tap drops (and waits for
/// the next keyframe): a few seconds of a 4K main stream.
const MAX_QUEUED_BYTES: u64 = 8 << 20;

/// Taps of every stream, shared by the sources and the recorder.
#[derive(Default)]
pub struct Taps {
    all: Mutex<HashMap<StreamId, Arc<Tap>>>,
}

impl Taps {
    /// Whether a stream's recording comes through the tap: it is recorded
    /// from the same URL it is detected on (no `record_url`), and it is not
    /// switched off.
    pub fn carries(spec: &StreamSpec) -> bool {
        spec.record_url.is_none() && spec.record != Some(false)
    }

    /// The tap of a stream (made on first use).
    pub fn get(&self, id: &StreamId) -> Arc<Tap> {
        let mut all = self.all.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(all.entry(id.clone()).or_default())
    }
}

/// One stream's hand-over point.
#[derive(Default)]
pub struct Tap {
    slot: Mutex<Slot>,
}

#[derive(Default)]
struct Slot {
    consumer: Option<gst_app::AppSrc>,
    /// Nothing is handed over until a keyframe: after attaching, after a
    /// detection rebuild, and after a drop.
    need_key: bool,
    /// Upstream time that maps to `offset` in the recorder's timeline.
    base: Option<gst::ClockTime>,
    offset: gst::ClockTime,
    /// The last timestamp handed over, and when.
    last: Option<(gst::ClockTime, Instant)>,
    caps: Option<gst::Caps>,
    /// When a unit last came through (or the recorder attached).
    fed: Option<Instant>,
}

impl Tap {
    /// The recorder's pipeline starts taking units (from the next keyframe).
    pub fn attach(&self, src: gst_app::AppSrc) {
        let mut s = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        *s = Slot {
            consumer: Some(src),
            need_key: true,
            fed: Some(Instant::now()),
            ..Slot::default()
        };
    }

    /// The recorder's pipeline is going away.
    pub fn detach(&self) {
        let mut s = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        s.consumer = None;
    }

    /// How long the attached recorder has had nothing (the camera is down,
    /// or a file source played out).
    pub fn starved_for(&self) -> std::time::Duration {
        let s = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        s.fed.map(|t| t.elapsed()).unwrap_or_default()
    }

    /// A new detection pipeline: its clock starts over, so the recorder's
    /// timeline goes on from the last unit plus the time since.
    pub(crate) fn upstream_restarted(&self) {
        let mut s = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((t, at)) = s.last {
            let gap = gst::ClockTime::try_from(at.elapsed()).unwrap_or(gst::ClockTime::ZERO);
            s.offset = t + gap;
        }
        s.base = None;
        s.need_key = true;
    }

    /// Hands one encoded access unit to the recorder, if one is attached.
    pub(crate) fn push(&self, sample: &gst::Sample) {
        let mut s = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        let Some(src) = s.consumer.clone() else {
            return;
        };
        s.fed = Some(Instant::now());
        let Some(buffer) = sample.buffer() else {
            return;
        };
        let is_key = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
        if s.need_key && !is_key {
            return;
        }
        if src.current_level_bytes() > MAX_QUEUED_BYTES {
            // The recorder is behind (a slow disk): drop until the next
            // keyframe rather than queue without bound or block detection.
            s.need_key = true;
            return;
        }
        let Some(t) = buffer.dts_or_pts() else {
            return;
        };
        let base = *s.base.get_or_insert(t);
        let offset = s.offset;
        let shift = |x: gst::ClockTime| offset + x.saturating_sub(base);
        let mut out = buffer.copy();
        {
            let b = out.make_mut();
            b.set_pts(buffer.pts().map(shift));
            b.set_dts(buffer.dts().map(shift));
        }
        if let Some(caps) = sample.caps_owned() {
            if s.caps.as_ref() != Some(&caps) {
                src.set_caps(Some(&caps));
                s.caps = Some(caps);
            }
        }
        s.last = Some((shift(t), Instant::now()));
        s.need_key = false;
        // An error means the recorder's pipeline is shutting down; the next
        // attach starts over.
        let _ = src.push_buffer(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gstreamer::prelude::*;

    fn unit(pts_ms: u64, key: bool) -> gst::Sample {
        let mut b = gst::Buffer::with_size(16).expect("buffer");
        {
            let b = b.get_mut().expect("writable");
            b.set_pts(gst::ClockTime::from_mseconds(pts_ms));
            b.set_dts(gst::ClockTime::from_mseconds(pts_ms));
            if !key {
                b.set_flags(gst::BufferFlags::DELTA_UNIT);
            }
        }
        gst::Sample::builder().buffer(&b).build()
    }

    /// Runs `f` against a tap whose recorder is an appsrc feeding an
    /// appsink, and returns the timestamps (ms) that came through.
    fn through(f: impl FnOnce(&Tap)) -> Vec<u64> {
        gst::init().expect("GStreamer");
        let p = gst::parse::launch(
            "appsrc name=src format=time ! appsink name=out sync=false max-buffers=0",
        )
        .expect("launch")
        .downcast::<gst::Pipeline>()
        .expect("pipeline");
        let src = p
            .by_name("src")
            .and_then(|e| e.downcast::<gst_app::AppSrc>().ok());
        let out = p
            .by_name("out")
            .and_then(|e| e.downcast::<gst_app::AppSink>().ok());
        let (src, out) = (src.expect("appsrc"), out.expect("appsink"));
        p.set_state(gst::State::Playing).expect("plays");
        let tap = Tap::default();
        tap.attach(src.clone());
        f(&tap);
        let _ = src.end_of_stream();
        let mut got = Vec::new();
        while let Some(s) = out.try_pull_sample(gst::ClockTime::from_seconds(5)) {
            let pts = s.buffer().and_then(|b| b.pts()).expect("pts");
            got.push(pts.mseconds());
        }
        let _ = p.set_state(gst::State::Null);
        got
    }

    #[test]
    fn starts_at_a_keyframe_and_rebases_to_zero() {
        let got = through(|t| {
            t.push(&unit(5_000, false));
            t.push(&unit(5_040, true));
            t.push(&unit(5_080, false));
        });
        assert_eq!(got, vec![0, 40]);
    }

    #[test]
    fn time_keeps_rising_across_a_detection_rebuild() {
        let got = through(|t| {
            t.push(&unit(1_000, true));
            t.push(&unit(1_100, false));
            t.upstream_restarted();
            // The new pipeline's clock starts over, and at a delta unit.
            t.push(&unit(10, false));
            t.push(&unit(50, true));
            t.push(&unit(90, false));
        });
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(&got[..2], &[0, 100]);
        assert!(got[2] >= 100 && got[3] == got[2] + 40, "{got:?}");
    }

    #[test]
    fn nothing_flows_without_a_recorder() {
        gst::init().expect("GStreamer");
        let tap = Tap::default();
        tap.push(&unit(0, true));
        let got = through(|t| {
            t.detach();
            t.push(&unit(0, true));
        });
        assert!(got.is_empty(), "{got:?}");
    }
}
