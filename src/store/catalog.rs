//! The catalog tables: streams, scene indexes, events and alerts, each a
//! JSON row keyed by id. The row types are this module's own, so the stored
//! shape changes only with a migration.

use anyhow::Context;
use rusqlite::params;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::Store;

/// A stream's definition as stored: the fields an operator set, unset ones
/// left to the defaults. Its JSON shape is the row format; a change to it
/// needs a migration, whatever the TOML or the API body look like.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamDef {
    pub id: Option<String>,
    pub url: Option<String>,
    pub fps: Option<f64>,
    pub keyframes_only: Option<bool>,
    pub transport: Option<String>,
    pub stall_timeout_secs: Option<f64>,
    pub max_backoff_secs: Option<f64>,
    #[serde(default)]
    pub record_url: Option<String>,
    #[serde(default)]
    pub record: Option<bool>,
    #[serde(default)]
    pub motion: Option<MotionDef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<String>,
}

/// A stream's motion settings as stored.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct MotionDef {
    pub enabled: Option<bool>,
    pub sensitivity: Option<f64>,
    pub max_unscored_secs: Option<f64>,
    pub masks: Option<Vec<Vec<[f64; 2]>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compressed: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compressed_sensitivity: Option<f64>,
}

/// An event's definition as stored (see [`StreamDef`]).
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventDef {
    pub id: Option<String>,
    pub prompt: Option<String>,
    pub label: Option<String>,
    pub classes: Option<Vec<String>>,
    #[serde(default)]
    pub model: Option<String>,
    pub min_confidence: Option<f64>,
    pub min_count: Option<i64>,
    pub min_area: Option<f64>,
    pub region: Option<RegionDef>,
    pub negatives: Option<Vec<String>>,
    pub min_lift: Option<f64>,
    pub baseline_secs: Option<f64>,
    pub k: Option<i64>,
    pub window: Option<i64>,
    pub end_after: Option<i64>,
    pub max_duration_secs: Option<f64>,
    pub cooldown_secs: Option<f64>,
    #[serde(default)]
    pub per: Option<String>,
    #[serde(default)]
    pub min_dwell_secs: Option<f64>,
    #[serde(default)]
    pub line: Option<LineDef>,
    #[serde(default)]
    pub stationary_secs: Option<f64>,
}

/// A crossing line as stored.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineDef {
    pub points: Option<Vec<[f64; 2]>>,
    pub direction: Option<String>,
}

/// A region as stored.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionDef {
    pub name: Option<String>,
    pub points: Option<Vec<[f64; 2]>>,
}

/// An alert's definition as stored (see [`StreamDef`]).
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertDef {
    pub id: Option<String>,
    pub event: Option<String>,
    pub streams: Option<Vec<String>>,
    pub callback_url: Option<String>,
    pub webhook_secrets: Option<Vec<String>>,
    pub mqtt: Option<bool>,
    pub mqtt_topic: Option<String>,
    pub send_end: Option<bool>,
    pub enabled: Option<bool>,
}

/// Who declared an entity: the config file (its definition is refreshed
/// from the file at every start) or the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    Config,
    Api,
}

/// A stored camera stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamRow {
    pub id: String,
    pub name: String,
    pub spec: StreamDef,
    /// Started (`true`) or stopped by an operator.
    pub running: bool,
    pub origin: Origin,
    pub created_at: String,
}

/// How an index groups frames into records: one record per `time` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    pub time: f64,
    pub frame_count: u32,
}

/// A stored scene index: what a stream's scored frames are summarised into.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexRow {
    pub id: String,
    pub stream_id: String,
    pub name: Option<String>,
    pub prompt: Option<String>,
    pub batch: Batch,
    pub running: bool,
    /// WebSocket connection that receives this index's records.
    pub ws_connection: Option<String>,
    pub origin: Origin,
    pub created_at: String,
}

/// A stored event (detection rule).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventRow {
    pub id: String,
    pub spec: EventDef,
    pub origin: Origin,
    pub created_at: String,
}

/// A stored alert.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlertRow {
    pub id: String,
    /// The index it hangs under (API alerts); config alerts have none.
    pub index_id: Option<String>,
    pub spec: AlertDef,
    pub ws_connection: Option<String>,
    pub enabled: bool,
    pub origin: Origin,
    pub created_at: String,
}

/// Everything stored, loaded at start.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub streams: Vec<StreamRow>,
    pub indexes: Vec<IndexRow>,
    pub events: Vec<EventRow>,
    pub alerts: Vec<AlertRow>,
}

/// Entity tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Streams,
    Indexes,
    Events,
    Alerts,
}

impl Table {
    /// The table's name, also the plural of its kind in messages.
    pub fn name(self) -> &'static str {
        match self {
            Table::Streams => "streams",
            Table::Indexes => "indexes",
            Table::Events => "events",
            Table::Alerts => "alerts",
        }
    }
}

impl Store {
    /// Loads every stored entity.
    pub fn snapshot(&self) -> anyhow::Result<Snapshot> {
        Ok(Snapshot {
            streams: self.all(Table::Streams)?,
            indexes: self.all(Table::Indexes)?,
            events: self.all(Table::Events)?,
            alerts: self.all(Table::Alerts)?,
        })
    }

    fn all<T: DeserializeOwned>(&self, table: Table) -> anyhow::Result<Vec<T>> {
        let conn = self.lock()?;
        let mut q = conn.prepare(&format!(
            "SELECT id, body FROM {} ORDER BY rowid",
            table.name()
        ))?;
        let rows = q.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, body) = row?;
            out.push(
                serde_json::from_str(&body)
                    .with_context(|| format!("{} row {id:?} is not readable", table.name()))?,
            );
        }
        Ok(out)
    }

    /// Inserts or replaces one entity row.
    pub fn put<T: Serialize>(&self, table: Table, id: &str, row: &T) -> anyhow::Result<()> {
        let body = serde_json::to_string(row)?;
        let conn = self.lock()?;
        match table {
            Table::Indexes => {
                let stream: Option<String> = serde_json::from_str::<serde_json::Value>(&body)?
                    .get("stream_id")
                    .and_then(|v| v.as_str().map(String::from));
                conn.execute(
                    "INSERT OR REPLACE INTO indexes (id, stream_id, body) VALUES (?1, ?2, ?3)",
                    params![id, stream.unwrap_or_default(), body],
                )?;
            }
            _ => {
                conn.execute(
                    &format!(
                        "INSERT OR REPLACE INTO {} (id, body) VALUES (?1, ?2)",
                        table.name()
                    ),
                    params![id, body],
                )?;
            }
        }
        Ok(())
    }

    /// Deletes entity rows by id (with the scene records of deleted indexes),
    /// all in one transaction.
    pub fn delete(&self, rows: &[(Table, String)]) -> anyhow::Result<()> {
        let mut conn = self.lock()?;
        let tx = conn.transaction()?;
        for (table, id) in rows {
            tx.execute(&format!("DELETE FROM {} WHERE id = ?1", table.name()), [id])?;
            if matches!(table, Table::Indexes) {
                tx.execute("DELETE FROM scene_records WHERE index_id = ?1", [id])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}
