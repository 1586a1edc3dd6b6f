//! The compressed-domain gate: in keyframe mode, whether a keyframe is
//! worth decoding at all, judged from the sizes of the coded frames before
//! it. Decoding a 720p keyframe costs about 15 ms here; its size and the
//! sizes of the delta frames around it come free with the bitstream.
//!
//! A still scene's delta frames are small, and motion makes them larger,
//! but "small" depends on the camera: sensor noise, night gain, rain and
//! the encoder's rate control all move it. So each stream learns it from
//! the stretches the pixel gate ([`crate::pool::motion`]) looked at and
//! found still. The figure of a stretch (the delta frames between two
//! keyframes) is the 75th percentile of their sizes: single large frames
//! (an encoder refreshing quality after a keyframe) do not count, while
//! motion raises most frames. The floor is the 75th percentile of the last
//! [`WINDOW`] still stretches' figures, scaled by the sensitivity.
//!
//! A keyframe goes to the decoder when nothing is learned yet, when its
//! stretch's figure is above the floor, when its stretch has no delta
//! frames to judge, and, as with the pixel gate, at least every
//! `max_unscored_secs` and every [`OCCUPIED_SECS`] while the last results
//! held detections. Otherwise it is dropped before the decoder and the last
//! results stand. Everything decoded still passes the pixel gate.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use gstreamer as gst;
use gstreamer::prelude::*;

use crate::domain::MotionSpec;
use crate::pool::motion::OCCUPIED_SECS;
use crate::pool::FrameGate;

/// For this long after the last results that held detections, a keyframe
/// is still decoded every [`OCCUPIED_SECS`]: an occurrence ends after
/// several frames without its object, and undecoded keyframes bring no
/// such frames (the pixel gate's repeats do).
pub const AFTER_OCCUPIED_SECS: f64 = 10.0;
/// Still stretches the floor is learned from (the newest).
pub const WINDOW: usize = 16;
/// Still stretches needed before any keyframe is left undecoded.
pub const MIN_LEARNED: usize = 4;
/// Which of the learned still figures is the floor: the 75th percentile
/// (the 13th of 16). A still stretch comes out above it now and then;
/// decoded, the pixel gate finds it still and it is learned, so the floor
/// follows. The 90th percentile was tried: 15% less CPU on the bench, but
/// 7% fewer alerts and one clip's onset a keyframe later.
const FLOOR_QUANTILE: f64 = 0.75;

/// What the pixel gate behind this one says.
#[derive(Debug, Clone, Copy, Default)]
pub struct Teacher {
    /// The last scored results held detections.
    pub occupied: bool,
    /// The stream time of the last frame it compared, and whether its
    /// picture had moved.
    pub last_look: Option<(f64, bool)>,
}

/// One stream's compressed-domain gate.
pub struct BitGate {
    /// Floor multiplier: 1.5 at sensitivity 0 down to 0.5 at 1.
    margin: f64,
    max_unscored_secs: f64,
    /// In [0, 1): the first forced decode after learning comes this share
    /// of `max_unscored_secs` early, so that streams started together (and
    /// learning together) do not all decode the same keyframe instant.
    phase: f64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Sizes of the delta frames since the last keyframe.
    deltas: Vec<u32>,
    /// Stream time of the last keyframe sent to the decoder.
    last_sent: Option<f64>,
    /// The last sent keyframe's time and its stretch's figure, until the
    /// pixel gate says whether its picture moved.
    pending: Option<(f64, f64)>,
    /// Figures of the newest still stretches, oldest first.
    stills: VecDeque<f64>,
    /// Stream time of the last keyframe at which the results held detections.
    occupied_at: Option<f64>,
}

/// The `q` quantile of `v` (sorted in place, nearest rank below); 0 when
/// empty.
fn quantile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 * q) as usize).min(v.len() - 1)]
}

impl BitGate {
    /// A gate for a stream with these settings, first forced decode after
    /// learning `phase` (in [0, 1)) of `max_unscored_secs` early; `None`
    /// unless motion gating and its compressed stage are on.
    pub fn new(spec: &MotionSpec, phase: f64) -> Option<Arc<BitGate>> {
        (spec.enabled && spec.compressed).then(|| {
            Arc::new(BitGate {
                margin: 1.5 - f64::from(spec.compressed_sensitivity.clamp(0.0, 1.0)),
                max_unscored_secs: spec.max_unscored_secs,
                phase: phase.clamp(0.0, 0.999),
                state: Mutex::new(State::default()),
            })
        })
    }

    /// Notes a delta frame of `bytes`.
    pub fn delta(&self, bytes: usize) {
        if let Ok(mut st) = self.state.lock() {
            st.deltas.push(u32::try_from(bytes).unwrap_or(u32::MAX));
        }
    }

    /// The floor a stretch's figure must pass, once enough is learned.
    pub fn floor(&self) -> Option<f64> {
        let st = self.state.lock().ok()?;
        self.floor_of(&st)
    }

    fn floor_of(&self, st: &State) -> Option<f64> {
        if st.stills.len() < MIN_LEARNED {
            return None;
        }
        let mut learned: Vec<f64> = st.stills.iter().copied().collect();
        Some(quantile(&mut learned, FLOOR_QUANTILE) * self.margin)
    }

    /// Whether the keyframe at stream time `t` goes to the decoder, given
    /// what the pixel gate said since the last one.
    pub fn keyframe(&self, t: f64, teacher: Teacher) -> bool {
        let Ok(mut guard) = self.state.lock() else {
            return true;
        };
        let st = &mut *guard;
        // Learn from the last decoded keyframe's stretch once the pixel
        // gate has looked at that keyframe.
        if let (Some((sent, figure)), Some((looked, moved))) = (st.pending, teacher.last_look) {
            if (looked - sent).abs() < 1e-6 {
                st.pending = None;
                if !moved {
                    if st.stills.len() + 1 == MIN_LEARNED {
                        // Learned: from here the forced decodes keep this
                        // stream's own phase.
                        st.last_sent = Some(sent - self.phase * self.max_unscored_secs);
                    }
                    st.stills.push_back(figure);
                    if st.stills.len() > WINDOW {
                        st.stills.pop_front();
                    }
                }
            }
        }
        let mut sizes: Vec<f64> = st.deltas.drain(..).map(f64::from).collect();
        let judged = !sizes.is_empty();
        let figure = quantile(&mut sizes, 0.75);
        // Stream time only rises; after a jump back, start the count over.
        let since = st
            .last_sent
            .filter(|s| *s <= t)
            .map_or(f64::INFINITY, |s| t - s);
        if teacher.occupied {
            st.occupied_at = Some(t);
        }
        let lately = st
            .occupied_at
            .is_some_and(|o| o <= t && t - o < AFTER_OCCUPIED_SECS);
        let due = if lately {
            OCCUPIED_SECS.min(self.max_unscored_secs)
        } else {
            self.max_unscored_secs
        };
        let quiet = self.floor_of(st).is_some_and(|floor| figure <= floor);
        let decode = !judged || since >= due || !quiet;
        if decode {
            st.last_sent = Some(t);
            st.pending = judged.then_some((t, figure));
        }
        decode
    }
}

/// What the stream says of a keyframe about to be decoded.
pub(super) enum Sampling {
    /// Not in keyframe mode: every unit passes, the gate stays out.
    Off,
    /// The sampler will refuse it (it comes before the next sample is due):
    /// no need to decode it.
    Early,
    /// Due at this stream time: the gate decides.
    Due(f64),
}

/// What the probe before the decoder needs from its stream.
pub(super) struct Wiring {
    pub gate: Arc<BitGate>,
    /// The pixel gates behind this one (one per model size); the first
    /// one's looks are learned from.
    pub teachers: Vec<Arc<FrameGate>>,
    /// What the sampler says of a keyframe with this pts.
    pub sampling: Box<dyn Fn(f64) -> Sampling + Send + Sync>,
    /// Told of each keyframe left undecoded, with its stream time: it
    /// takes its sample's place (the sampler counts it as taken).
    pub skipped: Box<dyn Fn(f64) + Send + Sync>,
}

impl Wiring {
    fn teacher(&self) -> Teacher {
        Teacher {
            occupied: self.teachers.iter().any(|g| g.occupied()),
            last_look: self.teachers.first().and_then(|g| g.last_look()),
        }
    }
}

/// Watches the coded units around `keys` (the element that drops delta
/// units before the decoder in keyframe mode): delta frames are measured as
/// they enter it, and keyframes the gate leaves undecoded are dropped as
/// they leave it. (Dropping on its sink pad made GStreamer 1.22 unref a
/// null buffer, a CRITICAL for every drop; its source pad drops cleanly.)
pub(super) fn watch(keys: &gst::Element, w: Wiring) {
    let (Some(sink), Some(src)) = (keys.static_pad("sink"), keys.static_pad("src")) else {
        return;
    };
    let gate = Arc::clone(&w.gate);
    sink.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(buf) = info.buffer() {
            if buf.flags().contains(gst::BufferFlags::DELTA_UNIT) {
                gate.delta(buf.size());
            }
        }
        gst::PadProbeReturn::Ok
    });
    src.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        let Some(buf) = info.buffer() else {
            return gst::PadProbeReturn::Ok;
        };
        if buf.flags().contains(gst::BufferFlags::DELTA_UNIT) {
            return gst::PadProbeReturn::Ok;
        }
        let pts = buf.pts().map_or(0.0, |p| p.nseconds() as f64 / 1e9);
        let t = match (w.sampling)(pts) {
            Sampling::Off => return gst::PadProbeReturn::Ok,
            Sampling::Early => return gst::PadProbeReturn::Drop,
            Sampling::Due(t) => t,
        };
        if w.gate.keyframe(t, w.teacher()) {
            gst::PadProbeReturn::Ok
        } else {
            (w.skipped)(t);
            gst::PadProbeReturn::Drop
        }
    });
}

#[cfg(test)]
mod tests;
