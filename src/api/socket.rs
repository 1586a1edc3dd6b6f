//! The WebSocket endpoint. `GET collection/{id}/websocket` (key-checked)
//! hands out a one-time ticket URL valid for a minute; connecting to it
//! registers the client with the [`Hub`](crate::alert::ws::Hub), whose first
//! message carries the `connection_id` to give alerts and indexes. After
//! that the server only writes: `{"seq": n, "channel": "alert" |
//! "scene_index", "data": …}`. A client the hub cuts off for being slow is
//! closed here.
//!
//! Resume: a ticket URL opened with `?connection_id=<old id>&since=<seq>`
//! reopens that connection and first sends what it missed after `seq`
//! (preceded by `{"type": "gap", "from": …, "to": …}` when the journal has
//! already dropped some of it), then live messages.
//!
//! Console feeds: `?console=true` opens (or, with the resume parameters,
//! reopens) a connection that is sent every alert message whatever
//! connection its alert names; that is what the web console reads.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};

use super::{fail, ok, ApiState};
use crate::alert::ws::{Hub, Missed, ResumeError};

/// Path prefix of ticket URLs (outside the key check).
pub const WS_PREFIX: &str = "/ws/";
/// How long a ticket can wait to be used.
const TICKET_TTL: Duration = Duration::from_secs(60);

/// Outstanding one-time tickets.
#[derive(Default)]
pub struct Tickets(Mutex<HashMap<String, Instant>>);

impl Tickets {
    fn issue(&self) -> String {
        let t = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        if let Ok(mut m) = self.0.lock() {
            m.retain(|_, at| at.elapsed() < TICKET_TTL);
            m.insert(t.clone(), Instant::now());
        }
        t
    }

    fn redeem(&self, t: &str) -> bool {
        self.0
            .lock()
            .ok()
            .and_then(|mut m| m.remove(t))
            .is_some_and(|at| at.elapsed() < TICKET_TTL)
    }
}

/// `GET collection/{id}/websocket`: a URL to open the channel with.
pub async fn bootstrap(
    State(st): State<ApiState>,
    Path(collection): Path<String>,
    headers: HeaderMap,
) -> Response {
    if collection != "default" {
        return fail(
            StatusCode::NOT_FOUND,
            format!("no collection with id {collection:?} (sightline has only \"default\")"),
        );
    }
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_graphic()))
        .map_or_else(|| st.addr.to_string(), String::from);
    let ticket = st.tickets.issue();
    ok(serde_json::json!({
        "websocket_url": format!("ws://{host}{WS_PREFIX}{ticket}"),
        "expires_in": TICKET_TTL.as_secs(),
    }))
}

/// `?connection_id=…&since=…` on a ticket URL: resume that connection.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResumeQuery {
    pub connection_id: Option<String>,
    pub since: Option<u64>,
    #[serde(default)]
    pub console: bool,
}

/// How a ticket URL is opened.
struct Opening {
    /// Resume this connection after this `seq`.
    resume: Option<(String, u64)>,
    console: bool,
}

/// `GET /ws/{ticket}`: upgrades and serves one client.
pub async fn connect(
    State(st): State<ApiState>,
    Path(ticket): Path<String>,
    query: Result<Query<ResumeQuery>, axum::extract::rejection::QueryRejection>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    // The ticket first: a stranger learns nothing from the upgrade checks.
    if !st.tickets.redeem(&ticket) {
        return fail(
            StatusCode::UNAUTHORIZED,
            "unknown or expired WebSocket ticket; ask collection/default/websocket for a new one"
                .into(),
        );
    }
    if st.engine.hub().full() {
        return fail(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{} WebSocket clients are connected, the most allowed; try again later",
                crate::alert::ws::MAX_CLIENTS
            ),
        );
    }
    let (resume, console) = match query {
        Ok(Query(ResumeQuery {
            connection_id: Some(id),
            since: Some(since),
            console,
        })) => (Some((id, since)), console),
        Ok(Query(ResumeQuery {
            connection_id: None,
            since: None,
            console,
        })) => (None, console),
        Ok(_) => {
            return fail(
                StatusCode::BAD_REQUEST,
                "resume needs both connection_id and since (the last seq read)".into(),
            )
        }
        Err(e) => {
            return fail(
                StatusCode::BAD_REQUEST,
                format!("bad query: {}", e.body_text()),
            )
        }
    };
    let hub = std::sync::Arc::clone(st.engine.hub());
    if let Some((id, _)) = &resume {
        if hub.is_connected(id) {
            return fail(
                StatusCode::CONFLICT,
                ResumeError::Open(id.clone()).to_string(),
            );
        }
    }
    match upgrade {
        Ok(u) => u.on_upgrade(move |socket| serve(hub, socket, Opening { resume, console })),
        Err(r) => fail(r.status(), r.body_text()),
    }
}

/// What to send a resuming client before live messages: a gap notice if
/// the journal lost some of what it asked for, then what it kept.
/// A console feed the hub had forgotten lost everything up to now.
fn replay(hub: &Hub, since: u64, mut missed: Missed, forgotten: bool) -> (Vec<String>, u64) {
    let mut out = Vec::new();
    let first_kept = if forgotten {
        missed.messages.clear();
        hub.last_seq() + 1
    } else {
        missed.first_kept.unwrap_or(hub.last_seq() + 1)
    };
    if since + 1 < first_kept {
        out.push(
            serde_json::json!({ "type": "gap", "from": since + 1, "to": first_kept - 1 })
                .to_string(),
        );
    }
    let mut last = since;
    for (seq, body) in missed.messages {
        last = last.max(seq);
        out.push(body);
    }
    (out, last)
}

async fn serve(hub: std::sync::Arc<Hub>, socket: WebSocket, how: Opening) {
    let (mut tx, mut rx) = socket.split();
    // Registered only now that the socket is open, so a client that never
    // finishes the upgrade holds no place in the hub.
    let forgotten = how
        .resume
        .as_ref()
        .is_some_and(|(id, _)| how.console && !hub.is_console(id));
    let opened = match (&how.resume, how.console) {
        (None, false) => hub.connect().map(|s| (s, None)).ok_or(ResumeError::Full),
        (None, true) => hub
            .connect_console()
            .map(|s| (s, None))
            .ok_or(ResumeError::Full),
        (Some((id, since)), console) => hub.resume(id, *since).map(|(s, m)| {
            if console {
                hub.keep_console(id);
            }
            (s, Some((*since, m)))
        }),
    };
    let (mut sub, missed) = match opened {
        Ok(o) => o,
        Err(e) => {
            // 1013: try again later (full, or the connection is open elsewhere).
            let bye = axum::extract::ws::CloseFrame {
                code: 1013,
                reason: e.to_string().into(),
            };
            let _ = tx.send(Message::Close(Some(bye))).await;
            return;
        }
    };
    let id = sub.connection_id.clone();
    let mut hello = serde_json::json!({ "type": "init", "connection_id": id });
    let (backlog, mut sent_up_to) = match missed {
        Some((since, m)) => {
            hello["resumed_after"] = since.into();
            replay(&hub, since, m, forgotten)
        }
        None => (Vec::new(), 0),
    };
    let mut first = vec![hello.to_string()];
    first.extend(backlog);
    for text in first {
        if tx.send(Message::Text(text.into())).await.is_err() {
            hub.disconnect(&id);
            return;
        }
    }
    tracing::info!(connection = %id, "WebSocket client connected");
    let writer = async {
        loop {
            let next = tokio::select! {
                m = sub.rx.recv() => m,
                _ = sub.cut.notified() => None,
            };
            let Some((seq, text)) = next else { break };
            // Already sent from the journal while resuming.
            if seq <= sent_up_to {
                continue;
            }
            sent_up_to = seq;
            // A client that stopped reading blocks this send once the socket
            // buffers fill; the hub's cut ends it. No close handshake: that
            // would wait on the same full buffer.
            tokio::select! {
                r = tx.send(Message::Text(text.as_ref().into())) => {
                    if r.is_err() {
                        break;
                    }
                }
                _ = sub.cut.notified() => break,
            }
        }
    };
    // Read only to notice the client leaving (and to answer pings).
    let reader = async {
        while let Some(Ok(m)) = rx.next().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
    };
    tokio::select! {
        _ = writer => {},
        _ = reader => {},
    }
    hub.disconnect(&id);
    tracing::info!(connection = %id, "WebSocket client gone");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forgotten_console_is_told_it_missed_everything_since() {
        let hub = Hub::new(8);
        for i in 0..5 {
            hub.publish("elsewhere", "alert", &i);
        }
        let kept = Missed {
            first_kept: Some(1),
            messages: vec![(4, "old".into())],
        };
        let (out, last) = replay(&hub, 2, kept.clone(), true);
        assert_eq!(out.len(), 1, "{out:?}");
        let gap: serde_json::Value = serde_json::from_str(&out[0]).expect("json");
        assert_eq!(
            gap,
            serde_json::json!({ "type": "gap", "from": 3, "to": 5 })
        );
        assert_eq!(last, 2);
        // Remembered: what the journal kept, and no gap.
        let (out, last) = replay(&hub, 2, kept, false);
        assert_eq!((out, last), (vec!["old".to_string()], 4));
    }
}
