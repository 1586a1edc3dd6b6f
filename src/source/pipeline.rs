//! The GStreamer launch line for one stream.
//!
//! Shape: source → parsebin → [drop delta units] → decodebin → sampler gate
//! → [aspectratiocrop] → videoscale to the model's size → videoconvert to RGB → appsink
//! (latest frame only). Dropping delta units *before* the decoder is what makes
//! keyframe-only mode cheap: the decoder never sees the other frames.
//! Frames the sampler refuses are dropped right after the decoder, so colour
//! conversion and scaling run only for frames that will be scored.
//! With several models of different input sizes, a `tee` after the gate
//! fits each sampled frame once per size (one decode, several scalings),
//! each into its own appsink `sink0`, `sink1`, …
//! With a recording tap, a `tee` right after parsing also hands the
//! still-encoded units to an `appsink` for the recorder (see [`super::tap`]).

use crate::domain::{SourceUrl, StreamSpec, Transport};
use crate::model::Resize;

/// Names of elements the source code looks up.
pub const GATE: &str = "gate";
/// The identity before the decoder that drops delta units in keyframe mode
/// (its `drop-buffer-flags` is changed live when the mode changes).
pub const KEYS: &str = "keys";
/// Prefix of the appsinks' names: `sink0`, `sink1`, … one per frame size.
pub const SINK: &str = "sink";
/// The appsink of the recording tap, when there is one.
pub const TAP: &str = "tap";

/// How the pipeline should fit frames to the model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Output {
    pub width: u32,
    pub height: u32,
    pub resize: Resize,
}

/// Quotes a value for a launch line.
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Scaling to the model's input, then RGB. Scale first, then convert: colour
/// conversion touches the model's few pixels instead of the camera's many.
fn fit(out: Output) -> String {
    let (w, h) = (out.width, out.height);
    let scale = match out.resize {
        Resize::Stretch => {
            format!("videoscale add-borders=false ! video/x-raw,width={w},height={h}")
        }
        Resize::Letterbox => format!(
            "videoscale add-borders=true ! video/x-raw,width={w},height={h},pixel-aspect-ratio=1/1"
        ),
        // Cut the displayed picture to the input's shape, then scale it.
        Resize::Crop => format!(
            "aspectratiocrop aspect-ratio={w}/{h} ! videoscale add-borders=false ! \
             video/x-raw,width={w},height={h},pixel-aspect-ratio=1/1"
        ),
    };
    format!("{scale} ! videoconvert ! video/x-raw,format=RGB")
}

/// `drop-buffer-flags` of the [`KEYS`] element: delta units in keyframe
/// mode, nothing otherwise.
pub fn key_flags(keyframes_only: bool) -> &'static str {
    if keyframes_only {
        "delta-unit"
    } else {
        "0"
    }
}

/// Builds the launch line for a stream: one fitted output per entry of
/// `outs` (at least one); `tap` adds the recording branch.
pub fn launch_line(s: &StreamSpec, outs: &[Output], tap: bool) -> String {
    let (src, live) = match &s.url {
        SourceUrl::Rtsp(u) => {
            let proto = match s.transport {
                Transport::Tcp => "tcp",
                Transport::Udp => "udp",
            };
            (
                format!("rtspsrc location={} protocols={proto} latency=100 drop-on-latency=true ! parsebin", quote(u)),
                true,
            )
        }
        SourceUrl::File(p) => (
            format!("filesrc location={} ! parsebin", quote(&p.to_string_lossy())),
            false,
        ),
        SourceUrl::Test(pattern) => (
            format!("videotestsrc pattern={pattern} is-live=true ! video/x-raw,width=640,height=480,framerate=10/1 ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=10 ! h264parse"),
            true,
        ),
    };
    let keyframes = format!(
        " ! identity name={KEYS} drop-buffer-flags={}",
        key_flags(s.keyframes_only)
    );
    // A live source is already paced; a file is played at its own speed.
    let sync = !live;
    let sink = |i: usize| {
        format!("appsink name={SINK}{i} max-buffers=1 drop=true sync={sync} emit-signals=false")
    };
    let outputs = match outs {
        [one] => format!("{} ! {}", fit(*one), sink(0)),
        // A queue per size: without one, the first sink's preroll would
        // hold the tee and the others would never preroll.
        many => {
            let each: Vec<String> = many
                .iter()
                .enumerate()
                .map(|(i, o)| {
                    format!(
                        " fan. ! queue max-size-buffers=2 leaky=downstream ! {} ! {}",
                        fit(*o),
                        sink(i)
                    )
                })
                .collect();
            format!("tee name=fan{}", each.concat())
        }
    };
    // The tap branch never waits for anything: it neither syncs to the
    // clock nor holds up preroll, so it cannot slow the decoding branch.
    let (split, tap) = if tap {
        (
            " ! tee name=split",
            format!(
                " split. ! appsink name={TAP} sync=false async=false max-buffers=4 drop=true \
                 emit-signals=false enable-last-sample=false"
            ),
        )
    } else {
        (Default::default(), String::new())
    };
    format!("{src}{split}{keyframes} ! decodebin ! identity name={GATE} ! {outputs}{tap}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::StreamId;
    use std::time::Duration;

    fn stream(url: SourceUrl, keyframes_only: bool) -> StreamSpec {
        StreamSpec {
            id: StreamId::new("s"),
            url,
            fps: 2.0,
            keyframes_only,
            transport: Transport::Tcp,
            stall_timeout: Duration::from_secs(10),
            max_backoff: Duration::from_secs(30),
            record_url: None,
            record: None,
            motion: Default::default(),
        }
    }

    #[test]
    fn keyframe_mode_drops_before_the_decoder() {
        let out = Output {
            width: 300,
            height: 300,
            resize: Resize::Stretch,
        };
        let line = launch_line(
            &stream(SourceUrl::Rtsp("rtsp://cam/x".into()), true),
            &[out],
            true,
        );
        let drop_at = line.find("drop-buffer-flags=delta-unit").unwrap();
        assert!(drop_at < line.find("decodebin").unwrap(), "{line}");
        assert!(line.contains("protocols=tcp"));
        // The recording tap splits off before delta units are dropped.
        assert!(line.find("tee name=split").unwrap() < drop_at, "{line}");
    }

    #[test]
    fn quotes_paths_with_spaces_and_quotes() {
        let out = Output {
            width: 8,
            height: 8,
            resize: Resize::Letterbox,
        };
        let line = launch_line(
            &stream(SourceUrl::File("/a b/\"c\".mp4".into()), false),
            &[out],
            false,
        );
        assert!(!line.contains("tee"), "{line}");
        assert!(line.contains(r#"location="/a b/\"c\".mp4""#), "{line}");
        assert!(line.contains("add-borders=true"));
    }

    /// One frame of SMPTE bars (seven vertical bars, white to blue, 10:3)
    /// through the real fitting elements; returns the left and right pixels
    /// of the middle row, and the top-centre pixel.
    fn fitted_bars(resize: Resize) -> [[u8; 3]; 3] {
        use gstreamer as gst;
        use gstreamer::prelude::*;
        gst::init().expect("GStreamer");
        let (w, h) = (32usize, 32usize);
        let fit = fit(Output {
            width: w as u32,
            height: h as u32,
            resize,
        });
        let line = format!(
            "videotestsrc num-buffers=1 pattern=smpte ! \
             video/x-raw,width=1600,height=480,pixel-aspect-ratio=1/1 ! {fit} ! appsink name=out"
        );
        let pipeline = gst::parse::launch(&line)
            .expect("launch line parses")
            .downcast::<gst::Pipeline>()
            .expect("a pipeline");
        let sink = pipeline
            .by_name("out")
            .and_then(|e| e.downcast::<gstreamer_app::AppSink>().ok())
            .expect("appsink");
        pipeline.set_state(gst::State::Playing).expect("plays");
        let sample = sink.try_pull_sample(gst::ClockTime::from_seconds(10));
        let _ = pipeline.set_state(gst::State::Null);
        let sample = sample.expect("one frame");
        let map = sample
            .buffer()
            .expect("buffer")
            .map_readable()
            .expect("map");
        let stride = map.len() / h;
        let px = |x: usize, y: usize| -> [u8; 3] {
            let i = y * stride + x * 3;
            [map[i], map[i + 1], map[i + 2]]
        };
        [px(0, h / 2), px(w - 1, h / 2), px(w / 2, 0)]
    }

    fn near(got: [u8; 3], want: [u8; 3]) -> bool {
        got.iter().zip(want).all(|(&g, w)| g.abs_diff(w) < 40)
    }

    #[test]
    fn frames_are_fitted_by_the_real_elements() {
        // SMPTE bars at 1600 wide: white, yellow, cyan, green, magenta, red, blue.
        let [l, r, _] = fitted_bars(Resize::Stretch);
        assert!(
            near(l, [255, 255, 255]) && near(r, [0, 0, 255]),
            "{l:?} {r:?}"
        );
        // The centre square of 1600x480 spans x 560..1040: cyan to magenta.
        let [l, r, _] = fitted_bars(Resize::Crop);
        assert!(
            near(l, [0, 255, 255]) && near(r, [255, 0, 255]),
            "{l:?} {r:?}"
        );
        // Letterboxed: all seven bars, black above.
        let [l, r, top] = fitted_bars(Resize::Letterbox);
        assert!(near(top, [0, 0, 0]), "{top:?}");
        assert!(
            near(l, [255, 255, 255]) && near(r, [0, 0, 255]),
            "{l:?} {r:?}"
        );
    }
}
