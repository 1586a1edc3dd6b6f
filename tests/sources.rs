//! Ingest on real pipelines: keyframe-only mode scores only keyframes, and
//! `file://` and `test:` sources deliver frames with rising stream times.

mod common;

use std::time::Duration;

use sightline::app::{self, Hooks};
use sightline::config::Config;
use sightline::rtsp_server::RtspServer;
use sightline::types::Scores;

/// Runs the daemon for `secs` with one person event and no alert targets
/// that matter (a callback nobody reads), returning every scored frame.
async fn scored_frames(streams_toml: &str, secs: u64) -> Vec<Scores> {
    let text = format!(
        "{streams_toml}\n[[events]]\nid = \"p\"\nprompt = \"person\"\n\
         [[alerts]]\nid = \"a\"\nevent = \"p\"\ncallback_url = \"http://127.0.0.1:9/unused\"\n"
    );
    let config = Config::parse(&text, "t").expect("valid config");
    let (tx, rx) = crossbeam_channel::bounded(10_000);
    let hooks = Hooks {
        scored: Some(tx),
        stop_when_finished: true,
        ..Hooks::default()
    };
    app::run(config, hooks, tokio::time::sleep(Duration::from_secs(secs)))
        .await
        .expect("daemon runs");
    rx.try_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyframe_only_mode_scores_only_keyframes() {
    // The clip has a keyframe every second (10 frames at 10 fps).
    let server =
        RtspServer::serve_files(0, &[("kf", &common::media("demo.mp4"))]).expect("rtsp server");
    let streams = format!(
        "[[streams]]\nid = \"kf\"\nurl = \"{}\"\nfps = 5\nkeyframes_only = true\n",
        server.url("kf")
    );
    let frames = scored_frames(&streams, 8).await;
    assert!(
        frames.len() >= 5,
        "about one keyframe per second: {}",
        frames.len()
    );
    assert!(
        frames.len() <= 9,
        "5 fps requested, but only keyframes pass: {}",
        frames.len()
    );
    for f in &frames {
        let off = (f.stream_secs - f.stream_secs.round()).abs();
        assert!(
            off < 0.02,
            "frame at {:.3} s is not on a keyframe",
            f.stream_secs
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_and_test_sources_deliver_frames_in_stream_time() {
    let streams = format!(
        "[[streams]]\nid = \"file\"\nurl = \"file://{}\"\nfps = 2\n\
         [[streams]]\nid = \"synthetic\"\nurl = \"test:ball\"\nfps = 2\n",
        common::media("demo.mp4").display()
    );
    let frames = scored_frames(&streams, 6).await;
    for id in ["file", "synthetic"] {
        let times: Vec<f64> = frames
            .iter()
            .filter(|f| f.stream_id.as_str() == id)
            .map(|f| f.stream_secs)
            .collect();
        assert!(times.len() >= 8, "{id}: about 2 fps for 6 s, got {times:?}");
        assert!(
            times.windows(2).all(|w| w[1] > w[0]),
            "{id}: stream time rises: {times:?}"
        );
        let gaps_ok = times.windows(2).all(|w| (w[1] - w[0] - 0.5).abs() < 0.15);
        assert!(gaps_ok, "{id}: frames 0.5 s apart: {times:?}");
    }
}
