//! The bench's report: a line per run as it ends, every row as JSON, a
//! markdown table per workload with each system's ceiling, and the plot
//! (drawn by `benches/plot.py` with matplotlib, from the bench venv).

use std::io::Write;
use std::path::Path;
use std::process::Command;

use anyhow::Context;

use super::runs::Row;
use super::Options;

/// A run is within budget at this p99 (arrival → webhook) ...
const P99_BUDGET_MS: f64 = 250.0;
/// ... with at least this share of wanted frames accounted for (scored,
/// skipped for no motion, or left undecoded as unchanged).
const ACCOUNTED_FLOOR: f64 = 0.95;

const PLOT: &str = include_str!("../../../benches/plot.py");

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.0}"))
}

/// One run, for the console.
pub fn line(r: &Row) -> String {
    format!(
        "{:<10} {:>3} streams  {:<22} accounted {:>5.1}% ({:.1} scored + {:.1} skipped + {:.1} undecoded of {:.0}/s), \
         dropped {}, p50 {} ms, p99 {} ms ({} alerts), CPU {:.2} cores ({} ms a frame), peak RSS {:.0} MB",
        r.workload,
        r.streams,
        r.system,
        100.0 * r.accounted,
        r.scored_per_s,
        r.skipped_per_s,
        r.undecoded_per_s,
        r.wanted_per_s,
        r.dropped,
        ms(r.p50_ms),
        ms(r.p99_ms),
        r.alerts,
        r.cpu_cores,
        r.cpu_ms_per_frame.map_or_else(|| "-".into(), |v| format!("{v:.1}")),
        r.rss_mb
    )
}

/// Appends one row to the JSON-lines log, so a run cut short keeps its rows.
pub fn append(path: &Path, r: &Row) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    writeln!(f, "{}", serde_json::to_string(r)?)?;
    Ok(())
}

fn within(r: &Row) -> bool {
    r.accounted >= ACCOUNTED_FLOOR && r.p99_ms.is_some_and(|p| p <= P99_BUDGET_MS)
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or_else(|| "unknown CPU".into(), |s| s.trim().to_string());
    format!("{cores} cores ({cpu})")
}

fn markdown(rows: &[Row], o: &Options) -> String {
    let counts: Vec<String> = o.streams.iter().map(|n| n.to_string()).collect();
    let mut md = format!(
        "Measured {} on {}: each run {} s, {} 25 fps H.264 cameras sampled at 2 fps, streams {}.\n\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        machine(),
        o.secs,
        o.resolution,
        counts.join(", ")
    );
    let mut workloads: Vec<&str> = rows.iter().map(|r| r.workload).collect();
    workloads.dedup();
    for w in workloads {
        md += &format!("**{w}**\n\n| streams | system | accounted | scored/s | skipped/s | undecoded/s | dropped | p50 ms | p99 ms | CPU cores | CPU ms/frame | peak RSS MB |\n|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        let mut these: Vec<&Row> = rows.iter().filter(|r| r.workload == w).collect();
        these.sort_by(|a, b| a.streams.cmp(&b.streams).then(a.system.cmp(b.system)));
        for r in &these {
            md += &format!(
                "| {} | {} | {:.1}% | {:.1} | {:.1} | {:.1} | {} | {} | {} | {:.2} | {} | {:.0} |\n",
                r.streams,
                r.system,
                100.0 * r.accounted,
                r.scored_per_s,
                r.skipped_per_s,
                r.undecoded_per_s,
                r.dropped,
                ms(r.p50_ms),
                ms(r.p99_ms),
                r.cpu_cores,
                r.cpu_ms_per_frame.map_or_else(|| "-".into(), |v| format!("{v:.1}")),
                r.rss_mb
            );
        }
        md += &format!(
            "\nMost streams within budget (p99 ≤ {P99_BUDGET_MS:.0} ms and ≥ {:.0}% accounted):",
            100.0 * ACCOUNTED_FLOOR
        );
        let mut systems: Vec<&str> = these.iter().map(|r| r.system).collect();
        systems.sort();
        systems.dedup();
        for s in systems {
            let best = these
                .iter()
                .filter(|r| r.system == s && within(r))
                .map(|r| r.streams)
                .max();
            md += &format!(
                " {s} {};",
                best.map_or_else(|| "none".into(), |n| n.to_string())
            );
        }
        md.pop();
        md += ".\n\n";
    }
    md
}

/// Writes compare.md, compare.json and compare.png into `out`.
pub fn write(out: &Path, rows: &[Row], o: &Options, python: &Path) -> anyhow::Result<()> {
    let md = out.join("compare.md");
    std::fs::write(&md, markdown(rows, o)).with_context(|| format!("writing {}", md.display()))?;
    let json = out.join("compare.json");
    std::fs::write(&json, serde_json::to_vec_pretty(rows)?)?;
    println!("wrote {} and {}", md.display(), json.display());
    let data = json.to_string_lossy().into_owned();
    draw(
        python,
        &out.join("plot.py"),
        PLOT,
        &[&data, &o.resolution.to_string()],
        &out.join("compare.png"),
    )
}

/// Draws `png` with a matplotlib `script` (its text written to
/// `script_path`) run by the bench venv's `python` on `args`, then `png`;
/// says so and draws nothing when the venv is missing.
pub(super) fn draw(
    python: &Path,
    script_path: &Path,
    script: &str,
    args: &[&str],
    png: &Path,
) -> anyhow::Result<()> {
    if !python.is_file() {
        println!(
            "no plot: {} is missing (bash scripts/setup --bench)",
            python.display()
        );
        return Ok(());
    }
    std::fs::write(script_path, script)?;
    let status = Command::new(python)
        .arg(script_path)
        .args(args)
        .arg(png)
        .env("MPLBACKEND", "Agg")
        .status()
        .context("running the plot script")?;
    anyhow::ensure!(status.success(), "the plot script failed ({status})");
    println!("wrote {}", png.display());
    Ok(())
}
