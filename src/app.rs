//! Wiring: builds every stage from a validated [`Config`], runs them, and
//! shuts them down in order (sources, then the pool, then the matcher, then
//! a bounded grace period for deliveries in flight).
//!
//! Threads: one supervisor per stream (GStreamer), `workers` inference
//! threads, one matcher thread. Async (tokio) for delivery and the API.
//! Which streams, events and alerts exist is the [`Engine`]'s business; it
//! can change them while everything runs.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use crossbeam_channel::{bounded, select, unbounded};
use tokio::sync::mpsc;

use crate::alert::guard::Guard;
use crate::alert::outbox::SystemClock;
use crate::alert::ws::Hub;
use crate::alert::{mqtt::MqttSink, webhook::WebhookSink, Dispatcher, OutboxSettings, Sink};
use crate::api;
use crate::config::Config;
use crate::embeddings::{Embeddings, Entry};
use crate::engine::{compile_event, Engine, MatchControl, Parts};
use crate::index::Indexer;
use crate::matcher::{CompiledEvent, Matcher};
use crate::model::{self, Detector, EmbeddingMemory, ImageEncoder, Kind, Manifest, PromptModel};
use crate::pool::{Pool, PoolConfig, PoolStats, Scorer};
use crate::source::{self, Output, SourceEvent};
use crate::store::{SceneRecord, Store};
use crate::types::{Scores, StreamId};

/// Optional observers, used by the demo, the benchmark and tests.
#[derive(Default)]
pub struct Hooks {
    /// Receives every scored frame (after matching).
    pub scored: Option<crossbeam_channel::Sender<Scores>>,
    /// Stop once every stream has finished (file sources) instead of waiting for shutdown.
    pub stop_when_finished: bool,
    /// Told the API's address once it listens (tests bind port 0).
    pub api_bound: Option<tokio::sync::oneshot::Sender<std::net::SocketAddr>>,
    /// Handed the control plane once it runs (tests inspect and drive it).
    pub engine: Option<tokio::sync::oneshot::Sender<Arc<Engine>>>,
}

/// Figures from one run.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub frames_in: u64,
    pub scored: u64,
    pub dropped_full: u64,
    pub dropped_stale: u64,
    pub occurrences: u64,
    pub messages_queued: u64,
    pub delivered: u64,
    pub delivery_failures: u64,
    /// Failed attempts that were scheduled again.
    pub delivery_retries: u64,
    pub stream_restarts: u64,
    pub mean_inference_ms: f64,
    pub mean_queue_ms: f64,
}

/// The loaded model: its manifest, what prompts compile against, the events.
pub type Compiled = (Arc<Manifest>, PromptModel, Vec<Arc<CompiledEvent>>);

/// Loads the model (for a dual encoder: both halves, checked against each
/// other) and compiles every event against it; reports every refused prompt
/// together. With a `memory`, prompt embeddings are kept there and looked up
/// there first.
pub fn compile(
    config: &Config,
    memory: Option<Arc<dyn EmbeddingMemory>>,
) -> anyhow::Result<Compiled> {
    let dir = model::resolve_model_dir(&config.model)?;
    let manifest = Arc::new(Manifest::load(&dir)?);
    if manifest.kind == Kind::DualEncoder {
        model::init_runtime(config.runtime.ort_library.as_deref())?;
    }
    let prompts = PromptModel::load(&manifest)?;
    if let (PromptModel::Text(encoder), Some(memory)) = (&prompts, memory) {
        encoder.remember_in(memory);
    }
    let mut events = Vec::new();
    let mut refused = Vec::new();
    for e in &config.events {
        match compile_event(e, &prompts) {
            Ok(c) => events.push(Arc::new(c)),
            Err(m) => refused.push(m),
        }
    }
    if !refused.is_empty() {
        return Err(anyhow!("{}", refused.join("\n")));
    }
    Ok((manifest, prompts, events))
}

/// Runs the daemon until `shutdown` resolves (or, with
/// [`Hooks::stop_when_finished`], until every stream has finished).
pub async fn run(
    config: Config,
    hooks: Hooks,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Summary> {
    source::init().map_err(|e| anyhow!(e))?;
    model::init_runtime(config.runtime.ort_library.as_deref())?;
    let store = Arc::new(Store::open(config.state.dir.as_deref())?);
    let started = std::time::Instant::now();
    let (manifest, prompts, events) = compile(&config, Some(Arc::clone(&store) as _))?;
    tracing::info!(
        model = %manifest.dir.display(), kind = ?manifest.kind, labels = ?manifest.labels,
        events = events.len(), streams = config.streams.len(),
        ms = started.elapsed().as_millis() as u64, "model loaded"
    );

    // The API's socket first: its port is one webhooks may never target.
    let api_listener = match &config.api {
        Some(api_cfg) => {
            let key = api::load_key(api_cfg, config.state.dir.as_deref())?;
            let listener = tokio::net::TcpListener::bind(api_cfg.listen)
                .await
                .with_context(|| format!("binding the API to {}", api_cfg.listen))?;
            Some((listener, key))
        }
        None => None,
    };
    let guard = Arc::new(Guard {
        allow: config.webhook.allow_private.clone(),
        api_port: match &api_listener {
            Some((l, _)) => Some(l.local_addr()?.port()),
            None => None,
        },
    });

    // Pool: each worker loads its own session on its own thread.
    let (scores_tx, scores_rx) = bounded::<Scores>(256);
    let intra = config.runtime.intra_threads;
    let pool_manifest = Arc::clone(&manifest);
    let pool = Pool::start(
        &PoolConfig {
            workers: config.runtime.workers,
            capacity: config.runtime.queue_capacity,
            max_age: config.runtime.max_frame_age,
        },
        move |_| {
            let m = Arc::clone(&pool_manifest);
            Ok(match m.kind {
                Kind::DualEncoder => Box::new(ImageEncoder::load(m, intra)?) as Box<dyn Scorer>,
                Kind::Ssd | Kind::Yolo => Box::new(Detector::load(m, intra)?),
            })
        },
        scores_tx,
    )
    .context("starting the inference pool")?;
    let pool_stats = pool.stats();

    // Delivery.
    let hub = Arc::new(Hub::new(config.api.as_ref().map_or(256, |a| a.ws_buffer)));
    let webhook = WebhookSink::new(config.webhook.timeout, Arc::clone(&guard))
        .context("building the HTTP client")?;
    let mqtt_sink: Option<Arc<MqttSink>> =
        config.mqtt.as_ref().map(|m| Arc::new(MqttSink::start(m)));
    let mqtt = mqtt_sink.clone().map(|m| m as Arc<dyn Sink>);
    let dispatcher = Arc::new(Dispatcher::start(
        Some(Arc::new(webhook)),
        mqtt,
        Some(Arc::clone(&hub)),
        OutboxSettings {
            store: Arc::clone(&store) as Arc<dyn crate::store::Outbox>,
            schedule: config.webhook.schedule.clone().into(),
            mqtt_schedule: crate::domain::mqtt_schedule(),
            concurrency: config.webhook.concurrency,
            clock: Arc::new(SystemClock),
            poll: Duration::from_millis(500),
        },
    ));

    // Frame embeddings (dual encoders): in memory for search, reloaded
    // from and written to the store in batches.
    let embeddings = Arc::new(Embeddings::new(if manifest.kind == Kind::DualEncoder {
        config.state.embedding_hours
    } else {
        0.0
    }));
    let (embed_tx, embed_rx) = mpsc::channel::<(String, Entry)>(4096);
    let embed_task = if embeddings.enabled() {
        let now_ms = unix_ms(std::time::SystemTime::now());
        let kept = store
            .load_embeddings(embeddings.cutoff(now_ms))
            .context("loading stored frame embeddings")?;
        tracing::info!(frames = kept.len(), "frame embeddings loaded");
        for (stream, e) in kept {
            embeddings.push(&stream, e);
        }
        Some(tokio::spawn(store_embeddings(
            embed_rx,
            Arc::clone(&store),
            Arc::clone(&embeddings),
        )))
    } else {
        None
    };

    // Scene records: written in batches off the matcher thread.
    let (records_tx, records_rx) = mpsc::channel::<SceneRecord>(4096);
    let records_task = tokio::spawn(store_records(
        records_rx,
        Arc::clone(&store),
        config.state.scene_records,
    ));

    // Matcher thread: scores, source events and control changes in,
    // messages and scene records out.
    let (events_tx, events_rx) = bounded::<SourceEvent>(1024);
    let (control_tx, control_rx) = unbounded::<MatchControl>();
    let (finished_tx, mut finished_rx) = mpsc::unbounded_channel::<StreamId>();
    let loop_parts = MatchLoop {
        dispatcher: Arc::clone(&dispatcher),
        hub: Arc::clone(&hub),
        records: records_tx,
        embeddings: embeddings
            .enabled()
            .then(|| (Arc::clone(&embeddings), embed_tx)),
        finished: finished_tx,
        scored_hook: hooks.scored.clone(),
    };
    // A text event's baseline starts from what the stream showed before
    // (frames kept from earlier runs and from before the event existed).
    let mut matcher = Matcher::new(events);
    if embeddings.enabled() {
        let kept = Arc::clone(&embeddings);
        matcher = matcher.with_baselines(Box::new(move |stream, rule, s| {
            kept.baseline(stream.as_str(), rule, unix_ms(s.wall), s.stream_secs)
        }));
    }
    let matcher_thread = std::thread::Builder::new()
        .name("matcher".into())
        .spawn(move || loop_parts.run(matcher, scores_rx, events_rx, control_rx))
        .context("spawning the matcher thread")?;

    // The control plane starts the streams.
    let reporter: source::Reporter = Arc::new(move |e: SourceEvent| {
        let _ = events_tx.try_send(e);
    });
    let engine = Engine::start(
        Parts {
            store: Arc::clone(&store),
            manifest: Arc::clone(&manifest),
            prompts,
            mqtt: config.mqtt.clone(),
            out: Output {
                width: manifest.input.width,
                height: manifest.input.height,
                resize: manifest.input.resize,
            },
            submitter: pool.submitter(),
            reporter,
            matcher: control_tx,
            dispatcher: Arc::clone(&dispatcher),
            hub: Arc::clone(&hub),
            keep_records: config.state.scene_records,
            guard,
            embeddings,
            allow_local_sources: config.api.as_ref().is_some_and(|a| a.allow_local_sources),
        },
        &config,
    )
    .await?;

    // The API.
    let (api_stop_tx, api_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let api_task = match api_listener {
        Some((listener, key)) => {
            let addr = listener.local_addr()?;
            tracing::info!(%addr, "API listening");
            if let Some(tx) = hooks.api_bound {
                let _ = tx.send(addr);
            }
            let router = api::router(Arc::clone(&engine), key, addr);
            Some(tokio::spawn(async move {
                let r = axum::serve(listener, router)
                    .with_graceful_shutdown(async {
                        let _ = api_stop_rx.await;
                    })
                    .await;
                if let Err(e) = r {
                    tracing::error!(error = %e, "API server failed");
                }
            }))
        }
        None => None,
    };

    if let Some(tx) = hooks.engine {
        let _ = tx.send(Arc::clone(&engine));
    }
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    let total = engine.stream_stats().len();
    tracing::info!(streams = total, "sightline running");

    let stats_task = config.runtime.stats_interval.map(|every| {
        let (pool, engine, dispatcher) = (
            Arc::clone(&pool_stats),
            Arc::clone(&engine),
            Arc::clone(&dispatcher),
        );
        tokio::spawn(log_counters(every, engine, pool, dispatcher))
    });

    // Wait.
    let wait_finished = async {
        let mut done = 0;
        while done < total {
            if finished_rx.recv().await.is_none() {
                break;
            }
            done += 1;
        }
        if !hooks.stop_when_finished || total == 0 {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        _ = shutdown => tracing::info!("shutting down"),
        _ = wait_finished => tracing::info!("every stream finished"),
    }
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);

    if let Some(t) = stats_task {
        t.abort();
    }
    let _ = api_stop_tx.send(());
    if let Some(t) = api_task {
        if tokio::time::timeout(Duration::from_secs(2), t)
            .await
            .is_err()
        {
            tracing::warn!("API connections still open at shutdown; closing them");
        }
    }
    // Shutdown order: no new frames, finish queued frames, drain the matcher.
    let mut summary = Summary::default();
    for s in engine.stop_all().await {
        summary.frames_in += s.frames.load(Ordering::Relaxed);
        summary.stream_restarts += s.restarts.load(Ordering::Relaxed);
    }
    drop(engine);
    pool.shutdown();
    let (occurrences, queued) = tokio::task::spawn_blocking(move || matcher_thread.join())
        .await
        .map_err(|e| anyhow!("matcher join: {e}"))?
        .map_err(|_| anyhow!("the matcher thread panicked"))?;
    summary.occurrences = occurrences;
    summary.messages_queued = queued;
    let _ = records_task.await;
    if let Some(t) = embed_task {
        let _ = t.await;
    }

    // Give deliveries in flight a bounded grace period.
    let target_stats = dispatcher.stats();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let done: u64 = target_stats
            .iter()
            .map(|(_, s)| s.delivered.load(Ordering::Relaxed) + s.failed.load(Ordering::Relaxed))
            .sum();
        if done >= queued || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (_, s) in &target_stats {
        summary.delivered += s.delivered.load(Ordering::Relaxed);
        summary.delivery_failures += s.failed.load(Ordering::Relaxed);
        summary.delivery_retries += s.retries.load(Ordering::Relaxed);
    }
    if let Some(m) = mqtt_sink {
        m.close(Duration::from_secs(2)).await;
    }
    fill_pool_figures(&mut summary, &pool_stats);
    Ok(summary)
}

/// Writes scene records in batches (one transaction per batch).
async fn store_records(mut rx: mpsc::Receiver<SceneRecord>, store: Arc<Store>, keep: usize) {
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
async fn store_embeddings(
    mut rx: mpsc::Receiver<(String, Entry)>,
    store: Arc<Store>,
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

fn unix_ms(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Logs every counter once per period, so drops and failures show up in the
/// journal while the daemon runs, not only at exit.
async fn log_counters(
    every: Duration,
    engine: Arc<Engine>,
    pool: Arc<PoolStats>,
    dispatcher: Arc<Dispatcher>,
) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let drops = pool.drops_by_stream();
        for (id, s) in engine.stream_stats() {
            tracing::info!(
                stream = %id,
                frames = s.frames.load(Ordering::Relaxed),
                restarts = s.restarts.load(Ordering::Relaxed),
                dropped = drops.get(&id).copied().unwrap_or(0),
                up = engine.health(id.as_str()).up,
                "stream counters"
            );
        }
        let mut f = Summary::default();
        fill_pool_figures(&mut f, &pool);
        tracing::info!(
            scored = f.scored,
            dropped_full = f.dropped_full,
            dropped_stale = f.dropped_stale,
            errors = pool.errors.load(Ordering::Relaxed),
            mean_inference_ms = f.mean_inference_ms,
            mean_queue_ms = f.mean_queue_ms,
            "pool counters"
        );
        let hub = engine.hub().stats();
        tracing::info!(
            connected = hub.connected,
            sent = hub.sent,
            slow_disconnects = hub.slow_disconnects,
            "websocket counters"
        );
        for (name, t) in &dispatcher.stats() {
            tracing::info!(
                target = %name,
                delivered = t.delivered.load(Ordering::Relaxed),
                failed = t.failed.load(Ordering::Relaxed),
                retries = t.retries.load(Ordering::Relaxed),
                "delivery counters"
            );
        }
    }
}

/// Frame embeddings on their way to the store: (stream id, frame).
type EmbeddingSender = mpsc::Sender<(String, Entry)>;

/// What the matcher thread sends to.
struct MatchLoop {
    dispatcher: Arc<Dispatcher>,
    hub: Arc<Hub>,
    records: mpsc::Sender<SceneRecord>,
    /// Dual encoders: where frame embeddings go (memory, then the store).
    embeddings: Option<(Arc<Embeddings>, EmbeddingSender)>,
    finished: mpsc::UnboundedSender<StreamId>,
    scored_hook: Option<crossbeam_channel::Sender<Scores>>,
}

impl MatchLoop {
    /// Scores, source events and control changes in; alert messages and
    /// scene records out. Returns (occurrence messages, deliveries queued)
    /// when the pool closes.
    fn run(
        self,
        mut matcher: Matcher,
        scores_rx: crossbeam_channel::Receiver<Scores>,
        mut events_rx: crossbeam_channel::Receiver<SourceEvent>,
        mut control_rx: crossbeam_channel::Receiver<MatchControl>,
    ) -> (u64, u64) {
        let (mut occurrences, mut queued) = (0u64, 0u64);
        let mut last_time: HashMap<StreamId, f64> = HashMap::new();
        let mut indexer = Indexer::default();
        // A stream that went away cannot show the end of what it saw.
        let close = |matcher: &mut Matcher, stream: &StreamId, last: &HashMap<StreamId, f64>| {
            let t = last.get(stream).copied().unwrap_or(0.0);
            let ends = matcher.close_stream(stream, t, std::time::SystemTime::now());
            let queued: usize = ends.iter().map(|o| self.dispatcher.dispatch(o)).sum();
            (ends.len() as u64, queued as u64)
        };
        loop {
            select! {
                recv(scores_rx) -> s => {
                    let Ok(s) = s else { break };
                    last_time.insert(s.stream_id.clone(), s.stream_secs);
                    if let (Some((mem, tx)), Some(v)) = (&self.embeddings, &s.embedding) {
                        let e = Entry::new(unix_ms(s.wall), s.stream_secs, v);
                        mem.push(s.stream_id.as_str(), e.clone());
                        if tx.try_send((s.stream_id.to_string(), e)).is_err() {
                            tracing::warn!(stream = %s.stream_id, "embedding store is behind; frame not persisted");
                        }
                    }
                    for occ in matcher.observe(&s) {
                        occurrences += 1;
                        tracing::info!(stream = %occ.stream_id, event = %occ.event_id, phase = ?occ.phase,
                            start = occ.start_time, end = occ.end_time, confidence = occ.confidence, "occurrence");
                        queued += self.dispatcher.dispatch(&occ) as u64;
                    }
                    // A dual encoder names nothing by itself: its index
                    // records the free-text events that matched.
                    let seen = if s.embedding.is_some() { matcher.text_matches() } else { &s.detections };
                    for (record, ws) in indexer.observe(&s, seen) {
                        if let Some(ws) = ws {
                            self.hub.publish(&ws, "scene_index", &record);
                        }
                        if self.records.try_send(record).is_err() {
                            tracing::warn!(stream = %s.stream_id, "scene record store is behind; record dropped");
                        }
                    }
                    if let Some(h) = &self.scored_hook {
                        let _ = h.try_send(s);
                    }
                }
                recv(control_rx) -> c => {
                    match c {
                        Ok(MatchControl::Events(ev)) => matcher.set_events(ev),
                        Ok(MatchControl::Indexes(ix)) => indexer.set(ix),
                        Ok(MatchControl::CloseStream(id)) => {
                            let (o, q) = close(&mut matcher, &id, &last_time);
                            occurrences += o;
                            queued += q;
                        }
                        Err(_) => control_rx = crossbeam_channel::never(),
                    }
                }
                recv(events_rx) -> e => {
                    let Ok(e) = e else {
                        // Every source is gone; stop selecting on a closed channel
                        // (it would be ready forever and spin).
                        events_rx = crossbeam_channel::never();
                        continue;
                    };
                    let stream = match &e {
                        SourceEvent::Down { stream, .. } => stream.clone(),
                        SourceEvent::Finished(stream) => {
                            let _ = self.finished.send(stream.clone());
                            stream.clone()
                        }
                        SourceEvent::Up(_) => continue,
                    };
                    let (o, q) = close(&mut matcher, &stream, &last_time);
                    occurrences += o;
                    queued += q;
                }
            }
        }
        (occurrences, queued)
    }
}

fn fill_pool_figures(s: &mut Summary, p: &PoolStats) {
    s.scored = p.scored.load(Ordering::Relaxed);
    s.dropped_full = p.dropped_full.load(Ordering::Relaxed);
    s.dropped_stale = p.dropped_stale.load(Ordering::Relaxed);
    if s.scored > 0 {
        s.mean_inference_ms =
            p.inference_us.load(Ordering::Relaxed) as f64 / s.scored as f64 / 1000.0;
        s.mean_queue_ms = p.queued_us.load(Ordering::Relaxed) as f64 / s.scored as f64 / 1000.0;
    }
}
