//! Evidence end to end on real parts: a real RTSP server plays the
//! ground-truth clip (0–10 s coffee, 10–20 s pedestrians, 20–30 s a cat),
//! the daemon records it (no decoding), detects the people and sends
//! `start`, `end` and `clip_ready` to a real webhook receiver and a real
//! mosquitto. The snapshot is decoded and must show a red box; the clip's
//! HLS playlist and MP4 are played to their end by GStreamer, and their
//! first frames must be the coffee scene (pre-roll before the onset).
//! Media URLs work without the API key and refuse anything not signed.

use crate::common;

use std::time::Duration;

use common::daemon::Daemon;
use common::receiver::Receiver;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use serde_json::Value;
use sightline::tools::rtsp_server::RtspServer;

/// Decoded frames of a URI as small grey images, with their timestamps.
struct Played {
    frames: Vec<(f64, Vec<u8>)>,
}

impl Played {
    fn duration(&self) -> f64 {
        match (self.frames.first(), self.frames.last()) {
            (Some(a), Some(b)) => b.0 - a.0 + 0.1,
            _ => 0.0,
        }
    }
}

/// Plays `source` (a launch-line source part) to its end through a decoder.
fn play(source: &str) -> Played {
    gst::init().expect("gstreamer");
    let line = format!(
        "{source} ! decodebin ! videoconvert ! videoscale ! video/x-raw,format=GRAY8,width=32,height=24 ! \
         appsink name=s sync=false"
    );
    let p = gst::parse::launch(&line)
        .expect("pipeline")
        .downcast::<gst::Pipeline>()
        .expect("a pipeline");
    let sink = p
        .by_name("s")
        .expect("sink")
        .downcast::<gst_app::AppSink>()
        .expect("appsink");
    p.set_state(gst::State::Playing).expect("plays");
    let mut frames = Vec::new();
    // A live playlist would never end: give up after a minute.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_seconds(5)) {
        if std::time::Instant::now() > deadline {
            break;
        }
        let Some(buf) = sample.buffer() else { continue };
        let t = buf.pts().map_or(0.0, |t| t.nseconds() as f64 / 1e9);
        let map = buf.map_readable().expect("readable");
        frames.push((t, map.as_slice().to_vec()));
    }
    let bus = p.bus().expect("bus");
    let err = bus.timed_pop_filtered(
        gst::ClockTime::from_mseconds(100),
        &[gst::MessageType::Error],
    );
    assert!(err.is_none(), "playing {source} failed: {err:?}");
    let _ = p.set_state(gst::State::Null);
    Played { frames }
}

fn frame_at(clip: &str, secs: f64) -> Vec<u8> {
    let played = play(&format!("filesrc location={clip}"));
    played
        .frames
        .iter()
        .find(|(t, _)| *t >= secs)
        .map(|(_, f)| f.clone())
        .expect("a frame at that time")
}

fn distance(a: &[u8], b: &[u8]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).abs())
        .sum::<f64>()
        / a.len() as f64
}

fn red_pixels(jpeg: &[u8]) -> usize {
    let img = image::load_from_memory(jpeg).expect("a JPEG").to_rgb8();
    img.pixels()
        .filter(|p| p[0] > 200 && p[1] < 60 && p[2] < 60)
        .count()
}

async fn wait_for(hook: &mut Receiver, phase: &str, secs: u64, seen: &mut Vec<Value>) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(m) = seen.iter().find(|m| m["phase"] == phase) {
            return m.clone();
        }
        match tokio::time::timeout_at(deadline, hook.rx.recv()).await {
            Ok(Some(r)) => seen.push(r.body),
            _ => panic!("no {phase} message within {secs} s; got {seen:?}"),
        }
    }
}

async fn get(url: &str) -> (u16, Vec<u8>) {
    let r = reqwest::get(url).await.expect("the media server answers");
    let code = r.status().as_u16();
    (code, r.bytes().await.expect("a body").to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_occurrence_carries_a_snapshot_a_clip_and_a_player() {
    let broker = common::Mosquitto::start();
    let mut mqtt_rx = common::subscribe(broker.port, "sightline/#").await;
    let clip = common::media("ground_truth.mp4");
    let server = RtspServer::serve_files(0, &[("gt", &clip)]).expect("rtsp server");
    let mut hook = Receiver::start().await.expect("receiver");
    let dir = tempfile::tempdir().expect("temp dir");
    let extra = format!(
        r#"
[[streams]]
id = "yard"
url = "{url}"
fps = 2

[[events]]
id = "person"
prompt = "Detect person"
label = "person_alert"

[[alerts]]
id = "yard-person"
event = "person"
callback_url = "{callback}"

[mqtt]
port = {port}
client_id = "sightline-evidence-{pid}"

[recording]
segment_secs = 2
pre_secs = 5
post_secs = 5
min_free_mb = 1
"#,
        url = server.url("gt"),
        callback = hook.url(),
        port = broker.port,
        pid = std::process::id(),
    );
    let d = Daemon::start(dir.path(), &extra).await;
    let mut seen = Vec::new();
    let start = wait_for(&mut hook, "start", 40, &mut seen).await;
    let end = wait_for(&mut hook, "end", 40, &mut seen).await;
    let ready = wait_for(&mut hook, "clip_ready", 40, &mut seen).await;

    // The start message already links to the evidence.
    for key in ["snapshot_url", "stream_url", "clip_url", "player_url"] {
        assert!(
            start[key]
                .as_str()
                .is_some_and(|u| u.contains("/media/yard/")),
            "{key}: {start}"
        );
    }
    assert_eq!(start["camera_url"], server.url("gt"));
    // Recording rides on detection's camera session (no second one).
    let status = d.ok("GET", "status", None).await;
    assert_eq!(
        status["recording"]["streams"][0]["input"], "tap",
        "{status}"
    );
    let restarts = status["streams"][0]["health"]["restarts"]
        .as_u64()
        .expect("restarts");
    assert_eq!(server.clients() as u64, 1 + restarts, "{status}");
    assert_eq!(ready["occurrence_id"], start["occurrence_id"]);

    // Snapshot: a JPEG with a red box on the person; the clean one has none.
    let snap = end["snapshot_url"].as_str().expect("snapshot url");
    let (code, boxed) = get(snap).await;
    assert_eq!(code, 200, "the signed URL works without the API key");
    let (_, clean) = get(&format!("{snap}&boxes=false")).await;
    let (b, c) = (red_pixels(&boxed), red_pixels(&clean));
    assert!(
        b > c + 200,
        "a box is drawn: {b} red pixels vs {c} without boxes"
    );

    // HLS: played to its end by GStreamer's hlsdemux.
    let hls_url = ready["stream_url"]
        .as_str()
        .expect("stream url")
        .to_string();
    let (_, playlist) = get(&hls_url).await;
    let playlist = String::from_utf8(playlist).expect("text");
    assert!(playlist.contains("#EXT-X-ENDLIST"), "{playlist}");
    let listed: f64 = playlist
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .filter_map(|l| l.trim_end_matches(',').parse::<f64>().ok())
        .sum();
    let asked =
        end["end_time"].as_f64().expect("end") - end["start_time"].as_f64().expect("start") + 10.0;
    assert!(
        listed >= asked - 1.0 && listed <= asked + 5.0,
        "listed {listed:.1} s for {asked:.1} s asked"
    );
    let hls = tokio::task::spawn_blocking(move || {
        play(&format!("souphttpsrc location=\"{hls_url}\" ! hlsdemux"))
    })
    .await
    .expect("played");
    eprintln!(
        "evidence: occurrence {}-{} s, playlist {listed:.2} s, HLS played {:.2} s ({} frames), red px {b} vs {c}",
        end["start_time"], end["end_time"], hls.duration(), hls.frames.len()
    );
    assert!(
        (hls.duration() - listed).abs() <= 1.0,
        "played {:.1} s of {listed:.1} s",
        hls.duration()
    );
    // Pre-roll: the clip opens on the coffee scene, before anyone appears.
    let path = clip.to_string_lossy().to_string();
    let (coffee, people) =
        tokio::task::spawn_blocking(move || (frame_at(&path, 5.0), frame_at(&path, 15.0)))
            .await
            .expect("reference frames");
    let first = &hls.frames[0].1;
    eprintln!(
        "evidence: first frame is {:.1} from coffee, {:.1} from people",
        distance(first, &coffee),
        distance(first, &people)
    );
    assert!(
        distance(first, &coffee) < distance(first, &people),
        "the first frame is the scene before the onset"
    );

    // MP4: the same span, remuxed, plays too.
    let mp4_url = ready["clip_url"].as_str().expect("clip url").to_string();
    let mp4 =
        tokio::task::spawn_blocking(move || play(&format!("souphttpsrc location=\"{mp4_url}\"")))
            .await
            .expect("played");
    eprintln!(
        "evidence: MP4 played {:.2} s ({} frames)",
        mp4.duration(),
        mp4.frames.len()
    );
    assert!(
        (mp4.duration() - hls.duration()).abs() <= 2.1,
        "mp4 {:.1} s, hls {:.1} s",
        mp4.duration(),
        hls.duration()
    );

    // The same three messages over MQTT, and the retained snapshot.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mqtt = common::drain(&mut mqtt_rx);
    let snapshot = mqtt
        .iter()
        .rfind(|m| m.topic == "sightline/yard/person_alert/snapshot")
        .expect("a snapshot over MQTT");
    assert!(snapshot.raw_bytes.starts_with(&[0xff, 0xd8]), "a JPEG");
    let phases: Vec<String> = mqtt
        .iter()
        .filter(|m| m.topic.starts_with("sightline/yard/"))
        .map(|m| m.body["phase"].as_str().unwrap_or_default().to_string())
        .collect();
    for p in ["start", "end", "clip_ready"] {
        assert!(phases.iter().any(|x| x == p), "{p} over MQTT: {phases:?}");
    }

    // Recordings are listed; the SDK-shaped span route gives playable links.
    let rec = d.ok("GET", "rtstream/yard/recordings", None).await;
    assert!(
        !rec["recordings"].as_array().expect("ranges").is_empty(),
        "{rec}"
    );
    refuses_what_is_not_signed(&d, snap).await;
    plays_in_a_browser(
        ready["player_url"].as_str().expect("player url"),
        "player-desktop",
        (1280, 800),
    )
    .await;
    plays_in_a_browser(
        ready["player_url"].as_str().expect("player url"),
        "player-phone",
        (390, 844),
    )
    .await;
    let artifacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    let _ = std::fs::create_dir_all(&artifacts);
    let _ = std::fs::write(artifacts.join("evidence-snapshot.jpg"), &boxed);
    if let Ok(img) = image::load_from_memory(&boxed) {
        let _ = img.save(artifacts.join("evidence-snapshot.png"));
    }
    d.stop().await;
}

/// A GET sent as raw bytes, so the path reaches the server exactly as
/// written (HTTP clients resolve `..` themselves). Returns status and body.
async fn raw_get(origin: &str, path: &str) -> (u16, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = origin.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(host)
        .await
        .expect("connects");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("sends");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out).to_string();
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or(String::new(), |b| b.1.to_string());
    (code, body.into_bytes())
}

/// Unsigned, tampered, expired and path-traversal URLs get 403 and no bytes.
async fn refuses_what_is_not_signed(d: &Daemon, snap: &str) {
    let (base, query) = snap.split_once('?').expect("a signed URL has a query");
    let at = base.find("/media/").expect("media path");
    let (origin, path) = (&base[..at], &base[at..]);
    let signer = sightline::record::Signer::from_api_key(&d.key);
    let forever = i64::MAX / 2;
    let cases = [
        ("unsigned", path.to_string()),
        (
            "tampered",
            format!("{path}?{}", query.replace("sig=", "sig=0")),
        ),
        (
            "other path",
            format!("{}?{query}", path.replace("snapshot.jpg", "clip.mp4")),
        ),
        ("expired", signer.signed(path, 1_000_000_000)),
        (
            "traversal",
            signer.signed("/media/../../snapshot.jpg", forever),
        ),
        (
            "encoded traversal",
            signer.signed("/media/%2E%2E/%2E%2E/snapshot.jpg", forever),
        ),
        (
            "segment traversal",
            signer.signed("/media/yard/seg/..%2F..%2Fstate.sqlite3", forever),
        ),
    ];
    for (what, p) in cases {
        let (code, body) = raw_get(origin, &p).await;
        assert_eq!(code, 403, "{what}: {p}");
        assert!(!body.starts_with(&[0xff, 0xd8]), "{what}: no image bytes");
        assert!(
            !String::from_utf8_lossy(&body).contains("SQLite"),
            "{what}: no file"
        );
    }
}

async fn recording_status(d: &Daemon) -> Value {
    d.ok("GET", "status", None).await["recording"].clone()
}

/// The recording directory is a full filesystem: detection and delivery go
/// on, `GET status` says recording is paused, and it resumes once space is
/// freed. This stream records a `record_url` (a session of its own); the
/// other test records through detection's tap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_pauses_recording_and_nothing_else() {
    let clip = common::media("ground_truth.mp4");
    // The camera's substream for detection and its main stream for
    // recording, as NVRs are set up (here, the same clip twice).
    let server = RtspServer::serve_files(0, &[("gt", &clip), ("main", &clip)]).expect("rtsp");
    let mut hook = Receiver::start().await.expect("receiver");
    let dir = tempfile::tempdir().expect("temp dir");
    let rec = dir.path().join("rec");
    let _disk = common::Tmpfs::mount(&rec, "4m");
    // Leave less than min_free_mb (1 MB) free.
    let free = sightline::store::space::free_bytes(&rec).expect("statvfs");
    std::fs::write(rec.join("filler"), vec![7u8; (free - 300_000) as usize]).expect("fill");
    let extra = format!(
        r#"
[[streams]]
id = "yard"
url = "{url}"
record_url = "{main}"
fps = 2

[[events]]
id = "person"
prompt = "Detect person"

[[alerts]]
id = "yard-person"
event = "person"
callback_url = "{callback}"

[recording]
dir = "{rec}"
min_free_mb = 1
"#,
        url = server.url("gt"),
        main = server.url("main"),
        callback = hook.url(),
        rec = rec.display(),
    );
    let d = Daemon::start(dir.path(), &extra).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while recording_status(&d).await["paused"] != true {
        assert!(
            tokio::time::Instant::now() < deadline,
            "recording never said it was paused"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let status = recording_status(&d).await;
    assert!(
        status["streams"][0]["paused"]
            .as_str()
            .is_some_and(|p| p.contains("disk full")),
        "{status}"
    );
    // Detection and delivery go on.
    let mut seen = Vec::new();
    let start = wait_for(&mut hook, "start", 40, &mut seen).await;
    assert_eq!(start["event_id"], "person");

    // Space comes back: recording resumes and writes segments.
    std::fs::remove_file(rec.join("filler")).expect("free the space");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let segments = || {
        std::fs::read_dir(rec.join("yard"))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".ts"))
                    .count()
            })
            .unwrap_or(0)
    };
    while recording_status(&d).await["paused"] != false || segments() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "recording did not resume"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // It records the main stream, on a session of its own.
    let status = recording_status(&d).await;
    assert_eq!(status["streams"][0]["input"], "record_url", "{status}");
    assert!(server.clients() >= 2, "{} RTSP sessions", server.clients());
    d.stop().await;
}

/// Opens the player page in headless Chromium (tests/browser/player.mjs):
/// every request stays on 127.0.0.1, the video gets ready and plays 2 s,
/// and a screenshot is saved under target/test-artifacts.
async fn plays_in_a_browser(url: &str, name: &str, (w, h): (u32, u32)) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let shot = root.join(format!("target/test-artifacts/{name}.png"));
    let _ = std::fs::create_dir_all(shot.parent().expect("parent"));
    let out = tokio::process::Command::new("node")
        .arg(root.join("tests/browser/player.mjs"))
        .args([url, &shot.to_string_lossy(), &w.to_string(), &h.to_string()])
        .env("SIGHTLINE_PLAYWRIGHT", common::playwright())
        .output()
        .await
        .expect("node runs (scripts/setup --test installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    let seen: Value =
        serde_json::from_str(text.lines().last().unwrap_or("{}")).unwrap_or_else(|_| {
            panic!(
                "no result from the browser: {text} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    eprintln!("evidence: browser {name}: {seen}");
    assert!(
        seen["errors"].as_array().is_some_and(|e| e.is_empty()),
        "browser errors: {seen}"
    );
    for r in seen["requests"].as_array().expect("requests") {
        let r = r.as_str().unwrap_or_default();
        assert!(
            r.starts_with("http://127.0.0.1:"),
            "a request left 127.0.0.1: {r}"
        );
    }
    assert!(seen["readyState"].as_u64() >= Some(3), "{seen}");
    assert!(seen["played"].as_f64() >= Some(2.0), "{seen}");
    assert_eq!(seen["label"], "person_alert");
    assert!(shot.is_file(), "screenshot saved");
}
