//! The scene stage: one thread that turns matched frames into scene records
//! (published on the WebSocket `scene_index` channel and written to the
//! store in batches) and, for dual encoders, keeps each frame's embedding in
//! memory for search and hands it to the store. It consumes what the matcher
//! stage observed; being behind only costs records, never alerts.

use std::sync::Arc;

use crossbeam_channel::{select, Receiver};
use tokio::sync::mpsc;

use super::embeddings::Embeddings;
use super::index::{ActiveIndex, Indexer};
use crate::alert::ws::Hub;
use crate::clock::unix_ms;
use crate::domain::{FrameEmbedding, StreamId};
use crate::matcher::stage::Observed;
use crate::store::SceneRecord;

/// Frame embeddings on their way to the store: (stream id, frame).
pub type EmbeddingSender = mpsc::Sender<(String, FrameEmbedding)>;

/// The stage's inputs and outputs.
pub struct SceneStage {
    pub observed: Receiver<Observed>,
    /// The running indexes, from the control plane.
    pub indexes: Receiver<Vec<ActiveIndex>>,
    pub hub: Arc<Hub>,
    /// Records to the store writer.
    pub records: mpsc::Sender<SceneRecord>,
    /// Dual encoders: where frame embeddings go (memory, then the store).
    pub embeddings: Option<(Arc<Embeddings>, EmbeddingSender)>,
    /// Each stream's latest stream time and wall time.
    pub time_bases: Arc<TimeBases>,
}

impl SceneStage {
    /// Runs until the matcher stage closes its end.
    pub fn run(self) {
        let mut indexer = Indexer::default();
        let mut control = self.indexes.clone();
        loop {
            select! {
                recv(self.observed) -> o => {
                    let Ok(o) = o else { break };
                    self.observe(&mut indexer, o);
                }
                recv(control) -> c => match c {
                    Ok(ix) => indexer.set(ix),
                    Err(_) => control = crossbeam_channel::never(),
                },
            }
        }
    }

    fn observe(&self, indexer: &mut Indexer, o: Observed) {
        let s = &o.scores;
        self.time_bases
            .note(&s.stream_id, s.stream_secs, unix_ms(s.wall));
        if let (Some((mem, tx)), Some(v)) = (&self.embeddings, &s.embedding) {
            let e = FrameEmbedding::new(unix_ms(s.wall), s.stream_secs, v);
            mem.push(s.stream_id.as_str(), e.clone());
            if tx.try_send((s.stream_id.to_string(), e)).is_err() {
                tracing::warn!(stream = %s.stream_id, "embedding store is behind; frame not persisted");
            }
        }
        for (record, ws) in indexer.observe(s, &o.seen, &o.tracks) {
            if let Some(ws) = ws {
                self.hub.publish(&ws, "scene_index", &record);
            }
            if self.records.try_send(record).is_err() {
                tracing::warn!(stream = %s.stream_id, "scene record store is behind; record dropped");
            }
        }
    }
}

/// Writes scene records in batches (one transaction per batch, on a
/// blocking thread).
pub async fn store_records(
    mut rx: mpsc::Receiver<SceneRecord>,
    store: Arc<crate::store::Store>,
    keep: usize,
) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, 256).await > 0 {
        let (s, b) = (Arc::clone(&store), std::mem::take(&mut batch));
        let r = tokio::task::spawn_blocking(move || s.add_records(&b, keep)).await;
        if let Ok(Err(e)) = r {
            tracing::error!(error = %format!("{e:#}"), "cannot store scene records");
        }
    }
}

/// Writes frame embeddings in batches and prunes what has aged out.
pub async fn store_embeddings(
    mut rx: mpsc::Receiver<(String, FrameEmbedding)>,
    store: Arc<crate::store::Store>,
    embeddings: Arc<Embeddings>,
) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, 512).await > 0 {
        let cutoff = embeddings.cutoff(batch.iter().map(|(_, e)| e.wall_ms).max().unwrap_or(0));
        let (s, b) = (Arc::clone(&store), std::mem::take(&mut batch));
        let r = tokio::task::spawn_blocking(move || s.add_embeddings(&b, cutoff)).await;
        if let Ok(Err(e)) = r {
            tracing::error!(error = %format!("{e:#}"), "cannot store frame embeddings");
        }
    }
}

/// The latest (stream seconds, Unix ms) seen per stream: how a stream time
/// maps to wall time (the scene stage writes it, the media API reads it).
#[derive(Debug, Default)]
pub struct TimeBases(std::sync::Mutex<std::collections::HashMap<StreamId, (f64, i64)>>);

impl TimeBases {
    pub fn note(&self, stream: &StreamId, stream_secs: f64, wall_ms: i64) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(stream.clone(), (stream_secs, wall_ms));
        }
    }

    /// Unix ms of stream time `t` on `stream`, if the stream has been seen.
    pub fn wall_ms(&self, stream: &str, t: f64) -> Option<i64> {
        let m = self.0.lock().ok()?;
        let (s, w) = m.get(&StreamId::new(stream))?;
        Some(w - ((s - t) * 1000.0).round() as i64)
    }
}
