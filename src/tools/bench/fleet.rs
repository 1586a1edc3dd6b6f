//! `sightline bench fleet`: many boxes of one site on a real three-server
//! NATS JetStream cluster, to see how placement scales past what one
//! machine can decode.
//!
//! Each box is the daemon's own placement code (`fleet::join_placement`:
//! announcements, leases, the plan, on its own NATS connection) on a light
//! host that runs nothing: its "cameras" are names it is told to run. So
//! 50 boxes and 1,000 cameras fit on two cores, and what is measured is the
//! coordination itself: the time to converge from cold (every camera run by
//! exactly one live box), the time to re-place a dead box's cameras, and
//! the messages per second the NATS servers carry once the site is steady.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::future::BoxFuture;

use crate::config::FleetConfig;
use crate::control::Health;
use crate::fleet::plan::Want;
use crate::fleet::{Host, Member};
use crate::tools::nats::Cluster;

const USER: &str = "bench";
const PASSWORD: &str = "fleet-bench-password";

/// `sightline bench fleet`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Boxes in the site.
    #[arg(long, default_value_t = 50)]
    pub boxes: usize,
    /// Cameras in the site.
    #[arg(long, default_value_t = 1000)]
    pub cameras: usize,
    /// Cameras each box takes (default: room for the cameras with one box
    /// dead, plus a quarter).
    #[arg(long)]
    pub capacity: Option<usize>,
    /// Seconds of steady running over which NATS traffic is counted.
    #[arg(long, default_value_t = 10)]
    pub steady_secs: u64,
    /// Where the NATS servers keep their files and the table goes.
    #[arg(long, default_value = "target/bench/fleet")]
    pub out: PathBuf,
}

/// A box that runs nothing: it remembers the cameras it is given.
struct Light {
    wants: Vec<Want>,
    running: Mutex<HashSet<String>>,
}

impl Host for Light {
    fn wants(&self) -> BoxFuture<'_, Vec<Want>> {
        Box::pin(async move { self.wants.clone() })
    }

    fn running(&self) -> BTreeMap<String, Health> {
        let up = Health {
            up: true,
            ..Health::default()
        };
        let r = self.running.lock().map(|r| r.clone()).unwrap_or_default();
        r.into_iter().map(|s| (s, up.clone())).collect()
    }

    fn run_only(&self, streams: HashSet<String>) -> BoxFuture<'_, ()> {
        if let Ok(mut r) = self.running.lock() {
            *r = streams;
        }
        Box::pin(async {})
    }
}

/// The figures of one run.
#[derive(Debug)]
pub struct Figures {
    pub converge: Duration,
    pub replace: Duration,
    pub dead_box_cameras: usize,
    pub messages_in_per_sec: f64,
    pub messages_out_per_sec: f64,
}

/// Whether every camera runs on exactly one of `hosts`, none over
/// `capacity`.
fn converged(hosts: &[&Light], cameras: usize, capacity: usize) -> bool {
    let mut seen = HashSet::new();
    for h in hosts {
        let r = h.running.lock().map(|r| r.clone()).unwrap_or_default();
        if r.len() > capacity || r.iter().any(|s| !seen.insert(s.clone())) {
            return false;
        }
    }
    seen.len() == cameras
}

async fn wait_converged(hosts: &[&Light], cameras: usize, capacity: usize) -> anyhow::Result<()> {
    let until = Instant::now() + Duration::from_secs(300);
    while !converged(hosts, cameras, capacity) {
        if Instant::now() > until {
            bail!("the site did not converge within 300 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Runs the simulation and prints (and writes) its table.
pub async fn run(o: &Options) -> anyhow::Result<Figures> {
    if o.boxes < 2 || o.cameras == 0 {
        bail!("--boxes must be 2 or more and --cameras 1 or more");
    }
    let capacity = o
        .capacity
        .unwrap_or_else(|| (o.cameras.div_ceil(o.boxes - 1) * 5).div_ceil(4));
    let _ = std::fs::remove_dir_all(&o.out);
    let cluster = Cluster::start(3, &o.out.join("nats"), (USER, PASSWORD))?;
    cluster.ready().await?;
    let creds = o.out.join("credentials");
    write_credentials(&creds)?;
    let wants: Vec<Want> = (0..o.cameras)
        .map(|i| Want {
            stream: format!("cam-{i:04}"),
            pin: None,
        })
        .collect();
    println!(
        "{} boxes of capacity {capacity}, {} cameras, on 3 NATS servers",
        o.boxes, o.cameras
    );
    let started = Instant::now();
    let mut members: Vec<Option<Member>> = Vec::new();
    let mut hosts: Vec<Arc<Light>> = Vec::new();
    for i in 0..o.boxes {
        let host = Arc::new(Light {
            wants: wants.clone(),
            running: Mutex::default(),
        });
        let cfg = FleetConfig {
            nats: cluster.urls(),
            credentials: creds.clone(),
            tls_ca: None,
            site: "bench".into(),
            box_id: format!("box-{i:02}"),
            capacity,
            labels: Vec::new(),
        };
        let member = crate::fleet::join_placement(cfg, Arc::clone(&host) as Arc<dyn Host>)
            .await
            .with_context(|| format!("box {i} joining"))?;
        members.push(Some(member));
        hosts.push(host);
    }
    let all: Vec<&Light> = hosts.iter().map(Arc::as_ref).collect();
    wait_converged(&all, o.cameras, capacity).await?;
    let converge = started.elapsed();
    println!("converged from cold in {converge:.1?}");

    let (in0, out0) = cluster.messages().await?;
    tokio::time::sleep(Duration::from_secs(o.steady_secs)).await;
    let (in1, out1) = cluster.messages().await?;
    let secs = o.steady_secs.max(1) as f64;
    let (min, mout) = ((in1 - in0) as f64 / secs, (out1 - out0) as f64 / secs);
    println!("steady: {min:.0} messages/s into the servers, {mout:.0} out");

    // A power cut on the busiest box.
    let victim = (0..hosts.len())
        .max_by_key(|&i| hosts[i].running.lock().map_or(0, |r| r.len()))
        .unwrap_or(0);
    let lost = hosts[victim].running.lock().map_or(0, |r| r.len());
    if let Some(m) = members[victim].take() {
        m.kill();
    }
    let killed = Instant::now();
    let alive: Vec<&Light> = (0..hosts.len())
        .filter(|&i| i != victim)
        .map(|i| hosts[i].as_ref())
        .collect();
    wait_converged(&alive, o.cameras, capacity).await?;
    let replace = killed.elapsed();
    println!("box {victim:02} killed: its {lost} cameras re-placed in {replace:.1?}");
    for m in members.into_iter().flatten() {
        m.leave().await;
    }
    let f = Figures {
        converge,
        replace,
        dead_box_cameras: lost,
        messages_in_per_sec: min,
        messages_out_per_sec: mout,
    };
    write_table(o, capacity, &f)?;
    Ok(f)
}

/// A three-server NATS cluster under `dir` for `sightline bench`'s
/// in-a-site runs: the cluster (kept running while held), its URLs and a
/// credentials file.
pub async fn site(dir: &std::path::Path) -> anyhow::Result<(Cluster, (Vec<String>, PathBuf))> {
    let _ = std::fs::remove_dir_all(dir);
    let cluster = Cluster::start(3, &dir.join("nats"), (USER, PASSWORD))?;
    cluster.ready().await?;
    let creds = dir.join("credentials");
    write_credentials(&creds)?;
    let urls = cluster.urls();
    Ok((cluster, (urls, creds)))
}

fn write_credentials(path: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, format!("{USER}:{PASSWORD}\n"))
        .with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod 600 {}", path.display()))
}

fn write_table(o: &Options, capacity: usize, f: &Figures) -> anyhow::Result<()> {
    let table = format!(
        "| boxes | cameras | capacity | converge from cold | re-place a dead box's cameras | NATS messages/s in | out |\n\
         |---|---|---|---|---|---|---|\n\
         | {} | {} | {capacity} | {:.1} s | {:.1} s ({} cameras) | {:.0} | {:.0} |\n",
        o.boxes,
        o.cameras,
        f.converge.as_secs_f64(),
        f.replace.as_secs_f64(),
        f.dead_box_cameras,
        f.messages_in_per_sec,
        f.messages_out_per_sec,
    );
    let path = o.out.join("fleet.md");
    std::fs::write(&path, &table).with_context(|| format!("writing {}", path.display()))?;
    println!("\n{table}\nwritten to {}", path.display());
    Ok(())
}
