//! A site of boxes as one (`[fleet]`), on a NATS JetStream cluster:
//!
//! - `catalog.rs`: streams, indexes, events and alerts live in one
//!   replicated key-value bucket; every box writes through it with the
//!   revision it last saw (a lost update becomes a 409) and follows it.
//! - `place.rs`: each box announces itself every 2 s in a bucket whose
//!   entries expire; each camera is held by one box through a lease; every
//!   box works out the same placement (`plan.rs`) and claims, renews or
//!   releases its own leases.
//! - `auth.rs`: credentials and TLS.
//!
//! The box keeps its own SQLite copy of the catalog and the set of streams
//! it ran last, so it starts and keeps its cameras while NATS is away.

mod auth;
mod catalog;
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
pub use keys::site_key;
pub use place::{last_placed, BoxStatus};

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

/// A lease's value in the bucket.
#[derive(Debug, Serialize, Deserialize)]
struct LeaseValue {
    #[serde(rename = "box")]
    holder: String,
}

/// Counters `GET /metrics` and `sightline fleet status` show.
#[derive(Debug, Default)]
pub struct FleetStats {
    pub moves: std::sync::atomic::AtomicU64,
    pub renewals: std::sync::atomic::AtomicU64,
    pub claims: std::sync::atomic::AtomicU64,
    pub conflicts: std::sync::atomic::AtomicU64,
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
    /// Box → its last announcement (live boxes only).
    /// Box → its last announcement and when this box received it.
    boxes: Mutex<BTreeMap<String, (BoxStatus, std::time::Instant)>>,
    /// Streams that fit on no live box at the last plan.
    unplaced: Mutex<Vec<String>>,
    /// Set once the leases and the boxes have been read as they stand.
    synced: (
        tokio::sync::watch::Sender<bool>,
        tokio::sync::watch::Sender<bool>,
    ),
    pub stats: FleetStats,
}

/// A joined box: its shared state and its background task.
pub struct Member {
    pub shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
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
        let holder = self.leases.lock().ok()?.get(stream)?.holder.clone()?;
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
            },
        })
    }
}

impl Shared {
    /// This box's settings.
    pub fn config(&self) -> &FleetConfig {
        &self.cfg
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
    })
}

/// Joins the site: checks the credentials (a bad file stops the daemon
/// with a clear error), connects in the background, and follows the site.
pub async fn join(
    cfg: FleetConfig,
    engine: &Arc<Engine>,
    api_url: Option<String>,
    state_dir: Option<PathBuf>,
) -> anyhow::Result<Member> {
    let options = auth::options(&cfg)?;
    let client = options
        .connect(cfg.nats.clone())
        .await
        .with_context(|| format!("connecting to NATS at {}", cfg.nats.join(", ")))?;
    let shared = Arc::new(Shared {
        cfg,
        api_url,
        state_dir,
        buckets: OnceLock::new(),
        client,
        revisions: Mutex::default(),
        leases: Mutex::default(),
        boxes: Mutex::default(),
        unplaced: Mutex::default(),
        synced: (
            tokio::sync::watch::Sender::new(false),
            tokio::sync::watch::Sender::new(false),
        ),
        stats: FleetStats::default(),
    });
    engine.join_site(Arc::clone(&shared) as Arc<dyn Site>);
    let task = tokio::spawn(run(Arc::clone(&shared), Arc::clone(engine)));
    Ok(Member { shared, task })
}

/// Waits for the site's buckets, then follows the catalog, the leases and
/// the boxes, and places cameras every tick.
async fn run(shared: Arc<Shared>, engine: Arc<Engine>) {
    let js = jetstream::new(shared.client.clone());
    let servers = shared
        .cfg
        .nats
        .len()
        .max(shared.client.server_info().connect_urls.len());
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
    let follow = tokio::spawn(catalog::follow(Arc::clone(&shared), Arc::clone(&engine)));
    let leases = tokio::spawn(place::follow_leases(Arc::clone(&shared)));
    let boxes = tokio::spawn(place::follow_boxes(Arc::clone(&shared)));
    place::tick(&shared, &engine).await;
    follow.abort();
    leases.abort();
    boxes.abort();
}

impl Member {
    /// Leaves the site at shutdown: stops placing, hands this box's
    /// cameras back at once (deletes its leases and its announcement) so
    /// other boxes need not wait for them to expire.
    pub async fn leave(self) {
        self.task.abort();
        let _ =
            tokio::time::timeout(Duration::from_secs(3), place::release_all(&self.shared)).await;
    }
}
