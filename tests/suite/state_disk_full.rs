//! Nothing accepted is lost to a full disk: the state directory is a small
//! tmpfs (mounted by the test), filled to the last block just after the
//! daemon starts. The real-footage clip's one occurrence (people from 10 s
//! to 20 s) happens while it is full: its messages are held in memory
//! (`GET status` says so), and once space is freed they are committed and
//! delivered to the webhook receiver and over MQTT, exactly once each; the
//! WAL, truncated after the failure, is small again. `GET status` shows the
//! low-space warning (`[state] min_free_mb`) while full and not after.

use crate::common;

use std::time::{Duration, Instant};

use common::daemon::Daemon;
use common::receiver::Receiver;
use serde_json::Value;
use sightline::tools::rtsp_server::RtspServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_accepted_on_a_full_disk_are_delivered_once_it_frees() {
    let broker = common::Mosquitto::start();
    let mut mqtt_rx = common::subscribe(broker.port, "sightline/+/alerts/#").await;
    let server = RtspServer::serve_files(0, &[("gt", &common::media("ground_truth.mp4"))])
        .expect("rtsp server");
    let mut hook = Receiver::start().await.expect("receiver");
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state");
    let _disk = common::Tmpfs::mount(&state, "8m");
    let extra = format!(
        r#"
[[streams]]
id = "yard"
url = "{url}"
fps = 2

[[events]]
id = "person"
prompt = "Detect person"

[[alerts]]
id = "yard-person"
event = "person"
callback_url = "{callback}"

[recording]
enabled = false

[mqtt]
port = {port}
client_id = "sightline-statefull-{pid}"
"#,
        url = server.url("gt"),
        callback = hook.url(),
        port = broker.port,
        pid = std::process::id(),
    );
    let d = Daemon::start(&state, &extra).await;
    let before = d.ok("GET", "status", None).await;
    assert_eq!(before["state_disk"]["low"], false, "{before}");
    // The disk fills to the last block.
    let free = sightline::store::space::free_bytes(&state).expect("statvfs");
    std::fs::write(state.join("filler"), vec![7u8; free as usize]).ok();
    let _ = std::fs::OpenOptions::new()
        .append(true)
        .open(state.join("filler"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, &[0u8; 65536]));

    // Held while full: seen in GET status.
    let mut held_max = 0;
    let mut warned = false;
    let deadline = Instant::now() + Duration::from_secs(40);
    while Instant::now() < deadline {
        let s = d.ok("GET", "status", None).await;
        held_max = held_max.max(s["outbox_spill"]["held"].as_u64().unwrap_or(0));
        warned |= s["state_disk"]["low"] == true && s["state_disk"]["warnings"] == 1;
        if held_max >= 4 {
            break; // start and end, each to the webhook and MQTT
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        held_max >= 4,
        "the occurrence's messages were held in memory: {held_max}"
    );
    assert!(
        common::drain(&mut hook.rx).is_empty(),
        "nothing delivered while full"
    );
    assert!(
        warned,
        "the low-space warning was raised ([state] min_free_mb)"
    );

    // Space comes back: everything goes out.
    std::fs::remove_file(state.join("filler")).expect("free the space");
    let mut webhook: Vec<Value> = Vec::new();
    let mut mqtt: Vec<Value> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline && (webhook.len() < 2 || mqtt.len() < 2) {
        webhook.extend(common::drain(&mut hook.rx).into_iter().map(|r| r.body));
        mqtt.extend(common::drain(&mut mqtt_rx).into_iter().map(|m| m.body));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let status = d.ok("GET", "status", None).await;
    d.stop().await;
    for (all, transport) in [(&webhook, "webhook"), (&mqtt, "mqtt")] {
        // Committed together, they may be sent in either order (several
        // in flight per target); each exactly once.
        let mut phases: Vec<&str> = all.iter().filter_map(|b| b["phase"].as_str()).collect();
        phases.sort_unstable();
        assert_eq!(phases, vec!["end", "start"], "{transport}: {all:?}");
        let t = all[0]["start_time"].as_f64().unwrap_or(0.0);
        assert!((t - 10.0).abs() <= 1.0, "{transport}: start at {t}");
    }
    assert_eq!(status["outbox_spill"]["held"], 0, "{status}");
    assert_eq!(
        status["state_disk"]["low"], false,
        "space is back: {status}"
    );
    assert!(
        status["outbox_spill"]["committed_later"].as_u64() >= Some(4),
        "{status}"
    );
    let wal = std::fs::metadata(state.join("state.sqlite3-wal")).map_or(0, |m| m.len());
    assert!(
        wal < 512 * 1024,
        "the WAL was truncated after the failure: {wal} bytes"
    );
}
