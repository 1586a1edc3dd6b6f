//! Throughput and latency with many cameras: `cargo bench --bench streams`.
//!
//! A child process (this binary re-executed) serves N copies of a 720p25
//! H.264 clip over RTSP from the file as recorded (no re-encoding). The
//! daemon, in this process, samples each stream at 2 fps with the default
//! person detector and delivers alerts to a local webhook receiver. Reported:
//! scored frames/s, dropped frames, CPU of the daemon process, peak RSS, and
//! p50/p99 of frame arrival → scored and frame arrival → webhook receipt.
//!
//! Environment: SIGHTLINE_BENCH_STREAMS (16), SIGHTLINE_BENCH_SECS (25),
//! SIGHTLINE_BENCH_MODE (`full`, `keyframes` or `both`, default both),
//! SIGHTLINE_BENCH_WORKERS (2), SIGHTLINE_BENCH_RECORD=1 (record every
//! stream), SIGHTLINE_BENCH_COCO=1 (a car event too: both detectors run),
//! SIGHTLINE_BENCH_PROVIDER=cuda (both detectors on that execution provider),
//! SIGHTLINE_BENCH_MOTION=0 (score every sampled frame: motion gating off),
//! SIGHTLINE_BENCH_STILL=0.8 (that share of the cameras shows a still scene,
//! the first 10 s of the clip, a photo, looped: the fleet a box usually
//! watches; default 0, every camera plays the whole clip).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sightline::app::{self, Hooks};
use sightline::config::Config;
use sightline::tools::bench::{cpu_secs, peak_rss_mb};
use sightline::tools::rtsp_server::RtspServer;
use sightline::tools::webhooks::{latency_ms, Webhooks};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Builds the 720p25 clip once (from the committed ground-truth clip), with a
/// keyframe every 12 frames so keyframe-only mode can still give ~2 fps.
fn clip() -> PathBuf {
    let out = bench_dir().join("clip720p25.mp4");
    if !out.is_file() {
        let tmp = out.with_extension("tmp.mp4");
        encode(&format!("mp4mux ! filesink location={}", tmp.display()));
        std::fs::rename(&tmp, &out).expect("rename");
    }
    out
}

/// The clip's first 10 s only: the still coffee photo (SIGHTLINE_BENCH_STILL),
/// cut at the first keyframe after 10 s.
fn still_clip() -> PathBuf {
    let out = bench_dir().join("still720p25.mp4");
    if !out.is_file() {
        let parts = bench_dir().join("still-part");
        std::fs::create_dir_all(&parts).expect("mkdir");
        encode(&format!(
            "splitmuxsink max-size-time=10000000000 location={}/%02d.mp4",
            parts.display()
        ));
        std::fs::rename(parts.join("00.mp4"), &out).expect("the first 10 s");
        let _ = std::fs::remove_dir_all(parts);
    }
    out
}

fn bench_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&dir).expect("mkdir target/bench");
    dir
}

/// Re-encodes the ground-truth clip (10 fps) as 720p25 H.264 into `sink`.
fn encode(sink: &str) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/media/ground_truth.mp4");
    let line = format!(
        "filesrc location={} ! qtdemux ! h264parse ! avdec_h264 ! videoconvert ! videoscale ! videorate ! \
         video/x-raw,format=I420,width=1280,height=720,framerate=25/1 ! \
         x264enc key-int-max=12 bframes=0 speed-preset=veryfast bitrate=2500 ! h264parse ! {sink}",
        src.display(),
    );
    let status = Command::new("gst-launch-1.0")
        .arg("-q")
        .args(line.split_whitespace())
        .status()
        .expect("gst-launch-1.0 (scripts/setup installs gstreamer1.0-tools)");
    assert!(status.success(), "encoding the bench clip failed");
}

fn serve(n: usize, clip: &Path, still: Option<(&Path, usize)>) {
    let names: Vec<String> = (0..n).map(|i| format!("cam{i}")).collect();
    let mounts: Vec<(&str, &Path)> = names
        .iter()
        .enumerate()
        .map(|(i, m)| match still {
            Some((s, k)) if i < k => (m.as_str(), s),
            _ => (m.as_str(), clip),
        })
        .collect();
    let server = RtspServer::serve_files(0, &mounts).expect("rtsp server");
    println!("{}", server.port());
    // Serve until the parent closes our stdin.
    let mut buf = String::new();
    let _ = std::io::stdin().read_line(&mut buf);
}

/// CPU seconds of each thread of this process seen so far, by thread id
/// (name, ticks). Sampled while the daemon runs, since threads that end
/// take their counters with them.
#[derive(Default)]
struct ThreadCpu(std::collections::HashMap<String, (String, f64)>);

impl ThreadCpu {
    fn sample(&mut self) {
        for t in std::fs::read_dir("/proc/self/task")
            .into_iter()
            .flatten()
            .flatten()
        {
            let tid = t.file_name().to_string_lossy().to_string();
            let name = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            let secs = cpu_secs(&format!("self/task/{tid}"));
            self.0.insert(tid, (name.trim().to_string(), secs));
        }
    }

    /// CPU seconds of the threads whose names `pick` accepts.
    fn sum(&self, pick: impl Fn(&str) -> bool) -> f64 {
        // A fold from +0.0: an empty f64 sum is -0.0.
        self.0
            .values()
            .filter(|(n, _)| pick(n))
            .fold(0.0, |a, (_, s)| a + s)
    }

    /// One line: where the daemon's CPU went, as % of one core over `wall`.
    fn report(&self, wall: f64) {
        let pct = |pick: &dyn Fn(&str) -> bool| 100.0 * self.sum(pick) / wall;
        // GStreamer names a streaming thread after its element and pad:
        // the recorders' are their appsrc ("tapped") and splitmuxsink's
        // muxer; the detection branch runs depay, parse and decode on the
        // jitter buffer's thread.
        let recording =
            pct(&|n| n.starts_with("tapped") || n.starts_with("muxer") || n.starts_with("rec-"));
        let ingest = pct(&|n| n.starts_with("rtpjitterbuffer") || n.starts_with("src-"));
        let infer = pct(&|n| n.starts_with("infer-"));
        let evidence = pct(&|n| n == "evidence" || n == "delivery");
        println!(
            "  threads (% of one core): inference {infer:.1}, ingest+decode {ingest:.1}, \
             recording pipelines {recording:.1}, delivery+evidence {evidence:.1}"
        );
    }
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Prints what recording wrote (bytes per stream per second) and deletes it.
fn report_recording(dir: &Path, streams: usize, secs: u64) {
    let mut bytes = 0u64;
    let mut files = 0usize;
    for cam in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(cam.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if f.file_name().to_string_lossy().ends_with(".ts") {
                bytes += f.metadata().map_or(0, |m| m.len());
                files += 1;
            }
        }
    }
    let per = bytes as f64 / streams.max(1) as f64 / secs.max(1) as f64;
    println!(
        "recording: {files} segments, {:.1} MB over {streams} streams: {:.0} kB/s per stream = {:.2} GB/day per stream",
        bytes as f64 / 1e6,
        per / 1e3,
        per * 86_400.0 / 1e9
    );
    let _ = std::fs::remove_dir_all(dir);
}

fn run(mode: &str, streams: usize, secs: u64, workers: usize, port: u16, server_pid: u32) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let mut hook = Webhooks::start().await.expect("receiver");
        let intra: usize = env_or("SIGHTLINE_BENCH_INTRA", 1);
        let mut text = format!("[runtime]\nworkers = {workers}\nintra_threads = {intra}\n");
        // SIGHTLINE_BENCH_RECORD=1 also records every stream (no decoding).
        let record = std::env::var("SIGHTLINE_BENCH_RECORD").as_deref() == Ok("1");
        let motion = std::env::var("SIGHTLINE_BENCH_MOTION").as_deref() != Ok("0");
        let rec_dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("target/bench/rec-{}", std::process::id()));
        for i in 0..streams {
            text += &format!(
                "[[streams]]\nid = \"cam{i}\"\nurl = \"rtsp://127.0.0.1:{port}/cam{i}\"\nfps = 2\nkeyframes_only = {}\nrecord = {record}\nmotion = {{ enabled = {motion} }}\n",
                mode == "keyframes"
            );
        }
        if record {
            text += &format!("[recording]\ndir = \"{}\"\nmin_free_mb = 1\n", rec_dir.display());
        }
        // Short occurrences so alerts keep coming while people are in view.
        text += "[[events]]\nid = \"person\"\nprompt = \"person\"\nk = 1\nwindow = 1\nend_after = 1\nmax_duration_secs = 1\ncooldown_secs = 0\n";
        text += &format!("[[alerts]]\nid = \"bench\"\nevent = \"person\"\nsend_end = false\ncallback_url = \"{}\"\n[webhook]\nallow_private = [\"127.0.0.1/32\"]\n", hook.url);
        // SIGHTLINE_BENCH_COCO=1 also watches every stream for cars, on the
        // 80-class model: each sampled frame then runs both detectors.
        if std::env::var("SIGHTLINE_BENCH_COCO").as_deref() == Ok("1") {
            text += "[[events]]\nid = \"car\"\nprompt = \"Detect car\"\n";
            text += &format!("[[alerts]]\nid = \"bench-car\"\nevent = \"car\"\nsend_end = false\ncallback_url = \"{}\"\n", hook.url);
        }
        // SIGHTLINE_BENCH_PROVIDER=cuda (or tensorrt, openvino) places
        // both bundled detectors there, with no CPU fallback.
        if let Ok(p) = std::env::var("SIGHTLINE_BENCH_PROVIDER") {
            for (name, path) in [("person", "ssdlite-person"), ("coco", "centernet-coco")] {
                text += &format!("[[models]]\nname = \"{name}\"\npath = \"{path}\"\nprovider = \"{p}\"\n");
            }
        }
        let config = Config::parse(&text, "bench").expect("bench config");

        let (scored_tx, scored_rx) = crossbeam_channel::bounded(100_000);
        let hooks = Hooks { scored: Some(scored_tx), ..Hooks::default() };
        let server = server_pid.to_string();
        let (cpu0, server0) = (cpu_secs("self"), cpu_secs(&server));
        let t0 = Instant::now();
        let threads = std::sync::Arc::new(std::sync::Mutex::new(ThreadCpu::default()));
        let sampler = std::sync::Arc::clone(&threads);
        let sampling = tokio::spawn(async move {
            loop {
                if let Ok(mut t) = sampler.lock() {
                    t.sample();
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        let stop = async move {
            tokio::time::sleep(Duration::from_secs(secs)).await;
            sampling.abort();
        };
        let summary = app::run(config, hooks, stop)
            .await
            .inspect(|_| {
                if record {
                    report_recording(&rec_dir, streams, secs);
                }
            })
            .expect("daemon run");
        let wall = t0.elapsed().as_secs_f64();
        let cpu = cpu_secs("self") - cpu0;
        let server_cpu = cpu_secs(&server) - server0;

        // Frames motion gating let stand on the last result are accounted
        // for, not scored: their latency is the queue wait alone.
        let mut scored_ms: Vec<f64> = scored_rx
            .try_iter()
            .filter(|s| !s.repeated)
            .map(|s| (s.queued + s.inference).as_secs_f64() * 1000.0)
            .collect();
        let mut hook_ms: Vec<f64> = std::iter::from_fn(|| hook.rx.try_recv().ok())
            .filter_map(|(body, at)| latency_ms(&body, at))
            .collect();
        let dropped = summary.dropped_full + summary.dropped_stale;
        println!("mode={mode} streams={streams} workers={workers} motion={motion} run={wall:.1}s (2 cores)");
        let accounted = summary.scored + summary.skipped_no_motion;
        println!(
            "  scored {} frames = {:.1}/s, skipped {} for no motion; accounted {:.1}/s (offered ~{:.0}/s); dropped {} ({} queue-full, {} stale)",
            summary.scored,
            summary.scored as f64 / wall,
            summary.skipped_no_motion,
            accounted as f64 / wall,
            streams as f64 * 2.0,
            dropped,
            summary.dropped_full,
            summary.dropped_stale
        );
        println!(
            "  daemon CPU {:.0}% of one core (RTSP server process: {:.0}%); peak RSS {:.0} MB; mean inference {:.1} ms, mean queue wait {:.1} ms",
            100.0 * cpu / wall,
            100.0 * server_cpu / wall,
            peak_rss_mb("self"),
            summary.mean_inference_ms,
            summary.mean_queue_ms
        );
        if let Ok(t) = threads.lock() {
            t.report(wall);
        }
        println!(
            "  frame arrival -> scored: p50 {:.1} ms, p99 {:.1} ms (n={})",
            pct(&mut scored_ms, 0.5),
            pct(&mut scored_ms, 0.99),
            scored_ms.len()
        );
        println!(
            "  frame arrival -> webhook receipt: p50 {:.1} ms, p99 {:.1} ms (n={} alerts)",
            pct(&mut hook_ms, 0.5),
            pct(&mut hook_ms, 0.99),
            hook_ms.len()
        );
    });
}

fn main() {
    if std::env::var("SIGHTLINE_BENCH_ROLE").as_deref() == Ok("server") {
        let n = env_or("SIGHTLINE_BENCH_STREAMS", 16);
        let still = std::env::var("SIGHTLINE_BENCH_STILL_CLIP").ok();
        let k = env_or("SIGHTLINE_BENCH_STILL_COUNT", 0usize);
        serve(
            n,
            Path::new(&std::env::var("SIGHTLINE_BENCH_CLIP").expect("clip")),
            still.as_deref().map(|p| (Path::new(p), k)),
        );
        return;
    }
    if !std::env::args().any(|a| a == "--bench") {
        // `cargo test --all-targets` also runs bench targets; only `cargo bench` passes --bench.
        println!("streams bench: run it with `cargo bench --bench streams`");
        return;
    }
    sightline::metrics::telemetry::init("warn");
    let streams = env_or("SIGHTLINE_BENCH_STREAMS", 16usize);
    let secs = env_or("SIGHTLINE_BENCH_SECS", 25u64);
    let workers = env_or("SIGHTLINE_BENCH_WORKERS", 2usize);
    let mode = std::env::var("SIGHTLINE_BENCH_MODE").unwrap_or_else(|_| "both".into());
    let clip = clip();
    let still_share = env_or("SIGHTLINE_BENCH_STILL", 0.0f64).clamp(0.0, 1.0);
    let still_count = (streams as f64 * still_share).round() as usize;
    let still = (still_count > 0).then(still_clip);
    if mode == "both" {
        // One process per mode, so peak RSS is each mode's own.
        for m in ["full", "keyframes"] {
            let status = Command::new(std::env::current_exe().expect("exe"))
                .arg("--bench")
                .env("SIGHTLINE_BENCH_MODE", m)
                .status()
                .expect("run one mode");
            assert!(status.success(), "mode {m} failed");
        }
        return;
    }

    let mut server = Command::new(std::env::current_exe().expect("exe"))
        .env("SIGHTLINE_BENCH_ROLE", "server")
        .env("SIGHTLINE_BENCH_STREAMS", streams.to_string())
        .env("SIGHTLINE_BENCH_CLIP", &clip)
        .env("SIGHTLINE_BENCH_STILL_COUNT", still_count.to_string())
        .env(
            "SIGHTLINE_BENCH_STILL_CLIP",
            still.as_deref().unwrap_or(Path::new("")),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the RTSP server process");
    let mut line = String::new();
    {
        use std::io::BufRead;
        let out = server.stdout.take().expect("stdout");
        std::io::BufReader::new(out)
            .read_line(&mut line)
            .expect("port");
    }
    let port: u16 = line.trim().parse().expect("server port");
    if still_count > 0 {
        println!("{still_count} of {streams} cameras show a still scene");
    }
    run(&mode, streams, secs, workers, port, server.id());
    drop(server.stdin.take());
    let _ = server.wait();
}
