//! Webhook delivery against a real HTTP receiver that answers from a script:
//! `Retry-After` is honoured, 410 disables the target, redirects are not
//! followed, and every retry carries the same `webhook-id`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::{
    extract::State, http::HeaderMap, http::StatusCode, response::IntoResponse, routing::post,
    Router,
};
use sightline::alert::{webhook::WebhookSink, Dispatcher, RetryPolicy};
use sightline::config::AlertConfig;
use sightline::demo::serve_local;
use sightline::matcher::{Occurrence, Phase};
use sightline::types::{AlertId, EventId, StreamId};

/// One scripted answer: status, Retry-After, Location.
type Answer = (u16, Option<&'static str>, Option<String>);

#[derive(Clone, Default)]
struct Script {
    /// Answers in order: (status, Retry-After, Location); then 204 forever.
    answers: Arc<Mutex<Vec<Answer>>>,
    seen: Arc<Mutex<Vec<(Instant, HeaderMap)>>>,
}

async fn answer(State(s): State<Script>, headers: HeaderMap) -> impl IntoResponse {
    if let Ok(mut seen) = s.seen.lock() {
        seen.push((Instant::now(), headers));
    }
    let next = s.answers.lock().ok().and_then(|mut a| {
        if a.is_empty() {
            None
        } else {
            Some(a.remove(0))
        }
    });
    let (code, retry_after, location) = next.unwrap_or((204, None, None));
    let mut h = HeaderMap::new();
    if let Some(ra) = retry_after {
        h.insert("retry-after", ra.parse().expect("header"));
    }
    if let Some(l) = location {
        h.insert("location", l.parse().expect("header"));
    }
    (StatusCode::from_u16(code).expect("status"), h)
}

async fn receiver(answers: Vec<Answer>) -> (String, Script) {
    let script = Script {
        answers: Arc::new(Mutex::new(answers)),
        ..Script::default()
    };
    let app = Router::new()
        .route("/hook", post(answer))
        .with_state(script.clone());
    let addr = serve_local(app).await.expect("receiver listens");
    (format!("http://{addr}/hook"), script)
}

fn dispatcher(url: &str) -> Dispatcher {
    let alert = AlertConfig {
        id: AlertId::new("a"),
        event: EventId::new("e"),
        streams: Vec::new(),
        callback_url: Some(url.to_string()),
        webhook_secrets: Vec::new(),
        mqtt_topic: None,
        ws_connection: None,
        index: None,
        send_end: true,
        enabled: true,
    };
    let policy = RetryPolicy {
        attempts: 4,
        first_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(400),
        concurrency: 1,
    };
    let sink = WebhookSink::new(Duration::from_secs(2)).expect("client");
    let d = Dispatcher::start(Some(Arc::new(sink)), None, None, policy);
    d.set_alerts(vec![alert], HashMap::new());
    d
}

fn occurrence(id: &str) -> Occurrence {
    Occurrence {
        occurrence_id: id.into(),
        phase: Phase::Start,
        event_id: EventId::new("e"),
        label: "l".into(),
        stream_id: StreamId::new("s"),
        start_time: 0.0,
        end_time: 0.5,
        confidence: 0.9,
        count: 1,
        explanation: "1 person detected (best 0.90)".into(),
        frame_wall: SystemTime::now(),
        frame_arrived: Instant::now(),
    }
}

async fn wait_for_requests(s: &Script, n: usize, secs: u64) -> Vec<(Instant, HeaderMap)> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let seen = s.seen.lock().map(|v| v.clone()).unwrap_or_default();
        if seen.len() >= n || Instant::now() > deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn retry_after_is_honoured_and_the_id_is_stable() {
    let (url, script) = receiver(vec![(429, Some("2"), None), (503, Some("1"), None)]).await;
    let d = dispatcher(&url);
    assert_eq!(d.dispatch(&occurrence("o1")), 1);
    let seen = wait_for_requests(&script, 3, 10).await;
    assert_eq!(seen.len(), 3, "429, 503, then accepted");
    let gap1 = seen[1].0 - seen[0].0;
    let gap2 = seen[2].0 - seen[1].0;
    assert!(
        gap1 >= Duration::from_secs(2),
        "Retry-After: 2 honoured, waited {gap1:?}"
    );
    assert!(
        gap2 >= Duration::from_secs(1),
        "Retry-After: 1 honoured, waited {gap2:?}"
    );
    let ids: Vec<_> = seen
        .iter()
        .map(|(_, h)| h.get("webhook-id").cloned())
        .collect();
    assert!(ids.iter().all(|i| *i == ids[0] && i.is_some()), "{ids:?}");
}

#[tokio::test]
async fn gone_disables_the_target() {
    let (url, script) = receiver(vec![(410, None, None)]).await;
    let d = dispatcher(&url);
    d.dispatch(&occurrence("o1"));
    wait_for_requests(&script, 1, 5).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        d.dispatch(&occurrence("o2")),
        0,
        "nothing queued for a gone target"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        script.seen.lock().map(|v| v.len()).unwrap_or(0),
        1,
        "no request after 410"
    );
    let stats = d.stats();
    let reason = stats[0]
        .1
        .disabled
        .lock()
        .map(|r| r.clone())
        .unwrap_or_default();
    assert!(
        reason.is_some_and(|r| r.contains("410")),
        "the reason is recorded"
    );
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let (elsewhere, other) = receiver(vec![]).await;
    let (url, script) = receiver(vec![(302, None, Some(elsewhere))]).await;
    let d = dispatcher(&url);
    d.dispatch(&occurrence("o1"));
    let seen = wait_for_requests(&script, 2, 5).await;
    assert_eq!(
        seen.len(),
        2,
        "the 302 counted as a failure and was retried at the same URL"
    );
    assert!(
        other.seen.lock().map(|v| v.is_empty()).unwrap_or(false),
        "the redirect target saw nothing"
    );
}
