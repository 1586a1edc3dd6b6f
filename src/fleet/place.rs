//! Placement on the site: every box announces itself (capacity, labels,
//! its cameras' health) every 2 s in a bucket whose entries expire after
//! [`BOX_TTL`]; each camera is held by one box through a lease key created
//! only if absent and renewed with the revision it was last written at.
//! Every tick each box works out the same plan ([`super::plan`]), releases
//! the leases the plan gives away, claims the streams it is given, and runs
//! exactly the streams it holds.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::kv::{self, Operation};
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::plan::{self, Slot, Want};
use super::{Lease, LeaseValue, Shared, BOX_TTL, TICK};
use crate::control::{Engine, Health};

/// What a box announces about itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BoxStatus {
    pub box_id: String,
    pub capacity: usize,
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default)]
    pub draining: bool,
    pub api_url: Option<String>,
    /// Health of the streams it runs.
    #[serde(default)]
    pub streams: BTreeMap<String, Health>,
    pub version: String,
}

const PLACED_FILE: &str = "fleet-placed.json";

/// What placement needs from the box it runs on: the cameras the site
/// wants, the ones this box runs, and a way to change them. The daemon's
/// engine is one; `sightline bench fleet` runs many light ones.
pub trait Host: Send + Sync {
    /// The site's running streams, with their pins.
    fn wants(&self) -> BoxFuture<'_, Vec<Want>>;
    /// The streams this box runs now, with their health.
    fn running(&self) -> BTreeMap<String, Health>;
    /// Runs exactly `streams` from now on.
    fn run_only(&self, streams: HashSet<String>) -> BoxFuture<'_, ()>;
}

impl Host for Engine {
    fn wants(&self) -> BoxFuture<'_, Vec<Want>> {
        Box::pin(async move {
            let cat = self.catalog().await;
            cat.streams
                .values()
                .filter(|s| s.running)
                .map(|s| Want {
                    stream: s.id.clone(),
                    pin: s.spec.pin.clone(),
                })
                .collect()
        })
    }

    fn running(&self) -> BTreeMap<String, Health> {
        let mine = self.owned_streams().unwrap_or_default();
        mine.iter().map(|s| (s.clone(), self.health(s))).collect()
    }

    fn run_only(&self, streams: HashSet<String>) -> BoxFuture<'_, ()> {
        Box::pin(self.set_owned(Some(streams)))
    }
}

/// The streams this box ran when it last heard from the site: it runs them
/// at start until the site says otherwise.
pub fn last_placed(state_dir: Option<&Path>) -> HashSet<String> {
    state_dir
        .and_then(|d| std::fs::read(d.join(PLACED_FILE)).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn save_placed(state_dir: Option<&Path>, owned: &HashSet<String>) {
    let Some(dir) = state_dir else { return };
    let mut ids: Vec<&String> = owned.iter().collect();
    ids.sort();
    let tmp = dir.join(format!("{PLACED_FILE}.tmp"));
    let body = serde_json::to_vec(&ids).unwrap_or_default();
    if let Err(e) =
        std::fs::write(&tmp, body).and_then(|_| std::fs::rename(&tmp, dir.join(PLACED_FILE)))
    {
        tracing::warn!(error = %e, "cannot save the streams this box runs");
    }
}

/// Follows a bucket: the entries as they stand, then every change; marks
/// `synced` once the first pass is read.
async fn follow(
    bucket: &kv::Store,
    synced: &tokio::sync::watch::Sender<bool>,
    mut take: impl FnMut(kv::Entry),
) -> anyhow::Result<()> {
    let empty = bucket.status().await?.values() == 0;
    let mut watch = bucket.watch_with_history(">").await?;
    if empty {
        synced.send_replace(true);
    }
    while let Some(e) = watch.next().await {
        let e = e?;
        let current = e.seen_current || e.delta == 0;
        take(e);
        if current {
            synced.send_replace(true);
        }
    }
    anyhow::bail!("the watch ended")
}

pub(super) async fn follow_leases(shared: Arc<Shared>) {
    let Some(b) = shared.buckets.get() else {
        return;
    };
    loop {
        let take = |e: kv::Entry| {
            let holder = match e.operation {
                Operation::Put => serde_json::from_slice::<LeaseValue>(&e.value)
                    .ok()
                    .map(|v| v.holder),
                Operation::Delete | Operation::Purge => None,
            };
            note_lease(&shared, &e.key, holder, e.revision);
        };
        if let Err(e) = follow(&b.leases, &shared.synced.0, take).await {
            tracing::warn!(error = %format!("{e:#}"), "following the site's leases; again in 1 s");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Records a lease state unless a newer one is known: `revision` is the
/// entry's own, never a guess, so an entry from the bucket always wins over
/// what this box assumed after its own write.
fn note_lease(shared: &Shared, stream: &str, holder: Option<String>, revision: u64) {
    put_lease(shared, stream, (holder, revision), false);
}

/// Records a lease exactly as the bucket holds it now, even at a lower
/// revision than this box knew: after a majority of NATS servers crashed,
/// the bucket can come back without its last writes (a server syncs to
/// disk every few minutes), and a box that kept renewing at a revision the
/// bucket no longer has would be refused forever.
fn reset_lease(shared: &Shared, stream: &str, holder: Option<String>, revision: u64) {
    put_lease(shared, stream, (holder, revision), true);
}

/// Stores a lease as seen now; unless `always`, only over an older one.
fn put_lease(
    shared: &Shared,
    stream: &str,
    (holder, revision): (Option<String>, u64),
    always: bool,
) {
    if let Ok(mut l) = shared.leases.lock() {
        if always || l.get(stream).is_none_or(|old| old.revision <= revision) {
            let seen = Instant::now();
            let lease = Lease {
                holder,
                revision,
                seen,
            };
            l.insert(stream.to_string(), lease);
        }
    }
}

pub(super) async fn follow_boxes(shared: Arc<Shared>) {
    let Some(b) = shared.buckets.get() else {
        return;
    };
    loop {
        let take = |e: kv::Entry| {
            let Ok(mut boxes) = shared.boxes.lock() else {
                return;
            };
            match e.operation {
                Operation::Put => match serde_json::from_slice::<BoxStatus>(&e.value) {
                    Ok(s) => {
                        if let Ok(mut seen) = shared.seen.lock() {
                            seen.insert(e.key.clone());
                        }
                        boxes.insert(e.key.clone(), (s, Instant::now()));
                    }
                    Err(err) => {
                        tracing::warn!(key = %e.key, error = %err, "a box's announcement does not parse")
                    }
                },
                Operation::Delete | Operation::Purge => {
                    if boxes.remove(&e.key).is_some() {
                        tracing::info!(box_id = %e.key, "a box left the site or went silent");
                    }
                }
            }
        };
        if let Err(e) = follow(&b.boxes, &shared.synced.1, take).await {
            tracing::warn!(error = %format!("{e:#}"), "following the site's boxes; again in 1 s");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// This box's announcement, with the streams it runs.
fn status(shared: &Shared, host: &dyn Host) -> BoxStatus {
    BoxStatus {
        box_id: shared.cfg.box_id.clone(),
        capacity: shared.cfg.capacity,
        labels: shared.cfg.labels.clone(),
        draining: shared.draining.load(Ordering::Relaxed),
        api_url: shared.api_url.clone(),
        streams: host.running(),
        version: env!("CARGO_PKG_VERSION").to_string(),
    }
}

/// What the plan starts from: the running streams, the live boxes (this
/// one always), and who holds each lease. A stream with no lease that a
/// live box says it runs counts as that box's: after NATS was away long
/// enough for leases to expire, cameras stay where they run.
async fn inputs(
    shared: &Shared,
    host: &dyn Host,
) -> (Vec<Want>, Vec<Slot>, BTreeMap<String, String>) {
    let wants = host.wants().await;
    let mut boxes = shared.boxes();
    boxes.insert(shared.cfg.box_id.clone(), status(shared, host));
    let mut held: BTreeMap<String, String> = shared
        .leases
        .lock()
        .map(|l| {
            l.iter()
                .filter_map(|(s, l)| Some((s.clone(), l.current()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    for b in boxes.values() {
        for s in b.streams.keys() {
            held.entry(s.clone()).or_insert_with(|| b.box_id.clone());
        }
    }
    let slots = boxes
        .into_values()
        .map(|b| Slot {
            id: b.box_id,
            capacity: b.capacity,
            labels: b.labels,
            draining: b.draining,
        })
        .collect();
    (wants, slots, held)
}

/// Places cameras every tick for as long as the box runs.
pub(super) async fn tick(shared: &Arc<Shared>, host: &dyn Host) {
    let Some(b) = shared.buckets.get() else {
        return;
    };
    // Plan from the site as it stands, not from half-read buckets.
    let (mut l, mut x) = (shared.synced.0.subscribe(), shared.synced.1.subscribe());
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = l.wait_for(|s| *s).await;
        let _ = x.wait_for(|s| *s).await;
    })
    .await;
    let me = shared.cfg.box_id.clone();
    let (mut renewed, mut announced) = (HashMap::<String, Instant>::new(), None::<Instant>);
    let mut owned: Option<HashSet<String>> = None;
    // Cameras a draining box gave up and still runs until another box
    // holds them (make before break), with when each was given up.
    let mut handing = HashMap::<String, Instant>::new();
    // When this box last failed to reach the site (see `claim_now`).
    let mut trouble: Option<Instant> = None;
    let mut every = tokio::time::interval(TICK);
    loop {
        every.tick().await;
        // Bounded: a NATS outage must not hold up the announcements.
        let drained = tokio::time::timeout(Duration::from_millis(500), b.drains.get(&me)).await;
        if let Ok(Ok(entry)) = drained {
            let on = entry.is_some();
            if shared.draining.swap(on, Ordering::Relaxed) != on {
                tracing::info!(
                    draining = on,
                    "an operator changed whether this box is drained"
                );
                announced = None;
            }
        }
        let mine = held_by(shared, &me);
        if announced.is_none_or(|t| t.elapsed() >= BOX_TTL / 3) {
            let body = serde_json::to_vec(&status(shared, host)).unwrap_or_default();
            match b.boxes.put(&me, body.into()).await {
                Ok(_) => announced = Some(Instant::now()),
                Err(e) => {
                    trouble = Some(Instant::now());
                    tracing::warn!(error = %e, "cannot announce this box to the site")
                }
            }
        }
        let (wants, slots, held) = inputs(shared, host).await;
        let live: HashSet<&str> = slots.iter().map(|s| s.id.as_str()).collect();
        let p = plan::place(&wants, &slots, &held);
        if let Ok(mut u) = shared.unplaced.lock() {
            if *u != p.unplaced && !p.unplaced.is_empty() {
                tracing::warn!(streams = ?p.unplaced, "cameras that fit on no box of the site");
            }
            *u = p.unplaced.clone();
        }
        for stream in &mine {
            if p.owner.get(stream) == Some(&me) {
                if renewed
                    .get(stream)
                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(2))
                {
                    renew(shared, &b.leases, stream).await;
                    renewed.insert(stream.clone(), Instant::now());
                }
            } else {
                release(shared, &b.leases, stream).await;
                renewed.remove(stream);
                if shared.draining.load(Ordering::Relaxed) {
                    handing.insert(stream.clone(), Instant::now());
                }
            }
        }
        let settled = trouble.is_none_or(|t| t.elapsed() >= BOX_TTL);
        for stream in claim_now(shared, host, (&p, &live), settled) {
            claim(shared, &b.leases, &stream).await;
            renewed.insert(stream, Instant::now());
        }
        let mut now = held_by(shared, &me);
        handing.retain(|s, since| since.elapsed() < HANDOVER && !held_elsewhere(shared, s, &me));
        now.extend(handing.keys().cloned());
        if owned.as_ref() != Some(&now) {
            save_placed(shared.state_dir.as_deref(), &now);
            tracing::info!(streams = ?sorted(&now), "this box's cameras");
            host.run_only(now.clone()).await;
            owned = Some(now);
        }
    }
}

/// The streams the plan gives this box that it should claim now: those
/// whose lease is free or held by a box gone silent. A camera this box does
/// not run yet is claimed only once the site has been reachable for
/// [`BOX_TTL`] (`settled`): after an outage, every live box gets to announce
/// what it runs before a camera is taken from under it.
fn claim_now(
    shared: &Shared,
    host: &dyn Host,
    (p, live): (&plan::Placement, &HashSet<&str>),
    settled: bool,
) -> Vec<String> {
    let me = shared.cfg.box_id.as_str();
    let (mine, running) = (held_by(shared, me), host.running());
    let Ok(leases) = shared.leases.lock() else {
        return Vec::new();
    };
    p.owner
        .iter()
        .filter(|(s, o)| o.as_str() == me && !mine.contains(*s))
        .filter(|(s, _)| settled || running.contains_key(*s))
        .filter(|(s, _)| {
            let holder = leases.get(*s).and_then(|l| l.current());
            holder.is_none_or(|h| !live.contains(h))
        })
        .map(|(s, _)| s.clone())
        .collect()
}

/// Longest a drained camera keeps running here while no box takes it.
const HANDOVER: Duration = Duration::from_secs(20);

/// Whether a box other than `me` holds `stream`'s lease.
fn held_elsewhere(shared: &Shared, stream: &str, me: &str) -> bool {
    shared.leases.lock().is_ok_and(|l| {
        l.get(stream)
            .and_then(|l| l.holder.as_deref())
            .is_some_and(|h| h != me)
    })
}

fn sorted(s: &HashSet<String>) -> Vec<&String> {
    let mut v: Vec<&String> = s.iter().collect();
    v.sort();
    v
}

/// The streams whose lease `me` holds.
fn held_by(shared: &Shared, me: &str) -> HashSet<String> {
    shared
        .leases
        .lock()
        .map(|l| {
            l.iter()
                .filter(|(_, l)| l.holder.as_deref() == Some(me))
                .map(|(s, _)| s.clone())
                .collect()
        })
        .unwrap_or_default()
}

fn lease_body(shared: &Shared) -> bytes::Bytes {
    serde_json::to_vec(&LeaseValue {
        holder: shared.cfg.box_id.clone(),
    })
    .unwrap_or_default()
    .into()
}

fn revision_of(shared: &Shared, stream: &str) -> Option<u64> {
    shared.leases.lock().ok()?.get(stream).map(|l| l.revision)
}

async fn renew(shared: &Shared, leases: &kv::Store, stream: &str) {
    let Some(rev) = revision_of(shared, stream) else {
        return;
    };
    match leases.update(stream, lease_body(shared), rev).await {
        Ok(r) => {
            note_lease(shared, stream, Some(shared.cfg.box_id.clone()), r);
            shared.stats.renewals.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) if super::stale(&e, e.kind() == kv::UpdateErrorKind::WrongLastRevision) => {
            // Another box took it (this one was silent too long): let go.
            tracing::warn!(stream, "another box took this camera's lease");
            refresh(shared, leases, stream).await;
        }
        Err(e) => tracing::warn!(stream, error = %e, "cannot renew a camera's lease"),
    }
}

/// Takes an unheld stream, or one whose holder is gone (by the revision
/// last seen, so a holder that renewed meanwhile keeps it).
async fn claim(shared: &Shared, leases: &kv::Store, stream: &str) {
    let old = shared
        .leases
        .lock()
        .ok()
        .and_then(|l| l.get(stream).cloned());
    if let Some(Lease {
        holder: Some(h),
        revision,
        ..
    }) = &old
    {
        if let Err(e) = leases.delete_expect_revision(stream, Some(*revision)).await {
            tracing::info!(stream, error = %e, "a silent box's lease could not be cleared");
            refresh(shared, leases, stream).await;
            return;
        }
        tracing::info!(stream, from = %h, "taking over a camera from a box that went silent");
    }
    match leases.create(stream, lease_body(shared)).await {
        Ok(r) => {
            note_lease(shared, stream, Some(shared.cfg.box_id.clone()), r);
            shared.stats.claims.fetch_add(1, Ordering::Relaxed);
            if let Some(l) = old.filter(|l| l.holder.is_some()) {
                shared.stats.moves.fetch_add(1, Ordering::Relaxed);
                shared.stats.failover_times.observe(l.seen.elapsed());
            }
        }
        // A key with a delete marker answers "wrong last sequence".
        Err(e) if super::stale(&e, e.kind() == kv::CreateErrorKind::AlreadyExists) => {
            tracing::debug!(stream, "a camera's lease was taken first");
            refresh(shared, leases, stream).await;
        }
        Err(e) => tracing::warn!(stream, error = %e, "cannot claim a camera's lease"),
    }
}

/// Reads a lease as the bucket holds it now, when this box's view of it
/// proved wrong (a write based on it was refused).
async fn refresh(shared: &Shared, leases: &kv::Store, stream: &str) {
    match leases.entry(stream).await {
        Ok(Some(e)) => {
            let holder = match e.operation {
                Operation::Put => serde_json::from_slice::<LeaseValue>(&e.value)
                    .ok()
                    .map(|v| v.holder),
                Operation::Delete | Operation::Purge => None,
            };
            reset_lease(shared, stream, holder, e.revision);
        }
        Ok(None) => reset_lease(shared, stream, None, 0),
        Err(e) => tracing::warn!(stream, error = %e, "cannot read a camera's lease"),
    }
}

async fn release(shared: &Shared, leases: &kv::Store, stream: &str) {
    let Some(rev) = revision_of(shared, stream) else {
        return;
    };
    match leases.delete_expect_revision(stream, Some(rev)).await {
        Ok(()) => {
            note_lease(shared, stream, None, rev);
            shared.stats.moves.fetch_add(1, Ordering::Relaxed);
            tracing::info!(stream, "handing a camera to another box");
        }
        Err(e) => tracing::warn!(stream, error = %e, "cannot release a camera's lease"),
    }
}

/// Hands every camera back and withdraws the announcement (shutdown).
pub(super) async fn release_all(shared: &Shared) {
    let Some(b) = shared.buckets.get() else {
        return;
    };
    for stream in held_by(shared, &shared.cfg.box_id) {
        release(shared, &b.leases, &stream).await;
    }
    let _ = b.boxes.delete(&shared.cfg.box_id).await;
}
