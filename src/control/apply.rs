//! The applier: makes the running daemon match the catalog. It runs after
//! a change has been persisted and the catalog lock released, one apply at a
//! time, always on the newest catalog: so a pipeline that is slow to stop
//! (up to [`STOP_GRACE`]) holds up other changes' pipelines, never a read of
//! the catalog. Streams whose definition changed only in sampling (rate,
//! keyframe mode) are retuned in place instead of rebuilt.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use super::{problems, Catalog, Engine, Refusal};
use crate::clock::Clocks;
use crate::config;
use crate::domain::StreamId;
use crate::domain::{AlertSpec, StreamSpec};
use crate::matcher::stage::MatchControl;
use crate::matcher::{CompiledEvent, Scope};
use crate::model::ModelSet;
use crate::scene::index::ActiveIndex;
use crate::source::{Branch, Output, Running};
use crate::store::{AlertRow, EventRow};

/// How long stopping streams may take before the stragglers are left behind.
pub(super) const STOP_GRACE: Duration = Duration::from_secs(5);

impl Engine {
    /// Turns an alert row into the dispatcher's form.
    pub(super) fn alert_spec(&self, cat: &Catalog, a: &AlertRow) -> Result<AlertSpec, Refusal> {
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

    /// Applies the newest catalog: matcher events and indexes, dispatcher
    /// alerts, then pipelines. Call without holding the catalog lock.
    pub(super) async fn apply_latest(&self) {
        let _one_at_a_time = self.applier.lock().await;
        let cat = self.catalog.lock().await.clone();
        self.apply(&cat).await;
    }

    /// The enabled alerts whose index (if any) is running, validated.
    fn live_alerts(&self, cat: &Catalog) -> Vec<AlertSpec> {
        let index_on = |id: &Option<String>| {
            id.as_ref()
                .is_none_or(|i| cat.indexes.get(i).is_some_and(|i| i.running))
        };
        cat.alerts
            .values()
            .filter(|a| a.enabled && index_on(&a.index_id))
            .filter_map(|a| match self.alert_spec(cat, a) {
                Ok(c) => Some(c),
                Err(err) => {
                    tracing::error!(alert = %a.id, error = %err, "alert is not valid; ignored");
                    None
                }
            })
            .collect()
    }

    async fn apply(&self, cat: &Catalog) {
        // Compiling a text event runs the text encoder: off the async threads.
        let events = {
            let rows: Vec<EventRow> = cat.events.values().cloned().collect();
            let models = Arc::clone(&self.parts.models);
            tokio::task::spawn_blocking(move || compile_all(&models, &rows))
                .await
                .unwrap_or_default()
        };
        if let Ok(mut r) = self.routes.lock() {
            *r = events
                .iter()
                .map(|e| (e.id.to_string(), e.model_name.clone()))
                .collect();
        }
        let by_event: HashMap<String, usize> =
            events.iter().map(|e| (e.id.to_string(), e.model)).collect();
        let alerts = self.live_alerts(cat);
        let wired = wiring(cat, &alerts);
        let judged = judged_where_wired(&wired, events);
        let _ = self.parts.matcher.send(MatchControl::Events(judged));
        let indexes = active_indexes(cat);
        let indexed = indexes.iter().map(|i| i.stream.clone()).collect();
        let _ = self.parts.matcher.send(MatchControl::Indexed(indexed));
        let _ = self.parts.indexes.send(indexes);

        let urls = cat
            .streams
            .values()
            .map(|s| (StreamId::new(&s.id), s.spec.url.clone().unwrap_or_default()))
            .collect();
        if let Some(r) = &self.parts.recorder {
            r.set_streams(recorded(self, cat, &wired));
        }
        let needs = needed_models(&wired, &by_event);
        // A new callback URL looks up whether a receiver once said 410
        // Gone: SQLite, so off the async threads.
        let d = Arc::clone(&self.parts.dispatcher);
        let _ = tokio::task::spawn_blocking(move || d.set_alerts(alerts, urls)).await;

        self.apply_streams(cat, &needs).await;
        self.changes.send_modify(|n| *n += 1);
    }

    /// The streams the catalog wants running here, validated.
    fn wanted_streams(&self, cat: &Catalog) -> HashMap<StreamId, StreamSpec> {
        let mut wanted = HashMap::new();
        let here = cat.streams.values().filter(|s| self.runs_here(&s.id));
        for s in here.filter(|s| s.running) {
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
        wanted
    }

    /// The frame sizes a stream is fitted to: one per distinct input of
    /// the models it needs (the primary model when no event needs any).
    fn branches(&self, needs: &HashMap<StreamId, Vec<usize>>, id: &StreamId) -> Vec<Branch> {
        let models = &self.parts.models;
        let needed = needs
            .get(id)
            .filter(|n| !n.is_empty())
            .cloned()
            .unwrap_or_else(|| vec![0]);
        let mut out: Vec<(Output, Vec<usize>)> = Vec::new();
        for i in needed {
            let Some(m) = models.get(i) else { continue };
            let o = Output {
                width: m.manifest.input.width,
                height: m.manifest.input.height,
                resize: m.manifest.input.resize,
            };
            match out.iter_mut().find(|(x, _)| *x == o) {
                Some((_, ms)) => ms.push(i),
                None => out.push((o, vec![i])),
            }
        }
        out.into_iter()
            .map(|(out, models)| Branch {
                out,
                models: models.into(),
            })
            .collect()
    }

    async fn apply_streams(&self, cat: &Catalog, needs: &HashMap<StreamId, Vec<usize>>) {
        let wanted = self.wanted_streams(cat);
        let mut wanted: HashMap<StreamId, (StreamSpec, Vec<Branch>)> = wanted
            .into_iter()
            .map(|(id, spec)| {
                let b = self.branches(needs, &id);
                (id, (spec, b))
            })
            .collect();
        let to_stop = {
            let Ok(mut running) = self.running.lock() else {
                return;
            };
            let mut stale = Vec::new();
            for (id, (cfg, branches, handle)) in running.iter_mut() {
                match wanted.get(id) {
                    Some((w, b)) if w == cfg && b == branches => {}
                    // Only the sampling changed: retune the live pipeline.
                    Some((w, b)) if w.same_pipeline(cfg) && b == branches => {
                        handle.retune(w.fps, w.keyframes_only);
                        tracing::info!(stream = %id, fps = w.fps, keyframes_only = w.keyframes_only, "stream sampling changed");
                        *cfg = w.clone();
                    }
                    _ => stale.push(id.clone()),
                }
            }
            let to_stop: Vec<Box<dyn Running>> = stale
                .iter()
                .filter_map(|id| running.remove(id).map(|(_, _, h)| h))
                .collect();
            wanted.retain(|id, _| !running.contains_key(id));
            to_stop
        };
        let closed: Vec<StreamId> = to_stop.iter().map(|h| h.id().clone()).collect();
        stop_handles(to_stop, &self.parts.clocks).await;
        for id in closed {
            if let Ok(mut h) = self.health.lock() {
                h.remove(&id);
            }
            let _ = self.parts.matcher.send(MatchControl::CloseStream(id));
        }
        for (cfg, branches) in wanted.into_values() {
            self.start_stream(cfg, branches);
        }
    }

    fn start_stream(&self, cfg: StreamSpec, branches: Vec<Branch>) {
        let p = &self.parts;
        let spawned = p.sources.spawn(
            cfg.clone(),
            branches.clone(),
            p.submitter.clone(),
            Arc::clone(&p.reporter),
            Arc::clone(&p.clocks),
        );
        match spawned {
            Ok(h) => {
                tracing::info!(stream = %cfg.id, url = %cfg.url, "stream started");
                if let Ok(mut r) = self.running.lock() {
                    r.insert(cfg.id.clone(), (cfg, branches, h));
                }
            }
            Err(e) => tracing::error!(stream = %cfg.id, error = %e, "cannot start stream"),
        }
    }
}

/// Compiles an event row against the loaded model.
fn compile_row(e: &EventRow, models: &ModelSet) -> Result<CompiledEvent, Refusal> {
    let mut spec: config::RawEvent = e.spec.clone().into();
    spec.id = Some(e.id.clone());
    let cfg = config::check_event(&spec).map_err(problems)?;
    super::compile_event(&cfg, models).map_err(Refusal::Invalid)
}

/// Per event id, the streams its enabled alerts watch: the one place the
/// wiring is worked out (the matcher's scopes, the models each stream
/// needs and the streams recorded all follow from it).
fn wiring(cat: &Catalog, alerts: &[AlertSpec]) -> HashMap<String, HashSet<StreamId>> {
    let streams: Vec<StreamId> = cat.streams.keys().map(StreamId::new).collect();
    let mut wired: HashMap<String, HashSet<StreamId>> = HashMap::new();
    for a in alerts {
        wired
            .entry(a.event.to_string())
            .or_default()
            .extend(streams.iter().filter(|s| watches(cat, a, s)).cloned());
    }
    wired
}

/// The models each stream's enabled alerts need (their events' models).
fn needed_models(
    wired: &HashMap<String, HashSet<StreamId>>,
    by_event: &HashMap<String, usize>,
) -> HashMap<StreamId, Vec<usize>> {
    let mut needs: HashMap<StreamId, Vec<usize>> = HashMap::new();
    for (event, streams) in wired {
        let Some(&m) = by_event.get(event) else {
            continue;
        };
        for s in streams {
            let n = needs.entry(s.clone()).or_default();
            if !n.contains(&m) {
                n.push(m);
            }
        }
    }
    for n in needs.values_mut() {
        n.sort_unstable();
    }
    needs
}

/// Whether an alert watches a stream: through its index, or its streams
/// (none listed: all).
fn watches(cat: &Catalog, a: &AlertSpec, id: &StreamId) -> bool {
    let via_index = a
        .index
        .as_ref()
        .and_then(|i| cat.indexes.get(i))
        .is_some_and(|i| i.stream_id == id.as_str());
    via_index || (a.index.is_none() && (a.streams.is_empty() || a.streams.contains(id)))
}

/// The running streams to record: those that say so, and, unless they say
/// not, those an enabled alert watches.
fn recorded(
    engine: &Engine,
    cat: &Catalog,
    wired: &HashMap<String, HashSet<StreamId>>,
) -> Vec<StreamSpec> {
    let watched = |id: &StreamId| wired.values().any(|on| on.contains(id));
    engine
        .wanted_streams(cat)
        .into_values()
        .filter(|s| s.record.unwrap_or_else(|| watched(&s.id)))
        .collect()
}

/// The events as the matcher should judge them: each makes occurrences on
/// the streams its enabled alerts watch only (none when no alert wires it;
/// a free-text event is still judged for a running scene index's record).
fn judged_where_wired(
    wired: &HashMap<String, HashSet<StreamId>>,
    events: Vec<Arc<CompiledEvent>>,
) -> Vec<Arc<CompiledEvent>> {
    events
        .into_iter()
        .map(|e| {
            let on = wired.get(e.id.as_str()).cloned().unwrap_or_default();
            Arc::new((*e).clone().judged_on(Scope::Only(on)))
        })
        .collect()
}

/// Every event the loaded model can score; the others are logged and left out.
fn compile_all(models: &ModelSet, rows: &[EventRow]) -> Vec<Arc<CompiledEvent>> {
    rows.iter()
        .filter_map(|e| match compile_row(e, models) {
            Ok(c) => Some(Arc::new(c)),
            Err(err) => {
                tracing::error!(event = %e.id, error = %err, "event cannot be scored; ignored");
                None
            }
        })
        .collect()
}

/// The scene indexes that should record: running, on a running stream.
fn active_indexes(cat: &Catalog) -> Vec<ActiveIndex> {
    let stream_on = |id: &str| cat.streams.get(id).is_some_and(|s| s.running);
    cat.indexes
        .values()
        .filter(|i| i.running && stream_on(&i.stream_id))
        .map(|i| ActiveIndex {
            id: i.id.clone(),
            stream: StreamId::new(&i.stream_id),
            batch: i.batch,
            min_score: 0.5,
            ws_connection: i.ws_connection.clone(),
        })
        .collect()
}

/// Stops pipelines off the async threads (stopping joins a thread), all at
/// once, waiting at most [`STOP_GRACE`]: a pipeline wedged in a state change
/// (a camera that stopped answering mid-teardown) must not hold up a
/// shutdown or an API call. A straggler keeps its stop flag and ends on its
/// own; its frames are refused by the closed or replaced pool queue.
pub(super) async fn stop_handles(handles: Vec<Box<dyn Running>>, clocks: &Arc<dyn Clocks>) {
    let mut waiting = Vec::with_capacity(handles.len());
    for h in handles {
        let id = h.id().clone();
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
    let mut grace = clocks.sleep(STOP_GRACE);
    let mut expired = false;
    for (id, mut done) in waiting {
        if !expired {
            tokio::select! {
                _ = &mut done => continue,
                _ = &mut grace => expired = true,
            }
        }
        if done.try_recv().is_err() {
            tracing::warn!(
                stream = %id,
                grace_secs = STOP_GRACE.as_secs(),
                "the stream's pipeline did not stop in time; leaving it to finish on its own"
            );
        }
    }
}
