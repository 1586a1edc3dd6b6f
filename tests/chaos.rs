//! Camera chaos: a real RTSP camera (`sightline serve`, a separate process)
//! is killed with SIGKILL and started again 50 times at random intervals
//! while a second camera keeps playing real footage. Each time, frames from
//! the killed camera must resume within the backoff cap plus 5 s; the other
//! camera's alerts must keep arriving; and the daemon's open file
//! descriptors and threads must stay flat (the daemon runs in this process,
//! so /proc/self is the daemon). That is why this file is a test binary of
//! its own, not a module of `tests/suite`: other tests in the same process
//! would open and close descriptors of their own.

mod common;

use std::process::Child;
use std::time::{Duration, Instant};

use common::daemon::Daemon;
use common::receiver::Receiver;
use sightline::tools::rtsp_server::RtspServer;

const RESTARTS: usize = 50;
const BACKOFF_CAP_SECS: f64 = 1.0;

fn kill(c: &mut Child) {
    let _ = c.kill(); // SIGKILL
    let _ = c.wait();
}

fn count(dir: &str) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

async fn frames(d: &Daemon, stream: &str) -> u64 {
    d.ok("GET", &format!("rtstream/{stream}"), None).await["health"]["frames"]
        .as_u64()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_killed_fifty_times_recovers_each_time_and_hurts_nothing() {
    let (mut cam, port) = common::camera("demo.mp4", 0).expect("camera starts");
    let other = RtspServer::serve_files(0, &[("other", &common::media("demo.mp4"))])
        .expect("second camera");
    let mut hook = Receiver::start().await.expect("receiver");
    let dir = tempfile::tempdir().expect("temp dir");
    let d = Daemon::start(
        dir.path(),
        &format!(
            "[[streams]]\nid = \"chaos\"\nurl = \"rtsp://127.0.0.1:{port}/demo\"\nfps = 2\n\
             max_backoff_secs = {BACKOFF_CAP_SECS}\nstall_timeout_secs = 3\n\
             [[streams]]\nid = \"steady\"\nurl = \"{}\"\nfps = 2\n\
             [[events]]\nid = \"person\"\nprompt = \"Detect person\"\ncooldown_secs = 0\n\
             [[alerts]]\nid = \"steady-person\"\nevent = \"person\"\nstreams = [\"steady\"]\n\
             callback_url = \"{}\"\n",
            other.url("other"),
            hook.url()
        ),
    )
    .await;

    // Warm up: both cameras deliver, then take the baseline counts.
    let start = Instant::now();
    while frames(&d, "chaos").await == 0 || frames(&d, "steady").await == 0 {
        assert!(start.elapsed() < Duration::from_secs(30), "cameras deliver");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (fds0, threads0) = (count("/proc/self/fd"), count("/proc/self/task"));

    let chaos_started = Instant::now();
    let mut recoveries = Vec::new();
    let mut peak = (fds0, threads0);
    for i in 0..RESTARTS {
        kill(&mut cam);
        tokio::time::sleep(Duration::from_millis(200 + rand::random::<u64>() % 800)).await;
        let before = frames(&d, "chaos").await;
        let mut restarted = None;
        for _ in 0..20 {
            if let Some(c) = common::camera("demo.mp4", port) {
                restarted = Some(c);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (c, _) = restarted.unwrap_or_else(|| panic!("camera restarts on port {port}"));
        cam = c;
        let up = Instant::now();
        let limit = Duration::from_secs_f64(BACKOFF_CAP_SECS + 5.0);
        while frames(&d, "chaos").await <= before {
            assert!(
                up.elapsed() < limit,
                "restart {i}: no frames within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        recoveries.push(up.elapsed().as_secs_f64());
        peak.0 = peak.0.max(count("/proc/self/fd"));
        peak.1 = peak.1.max(count("/proc/self/task"));
        tokio::time::sleep(Duration::from_millis(300 + rand::random::<u64>() % 1200)).await;
    }
    let chaos_secs = chaos_started.elapsed().as_secs_f64();
    // A pipeline torn down after the last kill may still be closing (its
    // teardown is given up to 5 s, then left to finish on its own thread):
    // wait up to 15 s for the counts to come back. A leak never does.
    let settle = Instant::now() + Duration::from_secs(15);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (fds1, threads1) = loop {
        let now = (count("/proc/self/fd"), count("/proc/self/task"));
        if (now.0 <= fds0 + 8 && now.1 <= threads0 + 4) || Instant::now() > settle {
            break now;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let alerts = common::drain(&mut hook.rx).len();
    kill(&mut cam);

    recoveries.sort_by(f64::total_cmp);
    let median = recoveries[recoveries.len() / 2];
    let worst = recoveries[recoveries.len() - 1];
    println!(
        "chaos: {RESTARTS} kills over {chaos_secs:.0} s; frames resumed after median {median:.2} s, \
         worst {worst:.2} s (limit {:.0} s); other camera: {alerts} alerts; fds {fds0} -> {fds1} \
         (peak {}), threads {threads0} -> {threads1} (peak {})",
        BACKOFF_CAP_SECS + 5.0,
        peak.0,
        peak.1
    );
    assert!(
        alerts as f64 >= chaos_secs / 30.0,
        "the steady camera's alerts kept flowing: {alerts} in {chaos_secs:.0} s"
    );
    assert!(fds1 <= fds0 + 8, "file descriptors flat: {fds0} -> {fds1}");
    assert!(
        threads1 <= threads0 + 4,
        "threads flat: {threads0} -> {threads1}"
    );
    d.stop().await;
}
