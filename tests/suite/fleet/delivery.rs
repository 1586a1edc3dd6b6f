//! Alerts through the site: the test's webhook receivers and the checks
//! that nothing a box accepted is lost, across a box's death and a NATS
//! outage.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common;
use common::process::Proc;

/// The site's webhook receiver (a real HTTP server): every
/// (`webhook-id`, alert id) it got, in order.
#[derive(Clone)]
pub struct Hooks {
    pub url: String,
    pub got: Arc<Mutex<Vec<(String, String)>>>,
}

impl Hooks {
    pub async fn start() -> Hooks {
        let mut r = common::receiver::Receiver::start()
            .await
            .expect("webhook receiver");
        let (url, got) = (r.url(), Arc::<Mutex<Vec<(String, String)>>>::default());
        let sink = Arc::clone(&got);
        tokio::spawn(async move {
            while let Some(m) = r.rx.recv().await {
                let header = m.headers.get("webhook-id").and_then(|v| v.to_str().ok());
                let id = header.unwrap_or_default().to_string();
                let alert = m.body["alert_id"].as_str().unwrap_or_default().to_string();
                if let Ok(mut g) = sink.lock() {
                    g.push((id, alert));
                }
            }
        });
        Hooks { url, got }
    }

    /// The distinct message ids received for `alert`.
    pub fn ids(&self, alert: &str) -> BTreeSet<String> {
        let got = self.got.lock().map(|g| g.clone()).unwrap_or_default();
        got.into_iter()
            .filter(|(_, a)| a == alert)
            .map(|(id, _)| id)
            .collect()
    }

    /// Waits for a message of `alert` not among `seen`; returns its id.
    pub async fn next(&self, alert: &str, seen: &BTreeSet<String>, what: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(150);
        loop {
            if let Some(id) = self.ids(alert).difference(seen).next() {
                return id.clone();
            }
            assert!(Instant::now() < deadline, "no new webhook {what}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Deliveries of a message id the receiver had already got.
    pub fn duplicates(&self) -> usize {
        let got = self.got.lock().map(|g| g.clone()).unwrap_or_default();
        let distinct: BTreeSet<&String> = got.iter().map(|(id, _)| id).collect();
        got.len() - distinct.len()
    }
}

/// Live rows of a box's outbox (its SQLite file, read after a SIGKILL):
/// messages it committed and had not handed to the site yet.
pub fn outbox_rows(state: &Path) -> Vec<String> {
    let db = rusqlite::Connection::open(state.join("state.sqlite3")).expect("box 3's state");
    let mut q = db
        .prepare("SELECT message_id FROM outbox WHERE dead = 0")
        .expect("outbox query");
    let rows = q
        .query_map([], |r| r.get::<_, String>(0))
        .expect("outbox rows");
    rows.map_while(Result::ok).collect()
}

/// The boxes' delivery counters summed: handed to the site's stream,
/// delivered from it, taken again after a box died, delivered by their own
/// box because the stream did not take them. Each box counts since it
/// started, so a restarted box starts again from 0.
pub async fn delivery_sums(boxes: &[Proc]) -> [u64; 4] {
    let mut sums = [0u64; 4];
    for b in boxes {
        let d = &b.ok("GET", "fleet", None).await["delivery"];
        for (sum, k) in sums
            .iter_mut()
            .zip(["handed", "delivered", "redelivered", "fallbacks"])
        {
            *sum += d[k].as_u64().unwrap_or(0);
        }
    }
    sums
}

/// Alerts went through the site's stream while every box lived: some box
/// handed messages to it and some box delivered from it. Read before any
/// box restarts, since a restart zeroes that box's counters.
pub async fn the_stream_carried_alerts(boxes: &[Proc]) {
    let [handed, delivered, ..] = delivery_sums(boxes).await;
    assert!(
        handed > 0 && delivered > 0,
        "no alert went through the site's stream: {handed} handed, {delivered} delivered"
    );
    eprintln!("the site's stream carried alerts: {handed} handed, {delivered} delivered");
}

/// Every message is delivered: the site's stream is empty, no box holds a
/// queued row or a dead letter, and what box 3 held when it was killed
/// reached the receiver once it came back. Duplicates are counted.
pub async fn nothing_left(boxes: &[Proc], hooks: &Hooks, unsent: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut pending = Vec::new();
        for b in boxes {
            let status = b.ok("GET", "status", None).await;
            let rows = status["outbox"].as_array().cloned().unwrap_or_default();
            let held: u64 = rows
                .iter()
                .map(|r| r["queued"].as_u64().unwrap_or(0) + r["dead"].as_u64().unwrap_or(0))
                .sum();
            let d = &b.ok("GET", "fleet", None).await["delivery"];
            let stream = d["stream_messages"].as_u64().unwrap_or(u64::MAX);
            if held + stream > 0 {
                pending.push(format!("{}: outbox {held}, stream {stream}", b.base));
            }
        }
        let got: BTreeSet<String> = hooks
            .got
            .lock()
            .map(|g| g.iter().map(|(id, _)| id.clone()).collect())
            .unwrap_or_default();
        let missing: Vec<&String> = unsent.iter().filter(|id| !got.contains(*id)).collect();
        if pending.is_empty() && missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "messages left undelivered: {pending:?}, box 3's unsent {missing:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let [handed, delivered, redelivered, fallbacks] = delivery_sums(boxes).await;
    assert!(
        fallbacks > 0,
        "no box delivered by itself while NATS had no quorum"
    );
    let metrics = boxes[0].text("metrics").await;
    for name in [
        "sightline_fleet_alerts_handed_total",
        "sightline_fleet_publish_seconds_count",
        "sightline_fleet_consumer_pending",
    ] {
        assert!(
            metrics.lines().any(|l| l.starts_with(name)),
            "metrics lack {name}"
        );
    }
    eprintln!(
        "0 lost: {} webhooks, {} duplicates; {handed} handed to the stream and {delivered} delivered from it since the boxes' last starts, {redelivered} taken again after a box died, {fallbacks} delivered by their box while NATS was away, {} held by box 3 at its death",
        hooks.got.lock().map_or(0, |g| g.len()),
        hooks.duplicates(),
        unsent.len()
    );
}

/// A receiver that holds the first request of each message for two
/// minutes (a slow backend) and answers every later one at once; records
/// each request's `webhook-id`.
async fn slow_receiver() -> (String, Arc<Mutex<Vec<String>>>) {
    use axum::{extract::State, http::HeaderMap, routing::post, Router};
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    async fn take(State(got): State<Arc<Mutex<Vec<String>>>>, h: HeaderMap) -> &'static str {
        let id = h.get("webhook-id").and_then(|v| v.to_str().ok());
        let id = id.unwrap_or_default().to_string();
        let first = got.lock().is_ok_and(|mut g| {
            let first = !g.contains(&id);
            g.push(id);
            first
        });
        if first {
            tokio::time::sleep(Duration::from_secs(120)).await;
        }
        "ok"
    }
    let app = Router::new()
        .route("/slow", post(take))
        .with_state(Arc::clone(&got));
    let addr = common::receiver::serve_local(app)
        .await
        .expect("slow receiver");
    (format!("http://{addr}/slow"), got)
}

/// A message taken from the site's stream by a box that dies mid-delivery
/// is delivered again by another box, with the same `webhook-id`.
pub async fn in_flight_on_a_dying_box(boxes: &mut [Proc], stream: &str, index: &str, event: &str) {
    let (url, got) = slow_receiver().await;
    let path = format!("rtstream/{stream}/index/{index}/alert");
    let body = serde_json::json!({"event_id": event, "callback_url": url});
    let a = boxes[0].ok("POST", &path, Some(body)).await;
    let aid = a["alert_id"].as_str().expect("alert id").to_string();
    let off = serde_json::json!({"action": "disable"});
    boxes[0]
        .ok("PATCH", &format!("alert/{aid}/status"), Some(off))
        .await;
    boxes[0]
        .ok("POST", &format!("alert/{aid}/test"), None)
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let holder = 'found: loop {
        for (i, b) in boxes.iter().enumerate() {
            let d = b.ok("GET", "fleet", None).await;
            if d["delivery"]["delivering"].as_u64().unwrap_or(0) > 0 {
                break 'found i;
            }
        }
        assert!(Instant::now() < deadline, "no box took the test message");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    boxes[holder].kill();
    let killed = Instant::now();
    let deadline = killed + Duration::from_secs(90);
    let ids = loop {
        let ids = got.lock().map(|g| g.clone()).unwrap_or_default();
        if ids.len() >= 2 {
            break ids;
        }
        assert!(
            Instant::now() < deadline,
            "the message box {} held when it died never came again: {ids:?}",
            holder + 1
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(ids[0], ids[1], "redelivered under the same webhook-id");
    eprintln!(
        "box {} died delivering {}: another box delivered it again {:?} later (ack wait {:?})",
        holder + 1,
        ids[0],
        killed.elapsed(),
        sightline::fleet::ACK_WAIT
    );
}
