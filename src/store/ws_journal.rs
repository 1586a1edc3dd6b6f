//! The WebSocket journal: every message the hub publishes, by `seq`, so a
//! client that reconnects can be sent what it missed. Kept to the newest
//! `max_messages` and `max_age`; pruned as it is written.
//!
//! It is a database of its own (`ws-journal.sqlite3` beside the state
//! database), written without an fsync per message (WAL, `synchronous =
//! NORMAL`): WebSocket delivery is a convenience channel, and a message a
//! power cut loses from it is still in the outbox for webhooks and MQTT. So
//! publishing stays cheap and never waits on the outbox's lock. A journal
//! that cannot be opened is started afresh.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{anyhow, Context};
use rusqlite::{params, Connection};

/// The journal's file in the state directory.
pub const JOURNAL_FILE: &str = "ws-journal.sqlite3";

/// Where the WebSocket hub keeps published messages for resuming clients
/// ([`StoreJournal`] in the daemon).
pub trait Journal: Send + Sync {
    /// The highest `seq` written so far (0 when empty).
    fn last_seq(&self) -> anyhow::Result<u64>;
    fn append(&self, seq: u64, connection: &str, body: &str, now_ms: i64) -> anyhow::Result<()>;
    /// The connection's messages after `after`.
    fn since(&self, connection: &str, after: u64) -> anyhow::Result<Missed>;
}

/// What a resuming client missed.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Missed {
    /// The oldest `seq` the journal still holds (for any connection).
    pub first_kept: Option<u64>,
    /// The connection's messages after the asked-for `seq`, in order.
    pub messages: Vec<(u64, String)>,
}

/// How much of the journal to keep.
#[derive(Debug, Clone, Copy)]
pub struct JournalLimits {
    pub max_messages: u64,
    pub max_age: Duration,
}

/// The journal's database.
pub struct StoreJournal {
    conn: Mutex<Connection>,
    limits: JournalLimits,
}

const SCHEMA: &str = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
     CREATE TABLE IF NOT EXISTS ws_journal (
         seq INTEGER PRIMARY KEY,
         connection TEXT NOT NULL,
         body TEXT NOT NULL,
         at_ms INTEGER NOT NULL);
     CREATE INDEX IF NOT EXISTS ws_journal_by_connection ON ws_journal (connection, seq);";

impl StoreJournal {
    /// Opens the journal in `dir` (in memory without one); one that cannot
    /// be read is moved aside and started afresh (it holds no state).
    pub fn open(dir: Option<&Path>, limits: JournalLimits) -> anyhow::Result<StoreJournal> {
        let conn = match dir {
            None => Self::ready(Connection::open_in_memory()?)?,
            Some(d) => {
                let path = d.join(JOURNAL_FILE);
                super::owner_only(&path)?;
                match Connection::open(&path)
                    .map_err(Into::into)
                    .and_then(Self::ready)
                {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, path = %path.display(), "WebSocket journal unreadable; starting a new one");
                        let aside = path.with_extension("sqlite3.bad");
                        std::fs::rename(&path, &aside)
                            .with_context(|| format!("moving {} aside", path.display()))?;
                        Self::ready(Connection::open(&path)?)?
                    }
                }
            }
        };
        Ok(StoreJournal {
            conn: Mutex::new(conn),
            limits,
        })
    }

    fn ready(conn: Connection) -> anyhow::Result<Connection> {
        conn.execute_batch(SCHEMA)
            .context("preparing the WebSocket journal")?;
        Ok(conn)
    }

    fn lock(&self) -> anyhow::Result<std::sync::MutexGuard<'_, Connection>> {
        self.conn
            .lock()
            .map_err(|_| anyhow!("the WebSocket journal lock is poisoned"))
    }
}

impl Journal for StoreJournal {
    fn last_seq(&self) -> anyhow::Result<u64> {
        let conn = self.lock()?;
        let last: Option<i64> =
            conn.query_row("SELECT MAX(seq) FROM ws_journal", [], |r| r.get(0))?;
        Ok(last.unwrap_or(0) as u64)
    }

    fn append(&self, seq: u64, connection: &str, body: &str, now_ms: i64) -> anyhow::Result<()> {
        let conn = self.lock()?;
        conn.execute(
            "INSERT INTO ws_journal (seq, connection, body, at_ms) VALUES (?1, ?2, ?3, ?4)",
            params![seq as i64, connection, body, now_ms],
        )
        .context("writing to the WebSocket journal")?;
        // Pruning every 64th message keeps the cost per message small.
        if seq % 64 == 0 {
            let oldest_kept = seq.saturating_sub(self.limits.max_messages) as i64;
            let cutoff = now_ms - self.limits.max_age.as_millis() as i64;
            conn.execute(
                "DELETE FROM ws_journal WHERE seq <= ?1 OR at_ms < ?2",
                params![oldest_kept, cutoff],
            )
            .context("pruning the WebSocket journal")?;
        }
        Ok(())
    }

    fn since(&self, connection: &str, after: u64) -> anyhow::Result<Missed> {
        let conn = self.lock()?;
        let first: Option<i64> =
            conn.query_row("SELECT MIN(seq) FROM ws_journal", [], |r| r.get(0))?;
        let mut q = conn.prepare(
            "SELECT seq, body FROM ws_journal WHERE connection = ?1 AND seq > ?2 ORDER BY seq",
        )?;
        let messages = q
            .query_map(params![connection, after as i64], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Missed {
            first_kept: first.map(|f| f as u64),
            messages,
        })
    }
}
