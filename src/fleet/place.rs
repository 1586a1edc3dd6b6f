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
    if let Ok(mut l) = shared.leases.lock() {
        if l.get(stream).is_none_or(|old| old.revision <= revision) {
            let seen = Instant::now();
            l.insert(
                stream.to_string(),
                Lease {
                    holder,
                    revision,
                    seen,
                },
            );
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
fn status(shared: &Shared, engine: &Engine) -> BoxStatus {
    let mine = engine.owned_streams().unwrap_or_default();
    BoxStatus {
        box_id: shared.cfg.box_id.clone(),
        capacity: shared.cfg.capacity,
        labels: shared.cfg.labels.clone(),
        draining: false,
        api_url: shared.api_url.clone(),
        streams: mine.iter().map(|s| (s.clone(), engine.health(s))).collect(),
        version: env!("CARGO_PKG_VERSION").to_string(),
    }
}

/// What the plan starts from: the running streams, the live boxes (this
/// one always), and who holds each lease. A stream with no lease that a
/// live box says it runs counts as that box's: after NATS was away long
/// enough for leases to expire, cameras stay where they run.
async fn inputs(
    shared: &Shared,
    engine: &Engine,
) -> (Vec<Want>, Vec<Slot>, BTreeMap<String, String>) {
    let cat = engine.catalog().await;
    let wants = cat
        .streams
        .values()
        .filter(|s| s.running)
        .map(|s| Want {
            stream: s.id.clone(),
            pin: s.spec.pin.clone(),
        })
        .collect();
    let mut boxes = shared.boxes();
    boxes.insert(shared.cfg.box_id.clone(), status(shared, engine));
    let mut held: BTreeMap<String, String> = shared
        .leases
        .lock()
        .map(|l| {
            l.iter()
                .filter_map(|(s, l)| Some((s.clone(), l.holder.clone()?)))
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
pub(super) async fn tick(shared: &Arc<Shared>, engine: &Arc<Engine>) {
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
    let mut every = tokio::time::interval(TICK);
    loop {
        every.tick().await;
        let mine = held_by(shared, &me);
        if announced.is_none_or(|t| t.elapsed() >= BOX_TTL / 3) {
            let body = serde_json::to_vec(&status(shared, engine)).unwrap_or_default();
            match b.boxes.put(&me, body.into()).await {
                Ok(_) => announced = Some(Instant::now()),
                Err(e) => tracing::warn!(error = %e, "cannot announce this box to the site"),
            }
        }
        let (wants, slots, held) = inputs(shared, engine).await;
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
            }
        }
        for (stream, _) in p
            .owner
            .iter()
            .filter(|(s, o)| **o == me && !mine.contains(*s))
        {
            let lease = shared
                .leases
                .lock()
                .ok()
                .and_then(|l| l.get(stream)?.holder.clone());
            if lease.is_none_or(|h| !live.contains(h.as_str())) {
                claim(shared, &b.leases, stream).await;
                renewed.insert(stream.clone(), Instant::now());
            }
        }
        let now = held_by(shared, &me);
        if owned.as_ref() != Some(&now) {
            save_placed(shared.state_dir.as_deref(), &now);
            tracing::info!(streams = ?sorted(&now), "this box's cameras");
            engine.set_owned(Some(now.clone())).await;
            owned = Some(now);
        }
    }
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
            return;
        }
        tracing::info!(stream, from = %h, "taking over a camera from a box that went silent");
    }
    match leases.create(stream, lease_body(shared)).await {
        Ok(r) => {
            note_lease(shared, stream, Some(shared.cfg.box_id.clone()), r);
            shared.stats.claims.fetch_add(1, Ordering::Relaxed);
            if old.is_some_and(|l| l.holder.is_some()) {
                shared.stats.moves.fetch_add(1, Ordering::Relaxed);
            }
        }
        Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
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
            note_lease(shared, stream, holder, e.revision);
        }
        Ok(None) => {}
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
