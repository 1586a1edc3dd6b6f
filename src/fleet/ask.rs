//! Requests one box makes of another over NATS request/reply: a search or
//! backtest of a stream the other box runs (its frame embeddings live
//! there), or the other box's part of the site's history. Each box answers
//! on `sightline.<site>.ask.<box>` by making the call to its own API on the
//! loopback, with its key, marked as forwarded.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use super::Shared;
use crate::control::Refusal;

/// How long an answer may take (a backtest over a day of frames takes
/// about 0.1 s; a busy box more).
const TIMEOUT: Duration = Duration::from_secs(15);
const PATH: &str = "Sightline-Path";
const METHOD: &str = "Sightline-Method";
const STATUS: &str = "Sightline-Status";
/// The header the API knows a forwarded request by.
const FORWARDED: &str = "x-sightline-forwarded";

fn subject(site: &str, box_id: &str) -> String {
    format!("sightline.{site}.ask.{box_id}")
}

/// Asks `box_id` to answer `method path`.
pub async fn ask(
    shared: &Shared,
    box_id: &str,
    (method, path): (&str, &str),
    body: bytes::Bytes,
) -> Result<(u16, bytes::Bytes), Refusal> {
    let mut h = async_nats::HeaderMap::new();
    h.insert(PATH, path);
    h.insert(METHOD, method);
    let request = async_nats::Request::new()
        .payload(body)
        .headers(h)
        .timeout(Some(TIMEOUT));
    let subject = subject(&shared.cfg.site, box_id);
    let reply = shared
        .client
        .send_request(subject, request)
        .await
        .map_err(|e| {
            Refusal::Unavailable(format!("asking box {box_id}, which runs this stream: {e}"))
        })?;
    let status = reply
        .headers
        .as_ref()
        .and_then(|h| h.get(STATUS))
        .and_then(|v| v.as_str().parse::<u16>().ok())
        .unwrap_or(502);
    Ok((status, reply.payload))
}

/// Answers other boxes' requests through this box's API at `url` with
/// `key`, for as long as the box runs.
pub async fn answer(shared: Arc<Shared>, (url, key): (String, String)) {
    let http = reqwest::Client::new();
    loop {
        let subject = subject(&shared.cfg.site, &shared.cfg.box_id);
        let mut requests = match shared.client.subscribe(subject).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot take other boxes' requests yet");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        while let Some(m) = requests.next().await {
            let Some(reply) = m.reply.clone() else {
                continue;
            };
            let header = |name: &str| {
                let h = m.headers.as_ref()?;
                h.get(name).map(|v| v.to_string())
            };
            // Requests from boxes before GET was asked carry no method.
            let method = match header(METHOD).as_deref() {
                None | Some("POST") => Some(reqwest::Method::POST),
                Some("GET") => Some(reqwest::Method::GET),
                Some(_) => None,
            };
            let path = header(PATH).filter(|p| p.starts_with('/'));
            let (http, url, key, shared) =
                (http.clone(), url.clone(), key.clone(), Arc::clone(&shared));
            tokio::spawn(async move {
                let (status, body) = match (method, path) {
                    (Some(method), Some(p)) => {
                        let request = http.request(method, format!("{url}{p}"));
                        call(request, &key, m.payload).await
                    }
                    _ => (
                        400,
                        bytes::Bytes::from_static(
                            b"{\"success\":false,\"message\":\"no path, or a method other than GET and POST\"}",
                        ),
                    ),
                };
                let mut h = async_nats::HeaderMap::new();
                h.insert(STATUS, status.to_string().as_str());
                if shared
                    .client
                    .publish_with_headers(reply, h, body)
                    .await
                    .is_ok()
                {
                    shared.stats.answered.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn call(
    request: reqwest::RequestBuilder,
    key: &str,
    body: bytes::Bytes,
) -> (u16, bytes::Bytes) {
    let sent = request
        .header("x-access-token", key)
        .header(FORWARDED, "1")
        .header("content-type", "application/json")
        .body(body)
        .timeout(TIMEOUT)
        .send()
        .await;
    match sent {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.bytes().await.unwrap_or_default())
        }
        Err(e) => {
            let msg = serde_json::json!({"success": false, "message": format!("this box's API did not answer: {e}")});
            (502, msg.to_string().into())
        }
    }
}
