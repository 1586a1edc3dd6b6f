//! Alerts through the site: one replicated JetStream stream of alert
//! messages and one durable work-queue consumer that every box serves.
//!
//! A box commits each message to its own SQLite outbox first, as a
//! standalone box does; its outbox worker then hands the message to the
//! stream ([`SiteOutbox`], behind the outbox's hand-off seam) and the row
//! goes once the stream acknowledged it. Every box pulls from the shared
//! consumer ([`serve`]): a message is acknowledged to the stream only after
//! its receiver's 2xx or the broker's PUBACK, so one taken by a box that
//! dies is redelivered to another after [`ACK_WAIT`], with the same
//! `webhook-id` (the message id travels with it). A failed attempt is
//! retried on the target's schedule (a delayed negative acknowledgement);
//! past the schedule, or on a refusal, the message becomes a dead letter on
//! the box that tried last.
//!
//! When the stream cannot take a message (NATS unreachable, quorum lost),
//! the box delivers it itself from its outbox; what is still waiting there
//! goes to the stream at its next attempt once NATS is back. Publishing
//! carries a message id (`target|message`), so a hand-off repeated after a
//! lost acknowledgement is stored once (JetStream's duplicate window).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream::{self, consumer, stream, AckKind};
use futures_util::future::BoxFuture;
use futures_util::StreamExt;

use super::{Pause, Shared};
use crate::alert::handoff::Handoff;
use crate::alert::{sign, Delivery, Dispatcher, SinkError};

/// How long a message taken by a box may go unacknowledged before the
/// stream gives it to another box (a box that died holding it).
pub const ACK_WAIT: Duration = Duration::from_secs(30);
/// How long messages stay in the stream undelivered (the outbox's own
/// schedule spans 32 hours).
const MAX_AGE: Duration = Duration::from_secs(3 * 24 * 3600);
/// The stream's size bound.
const MAX_BYTES: i64 = 1 << 30;
/// Deliveries in flight on one box.
const IN_FLIGHT: usize = 32;
/// How long a hand-off may take before the box delivers the message itself.
const HAND_TIMEOUT: Duration = Duration::from_secs(3);
/// The durable consumer every box serves.
const CONSUMER: &str = "delivery";

const TARGET: &str = "Sightline-Target";
const ALERT: &str = "Sightline-Alert";
const TOPIC: &str = "Sightline-Topic";
const SECRETS: &str = "Sightline-Secrets";
const MESSAGE: &str = "Sightline-Message";
const ORIGIN: &str = "Sightline-Box";

/// Figures of site delivery on this box.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    /// Messages handed to the stream.
    pub handed: AtomicU64,
    /// Hand-offs the stream did not take (the box delivered them itself).
    pub fallbacks: AtomicU64,
    /// Messages this box took from the stream and delivered.
    pub delivered: AtomicU64,
    /// Messages this box took that another box had taken before.
    pub redelivered: AtomicU64,
    /// How long a hand-off took (publish to the stream's acknowledgement).
    pub publish_times: crate::metrics::Histogram,
    /// Messages this box is delivering now.
    pub delivering: AtomicU64,
    /// Messages in the stream not yet taken by any box, at the last look.
    pub lag: AtomicU64,
    /// Messages taken by a box and not yet acknowledged, at the last look.
    pub in_flight: AtomicU64,
    /// Messages the stream holds (waiting, in flight or retrying).
    pub stored: AtomicU64,
}

impl DeliveryStats {
    /// The figures `GET fleet` shows.
    pub fn report(&self) -> serde_json::Value {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        serde_json::json!({
            "handed": n(&self.handed),
            "fallbacks": n(&self.fallbacks),
            "delivered": n(&self.delivered),
            "redelivered": n(&self.redelivered),
            "delivering": n(&self.delivering),
            "stream_messages": n(&self.stored),
            "consumer_pending": n(&self.lag),
            "consumer_in_flight": n(&self.in_flight),
        })
    }
}

/// Reads the stream's and the consumer's counts every 2 s (consumer lag).
async fn watch_figures(shared: Arc<Shared>, consumer: consumer::PullConsumer) {
    let js = jetstream::new(shared.client.clone());
    let name = stream_name(&shared.cfg.site);
    let stats = &shared.delivery;
    loop {
        if let Ok(i) = consumer.get_info().await {
            stats.lag.store(i.num_pending, Ordering::Relaxed);
            stats
                .in_flight
                .store(i.num_ack_pending as u64, Ordering::Relaxed);
        }
        if let Ok(s) = js.get_stream(&name).await {
            if let Ok(i) = s.get_info().await {
                stats.stored.store(i.state.messages, Ordering::Relaxed);
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// The stream's name for a site.
fn stream_name(site: &str) -> String {
    super::bucket(site, "alerts")
}

/// A subject token: NATS tokens cannot hold dots, wildcards or spaces.
fn token(s: &str) -> String {
    let t: String = s
        .chars()
        .map(|c| match c {
            '.' | '*' | '>' | ' ' | '\t' | '\r' | '\n' => '_',
            c => c,
        })
        .collect();
    if t.is_empty() {
        "_".into()
    } else {
        t
    }
}

/// The subject of a message: per site, stream and event.
fn subject(site: &str, body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Ids {
        stream_id: String,
        event_id: String,
    }
    let ids = serde_json::from_slice::<Ids>(body).ok();
    let (s, e) = ids.map_or(("_".into(), "_".into()), |i| (i.stream_id, i.event_id));
    format!(
        "sightline.{}.alerts.{}.{}",
        token(site),
        token(&s),
        token(&e)
    )
}

/// The site's side of the outbox's hand-off.
pub struct SiteOutbox {
    shared: Arc<Shared>,
    js: jetstream::Context,
    /// Hand-offs are not tried for a while after one failed.
    resting: Pause,
}

impl SiteOutbox {
    pub fn new(shared: Arc<Shared>) -> SiteOutbox {
        let js = jetstream::new(shared.client.clone());
        SiteOutbox {
            shared,
            js,
            resting: Pause::default(),
        }
    }

    async fn publish(&self, target: &str, d: &Delivery) -> anyhow::Result<()> {
        let mut h = async_nats::HeaderMap::new();
        h.insert(TARGET, target);
        h.insert(ALERT, &*d.alert_id);
        h.insert(MESSAGE, &*d.message_id);
        h.insert(ORIGIN, self.shared.cfg.box_id.as_str());
        if !d.topic.is_empty() {
            h.insert(TOPIC, d.topic.as_str());
        }
        if !d.secrets.is_empty() {
            let text: Vec<String> = d.secrets.iter().map(|s| s.to_text()).collect();
            h.insert(SECRETS, text.join(",").as_str());
        }
        let msg = jetstream::message::PublishMessage::build()
            .payload(bytes::Bytes::copy_from_slice(&d.body))
            .headers(h)
            .message_id(format!("{target}|{}", d.message_id));
        let subject = subject(&self.shared.cfg.site, &d.body);
        let ack = self.js.send_publish(subject, msg).await?;
        ack.await?;
        Ok(())
    }
}

impl Handoff for SiteOutbox {
    fn hand<'a>(&'a self, target: &'a str, d: &'a Delivery) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let stats = &self.shared.delivery;
            if self.resting.active() || !self.shared.connected() {
                stats.fallbacks.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            let started = Instant::now();
            match tokio::time::timeout(HAND_TIMEOUT, self.publish(target, d)).await {
                Ok(Ok(())) => {
                    stats.publish_times.observe(started.elapsed());
                    stats.handed.fetch_add(1, Ordering::Relaxed);
                    true
                }
                failed => {
                    let why = match failed {
                        Ok(Err(e)) => format!("{e:#}"),
                        _ => "no acknowledgement in time".into(),
                    };
                    tracing::warn!(message = %d.message_id, error = %why,
                        "the site's alert stream did not take a message; delivering it from this box");
                    self.resting.start();
                    stats.fallbacks.fetch_add(1, Ordering::Relaxed);
                    false
                }
            }
        })
    }
}

/// Opens (or creates) the site's alert stream and its shared consumer.
async fn open(js: &jetstream::Context, shared: &Shared) -> anyhow::Result<consumer::PullConsumer> {
    let site = &shared.cfg.site;
    let name = stream_name(site);
    let servers = shared.servers();
    let stream = js
        .get_or_create_stream(stream::Config {
            name: name.clone(),
            subjects: vec![format!("sightline.{}.alerts.>", token(site))],
            retention: stream::RetentionPolicy::WorkQueue,
            max_age: MAX_AGE,
            max_bytes: MAX_BYTES,
            num_replicas: if servers >= 3 { 3 } else { 1 },
            duplicate_window: Duration::from_secs(120),
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .with_context(|| format!("opening stream {name}"))?;
    stream
        .get_or_create_consumer(
            CONSUMER,
            consumer::pull::Config {
                durable_name: Some(CONSUMER.into()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: ACK_WAIT,
                max_deliver: -1,
                max_ack_pending: 1024,
                ..Default::default()
            },
        )
        .await
        .with_context(|| format!("opening consumer {CONSUMER} of {name}"))
}

/// Serves the site's consumer for as long as the box runs: takes messages,
/// delivers them through this box's sinks, acknowledges after the receiver.
pub async fn serve(shared: Arc<Shared>, dispatcher: Arc<Dispatcher>) {
    let js = jetstream::new(shared.client.clone());
    let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    loop {
        let consumer = match open(&js, &shared).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "the site's alert stream is not reachable yet");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        let figures = tokio::spawn(watch_figures(Arc::clone(&shared), consumer.clone()));
        // Short pull requests with frequent heartbeats: a request the
        // servers lost (a leader change) costs seconds, not the default 30.
        let pulled = consumer
            .stream()
            .expires(Duration::from_secs(5))
            .heartbeat(Duration::from_secs(2))
            .messages()
            .await;
        let mut messages = match pulled {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "cannot pull from the site's alert stream");
                figures.abort();
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        while let Some(next) = messages.next().await {
            let m = match next {
                Ok(m) => m,
                Err(e) => {
                    tracing::debug!(error = %e, "pulling alert messages");
                    continue;
                }
            };
            let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
                return;
            };
            let (d, s) = (Arc::clone(&dispatcher), Arc::clone(&shared));
            tokio::spawn(async move {
                deliver(m, &d, &s).await;
                drop(permit);
            });
        }
        figures.abort();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// A stream message back into a delivery: (target, message).
fn unpack(m: &jetstream::Message) -> Option<(String, Delivery)> {
    let h = m.headers.as_ref()?;
    let get = |k: &str| h.get(k).map(|v| v.as_str().to_string());
    let secrets: Vec<sign::Secret> = get(SECRETS)
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .filter_map(|s| sign::Secret::parse(s).ok())
        .collect();
    let d = Delivery {
        message_id: get(MESSAGE)?.into(),
        alert_id: get(ALERT)?.into(),
        body: m.payload.to_vec().into(),
        topic: get(TOPIC).unwrap_or_default(),
        secrets: secrets.into(),
        frame_arrived: None,
    };
    Some((get(TARGET)?, d))
}

/// Delivers one message taken from the stream and settles it there.
async fn deliver(m: jetstream::Message, dispatcher: &Dispatcher, shared: &Shared) {
    let stats = &shared.delivery;
    let attempt = m.info().map_or(1, |i| i.delivered.max(1) as u32);
    let Some((target, d)) = unpack(&m) else {
        tracing::error!(subject = %m.subject, "a message in the site's alert stream is not sightline's; dropped");
        let _ = m.ack_with(AckKind::Term).await;
        return;
    };
    if attempt > 1 {
        stats.redelivered.fetch_add(1, Ordering::Relaxed);
    }
    // Long attempts tell the stream the message is still being worked on.
    let work = dispatcher.deliver_for_site(&target, &d);
    tokio::pin!(work);
    stats.delivering.fetch_add(1, Ordering::Relaxed);
    let result = loop {
        tokio::select! {
            r = &mut work => break r,
            _ = tokio::time::sleep(ACK_WAIT / 3) => { let _ = m.ack_with(AckKind::Progress).await; }
        }
    };
    stats.delivering.fetch_sub(1, Ordering::Relaxed);
    let settled = match result {
        None => m.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await,
        Some(Ok(())) => {
            stats.delivered.fetch_add(1, Ordering::Relaxed);
            tracing::info!(%target, message = %d.message_id, attempt, "alert delivered for the site");
            m.double_ack().await
        }
        Some(Err(SinkError::Retry { message, after })) => {
            match dispatcher.retry_gap(&target, attempt) {
                Some(gap) => {
                    let wait = gap.max(after.unwrap_or_default());
                    tracing::warn!(%target, message = %d.message_id, attempt, error = %message,
                        retry_in_ms = wait.as_millis() as u64, "site delivery failed; will retry");
                    m.ack_with(AckKind::Nak(Some(wait))).await
                }
                None => {
                    dispatcher.bury(&target, &d, attempt, &message);
                    m.ack_with(AckKind::Term).await
                }
            }
        }
        Some(Err(SinkError::Permanent(e) | SinkError::Gone(e))) => {
            dispatcher.bury(&target, &d, attempt, &e);
            m.ack_with(AckKind::Term).await
        }
    };
    if let Err(e) = settled {
        // The stream redelivers it after ACK_WAIT: a duplicate, not a loss.
        tracing::warn!(%target, message = %d.message_id, error = %e, "cannot settle a site message");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_carry_site_stream_and_event_as_safe_tokens() {
        let body = br#"{"stream_id":"door.1","event_id":"e 2","x":1}"#;
        assert_eq!(subject("hq", body), "sightline.hq.alerts.door_1.e_2");
        assert_eq!(subject("hq", b"not json"), "sightline.hq.alerts._._");
    }
}
