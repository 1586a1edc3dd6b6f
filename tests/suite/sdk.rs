//! VideoDB's own Python SDK (PyPI `videodb` 0.5.1, unpatched, installed by
//! `scripts/setup --test` into ~/.cache/sightline/sdk-venv) drives a whole
//! daemon watching real footage over a real RTSP server: streams, scene
//! indexes, events, alerts with enable/disable, and the WebSocket channel.
//! The checks themselves live in tests/sdk/drive_daemon.py. A second test
//! runs the SDK's `RTStream.search` against a daemon with the colour dual
//! encoder (tests/sdk/search.py).

use crate::common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::daemon::Daemon;
use sightline::tools::rtsp_server::RtspServer;

fn sdk_python() -> PathBuf {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".cache/sightline/sdk-venv/bin/python")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_videodb_sdk_drives_the_daemon() {
    let python = sdk_python();
    assert!(
        python.exists(),
        "{} is missing: run `bash scripts/setup --test` (it installs videodb from PyPI)",
        python.display()
    );
    let server = RtspServer::serve_files(0, &[("gt", &common::media("ground_truth.mp4"))])
        .expect("rtsp server");
    let dir = tempfile::tempdir().expect("temp dir");
    let d = Daemon::start(dir.path(), "").await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/drive_daemon.py");
    let child = tokio::process::Command::new(&python)
        .arg(&script)
        .env("SIGHTLINE_URL", &d.base)
        .env("SIGHTLINE_KEY_FILE", dir.path().join("api-key"))
        .env("RTSP_URL", server.url("gt"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python starts");
    let out = tokio::time::timeout(Duration::from_secs(240), child.wait_with_output())
        .await
        .expect("the SDK script finishes within 4 minutes")
        .expect("the SDK script runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "SDK script failed:\n{stderr}\n{stdout}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or("")).expect("summary line");
    println!("SDK summary: {summary}");
    assert!(summary["occurrence_id"]
        .as_str()
        .is_some_and(|s| !s.is_empty()));
    let hub = d
        .ok("GET", "status", None)
        .await
        .get("websocket")
        .cloned()
        .unwrap_or_default();
    assert_eq!(hub["slow_disconnects"], 0, "the SDK client kept up");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_videodb_sdk_searches_a_stream() {
    let python = sdk_python();
    assert!(
        python.exists(),
        "{} is missing: run `bash scripts/setup --test`",
        python.display()
    );
    let server =
        RtspServer::serve_files(0, &[("cam", &common::media("colours.mp4"))]).expect("rtsp server");
    let dir = tempfile::tempdir().expect("temp dir");
    let model = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/colour-clip");
    let extra = format!(
        "[model]\npath = \"{}\"\n[[streams]]\nid = \"cam\"\nurl = \"{}\"\nfps = 2\nrecord = true\n",
        model.display(),
        server.url("cam")
    );
    let d = Daemon::start(dir.path(), &extra).await;
    // Blue, then red from 8 s to 16 s; search once the red has passed and
    // the segments after it are on disk (a loaded machine closed the last
    // one late at 18 s, and the clip then played 7 s of 7.5).
    tokio::time::sleep(Duration::from_secs(21)).await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/search.py");
    let out = tokio::process::Command::new(&python)
        .arg(&script)
        .env("SIGHTLINE_URL", &d.base)
        .env("SIGHTLINE_KEY_FILE", dir.path().join("api-key"))
        .env("STREAM_ID", "cam")
        .env("QUERY", "a red object")
        .output()
        .await
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shots: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("one JSON line of shots");
    println!("SDK shots: {shots}");
    let shot = &shots[0];
    assert_eq!(shots.as_array().map(Vec::len), Some(1), "{shots}");
    assert_eq!(shot["rtstream_id"], "cam");
    assert_eq!(shot["text"], "a red object");
    assert!(shot["score"].as_f64().unwrap_or(0.0) > 0.9, "{shot}");
    let start = shot["metadata"]["start_time"].as_f64().unwrap_or(0.0);
    let end = shot["metadata"]["end_time"].as_f64().unwrap_or(0.0);
    assert!(
        (start - 8.0).abs() <= 1.0 && (end - 15.5).abs() <= 1.0,
        "{shot}"
    );
    let span = shot["end"].as_f64().unwrap_or(0.0) - shot["start"].as_f64().unwrap_or(0.0);
    assert!(
        (span - (end - start)).abs() < 0.5,
        "wall and stream spans agree: {shot}"
    );
    // generate_stream, both from the shot and from the stream, gives a
    // playlist GStreamer plays, covering the asked span.
    for key in ["shot_stream_url", "stream_url"] {
        let url = shot[key]
            .as_str()
            .unwrap_or_else(|| panic!("{key}: {shot}"))
            .to_string();
        let played = tokio::task::spawn_blocking(move || played_secs(&url))
            .await
            .expect("played");
        println!("SDK {key}: played {played:.1} s of a {span:.1} s shot");
        assert!(
            played >= span - 0.5 && played <= span + 9.0,
            "{key}: {played} s for {span} s"
        );
    }
    assert!(shot["shot_player_url"]
        .as_str()
        .is_some_and(|u| u.contains("/player")));
    d.stop().await;
}

/// Plays an HLS URL to its end with GStreamer; returns the seconds of
/// video decoded (last minus first timestamp).
fn played_secs(url: &str) -> f64 {
    use gstreamer::prelude::*;
    gstreamer::init().expect("gstreamer");
    let line = format!(
        "souphttpsrc location=\"{url}\" ! hlsdemux ! decodebin ! videoconvert ! appsink name=s sync=false"
    );
    let p = gstreamer::parse::launch(&line)
        .expect("pipeline")
        .downcast::<gstreamer::Pipeline>()
        .expect("pipeline");
    let sink = p
        .by_name("s")
        .and_then(|s| s.downcast::<gstreamer_app::AppSink>().ok())
        .expect("appsink");
    p.set_state(gstreamer::State::Playing).expect("plays");
    let (mut first, mut last) = (None, 0.0);
    // A live playlist would never end: give up after a minute.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while let Some(sample) = sink.try_pull_sample(gstreamer::ClockTime::from_seconds(5)) {
        if std::time::Instant::now() > deadline {
            break;
        }
        let t = sample
            .buffer()
            .and_then(|b| b.pts())
            .map_or(0.0, |t| t.nseconds() as f64 / 1e9);
        first.get_or_insert(t);
        last = t;
    }
    let _ = p.set_state(gstreamer::State::Null);
    first.map_or(0.0, |f| last - f + 0.1)
}
