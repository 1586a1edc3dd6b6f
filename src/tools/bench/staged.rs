//! Clips with people on known paths, for tests that need the truth of every
//! track, dwell and crossing: a real person cut from a real photo (the
//! astronaut portrait in the demo clip, `tests/media/demo.mp4` at 9 s) is
//! pasted along straight-line paths over a real background (the coffee
//! still of the same clip, at 3 s), at 25 fps, 640×480, H.264 with a
//! keyframe every 12 frames.
//!
//! A path is a list of keys (time, x, y): the cut-out's top-left corner in
//! normalised picture coordinates, moving linearly from key to key, in view
//! from the first key's time to the last's.

use std::path::Path;

use anyhow::{anyhow, Context};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::clips::{element, launch, Encoder};

const W: usize = 640;
const H: usize = 480;
/// The clips' frame rate (the encoder's).
const FPS: u64 = 25;
/// The person in the demo clip's astronaut frame (pixels): the portrait is
/// letterboxed to 480×480 at x = 80, and she fills its left two thirds.
const CUT: (usize, usize, usize, usize) = (118, 0, 308, 480);

/// The size of the cut-out in a staged clip, as a fraction of the picture.
pub const PERSON_W: f32 = 0.3;
pub const PERSON_H: f32 = 0.6;

/// One person's path: (stream seconds, x, y) of the cut-out's top-left.
#[derive(Debug, Clone, PartialEq)]
pub struct Walk {
    pub keys: Vec<(f64, f32, f32)>,
}

impl Walk {
    /// Where the cut-out is at `t`, if it is in view.
    pub fn at(&self, t: f64) -> Option<(f32, f32)> {
        let first = self.keys.first()?;
        let last = self.keys.last()?;
        if t < first.0 || t > last.0 {
            return None;
        }
        let pair = self.keys.windows(2).find(|w| t >= w[0].0 && t <= w[1].0);
        let Some([a, b]) = pair.map(|w| [w[0], w[1]]) else {
            return Some((first.1, first.2));
        };
        let f = if b.0 > a.0 {
            ((t - a.0) / (b.0 - a.0)) as f32
        } else {
            0.0
        };
        Some((a.1 + (b.1 - a.1) * f, a.2 + (b.2 - a.2) * f))
    }
}

/// One RGB frame of the demo clip at `secs`, 640×480.
fn still(demo: &Path, secs: u64) -> anyhow::Result<Vec<u8>> {
    let line = format!(
        "filesrc location=\"{}\" ! qtdemux ! h264parse ! avdec_h264 ! videoconvert ! videoscale ! \
         video/x-raw,format=RGB,width={W},height={H} ! appsink name=out sync=false",
        demo.display()
    );
    let pipeline = launch(&line)?;
    let sink: gst_app::AppSink = element(&pipeline, "out")?;
    pipeline.set_state(gst::State::Playing)?;
    let want = gst::ClockTime::from_seconds(secs);
    let frame = loop {
        let sample = sink
            .pull_sample()
            .map_err(|_| anyhow!("{} ends before {secs} s", demo.display()))?;
        let Some(buf) = sample.buffer() else { continue };
        if buf.pts().is_some_and(|p| p >= want) {
            let map = buf
                .map_readable()
                .map_err(|_| anyhow!("unreadable frame"))?;
            break map.as_slice().to_vec();
        }
    };
    let _ = pipeline.set_state(gst::State::Null);
    if frame.len() != W * H * 3 {
        return Err(anyhow!("frame of {} bytes, not {W}×{H} RGB", frame.len()));
    }
    Ok(frame)
}

/// The person cut from the astronaut frame, scaled (nearest pixel) to the
/// staged size: (width, height, RGB).
fn cut_out(frame: &[u8]) -> (usize, usize, Vec<u8>) {
    let (w, h) = (
        (PERSON_W * W as f32) as usize,
        (PERSON_H * H as f32) as usize,
    );
    let (cx, cy, cw, ch) = CUT;
    let mut out = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            let (sx, sy) = (cx + x * cw / w, cy + y * ch / h);
            let i = (sy * W + sx) * 3;
            out.extend_from_slice(&frame[i..i + 3]);
        }
    }
    (w, h, out)
}

/// Builds a `secs`-long clip of `paths` over the background into `out`.
pub fn stage(demo: &Path, paths: &[Walk], secs: u32, out: &Path) -> anyhow::Result<()> {
    let background = still(demo, 3).context("the background (coffee at 3 s)")?;
    let (pw, ph, person) = cut_out(&still(demo, 9).context("the astronaut at 9 s")?);
    let fit = "videoconvert ! video/x-raw,format=I420";
    let mut enc = Encoder::start(("RGB", W as u32, H as u32), fit, 1500, out)?;
    for n in 0..secs as u64 * FPS {
        let t = n as f64 / FPS as f64;
        let mut frame = background.clone();
        for p in paths {
            if let Some((x, y)) = p.at(t) {
                paste(&mut frame, (&person, pw, ph), x, y);
            }
        }
        enc.push(gst::Buffer::from_mut_slice(frame))?;
    }
    enc.finish()
}

/// Pastes the cut-out with its top-left at normalised (x, y), clipped to
/// the picture.
fn paste(frame: &mut [u8], (person, pw, ph): (&[u8], usize, usize), x: f32, y: f32) {
    let (x0, y0) = ((x * W as f32).round() as i64, (y * H as f32).round() as i64);
    for row in 0..ph as i64 {
        let fy = y0 + row;
        if !(0..H as i64).contains(&fy) {
            continue;
        }
        let from = x0.max(0);
        let to = (x0 + pw as i64).min(W as i64);
        if from >= to {
            continue;
        }
        let src = (row as usize * pw + (from - x0) as usize) * 3;
        let dst = (fy as usize * W + from as usize) * 3;
        let len = (to - from) as usize * 3;
        frame[dst..dst + len].copy_from_slice(&person[src..src + len]);
    }
}
