//! Ingest on real pipelines: keyframe-only mode scores only keyframes, and
//! `file://` and `test:` sources deliver frames with rising stream times.

use crate::common;

use std::time::Duration;

use sightline::app::{self, Hooks};
use sightline::config::Config;
use sightline::domain::Scores;
use sightline::tools::rtsp_server::RtspServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyframe_only_mode_scores_only_keyframes() {
    // The clip has a keyframe every second (10 frames at 10 fps).
    let server =
        RtspServer::serve_files(0, &[("kf", &common::media("demo.mp4"))]).expect("rtsp server");
    let streams = format!(
        "[[streams]]\nid = \"kf\"\nurl = \"{}\"\nfps = 5\nkeyframes_only = true\n",
        server.url("kf")
    );
    let frames = common::scored_frames(&streams, 8).await;
    assert!(
        frames.len() >= 5,
        "about one keyframe per second: {}",
        frames.len()
    );
    assert!(
        frames.len() <= 9,
        "5 fps requested, but only keyframes pass: {}",
        frames.len()
    );
    for f in &frames {
        let off = (f.stream_secs - f.stream_secs.round()).abs();
        assert!(
            off < 0.02,
            "frame at {:.3} s is not on a keyframe",
            f.stream_secs
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_and_test_sources_deliver_frames_in_stream_time() {
    let streams = format!(
        "[[streams]]\nid = \"file\"\nurl = \"file://{}\"\nfps = 2\n\
         [[streams]]\nid = \"synthetic\"\nurl = \"test:ball\"\nfps = 2\n",
        common::media("demo.mp4").display()
    );
    let frames = common::scored_frames(&streams, 6).await;
    for id in ["file", "synthetic"] {
        let times: Vec<f64> = frames
            .iter()
            .filter(|f| f.stream_id.as_str() == id)
            .map(|f| f.stream_secs)
            .collect();
        assert!(times.len() >= 8, "{id}: about 2 fps for 6 s, got {times:?}");
        assert!(
            times.windows(2).all(|w| w[1] > w[0]),
            "{id}: stream time rises: {times:?}"
        );
        let gaps_ok = times.windows(2).all(|w| (w[1] - w[0] - 0.5).abs() < 0.15);
        assert!(gaps_ok, "{id}: frames 0.5 s apart: {times:?}");
    }
}

/// A camera in its own process (`sightline serve`), so it can really die.
fn camera(port: u16) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sightline"))
        .args(["serve", "--port", &port.to_string()])
        .arg(common::media("demo.mp4"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start sightline serve");
    let mut line = String::new();
    let out = child.stdout.take().expect("stdout");
    std::io::BufReader::new(out)
        .read_line(&mut line)
        .expect("url line");
    (child, line.trim().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_that_dies_and_comes_back_is_picked_up_again() {
    let (mut first, url) = camera(0);
    let port: u16 = url
        .rsplit(':')
        .next()
        .and_then(|p| p.split('/').next())
        .and_then(|p| p.parse().ok())
        .expect("port in url");
    let text = format!(
        "[[streams]]\nid = \"cam\"\nurl = \"{url}\"\nfps = 2\nstall_timeout_secs = 2\nmax_backoff_secs = 1\n\
         [[events]]\nid = \"p\"\nprompt = \"person\"\n"
    );
    let config = Config::parse(&text, "t").expect("valid config");
    let (tx, rx) = crossbeam_channel::bounded(10_000);
    let hooks = Hooks {
        scored: Some(tx),
        ..Hooks::default()
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(app::run(config, hooks, async move {
        let _ = stop_rx.await;
    }));

    tokio::time::sleep(Duration::from_secs(4)).await;
    let _ = first.kill(); // SIGKILL: the camera is gone
    let _ = first.wait();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let back = std::time::Instant::now();
    let (mut second, _) = camera(port);
    tokio::time::sleep(Duration::from_secs(8)).await;
    let _ = stop_tx.send(());
    let summary = run.await.expect("join").expect("daemon ran");
    let _ = second.kill();
    let _ = second.wait();

    let frames: Vec<Scores> = rx.try_iter().collect();
    let after = frames.iter().filter(|f| f.arrived > back).count();
    assert!(summary.stream_restarts >= 1, "{summary:?}");
    assert!(
        after >= 4,
        "frames resumed after the camera came back: {after} of {}",
        frames.len()
    );
    let times: Vec<f64> = frames.iter().map(|f| f.stream_secs).collect();
    assert!(
        times.windows(2).all(|w| w[1] > w[0]),
        "stream time stays monotonic: {times:?}"
    );
}
