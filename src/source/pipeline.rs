//! The GStreamer launch line for one stream.
//!
//! Shape: source → parsebin → [drop delta units] → decodebin → sampler gate
//! → videoscale to the model's size → videoconvert to RGB → appsink
//! (latest frame only). Dropping delta units *before* the decoder is what makes
//! keyframe-only mode cheap: the decoder never sees the other frames.
//! Frames the sampler refuses are dropped right after the decoder, so colour
//! conversion and scaling run only for frames that will be scored.

use crate::config::{SourceUrl, StreamConfig, Transport};

/// Names of elements the source code looks up.
pub const GATE: &str = "gate";
pub const SINK: &str = "sink";

/// How the pipeline should fit frames to the model.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub width: u32,
    pub height: u32,
    pub letterbox: bool,
}

/// Quotes a value for a launch line.
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Builds the launch line for a stream.
pub fn launch_line(s: &StreamConfig, out: Output) -> String {
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
    let keyframes = if s.keyframes_only {
        " ! identity drop-buffer-flags=delta-unit"
    } else {
        ""
    };
    // Scale first, then convert: colour conversion touches the model's few
    // pixels instead of the camera's many.
    let (borders, par) = if out.letterbox {
        ("true", ",pixel-aspect-ratio=1/1")
    } else {
        ("false", "")
    };
    let fit = format!(
        "videoscale add-borders={borders} ! video/x-raw,width={},height={}{par} ! \
         videoconvert ! video/x-raw,format=RGB",
        out.width, out.height
    );
    // A live source is already paced; a file is played at its own speed.
    let sync = !live;
    format!(
        "{src}{keyframes} ! decodebin ! identity name={GATE} ! {fit} ! \
         appsink name={SINK} max-buffers=1 drop=true sync={sync} emit-signals=false"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::StreamId;
    use std::time::Duration;

    fn stream(url: SourceUrl, keyframes_only: bool) -> StreamConfig {
        StreamConfig {
            id: StreamId::new("s"),
            url,
            fps: 2.0,
            keyframes_only,
            transport: Transport::Tcp,
            stall_timeout: Duration::from_secs(10),
            max_backoff: Duration::from_secs(30),
        }
    }

    #[test]
    fn keyframe_mode_drops_before_the_decoder() {
        let out = Output {
            width: 300,
            height: 300,
            letterbox: false,
        };
        let line = launch_line(&stream(SourceUrl::Rtsp("rtsp://cam/x".into()), true), out);
        let drop_at = line.find("drop-buffer-flags=delta-unit").unwrap();
        assert!(drop_at < line.find("decodebin").unwrap(), "{line}");
        assert!(line.contains("protocols=tcp"));
    }

    #[test]
    fn quotes_paths_with_spaces_and_quotes() {
        let out = Output {
            width: 8,
            height: 8,
            letterbox: true,
        };
        let line = launch_line(
            &stream(SourceUrl::File("/a b/\"c\".mp4".into()), false),
            out,
        );
        assert!(line.contains(r#"location="/a b/\"c\".mp4""#), "{line}");
        assert!(line.contains("add-borders=true"));
    }
}
