//! Persistent state in SQLite, and the only module that speaks SQL: streams, scene indexes, events and alerts
//! (each a JSON row keyed by id), the recent scene records of each index,
//! the delivery outbox, frame embeddings and prompt embeddings.
//!
//! The schema is versioned with `PRAGMA user_version` and upgraded by the
//! ordered migrations (`migrations.rs`) at open, one transaction each, so a state directory
//! written by an older sightline opens in a newer one. The database runs in
//! WAL mode with `synchronous=FULL`: a change the API acknowledged survives
//! a power cut.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{anyhow, Context};
use rusqlite::Connection;

mod catalog;
mod clips;
mod embeddings;
pub mod integrity;
mod migrations;
mod outbox;
mod scenes;
pub mod space;
mod ws_journal;

pub use catalog::{
    AlertDef, AlertRow, Batch, EventDef, EventRow, IndexRow, LineDef, MotionDef, Origin, RegionDef,
    Snapshot, StreamDef, StreamRow, Table,
};
pub use clips::{ClipRow, LiveClip};
pub use embeddings::EmbeddingMemory;
pub use integrity::OnCorruption;
pub use outbox::{MemoryOutbox, NewMessage, Outbox, OutboxRow};
pub use scenes::{LabelSummary, SceneRecord};
pub use ws_journal::{Journal, JournalLimits, Missed, StoreJournal};

use migrations::MIGRATIONS;

/// The database. One connection behind a mutex: writes are small and rare
/// next to the frame rate, and SQLite serialises writers anyway.
pub struct Store {
    conn: Mutex<Connection>,
}

/// A database that failed its integrity check (the message says what to do).
#[derive(Debug)]
pub struct Damaged(pub String);

impl std::fmt::Display for Damaged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Damaged {}

/// Makes the database file (creating it empty if need be) and any WAL and
/// shared-memory files readable by the owner only, whatever the umask: the
/// database holds webhook signing secrets. SQLite gives the WAL and -shm
/// files the main file's mode when it creates them.
fn owner_only(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    for suffix in ["", "-wal", "-shm"] {
        let p = PathBuf::from(format!("{}{suffix}", path.display()));
        if p.exists() {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("making {} owner-only", p.display()))?;
        }
    }
    Ok(())
}

impl Store {
    /// Opens (creating if needed) `dir/state.sqlite3`, or an in-memory
    /// database when `dir` is `None`, and brings the schema up to date.
    pub fn open(dir: Option<&Path>) -> anyhow::Result<Store> {
        Self::open_with(dir, OnCorruption::Refuse)
    }

    /// Opens the state in `dir` (in memory without one). A database that
    /// fails its integrity check is refused, or moved aside and replaced by
    /// a fresh one when `on` says so.
    pub fn open_with(dir: Option<&Path>, on: OnCorruption) -> anyhow::Result<Store> {
        let Some(d) = dir else {
            let conn = Connection::open_in_memory().context("opening an in-memory database")?;
            return Self::ready(conn);
        };
        std::fs::create_dir_all(d)
            .with_context(|| format!("creating the state directory {}", d.display()))?;
        let path = d.join(integrity::FILE);
        match Self::open_file(&path) {
            Err(e) if on == OnCorruption::Rebuild && e.downcast_ref::<Damaged>().is_some() => {
                let kept = integrity::move_aside(&path)?;
                tracing::error!(
                    error = %e, kept = %kept.display(),
                    "STATE DATABASE DAMAGED: starting from a fresh one ([state] on_corruption = \"rebuild\"); \
                     API-created streams, events and alerts and undelivered messages are in the kept file"
                );
                Self::open_file(&path)
            }
            other => other,
        }
    }

    /// Opens one database file, checking its integrity first.
    pub(crate) fn open_file(path: &Path) -> anyhow::Result<Store> {
        owner_only(path)?;
        let conn = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
        if let Some(problem) = integrity::problems(&conn) {
            return Err(anyhow::Error::new(Damaged(
                integrity::refusal(path, &problem).to_string(),
            )));
        }
        Self::ready(conn).map_err(|e| anyhow!("{}: {e:#}", path.display()))
    }

    fn ready(conn: Connection) -> anyhow::Result<Store> {
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

    pub(super) fn lock(&self) -> anyhow::Result<std::sync::MutexGuard<'_, Connection>> {
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
}

#[cfg(test)]
mod tests;
