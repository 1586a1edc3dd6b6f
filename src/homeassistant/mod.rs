//! Home Assistant, in one place: MQTT discovery as data ([`discovery`]),
//! and the live bridge ([`bridge`]) that keeps the retained discovery and
//! state topics in line and obeys `sightline/<stream>/<event>/set`.
//!
//! Nothing here reads the control plane's catalog. The bridge is handed a
//! [`Controls`]: the pairs alerts wire now, word when that changes, and a
//! switch for one alert (the control plane implements it). The recorder
//! publishes its snapshots through [`SnapshotTopics`], which it knows only
//! as a `record::evidence::SnapshotSink`.

pub mod bridge;
pub mod discovery;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use crate::alert::mqtt::MqttSink;
use crate::record::evidence::SnapshotSink;
pub use bridge::{spawn, StateTopics};
pub use discovery::{Pair, Wired};

/// What the bridge needs from the control plane.
pub trait Controls: Send + Sync + 'static {
    /// Every (stream, event) pair some alert wires, as the catalog stands.
    fn pairs(&self) -> impl Future<Output = BTreeMap<Pair, Wired>> + Send;
    /// Changes whenever the catalog does.
    fn changes(&self) -> tokio::sync::watch::Receiver<u64>;
    /// Enables or disables one alert, with the API's effect and
    /// persistence; the error says why not.
    fn switch_alert(
        &self,
        alert: &str,
        on: bool,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

/// The latest snapshot of each (stream, label), published retained on
/// `sightline/<stream>/<label>/snapshot` for Home Assistant's image entity.
pub struct SnapshotTopics(pub Arc<MqttSink>);

impl SnapshotSink for SnapshotTopics {
    fn publish(&self, stream: &str, label: &str, jpeg: Vec<u8>) -> Result<(), String> {
        let topic = discovery::snapshot_topic(stream, label);
        self.0.publish_retained(&topic, jpeg)
    }
}
