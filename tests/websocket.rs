//! WebSocket at-most-once fan-out over real sockets: two clients connect
//! through the daemon's own bootstrap route; one reads, one never does.
//! Messages are pushed into the daemon's hub (the same call the dispatcher
//! makes for an alert) at up to 1,000 a second, about 1 KiB each, so the
//! stuck client's socket buffers fill within seconds. The daemon's default
//! buffer of 256 messages per client applies. The reader must get every
//! message within 1 s of its sending; the stuck client must be cut off.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::daemon::Daemon;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

async fn open(
    d: &Daemon,
) -> (
    String,
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
) {
    let boot = d.ok("GET", "collection/default/websocket", None).await;
    let url = boot["websocket_url"]
        .as_str()
        .expect("websocket_url")
        .to_string();
    let (mut ws, _) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("WebSocket connects");
    let first = ws.next().await.expect("a first message").expect("readable");
    let hello: Value = serde_json::from_str(first.to_text().expect("text")).expect("JSON");
    let id = hello["connection_id"]
        .as_str()
        .expect("connection_id")
        .to_string();
    // A ticket works once.
    assert!(
        tokio_tungstenite::connect_async(&url).await.is_err(),
        "ticket reused"
    );
    (id, ws)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_client_is_cut_off_and_the_reader_gets_everything_in_time() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (engine_tx, engine_rx) = tokio::sync::oneshot::channel();
    let d = Daemon::start_with(dir.path(), "", Some(engine_tx)).await;
    let engine = engine_rx.await.expect("engine handed over");
    let hub = std::sync::Arc::clone(engine.hub());

    let (reader_id, mut reader) = open(&d).await;
    let (stuck_id, stuck) = open(&d).await;

    let total = 12_000u64;
    let padding = "x".repeat(1000);
    let reading = tokio::spawn(async move {
        let mut worst_ms = 0.0f64;
        let mut seqs = Vec::new();
        while let Some(Ok(m)) = reader.next().await {
            let Message::Text(t) = m else { continue };
            let v: Value = serde_json::from_str(&t).expect("JSON");
            assert_eq!(v["channel"], "alert");
            worst_ms = worst_ms.max(now_ms() - v["data"]["sent_ms"].as_f64().unwrap_or(0.0));
            let seq = v["data"]["seq"].as_u64().unwrap_or(u64::MAX);
            seqs.push(seq);
            if seq + 1 == total {
                break;
            }
        }
        (seqs, worst_ms)
    });

    let started = Instant::now();
    let mut cut_after = None;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    // After a stall (a busy machine), keep the pace rather than catching up
    // in a burst: the test is about a reader that keeps up, not about bursts.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for seq in 0..total {
        tick.tick().await;
        let msg = json!({"seq": seq, "sent_ms": now_ms(), "padding": padding});
        assert!(
            hub.publish(&reader_id, "alert", &msg),
            "reader never falls behind"
        );
        hub.publish(&stuck_id, "alert", &msg);
        if cut_after.is_none() && !hub.is_connected(&stuck_id) {
            cut_after = Some((seq, started.elapsed()));
        }
    }
    let (seqs, worst_ms) = tokio::time::timeout(Duration::from_secs(30), reading)
        .await
        .expect("reader finishes")
        .expect("reader task");
    assert_eq!(
        seqs,
        (0..total).collect::<Vec<_>>(),
        "every message, in order"
    );
    assert!(worst_ms < 1000.0, "slowest message took {worst_ms:.0} ms");
    let (seq, after) = cut_after.expect("the stuck client was cut off");
    println!(
        "reader: {total} messages, slowest {worst_ms:.1} ms; stuck client cut after {seq} messages ({after:?})"
    );
    let stats = hub.stats();
    assert_eq!(stats.slow_disconnects, 1);

    // The stuck client finds its connection closed once it does read.
    let mut stuck = stuck;
    let mut got = 0u64;
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(m) = stuck.next().await {
            match m {
                Ok(Message::Text(_)) => got += 1,
                Ok(Message::Close(_)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the stuck client's socket is closed");
    assert!(
        got < total,
        "the stuck client did not get everything ({got})"
    );
    drop(engine);
    d.stop().await;
}
