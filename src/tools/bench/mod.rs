//! `sightline bench`: sightline and the do-it-yourself Python peer
//! (`../shared/bench/python_peer.py`) side by side, in one run, on the same
//! RTSP server and clips, at a series of stream counts. The systems take
//! turns at each count (their order flips from one count to the next) so a
//! noisy machine weighs on both alike. Writes `compare.md` (tables),
//! `compare.json` (every row) and `compare.png` (p99 latency and the share
//! of wanted frames accounted for, against streams) into the output folder.

mod clips;
pub mod fleet;
mod report;
mod runs;
pub mod soak;
pub mod staged;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};

pub use clips::{build as build_clip, Resolution, Slot, Workload};
pub use runs::{cpu_secs, peak_rss_mb, System};

use crate::tools::rtsp_server::RtspServer;
use runs::{Row, Setup};

/// What to run: `sightline bench`'s arguments, or `sightline bench soak`.
#[derive(Debug, Clone, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Options {
    #[command(subcommand)]
    pub kind: Option<Kind>,
    /// Stream counts, in order.
    #[arg(long, value_delimiter = ',', default_value = "8,16,24,32,48")]
    pub streams: Vec<usize>,
    /// Seconds each system runs at each count.
    #[arg(long, default_value_t = 30)]
    pub secs: u64,
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "realistic,busy"
    )]
    pub workloads: Vec<Workload>,
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "keyframes,full,peer"
    )]
    pub systems: Vec<System>,
    /// Where clips, tables and the plot go.
    #[arg(long, default_value = "target/bench")]
    pub out: PathBuf,
    /// The peer script.
    #[arg(long, default_value = "../shared/bench/python_peer.py")]
    pub peer: PathBuf,
    /// The Python that runs the peer and the plot (default: the venv
    /// `scripts/setup --bench` makes).
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// The cameras' picture size: 1280x720 (a main stream) or, say,
    /// 640x360 (what a camera's sub-stream gives).
    #[arg(long, default_value = "1280x720")]
    pub resolution: Resolution,
    /// The clip the footage is cut from (10 s still, then 10 s walking).
    #[arg(long, default_value = "tests/media/ground_truth.mp4")]
    pub source: PathBuf,
}

/// Benches other than the comparison.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Kind {
    /// Hours of reconnecting cameras, recording and API churn: memory, open
    /// files, threads, database and recording size sampled as CSV and plotted.
    Soak(soak::Options),
    /// Many boxes of one site on a real three-server NATS cluster (the
    /// daemon's placement code on light boxes that run nothing): time to
    /// converge, time to re-place a dead box's cameras, NATS messages/s.
    Fleet(fleet::Options),
}

impl Options {
    /// The Python given, else the venv `scripts/setup --bench` makes.
    pub fn python(&self) -> PathBuf {
        self.python.clone().unwrap_or_else(venv_python)
    }
}

/// The Python of the venv `scripts/setup --bench` makes.
pub fn venv_python() -> PathBuf {
    let cache = std::env::var_os("SIGHTLINE_CACHE").map_or_else(
        || Path::new(&std::env::var_os("HOME").unwrap_or_default()).join(".cache/sightline"),
        PathBuf::from,
    );
    cache.join("bench-venv/bin/python")
}

/// Runs what the options ask for: the soak, else the comparison.
pub async fn main(o: &Options) -> anyhow::Result<()> {
    match &o.kind {
        Some(Kind::Soak(s)) => {
            let python = s.python.clone().unwrap_or_else(venv_python);
            soak::run(s, &python).await.map(|_| ())
        }
        Some(Kind::Fleet(f)) => fleet::run(f).await.map(|_| ()),
        None => run(o).await.map(|_| ()),
    }
}

/// Runs the whole comparison and writes the report; returns its rows.
pub async fn run(o: &Options) -> anyhow::Result<Vec<Row>> {
    let python = o.python();
    check(o, &python)?;
    std::fs::create_dir_all(&o.out).with_context(|| format!("creating {}", o.out.display()))?;
    let out = o.out.canonicalize()?;
    let exe = std::env::current_exe().context("finding the sightline executable")?;
    let model = runs::person_model()?;
    let most = o.streams.iter().copied().max().unwrap_or(1);
    let jsonl = out.join("compare.jsonl");
    let _ = std::fs::remove_file(&jsonl);
    let site = match o.systems.contains(&System::Fleet) {
        true => Some(fleet::site(&out.join("site")).await?),
        false => None,
    };
    let mut rows = Vec::new();
    for &w in &o.workloads {
        println!(
            "building the {} clips (cached in {})",
            w.name(),
            out.display()
        );
        let clips = clips::clips(w, o.resolution, &o.source, &out)?;
        let server = serve(&clips, most)?;
        let prefix = format!("rtsp://127.0.0.1:{}/cam", server.port());
        let setup = Setup {
            exe: &exe,
            python: &python,
            peer: &o.peer,
            model_file: &model,
            rtsp_prefix: &prefix,
            dir: &out,
            fleet: site.as_ref().map(|(_, f)| f),
        };
        for (turn, &n) in o.streams.iter().enumerate() {
            let mut order = o.systems.clone();
            if turn % 2 == 1 {
                order.reverse();
            }
            for system in order {
                let row = one(&setup, w, system, n, o.secs).await?;
                println!("{}", report::line(&row));
                report::append(&jsonl, &row)?;
                rows.push(row);
                // Let the server's sessions for this run close.
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
    report::write(&out, &rows, o, &python)?;
    Ok(rows)
}

fn check(o: &Options, python: &Path) -> anyhow::Result<()> {
    if o.streams.is_empty() || o.streams.contains(&0) {
        bail!("--streams needs counts above zero, such as 8,16,32");
    }
    if o.systems.contains(&System::Peer) {
        if !o.peer.is_file() {
            bail!(
                "the peer {} is missing (pass --peer, or run from a checkout with ../shared beside it)",
                o.peer.display()
            );
        }
        if !python.is_file() {
            bail!(
                "{} is missing: run `bash scripts/setup --bench` (OpenCV, onnxruntime, matplotlib from PyPI)",
                python.display()
            );
        }
    }
    if !o.source.is_file() {
        bail!(
            "the source clip {} is missing (run from the checkout)",
            o.source.display()
        );
    }
    Ok(())
}

/// Mounts `cam0`..`cam{n-1}`, camera i playing clip i mod len.
fn serve(clips: &[PathBuf], n: usize) -> anyhow::Result<RtspServer> {
    let names: Vec<String> = (0..n).map(|i| format!("cam{i}")).collect();
    let mounts: Vec<(&str, &Path)> = names
        .iter()
        .enumerate()
        .map(|(i, m)| (m.as_str(), clips[i % clips.len()].as_path()))
        .collect();
    RtspServer::serve_files(0, &mounts).map_err(|e| anyhow::anyhow!(e))
}

async fn one(
    s: &Setup<'_>,
    workload: Workload,
    system: System,
    streams: usize,
    secs: u64,
) -> anyhow::Result<Row> {
    let wanted = streams as f64 * runs::FPS;
    let row = |secs: f64| Row {
        workload: workload.name(),
        system: system.name(),
        streams,
        secs,
        wanted_per_s: wanted,
        scored_per_s: 0.0,
        skipped_per_s: 0.0,
        undecoded_per_s: 0.0,
        accounted: 0.0,
        dropped: 0,
        alerts: 0,
        p50_ms: None,
        p99_ms: None,
        cpu_cores: 0.0,
        cpu_ms_per_frame: None,
        rss_mb: 0.0,
    };
    // CPU milliseconds per second over frames accounted for per second.
    let per_frame = |cores: f64, accounted: f64| {
        let frames = accounted * wanted;
        (frames > 0.0).then(|| (cores * 1000.0 / frames * 10.0).round() / 10.0)
    };
    if system == System::Peer {
        let p = runs::peer(s, streams, secs)?;
        return Ok(Row {
            scored_per_s: p.scored_per_s,
            accounted: p.scored_per_s / wanted,
            dropped: p.dropped,
            alerts: p.alerts,
            p50_ms: p.lat_p50_ms,
            p99_ms: p.lat_p99_ms,
            cpu_cores: p.cpu_cores,
            cpu_ms_per_frame: per_frame(p.cpu_cores, p.scored_per_s / wanted),
            rss_mb: p.rss_mb,
            ..row(p.seconds)
        });
    }
    let (wall, c, mut lat, usage) = runs::sightline(s, system, streams, secs).await?;
    let per_s = |v: f64| (v / wall * 10.0).round() / 10.0;
    let accounted = (c.scored + c.skipped + c.undecoded) / wall / wanted;
    Ok(Row {
        scored_per_s: per_s(c.scored),
        skipped_per_s: per_s(c.skipped),
        undecoded_per_s: per_s(c.undecoded),
        accounted,
        dropped: c.dropped as u64,
        alerts: lat.len(),
        p50_ms: runs::quantile(&mut lat, 0.5),
        p99_ms: runs::quantile(&mut lat, 0.99),
        cpu_cores: (usage.cpu_cores * 100.0).round() / 100.0,
        cpu_ms_per_frame: per_frame(usage.cpu_cores, accounted),
        rss_mb: usage.rss_mb.round(),
        ..row((wall * 10.0).round() / 10.0)
    })
}
