//! Home Assistant and the MQTT control topics, live. [`StateTopics`] sees
//! every occurrence message (from the delivery stage) and keeps each
//! pair's retained `active`, `count` and `last` topics; the bridge task
//! keeps the retained discovery messages and `state` topics in line with
//! the catalog (after every change, on every reconnection, and when Home
//! Assistant says `online`), and obeys `sightline/<stream>/<event>/set`.
//!
//! A command goes through [`Controls::switch_alert`], so it has the API's
//! effect and persistence. Who may send one is the broker's to
//! decide (docs/HOMEASSISTANT.md has a mosquitto ACL).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use serde_json::json;

use super::discovery::{
    parse_command, parse_switch, snapshot_topic, switch_payload, Announce, Pair, Wired,
    STATE_LEAVES,
};
use super::Controls;
use crate::alert::mqtt::{Inbound, MqttSink};
use crate::alert::payload::{iso8601, Links};
use crate::alert::stage::Observer;
use crate::domain::MqttSettings;
use crate::matcher::{Occurrence, Phase};

/// The pairs' occurrence state, and its retained topics.
pub struct StateTopics {
    sink: Arc<MqttSink>,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Pairs with an enabled alert: only their occurrences count.
    enabled: HashSet<Pair>,
    /// The open occurrences of each pair.
    open: HashMap<Pair, HashSet<String>>,
}

impl StateTopics {
    pub fn new(sink: Arc<MqttSink>) -> StateTopics {
        StateTopics {
            sink,
            inner: Mutex::default(),
        }
    }

    fn publish(&self, topic: &str, body: impl Into<Vec<u8>>) {
        if let Err(e) = self.sink.publish_retained(topic, body.into()) {
            tracing::warn!(topic, error = %e, "cannot publish a state topic");
        }
    }

    /// Publishes a pair's `active` and `count` as they stand (`OFF`, 0 when
    /// nothing is open).
    fn publish_activity(&self, inner: &Inner, p: &Pair) {
        let open = inner.open.get(p).is_some_and(|o| !o.is_empty());
        self.publish(&p.topic("active"), switch_payload(open));
        if !open {
            self.publish(&p.topic("count"), "0");
        }
    }
}

impl Observer for StateTopics {
    fn seen(&self, occ: &Occurrence, links: &Links) {
        let p = Pair {
            stream: occ.stream_id.to_string(),
            event: occ.event_id.to_string(),
        };
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        match occ.phase {
            Phase::Start => {
                if !inner.enabled.contains(&p) {
                    return;
                }
                let open = inner.open.entry(p.clone()).or_default();
                open.insert(occ.occurrence_id.clone());
                self.publish(&p.topic("active"), "ON");
                self.publish(&p.topic("count"), occ.count.to_string());
                let last = json!({
                    "timestamp": iso8601(occ.frame_wall),
                    "label": occ.label,
                    "confidence": (occ.confidence as f64 * 1000.0).round() / 1000.0,
                    "explanation": occ.explanation,
                    "occurrence_id": occ.occurrence_id,
                    "start_time": occ.start_time,
                    "snapshot_url": links.snapshot_url,
                    "player_url": links.player_url,
                });
                self.publish(&p.topic("last"), last.to_string());
            }
            Phase::End => {
                let closed = inner
                    .open
                    .get_mut(&p)
                    .is_some_and(|o| o.remove(&occ.occurrence_id));
                if closed {
                    self.publish_activity(&inner, &p);
                }
            }
        }
    }
}

/// Starts the bridge when `[mqtt]` has control or discovery on.
pub fn spawn<C: Controls>(
    controls: &Arc<C>,
    sink: Option<&Arc<MqttSink>>,
    states: Option<&Arc<StateTopics>>,
    settings: Option<&MqttSettings>,
) -> Option<tokio::task::JoinHandle<()>> {
    let (sink, states, settings) = (sink?, states?, settings?);
    let inbound = sink.take_inbound()?;
    let bridge = Bridge {
        controls: Arc::clone(controls),
        states: Arc::clone(states),
        prefix: settings.discovery.clone(),
        status_topic: settings.status_topic.clone(),
        pairs: BTreeMap::new(),
        discovery: BTreeMap::new(),
    };
    Some(tokio::spawn(bridge.run(inbound)))
}

struct Bridge<C> {
    controls: Arc<C>,
    states: Arc<StateTopics>,
    /// The discovery prefix, with discovery on.
    prefix: Option<String>,
    status_topic: String,
    /// What was last published: the pairs, and the discovery messages.
    pairs: BTreeMap<Pair, Wired>,
    discovery: BTreeMap<String, String>,
}

impl<C: Controls> Bridge<C> {
    async fn run(mut self, mut inbound: tokio::sync::mpsc::UnboundedReceiver<Inbound>) {
        let mut changes = self.controls.changes();
        self.reconcile(true).await;
        let ha_status = self.prefix.as_ref().map(|p| format!("{p}/status"));
        loop {
            tokio::select! {
                m = inbound.recv() => match m {
                    None => break,
                    Some(Inbound::Connected) => self.reconcile(true).await,
                    Some(Inbound::Message { topic, payload }) => {
                        if ha_status.as_deref() == Some(topic.as_str()) {
                            if payload.as_slice() == b"online" {
                                tracing::info!("Home Assistant is online: discovery published again");
                                self.reconcile(true).await;
                            }
                        } else if let Some(p) = parse_command(&topic) {
                            self.command(&p, &payload).await;
                        }
                    }
                },
                r = changes.changed() => {
                    if r.is_err() {
                        break;
                    }
                    self.reconcile(false).await;
                }
            }
        }
    }

    /// Brings the retained topics in line with the catalog: everything
    /// again with `all`, else only what changed; a pair that is gone has
    /// its discovery and state topics emptied (which deletes them).
    async fn reconcile(&mut self, all: bool) {
        let pairs = self.controls.pairs().await;
        let discovery = match &self.prefix {
            Some(prefix) => Announce {
                prefix,
                status_topic: &self.status_topic,
            }
            .messages(&pairs),
            None => BTreeMap::new(),
        };
        let states = &self.states;
        for (topic, body) in &discovery {
            if all || self.discovery.get(topic) != Some(body) {
                states.publish(topic, body.as_bytes());
            }
        }
        for topic in self
            .discovery
            .keys()
            .filter(|t| !discovery.contains_key(*t))
        {
            states.publish(topic, Vec::new());
        }
        let Ok(mut inner) = states.inner.lock() else {
            return;
        };
        inner.enabled = pairs
            .iter()
            .filter(|(_, w)| w.enabled())
            .map(|(p, _)| p.clone())
            .collect();
        inner.open.retain(|p, _| pairs.contains_key(p));
        for (p, w) in &pairs {
            let before = self.pairs.get(p);
            if all || before.map(Wired::enabled) != Some(w.enabled()) {
                states.publish(&p.topic("state"), switch_payload(w.enabled()));
            }
            if all || before.is_none() {
                states.publish_activity(&inner, p);
            }
        }
        for (p, w) in self.pairs.iter().filter(|(p, _)| !pairs.contains_key(*p)) {
            for leaf in STATE_LEAVES {
                states.publish(&p.topic(leaf), Vec::new());
            }
            let shared = pairs
                .iter()
                .any(|(q, v)| q.stream == p.stream && v.label == w.label);
            if !shared {
                states.publish(&snapshot_topic(&p.stream, &w.label), Vec::new());
            }
        }
        drop(inner);
        self.pairs = pairs;
        self.discovery = discovery;
    }

    /// `…/set`: enables or disables the pair's alerts, as the API would.
    async fn command(&mut self, p: &Pair, payload: &[u8]) {
        let Some(on) = parse_switch(payload) else {
            tracing::warn!(stream = %p.stream, event = %p.event,
                payload = %String::from_utf8_lossy(payload), "an MQTT command that is neither ON nor OFF; ignored");
            return;
        };
        let Some(w) = self.controls.pairs().await.remove(p) else {
            tracing::warn!(stream = %p.stream, event = %p.event,
                "an MQTT command for a stream and event no alert wires together; ignored");
            return;
        };
        for (id, enabled) in w.alerts.iter().filter(|(_, e)| *e != on) {
            match self.controls.switch_alert(id, on).await {
                Ok(_) => tracing::info!(alert = %id, enabled = on, "alert switched over MQTT"),
                Err(e) => {
                    tracing::warn!(alert = %id, error = %e, was = enabled, "cannot switch the alert")
                }
            }
        }
        // Confirm even when nothing changed, so the switch settles.
        self.states
            .publish(&p.topic("state"), switch_payload(self.wired_on(p).await));
    }

    async fn wired_on(&self, p: &Pair) -> bool {
        self.controls
            .pairs()
            .await
            .get(p)
            .is_some_and(Wired::enabled)
    }
}
