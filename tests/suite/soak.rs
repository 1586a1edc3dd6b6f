//! `sightline bench soak`, short: the same harness as the hours-long bench
//! (real RTSP server whose footage ends every 20–30 s so the daemon keeps
//! reconnecting, both default models, recording under a 50 MB budget, a
//! real webhook receiver, API churn every 3 s), for three minutes. After a
//! minute of warm-up, memory, open files and threads must stay inside the
//! bands below, and the recording folder under its budget. The bands are
//! wide enough for a noisy shared machine and narrow enough that a leak of
//! one file or thread per reconnect (about 25 reconnects happen after
//! warm-up) or a few MB per reconnect breaks them. The 8-hour figures are in
//! docs/RELIABILITY.md.
//!
//! One leak is known and allowed for, openly: a camera pipeline whose
//! teardown hangs inside GStreamer's rtspsrc is abandoned so the camera can
//! come back (`sightline_pipelines_abandoned_total`), and until that
//! teardown ends it holds about eight threads and a dozen sockets. On a
//! loaded machine this happened up to three times in the three minutes; the
//! bands widen by that much per abandoned pipeline, and more than
//! `MAX_ABANDONED` fails the test.

use std::process::Command;

use sightline::tools::bench::soak::probe::{lines, Sample};

/// After warm-up: how far each line may move (max − min).
const RSS_BAND_MB: f64 = 120.0;
const FD_BAND: f64 = 45.0;
const THREAD_BAND: f64 = 16.0;
const WARMUP_SECS: f64 = 60.0;
const BUDGET_MB: f64 = 50.0;
/// What one abandoned pipeline may hold until its teardown ends.
const THREADS_PER_ABANDONED: f64 = 8.0;
const FDS_PER_ABANDONED: f64 = 12.0;
/// About one stream restart in ten hanging would be a new problem.
const MAX_ABANDONED: f64 = 6.0;
/// One 2 s segment of the 720p clips is about 0.7 MB; two per camera.
const SLACK_MB: f64 = 4.0 * 2.0 * 0.7;

#[test]
fn a_short_soak_stays_inside_its_bands() {
    let out = tempfile::tempdir().expect("tempdir");
    let run = Command::new(env!("CARGO_BIN_EXE_sightline"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "bench",
            "soak",
            "--hours",
            "0.05",
            "--cameras",
            "4",
            "--camera-secs",
            "20,30",
            "--sample-secs",
            "5",
            "--churn-secs",
            "3",
            "--max-gb",
            "0.05",
            "--warmup-mins",
            "1",
            "--no-plot",
            "--out",
        ])
        .arg(out.path())
        .output()
        .expect("run sightline bench soak");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "soak failed: {stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let csv = std::fs::read_to_string(out.path().join("soak.csv")).expect("soak.csv");
    let samples: Vec<Sample> = csv.lines().skip(1).filter_map(Sample::parse).collect();
    assert!(samples.len() >= 30, "a sample every 5 s for 3 min: {csv}");
    let line = |name: &str| {
        lines(&samples, WARMUP_SECS)
            .into_iter()
            .find(|l| l.column == name)
            .expect("a line per column")
    };
    let (rss, fds, threads) = (line("rss_mb"), line("fds"), line("threads"));
    let abandoned = samples.last().map_or(0.0, |s| s.abandoned);
    assert!(
        abandoned <= MAX_ABANDONED,
        "{abandoned} pipelines abandoned in a hung teardown\n{csv}"
    );
    assert!(rss.max - rss.min <= RSS_BAND_MB, "RSS band: {rss:?}\n{csv}");
    assert!(
        fds.max - fds.min <= FD_BAND + FDS_PER_ABANDONED * abandoned,
        "fd band: {fds:?}\n{csv}"
    );
    assert!(
        threads.max - threads.min <= THREAD_BAND + THREADS_PER_ABANDONED * abandoned,
        "thread band: {threads:?}\n{csv}"
    );
    let recording = line("recording_mb");
    assert!(
        recording.max <= BUDGET_MB + SLACK_MB,
        "the recording folder stays under its budget: {recording:?}\n{csv}"
    );
    assert!(
        recording.max > BUDGET_MB / 2.0,
        "it did record: {recording:?}"
    );

    // The box kept working the whole time: cameras came back after each
    // end of footage, alerts kept arriving, and no API call failed.
    let (first, last) = (&samples[samples.len() / 2], &samples[samples.len() - 1]);
    assert!(
        last.reconnects >= first.reconnects + 4.0,
        "cameras reconnect in the second half: {first:?} -> {last:?}"
    );
    assert!(
        last.deliveries > first.deliveries,
        "webhooks arrive in the second half: {first:?} -> {last:?}"
    );
    assert!(last.api_calls >= 50.0, "the churn ran: {last:?}");
    assert_eq!(last.api_errors, 0.0, "no API call failed: {stdout}");
    assert_eq!(last.dead_letters, 0.0, "{last:?}");
    // A hung teardown is survived, but it leaks a pipeline: report it.
    if last.abandoned > 0.0 {
        eprintln!(
            "soak: {} pipelines abandoned in a hung teardown",
            last.abandoned
        );
    }
    let md = std::fs::read_to_string(out.path().join("soak.md")).expect("soak.md");
    assert!(md.contains("| rss_mb |"), "{md}");
}
