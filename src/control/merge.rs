//! At start, the stored catalog is merged with the config file: entities
//! the file declares are (re)defined from it, keeping their stored run
//! state (running, enabled, creation time); config-declared entities gone
//! from the file are removed. Runs on a blocking thread.

use std::collections::HashSet;

use super::Catalog;
use crate::config::Declared;
use crate::store::{AlertRow, EventRow, Origin, Snapshot, Store, StreamRow, Table};

/// Merges the config file's streams, events and alerts into the stored
/// catalog (writing the result back).
pub(super) fn merge(
    snap: Snapshot,
    d: &Declared,
    store: &Store,
    now: &str,
) -> anyhow::Result<Catalog> {
    let mut cat = Catalog {
        streams: snap
            .streams
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect(),
        indexes: snap
            .indexes
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect(),
        events: snap.events.into_iter().map(|r| (r.id.clone(), r)).collect(),
        alerts: snap.alerts.into_iter().map(|r| (r.id.clone(), r)).collect(),
    };
    let gone = prune(&mut cat, d);
    store.delete(&gone)?;

    for s in &d.streams {
        let Some(id) = s.id.clone() else { continue };
        let running = cat.streams.get(&id).is_none_or(|r| r.running);
        let created_at = cat
            .streams
            .get(&id)
            .map_or_else(|| now.to_string(), |r| r.created_at.clone());
        let row = StreamRow {
            id: id.clone(),
            name: id.clone(),
            spec: s.clone().into(),
            running,
            origin: Origin::Config,
            created_at,
        };
        store.put(Table::Streams, &id, &row)?;
        cat.streams.insert(id, row);
    }
    for e in &d.events {
        let Some(id) = e.id.clone() else { continue };
        let created_at = cat
            .events
            .get(&id)
            .map_or_else(|| now.to_string(), |r| r.created_at.clone());
        let row = EventRow {
            id: id.clone(),
            spec: e.clone().into(),
            origin: Origin::Config,
            created_at,
        };
        store.put(Table::Events, &id, &row)?;
        cat.events.insert(id, row);
    }
    for a in &d.alerts {
        let Some(id) = a.id.clone() else { continue };
        let prev = cat.alerts.get(&id);
        let enabled = prev.map_or(a.enabled.unwrap_or(true), |r| r.enabled);
        let created_at = prev.map_or_else(|| now.to_string(), |r| r.created_at.clone());
        let row = AlertRow {
            id: id.clone(),
            index_id: None,
            spec: a.clone().into(),
            ws_connection: None,
            enabled,
            origin: Origin::Config,
            created_at,
        };
        store.put(Table::Alerts, &id, &row)?;
        cat.alerts.insert(id, row);
    }
    Ok(cat)
}

/// Drops config-declared entities the file no longer declares; returns the
/// rows to delete.
fn prune(cat: &mut Catalog, d: &Declared) -> Vec<(Table, String)> {
    let declared =
        |ids: Vec<Option<String>>| -> HashSet<String> { ids.into_iter().flatten().collect() };
    let (ds, de, da) = (
        declared(d.streams.iter().map(|s| s.id.clone()).collect()),
        declared(d.events.iter().map(|e| e.id.clone()).collect()),
        declared(d.alerts.iter().map(|a| a.id.clone()).collect()),
    );
    let mut gone = Vec::new();
    cat.streams.retain(|id, r| {
        let keep = r.origin != Origin::Config || ds.contains(id);
        if !keep {
            gone.push((Table::Streams, id.clone()));
        }
        keep
    });
    cat.events.retain(|id, r| {
        let keep = r.origin != Origin::Config || de.contains(id);
        if !keep {
            gone.push((Table::Events, id.clone()));
        }
        keep
    });
    cat.alerts.retain(|id, r| {
        let keep = r.origin != Origin::Config || da.contains(id);
        if !keep {
            gone.push((Table::Alerts, id.clone()));
        }
        keep
    });
    gone
}
