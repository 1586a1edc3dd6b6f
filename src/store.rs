//! Persistent state in SQLite: streams, scene indexes, events and alerts
//! (each a JSON row keyed by id), the recent scene records of each index,
//! the delivery outbox, frame embeddings and prompt embeddings.
//!
//! The schema is versioned with `PRAGMA user_version` and upgraded by the
//! ordered [`MIGRATIONS`] at open, one transaction each, so a state directory
//! written by an older sightline opens in a newer one. The database runs in
//! WAL mode with `synchronous=FULL`: a change the API acknowledged survives
//! a power cut.

use std::path::Path;
use std::sync::Mutex;

use anyhow::{anyhow, Context};
use rusqlite::{params, Connection, OptionalExtension};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::config::{RawAlert, RawEvent, RawStream};

/// Schema steps, applied in order; `user_version` counts those applied.
/// Append only: never edit a step that has shipped.
const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    "CREATE TABLE streams (id TEXT PRIMARY KEY, body TEXT NOT NULL);
     CREATE TABLE indexes (id TEXT PRIMARY KEY, stream_id TEXT NOT NULL, body TEXT NOT NULL);
     CREATE TABLE events (id TEXT PRIMARY KEY, body TEXT NOT NULL);
     CREATE TABLE alerts (id TEXT PRIMARY KEY, body TEXT NOT NULL);
     CREATE TABLE scene_records (
         seq INTEGER PRIMARY KEY AUTOINCREMENT,
         index_id TEXT NOT NULL,
         start REAL NOT NULL,
         end REAL NOT NULL,
         body TEXT NOT NULL);
     CREATE INDEX scene_records_by_index ON scene_records (index_id, start);",
    // 2: the durable webhook outbox (see alert/outbox.rs).
    "CREATE TABLE outbox (
         seq INTEGER PRIMARY KEY AUTOINCREMENT,
         target TEXT NOT NULL,
         message_id TEXT NOT NULL,
         alert_id TEXT NOT NULL,
         body BLOB NOT NULL,
         secrets TEXT NOT NULL,
         attempts INTEGER NOT NULL DEFAULT 0,
         next_at INTEGER NOT NULL,
         created_at INTEGER NOT NULL,
         last_error TEXT,
         dead INTEGER NOT NULL DEFAULT 0);
     CREATE INDEX outbox_due ON outbox (target, dead, next_at);",
    // 3: MQTT messages in the outbox need their topic.
    "ALTER TABLE outbox ADD COLUMN topic TEXT NOT NULL DEFAULT '';",
    // 4: frame embeddings of dual-encoder models (see embeddings.rs).
    "CREATE TABLE embeddings (
         seq INTEGER PRIMARY KEY AUTOINCREMENT,
         stream_id TEXT NOT NULL,
         wall_ms INTEGER NOT NULL,
         t REAL NOT NULL,
         scale REAL NOT NULL,
         q BLOB NOT NULL);
     CREATE INDEX embeddings_by_time ON embeddings (wall_ms);",
    // 5: webhook URLs whose receiver answered 410 Gone stay disabled across
    // restarts, until an operator redelivers one of their dead letters.
    "CREATE TABLE gone_targets (
         target TEXT PRIMARY KEY,
         reason TEXT NOT NULL,
         at_ms INTEGER NOT NULL);",
    // 6: text embeddings of prompts, by text encoder and token ids, so a
    // restart does not run the text encoder again (see model/clip.rs).
    "CREATE TABLE text_embeddings (
         model TEXT NOT NULL,
         ids BLOB NOT NULL,
         vec BLOB NOT NULL,
         used_ms INTEGER NOT NULL,
         PRIMARY KEY (model, ids));
     CREATE INDEX text_embeddings_by_use ON text_embeddings (used_ms);",
];

/// How many prompt embeddings the state keeps (searches add some too); the
/// longest unused go first.
const TEXT_EMBEDDINGS_KEPT: usize = 4096;

fn id_bytes(ids: &[i64]) -> Vec<u8> {
    ids.iter().flat_map(|i| i.to_le_bytes()).collect()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl crate::model::EmbeddingMemory for Store {
    fn recall(&self, model: &str, ids: &[i64]) -> Option<Vec<f32>> {
        self.text_embedding(model, ids)
            .inspect_err(|e| tracing::warn!("reading a stored prompt embedding: {e:#}"))
            .ok()
            .flatten()
    }

    fn remember(&self, model: &str, ids: &[i64], embedding: &[f32]) {
        if let Err(e) = self.put_text_embedding(model, ids, embedding) {
            tracing::warn!("storing a prompt embedding: {e:#}");
        }
    }
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
    pub spec: RawStream,
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
    pub spec: RawEvent,
    pub origin: Origin,
    pub created_at: String,
}

/// A stored alert.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlertRow {
    pub id: String,
    /// The index it hangs under (API alerts); config alerts have none.
    pub index_id: Option<String>,
    pub spec: RawAlert,
    pub ws_connection: Option<String>,
    pub enabled: bool,
    pub origin: Origin,
    pub created_at: String,
}

/// One summary of what an index saw over a batch of frames.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SceneRecord {
    pub rtstream_index_id: String,
    pub rtstream_id: String,
    /// Stream seconds of the first and last frame in the batch.
    pub start: f64,
    pub end: f64,
    /// Wall-clock time of the last frame, ISO 8601 UTC.
    pub timestamp: String,
    pub frames: u32,
    pub labels: Vec<LabelSummary>,
    /// A one-line description, such as "2 person (best 0.91)".
    pub description: String,
}

/// Count and best score of one label in a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelSummary {
    pub label: String,
    /// Largest number seen in one frame.
    pub count: u32,
    pub best_score: f64,
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
#[derive(Debug, Clone, Copy)]
pub enum Table {
    Streams,
    Indexes,
    Events,
    Alerts,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Streams => "streams",
            Table::Indexes => "indexes",
            Table::Events => "events",
            Table::Alerts => "alerts",
        }
    }
}

/// The database. One connection behind a mutex: writes are small and rare
/// next to the frame rate, and SQLite serialises writers anyway.
pub struct Store {
    conn: Mutex<Connection>,
}

impl Store {
    /// Opens (creating if needed) `dir/state.sqlite3`, or an in-memory
    /// database when `dir` is `None`, and brings the schema up to date.
    pub fn open(dir: Option<&Path>) -> anyhow::Result<Store> {
        let conn = match dir {
            Some(d) => {
                std::fs::create_dir_all(d)
                    .with_context(|| format!("creating the state directory {}", d.display()))?;
                let path = d.join("state.sqlite3");
                Connection::open(&path).with_context(|| format!("opening {}", path.display()))?
            }
            None => Connection::open_in_memory().context("opening an in-memory database")?,
        };
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=5000;",
        )
        .context("setting database pragmas")?;
        let store = Store {
            conn: Mutex::new(conn),
        };
        store.migrate()?;
        Ok(store)
    }

    pub(crate) fn lock(&self) -> anyhow::Result<std::sync::MutexGuard<'_, Connection>> {
        self.conn
            .lock()
            .map_err(|_| anyhow!("the state database lock is poisoned"))
    }

    /// The schema version of this database.
    pub fn version(&self) -> anyhow::Result<usize> {
        let conn = self.lock()?;
        let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        Ok(v as usize)
    }

    fn migrate(&self) -> anyhow::Result<()> {
        let mut conn = self.lock()?;
        let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if current as usize > MIGRATIONS.len() {
            return Err(anyhow!(
                "the state database has schema version {current}, newer than this sightline \
                 understands ({}); refusing to touch it",
                MIGRATIONS.len()
            ));
        }
        for (i, step) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            let tx = conn.transaction()?;
            tx.execute_batch(step)
                .with_context(|| format!("applying schema migration {}", i + 1))?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            tx.commit()?;
        }
        Ok(())
    }

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

    /// Appends scene records and keeps at most `keep` per index.
    pub fn add_records(&self, records: &[SceneRecord], keep: usize) -> anyhow::Result<()> {
        let mut conn = self.lock()?;
        let tx = conn.transaction()?;
        for r in records {
            tx.execute(
                "INSERT INTO scene_records (index_id, start, end, body) VALUES (?1, ?2, ?3, ?4)",
                params![
                    r.rtstream_index_id,
                    r.start,
                    r.end,
                    serde_json::to_string(r)?
                ],
            )?;
            // Retention: drop what falls behind the newest `keep` of this index.
            let cutoff: Option<i64> = tx
                .query_row(
                    "SELECT seq FROM scene_records WHERE index_id = ?1
                     ORDER BY seq DESC LIMIT 1 OFFSET ?2",
                    params![r.rtstream_index_id, keep as i64],
                    |row| row.get(0),
                )
                .optional()?;
            if let Some(seq) = cutoff {
                tx.execute(
                    "DELETE FROM scene_records WHERE index_id = ?1 AND seq <= ?2",
                    params![r.rtstream_index_id, seq],
                )?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Appends frame embeddings and deletes those older than `cutoff_ms`.
    pub fn add_embeddings(
        &self,
        frames: &[(String, crate::embeddings::Entry)],
        cutoff_ms: i64,
    ) -> anyhow::Result<()> {
        let mut conn = self.lock()?;
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO embeddings (stream_id, wall_ms, t, scale, q) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for (stream, e) in frames {
                let bytes: Vec<u8> = e.q.iter().map(|&b| b as u8).collect();
                insert.execute(params![stream, e.wall_ms, e.t, e.scale, bytes])?;
            }
        }
        tx.execute(
            "DELETE FROM embeddings WHERE wall_ms < ?1",
            params![cutoff_ms],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Every stored embedding at or after `since_ms`, oldest first.
    pub fn load_embeddings(
        &self,
        since_ms: i64,
    ) -> anyhow::Result<Vec<(String, crate::embeddings::Entry)>> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare(
            "SELECT stream_id, wall_ms, t, scale, q FROM embeddings WHERE wall_ms >= ?1 ORDER BY seq",
        )?;
        let rows = stmt.query_map(params![since_ms], |r| {
            let q: Vec<u8> = r.get(4)?;
            Ok((
                r.get::<_, String>(0)?,
                crate::embeddings::Entry {
                    wall_ms: r.get(1)?,
                    t: r.get(2)?,
                    scale: r.get(3)?,
                    q: q.into_iter().map(|b| b as i8).collect(),
                },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Forgets a deleted stream's embeddings.
    pub fn delete_embeddings(&self, stream: &str) -> anyhow::Result<()> {
        self.lock()?.execute(
            "DELETE FROM embeddings WHERE stream_id = ?1",
            params![stream],
        )?;
        Ok(())
    }

    /// A prompt embedding kept by [`EmbeddingMemory::remember`].
    pub fn text_embedding(&self, model: &str, ids: &[i64]) -> anyhow::Result<Option<Vec<f32>>> {
        let conn = self.lock()?;
        let key = id_bytes(ids);
        let blob: Option<Vec<u8>> = conn
            .query_row(
                "SELECT vec FROM text_embeddings WHERE model = ?1 AND ids = ?2",
                params![model, key],
                |r| r.get(0),
            )
            .optional()?;
        let Some(blob) = blob else { return Ok(None) };
        conn.execute(
            "UPDATE text_embeddings SET used_ms = ?3 WHERE model = ?1 AND ids = ?2",
            params![model, key, now_ms()],
        )?;
        Ok(Some(
            blob.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        ))
    }

    /// Keeps a prompt embedding, dropping the longest unused beyond the bound.
    pub fn put_text_embedding(&self, model: &str, ids: &[i64], v: &[f32]) -> anyhow::Result<()> {
        let mut conn = self.lock()?;
        let tx = conn.transaction()?;
        let blob: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        tx.execute(
            "INSERT OR REPLACE INTO text_embeddings (model, ids, vec, used_ms) VALUES (?1, ?2, ?3, ?4)",
            params![model, id_bytes(ids), blob, now_ms()],
        )?;
        tx.execute(
            "DELETE FROM text_embeddings WHERE rowid IN (SELECT rowid FROM text_embeddings
             ORDER BY used_ms DESC, rowid DESC LIMIT -1 OFFSET ?1)",
            params![TEXT_EMBEDDINGS_KEPT as i64],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// One page (1-based) of an index's records, oldest first, optionally
    /// only those overlapping `[start, end]` stream seconds. Returns the page
    /// and whether another follows.
    pub fn records(
        &self,
        index: &str,
        range: Option<(f64, f64)>,
        page: usize,
        page_size: usize,
    ) -> anyhow::Result<(Vec<SceneRecord>, bool)> {
        let (lo, hi) = range.unwrap_or((f64::MIN, f64::MAX));
        let conn = self.lock()?;
        let mut q = conn.prepare(
            "SELECT body FROM scene_records WHERE index_id = ?1 AND end >= ?2 AND start <= ?3
             ORDER BY seq LIMIT ?4 OFFSET ?5",
        )?;
        let offset = page.saturating_sub(1) * page_size;
        let rows = q.query_map(
            params![index, lo, hi, (page_size + 1) as i64, offset as i64],
            |r| r.get::<_, String>(0),
        )?;
        let mut out = Vec::new();
        for body in rows {
            out.push(serde_json::from_str(&body?).context("a scene record is not readable")?);
        }
        let more = out.len() > page_size;
        out.truncate(page_size);
        Ok((out, more))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(index: &str, t: f64) -> SceneRecord {
        SceneRecord {
            rtstream_index_id: index.into(),
            rtstream_id: "s".into(),
            start: t,
            end: t + 1.0,
            timestamp: "2026-11-23T00:00:00.000Z".into(),
            frames: 2,
            labels: vec![],
            description: String::new(),
        }
    }

    #[test]
    fn prompt_embeddings_are_bounded_and_keyed_by_model() -> anyhow::Result<()> {
        let s = Store::open(None)?;
        let n = TEXT_EMBEDDINGS_KEPT as i64 + 10;
        for i in 0..n {
            s.put_text_embedding("m1", &[49406, i, 49407], &[i as f32, 0.5])?;
        }
        let count: i64 = s
            .lock()?
            .query_row("SELECT COUNT(*) FROM text_embeddings", [], |r| r.get(0))?;
        assert_eq!(count, TEXT_EMBEDDINGS_KEPT as i64);
        let newest = s.text_embedding("m1", &[49406, n - 1, 49407])?;
        assert_eq!(newest, Some(vec![(n - 1) as f32, 0.5]));
        assert_eq!(
            s.text_embedding("m1", &[49406, 0, 49407])?,
            None,
            "oldest dropped"
        );
        assert_eq!(s.text_embedding("m2", &[49406, n - 1, 49407])?, None);
        Ok(())
    }

    #[test]
    fn rows_survive_reopening_and_the_schema_is_versioned() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        {
            let s = Store::open(Some(dir.path()))?;
            let row = EventRow {
                id: "e1".into(),
                spec: RawEvent {
                    prompt: Some("Detect person".into()),
                    ..Default::default()
                },
                origin: Origin::Api,
                created_at: "now".into(),
            };
            s.put(Table::Events, "e1", &row)?;
            s.put(
                Table::Events,
                "e2",
                &EventRow {
                    id: "e2".into(),
                    ..row
                },
            )?;
            s.delete(&[(Table::Events, "e1".into())])?;
        }
        let s = Store::open(Some(dir.path()))?;
        assert_eq!(s.version()?, MIGRATIONS.len());
        let snap = s.snapshot()?;
        let ids: Vec<_> = snap.events.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["e2"]);
        assert_eq!(snap.events[0].spec.prompt.as_deref(), Some("Detect person"));
        Ok(())
    }

    #[test]
    fn a_newer_schema_is_refused() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        Store::open(Some(dir.path()))?;
        let c = Connection::open(dir.path().join("state.sqlite3"))?;
        c.pragma_update(None, "user_version", 999)?;
        drop(c);
        let err = Store::open(Some(dir.path())).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("newer")), "refused");
        Ok(())
    }

    #[test]
    fn records_are_paged_ranged_and_bounded() -> anyhow::Result<()> {
        let s = Store::open(None)?;
        let batch: Vec<_> = (0..10).map(|t| record("i1", t as f64)).collect();
        s.add_records(&batch, 6)?;
        s.add_records(&[record("i2", 0.0)], 6)?;
        let (all, more) = s.records("i1", None, 1, 100)?;
        assert!(!more);
        let starts: Vec<f64> = all.iter().map(|r| r.start).collect();
        assert_eq!(
            starts,
            [4.0, 5.0, 6.0, 7.0, 8.0, 9.0],
            "only the newest 6 kept"
        );
        let (p1, more) = s.records("i1", None, 1, 4)?;
        assert_eq!((p1.len(), more), (4, true));
        let (p2, more) = s.records("i1", None, 2, 4)?;
        assert_eq!((p2.len(), more), (2, false));
        let (r, _) = s.records("i1", Some((6.5, 7.5)), 1, 100)?;
        let starts: Vec<f64> = r.iter().map(|r| r.start).collect();
        assert_eq!(starts, [6.0, 7.0], "records overlapping 6.5..7.5");
        s.delete(&[(Table::Indexes, "i1".into())])?;
        assert!(s.records("i1", None, 1, 100)?.0.is_empty());
        assert_eq!(s.records("i2", None, 1, 100)?.0.len(), 1);
        Ok(())
    }
}
