//! The bench's camera clips, 25 fps H.264 with a keyframe every 12 frames
//! (so keyframe-only decoding still yields ~2 fps), 1280×720 (a camera's
//! main stream) unless asked otherwise (640×360, a sub-stream), built once
//! from the committed ground-truth clip and cached in the output folder.
//!
//! The ground-truth clip holds 10 s of a real still (coffee) and then 10 s of
//! real pedestrian footage (OpenCV's `vtest.avi`), at 10 fps. From those:
//! - `busy.mp4`: the pedestrians only, looped by the server: every sampled
//!   frame changes, the worst case for motion gating;
//! - `realistic-{k}.mp4`, k = 0..4: 50 s made of five 10 s slots, the still
//!   in four of them and the pedestrians in slot k. Camera i plays variant
//!   i mod 5, so at any time a fifth of the fleet sees people walking and the
//!   walking moves around the fleet, as it does across real cameras.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

/// Frames of the source clip: 10 fps, 768×576.
const SRC_FPS: u32 = 10;
const SRC_W: u32 = 768;
const SRC_H: u32 = 576;
/// Output frame rate, and the length of one slot in seconds.
const FPS: u32 = 25;
const SLOT_SECS: u32 = 10;
/// Realistic variants: one walking slot among this many.
pub const VARIANTS: usize = 5;

/// Which footage a camera plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// 80% of the time a still scene, 20% people walking.
    Realistic,
    /// People walking all the time, on every camera.
    Busy,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Realistic => "realistic",
            Workload::Busy => "busy",
        }
    }
}

/// A picture size, `WxH` on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolution {
    pub width: u32,
    pub height: u32,
}

impl Resolution {
    /// A camera's usual main stream.
    pub const MAIN: Resolution = Resolution {
        width: 1280,
        height: 720,
    };

    /// The clip name's suffix: none at 720p, so the cache stays valid.
    fn suffix(self) -> String {
        match self == Self::MAIN {
            true => String::new(),
            false => format!("-{}x{}", self.width, self.height),
        }
    }

    /// The encoder's bitrate: 2.5 Mbit/s at 720p, in proportion to the
    /// pixels (about what cameras use), at least 300 kbit/s.
    fn kbps(self) -> u32 {
        let share = f64::from(self.width * self.height) / (1280.0 * 720.0);
        ((2500.0 * share) as u32).max(300)
    }
}

impl std::fmt::Display for Resolution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

impl std::str::FromStr for Resolution {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad =
            || format!("{s:?} is not WIDTHxHEIGHT (even numbers, 64 to 3840), such as 640x360");
        let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
        let (width, height): (u32, u32) = (
            w.trim().parse().map_err(|_| bad())?,
            h.trim().parse().map_err(|_| bad())?,
        );
        let fine = |v: u32| (64..=3840).contains(&v) && v % 2 == 0;
        match fine(width) && fine(height) {
            true => Ok(Resolution { width, height }),
            false => Err(bad()),
        }
    }
}

/// The clips of `workload` at `size`, one per variant, built into `dir` if
/// missing.
pub fn clips(
    workload: Workload,
    size: Resolution,
    source: &Path,
    dir: &Path,
) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let sfx = size.suffix();
    let plans: Vec<(PathBuf, Vec<(Slot, u32)>)> = match workload {
        Workload::Busy => vec![(
            dir.join(format!("busy{sfx}.mp4")),
            vec![(Slot::Walking, SLOT_SECS)],
        )],
        Workload::Realistic => (0..VARIANTS)
            .map(|k| {
                let slots = (0..VARIANTS)
                    .map(|s| if s == k { Slot::Walking } else { Slot::Still })
                    .map(|slot| (slot, SLOT_SECS))
                    .collect();
                (dir.join(format!("realistic-{k}{sfx}.mp4")), slots)
            })
            .collect(),
    };
    build_missing(source, &plans, size)?;
    Ok(plans.into_iter().map(|(p, _)| p).collect())
}

/// Builds each `(file, plan)` whose file is missing from `source`, at
/// `size`; the source is decoded once at most: a cache of clips that costs
/// nothing when full.
pub fn build_missing(
    source: &Path,
    plans: &[(PathBuf, Vec<(Slot, u32)>)],
    size: Resolution,
) -> anyhow::Result<()> {
    let mut frames = None;
    for (path, slots) in plans {
        if path.is_file() {
            continue;
        }
        if frames.is_none() {
            frames = Some(decode(source)?);
        }
        let src = frames.as_deref().unwrap_or_default();
        encode(src, slots, path, size).with_context(|| format!("building {}", path.display()))?;
    }
    Ok(())
}

/// What a stretch of a built clip shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// The real still (a coffee cup on a table): nobody in view.
    Still,
    /// Real pedestrians walking (from `vtest.avi`): people in every frame.
    Walking,
}

/// Builds one clip of `plan` (each slot shown for its seconds, at most 10)
/// from the ground-truth `source` into `out`: the footage tests and benches
/// need with its truth known by construction.
pub fn build(source: &Path, plan: &[(Slot, u32)], out: &Path) -> anyhow::Result<()> {
    if let Some(&(_, secs)) = plan.iter().find(|(_, secs)| *secs > SLOT_SECS) {
        bail!("a slot is at most {SLOT_SECS} s of footage, not {secs} s");
    }
    let frames = decode(source)?;
    encode(&frames, plan, out, Resolution::MAIN)
        .with_context(|| format!("building {}", out.display()))
}

impl Slot {
    /// The first source frame of this slot's footage.
    fn first(self) -> usize {
        match self {
            Slot::Still => 0,
            Slot::Walking => (SLOT_SECS * SRC_FPS) as usize,
        }
    }
}

pub(super) fn launch(line: &str) -> anyhow::Result<gst::Pipeline> {
    gst::init().context("GStreamer init")?;
    gst::parse::launch(line)
        .with_context(|| format!("GStreamer pipeline {line}"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| anyhow!("not a pipeline: {line}"))
}

/// The element called `name` in `pipeline`, as a `T`.
pub(super) fn element<T: IsA<gst::Element>>(
    pipeline: &gst::Pipeline,
    name: &str,
) -> anyhow::Result<T> {
    pipeline
        .by_name(name)
        .and_then(|e| e.downcast::<T>().ok())
        .ok_or_else(|| anyhow!("the pipeline has no {name} of the expected type"))
}

/// Decodes the first two slots of `source` (still, then walking) as I420.
fn decode(source: &Path) -> anyhow::Result<Vec<gst::Buffer>> {
    let line = format!(
        "filesrc location=\"{}\" ! qtdemux ! h264parse ! avdec_h264 ! videoconvert ! videoscale ! \
         video/x-raw,format=I420,width={SRC_W},height={SRC_H} ! appsink name=out sync=false",
        source.display()
    );
    let pipeline = launch(&line)?;
    let sink: gst_app::AppSink = element(&pipeline, "out")?;
    pipeline.set_state(gst::State::Playing)?;
    let want = 2 * (SLOT_SECS * SRC_FPS) as usize;
    let mut frames = Vec::with_capacity(want);
    while frames.len() < want {
        let Ok(sample) = sink.pull_sample() else {
            break;
        };
        if let Some(b) = sample.buffer_owned() {
            frames.push(b);
        }
    }
    let _ = pipeline.set_state(gst::State::Null);
    if frames.len() < want {
        bail!(
            "{} has {} frames; the bench needs {want} (10 s still, 10 s walking at 10 fps)",
            source.display(),
            frames.len()
        );
    }
    Ok(frames)
}

/// An H.264 encoder (a keyframe every 12 frames, no B-frames) fed raw
/// 25 fps frames, writing an MP4 that appears at its path only once whole.
pub(super) struct Encoder {
    pipeline: gst::Pipeline,
    appsrc: gst_app::AppSrc,
    tmp: PathBuf,
    out: PathBuf,
    /// Frames pushed so far (each one's timestamp).
    frames: u64,
}

impl Encoder {
    /// Starts one for `format` frames of `w`×`h`, which `fit` converts
    /// before encoding at `kbps`, into `out`.
    pub(super) fn start(
        (format, w, h): (&str, u32, u32),
        fit: &str,
        kbps: u32,
        out: &Path,
    ) -> anyhow::Result<Encoder> {
        let tmp = out.with_extension("part.mp4");
        let line = format!(
            "appsrc name=in format=time ! {fit} ! \
             x264enc key-int-max=12 bframes=0 speed-preset=veryfast bitrate={kbps} ! h264parse ! \
             mp4mux ! filesink location=\"{}\"",
            tmp.display()
        );
        let pipeline = launch(&line)?;
        let appsrc: gst_app::AppSrc = element(&pipeline, "in")?;
        appsrc.set_caps(Some(
            &gst::Caps::builder("video/x-raw")
                .field("format", format)
                .field("width", w as i32)
                .field("height", h as i32)
                .field("framerate", gst::Fraction::new(FPS as i32, 1))
                .build(),
        ));
        pipeline.set_state(gst::State::Playing)?;
        Ok(Encoder {
            pipeline,
            appsrc,
            tmp,
            out: out.to_path_buf(),
            frames: 0,
        })
    }

    /// Encodes the next frame.
    pub(super) fn push(&mut self, mut buf: gst::Buffer) -> anyhow::Result<()> {
        let frame_ns = 1_000_000_000 / FPS as u64;
        if let Some(b) = buf.get_mut() {
            b.set_pts(gst::ClockTime::from_nseconds(self.frames * frame_ns));
            b.set_duration(gst::ClockTime::from_nseconds(frame_ns));
        }
        self.frames += 1;
        self.appsrc
            .push_buffer(buf)
            .map_err(|e| anyhow!("encoder refused a frame: {e:?}"))?;
        Ok(())
    }

    /// Ends the stream, waits for the file, and puts it in place.
    pub(super) fn finish(self) -> anyhow::Result<()> {
        self.appsrc
            .end_of_stream()
            .map_err(|e| anyhow!("end of stream: {e:?}"))?;
        wait_eos(&self.pipeline)?;
        std::fs::rename(&self.tmp, &self.out)
            .with_context(|| format!("renaming {}", self.tmp.display()))
    }
}

/// Encodes `slots` (each for its seconds, at 25 fps) from the source
/// frames into `out`.
fn encode(
    src: &[gst::Buffer],
    slots: &[(Slot, u32)],
    out: &Path,
    size: Resolution,
) -> anyhow::Result<()> {
    let fitted = format!(
        "videoscale ! video/x-raw,width={},height={}",
        size.width, size.height
    );
    let mut enc = Encoder::start(("I420", SRC_W, SRC_H), &fitted, size.kbps(), out)?;
    for &(slot, secs) in slots {
        for j in 0..(secs * FPS) as usize {
            // Output frame j of the slot shows source frame j·10/25 of it.
            let from = slot.first() + j * SRC_FPS as usize / FPS as usize;
            enc.push(src[from].copy())?;
        }
    }
    enc.finish()
}

fn wait_eos(pipeline: &gst::Pipeline) -> anyhow::Result<()> {
    let bus = pipeline
        .bus()
        .ok_or_else(|| anyhow!("pipeline has no bus"))?;
    let result = match bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(600),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    ) {
        Some(m) => match m.view() {
            gst::MessageView::Error(e) => Err(anyhow!("encoding failed: {}", e.error())),
            _ => Ok(()),
        },
        None => Err(anyhow!("encoding did not finish within 10 minutes")),
    };
    let _ = pipeline.set_state(gst::State::Null);
    result
}

#[cfg(test)]
mod tests {
    use super::Resolution;

    #[test]
    fn resolutions_parse_and_name_their_clips() {
        let sub: Resolution = "640x360".parse().expect("parses");
        assert_eq!((sub.width, sub.height), (640, 360));
        assert_eq!(sub.suffix(), "-640x360");
        assert_eq!(Resolution::MAIN.suffix(), "", "720p keeps the cached names");
        assert_eq!(sub.kbps(), 625);
        for bad in ["640", "640x", "x360", "641x360", "10x10", "640*360"] {
            let err = bad.parse::<Resolution>().expect_err(bad);
            assert!(err.contains("WIDTHxHEIGHT"), "{err}");
        }
    }
}
