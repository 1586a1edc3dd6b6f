//! `sightline bench`, small: the real binary builds the busy clip from the
//! committed footage, serves it over its RTSP server, runs `sightline run`
//! as a child on it, scrapes its `/metrics` and writes the report. The
//! Python peer is left out here (its venv comes from `scripts/setup --bench`,
//! which the tests do not install); the full comparison is a bench run,
//! with its figures in docs/PERFORMANCE.md.

use std::process::Command;

#[test]
fn the_bench_command_measures_sightline_and_writes_its_report() {
    let out = tempfile::tempdir().expect("tempdir");
    let run = Command::new(env!("CARGO_BIN_EXE_sightline"))
        .args([
            "bench",
            "--streams",
            "2",
            "--secs",
            "8",
            "--workloads",
            "busy",
            "--systems",
            "keyframes",
            "--python",
            "/nonexistent/python",
            "--out",
        ])
        .arg(out.path())
        .output()
        .expect("run sightline bench");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "bench failed: {stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let rows: Vec<serde_json::Value> = serde_json::from_slice(
        &std::fs::read(out.path().join("compare.json")).expect("compare.json"),
    )
    .expect("rows are JSON");
    assert_eq!(rows.len(), 1, "{rows:?}");
    let r = &rows[0];
    assert_eq!(r["system"], "sightline keyframes");
    assert_eq!(r["streams"], 2);
    // People walk in every frame of the busy clip: frames are scored (not
    // skipped) and alerts arrive with a latency.
    assert!(r["scored_per_s"].as_f64().unwrap_or(0.0) > 1.0, "{r}");
    assert!(r["accounted"].as_f64().unwrap_or(0.0) > 0.5, "{r}");
    assert!(r["alerts"].as_u64().unwrap_or(0) > 0, "{r}");
    assert!(r["p99_ms"].as_f64().is_some(), "{r}");
    // What a frame costs: CPU time over frames accounted for.
    assert!(
        r["cpu_ms_per_frame"].as_f64().is_some_and(|v| v > 0.0),
        "{r}"
    );
    let md = std::fs::read_to_string(out.path().join("compare.md")).expect("compare.md");
    assert!(md.contains("| 2 | sightline keyframes |"), "{md}");
    assert!(
        stdout.contains("no plot"),
        "says why there is no plot: {stdout}"
    );
}
