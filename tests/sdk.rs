//! VideoDB's own Python SDK (PyPI `videodb` 0.5.1, unpatched, installed by
//! `scripts/setup --test` into ~/.cache/sightline/sdk-venv) drives a whole
//! daemon watching real footage over a real RTSP server: streams, scene
//! indexes, events, alerts with enable/disable, and the WebSocket channel.
//! The checks themselves live in tests/sdk/drive_daemon.py.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::daemon::Daemon;
use sightline::rtsp_server::RtspServer;

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
