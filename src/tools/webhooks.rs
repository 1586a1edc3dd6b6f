//! A webhook receiver for the tools that watch the daemon deliver (the
//! demo prints each alert, the bench measures latency): a real HTTP server
//! on a free port of 127.0.0.1 that passes on every JSON body POSTed to it
//! with the time it came.

use std::time::SystemTime;

use anyhow::Context;
use axum::{extract::State, routing::post, Router};
use tokio::sync::mpsc;

/// One delivery: the JSON body and when it arrived.
pub type Delivered = (serde_json::Value, SystemTime);

/// A running receiver.
pub struct Webhooks {
    /// The URL to give as `callback_url`.
    pub url: String,
    pub rx: mpsc::UnboundedReceiver<Delivered>,
}

impl Webhooks {
    /// Starts on a free port; must be called inside a tokio runtime.
    pub async fn start() -> anyhow::Result<Webhooks> {
        let (tx, rx) = mpsc::unbounded_channel();
        let app = Router::new().route("/alerts", post(take)).with_state(tx);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding a webhook receiver")?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Webhooks {
            url: format!("http://{addr}/alerts"),
            rx,
        })
    }
}

async fn take(
    State(tx): State<mpsc::UnboundedSender<Delivered>>,
    body: axum::body::Bytes,
) -> axum::http::StatusCode {
    let at = SystemTime::now();
    match serde_json::from_slice(&body) {
        Ok(json) => {
            let _ = tx.send((json, at));
            axum::http::StatusCode::NO_CONTENT
        }
        Err(_) => axum::http::StatusCode::BAD_REQUEST,
    }
}

/// Milliseconds from a payload's `timestamp` (frame arrival) to `at`.
pub fn latency_ms(payload: &serde_json::Value, at: SystemTime) -> Option<f64> {
    let ts = payload.get("timestamp")?.as_str()?;
    let frame = chrono::DateTime::parse_from_rfc3339(ts).ok()?;
    let at = chrono::DateTime::<chrono::Utc>::from(at);
    Some((at - frame.with_timezone(&chrono::Utc)).num_microseconds()? as f64 / 1000.0)
}
