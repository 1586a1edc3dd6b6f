//! Webhook delivery against a real HTTP receiver that answers from a script:
//! `Retry-After` is honoured, 410 disables the target, redirects are not
//! followed, every retry carries the same `webhook-id`, retries follow the
//! schedule (checked under simulated clocks, without waiting), and messages that run out of
//! attempts become dead letters that can be redelivered.

use crate::common;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::{
    extract::State, http::HeaderMap, http::StatusCode, response::IntoResponse, routing::post,
    Router,
};
use common::receiver::serve_local;
use sightline::alert::guard::{Cidr, Guard};
use sightline::alert::{webhook::WebhookSink, Dispatcher, OutboxSettings, TargetStats};
use sightline::clock::{Clocks, RealClocks, SimClocks};
use sightline::store::{Outbox, Store};

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
    let schedule = [0.0, 0.1, 0.2, 0.4].map(Duration::from_secs_f64);
    dispatcher_with(
        url,
        &schedule,
        Arc::new(RealClocks),
        Arc::new(memory_store()),
    )
    .0
}

fn memory_store() -> Store {
    Store::open(None).expect("in-memory store")
}

fn dispatcher_with(
    url: &str,
    schedule: &[Duration],
    clock: Arc<dyn Clocks>,
    store: Arc<Store>,
) -> (Dispatcher, Arc<Store>) {
    let alert = common::webhook_alert("a", url);
    // The receiver is on loopback: allow it, as an operator would.
    let guard = Guard {
        allow: vec![Cidr::parse("127.0.0.1/32").expect("range")],
        api_port: None,
    };
    let sink = WebhookSink::new(Duration::from_secs(2), Arc::new(guard)).expect("client");
    let d = Dispatcher::start(
        Some(Arc::new(sink)),
        None,
        None,
        OutboxSettings {
            store: Arc::clone(&store) as Arc<dyn Outbox>,
            schedule: schedule.into(),
            mqtt_schedule: schedule.into(),
            concurrency: 1,
            clock,
            poll: Duration::from_millis(20),
            max_dead: 10_000,
        },
    );
    d.set_alerts(vec![alert], HashMap::new());
    (d, store)
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
    assert_eq!(d.dispatch(&common::occurrence("o1")), 1);
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
async fn gone_disables_the_target_across_restarts_until_a_redelivery() {
    let (url, script) = receiver(vec![(410, None, None)]).await;
    let schedule = [0.0, 0.1, 0.2, 0.4].map(Duration::from_secs_f64);
    let store = Arc::new(memory_store());
    let (d, _) = dispatcher_with(&url, &schedule, Arc::new(RealClocks), Arc::clone(&store));
    d.dispatch(&common::occurrence("o1"));
    wait_for_requests(&script, 1, 5).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        d.dispatch(&common::occurrence("o2")),
        0,
        "nothing queued for a gone target"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        script.seen.lock().map(|v| v.len()).unwrap_or(0),
        1,
        "no request after 410"
    );
    let reason = d.stats()[0]
        .1
        .disabled
        .lock()
        .map(|r| r.clone())
        .unwrap_or_default();
    assert!(
        reason.is_some_and(|r| r.contains("410")),
        "the reason is recorded"
    );
    drop(d);

    // A restart on the same state: the URL is still disabled.
    let (d, _) = dispatcher_with(&url, &schedule, Arc::new(RealClocks), Arc::clone(&store));
    assert_eq!(
        d.dispatch(&common::occurrence("o3")),
        0,
        "still disabled after a restart"
    );
    // The operator redelivers the dead letter: the receiver (answering 204
    // now) gets it, and new alerts flow again.
    let dead = store.dead_letters(10).expect("dead letters");
    assert_eq!(dead.len(), 1, "{dead:?}");
    store
        .redeliver(dead[0].seq, RealClocks.wall_ms())
        .expect("redeliver");
    d.wake(&url);
    let seen = wait_for_requests(&script, 2, 5).await;
    assert!(seen.len() >= 2, "the redelivered message arrived");
    assert_eq!(seen[0].1.get("webhook-id"), seen[1].1.get("webhook-id"));
    assert_eq!(
        d.dispatch(&common::occurrence("o4")),
        1,
        "enabled again by the redelivery"
    );
    let seen = wait_for_requests(&script, 3, 5).await;
    assert!(seen.len() >= 3, "the new alert was delivered");
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let (elsewhere, other) = receiver(vec![]).await;
    let (url, script) = receiver(vec![(302, None, Some(elsewhere))]).await;
    let d = dispatcher(&url);
    d.dispatch(&common::occurrence("o1"));
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

/// Moves the simulated clock to `ms` past the start and returns once the
/// target's worker has looked at the outbox at that time and gone back to
/// sleep: whatever it was going to start, it has started.
async fn move_to(sim: &SimClocks, stats: &TargetStats, ms: u64) {
    let now = sim.elapsed();
    sim.advance(Duration::from_millis(ms).saturating_sub(now));
    let target = sim.wall_ms();
    let deadline = Instant::now() + Duration::from_secs(5);
    while stats.last_poll_ms.load(Ordering::SeqCst) < target && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    sim.settled(1).await;
}

/// Waits until the outbox row has `n` attempts recorded.
async fn recorded(store: &Store, url: &str, n: u32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let live = store.due(url, i64::MAX, 10).expect("outbox");
        let dead = store.dead_letters(10).expect("dead letters");
        let attempts = live.iter().chain(&dead).map(|r| r.attempts).max();
        if attempts >= Some(n) || Instant::now() > deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn retry_gaps_follow_the_schedule_with_an_injected_clock() {
    let (url, script) = receiver(vec![(500, None, None); 10]).await;
    let start = std::time::UNIX_EPOCH + Duration::from_secs(1_000);
    let sim = SimClocks::new(start, 0.5);
    let schedule = [0.0, 5.0, 300.0].map(Duration::from_secs_f64);
    let (d, store) = dispatcher_with(&url, &schedule, sim.clone(), Arc::new(memory_store()));
    let stats = Arc::clone(&d.stats()[0].1);
    let attempts = || stats.attempts.load(Ordering::SeqCst);
    let count = || script.seen.lock().map(|v| v.len()).unwrap_or(0);
    d.dispatch(&common::occurrence("o1"));
    assert_eq!(
        wait_for_requests(&script, 1, 5).await.len(),
        1,
        "first attempt at once"
    );
    recorded(&store, &url, 1).await;
    // Jitter only stretches a gap (by up to 20 %): nothing before 5 s, one by 6 s.
    move_to(&sim, &stats, 4_999).await;
    assert_eq!(
        (attempts(), count()),
        (1, 1),
        "no retry before the 5 s step"
    );
    move_to(&sim, &stats, 6_000).await;
    assert_eq!(
        wait_for_requests(&script, 2, 5).await.len(),
        2,
        "retry by 6 s"
    );
    recorded(&store, &url, 2).await;
    move_to(&sim, &stats, 6_000 + 299_999).await;
    assert_eq!(
        (attempts(), count()),
        (2, 2),
        "no retry before the 300 s step"
    );
    move_to(&sim, &stats, 6_000 + 360_000).await;
    assert_eq!(
        wait_for_requests(&script, 3, 5).await.len(),
        3,
        "retry by 360 s"
    );
    recorded(&store, &url, 3).await;
    // The schedule is used up: a dead letter, never retried on its own.
    move_to(&sim, &stats, 100_000_000).await;
    assert_eq!((attempts(), count()), (3, 3));
    let dead = store.dead_letters(10).expect("dead letters");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 3);
    assert!(dead[0]
        .last_error
        .as_deref()
        .is_some_and(|e| e.contains("500")));
}

#[tokio::test]
async fn a_refused_message_is_a_dead_letter_and_can_be_redelivered() {
    let (url, script) = receiver(vec![(400, None, None)]).await;
    let schedule = [0.0, 0.1].map(Duration::from_secs_f64);
    let (d, store) = dispatcher_with(
        &url,
        &schedule,
        Arc::new(RealClocks),
        Arc::new(memory_store()),
    );
    d.dispatch(&common::occurrence("o1"));
    wait_for_requests(&script, 1, 5).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        script.seen.lock().map(|v| v.len()).unwrap_or(0),
        1,
        "400 is not retried"
    );
    let dead = store.dead_letters(10).expect("dead letters");
    assert_eq!(dead.len(), 1);
    assert_eq!(
        store
            .redeliver(dead[0].seq, RealClocks.wall_ms())
            .expect("redeliver")
            .as_deref(),
        Some(url.as_str())
    );
    d.wake(&url);
    let seen = wait_for_requests(&script, 2, 5).await;
    assert_eq!(seen.len(), 2, "redelivered and accepted (204)");
    assert_eq!(seen[0].1.get("webhook-id"), seen[1].1.get("webhook-id"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(store.dead_letters(10).expect("dead letters").is_empty());
    assert!(
        store.due(&url, i64::MAX, 10).expect("outbox").is_empty(),
        "acknowledged rows leave"
    );
}
