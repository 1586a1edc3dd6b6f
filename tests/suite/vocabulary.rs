//! Two detectors side by side on the default models, over a real RTSP
//! server, a real webhook receiver and mosquitto. The clip's ground truth
//! is by construction (tests/media/models.mp4): 0–6 s rocket (nothing),
//! 6–12 s a car, 12–18 s coffee, 18–24 s the astronaut (a person), 24–30 s
//! a cat. "Detect car" lands on the 80-class model, "Detect person" on the
//! person model; a stream with only a person alert never runs the 80-class
//! model.

use crate::common;

use std::time::Duration;

use common::daemon::Daemon;
use common::receiver::Receiver;
use serde_json::Value;
use sightline::tools::rtsp_server::RtspServer;

/// Onsets of the car and the person in the clip.
const CAR: f64 = 6.0;
const PERSON: f64 = 18.0;

fn starts<'a>(all: &'a [Value], event: &str) -> Vec<&'a Value> {
    all.iter()
        .filter(|b| b["phase"] == "start" && b["event_id"] == event && b["rtstream_id"] == "yard")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_event_fires_in_its_segment_on_its_own_model() {
    let broker = common::Mosquitto::start();
    let mut mqtt_rx = common::subscribe(broker.port, "sightline/+/alerts/#").await;
    let clip = common::media("models.mp4");
    let server = RtspServer::serve_files(0, &[("yard", &clip), ("porch", &clip)]).expect("rtsp");
    let mut hook = Receiver::start().await.expect("receiver");
    let dir = tempfile::tempdir().expect("temp dir");
    let extra = format!(
        r#"
[[streams]]
id = "yard"
url = "{yard}"
fps = 2

[[streams]]
id = "porch"
url = "{porch}"
fps = 2

[[events]]
id = "car"
prompt = "Detect car in the driveway"

[[events]]
id = "person"
prompt = "Detect person"

[[alerts]]
id = "yard-car"
event = "car"
streams = ["yard"]
callback_url = "{callback}"

[[alerts]]
id = "yard-person"
event = "person"
streams = ["yard"]
callback_url = "{callback}"

[[alerts]]
id = "porch-person"
event = "person"
streams = ["porch"]
send_end = false

[mqtt]
port = {port}
client_id = "sightline-vocabulary-{pid}"
"#,
        yard = server.url("yard"),
        porch = server.url("porch"),
        callback = hook.url(),
        port = broker.port,
        pid = std::process::id(),
    );
    let d = Daemon::start(dir.path(), &extra).await;

    // The events say which model scores them.
    let events = d.ok("GET", "rtstream/event", None).await;
    let model_of = |id: &str| {
        events["events"]
            .as_array()
            .and_then(|a| a.iter().find(|e| e["event_id"] == id))
            .map(|e| e["model"].clone())
    };
    assert_eq!(model_of("car"), Some("coco".into()), "{events}");
    assert_eq!(model_of("person"), Some("person".into()), "{events}");

    // The whole clip once, and the person's end (4 misses at 2 fps).
    tokio::time::sleep(Duration::from_secs(31)).await;
    let models = d.ok("GET", "models", None).await;
    let status = d.ok("GET", "status", None).await;
    d.stop().await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let webhook: Vec<Value> = common::drain(&mut hook.rx)
        .into_iter()
        .map(|r| r.body)
        .collect();
    let mqtt: Vec<Value> = common::drain(&mut mqtt_rx)
        .into_iter()
        .map(|m| m.body)
        .collect();
    for b in &webhook {
        eprintln!("webhook: {b}");
    }
    for (all, transport) in [(&webhook, "webhook"), (&mqtt, "mqtt")] {
        for (event, onset, model) in [("car", CAR, "coco"), ("person", PERSON, "person")] {
            let s = starts(all, event);
            assert_eq!(s.len(), 1, "{transport}: one {event} occurrence: {s:?}");
            let t = s[0]["start_time"].as_f64().expect("start_time");
            assert!(
                (t - onset).abs() <= 1.0,
                "{transport}: {event} starts at {t}, onset {onset}"
            );
            assert_eq!(s[0]["model"], model, "{transport}: {}", s[0]);
        }
    }

    // Frames of the person-only stream went to the person model alone.
    let stream = |id: &str| {
        status["streams"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["id"] == id))
            .cloned()
            .unwrap_or_default()
    };
    let names = |s: &Value| -> Vec<String> {
        s["models"]
            .as_array()
            .map(|m| {
                m.iter()
                    .filter_map(|x| x["name"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    // Frames each model handled: scored, or skipped as unchanged (motion
    // gating lets the last result stand for them).
    let handled = |m: &Value| {
        m["frames"].as_u64().unwrap_or(0) + m["skipped_no_motion"].as_u64().unwrap_or(0)
    };
    let porch = stream("porch");
    assert_eq!(names(&porch), vec!["person"], "{porch}");
    assert!(handled(&porch["models"][0]) > 20, "{porch}");
    let yard = stream("yard");
    assert_eq!(names(&yard), vec!["person", "coco"], "{yard}");
    for m in yard["models"].as_array().into_iter().flatten() {
        assert!(handled(m) > 20, "{yard}");
    }
    // Totals per model (read just before): coco saw only the yard's frames.
    let total = |name: &str| {
        models["models"]
            .as_array()
            .and_then(|a| a.iter().find(|m| m["name"] == name))
            .map(handled)
            .unwrap_or(0)
    };
    let yard_coco = handled(&yard["models"][1]);
    assert!(total("coco") <= yard_coco && total("coco") > 20, "{models}");
    assert!(total("person") > total("coco"), "{models}");
    eprintln!("models: {models}");
}
