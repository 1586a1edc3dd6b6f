//! Alerts: which alerts an occurrence concerns, the payload each gets, and
//! delivery to their targets.
//!
//! Each target (one webhook URL, or the MQTT connection) has its own task and
//! bounded queue, so a receiver that is down or slow delays only itself. A
//! [`Sink`] is the one small trait every transport implements: deliver one
//! message, say whether it was accepted. Retry with backoff lives here, once,
//! for all sinks. Webhook and MQTT messages go through the durable
//! [`outbox`]: committed to SQLite before the first attempt, removed on the
//! receiver's 2xx or the broker's PUBACK, so they survive a crash. WebSocket
//! clients get the same body at most once through the [`ws::Hub`].
//!
//! The set of alerts can be replaced at any time ([`Dispatcher::set_alerts`]);
//! a webhook URL gets its task the first time an alert names it.

pub mod guard;
pub mod handoff;
pub mod mqtt;
pub mod outbox;
pub mod payload;
pub mod sign;
pub mod stage;
pub mod webhook;
pub mod ws;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::domain::AlertSpec;
use crate::domain::StreamId;
use crate::matcher::Occurrence;
pub use payload::Payload;

/// One message for one target.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// `alert:occurrence:phase`: the same on every attempt and every target
    /// (the webhook's idempotency key).
    pub message_id: Arc<str>,
    pub alert_id: Arc<str>,
    /// Serialised body, identical for every target.
    pub body: Arc<[u8]>,
    /// MQTT topic (ignored by webhooks).
    pub topic: String,
    /// Webhook signing secrets of the alert (ignored by MQTT).
    pub secrets: Arc<[sign::Secret]>,
    /// When the frame behind it arrived, for latency (unknown for
    /// messages resumed from the outbox after a restart).
    pub frame_arrived: Option<Instant>,
}

impl Delivery {
    /// The outbox row of this message for `target`.
    fn row<'a>(&'a self, target: &'a str) -> outbox::NewMessage<'a> {
        outbox::NewMessage {
            target,
            message_id: &self.message_id,
            alert_id: &self.alert_id,
            topic: &self.topic,
            body: &self.body,
            secrets: &self.secrets,
        }
    }
}

/// The message id of a payload: `alert:occurrence:phase`.
pub fn message_id(p: &Payload) -> String {
    format!("{}:{}:{}", p.alert_id, p.occurrence_id, p.phase.as_str())
}

/// Why a delivery attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Worth trying again later (timeouts, 3xx, 5xx, connection refused);
    /// `after` is the receiver's `Retry-After`, if it gave one.
    #[error("{message}")]
    Retry {
        message: String,
        after: Option<Duration>,
    },
    /// This message will never be accepted (4xx other than 408, 410, 429).
    #[error("{0}")]
    Permanent(String),
    /// The receiver says the endpoint is gone for good (410): stop sending to it.
    #[error("{0}")]
    Gone(String),
}

impl SinkError {
    /// A retryable failure without a `Retry-After`.
    pub fn retry(message: impl Into<String>) -> SinkError {
        SinkError::Retry {
            message: message.into(),
            after: None,
        }
    }
}

/// A future returned by [`Sink::deliver`].
pub type DeliverFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + 'a>>;

/// A delivery transport.
pub trait Sink: Send + Sync + 'static {
    /// A short name for logs, such as `webhook http://host/path`.
    fn name(&self) -> String;
    /// Delivers one message; Ok means the receiver accepted it.
    fn deliver<'a>(&'a self, d: &'a Delivery) -> DeliverFuture<'a>;
}

/// Delivery counters for one target.
#[derive(Debug, Default)]
pub struct TargetStats {
    /// Attempts started (each delivery try, first or retry).
    pub attempts: AtomicU64,
    /// Wall time (Unix ms) at which the target's worker last read its due rows.
    pub last_poll_ms: std::sync::atomic::AtomicI64,
    /// Messages that left the outbox accepted: by their receiver, or (in a
    /// site) by the site's alert stream, which `handed` counts apart.
    pub delivered: AtomicU64,
    /// Messages handed to the site's alert stream (`[fleet]`).
    pub handed: AtomicU64,
    /// Messages this box delivered for the site (taken from its stream).
    pub site_delivered: AtomicU64,
    pub failed: AtomicU64,
    pub retries: AtomicU64,
    /// Why the target was disabled (a 410 from the receiver), if it was.
    pub disabled: std::sync::Mutex<Option<String>>,
    /// How long each delivery attempt took, whatever its outcome.
    pub attempt_times: crate::metrics::Histogram,
}

impl TargetStats {
    fn disabled_reason(&self) -> Option<String> {
        self.disabled.lock().ok().and_then(|d| d.clone())
    }
}

/// One target's outbox worker (a webhook URL, or the MQTT broker).
struct Worker {
    wake: Arc<tokio::sync::Notify>,
    stats: Arc<TargetStats>,
    name: String,
}

/// The outbox target name of the MQTT broker (webhooks use their URL).
pub const MQTT_TARGET: &str = "mqtt";

/// Where messages are kept and how they are retried.
pub struct OutboxSettings {
    pub store: Arc<dyn crate::store::Outbox>,
    /// Waits before each webhook attempt.
    pub schedule: Arc<[Duration]>,
    /// Waits before each MQTT attempt (a broker outage is usually short).
    pub mqtt_schedule: Arc<[Duration]>,
    /// Requests in flight per webhook URL.
    pub concurrency: usize,
    pub clock: Arc<dyn crate::clock::Clocks>,
    /// How often a worker looks for due rows without being woken.
    pub poll: Duration,
    /// Dead letters kept; older ones are deleted (`[state] max_dead_letters`).
    pub max_dead: usize,
}

/// Routes occurrences to alert targets.
pub struct Dispatcher {
    alerts: RwLock<Arc<Vec<AlertSpec>>>,
    stream_urls: RwLock<HashMap<StreamId, String>>,
    webhook: Option<Arc<webhook::WebhookSink>>,
    webhooks: Mutex<HashMap<String, Worker>>,
    mqtt: Option<Worker>,
    /// The broker itself, for messages delivered on the site's behalf.
    mqtt_sink: Option<Arc<dyn Sink>>,
    hub: Option<Arc<ws::Hub>>,
    outbox: OutboxSettings,
    rt: tokio::runtime::Handle,
    /// Messages accepted while the outbox could not take them (a full
    /// disk), oldest first, bounded by [`SPILL_MAX`]; committed when it can.
    spill: Mutex<std::collections::VecDeque<(String, Delivery)>>,
    spill_stats: SpillStats,
    /// Outbox transactions (the fsync included).
    commit_times: crate::metrics::Histogram,
    /// The site's alert stream, once this box has joined one.
    site: handoff::Slot,
}

/// Most messages held in memory while the outbox cannot commit.
pub const SPILL_MAX: usize = 10_000;

/// What the spill has seen.
#[derive(Debug, Default)]
pub struct SpillStats {
    pub spilled: std::sync::atomic::AtomicU64,
    pub committed_later: std::sync::atomic::AtomicU64,
    /// Messages dropped because the spill was full, per target.
    pub dropped: Mutex<HashMap<String, u64>>,
}

impl Dispatcher {
    /// Starts the MQTT worker, and a webhook worker for every URL with
    /// messages left in the outbox (resuming after a restart); other webhook
    /// workers start as alerts name their URLs. Must be called inside a
    /// tokio runtime.
    pub fn start(
        webhook: Option<Arc<webhook::WebhookSink>>,
        mqtt: Option<Arc<dyn Sink>>,
        hub: Option<Arc<ws::Hub>>,
        outbox: OutboxSettings,
    ) -> Dispatcher {
        let rt = tokio::runtime::Handle::current();
        let site = handoff::Slot::default();
        let mqtt_sink = mqtt.clone();
        let mqtt = mqtt.map(|sink| {
            // PUBACKs are cheap to wait for: many in flight.
            let o = (&outbox, &site);
            spawn(&rt, o, MQTT_TARGET, &outbox.mqtt_schedule, 64, sink)
        });
        let d = Dispatcher {
            alerts: RwLock::new(Arc::new(Vec::new())),
            stream_urls: RwLock::new(HashMap::new()),
            webhook,
            webhooks: Mutex::new(HashMap::new()),
            mqtt,
            mqtt_sink,
            hub,
            outbox,
            rt,
            spill: Mutex::default(),
            spill_stats: SpillStats::default(),
            commit_times: crate::metrics::Histogram::default(),
            site,
        };
        match d.outbox.store.targets() {
            Ok(targets) => d.ensure_webhooks(targets.iter().filter(|t| *t != MQTT_TARGET)),
            Err(e) => tracing::error!(error = %format!("{e:#}"), "cannot read the outbox"),
        }
        d
    }

    fn ensure_webhooks<'a>(&self, urls: impl Iterator<Item = &'a String>) {
        let (Some(wh), Ok(mut workers)) = (&self.webhook, self.webhooks.lock()) else {
            return;
        };
        for url in urls {
            if !workers.contains_key(url) {
                let sink: Arc<dyn Sink> = Arc::new(wh.for_url(url));
                let (o, site) = (&self.outbox, &self.site);
                let w = spawn(&self.rt, (o, site), url, &o.schedule, o.concurrency, sink);
                workers.insert(url.clone(), w);
            }
        }
    }

    /// Wakes a target's worker (a dead letter was put back in line), and
    /// enables it again if the store no longer records it as gone.
    pub fn wake(&self, target: &str) {
        if target == MQTT_TARGET {
            if let Some(w) = &self.mqtt {
                w.wake.notify_one();
            }
            return;
        }
        self.ensure_webhooks(std::iter::once(&target.to_string()));
        if let Some(w) = self
            .webhooks
            .lock()
            .ok()
            .as_ref()
            .and_then(|w| w.get(target))
        {
            if let (Ok(None), Ok(mut d)) = (
                self.outbox.store.gone_reason(target),
                w.stats.disabled.lock(),
            ) {
                if d.take().is_some() {
                    tracing::info!(target = %w.name, "target enabled again by a redelivery");
                }
            }
            w.wake.notify_one();
        }
    }

    /// The clock the outbox uses.
    pub fn now_ms(&self) -> i64 {
        self.outbox.clock.wall_ms()
    }

    /// Replaces the alerts in force (only enabled, running ones should be
    /// passed) and the stream URLs their payloads carry.
    pub fn set_alerts(&self, alerts: Vec<AlertSpec>, stream_urls: HashMap<StreamId, String>) {
        self.ensure_webhooks(alerts.iter().filter_map(|a| a.callback_url.as_ref()));
        if let Ok(mut a) = self.alerts.write() {
            *a = Arc::new(alerts);
        }
        if let Ok(mut u) = self.stream_urls.write() {
            *u = stream_urls;
        }
    }

    /// Builds the messages of one occurrence and commits them to the outbox
    /// (one transaction) before returning how many; WebSocket copies are
    /// extra and not counted.
    pub fn dispatch(&self, occ: &Occurrence) -> usize {
        self.dispatch_with(occ, occ.phase.into(), &payload::Links::default())
    }

    /// Like [`Dispatcher::dispatch`], as message `phase` with `links` to
    /// the occurrence's evidence.
    pub fn dispatch_with(
        &self,
        occ: &Occurrence,
        phase: payload::MessagePhase,
        links: &payload::Links,
    ) -> usize {
        let mut durable: Vec<(String, Delivery)> = Vec::new();
        let alerts = self
            .alerts
            .read()
            .map(|a| Arc::clone(&a))
            .unwrap_or_default();
        for a in alerts.iter() {
            if !a.enabled || a.event != occ.event_id {
                continue;
            }
            if !a.streams.is_empty() && !a.streams.contains(&occ.stream_id) {
                continue;
            }
            if phase != payload::MessagePhase::Start && !a.send_end {
                continue;
            }
            self.messages(a, occ, (phase, links), &mut durable);
        }
        self.commit(&durable)
    }

    /// Sends `occ` through one alert only, whatever its state (the API's
    /// test alert). Returns the messages committed.
    pub fn dispatch_to(&self, a: &AlertSpec, occ: &Occurrence) -> usize {
        let mut durable = Vec::new();
        let start = (payload::MessagePhase::Start, &payload::Links::default());
        self.messages(a, occ, start, &mut durable);
        self.commit(&durable)
    }

    /// Publishes the WebSocket copy of one alert's message and collects its
    /// webhook and MQTT messages into `durable` as (target, message).
    fn messages(
        &self,
        a: &AlertSpec,
        occ: &Occurrence,
        (phase, links): (payload::MessagePhase, &payload::Links),
        durable: &mut Vec<(String, Delivery)>,
    ) {
        let url = self
            .stream_urls
            .read()
            .ok()
            .and_then(|u| u.get(&occ.stream_id).cloned())
            .unwrap_or_default();
        let payload = Arc::new(payload::build(&a.id, occ, phase, &url, links));
        let body: Arc<[u8]> = match serde_json::to_vec(&*payload) {
            Ok(b) => b.into(),
            Err(e) => {
                tracing::error!(alert = %a.id, error = %e, "cannot serialise alert payload");
                return;
            }
        };
        let secrets: Arc<[sign::Secret]> = a.webhook_secrets.clone().into();
        let (id, alert_id): (Arc<str>, Arc<str>) =
            (message_id(&payload).into(), a.id.as_str().into());
        let mk = |topic: String| Delivery {
            message_id: Arc::clone(&id),
            alert_id: Arc::clone(&alert_id),
            body: Arc::clone(&body),
            topic,
            secrets: Arc::clone(&secrets),
            frame_arrived: Some(occ.frame_arrived),
        };
        if let Some(url) = &a.callback_url {
            durable.push((url.clone(), mk(String::new())));
        }
        if let Some(hub) = &self.hub {
            if let Some(conn) = &a.ws_connection {
                hub.publish(conn, "alert", &*payload);
            }
            hub.publish_console("alert", &*payload);
        }
        if let (Some(tpl), Some(_)) = (&a.mqtt_topic, &self.mqtt) {
            let topic = payload::topic(tpl, &occ.stream_id, &occ.label);
            durable.push((MQTT_TARGET.to_string(), mk(topic)));
        }
    }

    /// Runs `f` on the worker of `target`, if there is one.
    fn with_worker<T>(&self, target: &str, f: impl FnOnce(&Worker) -> T) -> Option<T> {
        if target == MQTT_TARGET {
            return self.mqtt.as_ref().map(f);
        }
        self.webhooks.lock().ok()?.get(target).map(f)
    }

    /// Commits messages to the outbox in one transaction and wakes their
    /// workers. Messages to a webhook disabled by a 410 are not kept.
    fn commit(&self, msgs: &[(String, Delivery)]) -> usize {
        let live: Vec<&(String, Delivery)> = msgs
            .iter()
            .filter(|(target, d)| {
                match self.with_worker(target, |w| w.stats.disabled_reason()).flatten() {
                    Some(reason) => {
                        tracing::warn!(target = %target, message = %d.message_id, %reason, "target disabled; message not sent");
                        false
                    }
                    None => true,
                }
            })
            .collect();
        let rows: Vec<outbox::NewMessage> = live.iter().map(|(t, d)| d.row(t)).collect();
        if rows.is_empty() {
            return 0;
        }
        // Older spilled messages go first, so order holds.
        if self.spilled() > 0 {
            self.flush_spill();
            if self.spilled() > 0 {
                self.spill_push(live.into_iter().cloned().collect());
                return rows.len();
            }
        }
        let started = Instant::now();
        let added = self.outbox.store.add(&rows, self.outbox.clock.wall_ms());
        self.commit_times.observe(started.elapsed());
        if let Err(e) = added {
            tracing::error!(error = %format!("{e:#}"), messages = rows.len(),
                "cannot commit alerts to the outbox (disk full?); holding them in memory until it can");
            self.spill_push(live.into_iter().cloned().collect());
            return rows.len();
        }
        for (target, _) in &live {
            self.with_worker(target, |w| w.wake.notify_one());
        }
        rows.len()
    }

    /// Outbox rows per target: (target, live, dead letters).
    pub fn outbox_depth(&self) -> anyhow::Result<Vec<(String, u64, u64)>> {
        self.outbox.store.depth()
    }

    /// How long outbox commits took.
    pub fn commit_times(&self) -> &crate::metrics::Histogram {
        &self.commit_times
    }

    /// Messages held in memory, waiting for the outbox.
    pub fn spilled(&self) -> usize {
        self.spill.lock().map_or(0, |s| s.len())
    }

    /// What the spill has seen.
    pub fn spill_stats(&self) -> &SpillStats {
        &self.spill_stats
    }

    /// Holds messages the outbox could not take; past [`SPILL_MAX`] the
    /// oldest go, counted per target.
    fn spill_push(&self, msgs: Vec<(String, Delivery)>) {
        use std::sync::atomic::Ordering;
        let Ok(mut spill) = self.spill.lock() else {
            return;
        };
        self.spill_stats
            .spilled
            .fetch_add(msgs.len() as u64, Ordering::Relaxed);
        spill.extend(msgs);
        while spill.len() > SPILL_MAX {
            if let Some((target, d)) = spill.pop_front() {
                tracing::error!(target = %target, message = %d.message_id,
                    "the in-memory spill is full: the oldest held message is dropped");
                if let Ok(mut dropped) = self.spill_stats.dropped.lock() {
                    *dropped.entry(target).or_default() += 1;
                }
            }
        }
    }

    /// Commits what the spill holds, oldest first, in one transaction;
    /// returns how many went. After a success the WAL is truncated, so the
    /// space a full disk needs back is given back.
    pub fn flush_spill(&self) -> usize {
        use std::sync::atomic::Ordering;
        let Ok(mut spill) = self.spill.lock() else {
            return 0;
        };
        if spill.is_empty() {
            return 0;
        }
        let rows: Vec<outbox::NewMessage> = spill.iter().map(|(t, d)| d.row(t)).collect();
        if self
            .outbox
            .store
            .add(&rows, self.outbox.clock.wall_ms())
            .is_err()
        {
            // Still full: truncating the WAL may be what frees the space.
            let _ = self.outbox.store.checkpoint(true);
            return 0;
        }
        let n = rows.len();
        let targets: Vec<String> = spill.drain(..).map(|(t, _)| t).collect();
        drop(spill);
        self.spill_stats
            .committed_later
            .fetch_add(n as u64, Ordering::Relaxed);
        tracing::info!(messages = n, "held messages committed to the outbox");
        let _ = self.outbox.store.checkpoint(true);
        for t in targets {
            self.with_worker(&t, |w| w.wake.notify_one());
        }
        n
    }

    /// Counters per target name.
    pub fn stats(&self) -> Vec<(String, Arc<TargetStats>)> {
        let webhooks = self.webhooks.lock();
        let mut out: Vec<_> = webhooks
            .iter()
            .flat_map(|w| w.values())
            .chain(self.mqtt.iter())
            .map(|t| (t.name.clone(), Arc::clone(&t.stats)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

fn spawn(
    rt: &tokio::runtime::Handle,
    (o, site): (&OutboxSettings, &handoff::Slot),
    target: &str,
    schedule: &Arc<[Duration]>,
    concurrency: usize,
    sink: Arc<dyn Sink>,
) -> Worker {
    let stats = Arc::new(TargetStats::default());
    let name = sink.name();
    match o.store.gone_reason(target) {
        Ok(Some(reason)) => {
            tracing::warn!(target = %name, %reason,
                "target stays disabled (its receiver answered 410); redeliver one of its dead letters to enable it");
            if let Ok(mut d) = stats.disabled.lock() {
                *d = Some(reason);
            }
        }
        Ok(None) => {}
        Err(e) => {
            tracing::error!(target = %name, error = %format!("{e:#}"), "cannot read whether the target is disabled")
        }
    }
    let wake = outbox::spawn_worker(
        rt,
        outbox::WorkerConfig {
            target: target.to_string(),
            schedule: Arc::clone(schedule),
            concurrency,
            clock: Arc::clone(&o.clock),
            poll: o.poll,
            max_dead: o.max_dead,
            site: Arc::clone(site),
        },
        sink,
        Arc::clone(&o.store),
        Arc::clone(&stats),
    );
    Worker { wake, stats, name }
}

#[cfg(test)]
mod tests {
    //! Routing only: which alerts an occurrence reaches. The sink here records
    //! in memory; real webhook and MQTT delivery are covered by the
    //! integration tests against a real receiver and a real broker.
    use std::sync::Mutex;
    use std::time::SystemTime;

    use super::*;
    use crate::domain::{AlertId, EventId};
    use crate::matcher::Phase;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<(String, String)>>);

    impl Sink for Recorder {
        fn name(&self) -> String {
            "recorder".into()
        }
        fn deliver<'a>(&'a self, d: &'a Delivery) -> DeliverFuture<'a> {
            Box::pin(async move {
                if let Ok(mut v) = self.0.lock() {
                    v.push((d.alert_id.to_string(), d.topic.clone()));
                }
                Ok(())
            })
        }
    }

    fn alert(id: &str, streams: &[&str], enabled: bool, send_end: bool) -> AlertSpec {
        AlertSpec {
            id: AlertId::new(id),
            event: EventId::new("e"),
            streams: streams.iter().map(StreamId::new).collect(),
            callback_url: None,
            webhook_secrets: Vec::new(),
            mqtt_topic: Some("t/{stream}/{label}".into()),
            ws_connection: None,
            index: None,
            send_end,
            enabled,
        }
    }

    fn occ(stream: &str, phase: Phase) -> Occurrence {
        Occurrence {
            occurrence_id: "o".into(),
            phase,
            event_id: EventId::new("e"),
            label: "lbl".into(),
            model: "person".into(),
            stream_id: StreamId::new(stream),
            start_time: 1.0,
            end_time: 2.0,
            confidence: 0.9,
            count: 1,
            explanation: "x".into(),
            frame_wall: SystemTime::now(),
            frame_arrived: Instant::now(),
            frame_time: 0.0,
            picture: None,
            boxes: Vec::new(),
            objects: Vec::new(),
            track_id: None,
            crossing: None,
            timing: Default::default(),
        }
    }

    #[tokio::test]
    async fn occurrences_reach_only_matching_enabled_alerts() {
        let rec = Arc::new(Recorder::default());
        let alerts = vec![
            alert("only-s1", &["s1"], true, true),
            alert("all", &[], true, false),
            alert("off", &[], false, true),
        ];
        let d = Dispatcher::start(
            None,
            Some(rec.clone() as Arc<dyn Sink>),
            None,
            OutboxSettings {
                store: Arc::new(crate::store::Store::open(None).expect("in-memory store")),
                schedule: outbox::DEFAULT_SCHEDULE.into(),
                mqtt_schedule: outbox::DEFAULT_SCHEDULE.into(),
                concurrency: 1,
                clock: crate::clock::real(),
                poll: Duration::from_millis(100),
                max_dead: 10_000,
            },
        );
        d.set_alerts(alerts, HashMap::new());
        assert_eq!(d.dispatch(&occ("s1", Phase::Start)), 2, "only-s1 and all");
        assert_eq!(d.dispatch(&occ("s2", Phase::Start)), 1, "all");
        assert_eq!(
            d.dispatch(&occ("s1", Phase::End)),
            1,
            "only-s1 sends ends; all does not"
        );
        for _ in 0..100 {
            if rec.0.lock().map(|v| v.len()).unwrap_or(0) == 4 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut got = rec.0.lock().map(|v| v.clone()).unwrap_or_default();
        got.sort();
        assert_eq!(
            got,
            vec![
                ("all".into(), "t/s1/lbl".into()),
                ("all".into(), "t/s2/lbl".into()),
                ("only-s1".into(), "t/s1/lbl".into()),
                ("only-s1".into(), "t/s1/lbl".into()),
            ]
        );
    }
}
