//! Helpers shared by the integration tests: a real mosquitto broker on a free
//! port, an MQTT subscriber, and paths to the committed media.
#![allow(dead_code)]

pub mod daemon;
pub mod nats;
pub mod process;
pub mod receiver;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

pub fn media(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/media")
        .join(name)
}

/// Starts `sightline serve` (a camera in a process of its own, so a test
/// can kill it) on `port` (0: any) playing the committed clip `clip` in a
/// loop; returns it and its port.
pub fn camera(clip: &str, port: u16) -> Option<(Child, u16)> {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_sightline"))
        .args(["serve", "--port", &port.to_string()])
        .arg(media(clip))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let out = child.stdout.take()?;
    let mut line = String::new();
    BufReader::new(out).read_line(&mut line).ok()?;
    let port = line
        .trim()
        .strip_prefix("rtsp://127.0.0.1:")?
        .split('/')
        .next()?
        .parse()
        .ok()?;
    Some((child, port))
}

/// Where `scripts/setup --test` installed playwright-core's node_modules.
pub fn playwright() -> PathBuf {
    let cache = std::env::var("SIGHTLINE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/sightline")
        });
    cache.join("playwright/node_modules")
}

/// A port that was free a moment ago (mosquitto cannot take a bound socket).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

/// A mosquitto broker owned by one test; killed on drop.
pub struct Mosquitto {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    pub fn start() -> Mosquitto {
        let dir = tempfile::tempdir().expect("tempdir");
        for _ in 0..5 {
            let port = free_port();
            let conf = dir.path().join("mosquitto.conf");
            std::fs::write(
                &conf,
                format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
            )
            .expect("write mosquitto.conf");
            if let Some(child) = spawn_mosquitto(&conf, &[port]) {
                return Mosquitto {
                    port,
                    child,
                    _dir: dir,
                };
            }
        }
        panic!("mosquitto did not start");
    }
}

/// A mosquitto broker with persistence on a fixed port, which a test can
/// stop (SIGTERM, saving its database) and start again.
pub struct PersistentMosquitto {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl PersistentMosquitto {
    pub fn start() -> PersistentMosquitto {
        let dir = tempfile::tempdir().expect("tempdir");
        for _ in 0..5 {
            let port = free_port();
            if let Some(child) = run_persistent(dir.path(), port) {
                return PersistentMosquitto {
                    port,
                    child: Some(child),
                    dir,
                };
            }
        }
        panic!("mosquitto did not start");
    }

    /// Stops the broker the way systemd would (SIGTERM: it saves its queue).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and database.
    pub fn restart(&mut self) {
        self.child = run_persistent(self.dir.path(), self.port);
        assert!(
            self.child.is_some(),
            "mosquitto restarts on port {}",
            self.port
        );
    }
}

fn run_persistent(dir: &std::path::Path, port: u16) -> Option<Child> {
    // Started as root, mosquitto drops to its own user: it must be able to
    // write its database here.
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777));
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n\
             persistence_location {}/\nautosave_interval 1\nmax_queued_messages 0\n",
            dir.display()
        ),
    )
    .expect("write mosquitto.conf");
    spawn_mosquitto(&conf, &[port])
}

/// Starts mosquitto with `conf` and waits until every port in `ports`
/// accepts connections; `None` if it exits first (a port was taken in the
/// meantime) or does not come up within 5 s.
pub fn spawn_mosquitto(conf: &std::path::Path, ports: &[u16]) -> Option<Child> {
    let mut child = Command::new("mosquitto")
        .arg("-c")
        .arg(conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto must be installed (scripts/setup installs it)");
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let up = |p: &u16| std::net::TcpStream::connect(("127.0.0.1", *p)).is_ok();
        if ports.iter().all(up) {
            return Some(child);
        }
        if let Ok(Some(_)) = child.try_wait() {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

impl Drop for PersistentMosquitto {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A received MQTT message.
#[derive(Debug, Clone)]
pub struct MqttMessage {
    pub topic: String,
    pub body: serde_json::Value,
    pub raw: String,
    /// The payload as sent (binary payloads such as snapshots).
    pub raw_bytes: Vec<u8>,
    pub at: std::time::SystemTime,
}

/// Subscribes to `filter` and returns once the broker acknowledged it.
pub async fn subscribe(port: u16, filter: &str) -> mpsc::UnboundedReceiver<MqttMessage> {
    let mut opts = MqttOptions::new(
        format!("test-sub-{}", uuid::Uuid::new_v4()),
        "127.0.0.1",
        port,
    );
    opts.set_keep_alive(Duration::from_secs(10));
    // Snapshots are JPEGs of tens of kB; rumqttc's default limit is 10 kB.
    opts.set_max_packet_size(1 << 20, 1 << 20);
    subscribe_with(opts, filter).await
}

/// Like [`subscribe`], with the caller's client options (credentials, a
/// fixed client id and persistent session). The subscriber keeps
/// reconnecting after errors.
pub async fn subscribe_with(
    opts: MqttOptions,
    filter: &str,
) -> mpsc::UnboundedReceiver<MqttMessage> {
    let (client, mut eventloop) = AsyncClient::new(opts, 64);
    client
        .subscribe(filter, QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    let (tx, rx) = mpsc::unbounded_channel();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let _client = client;
        let mut ready = Some(ready_tx);
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let body =
                        serde_json::from_slice(&p.payload).unwrap_or(serde_json::Value::Null);
                    let _ = tx.send(MqttMessage {
                        topic: p.topic.clone(),
                        body,
                        raw: String::from_utf8_lossy(&p.payload).into_owned(),
                        raw_bytes: p.payload.to_vec(),
                        at: std::time::SystemTime::now(),
                    });
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), ready_rx)
        .await
        .expect("SUBACK within 10 s")
        .expect("subscriber task alive");
    rx
}

/// Drains everything currently in a channel.
pub fn drain<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> Vec<T> {
    let mut out = Vec::new();
    while let Ok(x) = rx.try_recv() {
        out.push(x);
    }
    out
}

/// An enabled alert on event `e`, every stream, posting to `url`.
pub fn webhook_alert(id: &str, url: &str) -> sightline::domain::AlertSpec {
    use sightline::domain::{AlertId, EventId};
    sightline::domain::AlertSpec {
        id: AlertId::new(id),
        event: EventId::new("e"),
        streams: Vec::new(),
        callback_url: Some(url.to_string()),
        webhook_secrets: Vec::new(),
        mqtt_topic: None,
        ws_connection: None,
        index: None,
        send_end: true,
        enabled: true,
    }
}

/// The start of an occurrence of event `e` on stream `s`.
pub fn occurrence(id: &str) -> sightline::matcher::Occurrence {
    use sightline::domain::{EventId, StreamId};
    sightline::matcher::Occurrence {
        occurrence_id: id.into(),
        phase: sightline::matcher::Phase::Start,
        event_id: EventId::new("e"),
        label: "l".into(),
        model: "person".into(),
        stream_id: StreamId::new("s"),
        start_time: 0.0,
        end_time: 0.5,
        confidence: 0.9,
        count: 1,
        explanation: "1 person detected (best 0.90)".into(),
        frame_wall: std::time::SystemTime::now(),
        frame_arrived: Instant::now(),
        frame_time: 0.0,
        picture: None,
        boxes: Vec::new(),
        objects: Vec::new(),
        track_id: None,
        crossing: None,
        timing: Default::default(),
    }
}

/// A tmpfs mounted for one test, unmounted when dropped.
pub struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    pub fn mount(at: &std::path::Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).expect("mount point");
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .expect("running mount");
        assert!(
            out.status.success(),
            "this test needs a small tmpfs as a full disk and could not mount one (it must run as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Runs the daemon on `streams_toml` (streams, and any sections before the
/// events) for `secs`, or until its file streams end, with one person event
/// and no alert targets that matter (a callback nobody reads), returning
/// every scored frame.
pub async fn scored_frames(streams_toml: &str, secs: u64) -> Vec<sightline::domain::Scores> {
    let text = format!(
        "{streams_toml}\n[[events]]\nid = \"p\"\nprompt = \"person\"\n\
         [[alerts]]\nid = \"a\"\nevent = \"p\"\ncallback_url = \"http://127.0.0.1:9/unused\"\n"
    );
    let config = sightline::config::Config::parse(&text, "t").expect("valid config");
    let (tx, rx) = crossbeam_channel::bounded(10_000);
    let hooks = sightline::app::Hooks {
        scored: Some(tx),
        stop_when_finished: true,
        ..sightline::app::Hooks::default()
    };
    sightline::app::run(config, hooks, tokio::time::sleep(Duration::from_secs(secs)))
        .await
        .expect("daemon runs");
    rx.try_iter().collect()
}
