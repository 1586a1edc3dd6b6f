//! MQTT delivery through rumqttc: QoS 1 publishes on one connection, with
//! the event loop driven by its own task that reconnects with backoff.
//!
//! Note on acknowledgement: rumqttc's `publish()` returning Ok means the
//! request is queued to the event loop, not that the broker sent PUBACK. This
//! sink therefore counts a message as delivered when queued; tying each
//! message to its PUBACK belongs to the durable outbox.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

use super::{DeliverFuture, Delivery, Sink, SinkError};
use crate::config::MqttConfig;

/// Publishes alert messages to one broker.
pub struct MqttSink {
    client: AsyncClient,
    broker: String,
}

impl MqttSink {
    /// Connects (in the background) and keeps the connection up. Must be
    /// called inside a tokio runtime.
    pub fn start(cfg: &MqttConfig) -> MqttSink {
        let mut opts = MqttOptions::new(&cfg.client_id, &cfg.host, cfg.port);
        opts.set_keep_alive(cfg.keep_alive);
        opts.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut eventloop) = AsyncClient::new(opts, 256);
        let broker = format!("{}:{}", cfg.host, cfg.port);
        let name = broker.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(200);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        tracing::info!(broker = %name, "MQTT connected");
                        backoff = Duration::from_millis(200);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(broker = %name, error = %e, retry_in_ms = backoff.as_millis() as u64, "MQTT connection failed");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                    }
                }
            }
        });
        MqttSink { client, broker }
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
                .map_err(|e| SinkError::Retry(format!("publish to {}: {e}", d.topic)))
        })
    }
}
