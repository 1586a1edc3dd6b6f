//! Outbound safety on real sockets: callback URLs aimed at loopback (IPv4 and
//! IPv6), the cloud metadata address, a private range, a name that resolves
//! to loopback, and a redirect to loopback are refused or fail, and a
//! listener on loopback sees no connection at all. The refused messages end
//! as dead letters that say why.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use sightline::alert::guard::{Cidr, Guard, Resolver};
use sightline::alert::{webhook::WebhookSink, Dispatcher, OutboxSettings};
use sightline::domain::AlertSpec;
use sightline::store::{Outbox, Store};

/// Counts TCP connections on a loopback port (v4 and v6).
async fn counting_listener() -> (u16, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let v4 = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = v4.local_addr().expect("addr").port();
    let v6 = tokio::net::TcpListener::bind(("::1", port)).await.ok();
    for l in [Some(v4), v6].into_iter().flatten() {
        let h = Arc::clone(&hits);
        tokio::spawn(async move {
            while let Ok((_s, _)) = l.accept().await {
                h.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    (port, hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_targets_are_refused_and_never_connected_to() {
    let (port, hits) = counting_listener().await;
    // A redirector on 127.0.0.2, the one range allowed, pointing at the listener.
    let to = format!("http://127.0.0.1:{port}/stolen");
    let redirected = Arc::new(AtomicUsize::new(0));
    let r2 = Arc::clone(&redirected);
    let app = Router::new().route(
        "/hook",
        post(move || {
            let (to, r2) = (to.clone(), Arc::clone(&r2));
            async move {
                r2.fetch_add(1, Ordering::SeqCst);
                (StatusCode::FOUND, [(header::LOCATION, to)]).into_response()
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.2:0")
        .await
        .expect("bind 127.0.0.2");
    let redirector = format!("http://{}/hook", l.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(l, app).await });

    let guard = Guard {
        allow: vec![Cidr::parse("127.0.0.2/32").expect("range")],
        api_port: None,
    };
    let sink = WebhookSink::new(Duration::from_secs(2), Arc::new(guard)).expect("client");
    let store = Arc::new(Store::open(None).expect("store"));
    let d = Dispatcher::start(
        Some(Arc::new(sink)),
        None,
        None,
        OutboxSettings {
            store: Arc::clone(&store) as Arc<dyn Outbox>,
            schedule: vec![Duration::ZERO, Duration::from_millis(100)].into(),
            mqtt_schedule: vec![Duration::ZERO].into(),
            concurrency: 2,
            clock: sightline::clock::real(),
            poll: Duration::from_millis(20),
        },
    );
    let targets = [
        format!("http://127.0.0.1:{port}/x"),
        format!("http://[::1]:{port}/x"),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        format!("http://10.0.0.1:{port}/x"),
        format!("http://localhost:{port}/x"),
        format!("http://[::ffff:127.0.0.1]:{port}/x"),
        redirector.clone(),
    ];
    let alerts: Vec<AlertSpec> = targets
        .iter()
        .enumerate()
        .map(|(i, u)| common::webhook_alert(&format!("a{i}"), u))
        .collect();
    d.set_alerts(alerts, HashMap::new());
    d.dispatch(&common::occurrence("o1"));

    // Every message ends as a dead letter: the internal ones refused at
    // once, the redirected one after its two attempts.
    let deadline = Instant::now() + Duration::from_secs(15);
    let dead = loop {
        let dead = store.dead_letters(100).expect("dead letters");
        if dead.len() == targets.len() || Instant::now() > deadline {
            break dead;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(dead.len(), targets.len(), "{dead:?}");
    for r in &dead {
        let why = r.last_error.clone().unwrap_or_default();
        if r.target == redirector {
            assert!(why.contains("302"), "redirect is a failure: {why}");
        } else {
            assert!(why.contains("refused"), "{}: {why}", r.target);
            assert_eq!(r.attempts, 1, "{}: refused, not retried", r.target);
        }
    }
    assert!(
        redirected.load(Ordering::SeqCst) >= 1,
        "the allowed redirector was asked"
    );
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the loopback listener saw no connection"
    );
}

#[tokio::test]
async fn the_resolver_refuses_a_name_that_resolves_to_loopback() {
    use reqwest::dns::Resolve;
    let r = Resolver(Arc::new(Guard::default()));
    let name: reqwest::dns::Name = "localhost".parse().expect("name");
    let err = r.resolve(name).await.err().map(|e| e.to_string());
    assert!(
        err.as_deref().is_some_and(|e| e.contains("loopback")),
        "refused: {err:?}"
    );
    let r = Resolver(Arc::new(Guard {
        allow: vec![
            Cidr::parse("127.0.0.0/8").expect("range"),
            Cidr::parse("::1").expect("range"),
        ],
        api_port: None,
    }));
    let name: reqwest::dns::Name = "localhost".parse().expect("name");
    assert!(
        r.resolve(name).await.is_ok(),
        "allowed when the operator says so"
    );
}
