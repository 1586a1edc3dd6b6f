//! A webhook receiver for tests: a real HTTP server on a free port of
//! 127.0.0.1 that records every POST with its headers, raw body and arrival
//! time, and a helper that serves any axum router the same way.

use std::net::SocketAddr;
use std::time::SystemTime;

use axum::{extract::State, http::HeaderMap, routing::post, Router};
use tokio::sync::mpsc;

// Not every test binary that shares this module measures latency.
#[allow(unused_imports)]
pub use sightline::tools::webhooks::latency_ms;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub body: serde_json::Value,
    /// The body exactly as sent (signatures cover these bytes).
    pub raw: axum::body::Bytes,
    pub headers: HeaderMap,
    pub at: SystemTime,
}

/// Occurrence messages received so far, by (stream, event, phase): the
/// stream time each says it began (`start`) or ended (`end`), in order of
/// arrival; -1 where the field is missing.
pub type Times = std::collections::BTreeMap<(String, String, String), Vec<f64>>;

/// A real HTTP server on 127.0.0.1 that records every POST.
pub struct Receiver {
    pub addr: SocketAddr,
    pub rx: mpsc::UnboundedReceiver<Received>,
}

impl Receiver {
    /// Takes every message received so far and files its time under its
    /// (stream, event, phase).
    pub fn occurrence_times(&mut self) -> Times {
        let mut seen = Times::new();
        while let Ok(r) = self.rx.try_recv() {
            let b = r.body;
            let field = |k: &str| b[k].as_str().unwrap_or("").to_string();
            let phase = field("phase");
            let t = b[if phase == "end" {
                "end_time"
            } else {
                "start_time"
            }]
            .as_f64();
            seen.entry((field("stream_id"), field("event_id"), phase))
                .or_default()
                .push(t.unwrap_or(-1.0));
        }
        seen
    }

    /// Starts on a free port; must be called inside a tokio runtime.
    pub async fn start() -> anyhow::Result<Receiver> {
        let (tx, rx) = mpsc::unbounded_channel();
        let app = Router::new()
            .route("/{*path}", post(record))
            .route("/", post(record))
            .with_state(tx);
        let addr = serve_local(app).await?;
        Ok(Receiver { addr, rx })
    }

    /// URL to give as a `callback_url`.
    pub fn url(&self) -> String {
        format!("http://{}/alerts", self.addr)
    }
}

/// Serves `app` on a free port of 127.0.0.1 in the background; returns the
/// address. Must be called inside a tokio runtime.
pub async fn serve_local(app: Router) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}

async fn record(
    State(tx): State<mpsc::UnboundedSender<Received>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> axum::http::StatusCode {
    let at = SystemTime::now();
    match serde_json::from_slice(&body) {
        Ok(json) => {
            let _ = tx.send(Received {
                body: json,
                raw: body,
                headers,
                at,
            });
            axum::http::StatusCode::NO_CONTENT
        }
        Err(_) => axum::http::StatusCode::BAD_REQUEST,
    }
}
