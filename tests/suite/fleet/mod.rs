//! A site of three boxes on a real three-server NATS JetStream cluster:
//! three `sightline run` processes, six cameras served over RTSP by
//! `sightline serve`, one catalog. Checks that the cameras spread over the
//! boxes by capacity and every box lists all six with their owners; that
//! two boxes changing one alert at once never lose an update (one 409);
//! that when a box is SIGKILLed its cameras run on the others within 15 s;
//! and that alerts go through the site's stream to a real webhook receiver
//! across the box's death and a NATS outage with none lost.

mod delivery;
mod history;
mod ws;

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::nats::{self, Cluster};
use common::process::Proc;
use delivery::{
    in_flight_on_a_dying_box, nothing_left, outbox_rows, the_stream_carried_alerts, Hooks,
};
use serde_json::{json, Value};

const CAMERAS: usize = 6;

/// A box's config and state folder; `extra` holds its `[recording]`
/// section and any other.
fn box_config(
    dir: &Path,
    (id, capacity): (&str, usize),
    cluster: &Cluster,
    extra: &str,
) -> (PathBuf, PathBuf) {
    let state = dir.join(id);
    std::fs::create_dir_all(&state).expect("state dir");
    let config = dir.join(format!("{id}.toml"));
    std::fs::write(
        &config,
        format!(
            r#"
[runtime]
stats_interval_secs = 0
[api]
listen = "127.0.0.1:0"
[state]
dir = "{state}"
{extra}
[webhook]
allow_private = ["127.0.0.1/32"]
# Long enough for a box to die in the middle of a slow delivery.
timeout_ms = 60000
[fleet]
nats = {urls}
credentials = "{creds}"
site = "lab"
box_id = "{id}"
capacity = {capacity}
"#,
            state = state.display(),
            urls = cluster.urls_toml(),
            creds = nats::credentials(dir).display(),
        ),
    )
    .expect("config written");
    (config, state)
}

/// Stream id → (owner box, up) as `box_` lists them.
async fn placement(box_: &Proc) -> BTreeMap<String, (Option<String>, bool)> {
    let (code, v) = box_.call("GET", "rtstream", None).await;
    if code != 200 {
        return BTreeMap::new();
    }
    v["data"]["results"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap_or_default().to_string(),
                (
                    s["owner"]["box_id"].as_str().map(String::from),
                    s["health"]["up"].as_bool().unwrap_or(false),
                ),
            )
        })
        .collect()
}

fn per_box(p: &BTreeMap<String, (Option<String>, bool)>) -> BTreeMap<String, usize> {
    let mut n = BTreeMap::new();
    for (owner, _) in p.values() {
        *n.entry(owner.clone().unwrap_or_default()).or_default() += 1;
    }
    n
}

/// Waits until every box in `boxes` lists the six cameras, each up on a
/// box of `owners`, `each` per box; returns the placement and the time.
async fn settled(
    boxes: &[&Proc],
    owners: &[&str],
    each: usize,
    within: Duration,
) -> (BTreeMap<String, (Option<String>, bool)>, Duration) {
    let start = Instant::now();
    let mut last = Vec::new();
    loop {
        last.clear();
        for b in boxes {
            last.push(placement(b).await);
        }
        let good = last.iter().all(|p| {
            p.len() == CAMERAS
                && p.values()
                    .all(|(o, up)| *up && o.as_deref().is_some_and(|o| owners.contains(&o)))
                && per_box(p).values().all(|n| *n == each)
        });
        if good && last.windows(2).all(|w| w[0] == w[1]) {
            return (last.remove(0), start.elapsed());
        }
        if start.elapsed() > within {
            for b in boxes {
                eprintln!("--- {}\n{}", b.base, b.logged("").join("\n"));
            }
            panic!("not settled within {within:?}: {last:#?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The `sightline serve` process, killed when the test ends, passed or not.
struct Camera(std::process::Child);

impl Drop for Camera {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Serves `CAMERAS` mounts of the demo clip in a loop; returns the server
/// and the mount URLs.
fn cameras(dir: &Path) -> (Camera, Vec<String>) {
    let mut args = Vec::new();
    for i in 0..CAMERAS {
        let f = dir.join(format!("cam{i}.mp4"));
        std::os::unix::fs::symlink(common::media("demo.mp4"), &f).expect("symlink");
        args.push(f);
    }
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sightline"))
        .args(["serve", "--port", "0"])
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("sightline serve");
    use std::io::BufRead;
    let out = child.stdout.take().expect("stdout");
    let urls: Vec<String> = std::io::BufReader::new(out)
        .lines()
        .map_while(Result::ok)
        .take(CAMERAS)
        .map(|l| l.trim().to_string())
        .collect();
    assert_eq!(urls.len(), CAMERAS, "serve printed its mounts: {urls:?}");
    (Camera(child), urls)
}

/// Alert status on each box (true: enabled).
async fn alert_states(boxes: &[&Proc], aid: &str) -> Vec<Option<bool>> {
    let mut out = Vec::new();
    for b in boxes {
        let (_, v) = b.call("GET", "alert", None).await;
        let alerts = v["data"]["alerts"].as_array().cloned().unwrap_or_default();
        let mine = alerts.iter().find(|a| a["alert_id"].as_str() == Some(aid));
        out.push(
            mine.and_then(|a| a["status"].as_str())
                .map(|s| s == "enabled"),
        );
    }
    out
}

/// Two boxes change the same alert at once, round after round, until one
/// round has them collide: the loser gets 409, never a silent overwrite,
/// and every box ends up agreeing on the winner's state.
async fn concurrent_patches_collide(a: &Proc, b: &Proc, boxes: &[&Proc], aid: &str) {
    let path = format!("alert/{aid}/status");
    let mut collided = false;
    for round in 0..20 {
        let (x, y) = if round % 2 == 0 {
            ("disable", "enable")
        } else {
            ("enable", "disable")
        };
        let (ra, rb) = tokio::join!(
            a.call("PATCH", &path, Some(json!({"action": x}))),
            b.call("PATCH", &path, Some(json!({"action": y}))),
        );
        let codes = (ra.0, rb.0);
        assert!(
            matches!(codes, (200, 200) | (200, 409) | (409, 200)),
            "round {round}: {codes:?} {} {}",
            ra.1,
            rb.1
        );
        let want = match codes {
            (200, 409) => Some(x == "enable"),
            (409, 200) => Some(y == "enable"),
            _ => None,
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let s = alert_states(boxes, aid).await;
            let agree = s.windows(2).all(|w| w[0] == w[1]) && s[0].is_some();
            if agree && want.is_none_or(|w| s[0] == Some(w)) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round} {codes:?}: boxes disagree {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if want.is_some() {
            collided = true;
            break;
        }
    }
    assert!(
        collided,
        "twenty rounds of simultaneous PATCHes and never a 409"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_spreads_its_cameras_and_moves_them_off_a_dead_box() {
    let mut cluster = Cluster::start(3);
    cluster.ready().await;
    let hooks = Hooks::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (_serve, urls) = cameras(dir.path());
    let (states, mut boxes) = start_boxes(dir.path(), &cluster);
    add_cameras(&boxes, &urls).await;
    let all: Vec<&Proc> = boxes.iter().collect();
    assert!(
        boxes.iter().all(|b| b.key == boxes[0].key),
        "every box answers to the site's one API key"
    );
    let (before, t) = settled(&all, &["b1", "b2", "b3"], 2, Duration::from_secs(90)).await;
    eprintln!("six cameras placed and up on three boxes in {t:?}: {before:?}");
    console_lists_the_site(&boxes[0], &before).await;

    // Rules made on one box reach every box; concurrent changes collide.
    let sid = before.keys().next().expect("a stream").clone();
    let (iid, eid, aid) = rules_across_boxes(&boxes, &sid, &hooks.url).await;
    concurrent_patches_collide(&boxes[0], &boxes[1], &all, &aid).await;
    doctor_checks_nats(dir.path());
    let on_b3 = before
        .iter()
        .find(|(_, (o, _))| o.as_deref() == Some("b3"))
        .map(|(s, _)| s.clone())
        .expect("box 3 runs a camera");
    let sdk = sdk_on_box_2(&boxes[1], &states[1], &on_b3, &hooks).await;
    let sdk_alert = sdk["alert_id"].as_str().expect("alert id").to_string();
    let (index, event) = (&sdk["index_id"], &sdk["event_id"]);
    let (index, event) = (
        index.as_str().expect("index"),
        event.as_str().expect("event"),
    );
    ws::across_boxes(&boxes[..2], (&on_b3, index, event), (&hooks, &sdk_alert)).await;
    asked_of_the_owner(&boxes[0], &boxes[2], &on_b3).await;
    the_stream_carried_alerts(&boxes).await;

    let (after, unsent) = power_cut(&mut boxes, (&states[2], &before), (&hooks, &sdk_alert)).await;
    full_site(&boxes[0], &states[0], &urls[0]).await;
    let watch = (&hooks, sdk_alert.as_str());
    nats_outages(&mut cluster, &mut boxes, (&states[0], &after), watch).await;
    let quiet = hooks.ids(&sdk_alert);
    hooks.next(&sdk_alert, &quiet, "once NATS was back").await;
    for a in [&aid, &sdk_alert] {
        let path = format!("alert/{a}/status");
        boxes[0]
            .ok("PATCH", &path, Some(json!({"action": "disable"})))
            .await;
    }
    boxes[2].restart(&states[2]);
    nothing_left(&boxes, &hooks, &unsent).await;
    drain_a_box(&boxes, (&hooks, &sdk_alert), &on_b3, &states[0]).await;
    in_flight_on_a_dying_box(&mut boxes, &sid, &iid, &eid).await;
    for b in &mut boxes {
        b.stop();
    }
}

/// Three boxes of capacity 3 on `cluster`: their state folders and processes.
fn start_boxes(dir: &Path, cluster: &Cluster) -> (Vec<PathBuf>, Vec<Proc>) {
    let ids = ["b1", "b2", "b3"];
    let states = ids.iter().map(|id| dir.join(id)).collect();
    let boxes = ids
        .iter()
        .map(|id| {
            let (config, state) = box_config(dir, (id, 3), cluster, "[recording]\nenabled = false");
            Proc::start(&config, &state)
        })
        .collect();
    (states, boxes)
}

/// Adds the cameras through the boxes in turn; a box takes catalog writes
/// once it has joined the site (503 before).
async fn add_cameras(boxes: &[Proc], urls: &[String]) {
    for (i, url) in urls.iter().enumerate() {
        let body = json!({"url": url, "name": format!("cam {i}"), "sample_rate": 1});
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (code, v) = boxes[i % boxes.len()]
                .call("POST", "rtstream", Some(body.clone()))
                .await;
            if code == 200 {
                break;
            }
            assert!(
                code == 503 && Instant::now() < deadline,
                "POST rtstream: {code} {v}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// An index made on box 1 and an event on box 2 are seen by box 3, which
/// wires an alert with them to `hook`. Returns (index, event, alert).
async fn rules_across_boxes(boxes: &[Proc], sid: &str, hook: &str) -> (String, String, String) {
    let body = json!({"extraction_type": "time", "extraction_config": {"time": 2, "frame_count": 1}, "name": "v"});
    let ix = boxes[0]
        .ok("POST", &format!("rtstream/{sid}/index/scene"), Some(body))
        .await;
    let iid = ix["rtstream_index_id"]
        .as_str()
        .expect("index id")
        .to_string();
    let event = json!({"event_prompt": "Detect person", "label": "person"});
    let ev = boxes[1].ok("POST", "rtstream/event", Some(event)).await;
    let eid = ev["event_id"].as_str().expect("event id").to_string();
    let deadline = Instant::now() + Duration::from_secs(5);
    let path = format!("rtstream/{sid}/index/{iid}/alert");
    loop {
        let body = json!({"event_id": eid, "callback_url": hook});
        let (code, a) = boxes[2].call("POST", &path, Some(body)).await;
        if code == 200 {
            let aid = a["data"]["alert_id"]
                .as_str()
                .expect("alert id")
                .to_string();
            return (iid, eid, aid);
        }
        assert!(
            Instant::now() < deadline,
            "box 3 never saw the index and event made on boxes 1 and 2: {a}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A power cut on box 3: its cameras run on boxes 1 and 2 (capacity 3
/// each) within 15 s, the others stay put, and its camera's next
/// occurrence is delivered. Returns the placement after, and the messages
/// box 3 had committed and not yet handed to the site.
async fn power_cut(
    boxes: &mut [Proc],
    (b3_state, before): (&Path, &BTreeMap<String, (Option<String>, bool)>),
    (hooks, alert): (&Hooks, &str),
) -> (BTreeMap<String, (Option<String>, bool)>, Vec<String>) {
    boxes[2].kill();
    let unsent = outbox_rows(b3_state);
    let before_kill = hooks.ids(alert);
    let survivors: Vec<&Proc> = boxes[..2].iter().collect();
    let (after, took) = settled(&survivors, &["b1", "b2"], 3, Duration::from_secs(60)).await;
    eprintln!("box 3 killed: its cameras up on boxes 1 and 2 after {took:?}");
    for (s, (owner, _)) in before {
        if owner.as_deref() != Some("b3") {
            assert_eq!(&after[s].0, owner, "{s} moved though its box lived");
        }
    }
    assert!(
        took <= Duration::from_secs(15),
        "failover took {took:?}, more than 15 s"
    );
    let what = "from the camera box 3 ran, after its death";
    let next = hooks.next(alert, &before_kill, what).await;
    eprintln!("after box 3 died, its camera's next occurrence arrived: {next}");
    (after, unsent)
}

/// `sightline fleet drain` on the box running the SDK alert's camera: its
/// cameras move to the other two (each keeps running until another box
/// has it), the camera's next occurrence arrives, and `undrain` lets the
/// box take cameras again.
async fn drain_a_box(boxes: &[Proc], (hooks, alert): (&Hooks, &str), stream: &str, key: &Path) {
    let ids = ["b1", "b2", "b3"];
    let all: Vec<&Proc> = boxes.iter().collect();
    let (placed, t) = settled(&all, &ids, 2, Duration::from_secs(120)).await;
    eprintln!("box 3 back: two cameras each again after {t:?}");
    let owner = placed[stream].0.clone().expect("the camera's owner");
    let path = format!("alert/{alert}/status");
    boxes[0]
        .ok("PATCH", &path, Some(json!({"action": "enable"})))
        .await;
    let cli = |verb: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sightline"))
            .args(["fleet", verb, &owner, "--api", &boxes[0].base, "--key-file"])
            .arg(key.join("api-key"))
            .output()
            .expect("sightline fleet");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "fleet {verb} {owner}: {text}");
    };
    let seen = hooks.ids(alert);
    cli("drain");
    let others: Vec<&str> = ids.into_iter().filter(|b| *b != owner).collect();
    let (_, t) = settled(&all, &others, 3, Duration::from_secs(30)).await;
    eprintln!("{owner} drained: its cameras up on {others:?} after {t:?}");
    let report = boxes[0].ok("GET", "fleet", None).await;
    let drained = report["boxes"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["box_id"] == json!(owner)))
        .map(|b| b["draining"].clone());
    assert_eq!(drained, Some(json!(true)), "{report}");
    hooks
        .next(alert, &seen, "after its camera's box was drained")
        .await;
    cli("undrain");
    let (_, t) = settled(&all, &ids, 2, Duration::from_secs(120)).await;
    eprintln!("{owner} undrained: two cameras each again after {t:?}");
}

/// Box 1's console, in headless Chromium: its Cameras page lists the six
/// cameras of the site, each with the box that runs it.
async fn console_lists_the_site(b1: &Proc, placed: &BTreeMap<String, (Option<String>, bool)>) {
    let steps = browser(b1, "fleet_cameras.mjs", &[&CAMERAS.to_string()]).await;
    let step = |name: &str| steps.iter().find(|s| s["step"] == name).cloned();
    let cards = step("cameras").expect("the cameras step");
    for (stream, (owner, _)) in placed {
        let card = cards["cards"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["stream"] == json!(stream)))
            .unwrap_or_else(|| panic!("no card for {stream}: {cards}"));
        assert_eq!(card["box"], json!(owner), "{card}");
        assert_eq!(card["shown"], json!(owner), "{card}");
        assert_eq!(card["state"], "up", "its box says it is up: {card}");
    }
    assert_eq!(
        cards["overflow"],
        json!(0),
        "the phone view scrolls sideways"
    );
    eprintln!(
        "console: box 1's Cameras page lists the site (screenshots in target/test-artifacts)"
    );
}

/// Runs the browser script `tests/browser/<script>` against box `b` (its
/// base, key and the screenshot folder, then `more`); returns its steps,
/// after checking it finished without browser errors.
async fn browser(b: &Proc, script: &str, more: &[&str]) -> Vec<Value> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shots = root.join("target/test-artifacts");
    std::fs::create_dir_all(&shots).expect("artifact dir");
    let out = tokio::process::Command::new("node")
        .arg(root.join("tests/browser").join(script))
        .args([&b.base, &b.key, &shots.display().to_string()])
        .args(more)
        .env("SIGHTLINE_PLAYWRIGHT", common::playwright())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), out)
        .await
        .expect("the browser script ends within 2 minutes")
        .expect("node runs (scripts/setup --test installs it)");
    let steps: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let step = |name: &str| steps.iter().find(|s| s["step"] == name).cloned();
    let done = step("done").unwrap_or_else(|| {
        panic!(
            "the browser script failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(done["errors"], json!([]), "browser errors in {script}");
    steps
}

/// A search and a backtest of box 3's camera sent to box 1 are answered
/// by box 3 (over NATS), exactly as box 3 answers them itself.
async fn asked_of_the_owner(b1: &Proc, b3: &Proc, stream: &str) {
    let calls = [
        ("search", json!({"query": "a person walking"})),
        ("backtest", json!({"event_prompt": "a person walking"})),
    ];
    for (what, body) in calls {
        let path = format!("rtstream/{stream}/{what}");
        let via_b1 = b1.call("POST", &path, Some(body.clone())).await;
        let at_b3 = b3.call("POST", &path, Some(body)).await;
        assert_eq!(
            via_b1, at_b3,
            "{what} through box 1 differs from box 3's own answer"
        );
    }
    let answered = b3.ok("GET", "fleet", None).await["counters"]["answered"].clone();
    assert_eq!(answered, json!(2), "box 3 answered box 1's two requests");
    eprintln!("search and backtest through box 1 answered by box 3");
}

/// The streams `box_` lists as up.
async fn up_on(box_: &Proc) -> Vec<String> {
    let p = placement(box_).await;
    p.into_iter()
        .filter(|(_, (_, up))| *up)
        .map(|(s, _)| s)
        .collect()
}

/// One NATS server down: the site still takes changes. Two down (quorum
/// lost): the boxes keep their cameras, and box 1 restarted meanwhile runs
/// its last known cameras. The servers back: the site settles again.
async fn nats_outages(
    cluster: &mut Cluster,
    boxes: &mut [Proc],
    (b1_state, placed): (&Path, &BTreeMap<String, (Option<String>, bool)>),
    (hooks, alert): (&Hooks, &str),
) {
    cluster.servers[0].kill();
    let deadline = Instant::now() + Duration::from_secs(20);
    let sid = placed.keys().next().expect("a stream").clone();
    loop {
        let (code, v) = boxes[1]
            .call(
                "PATCH",
                &format!("rtstream/{sid}"),
                Some(json!({"sample_rate": 2})),
            )
            .await;
        if code == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "one NATS server of three down: {code} {v}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let seen = hooks.ids(alert);
    let id = hooks.next(alert, &seen, "with one NATS server down").await;
    eprintln!("one NATS server of three down: alerts still delivered ({id})");
    cluster.servers[1].kill();
    let mine: Vec<String> = placed
        .iter()
        .filter(|(_, (o, _))| o.as_deref() == Some("b1"))
        .map(|(s, _)| s.clone())
        .collect();
    boxes[0].kill();
    boxes[0].restart(b1_state);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let up = up_on(&boxes[0]).await;
        if mine.iter().all(|s| up.contains(s)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "box 1, restarted without NATS quorum, runs {up:?}, not its last cameras {mine:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Box 2 keeps its cameras. They are read until all are up at once: the
    // served clip loops, and two cameras started together reconnect
    // together, so one look can fall in that second.
    let theirs: Vec<&String> = placed
        .iter()
        .filter(|(_, (o, _))| o.as_deref() == Some("b2"))
        .map(|(s, _)| s)
        .collect();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let up = up_on(&boxes[1]).await;
        if theirs.iter().all(|s| up.contains(s)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "box 2 dropped some of {theirs:?} without quorum: up {up:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let seen = hooks.ids(alert);
    let id = hooks.next(alert, &seen, "while NATS had no quorum").await;
    eprintln!("NATS quorum lost: the boxes still deliver from their outboxes ({id})");
    cluster.servers[0].restart().expect("NATS server 1 back");
    cluster.servers[1].restart().expect("NATS server 2 back");
    let both: Vec<&Proc> = boxes[..2].iter().collect();
    let (back, t) = settled(&both, &["b1", "b2"], 3, Duration::from_secs(60)).await;
    eprintln!("NATS back: the site settled again after {t:?}");
    // Cameras changing boxes once the servers are back is counted, not
    // refused: when the outage outlasts the leases, the boxes claim again
    // and one fresh-clone run saw two cameras swap boxes (docs/FLEET.md).
    let moved: Vec<&String> = placed
        .iter()
        .filter(|(s, (o, _))| &back[*s].0 != o)
        .map(|(s, _)| s)
        .collect();
    eprintln!(
        "NATS back: {} camera(s) changed boxes: {moved:?}",
        moved.len()
    );
}

/// Boxes 1 and 2 are full (3 + 3): a seventh camera fits nowhere and is
/// reported, not dropped; `GET fleet` and `sightline fleet status` say so.
async fn full_site(b1: &Proc, b1_state: &Path, url: &str) {
    let extra = b1
        .ok(
            "POST",
            "rtstream",
            Some(json!({"url": url, "name": "one too many"})),
        )
        .await;
    let id = extra["id"].as_str().expect("stream id").to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    let report = loop {
        let r = b1.ok("GET", "fleet", None).await;
        if r["unplaced"]
            .as_array()
            .is_some_and(|u| u.iter().any(|s| s == &json!(id)))
        {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "the seventh camera is not reported: {r}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        report["boxes"].as_array().map(Vec::len),
        Some(2),
        "{report}"
    );
    assert_eq!(report["nats"]["connected"], true);
    assert_eq!(
        placement(b1).await[&id].0,
        None,
        "an unplaced camera has no owner"
    );
    let metrics = b1.text("metrics").await;
    for line in [
        "sightline_fleet_unplaced_streams 1",
        "sightline_fleet_boxes 2",
        "sightline_fleet_nats_connected 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "metrics lack {line:?}");
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sightline"))
        .args(["fleet", "status", "--api", &b1.base, "--key-file"])
        .arg(b1_state.join("api-key"))
        .output()
        .expect("sightline fleet status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for want in ["site lab", "b1", "b2", "fit on no box", id.as_str()] {
        assert!(text.contains(want), "fleet status lacks {want:?}:\n{text}");
    }
    b1.ok("DELETE", &format!("rtstream/{id}"), None).await;
}

/// Without `[fleet]` a box is on its own: no site in its status, `GET
/// fleet` says so, and its streams carry no owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_box_without_a_fleet_section_is_on_its_own() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = common::daemon::Daemon::start(dir.path(), "").await;
    let status = d.ok("GET", "status", None).await;
    assert!(status["fleet"].is_null(), "{}", status["fleet"]);
    let (code, v) = d.call("GET", "fleet", None).await;
    assert_eq!(code, 404, "{v}");
    assert!(
        v["message"].as_str().is_some_and(|m| m.contains("[fleet]")),
        "{v}"
    );
    d.stop().await;
}

/// VideoDB's SDK, unmodified, pointed at box 2, wires an alert on a camera
/// box 3 runs; box 3 detects the person and the webhook arrives through the
/// site's stream. Returns the alert id.
async fn sdk_on_box_2(b2: &Proc, b2_state: &Path, stream: &str, hooks: &Hooks) -> Value {
    let python = PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
        .join(".cache/sightline/sdk-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup --test",
        python.display()
    );
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/fleet_alert.py");
    let out = tokio::process::Command::new(&python)
        .arg(&script)
        .env("SIGHTLINE_URL", &b2.base)
        .env("SIGHTLINE_KEY_FILE", b2_state.join("api-key"))
        .env("STREAM_ID", stream)
        .env("HOOK_URL", &hooks.url)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(150), out)
        .await
        .expect("the SDK script ends within 150 s")
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "SDK through box 2 on a box 3 camera:\n{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout.lines().last().unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(line).expect("the script's JSON line");
    let alert = v["alert_id"].as_str().expect("alert id").to_string();
    let first = hooks
        .next(&alert, &BTreeSet::new(), "for the alert the SDK made")
        .await;
    eprintln!("SDK on box 2, camera on box 3: alert {alert}, webhook {first}");
    v
}

/// `sightline doctor` signs in to the site's NATS with the box's
/// credentials, and says FAIL with a wrong password.
fn doctor_checks_nats(dir: &Path) {
    let doctor = |config: &Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sightline"))
            .args(["doctor", "--config"])
            .arg(config)
            .output()
            .expect("sightline doctor");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let good = doctor(&dir.join("b1.toml"));
    assert!(
        good.lines().any(|l| l.starts_with("ok    fleet (NATS)")),
        "{good}"
    );
    let bad_creds = dir.join("wrong-credentials");
    std::fs::write(&bad_creds, "site:not-the-password\n").expect("written");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&bad_creds, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let text = std::fs::read_to_string(dir.join("b1.toml")).expect("b1 config");
    let creds = dir.join("nats-credentials").display().to_string();
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, text.replace(&creds, &bad_creds.display().to_string())).expect("written");
    let refused = doctor(&bad);
    assert!(
        refused.lines().any(|l| l.starts_with("FAIL  fleet (NATS)")),
        "{refused}"
    );
}
