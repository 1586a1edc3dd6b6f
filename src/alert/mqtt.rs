//! MQTT delivery through rumqttc: QoS 1 publishes on one connection, with
//! the event loop driven by its own task that reconnects with backoff.
//!
//! The session is persistent (fixed client id, clean session off), and a
//! retained availability topic says `online` after each connect and
//! `offline` on a clean shutdown or, through the Last Will, when the broker
//! loses us.
//!
//! Username/password and TLS (against a given CA or the system roots) are
//! options of `[mqtt]`.
//!
//! With control or discovery on, the same connection subscribes (after
//! every CONNACK) to the command topics and Home Assistant's birth topic,
//! and hands what arrives, and each reconnection, to
//! [`MqttSink::take_inbound`]'s receiver (`app::homeassistant` reads it).
//!
//! A delivery succeeds only on the broker's PUBACK. rumqttc's `publish()`
//! returning Ok means queued, so each publish leaves a waiter in a FIFO;
//! the event loop reports each outgoing PUBLISH with its packet id in the
//! same order, which ties the waiter to the id, and the PUBACK with that id
//! completes it. When the connection fails, everything rumqttc would resend
//! is dropped and every waiter fails: those messages are still in the
//! outbox and are published again (same body, same ids in the payload), so
//! the order-based pairing never drifts.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Outgoing, Packet, QoS};
use tokio::sync::{mpsc, oneshot};

use super::{DeliverFuture, Delivery, Sink, SinkError};
use crate::domain::MqttSettings;

/// How long a publish may wait for its PUBACK before it counts as failed.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);

type Waiter = Option<oneshot::Sender<()>>;

/// What the broker hands sightline.
#[derive(Debug)]
pub enum Inbound {
    /// A (re)connection: retained messages may be gone (a broker that
    /// restarted without persistence), so they are published again.
    Connected,
    /// A message on a subscribed topic.
    Message { topic: String, payload: Vec<u8> },
}

/// Publishes waiting for their packet id (FIFO) and for their PUBACK (by id).
#[derive(Default)]
struct Acks {
    queued: VecDeque<Waiter>,
    sent: HashMap<u16, Waiter>,
}

/// Publishes alert messages to one broker.
pub struct MqttSink {
    client: AsyncClient,
    broker: String,
    status_topic: String,
    closing: Arc<AtomicBool>,
    acks: Arc<Mutex<Acks>>,
    task: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    inbound: Mutex<Option<mpsc::UnboundedReceiver<Inbound>>>,
}

/// Where MQTT control commands arrive: `sightline/<stream>/<event>/set`.
pub const COMMAND_FILTER: &str = "sightline/+/+/set";

/// The topic filters sightline subscribes to: the command topics with
/// control on, Home Assistant's status with discovery on.
fn subscriptions(cfg: &MqttSettings) -> Vec<String> {
    let mut subs = Vec::new();
    if cfg.control {
        subs.push(COMMAND_FILTER.to_string());
    }
    if let Some(prefix) = &cfg.discovery {
        subs.push(format!("{prefix}/status"));
    }
    subs
}

/// Queues a publish and its waiter together, so the FIFO matches the order
/// rumqttc sends in. Never waits: a full request queue is an error.
fn queue(
    acks: &Mutex<Acks>,
    client: &AsyncClient,
    topic: &str,
    retain: bool,
    body: Vec<u8>,
    waiter: Waiter,
) -> Result<(), String> {
    let mut a = acks
        .lock()
        .map_err(|_| "MQTT state lock poisoned".to_string())?;
    client
        .try_publish(topic, QoS::AtLeastOnce, retain, body)
        .map_err(|e| format!("publish to {topic}: {e}"))?;
    a.queued.push_back(waiter);
    Ok(())
}

/// Connection options: login, TLS, the retained `offline` last will.
fn options(cfg: &MqttSettings) -> MqttOptions {
    let mut opts = MqttOptions::new(&cfg.client_id, &cfg.host, cfg.port);
    opts.set_keep_alive(cfg.keep_alive);
    opts.set_max_packet_size(1 << 20, 1 << 20);
    opts.set_clean_session(false);
    if let Some((user, password)) = &cfg.credentials {
        opts.set_credentials(user, password);
    }
    if cfg.tls.is_some() {
        // Two rustls crypto back-ends are linked (reqwest's ring, rumqttc's
        // aws-lc-rs): name one for the process, once.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    match &cfg.tls {
        Some(Some(ca)) => {
            opts.set_transport(rumqttc::Transport::tls(ca.clone(), None, None));
        }
        Some(None) => {
            opts.set_transport(rumqttc::Transport::tls_with_default_config());
        }
        None => {}
    }
    opts.set_last_will(LastWill::new(
        &cfg.status_topic,
        "offline",
        QoS::AtLeastOnce,
        true,
    ));
    opts
}

/// The task that polls rumqttc's event loop: it announces availability and
/// subscribes on every connection, matches PUBACKs to their waiters, passes
/// inbound messages on, and reconnects with a capped backoff.
struct Driver {
    /// The broker, for logs.
    name: String,
    status: String,
    announcer: AsyncClient,
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Acks>>,
    subs: Vec<String>,
    inbound: Option<mpsc::UnboundedSender<Inbound>>,
}

impl Driver {
    async fn run(self, mut eventloop: rumqttc::EventLoop) {
        let name = &self.name;
        let mut backoff = Duration::from_millis(200);
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    tracing::info!(broker = %name, "MQTT connected");
                    backoff = Duration::from_millis(200);
                    self.connected();
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if let Some(tx) = &self.inbound {
                        let _ = tx.send(Inbound::Message {
                            topic: p.topic.clone(),
                            payload: p.payload.to_vec(),
                        });
                    }
                }
                Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                    if let Ok(mut a) = self.acks.lock() {
                        let w = a.queued.pop_front().flatten();
                        a.sent.insert(pkid, w);
                    }
                }
                Ok(Event::Incoming(Packet::PubAck(ack))) => {
                    let w = self
                        .acks
                        .lock()
                        .ok()
                        .and_then(|mut a| a.sent.remove(&ack.pkid));
                    if let Some(Some(w)) = w {
                        let _ = w.send(());
                    }
                }
                Ok(Event::Outgoing(Outgoing::Disconnect)) if self.stop.load(Ordering::SeqCst) => {
                    break
                }
                Ok(_) => {}
                Err(_) if self.stop.load(Ordering::SeqCst) => break,
                Err(e) => {
                    // Drop what rumqttc would resend and fail every
                    // waiter (dropping a sender fails its receiver); the
                    // outbox sends those messages again.
                    if let Ok(mut a) = self.acks.lock() {
                        eventloop.clean();
                        eventloop.pending.clear();
                        a.queued.clear();
                        a.sent.clear();
                    }
                    tracing::warn!(broker = %name, error = %e, retry_in_ms = backoff.as_millis() as u64, "MQTT connection failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    /// On every CONNACK: `online` on the status topic, the subscriptions
    /// again (the broker may have no session), and word to the bridge.
    fn connected(&self) {
        let name = &self.name;
        let online = queue(
            &self.acks,
            &self.announcer,
            &self.status,
            true,
            b"online".to_vec(),
            None,
        );
        if let Err(e) = online {
            tracing::warn!(broker = %name, error = %e, "cannot announce availability");
        }
        for s in &self.subs {
            if let Err(e) = self.announcer.try_subscribe(s, QoS::AtLeastOnce) {
                tracing::warn!(broker = %name, topic = %s, error = %e, "cannot subscribe");
            }
        }
        if let Some(tx) = &self.inbound {
            let _ = tx.send(Inbound::Connected);
        }
    }
}

impl MqttSink {
    /// Connects (in the background) and keeps the connection up. Must be
    /// called inside a tokio runtime.
    pub fn start(cfg: &MqttSettings) -> MqttSink {
        let (client, eventloop) = AsyncClient::new(options(cfg), 1024);
        let broker = format!("{}:{}", cfg.host, cfg.port);
        let closing = Arc::new(AtomicBool::new(false));
        let acks: Arc<Mutex<Acks>> = Arc::default();
        let subs = subscriptions(cfg);
        let (inbound_tx, inbound) = if subs.is_empty() {
            (None, None)
        } else {
            let (tx, rx) = mpsc::unbounded_channel();
            (Some(tx), Some(rx))
        };
        let driver = Driver {
            name: broker.clone(),
            status: cfg.status_topic.clone(),
            announcer: client.clone(),
            stop: Arc::clone(&closing),
            acks: Arc::clone(&acks),
            subs,
            inbound: inbound_tx,
        };
        let task = tokio::spawn(driver.run(eventloop));
        MqttSink {
            client,
            broker,
            status_topic: cfg.status_topic.clone(),
            closing,
            acks,
            task: tokio::sync::Mutex::new(Some(task)),
            inbound: Mutex::new(inbound),
        }
    }

    /// The receiver of commands and reconnections (once; `None` after, or
    /// when neither control nor discovery is on).
    pub fn take_inbound(&self) -> Option<mpsc::UnboundedReceiver<Inbound>> {
        self.inbound.lock().ok()?.take()
    }

    /// Publishes a retained message (QoS 1) without waiting for it: the
    /// latest snapshot per stream and label, which only the newest matters
    /// for, so it does not go through the outbox.
    pub fn publish_retained(&self, topic: &str, body: Vec<u8>) -> Result<(), String> {
        queue(&self.acks, &self.client, topic, true, body, None)
    }

    /// Says `offline` on the status topic, disconnects, and waits (at most
    /// `grace`) for the event loop to send both.
    pub async fn close(&self, grace: Duration) {
        self.closing.store(true, Ordering::SeqCst);
        let _ = queue(
            &self.acks,
            &self.client,
            &self.status_topic,
            true,
            b"offline".to_vec(),
            None,
        );
        let _ = self.client.disconnect().await;
        if let Some(task) = self.task.lock().await.take() {
            if tokio::time::timeout(grace, task).await.is_err() {
                tracing::warn!(broker = %self.broker, "MQTT did not close within the grace period");
            }
        }
    }
}

impl Sink for MqttSink {
    fn name(&self) -> String {
        format!("mqtt {}", self.broker)
    }

    fn deliver<'a>(&'a self, d: &'a Delivery) -> DeliverFuture<'a> {
        Box::pin(async move {
            let (tx, rx) = oneshot::channel();
            queue(
                &self.acks,
                &self.client,
                &d.topic,
                false,
                d.body.to_vec(),
                Some(tx),
            )
            .map_err(SinkError::retry)?;
            match tokio::time::timeout(ACK_TIMEOUT, rx).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_)) => Err(SinkError::retry(format!(
                    "connection to {} lost before PUBACK",
                    self.broker
                ))),
                Err(_) => Err(SinkError::retry(format!(
                    "no PUBACK from {} within {ACK_TIMEOUT:?}",
                    self.broker
                ))),
            }
        })
    }
}
