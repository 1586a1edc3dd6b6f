//! The request bodies of the API, as the SDK (and sightline's extensions)
//! send them, and the checks that need nothing but the body: names and
//! text fields, extraction settings, thresholds and windows. Each becomes
//! a definition or request of the control plane, which checks what needs
//! the daemon's state (the loaded models, the source policy, the catalog,
//! open WebSocket connections) before anything is written.

use serde::Deserialize;

use crate::config::{self, RawAlert, RawEvent, RawStream};
use crate::control::{Backtest, IndexRequest, Refusal, Search};
use crate::store::Batch;

/// `POST rtstream`: the SDK's `connect_rtstream` body plus sightline's
/// stream settings. Fields the SDK sends that do not apply here
/// (`collection_id`, `store`, `enable_transcript`) are accepted and ignored.
#[derive(Debug, Deserialize)]
pub struct NewStream {
    pub url: String,
    pub name: String,
    pub media_types: Option<Vec<String>>,
    /// Frames per second scored (VideoDB's name); `fps` wins when both are given.
    pub sample_rate: Option<f64>,
    pub fps: Option<f64>,
    pub keyframes_only: Option<bool>,
    pub transport: Option<String>,
    pub stall_timeout_secs: Option<f64>,
    pub max_backoff_secs: Option<f64>,
    /// Recorded instead of `url` (the camera's main stream).
    pub record_url: Option<String>,
    /// Record it (default: when an alert is wired to it).
    pub record: Option<bool>,
    /// Motion gating (`[streams.motion]`).
    pub motion: Option<config::RawMotion>,
    /// In a site: the box, or box label, it must run on.
    pub pin: Option<String>,
}

impl NewStream {
    /// The stream's name and definition (without an id: the control plane
    /// gives it one, then checks it as a config file's stream).
    pub fn check(self) -> Result<(String, RawStream), Refusal> {
        if let Some(m) = &self.media_types {
            if !m.iter().any(|t| t == "video") {
                return Err(Refusal::Invalid(
                    "media_types must include \"video\": sightline scores pictures only".into(),
                ));
            }
        }
        if self.name.trim().is_empty() || self.name.len() > 200 || !config::plain_text(&self.name) {
            return Err(Refusal::Invalid(
                "name must be 1-200 characters, with no control characters".into(),
            ));
        }
        let spec = RawStream {
            id: None,
            url: Some(self.url),
            fps: self.fps.or(self.sample_rate),
            keyframes_only: self.keyframes_only,
            transport: self.transport,
            stall_timeout_secs: self.stall_timeout_secs,
            max_backoff_secs: self.max_backoff_secs,
            record_url: self.record_url,
            record: self.record,
            motion: self.motion,
            pin: self.pin,
        };
        Ok((self.name, spec))
    }
}

/// `PATCH rtstream/{id}`: a running stream's new sampling. A change of only
/// these is applied to the live pipeline, without rebuilding it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSampling {
    /// Frames per second sent to the model.
    pub sample_rate: Option<f64>,
    /// Drop non-key frames before the decoder.
    pub keyframes_only: Option<bool>,
}

/// `POST rtstream/{id}/index/scene`: the SDK's `index_visuals` body.
#[derive(Debug, Deserialize)]
pub struct NewIndex {
    pub extraction_type: Option<String>,
    pub extraction_config: Option<ExtractionConfig>,
    pub prompt: Option<String>,
    pub name: Option<String>,
    pub ws_connection_id: Option<String>,
}

/// Batch settings of an index: a record per `time` seconds, or per
/// `frame_count` frames if that comes first.
#[derive(Debug, Deserialize)]
pub struct ExtractionConfig {
    pub time: Option<f64>,
    pub frame_count: Option<i64>,
}

impl NewIndex {
    /// Checks the extraction settings and the text fields.
    pub fn check(self) -> Result<IndexRequest, Refusal> {
        let batch = self.batch()?;
        for (what, text) in [("name", &self.name), ("prompt", &self.prompt)] {
            if text
                .as_deref()
                .is_some_and(|t| !config::plain_text(t) || t.len() > 2000)
            {
                return Err(Refusal::Invalid(format!(
                    "{what} must be up to 2000 bytes, with no control characters"
                )));
            }
        }
        Ok(IndexRequest {
            name: self.name,
            prompt: self.prompt,
            batch,
            ws_connection: self.ws_connection_id,
        })
    }

    /// The batch the extraction settings describe.
    fn batch(&self) -> Result<Batch, Refusal> {
        if let Some(t) = self.extraction_type.as_deref() {
            if t != "time" {
                return Err(Refusal::Invalid(format!(
                    "extraction_type {t:?} is not supported; use \"time\""
                )));
            }
        }
        let cfg = self.extraction_config.as_ref();
        let time = cfg.and_then(|c| c.time).unwrap_or(1.0);
        if !(time.is_finite() && time > 0.0 && time <= 3600.0) {
            return Err(Refusal::Invalid(format!(
                "extraction_config.time must be between 0 and 3600 seconds, got {time}"
            )));
        }
        let frames = cfg.and_then(|c| c.frame_count).unwrap_or(0);
        if !(0..=10_000).contains(&frames) {
            return Err(Refusal::Invalid(format!(
                "extraction_config.frame_count must be between 0 and 10000, got {frames}"
            )));
        }
        Ok(Batch {
            time,
            frame_count: frames as u32,
        })
    }
}

/// `POST rtstream/event`: the SDK's `create_event` body plus the matching
/// settings of a config-file event.
#[derive(Debug, Deserialize)]
pub struct NewEvent {
    pub event_prompt: String,
    pub label: String,
    #[serde(flatten)]
    pub rest: RawEvent,
}

impl NewEvent {
    /// The event's definition (without an id); the control plane checks it
    /// and compiles it against the loaded models.
    pub fn definition(self) -> RawEvent {
        RawEvent {
            id: None,
            prompt: Some(self.event_prompt),
            label: Some(self.label),
            ..self.rest
        }
    }
}

/// `POST rtstream/{id}/index/{index}/alert`: the SDK's `create_alert` body
/// plus sightline's MQTT and signing extensions.
#[derive(Debug, Deserialize)]
pub struct NewAlert {
    pub event_id: String,
    pub callback_url: Option<String>,
    pub ws_connection_id: Option<String>,
    /// Also publish over MQTT (needs `[mqtt]` in the config).
    pub mqtt: Option<bool>,
    pub mqtt_topic: Option<String>,
    pub webhook_secrets: Option<Vec<String>>,
    pub send_end: Option<bool>,
}

impl NewAlert {
    /// The alert's definition (the control plane gives it an id and its
    /// index's stream) and the WebSocket connection it also goes to.
    pub fn check(self) -> Result<(RawAlert, Option<String>), Refusal> {
        if let Some(u) = &self.callback_url {
            config::check_callback_url(u).map_err(Refusal::Invalid)?;
        }
        let def = RawAlert {
            event: Some(self.event_id),
            callback_url: self.callback_url,
            webhook_secrets: self.webhook_secrets,
            mqtt: Some(self.mqtt.unwrap_or(self.mqtt_topic.is_some())),
            mqtt_topic: self.mqtt_topic,
            send_end: self.send_end,
            enabled: Some(true),
            ..RawAlert::default()
        };
        Ok((def, self.ws_connection_id))
    }
}

/// `POST rtstream/{id}/search`: the SDK's `rtstream.search` body.
#[derive(Debug, Deserialize)]
pub struct SearchQuery {
    pub query: String,
    /// Most ranges returned (default 10, at most 1000).
    pub result_threshold: Option<usize>,
    /// Lowest calibrated score of a frame that counts (default 0.5).
    pub score_threshold: Option<f32>,
    /// Competing prompts besides the background set.
    pub negatives: Option<Vec<String>>,
    /// Only frames from this Unix time on / up to this Unix time.
    pub from: Option<f64>,
    pub to: Option<f64>,
    /// Sent by the SDK; frames are searched whatever index they belong to.
    pub scene_index_id: Option<serde_json::Value>,
    pub dynamic_score_percentage: Option<serde_json::Value>,
    pub filter: Option<serde_json::Value>,
}

impl SearchQuery {
    pub fn check(self) -> Result<Search, Refusal> {
        let threshold = self.score_threshold.unwrap_or(0.5);
        if !(0.0..=1.0).contains(&threshold) {
            return Err(Refusal::Invalid(
                "score_threshold must be within 0..1".into(),
            ));
        }
        Ok(Search {
            window: window(self.from, self.to)?,
            query: self.query,
            negatives: self.negatives,
            threshold,
            limit: self.result_threshold.unwrap_or(10).clamp(1, 1000),
        })
    }
}

/// `POST rtstream/{id}/backtest`: an existing event by id, or an event's
/// definition (`event_prompt` or `prompt`, with any matching settings).
#[derive(Debug, Deserialize)]
pub struct BacktestQuery {
    pub event_id: Option<String>,
    pub event_prompt: Option<String>,
    pub from: Option<f64>,
    pub to: Option<f64>,
    #[serde(flatten)]
    pub rest: RawEvent,
}

impl BacktestQuery {
    pub fn check(self) -> Result<Backtest, Refusal> {
        let window = window(self.from, self.to)?;
        Ok(match self.event_id {
            Some(id) => Backtest::Event { id, window },
            None => {
                let mut spec = self.rest;
                if let Some(p) = self.event_prompt {
                    spec.prompt = Some(p);
                }
                Backtest::Definition {
                    spec: Box::new(spec),
                    window,
                }
            }
        })
    }
}

/// `from` and `to` (Unix seconds, either open) as a Unix ms range.
fn window(from: Option<f64>, to: Option<f64>) -> Result<(i64, i64), Refusal> {
    let ms = |v: f64| (v * 1000.0) as i64;
    let (from, to) = (from.map_or(i64::MIN, ms), to.map_or(i64::MAX, ms));
    if from > to {
        return Err(Refusal::Invalid("from must not be after to".into()));
    }
    Ok((from, to))
}
