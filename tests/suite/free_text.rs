//! Free-text events end to end on real parts: a real RTSP server plays flat
//! colour clips, the generated dual encoder (models/colour-clip) runs through
//! ONNX Runtime, and alerts go to a real mosquitto broker and a real HTTP
//! receiver.
//!
//! `colours.mp4`: 0-8 s blue, 8-16 s red, 16-24 s green.
//! `tinted.mp4`: 0-8 s a red-tinted scene, 8-16 s really red, 16-24 s grey.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::receiver::{Received, Receiver};
use sightline::app::{self, Hooks};
use sightline::config::Config;
use sightline::tools::rtsp_server::RtspServer;

const CHANGE: f64 = 8.0;

struct Run {
    webhook: Vec<Received>,
    mqtt: Vec<common::MqttMessage>,
}

/// Runs the daemon on one clip with the given events (TOML) for `secs`;
/// every event gets an alert to the webhook receiver and to MQTT.
async fn run(clip: &str, events: &[(&str, &str)], secs: u64) -> Run {
    let broker = common::Mosquitto::start();
    let mut mqtt_rx = common::subscribe(broker.port, "sightline/cam/alerts/#").await;
    let server = RtspServer::serve_files(0, &[("cam", &common::media(clip))]).expect("rtsp");
    let mut hook = Receiver::start().await.expect("receiver");
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/colour-clip");
    let mut text = format!(
        r#"
[model]
path = "{model}"

[runtime]
workers = 1

[[streams]]
id = "cam"
url = "{url}"
fps = 2

[webhook]
allow_private = ["127.0.0.1/32"]

[mqtt]
port = {port}
client_id = "sightline-free-text-{pid}-{clip}"
"#,
        model = model.display(),
        url = server.url("cam"),
        port = broker.port,
        pid = std::process::id(),
    );
    for (id, body) in events {
        text.push_str(&format!(
            "\n[[events]]\nid = \"{id}\"\nlabel = \"{id}\"\n{body}\n\n[[alerts]]\nid = \"to-{id}\"\n\
             event = \"{id}\"\ncallback_url = \"{cb}\"\nmqtt = true\n",
            cb = hook.url()
        ));
    }
    let config = Config::parse(&text, "free-text").expect("valid config");
    let summary = app::run(
        config,
        Hooks::default(),
        tokio::time::sleep(Duration::from_secs(secs)),
    )
    .await
    .expect("daemon runs");
    tokio::time::sleep(Duration::from_millis(300)).await;
    eprintln!("summary: {summary:?}");
    let run = Run {
        webhook: common::drain(&mut hook.rx),
        mqtt: common::drain(&mut mqtt_rx),
    };
    for r in &run.webhook {
        eprintln!("webhook: {}", r.body);
    }
    run
}

impl Run {
    fn starts(&self, event: &str) -> Vec<&serde_json::Value> {
        self.webhook
            .iter()
            .map(|r| &r.body)
            .filter(|b| b["event_id"] == event && b["phase"] == "start")
            .collect()
    }
    fn mqtt_starts(&self, event: &str) -> Vec<&serde_json::Value> {
        self.mqtt
            .iter()
            .map(|m| &m.body)
            .filter(|b| b["event_id"] == event && b["phase"] == "start")
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_red_object_fires_once_when_the_scene_turns_red() {
    let long = format!("a purple object {}", "seen in the distance ".repeat(30));
    let run = run(
        "colours.mp4",
        &[
            (
                "red",
                r#"prompt = "a red object"
negatives = ["a blue object", "a green object"]"#,
            ),
            ("purple", r#"prompt = "a purple object""#),
            ("long", &format!("prompt = \"{long}\"")),
        ],
        22,
    )
    .await;

    let starts = run.starts("red");
    assert_eq!(starts.len(), 1, "one occurrence of red over the webhook");
    let start = starts[0];
    let t = start["start_time"].as_f64().expect("start_time");
    assert!(
        (t - CHANGE).abs() <= 1.0,
        "start {t} vs the change to red at {CHANGE}"
    );
    let confidence = start["confidence"].as_f64().expect("confidence");
    assert!(confidence > 0.9, "{confidence}");
    let explanation = start["explanation"].as_str().unwrap_or("");
    assert!(
        explanation.contains("\"a red object\"")
            && explanation.contains("strongest competing prompt"),
        "{explanation}"
    );
    let ends: Vec<_> = run
        .webhook
        .iter()
        .filter(|r| r.body["event_id"] == "red" && r.body["phase"] == "end")
        .collect();
    assert_eq!(ends.len(), 1, "the occurrence ended when green came");
    let end = ends[0].body["end_time"].as_f64().unwrap_or(0.0);
    assert!((end - 16.0).abs() <= 1.0, "end {end}");

    let mqtt = run.mqtt_starts("red");
    assert_eq!(mqtt.len(), 1, "one start over MQTT");
    assert_eq!(mqtt[0], start, "same payload over MQTT and webhook");

    assert!(run.starts("purple").is_empty(), "purple never fires");
    assert!(
        run.starts("long").is_empty(),
        "the long purple prompt never fires"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tinted_scene_is_the_baseline_until_the_colour_really_changes() {
    let run = run(
        "tinted.mp4",
        &[
            ("red", r#"prompt = "a red object""#),
            // The same prompt without a baseline: the tint alone fires it,
            // which shows the tint scores high and the baseline is what holds
            // the first event back.
            (
                "red_raw",
                r#"prompt = "a red object"
min_lift = 0"#,
            ),
        ],
        14,
    )
    .await;
    let raw = run.starts("red_raw");
    assert!(!raw.is_empty(), "without a baseline the tint fires");
    let raw_t = raw[0]["start_time"].as_f64().unwrap_or(99.0);
    assert!(raw_t < 2.0, "raw fires on the tint at once: {raw_t}");

    let starts = run.starts("red");
    assert_eq!(starts.len(), 1, "one occurrence, when it really turns red");
    let t = starts[0]["start_time"].as_f64().unwrap_or(0.0);
    assert!((t - CHANGE).abs() <= 1.0, "start {t} vs change {CHANGE}");
    assert_eq!(run.mqtt_starts("red").len(), 1);
}

/// An operator sees something red on the camera and writes the rule then.
/// The rule's baseline comes from the frames the stream stored before it
/// existed (blue), so the red already in view is new to it and fires; a
/// baseline begun at the rule's first frame would take the red as normal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_written_while_the_thing_is_in_view_fires() {
    use common::daemon::Daemon;
    use serde_json::{json, Value};

    let state = tempfile::tempdir().expect("temp dir");
    let server =
        RtspServer::serve_files(0, &[("cam", &common::media("colours.mp4"))]).expect("rtsp");
    let mut hook = Receiver::start().await.expect("receiver");
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/colour-clip");
    let d = Daemon::start(
        state.path(),
        &format!(
            "[model]\npath = \"{}\"\n[[streams]]\nid = \"cam\"\nurl = \"{}\"\nfps = 2\n",
            model.display(),
            server.url("cam")
        ),
    )
    .await;
    let index = d
        .ok(
            "POST",
            "rtstream/cam/index/scene",
            Some(json!({"extraction_type": "time", "extraction_config": {"time": 2}})),
        )
        .await;
    let index = index["rtstream_index_id"]
        .as_str()
        .expect("index id")
        .to_string();

    // Wait until the stored frames show red (from 8 s of the clip).
    let mut red_seen: Option<Value> = None;
    for _ in 0..60 {
        let r = d
            .ok(
                "POST",
                "rtstream/cam/search",
                Some(json!({"query": "a red object"})),
            )
            .await;
        if r["results"].as_array().is_some_and(|a| !a.is_empty()) {
            red_seen = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let red_seen = red_seen.expect("the stream shows red within 30 s");
    eprintln!("red in view: {red_seen}");

    let ev = d
        .ok(
            "POST",
            "rtstream/event",
            Some(json!({"event_prompt": "a red object", "label": "red"})),
        )
        .await;
    d.ok(
        "POST",
        &format!("rtstream/cam/index/{index}/alert"),
        Some(json!({"event_id": ev["event_id"], "callback_url": hook.url()})),
    )
    .await;

    // Red lasts until 16 s of the clip; the start must come while it shows.
    let start = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let r = hook.rx.recv().await.expect("receiver open");
            if r.body["phase"] == "start" {
                return r.body;
            }
        }
    })
    .await
    .expect("the rule fires on the red already in view");
    eprintln!("start: {start}");
    let t = start["start_time"].as_f64().unwrap_or(0.0);
    assert!((CHANGE..16.0).contains(&t), "start {t} is in the red part");
    let explanation = start["explanation"].as_str().unwrap_or("");
    assert!(
        explanation.contains("above this stream's usual level"),
        "{explanation}"
    );
    d.stop().await;
}
