//! The recording budget holds on real parts: a real RTSP server plays the
//! ground-truth clip (pedestrians at 10–20 s of each 30 s pass) to one
//! recorded camera with a 3 MB budget. One event's occurrence never ends
//! (it needs 1,000 quiet frames, over 8 minutes, to end), another's ends every pass, so
//! kept clips alone soon exceed the budget. The folder (segments,
//! snapshots, MP4s) is measured every 200 ms; the oldest clip's links must
//! answer 410 Gone with the reason; the newest occurrence's clip must play.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::daemon::Daemon;
use common::receiver::Receiver;
use serde_json::Value;
use sightline::tools::rtsp_server::RtspServer;

const BUDGET: u64 = 3_000_000;

/// Bytes of every file under `dir`, and the largest segment.
fn folder(dir: &Path) -> (u64, u64) {
    let (mut total, mut largest) = (0, 0);
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                todo.push(e.path());
            } else {
                total += meta.len();
                if e.path().extension().is_some_and(|x| x == "ts") {
                    largest = largest.max(meta.len());
                }
            }
        }
    }
    (total, largest)
}

async fn occurrences(d: &Daemon) -> Vec<Value> {
    let v = d.ok("GET", "occurrences?limit=100", None).await;
    v["occurrences"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_holds_and_the_oldest_evidence_gives_way() {
    let clip = common::media("ground_truth.mp4");
    let server = RtspServer::serve_files(0, &[("gt", &clip)]).expect("rtsp server");
    let mut hook = Receiver::start().await.expect("receiver");
    let dir = tempfile::tempdir().expect("temp dir");
    let rec = dir.path().join("rec");
    let extra = format!(
        r#"
[[streams]]
id = "yard"
url = "{url}"
fps = 2

[[events]]
id = "passing"
prompt = "Detect person"
label = "passing"
cooldown_secs = 1

[[events]]
id = "staying"
prompt = "Detect person"
label = "staying"
end_after = 1000
max_duration_secs = 86400

[[alerts]]
id = "passing"
event = "passing"
callback_url = "{hook}"

[[alerts]]
id = "staying"
event = "staying"
callback_url = "{hook}"

[recording]
dir = "{rec}"
segment_secs = 2
pre_secs = 2
post_secs = 2
max_gb = {gb}
min_free_mb = 1
"#,
        url = server.url("gt"),
        hook = hook.url(),
        rec = rec.display(),
        gb = BUDGET as f64 / 1e9,
    );
    let d = Daemon::start(dir.path(), &extra).await;
    // Measure until two "passing" occurrences have ended and the folder
    // has been at the budget for a while.
    let (mut peak, mut largest, mut ended) = (0u64, 0u64, 0);
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut full_since: Option<Instant> = None;
    while ended < 2 || full_since.is_none_or(|t| t.elapsed() < Duration::from_secs(20)) {
        assert!(Instant::now() < deadline, "ended {ended}, peak {peak}");
        while let Ok(r) = hook.rx.try_recv() {
            ended += usize::from(r.body["phase"] == "end" && r.body["label"] == "passing");
        }
        let (total, big) = folder(&rec);
        (peak, largest) = (peak.max(total), largest.max(big));
        if total > BUDGET * 8 / 10 && full_since.is_none() {
            full_since = Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        peak <= BUDGET + largest + 100_000,
        "the folder reached {peak} bytes for a budget of {BUDGET} (+ one segment, {largest}, and a snapshot)"
    );

    let all = occurrences(&d).await;
    let expired: Vec<&Value> = all.iter().filter(|o| o["expired"].is_string()).collect();
    let oldest = expired
        .last()
        .unwrap_or_else(|| panic!("no clip expired: {all:?}"));
    assert_eq!(oldest["label"], "passing", "{oldest}");
    for key in ["clip_url", "stream_url", "player_url", "snapshot_url"] {
        let url = oldest[key].as_str().expect("a link");
        let r = reqwest::get(url).await.expect("media answers");
        assert_eq!(r.status().as_u16(), 410, "{key} of an expired clip");
        let body = r.text().await.unwrap_or_default();
        assert!(body.contains("budget"), "410 says why: {body}");
    }
    // The running occurrence never expires, and the newest clip plays.
    let staying = all
        .iter()
        .find(|o| o["label"] == "staying")
        .expect("staying");
    assert!(
        staying["expired"].is_null() && staying["end_ms"].is_null(),
        "{staying}"
    );
    let newest = &all[0];
    assert!(newest["expired"].is_null(), "{newest}");
    let playlist = reqwest::get(newest["stream_url"].as_str().expect("hls"))
        .await
        .expect("hls answers");
    assert_eq!(playlist.status().as_u16(), 200);
    let text = playlist.text().await.unwrap_or_default();
    assert!(
        text.contains("/seg/"),
        "the newest clip lists its segments: {text}"
    );
    let mp4 = reqwest::get(newest["clip_url"].as_str().expect("mp4"))
        .await
        .expect("mp4 answers");
    assert_eq!(mp4.status().as_u16(), 200);
    let bytes = mp4.bytes().await.expect("mp4 body");
    assert!(
        bytes.len() > 10_000 && &bytes[4..8] == b"ftyp",
        "an MP4: {} bytes",
        bytes.len()
    );

    // Snapshots count: the status's figure includes the evidence folder.
    // Recording goes on and a sweep may run between the two looks (the
    // MP4 fetched above lands in the folder, the next sweep takes the
    // oldest clip away), so the figure must fall between the folder's
    // sizes just before and just after it was asked for.
    let (before, _) = folder(&rec);
    let status = d.ok("GET", "status", None).await;
    let (after, _) = folder(&rec);
    let budget = &status["recording"]["budget"];
    assert_eq!(budget["max_bytes"], BUDGET, "{budget}");
    let used = budget["used_bytes"].as_u64().expect("used");
    let (low, high) = (before.min(after), before.max(after));
    assert!(
        used + 300_000 >= low && used <= high + 300_000,
        "status {used} vs folder {before} before and {after} after"
    );
    assert!(
        budget["warning"]
            .as_str()
            .is_some_and(|w| w.contains("clip_days")),
        "3 MB cannot hold 7 days: {budget}"
    );
    d.stop().await;
}
