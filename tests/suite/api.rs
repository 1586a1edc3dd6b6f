//! The control API against a whole daemon: state that survives a restart,
//! changes that take effect without touching other streams, and bad input
//! on every route refused with a clear 4xx and no change to stored state.
//! Streams here are GStreamer test patterns (`test:`), real pipelines that
//! need no camera; the SDK test (tests/suite/sdk.rs) uses real footage over RTSP.

use crate::common;

use std::time::{Duration, Instant};

use common::daemon::Daemon;
use serde_json::{json, Value};

const CONFIG_PARTS: &str = r#"
[[streams]]
id = "cfg-cam"
url = "test:ball"
fps = 2

[[events]]
id = "cfg-person"
prompt = "Detect person"
label = "person_seen"
"#;

/// Everything the API lists, with the fields that must not drift.
async fn state_of(d: &Daemon) -> Value {
    let streams = d.ok("GET", "rtstream", None).await;
    let mut out = json!({
        "events": d.ok("GET", "rtstream/event", None).await["events"],
        "alerts": d.ok("GET", "alert", None).await["alerts"],
        "streams": [],
        "indexes": [],
    });
    for s in streams["results"].as_array().cloned().unwrap_or_default() {
        let id = s["id"].as_str().unwrap_or_default().to_string();
        if let Some(a) = out["streams"].as_array_mut() {
            a.push(json!({"id": id, "name": s["name"], "status": s["status"], "url": s["url"]}));
        }
        let ix = d
            .ok("GET", &format!("rtstream/{id}/index/scene"), None)
            .await;
        for i in ix["scene_indexes"].as_array().cloned().unwrap_or_default() {
            if let Some(a) = out["indexes"].as_array_mut() {
                a.push(i);
            }
        }
    }
    out
}

async fn frames_of(d: &Daemon, stream: &str) -> (u64, u64) {
    let s = d.ok("GET", &format!("rtstream/{stream}"), None).await;
    (
        s["health"]["frames"].as_u64().unwrap_or(0),
        s["health"]["restarts"].as_u64().unwrap_or(0),
    )
}

/// Waits until `stream` has scored more frames than `after`.
async fn frames_rise(d: &Daemon, stream: &str, after: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (f, _) = frames_of(d, stream).await;
        if f > after {
            return f;
        }
        assert!(Instant::now() < deadline, "{stream} delivers no frames");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Creates an API stream with an index, an event and an alert; returns their ids.
async fn populate(d: &Daemon) -> (String, String, String, String) {
    let s = d
        .ok(
            "POST",
            "rtstream",
            Some(json!({"url": "test:smpte", "name": "api cam", "sample_rate": 2})),
        )
        .await;
    let sid = s["id"].as_str().expect("stream id").to_string();
    let i = d
        .ok(
            "POST",
            &format!("rtstream/{sid}/index/scene"),
            Some(json!({"extraction_type": "time", "extraction_config": {"time": 1, "frame_count": 2}, "prompt": "people", "name": "visuals"})),
        )
        .await;
    let iid = i["rtstream_index_id"]
        .as_str()
        .expect("index id")
        .to_string();
    let e = d
        .ok(
            "POST",
            "rtstream/event",
            Some(json!({"event_prompt": "Detect intruder", "label": "intruder"})),
        )
        .await;
    let eid = e["event_id"].as_str().expect("event id").to_string();
    let a = d
        .ok(
            "POST",
            &format!("rtstream/{sid}/index/{iid}/alert"),
            Some(json!({"event_id": eid, "callback_url": "http://127.0.0.1:9/hook"})),
        )
        .await;
    let aid = a["alert_id"].as_str().expect("alert id").to_string();
    (sid, iid, eid, aid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_created_through_the_api_survives_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = Daemon::start_allowing_local_sources(dir.path(), CONFIG_PARTS).await;
    let (sid, iid, _eid, aid) = populate(&d).await;
    d.ok(
        "PATCH",
        &format!("rtstream/{sid}/index/{iid}/alert/{aid}/status"),
        Some(json!({"action": "disable"})),
    )
    .await;
    d.ok(
        "PATCH",
        "rtstream/cfg-cam/status",
        Some(json!({"action": "stop"})),
    )
    .await;
    frames_rise(&d, &sid, 0).await;
    let before = state_of(&d).await;
    d.stop().await;

    let d = Daemon::start_allowing_local_sources(dir.path(), CONFIG_PARTS).await;
    let after = state_of(&d).await;
    assert_eq!(before, after, "ids, statuses and definitions are back");
    let alert = after["alerts"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["alert_id"] == aid.as_str()).cloned())
        .expect("alert listed");
    assert_eq!(alert["status"], "disabled");
    let cam = after["streams"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["id"] == "cfg-cam").cloned())
        .expect("config stream listed");
    assert_eq!(
        cam["status"], "stopped",
        "a stopped config stream stays stopped"
    );
    // And working: the API stream runs again and its index records frames.
    frames_rise(&d, &sid, 0).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = d
            .ok("GET", &format!("rtstream/{sid}/index/scene/{iid}"), None)
            .await;
        let n = r["scene_index_records"].as_array().map_or(0, Vec::len);
        if n > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no scene records after the restart"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(
        frames_of(&d, "cfg-cam").await.0,
        0,
        "stopped stream not started"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_apply_at_once_without_restarting_other_streams() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = Daemon::start_allowing_local_sources(dir.path(), CONFIG_PARTS).await;
    let f0 = frames_rise(&d, "cfg-cam", 0).await;
    let (_, restarts0) = frames_of(&d, "cfg-cam").await;

    let (sid, _iid, eid, aid) = populate(&d).await;
    frames_rise(&d, &sid, 0).await;
    d.ok(
        "PATCH",
        &format!("rtstream/{sid}/status"),
        Some(json!({"action": "stop"})),
    )
    .await;
    let stopped = state_of(&d).await;
    assert!(stopped["streams"].as_array().is_some_and(|a| a
        .iter()
        .any(|s| s["id"] == sid.as_str() && s["status"] == "stopped")));
    let (f_stopped, _) = frames_of(&d, &sid).await;
    assert_eq!(f_stopped, 0, "a stopped stream has no running pipeline");

    let (code, body) = d
        .call("DELETE", &format!("rtstream/event/{eid}"), None)
        .await;
    assert_eq!(code, 409, "an event in use cannot go: {body}");
    d.ok("DELETE", &format!("alert/{aid}"), None).await;
    d.ok("DELETE", &format!("rtstream/event/{eid}"), None).await;
    d.ok("DELETE", &format!("rtstream/{sid}"), None).await;
    let (code, _) = d.call("GET", &format!("rtstream/{sid}"), None).await;
    assert_eq!(code, 404);

    // The config stream ran through all of it without a rebuild.
    let f1 = frames_rise(&d, "cfg-cam", f0 + 4).await;
    let (_, restarts1) = frames_of(&d, "cfg-cam").await;
    assert!(f1 > f0);
    assert_eq!(restarts0, restarts1, "other stream untouched");
    let (code, body) = d.call("DELETE", "rtstream/cfg-cam", None).await;
    assert_eq!(code, 409, "config streams are removed in the file: {body}");
    d.stop().await;
}

/// Method, path, token, body, expected status.
type Case<'a> = (&'a str, String, Option<&'a str>, Vec<u8>, u16);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_on_every_route_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = Daemon::start_allowing_local_sources(dir.path(), CONFIG_PARTS).await;
    let (sid, iid, eid, aid) = populate(&d).await;
    let before = state_of(&d).await;
    let key = d.key.clone();
    let big = format!(
        "{{\"url\": \"test:ball\", \"name\": \"{}\"}}",
        "x".repeat(70 * 1024)
    );
    let post_paths = [
        "rtstream".to_string(),
        "rtstream/event".to_string(),
        format!("rtstream/{sid}/index/scene"),
        format!("rtstream/{sid}/index/{iid}/alert"),
    ];
    let patch_paths = [
        format!("rtstream/{sid}/status"),
        format!("rtstream/{sid}/index/scene/{iid}/status"),
        format!("rtstream/{sid}/index/{iid}/alert/{aid}/status"),
        format!("alert/{aid}/status"),
    ];
    let mut cases: Vec<Case> = Vec::new();
    for p in post_paths.iter().chain(patch_paths.iter()) {
        let m = if p.ends_with("status") {
            "PATCH"
        } else {
            "POST"
        };
        cases.push((m, p.clone(), Some(&key), b"{not json".to_vec(), 400));
        cases.push((m, p.clone(), Some(&key), b"[1, 2]".to_vec(), 422));
        cases.push((m, p.clone(), Some(&key), big.clone().into_bytes(), 413));
        cases.push((m, p.clone(), None, b"{}".to_vec(), 401));
        cases.push((
            m,
            p.clone(),
            Some("wrong-key-0123456789"),
            b"{}".to_vec(),
            401,
        ));
    }
    let j = |v: Value| v.to_string().into_bytes();
    let k = Some(key.as_str());
    cases.extend([
        // Missing and wrong-typed fields.
        ("POST", "rtstream".into(), k, j(json!({"name": "x"})), 422),
        (
            "POST",
            "rtstream".into(),
            k,
            j(json!({"url": "rtsp://cam/x", "name": "gate\u{0}\nfake log line"})),
            422,
        ),
        (
            "POST",
            "rtstream/event".into(),
            k,
            j(json!({"event_prompt": "Detect person\u{1b}[2J", "label": "x"})),
            422,
        ),
        (
            "POST",
            "rtstream".into(),
            k,
            j(json!({"url": 5, "name": "x"})),
            422,
        ),
        (
            "POST",
            "rtstream".into(),
            k,
            j(json!({"url": "http://cam/x", "name": "x"})),
            422,
        ),
        (
            "POST",
            "rtstream".into(),
            k,
            j(json!({"url": "test:ball", "name": "x", "sample_rate": -1})),
            422,
        ),
        (
            "POST",
            "rtstream".into(),
            k,
            j(json!({"url": "test:ball", "name": "x", "media_types": ["audio"]})),
            422,
        ),
        (
            "POST",
            "rtstream/event".into(),
            k,
            j(json!({"label": "x"})),
            422,
        ),
        (
            "POST",
            "rtstream/event".into(),
            k,
            j(json!({"event_prompt": "Detect a forklift", "label": "x"})),
            422,
        ),
        (
            "POST",
            "rtstream/event".into(),
            k,
            j(json!({"event_prompt": "Detect car", "label": "x", "model": "no-such-model"})),
            422,
        ),
        (
            "POST",
            "rtstream/event".into(),
            k,
            j(json!({"event_prompt": "person", "label": "bad label"})),
            422,
        ),
        (
            "POST",
            "rtstream/event".into(),
            k,
            j(json!({"event_prompt": "person", "label": "x", "k": "two"})),
            422,
        ),
        (
            "POST",
            format!("rtstream/{sid}/index/scene"),
            k,
            j(json!({"extraction_config": {"time": 0}})),
            422,
        ),
        (
            "POST",
            format!("rtstream/{sid}/index/scene"),
            k,
            j(json!({"extraction_type": "shot"})),
            422,
        ),
        (
            "POST",
            format!("rtstream/{sid}/index/scene"),
            k,
            j(json!({"ws_connection_id": "ws-none"})),
            422,
        ),
        (
            "POST",
            format!("rtstream/{sid}/index/{iid}/alert"),
            k,
            j(json!({"callback_url": "http://h/x"})),
            422,
        ),
        (
            "POST",
            format!("rtstream/{sid}/index/{iid}/alert"),
            k,
            j(json!({"event_id": eid, "callback_url": "ftp://h/x"})),
            422,
        ),
        (
            "POST",
            format!("rtstream/{sid}/index/{iid}/alert"),
            k,
            j(json!({"event_id": eid, "callback_url": "http://u:p@h/x"})),
            422,
        ),
        (
            "POST",
            format!("rtstream/{sid}/index/{iid}/alert"),
            k,
            j(json!({"event_id": eid, "callback_url": null})),
            422,
        ),
        (
            "POST",
            format!("rtstream/{sid}/index/{iid}/alert"),
            k,
            j(json!({"event_id": "ev-nope", "callback_url": "http://h/x"})),
            422,
        ),
        (
            "PATCH",
            format!("rtstream/{sid}/status"),
            k,
            j(json!({"action": "explode"})),
            422,
        ),
        (
            "PATCH",
            format!("alert/{aid}/status"),
            k,
            j(json!({"state": "on"})),
            422,
        ),
        // Unknown ids.
        ("GET", "rtstream/rts-nope".into(), k, vec![], 404),
        ("DELETE", "rtstream/rts-nope".into(), k, vec![], 404),
        (
            "PATCH",
            "rtstream/rts-nope/status".into(),
            k,
            j(json!({"action": "stop"})),
            404,
        ),
        ("DELETE", "rtstream/event/ev-nope".into(), k, vec![], 404),
        (
            "GET",
            "rtstream/rts-nope/index/scene".into(),
            k,
            vec![],
            404,
        ),
        (
            "POST",
            "rtstream/rts-nope/index/scene".into(),
            k,
            j(json!({})),
            404,
        ),
        (
            "GET",
            format!("rtstream/{sid}/index/idx-nope"),
            k,
            vec![],
            404,
        ),
        (
            "GET",
            format!("rtstream/{sid}/index/scene/idx-nope"),
            k,
            vec![],
            404,
        ),
        (
            "POST",
            format!("rtstream/{sid}/index/idx-nope/alert"),
            k,
            j(json!({"event_id": eid, "callback_url": "http://h/x"})),
            404,
        ),
        (
            "PATCH",
            format!("rtstream/{sid}/index/{iid}/alert/alr-nope/status"),
            k,
            j(json!({"action": "enable"})),
            404,
        ),
        (
            "DELETE",
            format!("rtstream/{sid}/index/{iid}/alert/alr-nope"),
            k,
            vec![],
            404,
        ),
        ("DELETE", "alert/alr-nope".into(), k, vec![], 404),
        ("GET", "collection/other".into(), k, vec![], 404),
        ("GET", "collection/other/websocket".into(), k, vec![], 404),
        ("GET", "no/such/route".into(), k, vec![], 404),
        ("GET", "ws/not-a-ticket".into(), None, vec![], 401),
        // Every GET needs the key too.
        ("GET", "rtstream".into(), None, vec![], 401),
        ("GET", "status".into(), Some("wrong"), vec![], 401),
    ]);
    for (method, path, token, body, want) in cases {
        let (code, reply) = d.raw(method, &path, token, body).await;
        assert_eq!(code, want, "{method} {path}: {reply}");
        assert_eq!(reply["success"], false, "{method} {path}: enveloped error");
        let message = reply["message"].as_str().unwrap_or_default();
        assert!(
            message.len() > 5,
            "{method} {path}: a clear message, got {reply}"
        );
    }
    assert_eq!(before, state_of(&d).await, "stored state unchanged");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_is_listed_and_redelivered_through_the_api() {
    use axum::http::StatusCode;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    // A receiver that refuses the first request (400: not retried) and
    // accepts the rest, recording the webhook-id of each.
    let calls = Arc::new(AtomicUsize::new(0));
    let ids: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let (c, i) = (Arc::clone(&calls), Arc::clone(&ids));
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |h: axum::http::HeaderMap| {
            let (c, i) = (Arc::clone(&c), Arc::clone(&i));
            async move {
                let id = h
                    .get("webhook-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if let Ok(mut ids) = i.lock() {
                    ids.push(id.to_string());
                }
                if c.fetch_add(1, Ordering::SeqCst) == 0 {
                    StatusCode::BAD_REQUEST
                } else {
                    StatusCode::NO_CONTENT
                }
            }
        }),
    );
    let addr = common::receiver::serve_local(app).await.expect("receiver");
    let dir = tempfile::tempdir().expect("temp dir");
    let d = Daemon::start(
        dir.path(),
        &format!(
            "[[events]]\nid = \"p\"\nprompt = \"person\"\n\
             [[alerts]]\nid = \"a\"\nevent = \"p\"\ncallback_url = \"http://{addr}/hook\"\n"
        ),
    )
    .await;
    d.ok("POST", "alert/a/test", None).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let dead = loop {
        let dead = d.ok("GET", "delivery/dead", None).await["dead_letters"].clone();
        if dead.as_array().is_some_and(|a| !a.is_empty()) || Instant::now() > deadline {
            break dead;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(dead.as_array().map_or(0, Vec::len), 1, "{dead}");
    assert!(dead[0]["last_error"]
        .as_str()
        .is_some_and(|e| e.contains("400")));
    let seq = dead[0]["seq"].as_i64().expect("seq");
    let (code, _) = d.call("POST", "delivery/dead/999999/redeliver", None).await;
    assert_eq!(code, 404);
    d.ok("POST", &format!("delivery/dead/{seq}/redeliver"), None)
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while calls.load(Ordering::SeqCst) < 2 {
        assert!(Instant::now() < deadline, "redelivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ids = ids.lock().map(|i| i.clone()).unwrap_or_default();
    assert_eq!(ids[0], ids[1], "the redelivery carries the same webhook-id");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let dead = d.ok("GET", "delivery/dead", None).await["dead_letters"].clone();
    assert_eq!(dead.as_array().map_or(1, Vec::len), 0, "accepted, so gone");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_the_api_adds_cameras_not_local_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = Daemon::start(dir.path(), "").await;
    for url in ["file:///etc/passwd", "test:ball"] {
        let (code, body) = d
            .call("POST", "rtstream", Some(json!({"url": url, "name": "x"})))
            .await;
        assert_eq!(code, 422, "{url}: {body}");
        assert!(
            body.to_string().contains("allow_local_sources"),
            "{url}: the refusal names the setting: {body}"
        );
    }
    assert_eq!(
        d.ok("GET", "rtstream", None).await["results"]
            .as_array()
            .map(Vec::len),
        Some(0),
        "nothing was created"
    );
    // A camera URL is accepted even when nothing answers there yet.
    let (code, body) = d
        .call(
            "POST",
            "rtstream",
            Some(json!({"url": "rtsp://127.0.0.1:9/none", "name": "gate"})),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    d.stop().await;
}

/// `GET models` lists the default models; a prompt no model can score is
/// refused with every model's vocabulary; a named model must be loaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_are_listed_and_events_routed_or_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = Daemon::start(dir.path(), "").await;
    let models = d.ok("GET", "models", None).await;
    let list = models["models"].as_array().cloned().unwrap_or_default();
    let names: Vec<&str> = list.iter().filter_map(|m| m["name"].as_str()).collect();
    assert_eq!(names, vec!["person", "coco"], "{models}");
    assert_eq!(
        list[1]["labels"].as_array().map(Vec::len),
        Some(80),
        "{models}"
    );
    assert_eq!(list[1]["input"]["width"], 512, "{models}");
    assert_eq!(list[1]["kind"], "detections", "{models}");

    let (code, body) = d
        .call(
            "POST",
            "rtstream/event",
            Some(json!({"event_prompt": "Detect a forklift", "label": "x"})),
        )
        .await;
    assert_eq!(code, 422, "{body}");
    let msg = body["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("model \"person\": the model detects: person")
            && msg.contains("model \"coco\": the model detects: person, bicycle"),
        "{msg}"
    );
    let (code, body) = d
        .call(
            "POST",
            "rtstream/event",
            Some(json!({"event_prompt": "Detect dog", "label": "x", "model": "person"})),
        )
        .await;
    assert_eq!(code, 422, "the person model cannot see dogs: {body}");
    let dog = d
        .ok(
            "POST",
            "rtstream/event",
            Some(json!({"event_prompt": "Detect dog on the sofa", "label": "dog"})),
        )
        .await;
    assert_eq!(dog["model"], "coco", "{dog}");
    d.stop().await;
}
