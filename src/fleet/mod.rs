//! A site of boxes as one (`[fleet]`), on a NATS JetStream cluster:
//!
//! - `catalog.rs`: streams, indexes, events and alerts live in one
//!   replicated key-value bucket; every box writes through it with the
//!   revision it last saw (a lost update becomes a 409) and follows it.
//! - `place.rs`: each box announces itself every 2 s in a bucket whose
//!   entries expire; each camera is held by one box through a lease; every
//!   box works out the same placement (`plan.rs`) and claims, renews or
//!   releases its own leases.
//! - `deliver.rs`: alert messages go through one replicated stream that
//!   every box delivers from, so a box's death loses none in flight.
//! - `feed.rs`: WebSocket messages of every box reach clients on any box,
//!   with one `seq` across the site.
//! - `ask.rs`: a search or backtest asked of the box that runs the stream.
//! - `auth.rs`: credentials and TLS.
//!
//! The box keeps its own SQLite copy of the catalog and the set of streams
//! it ran last, so it starts and keeps its cameras while NATS is away.

mod ask;
mod auth;
mod catalog;
mod deliver;
mod feed;
mod keys;
mod place;
pub mod plan;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::{self, kv};
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::config::FleetConfig;
use crate::control::{Change, Engine, Health, Refusal, Site};

pub use auth::{parse as parse_credentials, probe, Credentials};
pub use deliver::{DeliveryStats, ACK_WAIT};
pub use keys::site_key;
pub use place::{last_placed, BoxStatus, Host};

/// How long a box's announcement lives without renewal: a box silent this
/// long is dead to the others, which take its cameras.
pub const BOX_TTL: Duration = Duration::from_secs(6);
/// How long a camera's lease lives without renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(10);
/// How often a box announces itself, renews its leases and re-plans.
pub const TICK: Duration = Duration::from_secs(1);

/// The site's buckets, once reachable.
struct Buckets {
    catalog: kv::Store,
    leases: kv::Store,
    boxes: kv::Store,
    /// Boxes an operator is draining (a key per box, no expiry).
    drains: kv::Store,
}

/// One camera's lease as the site last showed it: its holder, or `None`
/// once deleted or expired (kept so a late, older entry cannot revive it).
#[derive(Debug, Clone)]
struct Lease {
    holder: Option<String>,
    revision: u64,
    /// When this box last saw it written.
    seen: std::time::Instant,
}

impl Lease {
    /// Its holder while the lease is alive. One not written for longer than
    /// its TTL is over even if this box never saw it expire (after a NATS
    /// outage the expiry marker can be lost with the servers' last writes).
    fn current(&self) -> Option<&str> {
        self.holder
            .as_deref()
            .filter(|_| self.seen.elapsed() < LEASE_TTL)
    }
}

/// A lease's value in the bucket.
#[derive(Debug, Serialize, Deserialize)]
struct LeaseValue {
    #[serde(rename = "box")]
    holder: String,
}

/// A pause after the site failed to take a publish: while it lasts, the
/// box does the work itself instead of waiting on NATS once per message.
#[derive(Debug, Default)]
struct Pause(Mutex<Option<std::time::Instant>>);

impl Pause {
    /// How long a pause lasts.
    const LENGTH: Duration = Duration::from_secs(5);

    fn active(&self) -> bool {
        let until = self.0.lock().ok().and_then(|u| *u);
        until.is_some_and(|u| std::time::Instant::now() < u)
    }

    fn start(&self) {
        if let Ok(mut u) = self.0.lock() {
            *u = Some(std::time::Instant::now() + Self::LENGTH);
        }
    }
}

/// Counters `GET /metrics` and `sightline fleet status` show.
#[derive(Debug, Default)]
pub struct FleetStats {
    pub moves: std::sync::atomic::AtomicU64,
    pub renewals: std::sync::atomic::AtomicU64,
    pub claims: std::sync::atomic::AtomicU64,
    pub conflicts: std::sync::atomic::AtomicU64,
    /// From a silent box's last lease renewal to this box's claim of the
    /// camera (the failover time of each camera this box took over).
    pub failover_times: crate::metrics::Histogram,
    /// Requests from other boxes this box answered.
    pub answered: std::sync::atomic::AtomicU64,
}

/// This box's membership: what the API and the tasks share.
pub struct Shared {
    cfg: FleetConfig,
    api_url: Option<String>,
    state_dir: Option<PathBuf>,
    buckets: OnceLock<Buckets>,
    client: async_nats::Client,
    /// Catalog key → the revision this box last saw.
    revisions: Mutex<HashMap<String, u64>>,
    /// Stream → its lease.
    leases: Mutex<BTreeMap<String, Lease>>,
    /// Box → its last announcement and when this box received it.
    boxes: Mutex<BTreeMap<String, (BoxStatus, std::time::Instant)>>,
    /// Every box announced since this box started, live or not.
    seen: Mutex<std::collections::BTreeSet<String>>,
    /// Streams that fit on no live box at the last plan.
    unplaced: Mutex<Vec<String>>,
    /// Set once the leases and the boxes have been read as they stand.
    synced: (
        tokio::sync::watch::Sender<bool>,
        tokio::sync::watch::Sender<bool>,
    ),
    pub stats: FleetStats,
    /// Site delivery on this box.
    pub delivery: deliver::DeliveryStats,
    /// Whether an operator drains this box (read from the site each tick).
    draining: std::sync::atomic::AtomicBool,
}

/// A joined box: its shared state and its background task.
pub struct Member {
    pub shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Whether a write was refused because the key moved past the revision it
/// was based on. The server says so with a JetStream error the client
/// library does not always classify (it came as "other" from 2.15.1 here).
fn stale(e: &impl std::fmt::Display, classified: bool) -> bool {
    classified || e.to_string().contains("wrong last sequence")
}

fn key_of(c: &Change) -> String {
    format!("{}.{}", c.table.name(), c.id)
}

impl Site for Shared {
    fn publish<'a>(&'a self, changes: &'a [Change]) -> BoxFuture<'a, Result<(), Refusal>> {
        Box::pin(catalog::publish(self, changes))
    }

    fn owner(&self, stream: &str) -> Option<String> {
        let holder = self.leases.lock().ok()?.get(stream)?.current()?.to_string();
        let live = self.boxes().contains_key(&holder);
        (live || holder == self.cfg.box_id).then_some(holder)
    }

    fn box_id(&self) -> &str {
        &self.cfg.box_id
    }

    fn remote_health(&self, stream: &str) -> Option<Health> {
        let owner = self.owner(stream)?;
        self.boxes().get(&owner)?.streams.get(stream).cloned()
    }

    fn drain<'a>(&'a self, box_id: &'a str, on: bool) -> BoxFuture<'a, Result<(), Refusal>> {
        Box::pin(async move {
            let b = self.buckets.get().ok_or_else(|| {
                Refusal::Unavailable("the site's NATS servers are not reachable".into())
            })?;
            if on && !self.boxes().contains_key(box_id) {
                return Err(Refusal::NotFound(format!(
                    "no live box {box_id:?} in site {}",
                    self.cfg.site
                )));
            }
            let done = match on {
                true => b
                    .drains
                    .put(box_id, "{}".into())
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                false => b.drains.delete(box_id).await.map_err(|e| e.to_string()),
            };
            done.map_err(|e| Refusal::Unavailable(format!("recording the drain of {box_id}: {e}")))
        })
    }

    fn ask<'a>(
        &'a self,
        box_id: &'a str,
        request: (&'a str, &'a str),
        body: bytes::Bytes,
    ) -> BoxFuture<'a, Result<(u16, bytes::Bytes), Refusal>> {
        Box::pin(ask::ask(self, box_id, request, body))
    }

    fn origins(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .boxes()
            .into_values()
            .filter(|b| b.box_id != self.cfg.box_id)
            .filter_map(|b| url::Url::parse(b.api_url.as_deref()?).ok())
            .map(|u| u.origin().ascii_serialization())
            .filter(|o| o != "null")
            .collect();
        all.sort();
        all.dedup();
        all
    }

    fn site_boxes(&self) -> (Vec<String>, Vec<String>) {
        let mut live: Vec<String> = self.boxes().into_keys().collect();
        if !live.contains(&self.cfg.box_id) {
            live.push(self.cfg.box_id.clone());
        }
        live.sort();
        let seen = self.seen.lock().map(|s| s.clone()).unwrap_or_default();
        let silent = seen.into_iter().filter(|b| !live.contains(b)).collect();
        (live, silent)
    }

    fn histograms(&self) -> Vec<(&'static str, &'static str, crate::metrics::Snapshot)> {
        vec![
            (
                "sightline_fleet_failover_seconds",
                "From a silent box's last lease renewal to this box taking the camera over.",
                self.stats.failover_times.snapshot(),
            ),
            (
                "sightline_fleet_publish_seconds",
                "Handing an alert message to the site's stream, until the stream acknowledged it.",
                self.delivery.publish_times.snapshot(),
            ),
        ]
    }

    fn report(&self) -> serde_json::Value {
        let boxes: Vec<serde_json::Value> = self
            .boxes()
            .into_values()
            .map(|b| {
                serde_json::json!({
                    "box_id": b.box_id,
                    "capacity": b.capacity,
                    "cameras": b.streams.len(),
                    "labels": b.labels,
                    "draining": b.draining,
                    "api_url": b.api_url,
                    "version": b.version,
                })
            })
            .collect();
        let cameras: Vec<serde_json::Value> = self
            .leases
            .lock()
            .map(|l| {
                l.iter()
                    .filter_map(|(s, l)| {
                        Some(serde_json::json!({
                            "stream_id": s,
                            "box_id": l.holder.clone()?,
                            "lease_age_secs": (l.seen.elapsed().as_secs_f64() * 10.0).round() / 10.0,
                        }))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let n = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        serde_json::json!({
            "site": self.cfg.site,
            "box_id": self.cfg.box_id,
            "capacity": self.cfg.capacity,
            "nats": {"servers": self.cfg.nats, "connected": self.connected()},
            "boxes": boxes,
            "cameras": cameras,
            "unplaced": self.unplaced(),
            "counters": {
                "moves": n(&self.stats.moves),
                "claims": n(&self.stats.claims),
                "renewals": n(&self.stats.renewals),
                "conflicts": n(&self.stats.conflicts),
                "answered": n(&self.stats.answered),
            },
            "delivery": self.delivery.report(),
        })
    }
}

impl Shared {
    /// This box's settings.
    pub fn config(&self) -> &FleetConfig {
        &self.cfg
    }

    /// How many NATS servers the site has, as far as this box can tell.
    fn servers(&self) -> usize {
        (self.cfg.nats.len()).max(self.client.server_info().connect_urls.len())
    }

    /// Whether the site's buckets are open and the connection is up.
    pub fn connected(&self) -> bool {
        self.buckets.get().is_some()
            && self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// The live boxes' last announcements.
    ///
    /// A box counts as live while its announcements keep arriving: an entry
    /// not renewed within [`BOX_TTL`] is dropped here even when no expiry
    /// marker reached this box (after a NATS outage, a replica restored
    /// from disk can replay an announcement of a box long dead).
    pub fn boxes(&self) -> BTreeMap<String, BoxStatus> {
        self.boxes
            .lock()
            .map(|b| {
                b.iter()
                    .filter(|(_, (_, seen))| seen.elapsed() < BOX_TTL)
                    .map(|(k, (s, _))| (k.clone(), s.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Streams that fit on no live box.
    pub fn unplaced(&self) -> Vec<String> {
        self.unplaced.lock().map(|u| u.clone()).unwrap_or_default()
    }
}

/// Bucket names carry the site's name so sites can share a cluster.
fn bucket(site: &str, what: &str) -> String {
    format!("sightline_{site}_{what}")
}

/// One of the site's buckets (`what`), created if absent: one value per
/// key, three replicas when the cluster has three servers or more, entries
/// expiring after `max_age` (zero: never) with a delete marker watchers see.
async fn open_bucket(
    js: &jetstream::Context,
    cfg: &FleetConfig,
    servers: usize,
    (what, max_age): (&str, Duration),
) -> anyhow::Result<kv::Store> {
    let name = bucket(&cfg.site, what);
    if let Ok(s) = js.get_key_value(name.clone()).await {
        return Ok(s);
    }
    js.create_key_value(kv::Config {
        bucket: name.clone(),
        history: 1,
        max_age,
        num_replicas: if servers >= 3 { 3 } else { 1 },
        limit_markers: (!max_age.is_zero()).then_some(Duration::from_secs(1)),
        ..Default::default()
    })
    .await
    .with_context(|| format!("creating bucket {name}"))
}

/// Opens the site's catalog, leases and boxes buckets.
async fn open_buckets(
    js: &jetstream::Context,
    cfg: &FleetConfig,
    servers: usize,
) -> anyhow::Result<Buckets> {
    let open = |spec| open_bucket(js, cfg, servers, spec);
    Ok(Buckets {
        catalog: open(("catalog", Duration::ZERO)).await?,
        leases: open(("leases", LEASE_TTL)).await?,
        boxes: open(("boxes", BOX_TTL)).await?,
        drains: open(("drains", Duration::ZERO)).await?,
    })
}

/// Connects to the site's NATS servers; a bad credentials file stops the
/// daemon with a clear error.
async fn connect(
    cfg: FleetConfig,
    api_url: Option<String>,
    state_dir: Option<PathBuf>,
) -> anyhow::Result<Arc<Shared>> {
    let options = auth::options(&cfg)?;
    let client = options
        .connect(cfg.nats.clone())
        .await
        .with_context(|| format!("connecting to NATS at {}", cfg.nats.join(", ")))?;
    Ok(Arc::new(Shared {
        cfg,
        api_url,
        state_dir,
        buckets: OnceLock::new(),
        client,
        revisions: Mutex::default(),
        leases: Mutex::default(),
        boxes: Mutex::default(),
        seen: Mutex::default(),
        unplaced: Mutex::default(),
        synced: (
            tokio::sync::watch::Sender::new(false),
            tokio::sync::watch::Sender::new(false),
        ),
        stats: FleetStats::default(),
        delivery: deliver::DeliveryStats::default(),
        draining: Default::default(),
    }))
}

/// Joins the site: checks the credentials, connects in the background,
/// follows the site, places cameras, and delivers alerts through it.
/// `local`: this box's API on the loopback and its key, to answer other
/// boxes' requests.
pub async fn join(
    cfg: FleetConfig,
    engine: &Arc<Engine>,
    (api_url, local): (Option<String>, Option<(String, String)>),
    state_dir: Option<PathBuf>,
) -> anyhow::Result<Member> {
    let shared = connect(cfg, api_url, state_dir).await?;
    engine.join_site(Arc::clone(&shared) as Arc<dyn Site>);
    let dispatcher = Arc::clone(engine.dispatcher());
    dispatcher.set_site(Arc::new(deliver::SiteOutbox::new(Arc::clone(&shared))));
    let host = Arc::clone(engine) as Arc<dyn Host>;
    let mut tasks = vec![
        tokio::spawn(run(Arc::clone(&shared), host, Some(Arc::clone(engine)))),
        tokio::spawn(deliver::serve(Arc::clone(&shared), dispatcher)),
    ];
    tasks.extend(feed::start(&shared, engine.hub()));
    if let Some(local) = local {
        tasks.push(tokio::spawn(ask::answer(Arc::clone(&shared), local)));
    }
    Ok(Member { shared, tasks })
}

/// Joins the site for placement only: no catalog, no delivery; `host` says
/// which cameras the site wants and runs what it is given. The fleet
/// bench's many light boxes are such members.
pub async fn join_placement(cfg: FleetConfig, host: Arc<dyn Host>) -> anyhow::Result<Member> {
    let shared = connect(cfg, None, None).await?;
    let tasks = vec![tokio::spawn(run(Arc::clone(&shared), host, None))];
    Ok(Member { shared, tasks })
}

/// Waits for the site's buckets, then follows the catalog, the leases and
/// the boxes, and places cameras every tick.
async fn run(shared: Arc<Shared>, host: Arc<dyn Host>, engine: Option<Arc<Engine>>) {
    let js = jetstream::new(shared.client.clone());
    let servers = shared.servers();
    let buckets = loop {
        match open_buckets(&js, &shared.cfg, servers).await {
            Ok(b) => break b,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "the site's buckets are not reachable yet; running the last known cameras");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    };
    let _ = shared.buckets.set(buckets);
    tracing::info!(site = %shared.cfg.site, box_id = %shared.cfg.box_id, "joined the site");
    let mut followers = Followers(vec![
        tokio::spawn(place::follow_leases(Arc::clone(&shared))),
        tokio::spawn(place::follow_boxes(Arc::clone(&shared))),
    ]);
    if let Some(e) = engine {
        let follow = catalog::follow(Arc::clone(&shared), e);
        followers.0.push(tokio::spawn(follow));
    }
    place::tick(&shared, host.as_ref()).await;
}

/// Tasks that end with the task that started them, also when it is
/// aborted.
struct Followers(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Followers {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

impl Member {
    /// Stops at once without handing anything back, as a power cut would
    /// (the fleet bench's dead box).
    pub fn kill(self) {
        for t in &self.tasks {
            t.abort();
        }
    }

    /// Leaves the site at shutdown: stops placing, hands this box's
    /// cameras back at once (deletes its leases and its announcement) so
    /// other boxes need not wait for them to expire.
    pub async fn leave(self) {
        for t in &self.tasks {
            t.abort();
        }
        let _ =
            tokio::time::timeout(Duration::from_secs(3), place::release_all(&self.shared)).await;
    }
}
