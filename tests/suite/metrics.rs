//! `GET /metrics` read by the Prometheus project's own text-format parser
//! (PyPI `prometheus-client`, installed by `scripts/setup --test` into
//! ~/.cache/sightline/sdk-venv), from a daemon watching the real-footage
//! clip over a real RTSP server with the person detector and a webhook:
//! the exposition parses, and the frame, inference, queue, match, commit
//! and delivery figures rise between two scrapes. The webhook's payload
//! carries its latency breakdown. Without `[api] metrics_public` the key is
//! required.

use crate::common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::daemon::Daemon;
use common::receiver::Receiver;
use sightline::tools::rtsp_server::RtspServer;
use tokio::io::AsyncWriteExt;

/// Parses an exposition with `prometheus_client.parser`; returns every
/// sample as `name{label="v",...}` (labels sorted) → value.
async fn parse(text: &str) -> HashMap<String, f64> {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let python = home.join(".cache/sightline/sdk-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `bash scripts/setup --test`",
        python.display()
    );
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
        out[f"{s.name}{{{labels}}}"] = s.value
print(json.dumps(out))
"#;
    let mut child = tokio::process::Command::new(&python)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python runs");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(text.as_bytes()).await.expect("write");
    drop(stdin);
    let out = child.wait_with_output().await.expect("parser ends");
    assert!(
        out.status.success(),
        "the Prometheus parser refused the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("parser output")
}

async fn scrape(base: &str, key: Option<&str>) -> (u16, String) {
    let mut req = reqwest::Client::new().get(format!("{base}/metrics"));
    if let Some(k) = key {
        req = req.header("x-access-token", k);
    }
    let resp = req.send().await.expect("the API answers");
    (
        resp.status().as_u16(),
        resp.text().await.unwrap_or_default(),
    )
}

fn value(samples: &HashMap<String, f64>, key: &str) -> f64 {
    samples.get(key).copied().unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scrape_parses_and_its_counters_rise_with_frames() {
    let server = RtspServer::serve_files(0, &[("gt", &common::media("ground_truth.mp4"))])
        .expect("rtsp server");
    let mut hook = Receiver::start().await.expect("receiver");
    let extra = format!(
        "[[streams]]\nid = \"yard\"\nurl = \"{}\"\nfps = 2\n\
         [[events]]\nid = \"person\"\nprompt = \"Detect person\"\n\
         [[alerts]]\nid = \"people\"\nevent = \"person\"\ncallback_url = \"{}\"\n\
         [recording]\nenabled = false\n",
        server.url("gt"),
        hook.url()
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let d = Daemon::start_with_api(dir.path(), "metrics_public = true", &extra).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (code, first) = scrape(&d.base, None).await;
    assert_eq!(code, 200, "public metrics need no key: {first}");
    let before = parse(&first).await;
    // The clip's people appear at 10 s: wait for their alert.
    let mut start = None;
    for _ in 0..40 {
        start = common::drain(&mut hook.rx)
            .into_iter()
            .map(|r| r.body)
            .find(|b| b["phase"] == "start");
        if start.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, second) = scrape(&d.base, None).await;
    let after = parse(&second).await;
    d.stop().await;

    let yard = r#"model="person",stream="yard""#;
    for key in [
        r#"sightline_frames_total{stream="yard"}"#.to_string(),
        format!("sightline_frames_scored_total{{{yard}}}"),
        "sightline_queue_wait_seconds_count{}".to_string(),
        r#"sightline_inference_seconds_count{model="person"}"#.to_string(),
        "sightline_match_seconds_count{}".to_string(),
        "sightline_pool_busy_seconds_total{}".to_string(),
    ] {
        let (a, b) = (value(&before, &key), value(&after, &key));
        assert!(b > a, "{key} rises with frames: {a} then {b}");
    }
    assert!(value(&after, "sightline_outbox_commit_seconds_count{}") >= 1.0);
    assert!(
        value(
            &after,
            r#"sightline_delivery_seconds_count{kind="webhook"}"#
        ) >= 1.0
    );
    assert_eq!(value(&after, r#"sightline_stream_up{stream="yard"}"#), 1.0);
    assert_eq!(value(&after, "sightline_pool_workers{}"), 1.0);
    let skipped = format!("sightline_frames_skipped_no_motion_total{{{yard}}}");
    assert!(
        value(&after, &skipped) > 0.0,
        "the clip's still coffee frames are skipped: {second}"
    );
    let delivered = after
        .iter()
        .filter(|(k, _)| {
            k.starts_with("sightline_deliveries_total") && k.contains(r#"outcome="delivered""#)
        })
        .map(|(_, v)| v)
        .sum::<f64>();
    assert!(delivered >= 1.0, "{second}");

    let start = start.expect("the people's alert arrived");
    let l = &start["latency_ms"];
    for part in ["queue", "infer", "match", "commit"] {
        let ms = l[part].as_f64().unwrap_or(-1.0);
        assert!(
            (0.0..2000.0).contains(&ms),
            "latency_ms.{part} = {ms} in {start}"
        );
    }
    assert!(
        l["infer"].as_f64() > Some(0.0),
        "the start frame was scored: {l}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_the_key_unless_public() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = Daemon::start(dir.path(), "").await;
    let (code, _) = scrape(&d.base, None).await;
    assert_eq!(code, 401);
    let (code, text) = scrape(&d.base, Some(&d.key)).await;
    assert_eq!(code, 200);
    let samples = parse(&text).await;
    assert!(
        samples.contains_key("sightline_websocket_clients{}"),
        "{text}"
    );
    d.stop().await;
}
