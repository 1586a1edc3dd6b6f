//! Home Assistant MQTT discovery and the control and state topics, as
//! data: the (stream, event) pairs alerts wire together, the retained
//! discovery messages that describe them, and how command topics and
//! payloads parse. The [`bridge`](super::bridge) publishes these and obeys
//! the commands; nothing here touches the network.
//!
//! Each stream is a Home Assistant device; each pair gets five entities,
//! all with the daemon's availability topic:
//!
//! | entity | topic | meaning |
//! |---|---|---|
//! | `binary_sensor` | `sightline/<stream>/<event>/active` | `ON` while an occurrence is open |
//! | `sensor` (timestamp) | `…/last` | the last alert; label, confidence, explanation as attributes |
//! | `sensor` | `…/count` | objects in the last message, 0 once nothing is open |
//! | `switch` | `…/state`, commands on `…/set` | the pair's alerts enabled |
//! | `image` | `sightline/<stream>/<label>/snapshot` | the latest snapshot (JPEG) |

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// The root of sightline's own topics.
pub const BASE: &str = "sightline";

/// The retained state topics of a pair (cleared when the pair goes).
pub const STATE_LEAVES: [&str; 4] = ["active", "state", "last", "count"];

/// A stream and an event that at least one alert wires together.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pair {
    pub stream: String,
    pub event: String,
}

impl Pair {
    /// `sightline/<stream>/<event>/<leaf>`.
    pub fn topic(&self, leaf: &str) -> String {
        format!("{BASE}/{}/{}/{leaf}", self.stream, self.event)
    }
}

/// What a pair is made of: the event's label, the stream's name, and the
/// alerts (id, enabled) that wire them.
#[derive(Debug, Clone, PartialEq)]
pub struct Wired {
    pub label: String,
    pub stream_name: String,
    pub alerts: Vec<(String, bool)>,
}

impl Wired {
    /// The switch's state: on while any of the pair's alerts is enabled.
    pub fn enabled(&self) -> bool {
        self.alerts.iter().any(|(_, on)| *on)
    }
}

/// Parses a command topic back into its pair.
pub fn parse_command(topic: &str) -> Option<Pair> {
    let mut parts = topic.split('/');
    let (base, stream, event, leaf) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if base != BASE || leaf != "set" || parts.next().is_some() {
        return None;
    }
    if stream.is_empty() || event.is_empty() {
        return None;
    }
    Some(Pair {
        stream: stream.into(),
        event: event.into(),
    })
}

/// `ON` or `OFF` (any case, surrounding blanks ignored).
pub fn parse_switch(payload: &[u8]) -> Option<bool> {
    let text = std::str::from_utf8(payload).ok()?.trim();
    if text.eq_ignore_ascii_case("on") {
        Some(true)
    } else if text.eq_ignore_ascii_case("off") {
        Some(false)
    } else {
        None
    }
}

/// `ON`/`OFF`.
pub fn switch_payload(on: bool) -> &'static str {
    if on {
        "ON"
    } else {
        "OFF"
    }
}

/// Home Assistant's node and object ids allow only `[a-zA-Z0-9_-]`; the
/// ids sightline allows may also hold `.`.
fn object_id(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Where discovery looks, and what every entity shares.
pub struct Announce<'a> {
    /// The discovery prefix (`homeassistant`).
    pub prefix: &'a str,
    /// The daemon's availability topic (`sightline/status`).
    pub status_topic: &'a str,
}

impl Announce<'_> {
    /// The discovery config topic of one of a pair's entities.
    fn config_topic(&self, component: &str, p: &Pair, kind: &str) -> String {
        format!(
            "{}/{component}/sightline_{}/{}_{kind}/config",
            self.prefix,
            object_id(&p.stream),
            object_id(&p.event)
        )
    }

    /// The discovery messages of every pair: config topic → JSON payload.
    pub fn messages(&self, pairs: &BTreeMap<Pair, Wired>) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (p, w) in pairs {
            for (component, kind, mut entity) in entities(p, w) {
                let unique = format!("sightline_{}_{}_{kind}", p.stream, p.event);
                let fields = entity.as_object_mut().expect("entities are objects");
                fields.insert("unique_id".into(), json!(unique));
                fields.insert("object_id".into(), json!(object_id(&unique)));
                fields.insert("availability_topic".into(), json!(self.status_topic));
                fields.insert("payload_available".into(), json!("online"));
                fields.insert("payload_not_available".into(), json!("offline"));
                fields.insert("device".into(), device(p, w));
                fields.insert("origin".into(), origin());
                out.insert(self.config_topic(component, p, kind), entity.to_string());
            }
        }
        out
    }
}

/// A stream as a Home Assistant device.
fn device(p: &Pair, w: &Wired) -> Value {
    json!({
        "identifiers": [format!("sightline_{}", p.stream)],
        "name": w.stream_name,
        "manufacturer": "sightline",
        "model": "camera stream",
        "sw_version": env!("CARGO_PKG_VERSION"),
    })
}

/// Who published the discovery message.
fn origin() -> Value {
    json!({
        "name": "sightline",
        "sw_version": env!("CARGO_PKG_VERSION"),
    })
}

/// A pair's entities: (component, kind, fields particular to it).
fn entities(p: &Pair, w: &Wired) -> [(&'static str, &'static str, Value); 5] {
    let label = &w.label;
    [
        (
            "binary_sensor",
            "active",
            json!({
                "name": label,
                "state_topic": p.topic("active"),
                "payload_on": "ON",
                "payload_off": "OFF",
            }),
        ),
        (
            "sensor",
            "last",
            json!({
                "name": format!("{label} last alert"),
                "state_topic": p.topic("last"),
                "value_template": "{{ value_json.timestamp }}",
                "json_attributes_topic": p.topic("last"),
                "device_class": "timestamp",
            }),
        ),
        (
            "sensor",
            "count",
            json!({
                "name": format!("{label} count"),
                "state_topic": p.topic("count"),
                "state_class": "measurement",
                "icon": "mdi:counter",
            }),
        ),
        (
            "switch",
            "alert",
            json!({
                "name": format!("{label} alerts"),
                "command_topic": p.topic("set"),
                "state_topic": p.topic("state"),
                "payload_on": "ON",
                "payload_off": "OFF",
                "icon": "mdi:bell",
            }),
        ),
        (
            "image",
            "snapshot",
            json!({
                "name": format!("{label} snapshot"),
                "image_topic": snapshot_topic(&p.stream, label),
                "content_type": "image/jpeg",
            }),
        ),
    ]
}

/// Where the latest snapshot of a stream's label is kept (retained JPEG).
pub fn snapshot_topic(stream: &str, label: &str) -> String {
    format!("{BASE}/{stream}/{label}/snapshot")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_and_nothing_else_does() {
        let p = parse_command("sightline/gate/person/set").expect("a command");
        assert_eq!((p.stream.as_str(), p.event.as_str()), ("gate", "person"));
        for t in [
            "sightline/gate/person/state",
            "sightline/gate/set",
            "other/gate/person/set",
            "sightline/gate/person/set/x",
            "sightline//person/set",
        ] {
            assert_eq!(parse_command(t), None, "{t}");
        }
        assert_eq!(parse_switch(b" on\n"), Some(true));
        assert_eq!(parse_switch(b"OFF"), Some(false));
        assert_eq!(parse_switch(b"toggle"), None);
        assert_eq!(parse_switch(&[0xff]), None);
    }

    #[test]
    fn ids_with_dots_make_valid_object_ids() {
        assert_eq!(object_id("cam.1-a"), "cam_1-a");
        let a = Announce {
            prefix: "homeassistant",
            status_topic: "sightline/status",
        };
        let p = Pair {
            stream: "cam.1".into(),
            event: "person".into(),
        };
        assert_eq!(
            a.config_topic("switch", &p, "alert"),
            "homeassistant/switch/sightline_cam_1/person_alert/config"
        );
    }
}
