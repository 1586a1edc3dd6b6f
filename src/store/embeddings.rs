//! Frame embeddings (dual encoders: search and backtest) and prompt
//! embeddings (so a restart does not run the text encoder again).

use rusqlite::{params, OptionalExtension};

use super::Store;

/// How many prompt embeddings the state keeps (searches add some too); the
/// longest unused go first.
pub(super) const TEXT_EMBEDDINGS_KEPT: usize = 4096;

/// Where text embeddings outlive the process. `model` tells text encoders
/// apart (the text encoder's fingerprint); `ids` are the token ids without
/// their padding. Failures are the memory's to report: the encoder then
/// simply runs.
pub trait EmbeddingMemory: Send + Sync {
    fn recall(&self, model: &str, ids: &[i64]) -> Option<Vec<f32>>;
    fn remember(&self, model: &str, ids: &[i64], embedding: &[f32]);
}

fn id_bytes(ids: &[i64]) -> Vec<u8> {
    ids.iter().flat_map(|i| i.to_le_bytes()).collect()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl EmbeddingMemory for Store {
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

impl Store {
    /// Appends frame embeddings and deletes those older than `cutoff_ms`.
    pub fn add_embeddings(
        &self,
        frames: &[(String, crate::domain::FrameEmbedding)],
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
    ) -> anyhow::Result<Vec<(String, crate::domain::FrameEmbedding)>> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare(
            "SELECT stream_id, wall_ms, t, scale, q FROM embeddings WHERE wall_ms >= ?1 ORDER BY seq",
        )?;
        let rows = stmt.query_map(params![since_ms], |r| {
            let q: Vec<u8> = r.get(4)?;
            Ok((
                r.get::<_, String>(0)?,
                crate::domain::FrameEmbedding {
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
}
