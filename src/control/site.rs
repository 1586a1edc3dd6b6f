//! The seam a site of boxes plugs into (`crate::fleet`). A box in a site
//! writes every catalog change to the site first and to its own database
//! after; changes made on other boxes arrive through [`Engine::absorb`]; and
//! of the catalog's streams the box runs only those the site placed on it
//! ([`Engine::set_owned`]). Without a site nothing here is used.

use std::collections::HashSet;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde::de::DeserializeOwned;

use super::{Catalog, Engine, Health, Refusal};
use crate::store::{Store, Table};

/// One catalog row written (`row` is its JSON) or deleted (`None`).
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub table: Table,
    pub id: String,
    pub row: Option<serde_json::Value>,
}

impl Change {
    pub fn put<T: serde::Serialize>(table: Table, id: &str, row: &T) -> Result<Change, Refusal> {
        let row = serde_json::to_value(row)
            .map_err(|e| Refusal::Internal(format!("encoding {} {id}: {e}", table.name())))?;
        Ok(Change {
            table,
            id: id.to_string(),
            row: Some(row),
        })
    }

    pub fn delete(table: Table, id: &str) -> Change {
        Change {
            table,
            id: id.to_string(),
            row: None,
        }
    }
}

/// What the engine asks of the site it belongs to.
pub trait Site: Send + Sync {
    /// Writes `changes` to the site's catalog, each based on the revision of
    /// its row this box last saw: a row another box changed meanwhile is
    /// refused with [`Refusal::Conflict`], and nothing of a refused batch
    /// reaches this box's database.
    fn publish<'a>(&'a self, changes: &'a [Change]) -> BoxFuture<'a, Result<(), Refusal>>;
    /// The box that runs `stream`, if one does.
    fn owner(&self, stream: &str) -> Option<String>;
    /// This box's name in the site.
    fn box_id(&self) -> &str;
    /// A stream's health as the box running it last reported it.
    fn remote_health(&self, stream: &str) -> Option<Health>;
    /// The site as this box sees it: boxes, cameras and their leases,
    /// cameras that fit nowhere, the connection (`GET fleet`).
    fn report(&self) -> serde_json::Value;
    /// Drains a box (`on`: its cameras move to other boxes and it takes
    /// none) or lets it take cameras again.
    fn drain<'a>(&'a self, box_id: &'a str, on: bool) -> BoxFuture<'a, Result<(), Refusal>>;
    /// Asks box `box_id` to answer `method path` (`GET` or `POST`, the
    /// path with its query) with `body` through its own API; returns its
    /// status and JSON answer.
    fn ask<'a>(
        &'a self,
        box_id: &'a str,
        request: (&'a str, &'a str),
        body: bytes::Bytes,
    ) -> BoxFuture<'a, Result<(u16, bytes::Bytes), Refusal>>;
    /// The origins (`scheme://host:port`) of the other live boxes' APIs,
    /// where their evidence links point.
    fn origins(&self) -> Vec<String> {
        Vec::new()
    }
    /// The boxes whose announcements keep arriving, this one included, and
    /// those this box heard from since it started that went silent or left.
    fn site_boxes(&self) -> (Vec<String>, Vec<String>) {
        (vec![self.box_id().to_string()], Vec::new())
    }
    /// Latency histograms of the site's work on this box, as
    /// (metric name, help, contents).
    fn histograms(&self) -> Vec<(&'static str, &'static str, crate::metrics::Snapshot)> {
        Vec::new()
    }
}

fn decode<T: DeserializeOwned>(c: &Change, v: &serde_json::Value) -> anyhow::Result<T> {
    serde_json::from_value(v.clone())
        .map_err(|e| anyhow::anyhow!("{} {} from the site: {e}", c.table.name(), c.id))
}

/// Puts one change into `cat` and the database.
fn absorb_one(store: &Store, cat: &mut Catalog, c: &Change) -> anyhow::Result<()> {
    let Some(v) = &c.row else {
        store.delete(&[(c.table, c.id.clone())])?;
        match c.table {
            Table::Streams => cat.streams.remove(&c.id).map(|_| ()),
            Table::Indexes => cat.indexes.remove(&c.id).map(|_| ()),
            Table::Events => cat.events.remove(&c.id).map(|_| ()),
            Table::Alerts => cat.alerts.remove(&c.id).map(|_| ()),
        };
        return Ok(());
    };
    match c.table {
        Table::Streams => put(store, c, v, &mut cat.streams),
        Table::Indexes => put(store, c, v, &mut cat.indexes),
        Table::Events => put(store, c, v, &mut cat.events),
        Table::Alerts => put(store, c, v, &mut cat.alerts),
    }
}

/// Writes one row from the site to the database and the catalog's `rows`.
fn put<T: DeserializeOwned + serde::Serialize>(
    store: &Store,
    c: &Change,
    v: &serde_json::Value,
    rows: &mut std::collections::BTreeMap<String, T>,
) -> anyhow::Result<()> {
    let row: T = decode(c, v)?;
    store.put(c.table, &c.id, &row)?;
    rows.insert(c.id.clone(), row);
    Ok(())
}

impl Engine {
    /// Makes this box part of `site`: from now on changes go through it.
    pub fn join_site(&self, site: Arc<dyn Site>) {
        let _ = self.site.set(site);
    }

    /// The site this box belongs to, if any.
    pub fn site(&self) -> Option<&Arc<dyn Site>> {
        self.site.get()
    }

    /// Writes `changes` to the site, when there is one (see [`Site::publish`]).
    pub(super) async fn replicate(&self, changes: &[Change]) -> Result<(), Refusal> {
        match self.site.get() {
            Some(site) => site.publish(changes).await,
            None => Ok(()),
        }
    }

    /// Takes changes made on other boxes: writes them to this box's
    /// database and catalog, then applies the result once. A row that does
    /// not decode is skipped with an error in the log; the rest still apply.
    pub async fn absorb(&self, changes: Vec<Change>) {
        if changes.is_empty() {
            return;
        }
        for c in changes
            .iter()
            .filter(|c| c.row.is_none() && c.table == Table::Streams)
        {
            if let Err(e) = self.forget_frames(&c.id).await {
                tracing::warn!(stream = %c.id, error = %e, "cannot drop a deleted stream's frames");
            }
        }
        let cat = self.catalog.lock().await;
        let mut next = cat.clone();
        let store = Arc::clone(&self.parts.store);
        let done = tokio::task::spawn_blocking(move || {
            for c in &changes {
                if let Err(e) = absorb_one(&store, &mut next, c) {
                    tracing::error!(error = %format!("{e:#}"), "a catalog change from the site was not applied");
                }
            }
            next
        })
        .await;
        match done {
            Ok(next) => self.commit(cat, next).await,
            Err(e) => tracing::error!(error = %e, "applying the site's catalog changes failed"),
        }
    }

    /// Runs exactly the catalog's streams in `owned` (the site's placement);
    /// `None` runs them all, as a box on its own does.
    pub async fn set_owned(&self, owned: Option<HashSet<String>>) {
        let changed = match self.owned.write() {
            Ok(mut o) if *o != owned => {
                *o = owned;
                true
            }
            _ => false,
        };
        if changed {
            self.apply_latest().await;
        }
    }

    /// The streams this box runs in a site (`None` on its own: all).
    pub fn owned_streams(&self) -> Option<HashSet<String>> {
        self.owned.read().ok()?.clone()
    }

    /// Whether this box should run `stream`.
    pub(super) fn runs_here(&self, stream: &str) -> bool {
        self.owned
            .read()
            .map(|o| o.as_ref().is_none_or(|o| o.contains(stream)))
            .unwrap_or(true)
    }
}
