//! The clip of each occurrence: which stream, which span of wall time (the
//! end is unknown while the occurrence runs), and what the player page
//! shows beside the video.

use anyhow::Context;
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::Store;

/// One occurrence's clip.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClipRow {
    pub occurrence_id: String,
    pub stream_id: String,
    pub event_id: String,
    pub label: String,
    pub confidence: f64,
    pub explanation: String,
    /// Unix ms of the occurrence's first matching frame and last one (None
    /// while it runs).
    pub start_ms: i64,
    pub end_ms: Option<i64>,
    /// Stream seconds, as in the alert payload.
    pub start_time: f64,
    pub end_time: f64,
    pub created_ms: i64,
    /// Why its evidence is gone (the recording budget evicted it): the
    /// `expired` column, not the stored body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired: Option<String>,
}

/// A clip retention still keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveClip {
    pub id: String,
    pub stream: String,
    pub start_ms: i64,
    pub end_ms: Option<i64>,
}

/// A clip from its stored body and its `expired` column.
fn read_row((body, expired): (String, Option<String>)) -> anyhow::Result<ClipRow> {
    let row: ClipRow = serde_json::from_str(&body).context("a clip row is not readable")?;
    Ok(ClipRow { expired, ..row })
}

impl Store {
    /// Records a clip, or updates it (a later message of the occurrence).
    pub fn put_clip(&self, c: &ClipRow) -> anyhow::Result<()> {
        self.lock()?.execute(
            "INSERT INTO clips (occurrence_id, stream_id, body, start_ms, end_ms, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (occurrence_id) DO UPDATE SET body = ?3, start_ms = ?4, end_ms = ?5",
            params![
                c.occurrence_id,
                c.stream_id,
                serde_json::to_string(c)?,
                c.start_ms,
                c.end_ms,
                c.created_ms
            ],
        )?;
        Ok(())
    }

    /// One clip by occurrence id.
    pub fn clip(&self, occurrence_id: &str) -> anyhow::Result<Option<ClipRow>> {
        let row: Option<(String, Option<String>)> = self
            .lock()?
            .query_row(
                "SELECT body, expired FROM clips WHERE occurrence_id = ?1",
                [occurrence_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        row.map(read_row).transpose()
    }

    /// Past occurrences, newest first: at most `limit` that started before
    /// `before_ms`, of one stream and one label when given.
    pub fn list_clips(
        &self,
        stream: Option<&str>,
        label: Option<&str>,
        before_ms: Option<i64>,
        limit: usize,
    ) -> anyhow::Result<Vec<ClipRow>> {
        let conn = self.lock()?;
        let mut q = conn.prepare(
            "SELECT body, expired FROM clips
             WHERE (?1 IS NULL OR stream_id = ?1)
               AND (?2 IS NULL OR json_extract(body, '$.label') = ?2)
               AND (?3 IS NULL OR start_ms < ?3)
             ORDER BY start_ms DESC, occurrence_id DESC LIMIT ?4",
        )?;
        let rows = q.query_map(params![stream, label, before_ms, limit as i64], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
        rows.map(|r| read_row(r?)).collect()
    }

    /// Clips created since `since_ms` that have not expired.
    pub fn live_clips(&self, since_ms: i64) -> anyhow::Result<Vec<LiveClip>> {
        let conn = self.lock()?;
        let mut q = conn.prepare(
            "SELECT occurrence_id, stream_id, start_ms, end_ms FROM clips
             WHERE created_ms >= ?1 AND expired IS NULL",
        )?;
        let rows = q.query_map([since_ms], |r| {
            Ok(LiveClip {
                id: r.get(0)?,
                stream: r.get(1)?,
                start_ms: r.get(2)?,
                end_ms: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Marks clips expired with `reason`; their rows stay until `clip_days`.
    pub fn expire_clips(&self, ids: &[String], reason: &str) -> anyhow::Result<()> {
        let mut conn = self.lock()?;
        let tx = conn.transaction()?;
        for id in ids {
            tx.execute(
                "UPDATE clips SET expired = ?2 WHERE occurrence_id = ?1",
                params![id, reason],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Forgets clips created before `before_ms`; returns their ids.
    pub fn drop_clips(&self, before_ms: i64) -> anyhow::Result<Vec<String>> {
        let mut conn = self.lock()?;
        let tx = conn.transaction()?;
        let ids: Vec<String> = {
            let mut q = tx.prepare("SELECT occurrence_id FROM clips WHERE created_ms < ?1")?;
            let rows = q.query_map([before_ms], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        tx.execute("DELETE FROM clips WHERE created_ms < ?1", [before_ms])?;
        tx.commit()?;
        Ok(ids)
    }
}
