//! Wiring: builds every stage from a validated [`Config`], runs them, and
//! shuts them down in order (sources, then the pool, then the matcher, then
//! a bounded grace period for deliveries in flight).
//!
//! Threads: one supervisor per stream (GStreamer), `workers` inference
//! threads, one matcher thread. Async (tokio) only for delivery.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use crossbeam_channel::{bounded, select};
use tokio::sync::mpsc;

use crate::alert::{mqtt::MqttSink, webhook::WebhookSink, Dispatcher, RetryPolicy, Sink};
use crate::config::Config;
use crate::matcher::{CompiledEvent, Matcher};
use crate::model::{self, Detector, Manifest, Resize};
use crate::pool::{Pool, PoolConfig, PoolStats, Scorer};
use crate::source::{self, Output, SourceEvent, StreamHandle};
use crate::types::{Scores, StreamId};

/// Optional observers, used by the demo, the benchmark and tests.
#[derive(Default)]
pub struct Hooks {
    /// Receives every scored frame (after matching).
    pub scored: Option<crossbeam_channel::Sender<Scores>>,
    /// Stop once every stream has finished (file sources) instead of waiting for shutdown.
    pub stop_when_finished: bool,
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
    pub stream_restarts: u64,
    pub mean_inference_ms: f64,
    pub mean_queue_ms: f64,
}

/// Loads the model manifest and compiles every event against it; reports
/// every refused prompt together.
pub fn compile(config: &Config) -> anyhow::Result<(Arc<Manifest>, Vec<Arc<CompiledEvent>>)> {
    let dir = model::resolve_model_dir(&config.model)?;
    let manifest = Arc::new(Manifest::load(&dir)?);
    let mut events = Vec::new();
    let mut refused = Vec::new();
    for e in &config.events {
        match CompiledEvent::compile(e, &manifest.labels_shared) {
            Ok(c) => events.push(Arc::new(c)),
            Err(m) => refused.push(m),
        }
    }
    if !refused.is_empty() {
        return Err(anyhow!("{}", refused.join("\n")));
    }
    Ok((manifest, events))
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
    let (manifest, events) = compile(&config)?;
    tracing::info!(
        model = %manifest.dir.display(), kind = ?manifest.kind, labels = ?manifest.labels,
        events = events.len(), streams = config.streams.len(), "model loaded"
    );

    // Pool: each worker loads its own session on its own thread.
    let (scores_tx, scores_rx) = bounded::<Scores>(256);
    let intra = config.runtime.intra_threads;
    let pool_manifest = Arc::clone(&manifest);
    let pool =
        Pool::start(
            &PoolConfig {
                workers: config.runtime.workers,
                capacity: config.runtime.queue_capacity,
                max_age: config.runtime.max_frame_age,
            },
            move |_| {
                Ok(Box::new(Detector::load(Arc::clone(&pool_manifest), intra)?) as Box<dyn Scorer>)
            },
            scores_tx,
        )
        .context("starting the inference pool")?;
    let pool_stats = pool.stats();

    // Delivery.
    let webhook = WebhookSink::new(config.webhook.timeout).context("building the HTTP client")?;
    let mqtt_sink: Option<Arc<MqttSink>> =
        config.mqtt.as_ref().map(|m| Arc::new(MqttSink::start(m)));
    let mqtt = mqtt_sink.clone().map(|m| m as Arc<dyn Sink>);
    let stream_urls: HashMap<StreamId, String> = config
        .streams
        .iter()
        .map(|s| (s.id.clone(), s.url.to_string()))
        .collect();
    let dispatcher = Dispatcher::start(
        config.alerts.clone(),
        stream_urls,
        Some(Arc::new(webhook)),
        mqtt,
        RetryPolicy {
            attempts: config.webhook.attempts,
            first_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            concurrency: config.webhook.concurrency,
        },
    );
    let target_stats = dispatcher.stats();

    // Matcher thread: scores and source events in, messages out.
    let (events_tx, events_rx) = bounded::<SourceEvent>(1024);
    let (finished_tx, mut finished_rx) = mpsc::unbounded_channel::<StreamId>();
    let scored_hook = hooks.scored.clone();
    let matcher_thread = std::thread::Builder::new()
        .name("matcher".into())
        .spawn(move || {
            match_loop(
                Matcher::new(events),
                &dispatcher,
                scores_rx,
                events_rx,
                &finished_tx,
                scored_hook,
            )
        })
        .context("spawning the matcher thread")?;

    // Sources.
    let out = Output {
        width: manifest.input.width,
        height: manifest.input.height,
        letterbox: manifest.input.resize == Resize::Letterbox,
    };
    let reporter: source::Reporter = Arc::new(move |e: SourceEvent| {
        let _ = events_tx.try_send(e);
    });
    let mut streams: Vec<StreamHandle> = Vec::new();
    for s in &config.streams {
        let h = source::spawn(s.clone(), out, pool.submitter(), Arc::clone(&reporter))
            .with_context(|| format!("starting stream {}", s.id))?;
        streams.push(h);
    }
    drop(reporter);
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    tracing::info!(streams = streams.len(), "sightline running");

    let stats_task = config.runtime.stats_interval.map(|every| {
        let sources: Vec<(StreamId, Arc<source::SourceStats>)> = streams
            .iter()
            .map(|h| (h.id.clone(), Arc::clone(&h.stats)))
            .collect();
        let (pool, targets) = (Arc::clone(&pool_stats), target_stats.clone());
        tokio::spawn(log_counters(every, sources, pool, targets))
    });

    // Wait.
    let total = streams.len();
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
    // Shutdown order: no new frames, finish queued frames, drain the matcher.
    let mut summary = Summary::default();
    for h in streams {
        summary.frames_in += h.stats.frames.load(Ordering::Relaxed);
        summary.stream_restarts += h.stats.restarts.load(Ordering::Relaxed);
        h.stop();
    }
    pool.shutdown();
    let (occurrences, queued) = tokio::task::spawn_blocking(move || matcher_thread.join())
        .await
        .map_err(|e| anyhow!("matcher join: {e}"))?
        .map_err(|_| anyhow!("the matcher thread panicked"))?;
    summary.occurrences = occurrences;
    summary.messages_queued = queued;

    // Give deliveries in flight a bounded grace period.
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
    }
    if let Some(m) = mqtt_sink {
        m.close(Duration::from_secs(2)).await;
    }
    fill_pool_figures(&mut summary, &pool_stats);
    Ok(summary)
}

/// Logs every counter once per period, so drops and failures show up in the
/// journal while the daemon runs, not only at exit.
async fn log_counters(
    every: Duration,
    sources: Vec<(StreamId, Arc<source::SourceStats>)>,
    pool: Arc<PoolStats>,
    targets: Vec<(String, Arc<crate::alert::TargetStats>)>,
) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let drops = pool.drops_by_stream();
        for (id, s) in &sources {
            tracing::info!(
                stream = %id,
                frames = s.frames.load(Ordering::Relaxed),
                restarts = s.restarts.load(Ordering::Relaxed),
                dropped = drops.get(id).copied().unwrap_or(0),
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
        for (name, t) in &targets {
            tracing::info!(
                target = %name,
                delivered = t.delivered.load(Ordering::Relaxed),
                failed = t.failed.load(Ordering::Relaxed),
                retries = t.retries.load(Ordering::Relaxed),
                overflow = t.overflow.load(Ordering::Relaxed),
                "delivery counters"
            );
        }
    }
}

/// The matcher thread: scores and source events in, alert messages out.
/// Returns (occurrence messages, deliveries queued) when the pool closes.
fn match_loop(
    mut matcher: Matcher,
    dispatcher: &Dispatcher,
    scores_rx: crossbeam_channel::Receiver<Scores>,
    mut events_rx: crossbeam_channel::Receiver<SourceEvent>,
    finished_tx: &mpsc::UnboundedSender<StreamId>,
    scored_hook: Option<crossbeam_channel::Sender<Scores>>,
) -> (u64, u64) {
    let (mut occurrences, mut queued) = (0u64, 0u64);
    let mut last_time: HashMap<StreamId, f64> = HashMap::new();
    loop {
        select! {
            recv(scores_rx) -> s => {
                let Ok(s) = s else { break };
                last_time.insert(s.stream_id.clone(), s.stream_secs);
                for occ in matcher.observe(&s) {
                    occurrences += 1;
                    tracing::info!(stream = %occ.stream_id, event = %occ.event_id, phase = ?occ.phase,
                        start = occ.start_time, end = occ.end_time, confidence = occ.confidence, "occurrence");
                    queued += dispatcher.dispatch(&occ) as u64;
                }
                if let Some(h) = &scored_hook {
                    let _ = h.try_send(s);
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
                        let _ = finished_tx.send(stream.clone());
                        stream.clone()
                    }
                    SourceEvent::Up(_) => continue,
                };
                // A stream that went away cannot show the end of what it saw.
                let t = last_time.get(&stream).copied().unwrap_or(0.0);
                for occ in matcher.close_stream(&stream, t, std::time::SystemTime::now()) {
                    occurrences += 1;
                    queued += dispatcher.dispatch(&occ) as u64;
                }
            }
        }
    }
    (occurrences, queued)
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
