//! `sightline bench soak`: the daemon as it lives on a box for months,
//! compressed into hours. Cameras whose footage ends every one to four
//! minutes (so the daemon reconnects them all the time), both default
//! models, recording on under a small byte budget, a webhook receiver taking
//! every alert, and an API client creating, toggling and deleting events and
//! alerts. Every `--sample-secs` it writes one row of `soak.csv` (memory,
//! open files, threads, state database and WAL, recording folder,
//! deliveries, reconnects, API errors, outbox); at the end `soak.md` gives
//! each line's band and slope, and `soak.png` plots them.

mod churn;
pub mod probe;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::clips::{self, Slot};
use super::runs::{free_port, stop, wait_ready};
use crate::tools::rtsp_server::RtspServer;
use crate::tools::webhooks::Webhooks;
use churn::Churn;
use probe::Sample;

const PLOT: &str = include_str!("../../../../benches/soak_plot.py");

/// `sightline bench soak`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// How long to run, in hours (0.05 is three minutes).
    #[arg(long, default_value_t = 8.0)]
    pub hours: f64,
    /// Cameras, each recorded.
    #[arg(long, default_value_t = 8)]
    pub cameras: usize,
    /// Length of each camera's footage in seconds: the server ends the
    /// stream there and the daemon reconnects. Camera i plays entry i mod n.
    #[arg(long, value_delimiter = ',', default_value = "60,120,180,240")]
    pub camera_secs: Vec<u32>,
    /// Frames sampled per second per camera.
    #[arg(long, default_value_t = 2.0)]
    pub fps: f64,
    /// The recording budget (`[recording] max_gb`).
    #[arg(long, default_value_t = 1.0)]
    pub max_gb: f64,
    /// Days occurrence rows are kept (`[recording] clip_days`; the
    /// daemon's default is 7). Short, so the run shows the clips table
    /// reach its steady size.
    #[arg(long, default_value_t = 0.1)]
    pub clip_days: f64,
    /// Seconds between samples.
    #[arg(long, default_value_t = 15)]
    pub sample_secs: u64,
    /// Seconds between API calls.
    #[arg(long, default_value_t = 20)]
    pub churn_secs: u64,
    /// Minutes left out of the bands and the first slope (default: a
    /// quarter of the run, at most 30).
    #[arg(long)]
    pub warmup_mins: Option<f64>,
    /// Where clips, the CSV, the summary and the plot go.
    #[arg(long, default_value = "target/soak")]
    pub out: PathBuf,
    /// The clip the footage is cut from (10 s still, then 10 s walking).
    #[arg(long, default_value = "tests/media/ground_truth.mp4")]
    pub source: PathBuf,
    /// The Python that draws the plot (default: the bench venv).
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// Write the CSV and summary only.
    #[arg(long)]
    pub no_plot: bool,
}

impl Options {
    fn warmup_secs(&self) -> f64 {
        self.warmup_mins
            .unwrap_or_else(|| (self.hours * 60.0 / 4.0).min(30.0))
            * 60.0
    }

    fn check(&self) -> anyhow::Result<()> {
        if !(self.hours > 0.0 && self.hours <= 24.0 * 30.0) {
            bail!(
                "--hours must be above 0 and at most 720, not {}",
                self.hours
            );
        }
        if self.cameras == 0 || self.camera_secs.is_empty() || self.camera_secs.contains(&0) {
            bail!("--cameras and every --camera-secs must be above zero");
        }
        if self.sample_secs == 0 || self.churn_secs == 0 {
            bail!("--sample-secs and --churn-secs must be above zero");
        }
        if !self.source.is_file() {
            bail!(
                "the source clip {} is missing (run from the checkout, or pass --source)",
                self.source.display()
            );
        }
        Ok(())
    }
}

/// Runs the soak and writes its report; returns the samples.
pub async fn run(o: &Options, python: &Path) -> anyhow::Result<Vec<Sample>> {
    o.check()?;
    std::fs::create_dir_all(&o.out).with_context(|| format!("creating {}", o.out.display()))?;
    let out = o.out.canonicalize()?;
    let clips = camera_clips(o, &out.join("clips"))?;
    let mounts: Vec<(String, &Path)> = (0..o.cameras)
        .map(|i| (format!("cam{i}"), clips[i % clips.len()].as_path()))
        .collect();
    let refs: Vec<(&str, &Path)> = mounts.iter().map(|(m, p)| (m.as_str(), *p)).collect();
    let server = RtspServer::serve_files(0, &refs).map_err(anyhow::Error::msg)?;
    let hook = Webhooks::start().await?;
    let port = free_port()?;
    let state = out.join("state");
    let _ = std::fs::remove_dir_all(&state);
    let conf = out.join("sightline.toml");
    std::fs::write(&conf, config(o, &server, port, &state, &hook.url))?;
    let exe = std::env::current_exe().context("finding the sightline executable")?;
    let log = std::fs::File::create(out.join("sightline.log"))?;
    let mut child = Command::new(exe)
        .args(["run", "--config"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting sightline run")?;
    let result = watch(o, &out, &mut child, port, hook, &state).await;
    stop(&mut child);
    let samples = result?;
    report(o, &out, &samples, python)?;
    Ok(samples)
}

/// Samples and churns until the run's time is up.
async fn watch(
    o: &Options,
    out: &Path,
    child: &mut Child,
    port: u16,
    mut hook: Webhooks,
    state: &Path,
) -> anyhow::Result<Vec<Sample>> {
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}/");
    let metrics = format!("{base}metrics");
    wait_ready(&http, &metrics, child).await?;
    let key = std::fs::read_to_string(state.join("api-key"))
        .with_context(|| format!("reading the daemon's key in {}", state.display()))?;
    let mut churn = Churn::new(&base, key.trim(), &hook.url);
    let streams: Vec<String> = (0..o.cameras).map(|i| format!("cam{i}")).collect();
    churn.index_cameras(&streams).await?;
    let csv_path = out.join("soak.csv");
    let mut csv = probe::COLUMNS.join(",") + "\n";
    std::fs::write(&csv_path, &csv)?;
    let (t0, until) = (
        Instant::now(),
        Instant::now() + Duration::from_secs_f64(o.hours * 3600.0),
    );
    let mut sample_tick = tokio::time::interval(Duration::from_secs(o.sample_secs));
    let mut churn_tick = tokio::time::interval(Duration::from_secs(o.churn_secs));
    churn_tick.tick().await;
    let (mut samples, mut delivered) = (Vec::new(), 0u64);
    println!(
        "soak: {} cameras for {} h into {}",
        o.cameras,
        o.hours,
        out.display()
    );
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    while Instant::now() < until {
        tokio::select! {
            _ = &mut interrupted => {
                println!("soak: interrupted; stopping the daemon and writing what was sampled");
                break;
            }
            _ = churn_tick.tick() => churn.step().await,
            _ = sample_tick.tick() => {
                if let Some(status) = child.try_wait()? {
                    bail!("sightline exited during the soak ({status}); see {}/sightline.log", out.display());
                }
                while hook.rx.try_recv().is_ok() {
                    delivered += 1;
                }
                let mut s = Sample { secs: t0.elapsed().as_secs_f64(), ..Sample::default() };
                s.read_process(child.id(), state, &state.join("recordings"));
                if let Ok(r) = http.get(&metrics).send().await {
                    s.read_metrics(&r.text().await.unwrap_or_default());
                }
                (s.deliveries, s.api_calls, s.api_errors) =
                    (delivered as f64, churn.calls as f64, churn.errors as f64);
                csv += &(s.csv() + "\n");
                std::fs::write(&csv_path, &csv)?;
                println!(
                    "{:>7.0} s  rss {:>6.1} MB  fds {:>4}  threads {:>4}  db {:>6.2} MB  wal {:>6.2} MB  recording {:>7.1} MB  delivered {}",
                    s.secs, s.rss_mb, s.fds, s.threads, s.db_mb, s.wal_mb, s.recording_mb, delivered
                );
                samples.push(s);
            }
        }
    }
    if let Some(e) = &churn.last_error {
        println!("soak: the last API error was {e}");
    }
    Ok(samples)
}

/// One clip per distinct `--camera-secs`: 10 s slots of the real still,
/// with people walking in every fifth slot.
fn camera_clips(o: &Options, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let plans: Vec<(PathBuf, Vec<(Slot, u32)>)> = o
        .camera_secs
        .iter()
        .map(|&secs| {
            let slots = (0..secs.div_ceil(10))
                .map(|j| {
                    let slot = if j % 5 == 2 {
                        Slot::Walking
                    } else {
                        Slot::Still
                    };
                    (slot, (secs - j * 10).min(10))
                })
                .collect();
            (dir.join(format!("soak-{secs}s.mp4")), slots)
        })
        .collect();
    std::fs::create_dir_all(dir)?;
    println!("building the soak clips (cached in {})", dir.display());
    clips::build_missing(&o.source, &plans, clips::Resolution::MAIN)?;
    Ok(plans.into_iter().map(|(p, _)| p).collect())
}

fn config(o: &Options, server: &RtspServer, port: u16, state: &Path, hook: &str) -> String {
    let even: Vec<String> = (0..o.cameras)
        .step_by(2)
        .map(|i| format!("\"cam{i}\""))
        .collect();
    let mut text = format!(
        "[runtime]\nworkers = 2\nintra_threads = 1\nstats_interval_secs = 0\n\
         [api]\nlisten = \"127.0.0.1:{port}\"\nmetrics_public = true\n\
         [state]\ndir = \"{}\"\n\
         [recording]\nmax_gb = {}\nclip_days = {}\nmin_free_mb = 1\n\
         [webhook]\nallow_private = [\"127.0.0.1/32\"]\n\
         [[events]]\nid = \"person\"\nprompt = \"Detect person\"\nlabel = \"person\"\n\
         [[events]]\nid = \"cup\"\nprompt = \"Detect cup\"\nlabel = \"cup\"\n\
         [[alerts]]\nid = \"people\"\nevent = \"person\"\ncallback_url = \"{hook}\"\n\
         [[alerts]]\nid = \"cups\"\nevent = \"cup\"\nstreams = [{}]\ncallback_url = \"{hook}\"\n",
        state.display(),
        o.max_gb,
        o.clip_days,
        even.join(", "),
    );
    for i in 0..o.cameras {
        text += &format!(
            "[[streams]]\nid = \"cam{i}\"\nurl = \"{}\"\nfps = {}\nrecord = true\nmax_backoff_secs = 2\n",
            server.url(&format!("cam{i}")),
            o.fps
        );
    }
    text
}

/// Writes `soak.md` and, unless told not to or without the venv, `soak.png`.
fn report(o: &Options, out: &Path, samples: &[Sample], python: &Path) -> anyhow::Result<()> {
    let md = out.join("soak.md");
    std::fs::write(&md, summary(o, samples))?;
    println!(
        "wrote {} and {}",
        out.join("soak.csv").display(),
        md.display()
    );
    if o.no_plot {
        return Ok(());
    }
    let csv = out.join("soak.csv").to_string_lossy().into_owned();
    let script = out.join("soak_plot.py");
    let warm = o.warmup_secs().to_string();
    super::report::draw(python, &script, PLOT, &[&csv, &warm], &out.join("soak.png"))
}

/// The markdown summary: the run, then each line's band and slopes.
pub fn summary(o: &Options, samples: &[Sample]) -> String {
    let warm = o.warmup_secs();
    let end = samples.last().map_or(0.0, |s| s.secs);
    let mut md = format!(
        "# Soak\n\n{} cameras (footage of {:?} s, then a reconnect), {} fps, both default models, \
         recording under max_gb = {} with clip_days = {}, an API call every {} s; {:.2} h sampled every {} s \
         ({} samples). Bands and the first slope leave out the first {:.1} min; the late slope \
         is over the second half.\n\n\
         | line | min | max | last | slope per hour | late slope per hour |\n\
         |---|---:|---:|---:|---:|---:|\n",
        o.cameras,
        o.camera_secs,
        o.fps,
        o.max_gb,
        o.clip_days,
        o.churn_secs,
        end / 3600.0,
        o.sample_secs,
        samples.len(),
        warm / 60.0,
    );
    let f = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:+.2}"));
    for l in probe::lines(samples, warm) {
        md += &format!(
            "| {} | {:.2} | {:.2} | {:.2} | {} | {} |\n",
            l.column,
            l.min,
            l.max,
            l.last,
            f(l.slope_per_hour),
            f(l.late_slope_per_hour)
        );
    }
    md
}
