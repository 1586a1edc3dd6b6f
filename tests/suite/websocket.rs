//! WebSocket at-most-once fan-out over real sockets: two clients connect
//! through the daemon's own bootstrap route; one reads, one never does.
//! Messages are pushed into the daemon's hub (the same call the dispatcher
//! makes for an alert) at up to 1,000 a second, about 1 KiB each, so the
//! stuck client's socket buffers fill within seconds. The daemon's default
//! buffer of 256 messages per client applies. The reader must get every
//! message within 1 s of its sending; the stuck client must be cut off.
//!
//! Resume: a client that reconnects under its connection id with the last
//! `seq` it read gets exactly what it missed, in order, then live messages,
//! and is told of a gap when the journal has pruned part of it.

use crate::common;

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

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a ticket URL with `query`, returning the socket and its `init`.
async fn open_with(d: &Daemon, query: &str) -> (Value, Socket) {
    let boot = d.ok("GET", "collection/default/websocket", None).await;
    let url = format!(
        "{}{query}",
        boot["websocket_url"].as_str().expect("websocket_url")
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("WebSocket connects");
    (next_json(&mut ws).await, ws)
}

async fn next_json(ws: &mut Socket) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a message within 10 s")
            .expect("not closed")
            .expect("readable");
        if let Message::Text(t) = m {
            return serde_json::from_str(&t).expect("JSON");
        }
    }
}

/// Waits until the hub has noticed the client went away.
async fn gone(hub: &sightline::alert::ws::Hub, id: &str) {
    for _ in 0..100 {
        if !hub.is_connected(id) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{id} still connected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resuming_client_gets_what_it_missed_then_live_and_is_told_of_gaps() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (engine_tx, engine_rx) = tokio::sync::oneshot::channel();
    let d = Daemon::start_with(dir.path(), "", Some(engine_tx)).await;
    let engine = engine_rx.await.expect("engine handed over");
    let hub = std::sync::Arc::clone(engine.hub());

    let (hello, mut ws) = open_with(&d, "").await;
    let id = hello["connection_id"]
        .as_str()
        .expect("connection_id")
        .to_string();
    for n in 0..100 {
        hub.publish(&id, "alert", &json!({ "n": n }));
    }
    let mut last = 0;
    for n in 0..100 {
        let v = next_json(&mut ws).await;
        assert_eq!(v["data"]["n"], n);
        let seq = v["seq"].as_u64().expect("seq");
        assert!(seq > last, "seq rises: {seq} after {last}");
        last = seq;
    }
    drop(ws);
    gone(&hub, &id).await;

    // 500 more while it is away, then it comes back with its last seq.
    for n in 100..600 {
        assert!(
            !hub.publish(&id, "alert", &json!({ "n": n })),
            "nobody to queue for"
        );
    }
    let (hello, mut ws) = open_with(&d, &format!("?connection_id={id}&since={last}")).await;
    assert_eq!(
        (
            hello["connection_id"].as_str(),
            hello["resumed_after"].as_u64()
        ),
        (Some(id.as_str()), Some(last))
    );
    for n in 100..600 {
        let v = next_json(&mut ws).await;
        assert_eq!(
            (v["data"]["n"].as_i64(), v["seq"].as_u64()),
            (Some(n), Some(last + 1)),
            "exactly the missed ones, in order"
        );
        last += 1;
    }
    hub.publish(&id, "alert", &json!({ "n": 600 }));
    let v = next_json(&mut ws).await;
    assert_eq!(
        (v["data"]["n"].as_i64(), v["seq"].as_u64()),
        (Some(600), Some(last + 1)),
        "then live"
    );
    last += 1;
    // The same connection cannot be resumed twice at once.
    let boot = d.ok("GET", "collection/default/websocket", None).await;
    let url = format!(
        "{}?connection_id={id}&since={last}",
        boot["websocket_url"].as_str().unwrap_or("")
    );
    assert!(
        tokio_tungstenite::connect_async(&url).await.is_err(),
        "refused while open"
    );
    drop(ws);
    gone(&hub, &id).await;

    // Past the journal's default 10,000 messages: the oldest are pruned,
    // and the client is told what it lost before it gets the rest.
    for n in 0..10_200 {
        hub.publish(&id, "alert", &json!({ "n": n }));
    }
    let (_, mut ws) = open_with(&d, &format!("?connection_id={id}&since={last}")).await;
    let gap = next_json(&mut ws).await;
    assert_eq!(gap["type"], "gap", "{gap}");
    assert_eq!(gap["from"].as_u64(), Some(last + 1));
    let to = gap["to"].as_u64().expect("to");
    let first = next_json(&mut ws).await;
    assert_eq!(
        first["seq"].as_u64(),
        Some(to + 1),
        "the rest follows the gap"
    );
    // 10,801 published in all; the journal keeps the newest 10,000 (pruned
    // every 64 messages), so about 150 of the client's are gone.
    assert!(to - last >= 100, "the oldest were pruned: {gap}");
}
