//! Crash safety of webhook delivery, with the real binary: 1,000 alerts are
//! accepted (through the API's test-alert route, which takes the same path
//! as a detection: payload, signature secrets, outbox commit) while the
//! receiver answers 500; the daemon is killed with SIGKILL; a new daemon on
//! the same state directory delivers every one once the receiver recovers.

use crate::common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use common::process::Proc;
use common::receiver::serve_local;
use sightline::alert::sign::{self, Secret};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const ALERTS: usize = 1000;

/// One accepted request: webhook-id, timestamp, signature, body.
type Seen = (String, i64, String, Bytes);

/// What the receiver saw.
#[derive(Clone, Default)]
struct Receiver {
    failing: Arc<AtomicBool>,
    accepted: Arc<Mutex<Vec<Seen>>>,
    refused: Arc<Mutex<usize>>,
}

async fn hook(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    if r.failing.load(Ordering::SeqCst) {
        if let Ok(mut n) = r.refused.lock() {
            *n += 1;
        }
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let h = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let ts = h("webhook-timestamp").parse().unwrap_or(0);
    if let Ok(mut a) = r.accepted.lock() {
        a.push((h("webhook-id"), ts, h("webhook-signature"), body));
    }
    StatusCode::OK
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_accepted_alert_survives_a_kill_9() {
    let r = Receiver::default();
    r.failing.store(true, Ordering::SeqCst);
    let app = Router::new()
        .route("/hook", post(hook))
        .with_state(r.clone());
    let addr = serve_local(app).await.expect("receiver listens");

    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("sightline.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[runtime]
stats_interval_secs = 0
[api]
listen = "127.0.0.1:0"
[state]
dir = "{state}"
[webhook]
allow_private = ["127.0.0.1/32"]
concurrency = 8
retry_schedule_secs = [0, 1, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3]
[[events]]
id = "person"
prompt = "Detect person"
[[alerts]]
id = "door"
event = "person"
callback_url = "http://{addr}/hook"
webhook_secrets = ["{SECRET}"]
"#,
            state = dir.path().join("state").display(),
        ),
    )
    .expect("config written");

    let state = dir.path().join("state");
    let mut first = Proc::start(&config, &state);
    let (base, key) = (first.base.clone(), first.key.clone());
    let http = reqwest::Client::new();
    let accepted_in: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut tasks = Vec::new();
    for w in 0..8 {
        let (http, base, key, acc) = (
            http.clone(),
            base.clone(),
            key.clone(),
            Arc::clone(&accepted_in),
        );
        tasks.push(tokio::spawn(async move {
            for _ in (w..ALERTS).step_by(8) {
                let resp = http
                    .post(format!("{base}/alert/door/test"))
                    .header("x-access-token", &key)
                    .send()
                    .await
                    .expect("API answers");
                assert_eq!(resp.status(), 200);
                let v: serde_json::Value = resp.json().await.expect("JSON");
                assert_eq!(v["data"]["messages_queued"], 1);
                let id = v["data"]["occurrence_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                if let Ok(mut a) = acc.lock() {
                    a.insert(id);
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("sender");
    }
    let refused_before_kill = r.refused.lock().map_or(0, |n| *n);
    first.kill();
    let alerts_in = accepted_in.lock().map(|a| a.clone()).unwrap_or_default();
    assert_eq!(alerts_in.len(), ALERTS);

    // A new daemon on the same state; the receiver recovers.
    r.failing.store(false, Ordering::SeqCst);
    let restarted = Instant::now();
    let mut second = Proc::start(&config, &state);
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut got: HashMap<String, Vec<Seen>> = HashMap::new();
    let mut all_in = None;
    while Instant::now() < deadline {
        got.clear();
        for (id, ts, sig, body) in r.accepted.lock().map(|a| a.clone()).unwrap_or_default() {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let occ = v["occurrence_id"].as_str().unwrap_or_default().to_string();
            got.entry(occ).or_default().push((id, ts, sig, body));
        }
        if alerts_in.iter().all(|o| got.contains_key(o)) {
            all_in = Some(restarted.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    second.stop();
    let missing = alerts_in.iter().filter(|o| !got.contains_key(*o)).count();
    assert_eq!(missing, 0, "every accepted alert arrives");
    let unknown = got.keys().filter(|o| !alerts_in.contains(*o)).count();
    assert_eq!(unknown, 0, "nothing arrives that was not accepted");
    let secret = Secret::parse(SECRET).expect("secret");
    let mut duplicates = 0;
    for copies in got.values() {
        duplicates += copies.len() - 1;
        for (id, ts, sig, body) in copies {
            assert_eq!(id, &copies[0].0, "duplicates carry the same webhook-id");
            assert_eq!(body, &copies[0].3, "duplicates carry identical bodies");
            assert!(
                sign::verify(&secret, id, *ts, body, sig),
                "signature verifies for {id}"
            );
        }
    }
    println!(
        "crash: {} alerts in, {} distinct out, {} duplicates, {} refusals (500) before the kill, \
         all delivered {:.1} s after the restart",
        alerts_in.len(),
        got.len(),
        duplicates,
        refused_before_kill,
        all_in.map_or(f64::NAN, |d| d.as_secs_f64())
    );
}
