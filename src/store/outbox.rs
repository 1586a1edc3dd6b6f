//! The delivery outbox's rows: one per (message, target), committed before
//! the first attempt and deleted only on acknowledgement. [`Outbox`] is what
//! the delivery stage needs; [`Store`] implements it on SQLite and
//! [`MemoryOutbox`] is the model it is checked against (`tests/suite/outbox_model.rs`
//! runs random operation sequences with crashes through both).

use std::collections::BTreeMap;
use std::sync::Mutex;

use rusqlite::params;
use serde::Serialize;

use super::Store;
use crate::domain::Secret;

/// What the delivery stage asks of durable storage. Times are Unix ms.
pub trait Outbox: Send + Sync {
    /// Commits messages (due at `now`) in one transaction; returns their seqs.
    fn add(&self, msgs: &[NewMessage], now: i64) -> anyhow::Result<Vec<i64>>;
    /// Live rows of a target due at `now`, by due time then seq.
    fn due(&self, target: &str, now: i64, limit: usize) -> anyhow::Result<Vec<OutboxRow>>;
    /// Targets with live rows (to resume after a restart).
    fn targets(&self) -> anyhow::Result<Vec<String>>;
    /// The receiver acknowledged: the row goes.
    fn done(&self, seq: i64) -> anyhow::Result<()>;
    /// An attempt failed: schedule the next at `next_at`, or (None) make the
    /// row a dead letter.
    fn failed(
        &self,
        seq: i64,
        attempts: u32,
        next_at: Option<i64>,
        error: &str,
    ) -> anyhow::Result<()>;
    /// The receiver said 410 Gone: every live row of the target becomes a
    /// dead letter and the target is recorded as gone (kept across restarts).
    fn target_gone(&self, target: &str, error: &str, now: i64) -> anyhow::Result<usize>;
    /// Why a target was disabled by a 410, if it is.
    fn gone_reason(&self, target: &str) -> anyhow::Result<Option<String>>;
    /// Dead letters, oldest first.
    fn dead_letters(&self, limit: usize) -> anyhow::Result<Vec<OutboxRow>>;
    /// Puts a dead letter back in line with a fresh schedule and enables its
    /// target again; returns the target, `None` if there is no such dead letter.
    fn redeliver(&self, seq: i64, now: i64) -> anyhow::Result<Option<String>>;
    /// Keeps the newest `keep` dead letters and deletes older ones; returns
    /// how many went.
    fn trim_dead(&self, keep: usize) -> anyhow::Result<usize>;
    /// Rows per target: (target, live, dead letters).
    fn depth(&self) -> anyhow::Result<Vec<(String, u64, u64)>>;
    /// Folds the write-ahead log back into the database; `truncate` also
    /// gives its space back to the filesystem (after a full disk).
    fn checkpoint(&self, _truncate: bool) -> anyhow::Result<()> {
        Ok(())
    }
}

/// A message to store for one target.
pub struct NewMessage<'a> {
    pub target: &'a str,
    pub message_id: &'a str,
    pub alert_id: &'a str,
    /// MQTT topic; empty for webhooks.
    pub topic: &'a str,
    pub body: &'a [u8],
    pub secrets: &'a [Secret],
}

/// One stored message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutboxRow {
    pub seq: i64,
    pub target: String,
    pub message_id: String,
    pub alert_id: String,
    pub topic: String,
    #[serde(skip)]
    pub body: Vec<u8>,
    #[serde(skip)]
    pub secrets: Vec<String>,
    pub attempts: u32,
    pub next_at: i64,
    pub created_at: i64,
    pub last_error: Option<String>,
}

const COLUMNS: &str = "seq, target, message_id, alert_id, body, secrets, attempts, next_at, \
     created_at, last_error, topic";

fn row(r: &rusqlite::Row) -> rusqlite::Result<OutboxRow> {
    let secrets: String = r.get(5)?;
    Ok(OutboxRow {
        seq: r.get(0)?,
        target: r.get(1)?,
        message_id: r.get(2)?,
        alert_id: r.get(3)?,
        body: r.get(4)?,
        secrets: serde_json::from_str(&secrets).unwrap_or_default(),
        attempts: r.get(6)?,
        next_at: r.get(7)?,
        created_at: r.get(8)?,
        last_error: r.get(9)?,
        topic: r.get(10)?,
    })
}

impl Outbox for Store {
    fn checkpoint(&self, truncate: bool) -> anyhow::Result<()> {
        let mode = if truncate { "TRUNCATE" } else { "PASSIVE" };
        let conn = self.lock()?;
        conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(()))?;
        Ok(())
    }

    fn add(&self, msgs: &[NewMessage], now: i64) -> anyhow::Result<Vec<i64>> {
        let mut conn = self.lock()?;
        let tx = conn.transaction()?;
        let mut seqs = Vec::with_capacity(msgs.len());
        for m in msgs {
            let secrets: Vec<String> = m.secrets.iter().map(Secret::to_text).collect();
            tx.execute(
                "INSERT INTO outbox (target, message_id, alert_id, body, secrets, next_at, created_at, topic)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7)",
                params![m.target, m.message_id, m.alert_id, m.body, serde_json::to_string(&secrets)?, now, m.topic],
            )?;
            seqs.push(tx.last_insert_rowid());
        }
        tx.commit()?;
        Ok(seqs)
    }

    fn due(&self, target: &str, now: i64, limit: usize) -> anyhow::Result<Vec<OutboxRow>> {
        let conn = self.lock()?;
        let mut q = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM outbox WHERE target = ?1 AND dead = 0 AND next_at <= ?2
             ORDER BY next_at, seq LIMIT ?3"
        ))?;
        let rows = q.query_map(params![target, now, limit as i64], row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn targets(&self) -> anyhow::Result<Vec<String>> {
        let conn = self.lock()?;
        let mut q = conn.prepare("SELECT DISTINCT target FROM outbox WHERE dead = 0")?;
        let rows = q.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn done(&self, seq: i64) -> anyhow::Result<()> {
        self.lock()?
            .execute("DELETE FROM outbox WHERE seq = ?1", [seq])?;
        Ok(())
    }

    fn failed(
        &self,
        seq: i64,
        attempts: u32,
        next_at: Option<i64>,
        error: &str,
    ) -> anyhow::Result<()> {
        let conn = self.lock()?;
        match next_at {
            Some(at) => conn.execute(
                "UPDATE outbox SET attempts = ?2, next_at = ?3, last_error = ?4 WHERE seq = ?1",
                params![seq, attempts, at, error],
            )?,
            None => conn.execute(
                "UPDATE outbox SET attempts = ?2, dead = 1, last_error = ?3 WHERE seq = ?1",
                params![seq, attempts, error],
            )?,
        };
        Ok(())
    }

    fn target_gone(&self, target: &str, error: &str, now: i64) -> anyhow::Result<usize> {
        let mut conn = self.lock()?;
        let tx = conn.transaction()?;
        let n = tx.execute(
            "UPDATE outbox SET dead = 1, last_error = ?2 WHERE target = ?1 AND dead = 0",
            params![target, error],
        )?;
        tx.execute(
            "INSERT INTO gone_targets (target, reason, at_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (target) DO UPDATE SET reason = ?2, at_ms = ?3",
            params![target, error, now],
        )?;
        tx.commit()?;
        Ok(n)
    }

    fn trim_dead(&self, keep: usize) -> anyhow::Result<usize> {
        let conn = self.lock()?;
        Ok(conn.execute(
            "DELETE FROM outbox WHERE dead = 1 AND seq NOT IN
             (SELECT seq FROM outbox WHERE dead = 1 ORDER BY seq DESC LIMIT ?1)",
            [keep as i64],
        )?)
    }

    fn gone_reason(&self, target: &str) -> anyhow::Result<Option<String>> {
        let conn = self.lock()?;
        let mut q = conn.prepare("SELECT reason FROM gone_targets WHERE target = ?1")?;
        let mut rows = q.query_map([target], |r| r.get::<_, String>(0))?;
        Ok(rows.next().transpose()?)
    }

    fn depth(&self) -> anyhow::Result<Vec<(String, u64, u64)>> {
        let conn = self.lock()?;
        let mut q = conn.prepare(
            "SELECT target, SUM(dead = 0), SUM(dead = 1) FROM outbox GROUP BY target ORDER BY target",
        )?;
        let rows = q.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)? as u64,
                r.get::<_, i64>(2)? as u64,
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn dead_letters(&self, limit: usize) -> anyhow::Result<Vec<OutboxRow>> {
        let conn = self.lock()?;
        let mut q = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM outbox WHERE dead = 1 ORDER BY seq LIMIT ?1"
        ))?;
        let rows = q.query_map([limit as i64], row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn redeliver(&self, seq: i64, now: i64) -> anyhow::Result<Option<String>> {
        let mut conn = self.lock()?;
        let tx = conn.transaction()?;
        let target: Option<String> = tx
            .query_row(
                "SELECT target FROM outbox WHERE seq = ?1 AND dead = 1",
                [seq],
                |r| r.get(0),
            )
            .ok();
        if let Some(t) = &target {
            tx.execute(
                "UPDATE outbox SET dead = 0, attempts = 0, next_at = ?2 WHERE seq = ?1",
                params![seq, now],
            )?;
            tx.execute("DELETE FROM gone_targets WHERE target = ?1", [t])?;
        }
        tx.commit()?;
        Ok(target)
    }
}

/// The outbox as plain data: the model the SQLite outbox must agree with.
/// Also usable where nothing needs to outlive the process.
#[derive(Default)]
pub struct MemoryOutbox {
    inner: Mutex<Model>,
}

#[derive(Default)]
struct Model {
    next_seq: i64,
    rows: BTreeMap<i64, (OutboxRow, bool)>,
    gone: BTreeMap<String, String>,
}

impl MemoryOutbox {
    fn with<T>(&self, f: impl FnOnce(&mut Model) -> T) -> anyhow::Result<T> {
        let mut m = self
            .inner
            .lock()
            .map_err(|_| anyhow::anyhow!("the outbox model's lock is poisoned"))?;
        Ok(f(&mut m))
    }
}

impl Outbox for MemoryOutbox {
    fn add(&self, msgs: &[NewMessage], now: i64) -> anyhow::Result<Vec<i64>> {
        self.with(|m| {
            msgs.iter()
                .map(|n| {
                    m.next_seq += 1;
                    let row = OutboxRow {
                        seq: m.next_seq,
                        target: n.target.into(),
                        message_id: n.message_id.into(),
                        alert_id: n.alert_id.into(),
                        topic: n.topic.into(),
                        body: n.body.to_vec(),
                        secrets: n.secrets.iter().map(Secret::to_text).collect(),
                        attempts: 0,
                        next_at: now,
                        created_at: now,
                        last_error: None,
                    };
                    m.rows.insert(m.next_seq, (row, false));
                    m.next_seq
                })
                .collect()
        })
    }

    fn due(&self, target: &str, now: i64, limit: usize) -> anyhow::Result<Vec<OutboxRow>> {
        self.with(|m| {
            let mut due: Vec<OutboxRow> = m
                .rows
                .values()
                .filter(|(r, dead)| !dead && r.target == target && r.next_at <= now)
                .map(|(r, _)| r.clone())
                .collect();
            due.sort_by_key(|r| (r.next_at, r.seq));
            due.truncate(limit);
            due
        })
    }

    fn targets(&self) -> anyhow::Result<Vec<String>> {
        self.with(|m| {
            let mut t: Vec<String> = m
                .rows
                .values()
                .filter(|(_, dead)| !dead)
                .map(|(r, _)| r.target.clone())
                .collect();
            t.sort();
            t.dedup();
            t
        })
    }

    fn done(&self, seq: i64) -> anyhow::Result<()> {
        self.with(|m| {
            m.rows.remove(&seq);
        })
    }

    fn failed(
        &self,
        seq: i64,
        attempts: u32,
        next_at: Option<i64>,
        error: &str,
    ) -> anyhow::Result<()> {
        self.with(|m| {
            if let Some((r, dead)) = m.rows.get_mut(&seq) {
                r.attempts = attempts;
                r.last_error = Some(error.into());
                match next_at {
                    Some(at) => r.next_at = at,
                    None => *dead = true,
                }
            }
        })
    }

    fn target_gone(&self, target: &str, error: &str, _now: i64) -> anyhow::Result<usize> {
        self.with(|m| {
            let mut n = 0;
            for (r, dead) in m.rows.values_mut() {
                if !*dead && r.target == target {
                    *dead = true;
                    r.last_error = Some(error.into());
                    n += 1;
                }
            }
            m.gone.insert(target.into(), error.into());
            n
        })
    }

    fn gone_reason(&self, target: &str) -> anyhow::Result<Option<String>> {
        self.with(|m| m.gone.get(target).cloned())
    }

    fn trim_dead(&self, keep: usize) -> anyhow::Result<usize> {
        self.with(|m| {
            let dead: Vec<i64> = m
                .rows
                .iter()
                .filter(|(_, (_, dead))| *dead)
                .map(|(seq, _)| *seq)
                .collect();
            let extra = dead.len().saturating_sub(keep);
            for seq in &dead[..extra] {
                m.rows.remove(seq);
            }
            extra
        })
    }

    fn depth(&self) -> anyhow::Result<Vec<(String, u64, u64)>> {
        self.with(|m| {
            let mut by: BTreeMap<String, (u64, u64)> = BTreeMap::new();
            for (row, dead) in m.rows.values() {
                let e = by.entry(row.target.clone()).or_default();
                if *dead {
                    e.1 += 1;
                } else {
                    e.0 += 1;
                }
            }
            by.into_iter().map(|(t, (l, d))| (t, l, d)).collect()
        })
    }

    fn dead_letters(&self, limit: usize) -> anyhow::Result<Vec<OutboxRow>> {
        self.with(|m| {
            m.rows
                .values()
                .filter(|(_, dead)| *dead)
                .take(limit)
                .map(|(r, _)| r.clone())
                .collect()
        })
    }

    fn redeliver(&self, seq: i64, now: i64) -> anyhow::Result<Option<String>> {
        self.with(|m| {
            let (r, dead) = m.rows.get_mut(&seq).filter(|(_, dead)| *dead)?;
            *dead = false;
            r.attempts = 0;
            r.next_at = now;
            let target = r.target.clone();
            m.gone.remove(&target);
            Some(target)
        })
    }
}
