//! WebSocket clients of a site: a client on box 1 gets the alert of a
//! camera box 3 runs, and when it comes back on box 2 with the last `seq`
//! it read, it gets exactly what it missed.

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use super::delivery::Hooks;
use crate::common::process::Proc;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a WebSocket on `b` through its ticket route, with `query`
/// appended; returns the socket and its `init` message.
async fn open(b: &Proc, query: &str) -> (Socket, Value) {
    let boot = b.ok("GET", "collection/default/websocket", None).await;
    let url = format!(
        "{}{query}",
        boot["websocket_url"].as_str().expect("ticket URL")
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("WebSocket connects");
    let hello = next(&mut ws, Duration::from_secs(10)).await.expect("init");
    (ws, hello)
}

/// The next JSON text message within `within`, if any.
async fn next(ws: &mut Socket, within: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let m = tokio::time::timeout_at(deadline, ws.next())
            .await
            .ok()??
            .ok()?;
        if let Message::Text(t) = m {
            return serde_json::from_str(&t).ok();
        }
    }
}

/// `(camera, index, event)` on box 3's camera; `hooks` get the SDK's
/// alert on the same event, which tells when the next occurrence came.
pub async fn across_boxes(
    boxes: &[Proc],
    (stream, index, event): (&str, &str, &str),
    (hooks, sdk_alert): (&Hooks, &str),
) {
    let (mut ws, hello) = open(&boxes[0], "").await;
    let conn = hello["connection_id"]
        .as_str()
        .expect("connection id")
        .to_string();
    let body = json!({"event_id": event, "ws_connection_id": conn});
    let path = format!("rtstream/{stream}/index/{index}/alert");
    let alert = boxes[1].ok("POST", &path, Some(body)).await;
    let alert = alert["alert_id"].as_str().expect("alert id").to_string();
    let first = loop {
        let m = next(&mut ws, Duration::from_secs(150))
            .await
            .expect("the box-3 camera's alert reaches a client on box 1");
        if m["channel"] == "alert" && m["data"]["alert_id"] == json!(alert) {
            break m;
        }
    };
    let seen_seq = first["seq"].as_u64().expect("seq");
    eprintln!("a WebSocket client on box 1 got box 3's alert (seq {seen_seq})");
    drop(ws);

    // Away: the next occurrence's message waits for the client.
    // (A new occurrence's start: an alert made through the API sends no
    // end messages unless asked to.)
    let mut seen: BTreeSet<String> = hooks.ids(sdk_alert);
    loop {
        let id = hooks
            .next(sdk_alert, &seen, "while the WebSocket client was away")
            .await;
        if id.ends_with(":start") {
            break;
        }
        seen.insert(id);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    let query = format!("?connection_id={conn}&since={seen_seq}");
    let (mut ws, hello) = open(&boxes[1], &query).await;
    assert_eq!(hello["connection_id"], json!(conn), "{hello}");
    assert_eq!(hello["resumed_after"], json!(seen_seq), "{hello}");
    let mut seqs = Vec::new();
    while let Some(m) = next(&mut ws, Duration::from_secs(2)).await {
        assert_ne!(m["type"], "gap", "the journal on box 2 lacks messages: {m}");
        assert_eq!(m["data"]["alert_id"], json!(alert), "{m}");
        seqs.push(m["seq"].as_u64().expect("seq"));
    }
    assert!(
        !seqs.is_empty(),
        "nothing replayed on box 2 after seq {seen_seq}"
    );
    assert!(
        seqs[0] > seen_seq,
        "a message read on box 1 came again: {seqs:?}"
    );
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "out of order or twice: {seqs:?}"
    );
    eprintln!("resumed on box 2 after seq {seen_seq}: got {seqs:?}");
}
