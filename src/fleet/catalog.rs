//! The site's catalog bucket: one key per row (`streams.<id>`,
//! `alerts.<id>`, …), its value the row's JSON. A box writes a row based on
//! the revision it last saw, so of two boxes changing the same row at once
//! one wins and the other is told to read again (409). Changes from other
//! boxes arrive through a watch and go into this box's database.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv::{self, Operation};
use futures_util::StreamExt;

use super::{key_of, stale, Shared};
use crate::control::{Change, Engine, Refusal};
use crate::store::Table;

fn unavailable(e: impl std::fmt::Display) -> Refusal {
    Refusal::Unavailable(format!(
        "the site's catalog (NATS) did not take the change: {e}"
    ))
}

/// Writes `changes` in order; stops at the first refusal.
pub(super) async fn publish(shared: &Shared, changes: &[Change]) -> Result<(), Refusal> {
    let Some(b) = shared.buckets.get() else {
        return Err(Refusal::Unavailable(
            "this box has not reached the site's NATS servers yet: try again, or another box"
                .into(),
        ));
    };
    for c in changes {
        let key = key_of(c);
        let seen = shared
            .revisions
            .lock()
            .ok()
            .and_then(|r| r.get(&key).copied());
        let written = match &c.row {
            Some(row) => {
                let body = serde_json::to_vec(row).map_err(unavailable)?.into();
                let put = match seen {
                    Some(rev) => b.catalog.update(&key, body, rev).await.map_err(|e| {
                        if stale(&e, e.kind() == kv::UpdateErrorKind::WrongLastRevision) {
                            conflict(shared, c)
                        } else {
                            unavailable(e)
                        }
                    }),
                    None => b.catalog.create(&key, body).await.map_err(|e| {
                        if stale(&e, e.kind() == kv::CreateErrorKind::AlreadyExists) {
                            conflict(shared, c)
                        } else {
                            unavailable(e)
                        }
                    }),
                };
                Some(put?)
            }
            None => {
                match seen {
                    Some(rev) => b.catalog.delete_expect_revision(&key, Some(rev)).await,
                    None => b.catalog.delete(&key).await,
                }
                .map_err(|e| {
                    if stale(&e, e.kind() == kv::DeleteErrorKind::WrongLastRevision) {
                        conflict(shared, c)
                    } else {
                        unavailable(e)
                    }
                })?;
                None
            }
        };
        if let Ok(mut r) = shared.revisions.lock() {
            match written {
                Some(rev) => r.insert(key, rev),
                None => r.remove(&key),
            };
        }
    }
    Ok(())
}

fn conflict(shared: &Shared, c: &Change) -> Refusal {
    shared
        .stats
        .conflicts
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Refusal::Conflict(format!(
        "{} {} was changed on another box of the site meanwhile: read it again and retry",
        c.table.name(),
        c.id
    ))
}

fn table_of(name: &str) -> Option<Table> {
    [Table::Streams, Table::Indexes, Table::Events, Table::Alerts]
        .into_iter()
        .find(|t| t.name() == name)
}

/// The change an entry stands for, unless this box has seen it already.
fn change_of(shared: &Shared, e: &kv::Entry) -> Option<Change> {
    let (table, id) = e.key.split_once('.')?;
    let table = table_of(table)?;
    let mut revs = shared.revisions.lock().ok()?;
    if revs.get(&e.key).is_some_and(|r| *r >= e.revision) {
        return None;
    }
    revs.insert(e.key.clone(), e.revision);
    match e.operation {
        Operation::Put => match serde_json::from_slice(&e.value) {
            Ok(v) => Some(Change {
                table,
                id: id.to_string(),
                row: Some(v),
            }),
            Err(err) => {
                tracing::error!(key = %e.key, error = %err, "a catalog entry of the site is not JSON; skipped");
                None
            }
        },
        Operation::Delete | Operation::Purge => Some(Change::delete(table, id)),
    }
}

/// This box's rows the site has never seen: a new site starts from the
/// first box's catalog, and rows declared in a box's config file join it.
async fn seed(shared: &Shared, engine: &Engine, seen: &HashSet<String>) {
    let cat = engine.catalog().await;
    let mut changes = Vec::new();
    let rows = cat
        .streams
        .iter()
        .map(|(id, r)| Change::put(Table::Streams, id, r))
        .chain(
            cat.indexes
                .iter()
                .map(|(id, r)| Change::put(Table::Indexes, id, r)),
        )
        .chain(
            cat.events
                .iter()
                .map(|(id, r)| Change::put(Table::Events, id, r)),
        )
        .chain(
            cat.alerts
                .iter()
                .map(|(id, r)| Change::put(Table::Alerts, id, r)),
        );
    for c in rows.flatten() {
        if !seen.contains(&key_of(&c)) {
            changes.push(c);
        }
    }
    if changes.is_empty() {
        return;
    }
    tracing::info!(
        rows = changes.len(),
        "adding this box's catalog rows to the site"
    );
    if let Err(e) = publish(shared, &changes).await {
        tracing::warn!(error = %e, "some of this box's catalog rows did not reach the site");
    }
}

/// Follows the catalog bucket for as long as the box runs: the rows as
/// they stand first (in one apply), then every change as it comes.
pub(super) async fn follow(shared: Arc<Shared>, engine: Arc<Engine>) {
    let Some(b) = shared.buckets.get() else {
        return;
    };
    let mut first = true;
    loop {
        if let Err(e) = follow_once(&shared, &engine, &b.catalog, &mut first).await {
            tracing::warn!(error = %format!("{e:#}"), "following the site's catalog; again in 2 s");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn follow_once(
    shared: &Shared,
    engine: &Engine,
    bucket: &kv::Store,
    first: &mut bool,
) -> anyhow::Result<()> {
    let stored = bucket.status().await?.values();
    let mut watch = bucket.watch_with_history(">").await?;
    let (mut batch, mut keys, mut current) = (Vec::new(), HashSet::new(), stored == 0);
    while !current {
        let Some(e) = watch.next().await else {
            anyhow::bail!("the catalog watch ended");
        };
        let e = e?;
        keys.insert(e.key.clone());
        current = e.seen_current || e.delta == 0;
        batch.extend(change_of(shared, &e));
    }
    engine.absorb(std::mem::take(&mut batch)).await;
    if std::mem::take(first) {
        seed(shared, engine, &keys).await;
    }
    while let Some(e) = watch.next().await {
        if let Some(c) = change_of(shared, &e?) {
            engine.absorb(vec![c]).await;
        }
    }
    anyhow::bail!("the catalog watch ended")
}
