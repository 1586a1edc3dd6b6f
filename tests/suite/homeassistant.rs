//! Home Assistant discovery and the MQTT control topics against a real
//! mosquitto that runs the ACL the repo documents
//! (`systemd/mosquitto-sightline.acl`), on the real-footage demo clip over
//! a real RTSP server, with the default person detector.
//!
//! The discovery messages are validated by Home Assistant's own code: the
//! PyPI `homeassistant` package (2024.1.6, the newest for Python 3.11) in
//! the venv `scripts/setup --test` caches, through the steps its MQTT
//! discovery takes and each platform's DISCOVERY_SCHEMA
//! (`tests/homeassistant/validate.py`). Starting Home Assistant core itself
//! was not chosen: at its first start it installs each integration's
//! requirements from PyPI and needs an onboarded config entry for MQTT,
//! minutes of set-up for the same schemas.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::daemon::Daemon;
use common::MqttMessage;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Value};
use sightline::tools::rtsp_server::RtspServer;
use tokio::sync::mpsc::UnboundedReceiver;

const USERS: [(&str, &str); 3] = [
    ("sightline", "daemon-pass"),
    ("homeassistant", "ha-pass"),
    ("viewer", "viewer-pass"),
];

struct Broker {
    port: u16,
    child: std::process::Child,
}

impl Broker {
    /// Kills mosquitto and starts it again with the same config and port.
    /// Persistence is off, so it comes back knowing no retained message.
    fn restart(&mut self, dir: &Path) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for _ in 0..20 {
            if let Some(child) = common::spawn_mosquitto(&dir.join("mosquitto.conf"), &[self.port])
            {
                self.child = child;
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("mosquitto did not start again on port {}", self.port);
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// mosquitto with passwords for the three users and the documented ACL.
fn broker(dir: &Path) -> Broker {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
    let passwd = dir.join("passwd");
    for (i, (user, pass)) in USERS.iter().enumerate() {
        let mut cmd = Command::new("mosquitto_passwd");
        cmd.arg("-b");
        if i == 0 {
            cmd.arg("-c");
        }
        let ok = cmd
            .arg(&passwd)
            .args([user, pass])
            .status()
            .expect("mosquitto_passwd runs");
        assert!(ok.success(), "mosquitto_passwd for {user}");
    }
    // mosquitto drops to its own user, which may not read the checkout
    // (a clone under a 0700 mktemp dir): it gets a copy of the ACL here.
    let acl = dir.join("sightline.acl");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/mosquitto-sightline.acl"),
        &acl,
    )
    .expect("copy the ACL");
    let _ = std::fs::set_permissions(&acl, std::fs::Permissions::from_mode(0o644));
    let _ = std::fs::set_permissions(&passwd, std::fs::Permissions::from_mode(0o644));
    for _ in 0..5 {
        let port = common::free_port();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous false\npersistence false\n\
                 password_file {}\nacl_file {}\n",
                passwd.display(),
                acl.display()
            ),
        )
        .expect("conf");
        if let Some(child) = common::spawn_mosquitto(&conf, &[port]) {
            return Broker { port, child };
        }
    }
    panic!("mosquitto with the ACL did not start");
}

fn login(port: u16, user: &str) -> MqttOptions {
    let pass = USERS.iter().find(|(u, _)| *u == user).expect("a user").1;
    let mut opts = MqttOptions::new(
        format!("{user}-{}", uuid::Uuid::new_v4()),
        "127.0.0.1",
        port,
    );
    opts.set_credentials(user, pass);
    opts.set_max_packet_size(1 << 20, 1 << 20);
    opts
}

/// Publishes one message as `user` and waits for the broker's PUBACK
/// (which mosquitto sends even when the ACL drops the message).
async fn publish(port: u16, user: &str, topic: &str, payload: &str) {
    let (client, mut eventloop) = AsyncClient::new(login(port, user), 8);
    client
        .publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec())
        .await
        .expect("queued");
    let acked = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => return true,
                Ok(Event::Incoming(Packet::ConnAck(c)))
                    if c.code != rumqttc::ConnectReturnCode::Success =>
                {
                    return false
                }
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    })
    .await;
    assert_eq!(acked, Ok(true), "{user} published to {topic}");
    let _ = client.disconnect().await;
}

/// Everything the subscriber saw, and a way to wait for more.
struct Seen {
    rx: UnboundedReceiver<MqttMessage>,
    all: Vec<MqttMessage>,
}

impl Seen {
    /// Waits (at most `secs`) for a message from index `from` on that
    /// satisfies `want`; returns its index.
    async fn wait(
        &mut self,
        from: usize,
        secs: u64,
        want: impl Fn(&MqttMessage) -> bool,
    ) -> Option<usize> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(i) = (from..self.all.len()).find(|i| want(&self.all[*i])) {
                return Some(i);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            if let Ok(Some(m)) =
                tokio::time::timeout(left.min(Duration::from_millis(200)), self.rx.recv()).await
            {
                self.all.push(m);
            }
        }
    }

    /// Collects for `secs`, then returns the messages since `from`.
    async fn settle(&mut self, from: usize, secs: u64) -> &[MqttMessage] {
        let _ = self.wait(from, secs, |_| false).await;
        &self.all[from..]
    }
}

fn on(topic: &str, raw: &str) -> impl Fn(&MqttMessage) -> bool {
    let (topic, raw) = (topic.to_string(), raw.to_string());
    move |m| m.topic == topic && m.raw == raw
}

/// The cached venv's Python, which `scripts/setup --test` makes.
fn ha_python() -> PathBuf {
    let home = std::env::var_os("HOME").expect("HOME");
    let py = Path::new(&home).join(".cache/sightline/ha-venv/bin/python");
    assert!(
        py.is_file(),
        "{} missing: run scripts/setup --test",
        py.display()
    );
    py
}

/// Runs Home Assistant's schemas over the discovery messages.
fn validate(messages: &[MqttMessage], dir: &Path) -> Value {
    let list: Vec<Value> = messages
        .iter()
        .map(|m| json!({"topic": m.topic, "payload": m.raw}))
        .collect();
    let file = dir.join("discovery.json");
    std::fs::write(&file, serde_json::to_vec(&list).expect("json")).expect("write");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/homeassistant/validate.py");
    let out = Command::new(ha_python())
        .arg(script)
        .arg("homeassistant")
        .arg(&file)
        .output()
        .expect("the validator runs");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "validator output: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(out.status.success(), "Home Assistant refused: {report}");
    report
}

fn daemon_config(rtsp: &str, port: u16, dir: &Path) -> String {
    let pass = dir.join("daemon-pass");
    std::fs::write(&pass, USERS[0].1).expect("password file");
    format!(
        "[[streams]]\nid = \"cam\"\nurl = \"{rtsp}\"\nfps = 2\n\
         [mqtt]\nport = {port}\nusername = \"sightline\"\npassword_file = \"{}\"\n\
         client_id = \"ha-test-{}\"\ndiscovery = true\n",
        pass.display(),
        uuid::Uuid::new_v4()
    )
}

/// The API-made event and alert (so they can be deleted), on the config's stream.
async fn wire(d: &Daemon) -> (String, String) {
    let ix = d
        .ok(
            "POST",
            "rtstream/cam/index/scene",
            Some(json!({"extraction_type": "time", "extraction_config": {"time": 2}})),
        )
        .await;
    let ix = ix["rtstream_index_id"].as_str().expect("index").to_string();
    let ev = d
        .ok(
            "POST",
            "rtstream/event",
            Some(json!({"event_prompt": "person", "label": "visitor"})),
        )
        .await;
    let ev = ev["event_id"].as_str().expect("event").to_string();
    let al = d
        .ok(
            "POST",
            &format!("rtstream/cam/index/{ix}/alert"),
            Some(json!({"event_id": ev, "mqtt": true})),
        )
        .await;
    (ev, al["alert_id"].as_str().expect("alert").to_string())
}

async fn alert_status(d: &Daemon, id: &str) -> String {
    let all = d.ok("GET", "alert", None).await;
    let list = all["alerts"].as_array().cloned().unwrap_or_default();
    let a = list
        .iter()
        .find(|a| a["alert_id"] == id)
        .expect("alert listed");
    a["status"].as_str().unwrap_or_default().to_string()
}

fn is_config(m: &MqttMessage) -> bool {
    m.topic.starts_with("homeassistant/") && m.topic.ends_with("/config")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn home_assistant_sees_the_rules_and_switches_them_over_mqtt() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut b = broker(dir.path());
    let server = RtspServer::serve_files(0, &[("cam", &common::media("demo.mp4"))]).expect("rtsp");
    let rx = common::subscribe_with(login(b.port, "homeassistant"), "#").await;
    let mut seen = Seen {
        rx,
        all: Vec::new(),
    };
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).expect("state dir");
    let config = daemon_config(&server.url("cam"), b.port, dir.path());
    let d = Daemon::start(&state, &config).await;
    let (ev, alert) = wire(&d).await;
    let topic = |leaf: &str| format!("sightline/cam/{ev}/{leaf}");

    // Five entities, each valid to Home Assistant's schemas.
    let _ = seen.settle(0, 3).await;
    let configs: Vec<MqttMessage> = seen
        .all
        .iter()
        .filter(|m| is_config(m) && !m.raw.is_empty())
        .cloned()
        .collect();
    assert_eq!(
        configs.len(),
        5,
        "{:?}",
        configs.iter().map(|m| &m.topic).collect::<Vec<_>>()
    );
    let report = validate(&configs, dir.path());
    assert_eq!(
        report["validated"],
        json!({"binary_sensor": 1, "sensor": 2, "switch": 1, "image": 1}),
        "{report}"
    );
    let switch = configs
        .iter()
        .find(|m| m.topic.contains("/switch/"))
        .expect("a switch");
    assert_eq!(switch.body["command_topic"], topic("set"));
    assert_eq!(switch.body["availability_topic"], "sightline/status");
    assert_eq!(switch.body["device"]["name"], "cam");
    assert!(
        seen.wait(0, 5, on(&topic("state"), "ON")).await.is_some(),
        "the switch's state"
    );

    // `active` follows the person on the footage (6–12 s of the clip).
    let start = seen
        .wait(0, 40, on(&topic("active"), "ON"))
        .await
        .expect("active ON");
    seen.wait(start, 30, on(&topic("active"), "OFF"))
        .await
        .expect("active OFF after");
    let last = seen
        .all
        .iter()
        .rfind(|m| m.topic == topic("last"))
        .expect("a last alert");
    assert_eq!(last.body["label"], "visitor");
    assert!(
        last.body["confidence"].as_f64().unwrap_or(0.0) > 0.3,
        "{}",
        last.raw
    );

    // Home Assistant says it restarted: discovery again.
    let mark = seen.all.len();
    publish(b.port, "homeassistant", "homeassistant/status", "online").await;
    let again = seen
        .settle(mark, 3)
        .await
        .iter()
        .filter(|m| is_config(m))
        .count();
    assert_eq!(again, 5, "republished on Home Assistant's birth message");

    // The broker restarts empty: sightline reconnects and publishes its
    // discovery again, which a new subscriber then receives. The old
    // subscriber's session died with the broker.
    b.restart(dir.path());
    seen.rx = common::subscribe_with(login(b.port, "homeassistant"), "#").await;
    let mark = seen.all.len();
    let mut back: Vec<&String> = seen
        .settle(mark, 5)
        .await
        .iter()
        .filter(|m| is_config(m) && !m.raw.is_empty())
        .map(|m| &m.topic)
        .collect();
    back.sort();
    back.dedup();
    assert_eq!(
        back.len(),
        5,
        "discovery after the broker restarted: {back:?}"
    );

    // A user the ACL gives no rights cannot switch it off ...
    publish(b.port, "viewer", &topic("set"), "OFF").await;
    let _ = seen.settle(seen.all.len(), 2).await;
    assert_eq!(
        alert_status(&d, &alert).await,
        "enabled",
        "the ACL dropped the viewer's command"
    );
    // ... Home Assistant can.
    let mark = seen.all.len();
    publish(b.port, "homeassistant", &topic("set"), "OFF").await;
    seen.wait(mark, 10, on(&topic("state"), "OFF"))
        .await
        .expect("state OFF");
    assert_eq!(alert_status(&d, &alert).await, "disabled");

    // Off: a whole pass of the clip (person included) gives no alert.
    let mark = seen.all.len();
    let quiet = seen.settle(mark, 24).await;
    let alerts: Vec<&String> = quiet
        .iter()
        .filter(|m| {
            m.topic.starts_with("sightline/cam/alerts/")
                || (m.topic == topic("active") && m.raw == "ON")
        })
        .map(|m| &m.topic)
        .collect();
    assert!(alerts.is_empty(), "nothing while off: {alerts:?}");
    d.stop().await;

    // Still off after a restart; ON brings the alerts back.
    let d = Daemon::start(&state, &config).await;
    assert_eq!(
        alert_status(&d, &alert).await,
        "disabled",
        "kept across a restart"
    );
    let mark = seen.all.len();
    publish(b.port, "homeassistant", &topic("set"), "ON").await;
    seen.wait(mark, 10, on(&topic("state"), "ON"))
        .await
        .expect("state ON");
    assert_eq!(alert_status(&d, &alert).await, "enabled");
    seen.wait(mark, 40, |m| m.topic.starts_with("sightline/cam/alerts/"))
        .await
        .expect("an alert once on again");

    // Deleting the alert and its event removes the entities.
    let mark = seen.all.len();
    d.ok("DELETE", &format!("alert/{alert}"), None).await;
    d.ok("DELETE", &format!("rtstream/event/{ev}"), None).await;
    let after = seen.settle(mark, 3).await;
    let emptied: Vec<&String> = after
        .iter()
        .filter(|m| is_config(m) && m.raw.is_empty())
        .map(|m| &m.topic)
        .collect();
    let mut expected: Vec<&String> = configs.iter().map(|m| &m.topic).collect();
    expected.sort();
    let mut emptied = emptied;
    emptied.sort();
    emptied.dedup();
    assert_eq!(
        emptied, expected,
        "an empty retained payload for every entity"
    );
    assert!(
        after
            .iter()
            .any(|m| m.topic == topic("state") && m.raw.is_empty()),
        "the state topics are cleared too"
    );
    d.stop().await;
}
