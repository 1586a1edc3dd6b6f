//! Alerts: which alerts an occurrence concerns, the payload each gets, and
//! delivery to their targets.
//!
//! Each target (one webhook URL, or the MQTT connection) has its own task and
//! bounded queue, so a receiver that is down or slow delays only itself. A
//! [`Sink`] is the one small trait every transport implements: deliver one
//! message, say whether it was accepted. Retry with backoff lives here, once,
//! for all sinks. Webhook messages go through the durable [`outbox`]: they
//! are committed to SQLite before the first attempt and survive a crash.
//! MQTT messages are still queued in memory (and count as delivered once
//! rumqttc queued them; PUBACK matching is not done yet). WebSocket clients
//! get the same body at most once through the [`ws::Hub`].
//!
//! The set of alerts can be replaced at any time ([`Dispatcher::set_alerts`]);
//! a webhook URL gets its task the first time an alert names it.

pub mod guard;
pub mod mqtt;
pub mod outbox;
pub mod payload;
pub mod sign;
pub mod webhook;
pub mod ws;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::config::AlertConfig;
use crate::matcher::{Occurrence, Phase};
use crate::types::{AlertId, StreamId};
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

/// The message id of a payload: `alert:occurrence:phase`.
pub fn message_id(p: &Payload) -> String {
    let phase = match p.phase {
        Phase::Start => "start",
        Phase::End => "end",
    };
    format!("{}:{}:{}", p.alert_id, p.occurrence_id, phase)
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
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
    pub retries: AtomicU64,
    pub overflow: AtomicU64,
    /// Why the target was disabled (a 410 from the receiver), if it was.
    pub disabled: std::sync::Mutex<Option<String>>,
}

impl TargetStats {
    fn disabled_reason(&self) -> Option<String> {
        self.disabled.lock().ok().and_then(|d| d.clone())
    }
}

/// Retry policy for a target.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    pub concurrency: usize,
}

struct Target {
    tx: mpsc::Sender<Delivery>,
    stats: Arc<TargetStats>,
    name: String,
}

/// A webhook URL's outbox worker.
struct WebhookTarget {
    wake: Arc<tokio::sync::Notify>,
    stats: Arc<TargetStats>,
    name: String,
}

/// Where webhook messages are kept and how they are retried.
pub struct OutboxSettings {
    pub store: Arc<crate::store::Store>,
    pub schedule: Arc<[Duration]>,
    pub clock: Arc<dyn outbox::Clock>,
    /// How often a worker looks for due rows without being woken.
    pub poll: Duration,
}

/// Capacity of each target's queue.
const TARGET_QUEUE: usize = 4096;
/// Longest wait a `Retry-After` can impose on one in-memory retry.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// Routes occurrences to alert targets.
pub struct Dispatcher {
    alerts: RwLock<Arc<Vec<AlertConfig>>>,
    stream_urls: RwLock<HashMap<StreamId, String>>,
    webhook: Option<Arc<webhook::WebhookSink>>,
    webhooks: Mutex<HashMap<String, WebhookTarget>>,
    mqtt: Option<Target>,
    hub: Option<Arc<ws::Hub>>,
    policy: RetryPolicy,
    outbox: OutboxSettings,
    rt: tokio::runtime::Handle,
}

impl Dispatcher {
    /// Starts the MQTT delivery task, and a webhook worker for every URL
    /// with messages left in the outbox (resuming after a restart); other
    /// webhook workers start as alerts name their URLs. Must be called
    /// inside a tokio runtime.
    pub fn start(
        webhook: Option<Arc<webhook::WebhookSink>>,
        mqtt: Option<Arc<dyn Sink>>,
        hub: Option<Arc<ws::Hub>>,
        policy: RetryPolicy,
        outbox: OutboxSettings,
    ) -> Dispatcher {
        let rt = tokio::runtime::Handle::current();
        let mqtt = mqtt.map(|s| spawn_target(&rt, s, policy));
        let d = Dispatcher {
            alerts: RwLock::new(Arc::new(Vec::new())),
            stream_urls: RwLock::new(HashMap::new()),
            webhook,
            webhooks: Mutex::new(HashMap::new()),
            mqtt,
            hub,
            policy,
            outbox,
            rt,
        };
        match d.outbox.store.outbox_targets() {
            Ok(urls) => d.ensure_webhooks(urls.iter()),
            Err(e) => tracing::error!(error = %format!("{e:#}"), "cannot read the outbox"),
        }
        d
    }

    fn ensure_webhooks<'a>(&self, urls: impl Iterator<Item = &'a String>) {
        let (Some(wh), Ok(mut targets)) = (&self.webhook, self.webhooks.lock()) else {
            return;
        };
        for url in urls {
            if targets.contains_key(url) {
                continue;
            }
            let sink: Arc<dyn Sink> = Arc::new(wh.for_url(url));
            let stats = Arc::new(TargetStats::default());
            let name = sink.name();
            let wake = outbox::spawn_worker(
                &self.rt,
                outbox::WorkerConfig {
                    target: url.clone(),
                    schedule: Arc::clone(&self.outbox.schedule),
                    concurrency: self.policy.concurrency,
                    clock: Arc::clone(&self.outbox.clock),
                    poll: self.outbox.poll,
                },
                sink,
                Arc::clone(&self.outbox.store),
                Arc::clone(&stats),
            );
            targets.insert(url.clone(), WebhookTarget { wake, stats, name });
        }
    }

    /// Wakes a webhook worker (a dead letter was put back in line).
    pub fn wake(&self, url: &str) {
        self.ensure_webhooks(std::iter::once(&url.to_string()));
        if let Some(t) = self.webhooks.lock().ok().as_ref().and_then(|w| w.get(url)) {
            t.wake.notify_one();
        }
    }

    /// The clock the outbox uses.
    pub fn now_ms(&self) -> i64 {
        self.outbox.clock.now_ms()
    }

    /// Replaces the alerts in force (only enabled, running ones should be
    /// passed) and the stream URLs their payloads carry.
    pub fn set_alerts(&self, alerts: Vec<AlertConfig>, stream_urls: HashMap<StreamId, String>) {
        self.ensure_webhooks(alerts.iter().filter_map(|a| a.callback_url.as_ref()));
        if let Ok(mut a) = self.alerts.write() {
            *a = Arc::new(alerts);
        }
        if let Ok(mut u) = self.stream_urls.write() {
            *u = stream_urls;
        }
    }

    /// Builds and queues the messages of one occurrence; returns how many
    /// went to webhook and MQTT targets. Webhook messages are committed to
    /// the outbox before this returns. WebSocket copies are extra.
    pub fn dispatch(&self, occ: &Occurrence) -> usize {
        let mut n = 0;
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
            if occ.phase == Phase::End && !a.send_end {
                continue;
            }
            n += self.messages(a, occ, &mut durable);
        }
        n + self.commit_webhooks(&durable)
    }

    /// Sends `occ` through one alert only, whatever its state (the API's
    /// test alert). Returns the messages queued.
    pub fn dispatch_to(&self, a: &AlertConfig, occ: &Occurrence) -> usize {
        let mut durable = Vec::new();
        let n = self.messages(a, occ, &mut durable);
        n + self.commit_webhooks(&durable)
    }

    /// Queues the MQTT and WebSocket messages of one alert and collects its
    /// webhook message into `durable`; returns the MQTT messages queued.
    fn messages(
        &self,
        a: &AlertConfig,
        occ: &Occurrence,
        durable: &mut Vec<(String, Delivery)>,
    ) -> usize {
        let mut n = 0;
        let url = self
            .stream_urls
            .read()
            .ok()
            .and_then(|u| u.get(&occ.stream_id).cloned())
            .unwrap_or_default();
        let payload = Arc::new(payload::build(&a.id, occ, &url));
        let body: Arc<[u8]> = match serde_json::to_vec(&*payload) {
            Ok(b) => b.into(),
            Err(e) => {
                tracing::error!(alert = %a.id, error = %e, "cannot serialise alert payload");
                return 0;
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
        if let (Some(conn), Some(hub)) = (&a.ws_connection, &self.hub) {
            hub.publish(conn, "alert", &*payload);
        }
        if let (Some(tpl), Some(t)) = (&a.mqtt_topic, &self.mqtt) {
            n += enqueue(
                t,
                mk(payload::topic(tpl, &occ.stream_id, &occ.label)),
                &a.id,
            );
        }
        n
    }

    /// Commits webhook messages to the outbox in one transaction and wakes
    /// their workers. Messages to a target disabled by a 410 are not kept.
    fn commit_webhooks(&self, msgs: &[(String, Delivery)]) -> usize {
        let targets = self.webhooks.lock();
        let live: Vec<&(String, Delivery)> = msgs
            .iter()
            .filter(|(url, d)| {
                let t = targets.as_ref().ok().and_then(|t| t.get(url));
                match t.and_then(|t| t.stats.disabled_reason()) {
                    Some(reason) => {
                        tracing::warn!(target = %url, message = %d.message_id, %reason, "target disabled; message not sent");
                        false
                    }
                    None => true,
                }
            })
            .collect();
        let rows: Vec<outbox::NewMessage> = live
            .iter()
            .map(|(url, d)| outbox::NewMessage {
                target: url,
                message_id: &d.message_id,
                alert_id: &d.alert_id,
                body: &d.body,
                secrets: &d.secrets,
            })
            .collect();
        if rows.is_empty() {
            return 0;
        }
        if let Err(e) = self
            .outbox
            .store
            .outbox_add(&rows, self.outbox.clock.now_ms())
        {
            // Nothing else can hold it: say so loudly.
            tracing::error!(error = %format!("{e:#}"), messages = rows.len(), "cannot commit alerts to the outbox; they are lost");
            return 0;
        }
        if let Ok(t) = &targets {
            for (url, _) in &live {
                if let Some(t) = t.get(url) {
                    t.wake.notify_one();
                }
            }
        }
        rows.len()
    }

    /// Counters per target name.
    pub fn stats(&self) -> Vec<(String, Arc<TargetStats>)> {
        let webhooks = self.webhooks.lock();
        let mut out: Vec<_> = webhooks
            .iter()
            .flat_map(|w| w.values())
            .map(|t| (t.name.clone(), Arc::clone(&t.stats)))
            .chain(
                self.mqtt
                    .iter()
                    .map(|t| (t.name.clone(), Arc::clone(&t.stats))),
            )
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

fn enqueue(t: &Target, d: Delivery, alert: &AlertId) -> usize {
    if let Some(reason) = t.stats.disabled_reason() {
        t.stats.failed.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(target = %t.name, %alert, %reason, "target disabled; message not sent");
        return 0;
    }
    match t.tx.try_send(d) {
        Ok(()) => 1,
        Err(e) => {
            t.stats.overflow.fetch_add(1, Ordering::Relaxed);
            tracing::error!(target = %t.name, %alert, error = %e, "delivery queue full or closed; message dropped");
            0
        }
    }
}

fn spawn_target(rt: &tokio::runtime::Handle, sink: Arc<dyn Sink>, policy: RetryPolicy) -> Target {
    let (tx, mut rx) = mpsc::channel::<Delivery>(TARGET_QUEUE);
    let stats = Arc::new(TargetStats::default());
    let name = sink.name();
    let slots = Arc::new(tokio::sync::Semaphore::new(policy.concurrency.max(1)));
    let task_stats = Arc::clone(&stats);
    rt.spawn(async move {
        while let Some(d) = rx.recv().await {
            let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
                break;
            };
            let sink = Arc::clone(&sink);
            let stats = Arc::clone(&task_stats);
            tokio::spawn(async move {
                deliver_with_retry(&*sink, &d, policy, &stats).await;
                drop(permit);
            });
        }
    });
    Target { tx, stats, name }
}

async fn deliver_with_retry(
    sink: &dyn Sink,
    d: &Delivery,
    policy: RetryPolicy,
    stats: &TargetStats,
) {
    let mut backoff = policy.first_backoff;
    for attempt in 1..=policy.attempts.max(1) {
        match sink.deliver(d).await {
            Ok(()) => {
                stats.delivered.fetch_add(1, Ordering::Relaxed);
                let latency = d.frame_arrived.map(|t| t.elapsed().as_millis() as u64);
                tracing::info!(
                    target = %sink.name(), message = %d.message_id, latency_ms = ?latency, "alert delivered"
                );
                return;
            }
            Err(SinkError::Permanent(m)) => {
                tracing::error!(target = %sink.name(), message = %d.message_id, error = %m, "delivery refused; not retrying");
                break;
            }
            Err(SinkError::Gone(m)) => {
                tracing::error!(target = %sink.name(), message = %d.message_id, error = %m, "receiver is gone; target disabled");
                if let Ok(mut reason) = stats.disabled.lock() {
                    reason.get_or_insert(m);
                }
                break;
            }
            Err(SinkError::Retry { message, after }) if attempt < policy.attempts => {
                stats.retries.fetch_add(1, Ordering::Relaxed);
                let jitter = backoff.mul_f64(rand::random::<f64>() * 0.5);
                // The receiver's Retry-After is a floor, not a suggestion.
                let wait = (backoff + jitter).max(after.unwrap_or_default().min(MAX_RETRY_AFTER));
                tracing::warn!(target = %sink.name(), attempt, error = %message, retry_in_ms = wait.as_millis() as u64, "delivery failed");
                tokio::time::sleep(wait).await;
                backoff = (backoff * 2).min(policy.max_backoff);
                if stats.disabled_reason().is_some() {
                    break;
                }
            }
            Err(SinkError::Retry { message: m, .. }) => {
                tracing::error!(target = %sink.name(), message = %d.message_id, error = %m, "delivery failed; attempts exhausted");
            }
        }
    }
    stats.failed.fetch_add(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    //! Routing only: which alerts an occurrence reaches. The sink here records
    //! in memory; real webhook and MQTT delivery are covered by the
    //! integration tests against a real receiver and a real broker.
    use std::sync::Mutex;
    use std::time::SystemTime;

    use super::*;
    use crate::types::EventId;

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

    fn alert(id: &str, streams: &[&str], enabled: bool, send_end: bool) -> AlertConfig {
        AlertConfig {
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
            stream_id: StreamId::new(stream),
            start_time: 1.0,
            end_time: 2.0,
            confidence: 0.9,
            count: 1,
            explanation: "x".into(),
            frame_wall: SystemTime::now(),
            frame_arrived: Instant::now(),
        }
    }

    #[tokio::test]
    async fn occurrences_reach_only_matching_enabled_alerts() {
        let rec = Arc::new(Recorder::default());
        let policy = RetryPolicy {
            attempts: 1,
            first_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(1),
            concurrency: 1,
        };
        let alerts = vec![
            alert("only-s1", &["s1"], true, true),
            alert("all", &[], true, false),
            alert("off", &[], false, true),
        ];
        let d = Dispatcher::start(
            None,
            Some(rec.clone() as Arc<dyn Sink>),
            None,
            policy,
            OutboxSettings {
                store: Arc::new(crate::store::Store::open(None).expect("in-memory store")),
                schedule: outbox::DEFAULT_SCHEDULE.into(),
                clock: Arc::new(outbox::SystemClock),
                poll: Duration::from_millis(100),
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
