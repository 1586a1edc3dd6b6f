//! The control plane's seams, end to end through the API: the catalog
//! answers while a pipeline takes long to stop (the applier runs after the
//! catalog lock is released), and a running stream's sampling changes live,
//! without a pipeline rebuild.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::daemon::Daemon;
use serde_json::{json, Value};
use sightline::source::replay::Replay;

async fn frames(d: &Daemon, sid: &str) -> (u64, u64) {
    let s = d.ok("GET", &format!("rtstream/{sid}"), None).await;
    let h = &s["health"];
    (
        h["frames"].as_u64().unwrap_or(0),
        h["restarts"].as_u64().unwrap_or(0),
    )
}

async fn wait_frames(d: &Daemon, sid: &str, at_least: u64, secs: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let (n, _) = frames(d, sid).await;
        if n >= at_least || Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A replayed stream stands in for a camera whose pipeline hangs in
/// teardown (no real camera does that on demand): stopping it takes 3 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_answers_while_a_pipeline_will_not_stop() {
    let dir = tempfile::tempdir().expect("temp dir");
    let wedged = Replay {
        stop_hold: Some(Duration::from_secs(3)),
        ..Replay::grey()
    };
    let d = Daemon::start_with_sources(dir.path(), "", Arc::new(wedged)).await;
    let s = d
        .ok(
            "POST",
            "rtstream",
            Some(json!({"url": "test:smpte", "name": "wedged", "sample_rate": 2})),
        )
        .await;
    let sid = s["id"].as_str().expect("stream id").to_string();
    assert!(
        wait_frames(&d, &sid, 1, 20).await >= 1,
        "the replayed stream runs"
    );

    let d = Arc::new(d);
    let stopper = {
        let (d, sid) = (Arc::clone(&d), sid.clone());
        tokio::spawn(async move {
            let t = Instant::now();
            let (code, v): (u16, Value) = d
                .call(
                    "PATCH",
                    &format!("rtstream/{sid}/status"),
                    Some(json!({"action": "stop"})),
                )
                .await;
            (code, v, t.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        let t = Instant::now();
        let list = d.ok("GET", "rtstream", None).await;
        slowest = slowest.max(t.elapsed());
        let results = list["results"].as_array().expect("results");
        assert_eq!(results.len(), 1);
        assert_eq!(
            results[0]["status"], "stopped",
            "the change is in the catalog already"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (code, _, took) = stopper.await.expect("stop call");
    assert_eq!(code, 200);
    assert!(
        took >= Duration::from_millis(2500),
        "the stop really waited for the wedged pipeline ({took:?})"
    );
    assert!(
        slowest < Duration::from_millis(200),
        "GET rtstream waited {slowest:?} while a pipeline was stopping"
    );
    if let Ok(d) = Arc::try_unwrap(d) {
        d.stop().await;
    }
}

/// Frames handed to the model over `window`, measured through the API.
async fn rate(d: &Daemon, sid: &str, window: Duration) -> (f64, u64, u64) {
    let (a, _) = frames(d, sid).await;
    tokio::time::sleep(window).await;
    let (b, restarts) = frames(d, sid).await;
    (
        (b.saturating_sub(a)) as f64 / window.as_secs_f64(),
        b,
        restarts,
    )
}

/// A real GStreamer pipeline (videotestsrc, H.264, 10 fps, a keyframe a
/// second): its rate and keyframe mode change through the API while it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_changes_live_without_a_pipeline_rebuild() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = Daemon::start_allowing_local_sources(dir.path(), "").await;
    let s = d
        .ok(
            "POST",
            "rtstream",
            Some(json!({"url": "test:smpte", "name": "bars", "sample_rate": 1})),
        )
        .await;
    let sid = s["id"].as_str().expect("stream id").to_string();
    assert!(wait_frames(&d, &sid, 3, 30).await >= 3, "the stream runs");
    let (slow, before, restarts0) = rate(&d, &sid, Duration::from_secs(2)).await;
    assert!(slow <= 1.6, "1 fps at first, got {slow:.1}");

    let patched = d
        .ok(
            "PATCH",
            &format!("rtstream/{sid}"),
            Some(json!({"sample_rate": 5})),
        )
        .await;
    assert_eq!(patched["sample_rate"], 5.0);
    let changed = Instant::now();
    // Within 2 s the new rate is in force: measured over the second after
    // a one-second settle.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (fast, after, restarts1) = rate(&d, &sid, Duration::from_secs(1)).await;
    assert!(changed.elapsed() < Duration::from_millis(2500));
    assert!(fast >= 3.5, "5 fps after the change, got {fast:.1}");
    assert!(
        after > before,
        "the frame count kept rising ({before} -> {after})"
    );
    assert_eq!(restarts1, restarts0, "no pipeline rebuild");

    // Keyframe mode, live: at most the keyframe rate (1 a second).
    d.ok(
        "PATCH",
        &format!("rtstream/{sid}"),
        Some(json!({"keyframes_only": true})),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (keys, last, restarts2) = rate(&d, &sid, Duration::from_secs(3)).await;
    assert!(
        keys <= 1.7,
        "keyframes only: about 1 a second, got {keys:.1}"
    );
    assert!(last > after, "still counting ({after} -> {last})");
    assert_eq!(restarts2, restarts0, "still no rebuild");

    let (code, v) = d
        .call(
            "PATCH",
            &format!("rtstream/{sid}"),
            Some(json!({"sample_rate": 0})),
        )
        .await;
    assert_eq!(code, 422, "a rate of 0 is refused: {v}");
    let (code, _) = d
        .call("PATCH", &format!("rtstream/{sid}"), Some(json!({"fps": 3})))
        .await;
    assert_eq!(code, 422, "unknown fields are refused");
    d.stop().await;
}
