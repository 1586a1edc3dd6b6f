//! Outbound safety on real sockets: callback URLs aimed at loopback (IPv4 and
//! IPv6), the cloud metadata address, a private range, a name that resolves
//! to loopback, and a redirect to loopback are refused or fail, and a
//! listener on loopback sees no connection at all. The refused messages end
//! as dead letters that say why.

use crate::common;

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
    let targets = [
        format!("http://127.0.0.1:{port}/x"),
        format!("http://[::1]:{port}/x"),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        format!("http://10.0.0.1:{port}/x"),
        format!("http://localhost:{port}/x"),
        format!("http://[::ffff:127.0.0.1]:{port}/x"),
        redirector.clone(),
    ];
    let retries = [Duration::ZERO, Duration::from_millis(100)];
    let (_d, store) = dispatch_to(sink, &targets, &retries);

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
    let r = Resolver::new(Arc::new(Guard::default()));
    let name: reqwest::dns::Name = "localhost".parse().expect("name");
    let err = r.resolve(name).await.err().map(|e| e.to_string());
    assert!(
        err.as_deref().is_some_and(|e| e.contains("loopback")),
        "refused: {err:?}"
    );
    let r = Resolver::new(Arc::new(Guard {
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

/// A dispatcher over an in-memory outbox with one webhook alert per
/// target, each sent one occurrence; `schedule` is its retry schedule.
fn dispatch_to(
    sink: WebhookSink,
    targets: &[String],
    schedule: &[Duration],
) -> (Dispatcher, Arc<Store>) {
    let store = Arc::new(Store::open(None).expect("store"));
    let d = Dispatcher::start(
        Some(Arc::new(sink)),
        None,
        None,
        OutboxSettings {
            store: Arc::clone(&store) as Arc<dyn Outbox>,
            schedule: schedule.to_vec().into(),
            mqtt_schedule: vec![Duration::ZERO].into(),
            concurrency: 2,
            clock: sightline::clock::real(),
            poll: Duration::from_millis(20),
            max_dead: 10_000,
        },
    );
    let alerts: Vec<AlertSpec> = targets
        .iter()
        .enumerate()
        .map(|(i, u)| common::webhook_alert(&format!("a{i}"), u))
        .collect();
    d.set_alerts(alerts, HashMap::new());
    d.dispatch(&common::occurrence("o1"));
    (d, store)
}

/// Delivers one occurrence to each target through `sink` and returns the
/// dead letters (target, why) once there are `expect` of them (or after 10 s).
async fn deliver_all(
    sink: WebhookSink,
    targets: &[String],
    expect: usize,
) -> Vec<(String, String)> {
    let (_d, store) = dispatch_to(sink, targets, &[Duration::ZERO]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let dead = store.dead_letters(100).expect("dead letters");
        if dead.len() >= expect || Instant::now() > deadline {
            return dead
                .into_iter()
                .map(|r| (r.target, r.last_error.unwrap_or_default()))
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The own-API rule holds whatever leads to the API's port: a name that
/// resolves to loopback (through the resolver's hosts table, a stand-in
/// for /etc/hosts), `localhost.` with the root's dot, and every IPv6 form
/// that embeds 127.0.0.1 (compatible, NAT64, 6to4, Teredo). Loopback is
/// allowed here, so only the own-API rule stands in the way; without the
/// allowance the embedded forms are refused as internal too. The API's
/// listener sees no connection, while the same name on another port works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_own_api_is_refused_by_name_and_by_embedded_ipv4() {
    let (api_port, hits) = counting_listener().await;
    let mut receiver = common::receiver::Receiver::start().await.expect("receiver");
    let recv_port = receiver.addr.port();
    let embedded = [
        format!("http://[::127.0.0.1]:{api_port}/x"),
        format!("http://[64:ff9b::7f00:1]:{api_port}/x"),
        format!("http://[2002:7f00:1::]:{api_port}/x"),
        format!("http://[2001:0:4136:e378:8000:63bf:80ff:fffe]:{api_port}/x"),
    ];
    let named = [
        format!("http://camera-box.lan:{api_port}/x"),
        format!("http://CAMERA-BOX.lan.:{api_port}/x"),
        format!("http://localhost.:{api_port}/x"),
    ];
    let hosts: HashMap<String, Vec<std::net::IpAddr>> = [(
        "camera-box.lan".to_string(),
        vec!["127.0.0.1".parse().expect("ip")],
    )]
    .into();
    for allow_loopback in [true, false] {
        let guard = Guard {
            allow: if allow_loopback {
                vec![Cidr::parse("127.0.0.0/8").expect("range")]
            } else {
                Vec::new()
            },
            api_port: Some(api_port),
        };
        let resolver = Resolver {
            guard: Arc::new(guard),
            hosts: Arc::new(hosts.clone()),
        };
        let sink = WebhookSink::with_resolver(Duration::from_secs(2), resolver).expect("client");
        let mut targets: Vec<String> = embedded.iter().chain(&named).cloned().collect();
        let control = format!("http://camera-box.lan:{recv_port}/hook");
        if allow_loopback {
            targets.push(control.clone());
        }
        let refused = embedded.len() + named.len();
        let dead = deliver_all(sink, &targets, refused).await;
        for t in embedded.iter().chain(&named) {
            let why = dead.iter().find(|(d, _)| d == t).map(|(_, w)| w.as_str());
            assert!(
                why.is_some_and(|w| w.contains("refused")),
                "{t} (allow loopback: {allow_loopback}) must be refused: {why:?}"
            );
        }
        if allow_loopback {
            assert!(
                dead.iter().all(|(d, _)| *d != control),
                "the name works on another port: {dead:?}"
            );
            let got = tokio::time::timeout(Duration::from_secs(5), receiver.rx.recv()).await;
            assert!(
                matches!(got, Ok(Some(_))),
                "the control target got its message"
            );
        }
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the API port saw no connection"
    );
}
