//! MQTT at least once across a broker restart: 1,000 QoS 1 alerts are sent
//! (through the API's test-alert route, the same path as a detection) while
//! a real mosquitto with persistence is stopped and started again mid-way;
//! a persistent subscriber (fixed client id, clean session off) must end up
//! with every alert id.

use crate::common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::daemon::Daemon;
use rumqttc::MqttOptions;
use tokio::sync::mpsc::UnboundedReceiver;

const ALERTS: usize = 1000;

/// A subscriber with a fixed client id and a persistent session.
async fn persistent_subscriber(port: u16) -> UnboundedReceiver<common::MqttMessage> {
    let mut opts = MqttOptions::new(
        format!("test-persistent-{}", std::process::id()),
        "127.0.0.1",
        port,
    );
    opts.set_keep_alive(Duration::from_secs(5));
    opts.set_clean_session(false);
    common::subscribe_with(opts, "alerts/#").await
}

/// Counts the copies of each occurrence id received so far.
fn tally(rx: &mut UnboundedReceiver<common::MqttMessage>, got: &mut HashMap<String, usize>) {
    for m in common::drain(rx) {
        if let Some(o) = m.body["occurrence_id"].as_str() {
            *got.entry(o.to_string()).or_default() += 1;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_alert_reaches_a_persistent_subscriber_across_a_broker_restart() {
    let broker = Arc::new(Mutex::new(common::PersistentMosquitto::start()));
    let port = broker.lock().map(|b| b.port).expect("broker");
    let mut rx = persistent_subscriber(port).await;
    let mut got: HashMap<String, usize> = HashMap::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let d = Daemon::start(
        dir.path(),
        &format!(
            "[mqtt]\nport = {port}\nclient_id = \"sightline-restart-{}\"\n\
             [[events]]\nid = \"person\"\nprompt = \"Detect person\"\n\
             [[alerts]]\nid = \"m\"\nevent = \"person\"\nmqtt = true\nmqtt_topic = \"alerts/{{stream}}/{{label}}\"\n",
            std::process::id()
        ),
    )
    .await;
    let d = Arc::new(d);

    let sent = Arc::new(AtomicUsize::new(0));
    let ids: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut senders = Vec::new();
    for w in 0..4 {
        let (d, sent, ids) = (Arc::clone(&d), Arc::clone(&sent), Arc::clone(&ids));
        senders.push(tokio::spawn(async move {
            for _ in (w..ALERTS).step_by(4) {
                let v = d.ok("POST", "alert/m/test", None).await;
                assert_eq!(v["messages_queued"], 1);
                if let (Some(id), Ok(mut ids)) = (v["occurrence_id"].as_str(), ids.lock()) {
                    ids.push(id.to_string());
                }
                sent.fetch_add(1, Ordering::SeqCst);
                // A steady stream, so the restart lands mid-way.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
    }
    // Stop the broker a third of the way in, start it again 3 s later.
    while sent.load(Ordering::SeqCst) < ALERTS / 3 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let at_stop = sent.load(Ordering::SeqCst);
    let b = Arc::clone(&broker);
    tokio::task::spawn_blocking(move || {
        if let Ok(mut b) = b.lock() {
            b.stop();
        }
    })
    .await
    .expect("stop");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = sent.load(Ordering::SeqCst) - at_stop;
    let b = Arc::clone(&broker);
    tokio::task::spawn_blocking(move || {
        if let Ok(mut b) = b.lock() {
            b.restart();
        }
    })
    .await
    .expect("restart");
    let restarted = Instant::now();
    for s in senders {
        s.await.expect("sender");
    }
    let ids = ids.lock().map(|i| i.clone()).unwrap_or_default();
    assert_eq!(ids.len(), ALERTS);

    let deadline = Instant::now() + Duration::from_secs(120);
    let mut all_in = None;
    while Instant::now() < deadline {
        tally(&mut rx, &mut got);
        if ids.iter().all(|i| got.contains_key(i)) {
            all_in = Some(restarted.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tally(&mut rx, &mut got);
    let g = &got;
    let missing = ids.iter().filter(|i| !g.contains_key(*i)).count();
    let unknown = g.keys().filter(|k| !ids.contains(k)).count();
    let duplicates: usize = g.values().map(|n| n - 1).sum();
    println!(
        "broker restart: {} alerts in ({during} sent while the broker was down), {} distinct out, \
         {duplicates} duplicates, {missing} missing; all in {:.1} s after the broker came back",
        ids.len(),
        g.len(),
        all_in.map_or(f64::NAN, |t| t.as_secs_f64())
    );
    assert_eq!(
        missing, 0,
        "every alert id reaches the persistent subscriber"
    );
    assert_eq!(unknown, 0, "nothing arrives that was not sent");
    assert!(during > 0, "alerts were accepted while the broker was down");
    if let Ok(d) = Arc::try_unwrap(d) {
        d.stop().await;
    }
}
