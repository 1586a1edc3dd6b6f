//! True onsets through a cooldown, on real parts: a clip built from the real
//! ground-truth footage (8 s of a still, then 8 s of real pedestrians, four
//! times over) played by a real RTSP server, the default person detector
//! through ONNX Runtime, alerts to a real HTTP receiver.
//!
//! With the default 10 s cooldown, each occurrence after the first begins
//! while the previous one's cooldown still runs. The start message has to
//! wait for the cooldown, but its `start_time` must still be the moment the
//! person appeared; `decided_time` says when the message was decided.

mod common;

use std::time::Duration;

use common::daemon::Daemon;
use sightline::bench::{build_clip, Slot};
use sightline::demo::Receiver;
use sightline::rtsp_server::RtspServer;

/// People appear at these stream times (the clip is 64 s long).
const ONSETS: [f64; 4] = [8.0, 24.0, 40.0, 56.0];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onsets_inside_a_cooldown_keep_their_true_start_time() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clip = dir.path().join("every-16s.mp4");
    let plan = [(Slot::Still, 8), (Slot::Walking, 8)].repeat(ONSETS.len());
    build_clip(&common::media("ground_truth.mp4"), &plan, &clip).expect("clip");
    let server = RtspServer::serve_files(0, &[("cam", &clip)]).expect("rtsp server");
    let mut hook = Receiver::start().await.expect("receiver");
    // Default k-of-n and the default 10 s cooldown.
    let extra = format!(
        "[[streams]]\nid = \"cam\"\nurl = \"{}\"\nfps = 2\n\
         [[events]]\nid = \"person\"\nprompt = \"Detect person\"\n\
         [[alerts]]\nid = \"people\"\nevent = \"person\"\ncallback_url = \"{}\"\n\
         [recording]\nenabled = false\n",
        server.url("cam"),
        hook.url()
    );
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).expect("state dir");
    let d = Daemon::start(&state, &extra).await;
    // The last onset's message waits for the cooldown until about 60 s.
    tokio::time::sleep(Duration::from_secs(67)).await;
    d.stop().await;

    let starts: Vec<(f64, f64)> = common::drain(&mut hook.rx)
        .into_iter()
        .map(|r| r.body)
        .filter(|b| b["phase"] == "start")
        .map(|b| {
            let t = |k: &str| b[k].as_f64().unwrap_or_else(|| panic!("{k} in {b}"));
            (t("start_time"), t("decided_time"))
        })
        .filter(|(start, _)| *start < 64.0)
        .collect();
    eprintln!("(start_time, decided_time): {starts:?}");
    assert_eq!(
        starts.len(),
        ONSETS.len(),
        "one start per onset: {starts:?}"
    );
    for ((start, decided), truth) in starts.iter().zip(ONSETS) {
        assert!(
            (start - truth).abs() <= 1.0,
            "start_time {start} for the person who appeared at {truth}"
        );
        assert!(decided >= start, "decided {decided} before start {start}");
    }
    // The later onsets fell in a cooldown: their messages were held back
    // (decided seconds after the onset) while start_time stayed true.
    let held = starts.iter().filter(|(s, d)| d - s >= 2.0).count();
    assert!(held >= 2, "cooldown held back later starts: {starts:?}");
}
