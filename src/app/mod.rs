//! Wiring: [`build`] makes every stage from a validated [`Config`] and
//! starts it; [`Daemon::shutdown`] stops them in order (sources, the pool,
//! the matcher stage, the scene and delivery stages, then a bounded grace
//! period for deliveries in flight). docs/ARCHITECTURE.md draws the stages
//! and the channels between them.
//!
//! Threads: one supervisor per stream (GStreamer), `workers` inference
//! threads, the matcher, scene and delivery stage threads, the text
//! encoder's thread for dual encoders. Async (tokio) for the outbox workers,
//! the API and the store writers. Which streams, events and alerts exist is
//! the [`Engine`]'s business; it can change them while everything runs.

mod counters;
mod delivery;
mod models;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, Context};
use crossbeam_channel::{bounded, unbounded};
use tokio::sync::mpsc;
use tokio::task::JoinHandle as Task;

use crate::alert::guard::Guard;
use crate::alert::mqtt::MqttSink;
use crate::alert::{self, Dispatcher};
use crate::api;
use crate::clock::{unix_ms, Clocks};
use crate::config::Config;
use crate::control::{Engine, Parts};
use crate::domain::FrameEmbedding;
use crate::domain::{Scores, StreamId};
use crate::matcher::stage::{MatchControl, MatchStage, Observed};
use crate::matcher::{CompiledEvent, Matcher};
use crate::metrics::Histogram;
use crate::model::{self, Detector, ImageEncoder, Kind, Manifest, ModelSet};
use crate::pool::{Pool, PoolConfig, PoolStats, Scorer};
use crate::record::Recorder;
use crate::scene::embeddings::Embeddings;
use crate::scene::{self, SceneStage};
use crate::source::tap::Taps;
use crate::source::{self, SourceEvent};
use crate::store::space::SpaceWatch;
use crate::store::{SceneRecord, Store};
use counters::{fill_pool_figures, log_counters};
use delivery::{build_delivery, Delivery};

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
    /// Clocks to run on instead of the machine's (tests).
    pub clocks: Option<Arc<dyn Clocks>>,
    /// Where streams come from instead of GStreamer (tests replay frames).
    pub sources: Option<Arc<dyn source::Sources>>,
}

pub use counters::Summary;
pub use models::{compile, probe, Compiled};

/// Runs the daemon until `shutdown` resolves (or, with
/// [`Hooks::stop_when_finished`], until every stream has finished).
pub async fn run(
    config: Config,
    hooks: Hooks,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Summary> {
    let stop_when_finished = hooks.stop_when_finished;
    let mut daemon = build(config, hooks).await?;
    daemon.wait(shutdown, stop_when_finished).await;
    daemon.shutdown().await
}

/// A running daemon: every stage's handle, in the order they stop.
pub struct Daemon {
    engine: Arc<Engine>,
    api: Option<(tokio::sync::oneshot::Sender<()>, Task<()>)>,
    stats_task: Option<Task<()>>,
    pool: Pool,
    pool_stats: Arc<PoolStats>,
    matcher: JoinHandle<u64>,
    scenes: JoinHandle<()>,
    delivery: JoinHandle<u64>,
    records_task: Task<()>,
    embed_task: Option<Task<()>>,
    dispatcher: Arc<Dispatcher>,
    mqtt: Option<Arc<MqttSink>>,
    finished: mpsc::UnboundedReceiver<StreamId>,
    clocks: Arc<dyn Clocks>,
    recorder: Option<Arc<Recorder>>,
    retention: Option<Task<()>>,
    /// Home Assistant discovery and the MQTT control topics.
    bridge: Option<Task<()>>,
    /// This box's membership of a site (`[fleet]`).
    fleet: Option<crate::fleet::Member>,
}

/// The inference pool: each worker loads its own session of every model on
/// its own thread.
fn build_pool(
    config: &Config,
    models: &ModelSet,
    scores_tx: crossbeam_channel::Sender<Scores>,
) -> anyhow::Result<Pool> {
    let intra = config.runtime.intra_threads;
    let manifests: Vec<Arc<Manifest>> = models
        .all()
        .iter()
        .map(|m| Arc::clone(&m.manifest))
        .collect();
    Pool::start(
        &PoolConfig {
            workers: config.runtime.workers,
            capacity: config.runtime.queue_capacity,
            max_age: config.runtime.max_frame_age,
        },
        move |_| {
            manifests
                .iter()
                .map(|m| {
                    let m = Arc::clone(m);
                    Ok(match m.kind {
                        Kind::DualEncoder => {
                            Box::new(ImageEncoder::load(m, intra)?) as Box<dyn Scorer>
                        }
                        Kind::Ssd | Kind::Yolo | Kind::Detections => {
                            Box::new(Detector::load(m, intra)?)
                        }
                    })
                })
                .collect()
        },
        scores_tx,
    )
    .context("starting the inference pool")
}

/// Frame embeddings (dual encoders): in memory for search, reloaded from
/// and written to the store in batches. Returns the in-memory set, its
/// sender for the scene stage and the writer task.
async fn build_embeddings(
    config: &Config,
    models: &ModelSet,
    store: &Arc<Store>,
    clocks: &Arc<dyn Clocks>,
) -> anyhow::Result<(Arc<Embeddings>, Option<(scene::EmbeddingSender, Task<()>)>)> {
    let hours = if models.text().is_some() {
        config.state.embedding_hours
    } else {
        0.0
    };
    let embeddings = Arc::new(Embeddings::new(hours));
    if !embeddings.enabled() {
        return Ok((embeddings, None));
    }
    let (tx, rx) = mpsc::channel::<(String, FrameEmbedding)>(4096);
    let (s, since) = (Arc::clone(store), embeddings.cutoff(clocks.wall_ms()));
    let kept = tokio::task::spawn_blocking(move || s.load_embeddings(since))
        .await
        .map_err(|e| anyhow!("loading stored frame embeddings: {e}"))?
        .context("loading stored frame embeddings")?;
    tracing::info!(frames = kept.len(), "frame embeddings loaded");
    for (stream, e) in kept {
        embeddings.push(&stream, e);
    }
    let task = tokio::spawn(scene::store_embeddings(
        rx,
        Arc::clone(store),
        Arc::clone(&embeddings),
    ));
    Ok((embeddings, Some((tx, task))))
}

/// Binds the API's socket (before anything else: its port is one webhooks
/// may never target) and loads its key.
async fn bind_api(config: &Config) -> anyhow::Result<Option<(tokio::net::TcpListener, String)>> {
    let Some(api_cfg) = &config.api else {
        return Ok(None);
    };
    let mut key = api::load_key(api_cfg, config.state.dir.as_deref())?;
    if let Some(f) = &config.fleet {
        let path = api::key_path(api_cfg, config.state.dir.as_deref())?;
        key = crate::fleet::site_key(f, key, &path).await;
    }
    let listener = tokio::net::TcpListener::bind(api_cfg.listen)
        .await
        .with_context(|| format!("binding the API to {}", api_cfg.listen))?;
    Ok(Some((listener, key)))
}

/// The channels between the stages, made before any stage starts.
struct Wires {
    scores: (
        crossbeam_channel::Sender<Scores>,
        crossbeam_channel::Receiver<Scores>,
    ),
    control: (
        crossbeam_channel::Sender<MatchControl>,
        crossbeam_channel::Receiver<MatchControl>,
    ),
    observed: (
        crossbeam_channel::Sender<Observed>,
        crossbeam_channel::Receiver<Observed>,
    ),
    indexes: (
        crossbeam_channel::Sender<Vec<crate::scene::index::ActiveIndex>>,
        crossbeam_channel::Receiver<Vec<crate::scene::index::ActiveIndex>>,
    ),
    occurrences: (
        crossbeam_channel::Sender<crate::matcher::Occurrence>,
        crossbeam_channel::Receiver<crate::matcher::Occurrence>,
    ),
}

impl Wires {
    fn new() -> Wires {
        Wires {
            scores: bounded(256),
            control: unbounded(),
            observed: bounded(1024),
            indexes: unbounded(),
            occurrences: bounded(1024),
        }
    }
}

/// Reports from the sources: counted as health by the engine, turned into
/// "close this stream's occurrences" for the matcher, and "finished" for
/// the daemon's own wait.
fn reporter(
    control: crossbeam_channel::Sender<MatchControl>,
    finished: mpsc::UnboundedSender<StreamId>,
) -> source::Reporter {
    Arc::new(move |e: SourceEvent| match e {
        SourceEvent::Up(_) => {}
        SourceEvent::Down { stream, .. } => {
            let _ = control.send(MatchControl::CloseStream(stream));
        }
        SourceEvent::Finished(stream) => {
            let _ = control.send(MatchControl::CloseStream(stream.clone()));
            let _ = finished.send(stream);
        }
    })
}

/// Opens the state database and loads the model, off the async threads.
async fn load(config: &Config, clocks: &Arc<dyn Clocks>) -> anyhow::Result<(Arc<Store>, Compiled)> {
    let store = {
        let dir = config.state.dir.clone();
        let on = config.state.on_corruption;
        let opened = tokio::task::spawn_blocking(move || Store::open_with(dir.as_deref(), on));
        Arc::new(
            opened
                .await
                .map_err(|e| anyhow!("opening the state: {e}"))??,
        )
    };
    let started = clocks.now();
    let (models, events) = {
        let (c, s) = (config.clone(), Arc::clone(&store));
        tokio::task::spawn_blocking(move || compile(&c, Some(s as _)))
            .await
            .map_err(|e| anyhow!("loading the models: {e}"))??
    };
    for m in models.all() {
        tracing::info!(
            name = %m.name, model = %m.manifest.dir.display(), kind = ?m.manifest.kind,
            labels = m.manifest.labels.len(), "model loaded"
        );
    }
    tracing::info!(
        events = events.len(),
        streams = config.streams.len(),
        ms = clocks.now().saturating_duration_since(started).as_millis() as u64,
        "models loaded"
    );
    Ok((store, (models, events)))
}

/// What the matcher, scene and delivery stages read from.
struct Inputs {
    observed: (
        crossbeam_channel::Sender<Observed>,
        crossbeam_channel::Receiver<Observed>,
    ),
    indexes: crossbeam_channel::Receiver<Vec<crate::scene::index::ActiveIndex>>,
    occurrences: (
        crossbeam_channel::Sender<crate::matcher::Occurrence>,
        crossbeam_channel::Receiver<crate::matcher::Occurrence>,
    ),
    scores: crossbeam_channel::Receiver<Scores>,
    control: crossbeam_channel::Receiver<MatchControl>,
}

/// The stages behind the pool, with their store writers.
struct Stages {
    matcher: JoinHandle<u64>,
    scenes: JoinHandle<()>,
    delivery: JoinHandle<u64>,
    records_task: Task<()>,
    embed_task: Option<Task<()>>,
    /// What the matcher stage measures and leaves for the API to read.
    match_times: Arc<Histogram>,
    latest: Arc<crate::matcher::stage::LatestPictures>,
}

type EmbeddingParts<'a> = (
    &'a Arc<Embeddings>,
    Option<(scene::EmbeddingSender, Task<()>)>,
);
type MatcherParts<'a> = (
    Vec<Arc<CompiledEvent>>,
    Option<crossbeam_channel::Sender<Scores>>,
    &'a Arc<dyn Clocks>,
);

/// Starts the scene, delivery and matcher stages (in that order: each
/// stage's consumer runs before its producer).
fn start_stages(
    config: &Config,
    inp: Inputs,
    out: &Delivery,
    store: &Arc<Store>,
    (embeddings, embed): EmbeddingParts<'_>,
    (events, scored, clocks): MatcherParts<'_>,
) -> anyhow::Result<Stages> {
    let (records_tx, records_rx) = mpsc::channel::<SceneRecord>(4096);
    let records_task = tokio::spawn(scene::store_records(
        records_rx,
        Arc::clone(store),
        config.state.scene_records,
    ));
    let (embed_tx, embed_task) = match embed {
        Some((tx, task)) => (Some(tx), Some(task)),
        None => (None, None),
    };
    let scenes = SceneStage {
        observed: inp.observed.1,
        indexes: inp.indexes,
        hub: Arc::clone(&out.hub),
        records: records_tx,
        embeddings: embed_tx.map(|tx| (Arc::clone(embeddings), tx)),
        time_bases: Arc::clone(&out.time_bases),
    };
    let scenes = std::thread::Builder::new()
        .name("scenes".into())
        .spawn(move || scenes.run())
        .context("spawning the scene stage")?;
    let extras = alert::stage::Extras {
        evidence: out
            .capture
            .clone()
            .map(|c| c as Arc<dyn alert::stage::Evidence>),
        observer: out
            .states
            .clone()
            .map(|s| s as Arc<dyn alert::stage::Observer>),
    };
    let delivery = alert::stage::spawn(
        Arc::clone(&out.dispatcher),
        inp.occurrences.1,
        extras,
        Arc::clone(clocks),
    )
    .context("spawning the delivery stage")?;
    let match_times = Arc::new(Histogram::default());
    let latest = Arc::new(crate::matcher::stage::LatestPictures::default());
    let matcher = spawn_matcher(
        events,
        embeddings,
        MatchStage {
            matcher: Matcher::new(Vec::new()),
            scores: inp.scores,
            control: inp.control,
            occurrences: inp.occurrences.0,
            observed: inp.observed.0,
            scored_hook: scored,
            clocks: Arc::clone(clocks),
            observed_dropped: Arc::new(AtomicU64::new(0)),
            match_times: Arc::clone(&match_times),
            latest: Arc::clone(&latest),
        },
    )?;

    Ok(Stages {
        matcher,
        scenes,
        delivery,
        records_task,
        embed_task,
        match_times,
        latest,
    })
}

/// Serves the API (with the media routes when recording is on).
fn start_api(
    listener: Option<(tokio::net::TcpListener, String)>,
    engine: &Arc<Engine>,
    out: &Delivery,
    store: &Arc<Store>,
    clocks: &Arc<dyn Clocks>,
    bound: Option<tokio::sync::oneshot::Sender<std::net::SocketAddr>>,
) -> anyhow::Result<Option<(tokio::sync::oneshot::Sender<()>, Task<()>)>> {
    let Some((listener, key)) = listener else {
        return Ok(None);
    };
    let media = out.recorder.clone().map(|r| {
        Arc::new(api::Media {
            base: out
                .capture
                .as_ref()
                .map(|c| c.base.clone())
                .unwrap_or_default(),
            recorder: r,
            store: Arc::clone(store),
            clocks: Arc::clone(clocks),
            time_bases: Arc::clone(&out.time_bases),
        })
    });
    Ok(Some(api::serve(listener, key, engine, media, bound)?))
}

/// Where webhooks may go: never the API's own port.
fn guard(
    config: &Config,
    api: Option<&(tokio::net::TcpListener, String)>,
) -> anyhow::Result<Arc<Guard>> {
    Ok(Arc::new(Guard {
        allow: config.webhook.allow_private.clone(),
        api_port: match api {
            Some((l, _)) => Some(l.local_addr()?.port()),
            None => None,
        },
    }))
}

/// Logs every counter each `runtime.stats_interval_secs`, if set.
fn stats_task(
    config: &Config,
    engine: &Arc<Engine>,
    pool: &Arc<PoolStats>,
    dispatcher: &Arc<Dispatcher>,
) -> Option<Task<()>> {
    config.runtime.stats_interval.map(|every| {
        let (e, p, d) = (Arc::clone(engine), Arc::clone(pool), Arc::clone(dispatcher));
        tokio::spawn(log_counters(every, e, p, d))
    })
}

/// Raises the soft limit on open files to the hard one: cameras, segments,
/// SQLite, API and delivery connections all need descriptors, and the
/// usual soft limit (1024) is far below what the kernel allows.
fn raise_open_files() {
    // SAFETY: getrlimit/setrlimit only read and write the struct given.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            let want = libc::rlimit {
                rlim_cur: r.rlim_max,
                rlim_max: r.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                tracing::debug!(from = r.rlim_cur, to = r.rlim_max, "open-file limit raised");
            }
        }
    }
}

/// Keeps recordings within their budget, when recording is on.
fn retention_task(
    recorder: Option<&Arc<crate::record::Recorder>>,
    store: Arc<Store>,
    clocks: &Arc<dyn Clocks>,
) -> Option<Task<()>> {
    recorder.map(|r| {
        let job = crate::record::retention::run(Arc::clone(r), store, Arc::clone(clocks));
        tokio::spawn(job)
    })
}

/// Watches the free space of the state disk, when state is on disk.
fn space_watch(config: &Config) -> Option<Arc<SpaceWatch>> {
    config.state.dir.as_deref().map(|dir| {
        let w = Arc::new(SpaceWatch::new(dir, config.state.min_free_bytes));
        w.spawn();
        w
    })
}

/// The tasks beside the running daemon: the counters log and Home
/// Assistant's bridge (each when configured).
fn watchers(
    config: &Config,
    engine: &Arc<Engine>,
    pool: &Arc<PoolStats>,
    out: &Delivery,
) -> (Option<Task<()>>, Option<Task<()>>) {
    let stats = stats_task(config, engine, pool, &out.dispatcher);
    let bridge = crate::homeassistant::spawn(
        engine,
        out.mqtt.as_ref(),
        out.states.as_ref(),
        config.mqtt.as_ref(),
    );
    (stats, bridge)
}

/// What the process needs once before any stage: open-file headroom,
/// GStreamer and ONNX Runtime.
fn init_process(config: &Config) -> anyhow::Result<()> {
    raise_open_files();
    source::init().map_err(|e| anyhow!(e))?;
    source::set_streaming_nice(config.runtime.streaming_nice);
    model::init_runtime(config.runtime.ort_library.as_deref())?;
    Ok(())
}

/// How streams start, and the taps that hand recorded streams' video to
/// the recorder: real pipelines have them; sources a test supplies do not.
fn sources(hooks: &Hooks) -> (Option<Arc<Taps>>, Arc<dyn source::Sources>) {
    let taps = hooks.sources.is_none().then(|| Arc::new(Taps::default()));
    let sources = hooks
        .sources
        .clone()
        .unwrap_or_else(|| Arc::new(source::Gstreamer { taps: taps.clone() }));
    (taps, sources)
}

/// Builds and starts every stage.
pub async fn build(config: Config, hooks: Hooks) -> anyhow::Result<Daemon> {
    init_process(&config)?;
    let clocks = hooks.clocks.clone().unwrap_or_else(crate::clock::real);
    let (store, (models, events)) = load(&config, &clocks).await?;
    let api_listener = bind_api(&config).await?;
    let guard = guard(&config, api_listener.as_ref())?;
    let w = Wires::new();
    let pool = build_pool(&config, &models, w.scores.0)?;
    let pool_stats = pool.stats();
    let (taps, sources) = sources(&hooks);
    let out = build_delivery(
        &config,
        &store,
        &guard,
        &clocks,
        api_listener.as_ref(),
        taps.clone(),
    )
    .await?;
    let (embeddings, embed) = build_embeddings(&config, &models, &store, &clocks).await?;
    let stages = start_stages(
        &config,
        Inputs {
            observed: w.observed,
            indexes: w.indexes.1,
            occurrences: w.occurrences,
            scores: w.scores.1,
            control: w.control.1,
        },
        &out,
        &store,
        (&embeddings, embed),
        (events, hooks.scored.clone(), &clocks),
    )?;
    let (finished_tx, finished) = mpsc::unbounded_channel::<StreamId>();
    let parts = Parts {
        store: Arc::clone(&store),
        models: Arc::clone(&models),
        mqtt: config.mqtt.clone(),
        submitter: pool.submitter(),
        pool: Arc::clone(&pool_stats),
        reporter: reporter(w.control.0.clone(), finished_tx),
        matcher: w.control.0,
        indexes: w.indexes.0,
        dispatcher: Arc::clone(&out.dispatcher),
        hub: Arc::clone(&out.hub),
        keep_records: config.state.scene_records,
        max_objects: config.state.max_objects,
        guard,
        embeddings,
        allow_local_sources: config.api.as_ref().is_some_and(|a| a.allow_local_sources),
        recorder: out.recorder.clone(),
        sources,
        clocks: Arc::clone(&clocks),
        steady: Arc::clone(&out.steady),
        match_times: Arc::clone(&stages.match_times),
        latest: Arc::clone(&stages.latest),
        metrics_public: config.api.as_ref().is_some_and(|a| a.metrics_public),
        space: space_watch(&config),
        placed: (config.fleet.as_ref())
            .map(|_| crate::fleet::last_placed(config.state.dir.as_deref())),
    };
    let engine = Engine::start(parts, &config).await?;
    let fleet = join_site(&config, &engine, api_listener.as_ref()).await?;

    let api = start_api(
        api_listener,
        &engine,
        &out,
        &store,
        &clocks,
        hooks.api_bound,
    )?;
    if let Some(tx) = hooks.engine {
        let _ = tx.send(Arc::clone(&engine));
    }
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    tracing::info!(streams = engine.stream_stats().len(), "sightline running");
    let (stats_task, bridge) = watchers(&config, &engine, &pool_stats, &out);
    Ok(Daemon {
        engine,
        api,
        stats_task,
        pool,
        pool_stats,
        matcher: stages.matcher,
        scenes: stages.scenes,
        delivery: stages.delivery,
        records_task: stages.records_task,
        embed_task: stages.embed_task,
        dispatcher: out.dispatcher,
        mqtt: out.mqtt,
        finished,
        retention: retention_task(out.recorder.as_ref(), store, &clocks),
        bridge,
        fleet,
        recorder: out.recorder,
        clocks,
    })
}

/// Where other boxes of a site reach this one's API: `[api] public_url`,
/// else the address it listens on.
fn own_url(config: &Config, api: Option<&(tokio::net::TcpListener, String)>) -> Option<String> {
    let public = config.api.as_ref().and_then(|a| a.public_url.clone());
    public.or_else(|| Some(format!("http://{}", api?.0.local_addr().ok()?)))
}

/// Joins the site named by `[fleet]`, if any.
async fn join_site(
    config: &Config,
    engine: &Arc<Engine>,
    api: Option<&(tokio::net::TcpListener, String)>,
) -> anyhow::Result<Option<crate::fleet::Member>> {
    let Some(f) = config.fleet.clone() else {
        return Ok(None);
    };
    let (url, dir) = (own_url(config, api), config.state.dir.clone());
    let local =
        api.and_then(|(l, key)| Some((format!("http://{}", l.local_addr().ok()?), key.clone())));
    Ok(Some(
        crate::fleet::join(f, engine, (url, local), dir).await?,
    ))
}

/// Starts the matcher stage with the compiled events. A text event's
/// baseline starts from what the stream showed before (frames kept from
/// earlier runs and from before the event existed).
fn spawn_matcher(
    events: Vec<Arc<CompiledEvent>>,
    embeddings: &Arc<Embeddings>,
    mut stage: MatchStage,
) -> anyhow::Result<JoinHandle<u64>> {
    let mut matcher = Matcher::new(events);
    if embeddings.enabled() {
        let kept = Arc::clone(embeddings);
        matcher = matcher.with_baselines(Box::new(move |stream, rule, s| {
            kept.baseline(stream.as_str(), rule, unix_ms(s.wall), s.stream_secs)
        }));
    }
    stage.matcher = matcher;
    std::thread::Builder::new()
        .name("matcher".into())
        .spawn(move || stage.run())
        .context("spawning the matcher stage")
}

impl Daemon {
    /// Waits for `shutdown` (or, with `stop_when_finished`, for every
    /// stream to finish).
    pub async fn wait(
        &mut self,
        shutdown: impl std::future::Future<Output = ()>,
        stop_when_finished: bool,
    ) {
        let total = self.engine.stream_stats().len();
        let finished = &mut self.finished;
        let wait_finished = async {
            let mut done = 0;
            while done < total {
                if finished.recv().await.is_none() {
                    break;
                }
                done += 1;
            }
            if !stop_when_finished || total == 0 {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            _ = shutdown => tracing::info!("shutting down"),
            _ = wait_finished => tracing::info!("every stream finished"),
        }
    }

    /// Stops every stage in order: the API, the sources (no new frames),
    /// the pool (queued frames finish), the matcher, scene and delivery
    /// stages (drained), then a bounded grace period for deliveries.
    pub async fn shutdown(self) -> anyhow::Result<Summary> {
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
        if let Some(f) = self.fleet {
            f.leave().await;
        }
        if let Some(t) = self.stats_task {
            t.abort();
        }
        if let Some((stop, task)) = self.api {
            let _ = stop.send(());
            if tokio::time::timeout(Duration::from_secs(2), task)
                .await
                .is_err()
            {
                tracing::warn!("API connections still open at shutdown; closing them");
            }
        }
        if let Some(t) = self.bridge {
            t.abort();
        }
        if let Some(t) = self.retention {
            t.abort();
        }
        if let Some(r) = &self.recorder {
            r.stop_all();
        }
        let mut summary = Summary::default();
        for s in self.engine.stop_all().await {
            summary.frames_in += s.frames.load(Ordering::Relaxed);
            summary.stream_restarts += s.restarts.load(Ordering::Relaxed);
        }
        // The engine holds the matcher's and the scene stage's control
        // senders: dropping it lets those stages end once the pool closes.
        drop(self.engine);
        self.pool.shutdown();
        let join = |name: &'static str, h: JoinHandle<u64>| async move {
            tokio::task::spawn_blocking(move || h.join())
                .await
                .map_err(|e| anyhow!("{name} join: {e}"))?
                .map_err(|_| anyhow!("the {name} thread panicked"))
        };
        summary.occurrences = join("matcher", self.matcher).await?;
        let queued = join("delivery", self.delivery).await?;
        summary.messages_queued = queued;
        let scenes = self.scenes;
        let _ = tokio::task::spawn_blocking(move || scenes.join()).await;
        let _ = self.records_task.await;
        if let Some(t) = self.embed_task {
            let _ = t.await;
        }
        settle_deliveries(&self.dispatcher, queued, &self.clocks).await;
        for (_, s) in &self.dispatcher.stats() {
            summary.delivered += s.delivered.load(Ordering::Relaxed);
            summary.delivery_failures += s.failed.load(Ordering::Relaxed);
            summary.delivery_retries += s.retries.load(Ordering::Relaxed);
        }
        if let Some(m) = self.mqtt {
            m.close(Duration::from_secs(2)).await;
        }
        fill_pool_figures(&mut summary, &self.pool_stats);
        Ok(summary)
    }
}

/// Gives deliveries in flight a bounded grace period (5 s).
async fn settle_deliveries(dispatcher: &Dispatcher, queued: u64, clocks: &Arc<dyn Clocks>) {
    let stats = dispatcher.stats();
    let deadline = clocks.now() + Duration::from_secs(5);
    loop {
        let done: u64 = stats
            .iter()
            .map(|(_, s)| s.delivered.load(Ordering::Relaxed) + s.failed.load(Ordering::Relaxed))
            .sum();
        if done >= queued || clocks.now() > deadline {
            break;
        }
        clocks.sleep(Duration::from_millis(50)).await;
    }
}
