//! A flood of idle keyless connections cannot starve the API or delivery:
//! 400 TCP connections to the API that never send a byte (far over the
//! per-peer cap for connections that have not shown the key) are held open
//! while an operator's authenticated requests keep answering under 200 ms
//! and an alert's test message reaches its webhook receiver within 1 s.

use crate::common;

use std::time::{Duration, Instant};

use common::daemon::Daemon;
use common::receiver::Receiver;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_do_not_starve_the_api_or_webhooks() {
    let mut hook = Receiver::start().await.expect("receiver");
    let dir = tempfile::tempdir().expect("temp dir");
    let extra = format!(
        "[[events]]\nid = \"p\"\nprompt = \"person\"\n\
         [[alerts]]\nid = \"a\"\nevent = \"p\"\ncallback_url = \"{}\"\n",
        hook.url()
    );
    let d = Daemon::start(dir.path(), &extra).await;
    let addr = d.base.trim_start_matches("http://").to_string();

    let mut idle = Vec::new();
    for _ in 0..400 {
        match tokio::net::TcpStream::connect(&addr).await {
            Ok(s) => idle.push(s),
            Err(e) => panic!("connect {}: {e}", idle.len()),
        }
    }
    // Give the server a moment to take them all in.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let t = Instant::now();
        let status = d.ok("GET", "status", None).await;
        slowest = slowest.max(t.elapsed());
        assert!(status["version"].is_string(), "{status}");
    }
    eprintln!("slowest authenticated GET status under the flood: {slowest:?}");
    assert!(slowest < Duration::from_millis(200), "{slowest:?}");

    let t = Instant::now();
    d.ok("POST", "alert/a/test", None).await;
    let got = tokio::time::timeout(Duration::from_secs(1), hook.rx.recv()).await;
    assert!(
        matches!(got, Ok(Some(_))),
        "the test alert reached its receiver within 1 s"
    );
    eprintln!("webhook under the flood: {:?}", t.elapsed());

    let status = d.ok("GET", "status", None).await;
    let evicted = status["api_connections"]["evicted"].as_u64().unwrap_or(0);
    assert!(evicted >= 300, "keyless connections were evicted: {status}");
    drop(idle);
    d.stop().await;
}
