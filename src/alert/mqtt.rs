//! MQTT delivery through rumqttc: QoS 1 publishes on one connection, with
//! the event loop driven by its own task that reconnects with backoff.
//!
//! The session is persistent (fixed client id, clean session off), and a
//! retained availability topic says `online` after each connect and
//! `offline` on a clean shutdown or, through the Last Will, when the broker
//! loses us.
//!
//! Note on acknowledgement: rumqttc's `publish()` returning Ok means the
//! request is queued to the event loop, not that the broker sent PUBACK. This
//! sink therefore counts a message as delivered when queued; tying each
//! message to its PUBACK belongs to the durable outbox.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Outgoing, Packet, QoS};

use super::{DeliverFuture, Delivery, Sink, SinkError};
use crate::config::MqttConfig;

/// Publishes alert messages to one broker.
pub struct MqttSink {
    client: AsyncClient,
    broker: String,
    status_topic: String,
    closing: Arc<AtomicBool>,
    task: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl MqttSink {
    /// Connects (in the background) and keeps the connection up. Must be
    /// called inside a tokio runtime.
    pub fn start(cfg: &MqttConfig) -> MqttSink {
        let mut opts = MqttOptions::new(&cfg.client_id, &cfg.host, cfg.port);
        opts.set_keep_alive(cfg.keep_alive);
        opts.set_max_packet_size(1 << 20, 1 << 20);
        opts.set_clean_session(false);
        opts.set_last_will(LastWill::new(
            &cfg.status_topic,
            "offline",
            QoS::AtLeastOnce,
            true,
        ));
        let (client, mut eventloop) = AsyncClient::new(opts, 256);
        let broker = format!("{}:{}", cfg.host, cfg.port);
        let name = broker.clone();
        let closing = Arc::new(AtomicBool::new(false));
        let (status, announcer, stop) = (
            cfg.status_topic.clone(),
            client.clone(),
            Arc::clone(&closing),
        );
        let task = tokio::spawn(async move {
            let mut backoff = Duration::from_millis(200);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        tracing::info!(broker = %name, "MQTT connected");
                        backoff = Duration::from_millis(200);
                        if let Err(e) =
                            announcer.try_publish(status.as_str(), QoS::AtLeastOnce, true, "online")
                        {
                            tracing::warn!(broker = %name, error = %e, "cannot announce availability");
                        }
                    }
                    Ok(Event::Outgoing(Outgoing::Disconnect)) if stop.load(Ordering::SeqCst) => {
                        break
                    }
                    Ok(_) => {}
                    Err(_) if stop.load(Ordering::SeqCst) => break,
                    Err(e) => {
                        tracing::warn!(broker = %name, error = %e, retry_in_ms = backoff.as_millis() as u64, "MQTT connection failed");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                    }
                }
            }
        });
        MqttSink {
            client,
            broker,
            status_topic: cfg.status_topic.clone(),
            closing,
            task: tokio::sync::Mutex::new(Some(task)),
        }
    }

    /// Says `offline` on the status topic, disconnects, and waits (at most
    /// `grace`) for the event loop to send both.
    pub async fn close(&self, grace: Duration) {
        self.closing.store(true, Ordering::SeqCst);
        let _ = self
            .client
            .publish(
                self.status_topic.as_str(),
                QoS::AtLeastOnce,
                true,
                "offline",
            )
            .await;
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
            self.client
                .publish(d.topic.as_str(), QoS::AtLeastOnce, false, d.body.to_vec())
                .await
                .map_err(|e| SinkError::retry(format!("publish to {}: {e}", d.topic)))
        })
    }
}
