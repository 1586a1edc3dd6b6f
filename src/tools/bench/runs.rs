//! One measured run of one system: sightline as a child process (`sightline
//! run` on a generated config, read through its `/metrics`), or the Python
//! peer (its JSON summary). Both watch the same RTSP mounts at 2 fps and
//! post positive frames to a webhook; latency is frame arrival → receipt.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail, Context};
use serde::Serialize;

use crate::tools::webhooks::{latency_ms, Webhooks};

/// Sampled frames per second per camera, for both systems.
pub const FPS: f64 = 2.0;

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum System {
    /// sightline decoding keyframes only (the keyframes the
    /// compressed-domain gate lets through).
    Keyframes,
    /// sightline decoding every keyframe, the pixel gate alone judging
    /// motion (`motion.compressed = false`): what the compressed stage saves.
    KeyframesPixel,
    /// As `keyframes`, with the person model's calibrated int8 weights
    /// (`precision = "int8"`).
    KeyframesInt8,
    /// sightline decoding every frame (the peer's work).
    Full,
    /// The do-it-yourself Python peer (OpenCV, onnxruntime, HTTP POST).
    Peer,
    /// sightline decoding keyframes as one box of a site (`[fleet]` on a
    /// three-server NATS cluster): its alerts go through the site's stream.
    Fleet,
}

impl System {
    pub fn name(self) -> &'static str {
        match self {
            System::Keyframes => "sightline keyframes",
            System::KeyframesPixel => "sightline keyframes, pixel gate only",
            System::KeyframesInt8 => "sightline keyframes, int8 model",
            System::Full => "sightline full decode",
            System::Peer => "python peer",
            System::Fleet => "sightline keyframes, in a site",
        }
    }
}

/// One run's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub workload: &'static str,
    pub system: &'static str,
    pub streams: usize,
    pub secs: f64,
    pub wanted_per_s: f64,
    pub scored_per_s: f64,
    pub skipped_per_s: f64,
    /// Keyframes the compressed-domain gate left undecoded, per second.
    pub undecoded_per_s: f64,
    /// (scored + skipped for no motion + undecoded) / wanted.
    pub accounted: f64,
    pub dropped: u64,
    pub alerts: usize,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub cpu_cores: f64,
    /// CPU time spent per frame accounted for, in milliseconds.
    pub cpu_ms_per_frame: Option<f64>,
    pub rss_mb: f64,
}

/// Where a run finds its parts.
pub struct Setup<'a> {
    pub exe: &'a Path,
    pub python: &'a Path,
    pub peer: &'a Path,
    pub model_file: &'a Path,
    pub rtsp_prefix: &'a str,
    pub dir: &'a Path,
    /// The NATS servers and credentials file of [`System::Fleet`] runs.
    pub fleet: Option<&'a (Vec<String>, PathBuf)>,
}

/// sightline on `streams` cameras for `secs`, counted from when its API
/// answers (the models are loaded by then).
pub async fn sightline(
    s: &Setup<'_>,
    system: System,
    streams: usize,
    secs: u64,
) -> anyhow::Result<(f64, Counters, Vec<f64>, Usage)> {
    let mut hook = Webhooks::start().await?;
    let port = free_port()?;
    let state = s.dir.join(format!("state-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let conf = s.dir.join("sightline.toml");
    let text = config(s, system, streams, port, &state, &hook.url);
    std::fs::write(&conf, text).with_context(|| format!("writing {}", conf.display()))?;
    let log = std::fs::File::create(s.dir.join("sightline.log"))?;
    let mut child = Command::new(s.exe)
        .args(["run", "--config"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting sightline run")?;
    let metrics = format!("http://127.0.0.1:{port}/metrics");
    let http = reqwest::Client::new();
    let first = match wait_ready(&http, &metrics, &mut child).await {
        Ok(c) => c,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
    };
    let pid = child.id().to_string();
    let (t0, cpu0, since) = (Instant::now(), cpu_secs(&pid), SystemTime::now());
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let last = scrape(&http, &metrics).await;
    let wall = t0.elapsed().as_secs_f64();
    let usage = Usage {
        cpu_cores: (cpu_secs(&pid) - cpu0) / wall,
        rss_mb: peak_rss_mb(&pid),
    };
    let until = SystemTime::now();
    stop(&mut child);
    let _ = std::fs::remove_dir_all(&state);
    let last = last?;
    let mut lat = Vec::new();
    while let Ok((body, at)) = hook.rx.try_recv() {
        if at >= since && at <= until {
            lat.extend(latency_ms(&body, at));
        }
    }
    Ok((wall, last.minus(&first), lat, usage))
}

fn config(
    s: &Setup<'_>,
    system: System,
    streams: usize,
    port: u16,
    state: &Path,
    hook: &str,
) -> String {
    // One model, the peer's; short occurrences (a new one each second a
    // person stays in view) so alerts keep coming, as the peer posts one
    // per positive frame.
    let mut text = format!(
        "[runtime]\nworkers = 2\nintra_threads = 1\nstats_interval_secs = 0\n\
         [api]\nlisten = \"127.0.0.1:{port}\"\nmetrics_public = true\n\
         [state]\ndir = \"{}\"\nmin_free_mb = 1\n\
         [webhook]\nallow_private = [\"127.0.0.1/32\"]\n\
         [[models]]\nname = \"person\"\npath = \"{}\"\n{}\
         [[events]]\nid = \"person\"\nprompt = \"person\"\nk = 1\nwindow = 1\nend_after = 1\n\
         max_duration_secs = 1\ncooldown_secs = 0\n\
         [[alerts]]\nid = \"bench\"\nevent = \"person\"\nsend_end = false\ncallback_url = \"{hook}\"\n",
        state.display(),
        s.model_file.parent().unwrap_or(Path::new(".")).display(),
        // The other systems run whatever the model folder defaults to.
        if system == System::KeyframesInt8 {
            "precision = \"int8\"\n"
        } else {
            ""
        },
    );
    for i in 0..streams {
        text += &format!(
            "[[streams]]\nid = \"cam{i}\"\nurl = \"{}{i}\"\nfps = {FPS}\nkeyframes_only = {}\n\
             motion = {{ compressed = {} }}\n",
            s.rtsp_prefix,
            system != System::Full,
            system != System::KeyframesPixel,
        );
    }
    if let (System::Fleet, Some((nats, creds))) = (system, s.fleet) {
        // A site of its own per run: a run with other cameras must not
        // inherit the catalog of the one before.
        let site = format!("bench{}", port);
        let urls: Vec<String> = nats.iter().map(|u| format!("\"{u}\"")).collect();
        text += &format!(
            "[fleet]\nnats = [{}]\ncredentials = \"{}\"\nsite = \"{site}\"\nbox_id = \"bench\"\ncapacity = {streams}\n",
            urls.join(", "),
            creds.display()
        );
    }
    text
}

/// The frame counters of one `/metrics` scrape, summed over streams.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    pub scored: f64,
    pub skipped: f64,
    pub undecoded: f64,
    pub dropped: f64,
}

impl Counters {
    fn minus(&self, o: &Counters) -> Counters {
        Counters {
            scored: self.scored - o.scored,
            skipped: self.skipped - o.skipped,
            undecoded: self.undecoded - o.undecoded,
            dropped: self.dropped - o.dropped,
        }
    }

    fn parse(text: &str) -> Counters {
        let mut c = Counters::default();
        for (name, value) in samples(text) {
            match name {
                "sightline_frames_scored_total" => c.scored += value,
                "sightline_frames_skipped_no_motion_total" => c.skipped += value,
                "sightline_keyframes_undecoded_total" => c.undecoded += value,
                "sightline_frames_dropped_total" => c.dropped += value,
                _ => {}
            }
        }
        c
    }
}

/// Each sample of a `/metrics` exposition as (metric name, value), labels
/// dropped (callers sum over them); comments skipped.
pub(super) fn samples(text: &str) -> impl Iterator<Item = (&str, f64)> {
    text.lines().filter(|l| !l.starts_with('#')).map(|line| {
        let name = line.split(['{', ' ']).next().unwrap_or("");
        let value = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        (name, value)
    })
}

async fn scrape(http: &reqwest::Client, url: &str) -> anyhow::Result<Counters> {
    let r = http.get(url).send().await?.error_for_status()?;
    Ok(Counters::parse(&r.text().await?))
}

pub(super) async fn wait_ready(
    http: &reqwest::Client,
    url: &str,
    child: &mut Child,
) -> anyhow::Result<Counters> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(c) = scrape(http, url).await {
            return Ok(c);
        }
        if let Some(status) = child.try_wait()? {
            bail!("sightline exited before its API answered ({status}); see sightline.log");
        }
        if Instant::now() > deadline {
            bail!("sightline's API did not answer within 90 s; see sightline.log");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub(super) fn stop(child: &mut Child) {
    // SAFETY: kill(2) on our own child's pid has no memory effects.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

pub(super) fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// CPU and memory of a process.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub cpu_cores: f64,
    pub rss_mb: f64,
}

/// CPU seconds (user + system) a process has used; `proc` is its entry
/// under /proc: a pid, `self`, or `self/task/<tid>` for one thread.
pub fn cpu_secs(proc: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{proc}/stat")).unwrap_or_default();
    let f: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime + stime, in clock ticks of 100 Hz.
    (ticks(11) + ticks(12)) / 100.0
}

/// Peak resident memory (VmHWM) of a process, in MB; `proc` as for [`cpu_secs`].
pub fn peak_rss_mb(proc: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{proc}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The peer's summary line (`python_peer.py` prints one JSON object).
#[derive(Debug, serde::Deserialize)]
pub struct PeerSummary {
    pub seconds: f64,
    pub scored_per_s: f64,
    pub dropped: u64,
    pub alerts: usize,
    pub cpu_cores: f64,
    pub rss_mb: f64,
    pub lat_p50_ms: Option<f64>,
    pub lat_p99_ms: Option<f64>,
}

/// The peer on `streams` cameras for `secs` (it times itself from when its
/// readers start; its model is loaded before).
pub fn peer(s: &Setup<'_>, streams: usize, secs: u64) -> anyhow::Result<PeerSummary> {
    let log = std::fs::File::create(s.dir.join("peer.log"))?;
    let out = Command::new(s.python)
        .arg(s.peer)
        .arg(s.model_file)
        .arg(s.rtsp_prefix)
        .arg(streams.to_string())
        .arg(secs.to_string())
        .arg(FPS.to_string())
        .stderr(log)
        .output()
        .with_context(|| format!("running {} {}", s.python.display(), s.peer.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .ok_or_else(|| anyhow!("the peer printed no summary ({}); see peer.log", out.status))?;
    serde_json::from_str(line).with_context(|| format!("the peer's summary {line}"))
}

/// p-quantile of `v` (nearest rank), None when empty.
pub fn quantile(v: &mut [f64], p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() - 1) as f64 * p).round() as usize;
    Some((v[i] * 10.0).round() / 10.0)
}

/// The model file the peer loads for the bundled person detector.
pub fn person_model() -> anyhow::Result<PathBuf> {
    let dir = crate::model::resolve_model_dir("ssdlite-person")?;
    Ok(dir.join("model.onnx"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_sum_every_stream_and_ignore_comments() {
        let text = "# HELP sightline_frames_scored_total x\n\
                    sightline_frames_scored_total{stream=\"a\"} 3\n\
                    sightline_frames_scored_total{stream=\"b\"} 4\n\
                    sightline_frames_skipped_no_motion_total{stream=\"a\"} 5\n\
                    sightline_frames_dropped_total{stream=\"a\",reason=\"stale\"} 1\n\
                    sightline_frames_dropped_total{stream=\"a\",reason=\"queue_full\"} 2\n\
                    sightline_keyframes_undecoded_total{stream=\"b\"} 6\n\
                    sightline_frames_total{stream=\"a\"} 99\n";
        let c = Counters::parse(text);
        assert_eq!((c.scored, c.skipped, c.dropped), (7.0, 5.0, 3.0));
        assert_eq!(c.undecoded, 6.0);
    }
}
