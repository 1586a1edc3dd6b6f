//! Scene records: what each scene index saw, per batch of frames, kept
//! newest first up to a bound per index.

use anyhow::Context;
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::Store;

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

impl Store {
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
