//! The whole data path on real parts: a real RTSP server (gstreamer-rtsp-server)
//! plays a clip with known ground truth (0–10 s coffee, 10–20 s pedestrians
//! from vtest.avi, 20–30 s a cat), the default person detector runs through
//! ONNX Runtime, and alerts go to a real mosquitto broker and a real HTTP
//! receiver.

use crate::common;

use std::time::Duration;

use common::receiver::{latency_ms, Receiver};
use sightline::alert::sign::{self, Secret};
use sightline::app::{self, Hooks};
use sightline::config::Config;
use sightline::tools::rtsp_server::RtspServer;

const ONSET: f64 = 10.0;
const END: f64 = 20.0;
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_occurrence_over_mqtt_and_webhook_matches_ground_truth() {
    let broker = common::Mosquitto::start();
    let mut mqtt_rx = common::subscribe(broker.port, "sightline/#").await;
    let server = RtspServer::serve_files(0, &[("gt", &common::media("ground_truth.mp4"))])
        .expect("rtsp server");
    let mut hook = Receiver::start().await.expect("receiver");

    let text = format!(
        r#"
[runtime]
workers = 1

[[streams]]
id = "yard"
url = "{url}"
fps = 2

[[events]]
id = "person"
prompt = "Detect intruder"
label = "security_alert"

[[alerts]]
id = "yard-intruder"
event = "person"
callback_url = "{callback}"
webhook_secrets = ["{secret}"]

[webhook]
allow_private = ["127.0.0.1/32"]

[mqtt]
port = {port}
client_id = "sightline-e2e-{pid}"
"#,
        url = server.url("gt"),
        callback = hook.url(),
        port = broker.port,
        pid = std::process::id(),
        secret = SECRET,
    );
    let config = Config::parse(&text, "e2e").expect("valid config");
    // 30 s clip plus time for the end message (4 misses at 2 fps) and start-up.
    let summary = app::run(
        config,
        Hooks::default(),
        tokio::time::sleep(Duration::from_secs(34)),
    )
    .await
    .expect("daemon runs");
    tokio::time::sleep(Duration::from_millis(300)).await;

    let webhook: Vec<_> = common::drain(&mut hook.rx);
    let all_mqtt: Vec<_> = common::drain(&mut mqtt_rx);
    // Availability: retained "online" after connecting, "offline" on shutdown.
    let status: Vec<&str> = all_mqtt
        .iter()
        .filter(|m| m.topic == "sightline/status")
        .map(|m| m.raw.as_str())
        .collect();
    assert_eq!(status, vec!["online", "offline"], "availability topic");
    let mqtt: Vec<_> = all_mqtt
        .into_iter()
        .filter(|m| m.topic != "sightline/status")
        .collect();
    eprintln!("summary: {summary:?}");
    for r in &webhook {
        eprintln!("webhook: {}", r.body);
    }

    let starts: Vec<_> = webhook
        .iter()
        .filter(|r| r.body["phase"] == "start")
        .collect();
    let ends: Vec<_> = webhook
        .iter()
        .filter(|r| r.body["phase"] == "end")
        .collect();
    assert_eq!(
        starts.len(),
        1,
        "exactly one occurrence start over the webhook"
    );
    assert_eq!(ends.len(), 1, "exactly one occurrence end over the webhook");
    let start = &starts[0].body;
    let end = &ends[0].body;
    assert_eq!(start["occurrence_id"], end["occurrence_id"]);

    let start_time = start["start_time"].as_f64().expect("start_time");
    let end_time = end["end_time"].as_f64().expect("end_time");
    assert!(
        (start_time - ONSET).abs() <= 1.0,
        "start_time {start_time} vs onset {ONSET}"
    );
    assert!(
        (end_time - END).abs() <= 2.0,
        "end_time {end_time} vs end {END}"
    );

    // Idempotency key: stable per (alert, occurrence, phase).
    let id = starts[0]
        .headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok());
    let want = format!(
        "yard-intruder:{}:start",
        start["occurrence_id"].as_str().unwrap_or("")
    );
    assert_eq!(id, Some(want.as_str()));
    let secret = Secret::parse(SECRET).expect("secret");
    for r in &webhook {
        let header = |name: &str| {
            r.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
        };
        let ts: i64 = header("webhook-timestamp")
            .parse()
            .expect("webhook-timestamp");
        let signed = sign::verify(
            &secret,
            header("webhook-id"),
            ts,
            &r.raw,
            header("webhook-signature"),
        );
        assert!(signed, "signature verifies for {}", r.body);
    }

    // Payload shape.
    assert_eq!(start["event_id"], "person");
    assert_eq!(start["label"], "security_alert");
    assert_eq!(start["event_label"], "security_alert");
    assert_eq!(start["rtstream_id"], "yard");
    assert_eq!(start["alert_id"], "yard-intruder");
    assert_eq!(start["player_url"], serde_json::Value::Null);
    let confidence = start["confidence"].as_f64().expect("confidence");
    assert!((0.5..=1.0).contains(&confidence), "{confidence}");
    assert!(start["explanation"]
        .as_str()
        .unwrap_or("")
        .contains("detected"));
    assert_eq!(start["data"]["text"], start["explanation"]);

    // Same payloads over MQTT, on the default topic.
    assert_eq!(mqtt.len(), 2, "start and end over MQTT: {mqtt:?}");
    let mqtt_start = mqtt
        .iter()
        .find(|m| m.body["phase"] == "start")
        .expect("mqtt start");
    assert_eq!(mqtt_start.topic, "sightline/yard/alerts/security_alert");
    assert_eq!(
        mqtt_start.body, *start,
        "identical payloads over MQTT and webhook"
    );
    let mqtt_end = mqtt
        .iter()
        .find(|m| m.body["phase"] == "end")
        .expect("mqtt end");
    assert_eq!(mqtt_end.body, *end);

    // Frame arrival to delivery, both transports.
    let hook_latency = latency_ms(start, starts[0].at).expect("latency");
    let mqtt_latency = latency_ms(&mqtt_start.body, mqtt_start.at).expect("latency");
    eprintln!("latency: webhook {hook_latency:.1} ms, mqtt {mqtt_latency:.1} ms");
    assert!(hook_latency < 1000.0, "webhook latency {hook_latency} ms");
    assert!(mqtt_latency < 1000.0, "mqtt latency {mqtt_latency} ms");

    // Motion gating skips most of the still frames; every frame is still
    // accounted for, scored or standing on the last result.
    assert!(
        summary.scored + summary.skipped_no_motion >= 50,
        "about 2 fps over 30 s: {summary:?}"
    );
}
