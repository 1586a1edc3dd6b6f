//! The web console in a real browser (tests/browser/console.mjs drives
//! Debian's headless Chromium through playwright-core) against a real
//! daemon watching the real-footage clip (a person walks through at 10–20 s
//! of every 30 s loop) from a real RTSP camera in a process of its own,
//! with a real webhook receiver. The test checks from outside what the
//! browser did: the sign-in is refused without the key, the alert created
//! on the Rules page reaches the receiver and shows on the Live page within
//! 2 s of it, nothing arrives while it is disabled, the Cameras page notices
//! the camera being killed, a cross-site POST is refused, and no console
//! page logged an error. Screenshots of every page at desktop and phone
//! width go to target/test-artifacts/.

use crate::common;

use std::process::Stdio;
use std::time::{Duration, SystemTime};

use common::daemon::Daemon;
use common::receiver::{Received, Receiver};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const PAGES: [&str; 5] = ["/live", "/cameras", "/rules", "/history", "/health"];

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Without a session or key: pages redirect to sign-in, API calls get 401,
/// and a wrong key gets no session. With a session cookie but no CSRF
/// token, a write is refused.
async fn refused_without_a_session(d: &Daemon) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    for p in PAGES {
        let r = http
            .get(format!("{}{p}", d.base))
            .send()
            .await
            .expect("answers");
        assert_eq!(r.status().as_u16(), 303, "{p} without a session");
        let to = r.headers()["location"]
            .to_str()
            .unwrap_or_default()
            .to_string();
        assert!(to.starts_with("/signin"), "{p} redirects to {to}");
    }
    for (m, p) in [
        ("GET", "/status"),
        ("GET", "/rtstream"),
        ("GET", "/occurrences"),
        ("POST", "/rtstream/event"),
    ] {
        let r = http
            .request(m.parse().expect("method"), format!("{}{p}", d.base))
            .json(&serde_json::json!({}))
            .send()
            .await
            .expect("answers");
        assert_eq!(r.status().as_u16(), 401, "{m} {p} without a session");
    }
    let wrong = http
        .post(format!("{}/session", d.base))
        .json(&serde_json::json!({ "api_key": "wrong-key-0123456789abcdef" }))
        .send()
        .await
        .expect("answers");
    assert_eq!(wrong.status().as_u16(), 401);
    assert!(
        wrong.headers().get("set-cookie").is_none(),
        "no cookie for a wrong key"
    );

    let right = http
        .post(format!("{}/session", d.base))
        .json(&serde_json::json!({ "api_key": d.key }))
        .send()
        .await
        .expect("answers");
    assert_eq!(right.status().as_u16(), 200);
    let cookie = right.headers()["set-cookie"]
        .to_str()
        .expect("text")
        .to_string();
    for part in ["HttpOnly", "SameSite=Strict", "Max-Age=", "Path=/"] {
        assert!(cookie.contains(part), "{part} in {cookie}");
    }
    let session = cookie.split(';').next().expect("name=value").to_string();
    let csrf = right.json::<Value>().await.expect("json")["data"]["csrf_token"]
        .as_str()
        .expect("a CSRF token")
        .to_string();
    let with = |m: &str, p: &str| {
        http.request(m.parse().expect("method"), format!("{}{p}", d.base))
            .header("cookie", &session)
            .json(&serde_json::json!({ "event_prompt": "Detect car", "label": "car" }))
    };
    let read = with("GET", "/status").send().await.expect("answers");
    assert_eq!(read.status().as_u16(), 200, "a session reads");
    for (token, case) in [
        (None, "without the CSRF token"),
        (Some("guess"), "with a wrong token"),
    ] {
        let mut req = with("POST", "/rtstream/event/preview");
        if let Some(t) = token {
            req = req.header("x-csrf-token", t);
        }
        let refused = req.send().await.expect("answers");
        assert_eq!(refused.status().as_u16(), 403, "a write {case}");
    }
    let good = with("POST", "/rtstream/event/preview")
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .expect("answers");
    assert_eq!(good.status().as_u16(), 200, "a write with the token");
    let preview: Value = good.json().await.expect("json");
    assert_eq!(preview["data"]["resolution"], "labels", "{preview}");
}

/// What the browser script printed, by step.
struct Steps {
    seen: Vec<Value>,
}

impl Steps {
    fn get(&self, step: &str) -> &Value {
        self.seen
            .iter()
            .find(|s| s["step"] == step)
            .unwrap_or_else(|| panic!("the browser never reached {step:?}: {:?}", self.seen))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_signs_in_creates_a_rule_and_watches_it_fire_in_the_browser() {
    let (mut camera, port) = common::camera("ground_truth.mp4", 0).expect("the camera starts");
    let mut hook = Receiver::start().await.expect("receiver");
    let dir = tempfile::tempdir().expect("temp dir");
    let extra = format!(
        r#"
[[streams]]
id = "yard"
url = "rtsp://127.0.0.1:{port}/ground_truth"
fps = 2
stall_timeout_secs = 4
max_backoff_secs = 2

[recording]
segment_secs = 2
pre_secs = 3
post_secs = 3
min_free_mb = 1
"#
    );
    let d = Daemon::start(dir.path(), &extra).await;
    refused_without_a_session(&d).await;
    // A receiver that refuses every message (400), for a dead letter.
    let refuser = common::receiver::serve_local(
        axum::Router::new()
            .fallback(|| async { (axum::http::StatusCode::BAD_REQUEST, "no thanks") }),
    )
    .await
    .expect("refusing receiver");

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let shots = root.join("target/test-artifacts");
    std::fs::create_dir_all(&shots).expect("artifact dir");
    let node = tokio::process::Command::new("node")
        .arg(root.join("tests/browser/console.mjs"))
        .args([
            &d.base,
            &d.key,
            &hook.url(),
            &shots.to_string_lossy().to_string(),
            &format!("http://{refuser}/hook"),
        ])
        .env("SIGHTLINE_PLAYWRIGHT", common::playwright())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (scripts/setup --test installs it)");
    let (steps, received) = drive(node, &mut camera, &mut hook).await;
    let _ = camera.kill();
    let done = steps.get("done");
    eprintln!("console: screenshots in {}", shots.display());
    assert_eq!(done["errors"], serde_json::json!([]), "browser errors");

    check_sign_in_and_rules(&steps);
    check_live_and_disabled(&steps, &received);
    check_the_rest(&steps, &shots);
    d.stop().await;
}

/// Runs a browser script to its end; returns the steps it printed.
async fn browse(script: &str, args: &[&str]) -> Steps {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = tokio::time::timeout(
        Duration::from_secs(180),
        tokio::process::Command::new("node")
            .arg(root.join("tests/browser").join(script))
            .args(args)
            .env("SIGHTLINE_PLAYWRIGHT", common::playwright())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the browser script ends within 3 minutes")
    .expect("node runs (scripts/setup --test installs it)");
    let seen = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .inspect(|s| eprintln!("console: {s}"))
        .collect();
    Steps { seen }
}

/// Search and backtest on the Rules page of a dual-encoder daemon (the
/// generated colour model, on colours.mp4: 0-8 s blue, 8-16 s red, 16-24 s
/// green): both find the red part and draw it as a range on the timeline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rules_page_draws_search_and_backtest_ranges_on_a_timeline() {
    let server = sightline::tools::rtsp_server::RtspServer::serve_files(
        0,
        &[("cam", &common::media("colours.mp4"))],
    )
    .expect("rtsp server");
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/colour-clip");
    let dir = tempfile::tempdir().expect("temp dir");
    let extra = format!(
        "[model]\npath = \"{}\"\n[[streams]]\nid = \"cam\"\nurl = \"{}\"\nfps = 2\n",
        model.display(),
        server.url("cam")
    );
    let d = Daemon::start(dir.path(), &extra).await;
    // One pass of the clip, not into the next loop's red.
    tokio::time::sleep(Duration::from_secs(22)).await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let shots = root.join("target/test-artifacts");
    std::fs::create_dir_all(&shots).expect("artifact dir");
    let steps = browse(
        "console_search.mjs",
        &[&d.base, &d.key, "a red object", &shots.to_string_lossy()],
    )
    .await;
    assert_eq!(
        steps.get("done")["errors"],
        serde_json::json!([]),
        "browser errors"
    );
    let found = steps.get("searched");
    for kind in ["search", "backtest"] {
        let r = &found[kind];
        let spans = r["spans"].as_array().expect("spans");
        assert_eq!(spans.len(), 1, "{kind}: one red range: {r}");
        // 8-16 s of about 22 s scanned: from about a third, a third wide.
        let left = spans[0][0].as_f64().unwrap_or(-1.0);
        assert!(
            (20.0..55.0).contains(&left),
            "{kind} starts at {left}% of the timeline"
        );
        assert!(
            spans[0][1].as_f64() > Some(50.0),
            "{kind} is drawn wide: {r}"
        );
    }
    assert!(
        steps.get("done")["overflow"].as_i64() <= Some(0),
        "fits a phone"
    );
    d.stop().await;
}

/// Reads the browser script's steps to its end, collecting what the webhook
/// receiver got meanwhile; kills the camera when the script asks.
async fn drive(
    mut node: tokio::process::Child,
    camera: &mut std::process::Child,
    hook: &mut Receiver,
) -> (Steps, Vec<Received>) {
    let mut stdin = node.stdin.take().expect("stdin");
    let mut out = BufReader::new(node.stdout.take().expect("stdout")).lines();
    let mut steps = Steps { seen: Vec::new() };
    let mut received: Vec<Received> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(420);
    loop {
        tokio::select! {
            line = out.next_line() => {
                let Ok(Some(line)) = line else { break };
                let Ok(step) = serde_json::from_str::<Value>(&line) else {
                    eprintln!("console: {line}");
                    continue;
                };
                eprintln!("console: {step}");
                if step["step"] == "kill-camera" {
                    let _ = camera.kill(); // SIGKILL
                    let _ = camera.wait();
                    stdin.write_all(b"killed\n").await.expect("tell the browser");
                }
                let done = step["step"] == "done";
                steps.seen.push(step);
                if done {
                    break;
                }
            }
            Some(r) = hook.rx.recv() => received.push(r),
            _ = tokio::time::sleep_until(deadline) => panic!("the browser run took over 7 minutes: {:?}", steps.seen),
        }
    }
    while let Ok(r) = hook.rx.try_recv() {
        received.push(r);
    }
    (steps, received)
}

/// Sign-in, the refused prompt, the dead letter, the cameras, the preview.
fn check_sign_in_and_rules(steps: &Steps) {
    // Sign-in on the page: refused with a wrong key; a session cookie the page cannot read.
    let signed = steps.get("signed-in");
    assert!(
        signed["refusal"]
            .as_str()
            .is_some_and(|t| t.contains("not")),
        "{signed}"
    );
    assert_eq!(signed["cookie"]["httpOnly"], true, "{signed}");
    assert_eq!(signed["cookie"]["sameSite"], "Strict", "{signed}");
    assert!(
        signed["cookie"]["expires"].as_f64() > Some(0.0),
        "the cookie expires: {signed}"
    );

    let refused = steps.get("refused-prompt");
    assert!(
        refused["refused"]
            .as_str()
            .is_some_and(|t| t.contains("unicorn") && t.contains("detects: person")),
        "a prompt no model can score is refused with the vocabulary shown: {refused}"
    );
    assert_eq!(refused["saveable"], false, "and cannot be saved: {refused}");
    let dead = steps.get("dead-letter");
    let refusing = dead["refusing"].as_str().expect("alert id");
    assert!(
        dead["dead"].as_array().is_some_and(|rows| rows
            .iter()
            .any(|r| r.as_str().is_some_and(|t| t.contains(refusing)))),
        "Health lists the refused message as a dead letter: {dead}"
    );
    let frames = &steps.get("cameras")["frames"];
    assert!(
        frames[1].as_u64() > frames[0].as_u64(),
        "the frame count rises: {frames}"
    );
    let created = steps.get("alert-created");
    assert!(
        created["preview"]
            .as_str()
            .is_some_and(|p| p.contains("person")),
        "the prompt resolves to the person label before saving: {created}"
    );
}

/// The alert on the Live page and its clip; the disabled window; resume.
fn check_live_and_disabled(steps: &Steps, received: &[Received]) {
    // The alert on the Live page, within 2 s of the webhook receiving it.
    let live = steps.get("live");
    let occurrence = live["occurrence"].as_str().expect("occurrence id");
    // The first message the receiver got of that occurrence (the alert may
    // be wired while the person is already in view: then that is its end).
    let first = received
        .iter()
        .find(|r| r.body["occurrence_id"] == occurrence)
        .unwrap_or_else(|| {
            let got: Vec<_> = received
                .iter()
                .map(|r| (r.body["occurrence_id"].clone(), r.body["phase"].clone()))
                .collect();
            panic!("the webhook got nothing of {occurrence}; it got {got:?}")
        });
    let lag = live["arrived"].as_i64().expect("arrived") - unix_ms(first.at);
    eprintln!("console: the Live page showed the alert {lag} ms after the webhook got it");
    assert!(lag <= 2000, "{lag} ms after the webhook");
    assert!(live["naturalWidth"].as_u64() > Some(0), "{live}");
    assert!(
        steps.get("played")["played"].as_f64() > Some(1.0),
        "the clip plays"
    );

    // Nothing reached the receiver while the alert was disabled.
    let (off, back) = (
        steps.get("disabled")["at"].as_i64().expect("at"),
        steps.get("disabled-window-over")["at"]
            .as_i64()
            .expect("at"),
    );
    let during: Vec<&Value> = received
        .iter()
        .filter(|r| (off..back).contains(&unix_ms(r.at)))
        .map(|r| &r.body)
        .collect();
    assert!(during.is_empty(), "alerts while disabled: {during:?}");
    assert!(
        back - off >= 30_000,
        "the window covers a whole loop of the clip"
    );
    let test = received.iter().find(|r| {
        r.body["occurrence_id"]
            .as_str()
            .is_some_and(|o| o.starts_with("test-"))
    });
    assert!(
        test.is_some(),
        "the test alert sent from the Rules page arrived"
    );
    assert_eq!(
        steps.get("resumed")["feed"],
        "resumed",
        "the Live page resumed its feed"
    );
    steps.get("enabled");
}

/// History, Health, the cross-site POST, the dead camera, sign-out, the
/// phone width and the screenshots.
fn check_the_rest(steps: &Steps, shots: &std::path::Path) {
    let occurrence = steps.get("live")["occurrence"]
        .as_str()
        .expect("occurrence id");
    let done = steps.get("done");
    let pages = steps.get("pages");
    assert!(
        pages["history"]
            .as_array()
            .is_some_and(|h| h.iter().any(|o| o == occurrence)),
        "History lists the occurrence: {pages}"
    );
    assert!(
        pages["health"]
            .as_str()
            .is_some_and(|t| t.contains("outbox")),
        "{pages}"
    );

    let cross = steps.get("cross-site");
    let status = cross["status"].as_u64().unwrap_or_default();
    assert!(
        status == 401 || status == 403,
        "a cross-site POST is refused: {cross}"
    );
    let reconnecting = steps.get("reconnecting");
    assert!(
        reconnecting["after_ms"].as_u64() <= Some(15_000),
        "{reconnecting}"
    );
    assert!(
        steps.get("signed-out")["url"]
            .as_str()
            .is_some_and(|u| u.contains("/signin")),
        "signed out"
    );
    for (page, px) in done["overflow"].as_object().expect("overflow") {
        assert!(
            px.as_i64() <= Some(0),
            "{page} scrolls sideways by {px} px at phone width"
        );
    }
    for page in [
        "signin",
        "live",
        "cameras",
        "rules",
        "history",
        "health",
        "health-dead-letter",
    ] {
        for w in ["desktop", "phone"] {
            let f = shots.join(format!("console-{page}-{w}.png"));
            assert!(
                f.metadata().is_ok_and(|m| m.len() > 1000),
                "{} saved",
                f.display()
            );
        }
    }
}
