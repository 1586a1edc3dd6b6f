//! The control plane: the catalog of streams, scene indexes, events and
//! alerts, persisted in the [`Store`] and applied to the running daemon at
//! once. Every change goes: validate → write SQLite (on a blocking thread)
//! → update the catalog → release the catalog lock → the applier
//! (`apply.rs`), which retunes, starts or stops only the pipelines that
//! changed and hands the matcher and the dispatcher their new sets. Other
//! streams keep running untouched, and reads never wait for a pipeline.
//!
//! At start the stored catalog is merged with the config file: entities the
//! file declares are (re)defined from it, keeping their stored run state;
//! config-declared entities gone from the file are removed.

mod apply;
mod compile;
mod defs;
mod merge;
mod ops;
mod search;
mod site;
mod wiring;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use crossbeam_channel::Sender;

use crate::alert::payload::iso8601;
use crate::alert::{ws::Hub, Dispatcher};
use crate::clock::Clocks;
use crate::config::{self, Config};
use crate::domain::StreamId;
use crate::domain::{MqttSettings, StreamSpec};
use crate::matcher::stage::MatchControl;
use crate::model::ModelSet;
use crate::pool::Submitter;
use crate::scene::index::ActiveIndex;
use crate::source::{self, Branch, Reporter, Running, SourceEvent, Sources};
use crate::store::{AlertRow, EventRow, IndexRow, Store, StreamRow};
pub use compile::compile_event;
pub use ops::IndexRequest;
pub use search::{Backtest, Scanned, Search};
pub use site::{Change, Site};

/// Why a change was refused.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    NotFound(String),
    /// The request itself is malformed (a query or path that does not parse).
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    /// Something the change needs is out of reach for now (the site's
    /// NATS servers): the same request may succeed later.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl From<anyhow::Error> for Refusal {
    fn from(e: anyhow::Error) -> Self {
        Refusal::Internal(format!("{e:#}"))
    }
}

/// Everything the daemon knows about, by id.
#[derive(Debug, Default, Clone)]
pub struct Catalog {
    pub streams: BTreeMap<String, StreamRow>,
    pub indexes: BTreeMap<String, IndexRow>,
    pub events: BTreeMap<String, EventRow>,
    pub alerts: BTreeMap<String, AlertRow>,
}

/// Up/down state of one stream as its pipeline reports it.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Health {
    pub up: bool,
    pub last_error: Option<String>,
    /// Frames handed to the pool and pipeline rebuilds, since it started.
    pub frames: u64,
    pub restarts: u64,
    /// Keyframes the compressed-domain gate left undecoded.
    #[serde(default)]
    pub undecoded_keyframes: u64,
}

/// The parts of the running daemon the engine drives.
pub struct Parts {
    pub store: Arc<Store>,
    /// The loaded models, which events compile against and are routed to.
    pub models: Arc<ModelSet>,
    pub mqtt: Option<MqttSettings>,
    pub submitter: Submitter,
    /// The pool's counters (per model, per stream).
    pub pool: Arc<crate::pool::PoolStats>,
    pub reporter: Reporter,
    pub matcher: Sender<MatchControl>,
    /// The scene stage's running indexes.
    pub indexes: Sender<Vec<ActiveIndex>>,
    pub dispatcher: Arc<Dispatcher>,
    pub hub: Arc<Hub>,
    /// Scene records kept per index.
    pub keep_records: usize,
    /// Streams, indexes, events and alerts kept, each; a create past it is
    /// refused (`[state] max_objects`).
    pub max_objects: usize,
    /// Where callback URLs may point.
    pub guard: Arc<crate::alert::guard::Guard>,
    /// Frame embeddings kept for search and backtest (dual encoders).
    pub embeddings: Arc<crate::scene::embeddings::Embeddings>,
    /// Whether API callers may add `file://` and `test:` streams.
    pub allow_local_sources: bool,
    /// The recorder, when recording is on.
    pub recorder: Option<Arc<crate::record::Recorder>>,
    /// How streams are started (GStreamer, or replayed frames in tests).
    pub sources: Arc<dyn Sources>,
    pub clocks: Arc<dyn Clocks>,
    /// Steady time and the wall-clock steps it has seen (`GET status`).
    pub steady: Arc<crate::clock::Steady>,
    /// Free space on the state disk, when state is on disk.
    pub space: Option<Arc<crate::store::space::SpaceWatch>>,
    /// The matcher stage's per-frame times.
    pub match_times: Arc<crate::metrics::Histogram>,
    /// Each stream's newest scored picture (the console's camera view).
    pub latest: Arc<crate::matcher::stage::LatestPictures>,
    /// `GET /metrics` answers without the key (`[api] metrics_public`).
    pub metrics_public: bool,
    /// In a site, the streams this box ran last: it runs only those until
    /// the site places streams itself. `None` on its own (it runs them all).
    pub placed: Option<HashSet<String>>,
}

/// A running stream: the definition it was started with, the frame sizes
/// and models it feeds, and its handle.
type Started = (StreamSpec, Vec<Branch>, Box<dyn Running>);

/// The control plane.
pub struct Engine {
    parts: Parts,
    catalog: tokio::sync::Mutex<Catalog>,
    /// Held by the applier only: one apply at a time, never the catalog lock.
    applier: tokio::sync::Mutex<()>,
    running: Mutex<HashMap<StreamId, Started>>,
    health: Arc<Mutex<HashMap<StreamId, Health>>>,
    /// The model each compiled event was routed to, by event id.
    routes: Mutex<HashMap<String, Arc<str>>>,
    /// Counts applied catalogs (the MQTT bridge follows it).
    changes: tokio::sync::watch::Sender<u64>,
    /// The site this box belongs to (`[fleet]`), once joined.
    site: OnceLock<Arc<dyn Site>>,
    /// The streams this box runs in a site; `None`: all of them.
    owned: RwLock<Option<HashSet<String>>>,
}

fn problems(p: Vec<config::Problem>) -> Refusal {
    Refusal::Invalid(
        p.iter()
            .map(|p| format!("{}: {}", p.path, p.message))
            .collect::<Vec<_>>()
            .join("; "),
    )
}

impl Engine {
    /// Loads the stored catalog, merges the config file's declarations into
    /// it, and applies the result (starting the streams).
    pub async fn start(mut parts: Parts, config: &Config) -> anyhow::Result<Arc<Engine>> {
        let (store, declared, now) = (
            Arc::clone(&parts.store),
            config.declared.clone(),
            iso8601(parts.clocks.wall()),
        );
        let catalog = tokio::task::spawn_blocking(move || {
            let snapshot = store.snapshot()?;
            merge::merge(snapshot, &declared, &store, &now)
        })
        .await
        .map_err(|e| anyhow::anyhow!("merging the catalog: {e}"))??;
        let health: Arc<Mutex<HashMap<StreamId, Health>>> = Arc::default();
        let (inner, seen) = (parts.reporter, Arc::clone(&health));
        parts.reporter = Arc::new(move |e: SourceEvent| {
            if let Ok(mut h) = seen.lock() {
                match &e {
                    SourceEvent::Up(s) => {
                        h.entry(s.clone()).or_default().up = true;
                    }
                    SourceEvent::Down { stream, reason, .. } => {
                        let e = h.entry(stream.clone()).or_default();
                        e.up = false;
                        e.last_error = Some(reason.clone());
                    }
                    SourceEvent::Finished(s) => {
                        h.entry(s.clone()).or_default().up = false;
                    }
                }
            }
            inner(e);
        });
        let placed = parts.placed.clone();
        let engine = Arc::new(Engine {
            parts,
            catalog: tokio::sync::Mutex::new(catalog),
            applier: tokio::sync::Mutex::new(()),
            running: Mutex::new(HashMap::new()),
            routes: Mutex::default(),
            health,
            changes: tokio::sync::watch::Sender::new(0),
            site: OnceLock::new(),
            owned: RwLock::new(placed),
        });
        engine.apply_latest().await;
        Ok(engine)
    }

    /// Changes each time a catalog has been applied.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// A copy of the catalog.
    pub async fn catalog(&self) -> Catalog {
        self.catalog.lock().await.clone()
    }

    /// One page (1-based) of an index's records, optionally only those
    /// overlapping `range` stream seconds; and whether another page follows.
    pub async fn records(
        &self,
        stream: &str,
        index: &str,
        range: Option<(f64, f64)>,
        page: usize,
        size: usize,
    ) -> Result<(Vec<crate::store::SceneRecord>, bool), Refusal> {
        Self::index_of(&*self.catalog.lock().await, stream, index)?;
        let index = index.to_string();
        self.persist(move |s| s.records(&index, range, page, size))
            .await
    }

    /// The dispatcher (delivery counters, the outbox spill).
    pub fn dispatcher(&self) -> &Arc<Dispatcher> {
        &self.parts.dispatcher
    }

    /// The parts the metrics exposition reads.
    pub fn parts(&self) -> &Parts {
        &self.parts
    }

    /// Free space on the state disk, when state is on disk.
    pub fn space(&self) -> Option<&Arc<crate::store::space::SpaceWatch>> {
        self.parts.space.as_ref()
    }

    /// The WebSocket hub.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.parts.hub
    }

    /// Labels the loaded detectors can score.
    pub fn labels(&self) -> Vec<std::sync::Arc<str>> {
        self.parts.models.labels()
    }

    /// The loaded models.
    pub fn models(&self) -> &Arc<ModelSet> {
        &self.parts.models
    }

    /// The pool's counters.
    pub fn pool(&self) -> &Arc<crate::pool::PoolStats> {
        &self.parts.pool
    }

    /// The model an event is scored by (None if it did not compile).
    pub fn model_of(&self, event: &str) -> Option<Arc<str>> {
        self.routes.lock().ok()?.get(event).cloned()
    }

    /// The models a running stream's frames go to: place and name.
    pub fn stream_models(&self, stream: &str) -> Vec<(usize, Arc<str>)> {
        let running = self.running.lock();
        let Some((_, branches, _)) = running
            .as_ref()
            .ok()
            .and_then(|r| r.get(&StreamId::new(stream)))
        else {
            return Vec::new();
        };
        let mut idx: Vec<usize> = branches
            .iter()
            .flat_map(|b| b.models.iter().copied())
            .collect();
        idx.sort_unstable();
        idx.into_iter()
            .filter_map(|i| self.parts.models.get(i).map(|m| (i, m.name.clone())))
            .collect()
    }

    /// Up/down state and counters of a stream.
    pub fn health(&self, id: &str) -> Health {
        let id = StreamId::new(id);
        let mut h = self
            .health
            .lock()
            .ok()
            .and_then(|h| h.get(&id).cloned())
            .unwrap_or_default();
        if let Some((_, _, handle)) = self.running.lock().ok().as_ref().and_then(|r| r.get(&id)) {
            let stats = handle.stats();
            h.frames = stats.frames.load(std::sync::atomic::Ordering::Relaxed);
            h.restarts = stats.restarts.load(std::sync::atomic::Ordering::Relaxed);
            h.undecoded_keyframes = stats.undecoded.load(std::sync::atomic::Ordering::Relaxed);
        }
        h
    }

    /// Counters of the running streams.
    pub fn stream_stats(&self) -> Vec<(StreamId, Arc<source::SourceStats>)> {
        self.running
            .lock()
            .map(|r| {
                r.iter()
                    .map(|(id, (_, _, h))| (id.clone(), Arc::clone(h.stats())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Stops every stream (at shutdown); returns their handles' counters.
    pub async fn stop_all(&self) -> Vec<Arc<source::SourceStats>> {
        let handles: Vec<_> = self
            .running
            .lock()
            .map(|mut r| r.drain().map(|(_, (_, _, h))| h).collect())
            .unwrap_or_default();
        let stats = handles.iter().map(|h| Arc::clone(h.stats())).collect();
        apply::stop_handles(handles, &self.parts.clocks).await;
        stats
    }

    /// Wall-clock time now, ISO 8601 (creation times).
    fn now(&self) -> String {
        iso8601(self.parts.clocks.wall())
    }

    /// Runs a state-database change on a blocking thread: SQLite never runs
    /// on the async threads.
    async fn persist<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Store) -> anyhow::Result<T> + Send + 'static,
    ) -> Result<T, Refusal> {
        let store = Arc::clone(&self.parts.store);
        tokio::task::spawn_blocking(move || op(&store))
            .await
            .map_err(|e| Refusal::Internal(format!("the state database task failed: {e}")))?
            .map_err(Refusal::from)
    }
}

#[cfg(test)]
mod tests;
