//! What keeps the state database from growing with time where nothing
//! else does: a cap on objects created through the API (`[state]
//! max_objects`) and on dead letters (`[state] max_dead_letters`). Real
//! daemon, real HTTP receiver that refuses every webhook.

use crate::common;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::daemon::Daemon;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_past_max_objects_is_refused_and_a_delete_makes_room() {
    let dir = tempfile::tempdir().expect("temp dir");
    // One event comes from the config: two more fit.
    let d = Daemon::start_with_state(
        dir.path(),
        "max_objects = 3",
        "[[events]]\nid = \"p\"\nprompt = \"person\"\n",
    )
    .await;
    let new = |n: usize| json!({"event_prompt": "Detect person", "label": format!("l{n}")});
    let first = d.ok("POST", "rtstream/event", Some(new(1))).await;
    d.ok("POST", "rtstream/event", Some(new(2))).await;
    let (code, reply) = d.call("POST", "rtstream/event", Some(new(3))).await;
    assert_eq!(code, 409, "{reply}");
    let message = reply["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("max_objects") && message.contains("3 events"),
        "says which limit: {reply}"
    );
    let events = d.ok("GET", "rtstream/event", None).await;
    assert_eq!(
        events["events"].as_array().map_or(0, Vec::len),
        3,
        "nothing half-made: {events}"
    );
    let id = first["event_id"].as_str().expect("event id");
    d.ok("DELETE", &format!("rtstream/event/{id}"), None).await;
    d.ok("POST", "rtstream/event", Some(new(3))).await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_newest_dead_letters_are_kept() {
    // A receiver that refuses everything (400: not retried).
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(|| async { StatusCode::BAD_REQUEST }),
    );
    let addr = common::receiver::serve_local(app).await.expect("receiver");
    let dir = tempfile::tempdir().expect("temp dir");
    let d = Daemon::start_with_state(
        dir.path(),
        "max_dead_letters = 2",
        &format!(
            "[[events]]\nid = \"p\"\nprompt = \"person\"\n\
             [[alerts]]\nid = \"a\"\nevent = \"p\"\ncallback_url = \"http://{addr}/hook\"\n"
        ),
    )
    .await;
    // Each message dies before the next is sent, so seqs order the deaths.
    let mut newest = Vec::new();
    for _ in 0..4 {
        d.ok("POST", "alert/a/test", None).await;
        // (The trim follows the death in a second statement: a listing in
        // between may show one over the cap for a moment.)
        let seqs = wait_for_new_dead(&d, newest.last().copied().unwrap_or(0)).await;
        assert!(
            seqs.len() <= 3,
            "never more than one over the cap: {seqs:?}"
        );
        newest.push(*seqs.last().expect("a dead letter"));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seqs = dead_seqs(&d).await;
    while seqs != newest[2..] && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        seqs = dead_seqs(&d).await;
    }
    assert_eq!(seqs, newest[2..].to_vec(), "the two newest stay");
    d.stop().await;
}

async fn dead_seqs(d: &Daemon) -> Vec<i64> {
    let dead = d.ok("GET", "delivery/dead", None).await["dead_letters"].clone();
    dead.as_array()
        .map(|a| a.iter().filter_map(|r| r["seq"].as_i64()).collect())
        .unwrap_or_default()
}

/// The dead letters' seqs once one newer than `after` is among them.
async fn wait_for_new_dead(d: &Daemon, after: i64) -> Vec<i64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seqs = dead_seqs(d).await;
        if seqs.iter().any(|&s| s > after) {
            return seqs;
        }
        assert!(
            Instant::now() < deadline,
            "a new dead letter after {after}: {seqs:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
