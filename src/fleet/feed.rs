//! WebSocket messages through the site: one replicated stream gives every
//! box's messages one order, and every box's hub takes all of them back
//! with the stream's sequence as their `seq`.
//!
//! A client connected to any box therefore gets the alerts of every box,
//! and since every box journals every message under the same `seq`, a
//! client that reconnects to another box with `?connection_id=…&since=…`
//! gets exactly what it missed. The stream keeps a day of messages (at most
//! 100,000), and a box that was down catches up from the sequence after
//! the last one its journal holds.
//!
//! While the stream cannot take messages (NATS unreachable, quorum lost),
//! the hub sends them to this box's clients only, under this box's own
//! `seq` (at most once, as WebSocket messages always were); they are not
//! seen on other boxes and cannot be resumed elsewhere.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::{Pause, Shared};
use crate::alert::ws::{Hub, SiteFeed};

/// How long the site keeps WebSocket messages for resuming clients.
const MAX_AGE: Duration = Duration::from_secs(24 * 3600);
const MAX_MESSAGES: i64 = 100_000;
/// Messages waiting to be published before the hub keeps new ones local.
const QUEUE: usize = 4096;
/// How long a publish may take before the message goes to local clients.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(3);

/// One WebSocket message as the stream holds it.
#[derive(Debug, Serialize, Deserialize)]
struct Item {
    /// A connection id; none: every console feed.
    to: Option<String>,
    channel: String,
    data: serde_json::Value,
}

fn subject(site: &str) -> String {
    format!("sightline.{site}.ws")
}

/// The hub's way into the site.
pub struct Feed {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Item>,
    resting: Arc<Pause>,
}

impl SiteFeed for Feed {
    fn offer(&self, to: Option<&str>, channel: &str, data: &serde_json::Value) -> bool {
        if self.resting.active() || !self.shared.connected() {
            return false;
        }
        let item = Item {
            to: to.map(String::from),
            channel: channel.to_string(),
            data: data.clone(),
        };
        self.tx.try_send(item).is_ok()
    }
}

/// Puts `hub` on the site: returns the tasks that publish its messages and
/// follow everybody's.
pub fn start(shared: &Arc<Shared>, hub: &Arc<Hub>) -> Vec<tokio::task::JoinHandle<()>> {
    let (tx, rx) = mpsc::channel(QUEUE);
    let resting: Arc<Pause> = Arc::default();
    hub.set_site(Arc::new(Feed {
        shared: Arc::clone(shared),
        tx,
        resting: Arc::clone(&resting),
    }));
    vec![
        tokio::spawn(publish(Arc::clone(shared), Arc::clone(hub), rx, resting)),
        tokio::spawn(follow(Arc::clone(shared), Arc::clone(hub))),
    ]
}

/// Publishes the hub's messages in order; one the stream does not take
/// goes to this box's clients only.
async fn publish(
    shared: Arc<Shared>,
    hub: Arc<Hub>,
    mut rx: mpsc::Receiver<Item>,
    resting: Arc<Pause>,
) {
    let js = jetstream::new(shared.client.clone());
    let subject = subject(&shared.cfg.site);
    while let Some(item) = rx.recv().await {
        let Ok(body) = serde_json::to_vec(&item) else {
            continue;
        };
        let sent = tokio::time::timeout(PUBLISH_TIMEOUT, async {
            js.publish(subject.clone(), body.into()).await?.await?;
            anyhow::Ok(())
        })
        .await;
        if matches!(sent, Ok(Ok(()))) {
            continue;
        }
        tracing::warn!(channel = %item.channel,
            "the site's WebSocket stream did not take a message; sending it to this box's clients only");
        resting.start();
        match &item.to {
            Some(id) => {
                hub.publish_local(id, &item.channel, &item.data);
            }
            None => hub.publish_console_local(&item.channel, &item.data),
        }
    }
}

/// Opens (or creates) the site's WebSocket stream.
async fn open(js: &jetstream::Context, shared: &Shared) -> anyhow::Result<stream::Stream> {
    let name = super::bucket(&shared.cfg.site, "ws");
    let stream = js
        .get_or_create_stream(stream::Config {
            name: name.clone(),
            subjects: vec![subject(&shared.cfg.site)],
            max_age: MAX_AGE,
            max_messages: MAX_MESSAGES,
            num_replicas: if shared.servers() >= 3 { 3 } else { 1 },
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow::anyhow!("opening stream {name}: {e}"))?;
    Ok(stream)
}

/// Feeds every message of the site into the hub, in the stream's order,
/// from the one after the newest this box's journal holds.
async fn follow(shared: Arc<Shared>, hub: Arc<Hub>) {
    let js = jetstream::new(shared.client.clone());
    let mut next = hub.last_seq() + 1;
    loop {
        let messages = async {
            let stream = open(&js, &shared).await?;
            let consumer = stream
                .create_consumer(consumer::pull::OrderedConfig {
                    deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                        start_sequence: next,
                    },
                    ..Default::default()
                })
                .await?;
            anyhow::Ok(consumer.messages().await?)
        }
        .await;
        let mut messages = match messages {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "the site's WebSocket stream is not reachable yet");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        while let Some(Ok(m)) = messages.next().await {
            let Ok(seq) = m.info().map(|i| i.stream_sequence) else {
                continue;
            };
            match serde_json::from_slice::<Item>(&m.payload) {
                Ok(i) => hub.deliver_site(seq, i.to.as_deref(), &i.channel, &i.data),
                Err(e) => {
                    tracing::warn!(seq, error = %e, "a WebSocket message of the site does not parse")
                }
            }
            next = seq + 1;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
