//! The retained availability topic against a real mosquitto: `online` once
//! connected, and `offline` from the broker (the Last Will) when the daemon
//! is killed without a chance to say goodbye.

use crate::common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

async fn wait_for(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<common::MqttMessage>,
    want: &str,
    secs: u64,
) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
            if m.raw == want {
                return true;
            }
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_will_says_offline_after_kill_9() {
    let broker = common::Mosquitto::start();
    let mut rx = common::subscribe(broker.port, "sightline/status").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("sightline.toml");
    std::fs::write(
        &config,
        format!(
            "[[streams]]\nid = \"s\"\nurl = \"test:ball\"\n\
             [mqtt]\nport = {}\nclient_id = \"avail-{}\"\nkeep_alive_secs = 5\n",
            broker.port,
            std::process::id()
        ),
    )
    .expect("write config");
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_sightline"))
        .args(["run", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sightline");

    let online = wait_for(&mut rx, "online", 20).await;
    let _ = daemon.kill(); // SIGKILL: no clean shutdown, so only the broker can say offline
    let _ = daemon.wait();
    assert!(online, "daemon announced online");
    // The kernel closes the socket, so the broker publishes the will at once
    // (a link that just goes silent would take 1.5 x keep-alive, 7.5 s).
    assert!(
        wait_for(&mut rx, "offline", 20).await,
        "Last Will published offline"
    );
}
