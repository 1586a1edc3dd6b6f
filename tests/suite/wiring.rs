//! An event is judged only where an enabled alert wires it, on real parts:
//! a real RTSP server plays the ground-truth clip (pedestrians at 10–20 s)
//! to two cameras, a real webhook receiver takes the alerts, and the state
//! database's clip rows (`GET /occurrences`) show what was judged. Before
//! this rule, an event with no alert made occurrences, snapshots and clip
//! rows on every stream its model could score.

use crate::common;

use std::time::{Duration, Instant};

use common::daemon::Daemon;
use common::receiver::Receiver;
use serde_json::{json, Value};
use sightline::tools::rtsp_server::RtspServer;

async fn occurrences(d: &Daemon, stream: &str) -> Vec<Value> {
    let v = d
        .ok(
            "GET",
            &format!("occurrences?stream={stream}&limit=100"),
            None,
        )
        .await;
    v["occurrences"].as_array().cloned().unwrap_or_default()
}

/// Frames scored so far on a stream.
async fn frames(d: &Daemon, stream: &str) -> u64 {
    let s = d.ok("GET", &format!("rtstream/{stream}"), None).await;
    s["health"]["frames"].as_u64().unwrap_or(0)
}

async fn wait_phase(hook: &mut Receiver, phase: &str, secs: u64) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match tokio::time::timeout_at(deadline, hook.rx.recv()).await {
            Ok(Some(r)) if r.body["phase"] == phase => return r.body,
            Ok(Some(_)) => {}
            _ => panic!("no {phase} message within {secs} s"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_is_judged_only_where_an_alert_wires_it() {
    let clip = common::media("ground_truth.mp4");
    let server = RtspServer::serve_files(0, &[("a", &clip), ("b", &clip)]).expect("rtsp server");
    let mut hook = Receiver::start().await.expect("receiver");
    let dir = tempfile::tempdir().expect("temp dir");
    let extra = format!(
        r#"
[[streams]]
id = "yard"
url = "{yard}"
fps = 2
record = true

[[streams]]
id = "lot"
url = "{lot}"
fps = 2
record = true

[[events]]
id = "person"
prompt = "Detect person"
label = "person_alert"

[recording]
segment_secs = 2
min_free_mb = 1
"#,
        yard = server.url("a"),
        lot = server.url("b"),
    );
    let d = Daemon::start(dir.path(), &extra).await;
    let index = d
        .ok(
            "POST",
            "rtstream/yard/index/scene",
            Some(json!({"extraction_type": "time", "extraction_config": {"time": 2, "frame_count": 1}, "prompt": "people", "name": "yard"})),
        )
        .await;
    let iid = index["rtstream_index_id"].as_str().expect("index id");
    let a = d
        .ok(
            "POST",
            &format!("rtstream/yard/index/{iid}/alert"),
            Some(json!({"event_id": "person", "callback_url": hook.url()})),
        )
        .await;
    let aid = a["alert_id"].as_str().expect("alert id").to_string();

    // One pass of the footage: the wired camera makes an occurrence, the
    // other, which sees the same people, makes none.
    let start = wait_phase(&mut hook, "start", 60).await;
    assert_eq!(start["stream_id"], "yard", "{start}");
    wait_phase(&mut hook, "end", 40).await;
    let lot_frames = frames(&d, "lot").await;
    assert!(lot_frames > 20, "lot scored the same footage: {lot_frames}");
    let yard = occurrences(&d, "yard").await;
    assert!(!yard.is_empty(), "the wired stream keeps its occurrence");
    assert_eq!(
        occurrences(&d, "lot").await,
        Vec::<Value>::new(),
        "no clip row on a stream no alert watches"
    );

    // The only alert goes: another pass of the people (the cameras play
    // the 30 s clip again after it ends) makes nothing anywhere.
    d.ok(
        "DELETE",
        &format!("rtstream/yard/index/{iid}/alert/{aid}"),
        None,
    )
    .await;
    let before = frames(&d, "yard").await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while frames(&d, "yard").await < before + 70 {
        assert!(Instant::now() < deadline, "yard stopped scoring frames");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let after = occurrences(&d, "yard").await;
    assert_eq!(
        after.len(),
        yard.len(),
        "no new occurrence once the alert is gone: {after:?}"
    );
    assert!(occurrences(&d, "lot").await.is_empty());
    // (The clip_ready of the first occurrence may come after the delete.)
    while let Ok(r) = hook.rx.try_recv() {
        assert_eq!(
            r.body["phase"], "clip_ready",
            "delivered after the delete: {}",
            r.body
        );
    }
    d.stop().await;
}
