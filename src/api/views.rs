//! What the API answers with: one typed view per kind of thing, built from
//! the catalog's rows. Field names are the SDK's (videodb 0.5.1) where it
//! reads them; the others are sightline's.

use serde::Serialize;

use crate::alert::payload::redact;
use crate::control::{Catalog, Engine, Health};
use crate::scene::embeddings::Hit;
use crate::store::{AlertRow, EventRow, IndexRow, Origin, OutboxRow, StreamRow};

fn status_word(on: bool) -> &'static str {
    if on {
        "connected"
    } else {
        "stopped"
    }
}

/// A stream (the SDK's `RTStream`).
#[derive(Serialize)]
pub struct StreamView {
    pub id: String,
    pub name: String,
    pub collection_id: &'static str,
    pub created_at: String,
    pub sample_rate: f64,
    pub status: &'static str,
    pub url: String,
    pub stream_url: Option<String>,
    pub player_url: Option<String>,
    pub keyframes_only: bool,
    pub health: Health,
    pub origin: Origin,
    /// In a site: the box that runs it (none while it fits on no box).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
}

/// Where a stream runs in a site.
#[derive(Serialize)]
pub struct Owner {
    pub box_id: Option<String>,
}

impl StreamView {
    pub fn of(e: &Engine, s: &StreamRow) -> StreamView {
        StreamView {
            id: s.id.clone(),
            name: s.name.clone(),
            collection_id: "default",
            created_at: s.created_at.clone(),
            sample_rate: s.spec.fps.unwrap_or(2.0),
            status: status_word(s.running),
            url: redact(s.spec.url.as_deref().unwrap_or("")),
            stream_url: None,
            player_url: None,
            keyframes_only: s.spec.keyframes_only.unwrap_or(false),
            health: Self::health(e, &s.id),
            origin: s.origin,
            owner: e.site().map(|site| Owner {
                box_id: site.owner(&s.id),
            }),
        }
    }

    /// A stream's health: from this box when it runs it, else as the box
    /// running it last reported.
    fn health(e: &Engine, id: &str) -> Health {
        match e.site() {
            Some(site) if site.owner(id).is_some_and(|o| o != site.box_id()) => {
                site.remote_health(id).unwrap_or_default()
            }
            _ => e.health(id),
        }
    }
}

/// Batch settings as the SDK sends them.
#[derive(Serialize)]
pub struct ExtractionView {
    pub time: f64,
    pub frame_count: u32,
}

/// A scene index (the SDK's `RTStreamSceneIndex`).
#[derive(Serialize)]
pub struct IndexView {
    pub rtstream_index_id: String,
    pub rtstream_id: String,
    pub extraction_type: &'static str,
    pub extraction_config: ExtractionView,
    pub prompt: Option<String>,
    pub name: Option<String>,
    pub status: &'static str,
    pub ws_connection_id: Option<String>,
    pub created_at: String,
}

impl From<&IndexRow> for IndexView {
    fn from(i: &IndexRow) -> IndexView {
        IndexView {
            rtstream_index_id: i.id.clone(),
            rtstream_id: i.stream_id.clone(),
            extraction_type: "time",
            extraction_config: ExtractionView {
                time: i.batch.time,
                frame_count: i.batch.frame_count,
            },
            prompt: i.prompt.clone(),
            name: i.name.clone(),
            status: status_word(i.running),
            ws_connection_id: i.ws_connection.clone(),
            created_at: i.created_at.clone(),
        }
    }
}

/// An event (detection rule).
#[derive(Serialize)]
pub struct EventView {
    pub event_id: String,
    pub event_prompt: Option<String>,
    pub label: String,
    pub classes: Option<Vec<String>>,
    /// The loaded model that scores it (null if it does not compile).
    pub model: Option<String>,
    pub origin: Origin,
    pub created_at: String,
}

impl EventView {
    /// The view of an event, with the model the engine routed it to.
    pub fn of(e: &EventRow, engine: &crate::control::Engine) -> EventView {
        EventView {
            event_id: e.id.clone(),
            event_prompt: e.spec.prompt.clone(),
            label: e.spec.label.clone().unwrap_or_else(|| e.id.clone()),
            classes: e.spec.classes.clone(),
            model: engine.model_of(&e.id).map(|m| m.to_string()),
            origin: e.origin,
            created_at: e.created_at.clone(),
        }
    }
}

/// An alert.
#[derive(Serialize)]
pub struct AlertView {
    pub alert_id: String,
    pub event_id: String,
    pub label: Option<String>,
    pub status: &'static str,
    pub callback_url: Option<String>,
    pub ws_connection_id: Option<String>,
    pub rtstream_id: Option<String>,
    pub rtstream_index_id: Option<String>,
    pub streams: Option<Vec<String>>,
    pub mqtt: bool,
    pub mqtt_topic: Option<String>,
    pub send_end: bool,
    pub origin: Origin,
    pub created_at: String,
}

impl AlertView {
    pub fn of(cat: &Catalog, a: &AlertRow) -> AlertView {
        let event = a.spec.event.clone().unwrap_or_default();
        AlertView {
            alert_id: a.id.clone(),
            label: cat.events.get(&event).and_then(|e| e.spec.label.clone()),
            event_id: event,
            status: if a.enabled { "enabled" } else { "disabled" },
            callback_url: a.spec.callback_url.clone(),
            ws_connection_id: a.ws_connection.clone(),
            rtstream_id: a
                .index_id
                .as_ref()
                .and_then(|i| cat.indexes.get(i))
                .map(|i| i.stream_id.clone()),
            rtstream_index_id: a.index_id.clone(),
            streams: a.spec.streams.clone(),
            mqtt: a.spec.mqtt.unwrap_or(false),
            mqtt_topic: a.spec.mqtt_topic.clone(),
            send_end: a.spec.send_end.unwrap_or(true),
            origin: a.origin,
            created_at: a.created_at.clone(),
        }
    }
}

/// Stream times of a search range.
#[derive(Serialize)]
pub struct ShotTimes {
    pub start_time: f64,
    pub end_time: f64,
    pub frames: usize,
}

/// One search range in the SDK's shot shape.
#[derive(Serialize)]
pub struct ShotView {
    pub start: f64,
    pub end: f64,
    pub score: f32,
    pub text: String,
    pub scene_index_id: Option<String>,
    pub scene_index_name: Option<String>,
    pub metadata: ShotTimes,
}

impl ShotView {
    pub fn of(h: &Hit, query: &str) -> ShotView {
        ShotView {
            start: h.start,
            end: h.end,
            score: h.score,
            text: query.to_string(),
            scene_index_id: None,
            scene_index_name: None,
            metadata: ShotTimes {
                start_time: h.stream_start,
                end_time: h.stream_end,
                frames: h.frames,
            },
        }
    }
}

/// A dead letter (credentials stripped from its target).
#[derive(Serialize)]
pub struct DeadLetterView {
    pub seq: i64,
    pub target: String,
    pub message_id: String,
    pub alert_id: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub created_at_ms: i64,
}

impl From<&OutboxRow> for DeadLetterView {
    fn from(r: &OutboxRow) -> DeadLetterView {
        DeadLetterView {
            seq: r.seq,
            target: redact(&r.target),
            message_id: r.message_id.clone(),
            alert_id: r.alert_id.clone(),
            attempts: r.attempts,
            last_error: r.last_error.clone(),
            created_at_ms: r.created_at,
        }
    }
}
