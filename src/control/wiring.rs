//! The control plane as Home Assistant's bridge sees it: the (stream,
//! event) pairs the catalog's alerts wire, and a switch per alert. The
//! bridge gets this view through [`Controls`]; it never reads the catalog.

use std::collections::BTreeMap;

use super::{Catalog, Engine};
use crate::homeassistant::{Controls, Pair, Wired};

impl Controls for Engine {
    async fn pairs(&self) -> BTreeMap<Pair, Wired> {
        wiring(&self.catalog().await)
    }

    fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        Engine::changes(self)
    }

    async fn switch_alert(&self, alert: &str, on: bool) -> Result<(), String> {
        self.set_alert_enabled(None, alert, on)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

/// Every pair of the catalog. An alert hung under a scene index covers
/// that index's stream; a config alert its `streams`, or every stream when
/// it names none.
pub fn wiring(cat: &Catalog) -> BTreeMap<Pair, Wired> {
    let mut pairs: BTreeMap<Pair, Wired> = BTreeMap::new();
    for a in cat.alerts.values() {
        let Some(event) = a.spec.event.as_ref().and_then(|e| cat.events.get(e)) else {
            continue;
        };
        let streams: Vec<&String> = match (&a.index_id, &a.spec.streams) {
            (Some(i), _) => cat
                .indexes
                .get(i)
                .map(|i| &i.stream_id)
                .into_iter()
                .collect(),
            (None, Some(s)) if !s.is_empty() => s.iter().collect(),
            (None, _) => cat.streams.keys().collect(),
        };
        for s in streams {
            let Some(stream) = cat.streams.get(s) else {
                continue;
            };
            let pair = Pair {
                stream: stream.id.clone(),
                event: event.id.clone(),
            };
            pairs
                .entry(pair)
                .or_insert_with(|| Wired {
                    label: event.spec.label.clone().unwrap_or_else(|| event.id.clone()),
                    stream_name: stream.name.clone(),
                    alerts: Vec::new(),
                })
                .alerts
                .push((a.id.clone(), a.enabled));
        }
    }
    pairs
}
