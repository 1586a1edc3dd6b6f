//! The WebSocket endpoint. `GET collection/{id}/websocket` (key-checked)
//! hands out a one-time ticket URL valid for a minute; connecting to it
//! registers the client with the [`Hub`](crate::alert::ws::Hub), whose first
//! message carries the `connection_id` to give alerts and indexes. After
//! that the server only writes: `{"channel": "alert" | "scene_index",
//! "data": …}`. A client the hub cuts off for being slow is closed here.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};

use super::{fail, ok, ApiState};

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

/// `GET /ws/{ticket}`: upgrades and serves one client.
pub async fn connect(
    State(st): State<ApiState>,
    Path(ticket): Path<String>,
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
    match upgrade {
        Ok(u) => u.on_upgrade(move |socket| serve(st, socket)),
        Err(r) => fail(r.status(), r.body_text()),
    }
}

async fn serve(st: ApiState, socket: WebSocket) {
    let hub = std::sync::Arc::clone(st.engine.hub());
    let (mut tx, mut rx) = socket.split();
    let Some(mut sub) = hub.connect() else {
        // Filled up between the check and the upgrade: 1013, try again later.
        let bye = axum::extract::ws::CloseFrame {
            code: 1013,
            reason: "too many WebSocket clients".into(),
        };
        let _ = tx.send(Message::Close(Some(bye))).await;
        return;
    };
    let id = sub.connection_id.clone();
    let hello = serde_json::json!({ "type": "init", "connection_id": id }).to_string();
    if tx.send(Message::Text(hello.into())).await.is_err() {
        hub.disconnect(&id);
        return;
    }
    tracing::info!(connection = %id, "WebSocket client connected");
    let writer = async {
        loop {
            let next = tokio::select! {
                m = sub.rx.recv() => m,
                _ = sub.cut.notified() => None,
            };
            let Some(text) = next else { break };
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
