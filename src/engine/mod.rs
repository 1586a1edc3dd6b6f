//! The control plane: the catalog of streams, scene indexes, events and
//! alerts, persisted in the [`Store`] and applied to the running daemon at
//! once. Every change goes: validate → write SQLite → update the catalog →
//! [`Engine::apply`], which starts or stops only the pipelines that changed
//! and hands the matcher and the dispatcher their new sets. Other streams
//! keep running untouched.
//!
//! At start the stored catalog is merged with the config file: entities the
//! file declares are (re)defined from it, keeping their stored run state;
//! config-declared entities gone from the file are removed.

mod compile;
mod defs;
mod ops;
mod search;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::Sender;

use crate::alert::{ws::Hub, Dispatcher};
use crate::config::{self, Config};
use crate::domain::{AlertSpec, MqttSettings, StreamSpec};
use crate::index::ActiveIndex;
use crate::matcher::CompiledEvent;
use crate::model::{Manifest, PromptModel};
use crate::pool::Submitter;
use crate::source::{self, Output, Reporter, SourceEvent, StreamHandle};
use crate::store::{AlertRow, EventRow, IndexRow, Origin, Snapshot, Store, StreamRow, Table};
use crate::types::StreamId;
pub use compile::compile_event;
pub use ops::{NewAlert, NewEvent, NewIndex, NewStream};
pub use search::{BacktestQuery, Scanned, SearchQuery};

/// Messages to the matcher thread.
pub enum MatchControl {
    Events(Vec<Arc<CompiledEvent>>),
    Indexes(Vec<ActiveIndex>),
    /// A stream stopped: end its open occurrences.
    CloseStream(StreamId),
}

/// Why a change was refused.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
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
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Health {
    pub up: bool,
    pub last_error: Option<String>,
    /// Frames handed to the pool and pipeline rebuilds, since it started.
    pub frames: u64,
    pub restarts: u64,
}

/// The parts of the running daemon the engine drives.
pub struct Parts {
    pub store: Arc<Store>,
    pub manifest: Arc<Manifest>,
    /// What event prompts compile against (labels or a text encoder).
    pub prompts: PromptModel,
    pub mqtt: Option<MqttSettings>,
    pub out: Output,
    pub submitter: Submitter,
    pub reporter: Reporter,
    pub matcher: Sender<MatchControl>,
    pub dispatcher: Arc<Dispatcher>,
    pub hub: Arc<Hub>,
    /// Scene records kept per index.
    pub keep_records: usize,
    /// Where callback URLs may point.
    pub guard: Arc<crate::alert::guard::Guard>,
    /// Frame embeddings kept for search and backtest (dual encoders).
    pub embeddings: Arc<crate::embeddings::Embeddings>,
    /// Whether API callers may add `file://` and `test:` streams.
    pub allow_local_sources: bool,
}

/// The control plane.
pub struct Engine {
    parts: Parts,
    catalog: tokio::sync::Mutex<Catalog>,
    running: Mutex<HashMap<StreamId, (StreamSpec, StreamHandle)>>,
    health: Arc<Mutex<HashMap<StreamId, Health>>>,
}

fn now() -> String {
    crate::alert::payload::iso8601(std::time::SystemTime::now())
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
        let snapshot = parts.store.snapshot()?;
        let catalog = merge(snapshot, config, &parts.store)?;
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
        let engine = Arc::new(Engine {
            parts,
            catalog: tokio::sync::Mutex::new(catalog),
            running: Mutex::new(HashMap::new()),
            health,
        });
        let cat = engine.catalog.lock().await.clone();
        engine.apply(&cat).await;
        Ok(engine)
    }

    /// A copy of the catalog.
    pub async fn catalog(&self) -> Catalog {
        self.catalog.lock().await.clone()
    }

    /// The store (for scene records).
    pub fn store(&self) -> &Arc<Store> {
        &self.parts.store
    }

    /// The WebSocket hub.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.parts.hub
    }

    /// Labels the loaded model can score.
    pub fn labels(&self) -> &[String] {
        &self.parts.manifest.labels
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
        if let Some((_, handle)) = self.running.lock().ok().as_ref().and_then(|r| r.get(&id)) {
            h.frames = handle
                .stats
                .frames
                .load(std::sync::atomic::Ordering::Relaxed);
            h.restarts = handle
                .stats
                .restarts
                .load(std::sync::atomic::Ordering::Relaxed);
        }
        h
    }

    /// Counters of the running streams.
    pub fn stream_stats(&self) -> Vec<(StreamId, Arc<source::SourceStats>)> {
        self.running
            .lock()
            .map(|r| {
                r.iter()
                    .map(|(id, (_, h))| (id.clone(), Arc::clone(&h.stats)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Stops every stream (at shutdown); returns their handles' counters.
    pub async fn stop_all(&self) -> Vec<Arc<source::SourceStats>> {
        let handles: Vec<_> = self
            .running
            .lock()
            .map(|mut r| r.drain().map(|(_, (_, h))| h).collect())
            .unwrap_or_default();
        let stats = handles.iter().map(|h| Arc::clone(&h.stats)).collect();
        stop_handles(handles).await;
        stats
    }

    /// Compiles an event row against the loaded model.
    fn compile(&self, e: &EventRow) -> Result<CompiledEvent, Refusal> {
        let mut spec: config::RawEvent = e.spec.clone().into();
        spec.id = Some(e.id.clone());
        let cfg = config::check_event(&spec).map_err(problems)?;
        compile_event(&cfg, &self.parts.prompts).map_err(Refusal::Invalid)
    }

    /// Turns an alert row into the dispatcher's form.
    fn alert_config(&self, cat: &Catalog, a: &AlertRow) -> Result<AlertSpec, Refusal> {
        let events: HashSet<String> = cat.events.keys().cloned().collect();
        let streams: HashSet<String> = cat.streams.keys().cloned().collect();
        let mut spec: config::RawAlert = a.spec.clone().into();
        spec.id = Some(a.id.clone());
        let mut cfg = config::check_alert(
            &spec,
            &events,
            &streams,
            self.parts.mqtt.as_ref(),
            a.ws_connection.clone(),
        )
        .map_err(problems)?;
        cfg.index = a.index_id.clone();
        Ok(cfg)
    }

    /// Makes the running daemon match `cat`: streams started or stopped,
    /// matcher events and indexes, dispatcher alerts.
    async fn apply(&self, cat: &Catalog) {
        let events: Vec<Arc<CompiledEvent>> = cat
            .events
            .values()
            .filter_map(|e| match self.compile(e) {
                Ok(c) => Some(Arc::new(c)),
                Err(err) => {
                    tracing::error!(event = %e.id, error = %err, "event cannot be scored; ignored");
                    None
                }
            })
            .collect();
        let _ = self.parts.matcher.send(MatchControl::Events(events));

        let stream_on = |id: &str| cat.streams.get(id).is_some_and(|s| s.running);
        let indexes: Vec<ActiveIndex> = cat
            .indexes
            .values()
            .filter(|i| i.running && stream_on(&i.stream_id))
            .map(|i| ActiveIndex {
                id: i.id.clone(),
                stream: StreamId::new(&i.stream_id),
                batch: i.batch,
                min_score: 0.5,
                ws_connection: i.ws_connection.clone(),
            })
            .collect();
        let _ = self.parts.matcher.send(MatchControl::Indexes(indexes));

        let index_on = |id: &Option<String>| {
            id.as_ref()
                .is_none_or(|i| cat.indexes.get(i).is_some_and(|i| i.running))
        };
        let alerts: Vec<AlertSpec> = cat
            .alerts
            .values()
            .filter(|a| a.enabled && index_on(&a.index_id))
            .filter_map(|a| match self.alert_config(cat, a) {
                Ok(c) => Some(c),
                Err(err) => {
                    tracing::error!(alert = %a.id, error = %err, "alert is not valid; ignored");
                    None
                }
            })
            .collect();
        let urls = cat
            .streams
            .values()
            .map(|s| (StreamId::new(&s.id), s.spec.url.clone().unwrap_or_default()))
            .collect();
        self.parts.dispatcher.set_alerts(alerts, urls);

        self.apply_streams(cat).await;
    }

    async fn apply_streams(&self, cat: &Catalog) {
        let mut wanted: HashMap<StreamId, StreamSpec> = HashMap::new();
        for s in cat.streams.values().filter(|s| s.running) {
            let mut spec: config::RawStream = s.spec.clone().into();
            spec.id = Some(s.id.clone());
            match config::check_stream(&spec) {
                Ok(c) => {
                    wanted.insert(c.id.clone(), c);
                }
                Err(p) => {
                    tracing::error!(stream = %s.id, error = %problems(p), "stream not started")
                }
            }
        }
        let (to_stop, to_start) = {
            let Ok(mut running) = self.running.lock() else {
                return;
            };
            let stale: Vec<StreamId> = running
                .iter()
                .filter(|(id, (cfg, _))| {
                    wanted
                        .get(*id)
                        .is_none_or(|w| format!("{w:?}") != format!("{cfg:?}"))
                })
                .map(|(id, _)| id.clone())
                .collect();
            let to_stop: Vec<StreamHandle> = stale
                .iter()
                .filter_map(|id| running.remove(id).map(|(_, h)| h))
                .collect();
            let to_start: Vec<StreamSpec> = wanted
                .into_values()
                .filter(|w| !running.contains_key(&w.id))
                .collect();
            (to_stop, to_start)
        };
        let closed: Vec<StreamId> = to_stop.iter().map(|h| h.id.clone()).collect();
        stop_handles(to_stop).await;
        for id in closed {
            if let Ok(mut h) = self.health.lock() {
                h.remove(&id);
            }
            let _ = self.parts.matcher.send(MatchControl::CloseStream(id));
        }
        for cfg in to_start {
            let p = &self.parts;
            match source::spawn(
                cfg.clone(),
                p.out,
                p.submitter.clone(),
                Arc::clone(&p.reporter),
            ) {
                Ok(h) => {
                    tracing::info!(stream = %cfg.id, url = %cfg.url, "stream started");
                    if let Ok(mut r) = self.running.lock() {
                        r.insert(cfg.id.clone(), (cfg, h));
                    }
                }
                Err(e) => tracing::error!(stream = %cfg.id, error = %e, "cannot start stream"),
            }
        }
    }
}

/// How long stopping streams may take before the stragglers are left behind.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Stops pipelines off the async threads (stopping joins a thread), all at
/// once, waiting at most [`STOP_GRACE`]: a pipeline wedged in a state change
/// (a camera that stopped answering mid-teardown) must not hold up a
/// shutdown or an API call. A straggler keeps its stop flag and ends on its
/// own; its frames are refused by the closed or replaced pool queue.
async fn stop_handles(handles: Vec<StreamHandle>) {
    let mut waiting = Vec::with_capacity(handles.len());
    for h in handles {
        let id = h.id.clone();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        // A detached thread, not spawn_blocking: the runtime waits for its
        // blocking tasks when it is dropped, and that wait would be unbounded.
        let spawned = std::thread::Builder::new()
            .name(format!("stop-{id}"))
            .spawn(move || {
                h.stop();
                let _ = done_tx.send(());
            });
        match spawned {
            Ok(_) => waiting.push((id, done_rx)),
            Err(e) => {
                tracing::error!(stream = %id, error = %e, "cannot spawn a thread to stop the stream")
            }
        }
    }
    let deadline = tokio::time::Instant::now() + STOP_GRACE;
    for (id, done) in waiting {
        if tokio::time::timeout_at(deadline, done).await.is_err() {
            tracing::warn!(
                stream = %id,
                grace_secs = STOP_GRACE.as_secs(),
                "the stream's pipeline did not stop in time; leaving it to finish on its own"
            );
        }
    }
}

/// Merges the config file's streams, events and alerts into the stored
/// catalog (writing the result back).
fn merge(snap: Snapshot, config: &Config, store: &Store) -> anyhow::Result<Catalog> {
    let mut cat = Catalog {
        streams: snap
            .streams
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect(),
        indexes: snap
            .indexes
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect(),
        events: snap.events.into_iter().map(|r| (r.id.clone(), r)).collect(),
        alerts: snap.alerts.into_iter().map(|r| (r.id.clone(), r)).collect(),
    };
    let d = &config.declared;
    let declared =
        |ids: Vec<Option<String>>| -> HashSet<String> { ids.into_iter().flatten().collect() };
    let (ds, de, da) = (
        declared(d.streams.iter().map(|s| s.id.clone()).collect()),
        declared(d.events.iter().map(|e| e.id.clone()).collect()),
        declared(d.alerts.iter().map(|a| a.id.clone()).collect()),
    );
    let mut gone = Vec::new();
    cat.streams.retain(|id, r| {
        let keep = r.origin != Origin::Config || ds.contains(id);
        if !keep {
            gone.push((Table::Streams, id.clone()));
        }
        keep
    });
    cat.events.retain(|id, r| {
        let keep = r.origin != Origin::Config || de.contains(id);
        if !keep {
            gone.push((Table::Events, id.clone()));
        }
        keep
    });
    cat.alerts.retain(|id, r| {
        let keep = r.origin != Origin::Config || da.contains(id);
        if !keep {
            gone.push((Table::Alerts, id.clone()));
        }
        keep
    });
    store.delete(&gone)?;

    for s in &d.streams {
        let Some(id) = s.id.clone() else { continue };
        let running = cat.streams.get(&id).is_none_or(|r| r.running);
        let created_at = cat
            .streams
            .get(&id)
            .map_or_else(now, |r| r.created_at.clone());
        let row = StreamRow {
            id: id.clone(),
            name: id.clone(),
            spec: s.clone().into(),
            running,
            origin: Origin::Config,
            created_at,
        };
        store.put(Table::Streams, &id, &row)?;
        cat.streams.insert(id, row);
    }
    for e in &d.events {
        let Some(id) = e.id.clone() else { continue };
        let created_at = cat
            .events
            .get(&id)
            .map_or_else(now, |r| r.created_at.clone());
        let row = EventRow {
            id: id.clone(),
            spec: e.clone().into(),
            origin: Origin::Config,
            created_at,
        };
        store.put(Table::Events, &id, &row)?;
        cat.events.insert(id, row);
    }
    for a in &d.alerts {
        let Some(id) = a.id.clone() else { continue };
        let prev = cat.alerts.get(&id);
        let enabled = prev.map_or(a.enabled.unwrap_or(true), |r| r.enabled);
        let created_at = prev.map_or_else(now, |r| r.created_at.clone());
        let row = AlertRow {
            id: id.clone(),
            index_id: None,
            spec: a.clone().into(),
            ws_connection: None,
            enabled,
            origin: Origin::Config,
            created_at,
        };
        store.put(Table::Alerts, &id, &row)?;
        cat.alerts.insert(id, row);
    }
    Ok(cat)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::StreamId;

    #[tokio::test]
    async fn a_wedged_pipeline_does_not_hold_up_stopping() {
        let id = |s: &str| StreamId::new(s);
        let started = std::time::Instant::now();
        stop_handles(vec![
            StreamHandle::wedged(id("wedged"), Duration::from_secs(600)),
            StreamHandle::wedged(id("prompt"), Duration::ZERO),
        ])
        .await;
        let took = started.elapsed();
        // Bounded by the grace period, not by the wedged thread's 600 s.
        assert!(took >= STOP_GRACE - Duration::from_millis(100), "{took:?}");
        assert!(took < STOP_GRACE * 6, "{took:?}");
    }

    #[tokio::test]
    async fn streams_that_stop_are_not_kept_waiting_for() {
        let id = |s: &str| StreamId::new(s);
        let started = std::time::Instant::now();
        stop_handles(vec![
            StreamHandle::wedged(id("a"), Duration::from_millis(50)),
            StreamHandle::wedged(id("b"), Duration::ZERO),
        ])
        .await;
        assert!(started.elapsed() < STOP_GRACE, "{:?}", started.elapsed());
    }
}
