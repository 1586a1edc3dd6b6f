//! History covers the site: two recording boxes on one NATS server, each
//! running one camera of the ground-truth clip (pedestrians at 10–20 s of
//! every 30 s pass). `GET occurrences` on either box lists both boxes'
//! occurrences, newest first, each naming its box, with links that answer
//! from the box holding the evidence; pages follow each other; the console's
//! History page shows them (headless Chromium). Both boxes publish to one
//! mosquitto through the site's stream. Once a box is killed, the other
//! still answers, and says whose history is missing.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sightline::tools::rtsp_server::RtspServer;

use super::{add_cameras, box_config, browser, placement};
use crate::common::nats::Cluster;
use crate::common::process::Proc;
use crate::common::{self, receiver::Receiver};

/// Recording on, and MQTT to one broker.
fn extra(broker: u16, id: &str) -> String {
    format!(
        "[recording]\nenabled = true\nsegment_secs = 2\npre_secs = 2\npost_secs = 2\n\
         [mqtt]\nport = {broker}\nclient_id = \"history-{id}-{pid}\"\n",
        pid = std::process::id()
    )
}

async fn history(b: &Proc, query: &str) -> Value {
    b.ok("GET", &format!("occurrences?{query}"), None).await
}

fn items(page: &Value) -> Vec<Value> {
    page["occurrences"].as_array().cloned().unwrap_or_default()
}

/// `occurrence@box` of each occurrence listed.
fn listed(items: &[Value]) -> BTreeSet<String> {
    let name = |o: &Value| {
        Some(format!(
            "{}@{}",
            o["occurrence_id"].as_str()?,
            o["box_id"].as_str()?
        ))
    };
    items.iter().filter_map(name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_covers_the_site() {
    let cluster = Cluster::start(1);
    cluster.ready().await;
    let clip = common::media("ground_truth.mp4");
    let server = RtspServer::serve_files(0, &[("a", &clip), ("b", &clip)]).expect("rtsp server");
    let hook = Receiver::start().await.expect("receiver");
    let broker = common::Mosquitto::start();
    let mut mqtt = common::subscribe(broker.port, "sightline/+/alerts/#").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut boxes: Vec<Proc> = ["b1", "b2"]
        .iter()
        .map(|id| {
            let (config, state) =
                box_config(dir.path(), (id, 1), &cluster, &extra(broker.port, id));
            Proc::start(&config, &state)
        })
        .collect();
    add_cameras(&boxes, &[server.url("a"), server.url("b")]).await;
    let owners = one_camera_each(&boxes[0]).await;
    wire(&boxes[0], &owners, &hook.url()).await;

    // Both boxes' occurrences, on either box.
    let page = both_boxes_recorded(&boxes[0]).await;
    let all = items(&page);
    for o in &all {
        let stream = o["stream_id"].as_str().expect("stream");
        assert_eq!(
            o["box_id"],
            json!(owners[stream]),
            "recorded by its camera's box: {o}"
        );
    }
    let starts: Vec<i64> = all
        .iter()
        .map(|o| o["start_ms"].as_i64().unwrap_or(0))
        .collect();
    assert!(
        starts.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {starts:?}"
    );
    assert_eq!(page["boxes"], json!(["b1", "b2"]), "{page}");
    assert_eq!(page["unanswered"], json!([]), "{page}");
    evidence_answers_from_its_box(&all, &boxes[1].base).await;
    let seen_on_b2 = listed(&items(&history(&boxes[1], "limit=100").await));
    let seen_on_b1 = listed(&all);
    assert!(
        seen_on_b1.is_subset(&seen_on_b2),
        "box 2 lists what box 1 does"
    );
    pages_follow(&boxes[0]).await;
    console_shows_both(&boxes[0]).await;
    mqtt_through_the_site(&boxes, &mut mqtt, &owners).await;

    // A dead box: the other answers alone and says whose history is missing.
    boxes[1].kill();
    let t = Instant::now();
    let page = history(&boxes[0], "limit=100").await;
    eprintln!(
        "with box 2 dead, box 1 answered its history in {:?}",
        t.elapsed()
    );
    assert_eq!(page["unanswered"], json!(["b2"]), "{page}");
    assert!(
        items(&page).iter().all(|o| o["box_id"] == "b1") && !items(&page).is_empty(),
        "{page}"
    );
    boxes[0].stop();
}

/// Waits until the two cameras run one per box; stream → box.
async fn one_camera_each(b: &Proc) -> std::collections::BTreeMap<String, String> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let p = placement(b).await;
        let owners: BTreeSet<_> = p
            .values()
            .filter_map(|(o, up)| o.clone().filter(|_| *up))
            .collect();
        if p.len() == 2 && owners.len() == 2 {
            return p
                .into_iter()
                .filter_map(|(s, (o, _))| Some((s, o?)))
                .collect();
        }
        assert!(Instant::now() < deadline, "cameras not one per box: {p:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// An index on each camera and an alert of one "person" event on each, to
/// the webhook and MQTT.
async fn wire(b: &Proc, owners: &std::collections::BTreeMap<String, String>, hook: &str) {
    let event = json!({"event_prompt": "Detect person", "label": "person"});
    let ev = b.ok("POST", "rtstream/event", Some(event)).await;
    let eid = ev["event_id"].as_str().expect("event id");
    for sid in owners.keys() {
        let body = json!({"extraction_type": "time", "extraction_config": {"time": 1, "frame_count": 1}, "name": "v"});
        let ix = b
            .ok("POST", &format!("rtstream/{sid}/index/scene"), Some(body))
            .await;
        let iid = ix["rtstream_index_id"].as_str().expect("index id");
        let alert = json!({"event_id": eid, "callback_url": hook, "mqtt": true});
        b.ok(
            "POST",
            &format!("rtstream/{sid}/index/{iid}/alert"),
            Some(alert),
        )
        .await;
    }
}

/// Box 1's history once it holds occurrences from both boxes.
async fn both_boxes_recorded(b: &Proc) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let page = history(b, "limit=100").await;
        let boxes: BTreeSet<String> = items(&page)
            .iter()
            .filter_map(|o| o["box_id"].as_str().map(String::from))
            .collect();
        if boxes.len() == 2 {
            return page;
        }
        assert!(
            Instant::now() < deadline,
            "history never covered both boxes: {page}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Box 2's occurrence, listed by box 1, links to box 2, and its snapshot
/// answers there with a JPEG.
async fn evidence_answers_from_its_box(all: &[Value], b2: &str) {
    let theirs = all
        .iter()
        .find(|o| o["box_id"] == "b2")
        .expect("box 2's occurrence");
    let snap = theirs["snapshot_url"].as_str().expect("snapshot link");
    assert!(snap.starts_with(b2), "box 2's link {snap} points at {b2}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = reqwest::get(snap).await.expect("box 2 answers");
        let jpeg = r
            .headers()
            .get("content-type")
            .is_some_and(|v| v == "image/jpeg");
        if r.status() == 200 && jpeg {
            break;
        }
        // The snapshot is written a moment after the occurrence starts.
        assert!(Instant::now() < deadline, "{snap}: {}", r.status());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Pages of one occurrence each follow each other without a repeat.
async fn pages_follow(b: &Proc) {
    let (mut before, mut seen) = (None::<i64>, Vec::new());
    for _ in 0..3 {
        let q = before.map_or("limit=1".to_string(), |t| format!("limit=1&before={t}"));
        let page = history(b, &q).await;
        let one = items(&page);
        assert_eq!(one.len(), 1, "{page}");
        seen.push(one[0]["occurrence_id"].clone());
        before = page["next_before"].as_i64();
        if before.is_none() {
            break;
        }
    }
    let distinct: BTreeSet<String> = seen.iter().map(|v| v.to_string()).collect();
    assert_eq!(distinct.len(), seen.len(), "a page repeated: {seen:?}");
    assert!(seen.len() >= 2, "only one page: {seen:?}");
}

/// Box 1's History page in headless Chromium shows both boxes'
/// occurrences with their box, and the other box's snapshots load.
async fn console_shows_both(b1: &Proc) {
    let steps = browser(b1, "fleet_history.mjs", &[]).await;
    let step = steps
        .iter()
        .find(|s| s["step"] == "history")
        .expect("the history step");
    let cards = step["cards"].as_array().cloned().unwrap_or_default();
    let boxes: BTreeSet<&str> = cards.iter().filter_map(|c| c["box"].as_str()).collect();
    assert_eq!(boxes, BTreeSet::from(["b1", "b2"]), "{step}");
    for b in ["b1", "b2"] {
        let loaded = cards
            .iter()
            .any(|c| c["box"] == b && c["image"]["width"].as_u64().is_some_and(|w| w > 0));
        assert!(loaded, "no snapshot of {b} loaded: {step}");
    }
    assert!(step["missing"].is_null(), "{step}");
    assert_eq!(
        step["overflow"],
        json!(0),
        "the phone view scrolls sideways"
    );
}

/// Both cameras' alerts reached the broker, each once, and went through the
/// site's stream: the boxes handed them over and delivered from it.
async fn mqtt_through_the_site(
    boxes: &[Proc],
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<common::MqttMessage>,
    owners: &std::collections::BTreeMap<String, String>,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got: Vec<common::MqttMessage> = Vec::new();
    loop {
        got.extend(common::drain(rx));
        let streams: BTreeSet<&str> = got
            .iter()
            .filter_map(|m| m.topic.split('/').nth(1))
            .collect();
        if owners.keys().all(|s| streams.contains(s.as_str())) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "MQTT had alerts of {streams:?} only"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let distinct: BTreeSet<&str> = got.iter().map(|m| m.raw.as_str()).collect();
    assert_eq!(distinct.len(), got.len(), "an MQTT message came twice");
    let (mut handed, mut delivered) = (0, 0);
    for b in boxes {
        let f = b.ok("GET", "fleet", None).await;
        handed += f["delivery"]["handed"].as_u64().unwrap_or(0);
        delivered += f["delivery"]["delivered"].as_u64().unwrap_or(0);
    }
    assert!(
        handed >= got.len() as u64 && delivered >= got.len() as u64,
        "{} MQTT messages, {handed} handed to the site's stream, {delivered} delivered from it",
        got.len()
    );
    eprintln!(
        "MQTT through the site: {} messages, {handed} handed, {delivered} delivered (webhooks included)",
        got.len()
    );
}
