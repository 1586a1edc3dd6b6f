//! Changes to the catalog: create, start/stop, enable/disable, delete. Each
//! validates fully before it writes, so a refused change leaves both the
//! database and the running daemon as they were.

use std::sync::Arc;

use serde::Deserialize;

use super::compile_event;
use super::{problems, Catalog, Engine, Refusal};
use crate::config::{self, RawEvent, RawStream};
use crate::domain::SourceUrl;
use crate::model::ModelSet;
use crate::store::{
    AlertDef, AlertRow, Batch, EventRow, IndexRow, Origin, Outbox, StreamRow, Table,
};

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
    pub motion: Option<crate::config::RawMotion>,
}

/// `PATCH rtstream/{id}`: a running stream's new sampling. A change of only
/// these is applied to the live pipeline, without rebuilding it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sampling {
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

/// `POST rtstream/event`: the SDK's `create_event` body plus the matching
/// settings of a config-file event.
#[derive(Debug, Deserialize)]
pub struct NewEvent {
    pub event_prompt: String,
    pub label: String,
    #[serde(flatten)]
    pub rest: RawEvent,
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

impl NewStream {
    /// Checks the body; returns the name and the stream definition for `id`.
    /// Local sources (`file://`, `test:`) pass only when `allow_local` is
    /// set: an API caller should not make the daemon open files on the box.
    pub fn validate(self, id: &str, allow_local: bool) -> Result<(String, RawStream), Refusal> {
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
            id: Some(id.to_string()),
            url: Some(self.url),
            fps: self.fps.or(self.sample_rate),
            keyframes_only: self.keyframes_only,
            transport: self.transport,
            stall_timeout_secs: self.stall_timeout_secs,
            max_backoff_secs: self.max_backoff_secs,
            record_url: self.record_url,
            record: self.record,
            motion: self.motion,
        };
        let checked = config::check_stream(&spec).map_err(problems)?;
        let local = |u: &SourceUrl| !matches!(u, SourceUrl::Rtsp(_));
        if !allow_local && checked.record_url.as_ref().is_some_and(local) {
            return Err(Refusal::Invalid(
                "record_url: the API records rtsp:// and rtsps:// cameras only".into(),
            ));
        }
        if !allow_local && !matches!(checked.url, SourceUrl::Rtsp(_)) {
            return Err(Refusal::Invalid(format!(
                "url {}: the API adds rtsp:// and rtsps:// cameras; file:// and test: sources \
                 need [api] allow_local_sources = true (or a [[streams]] entry in the config file)",
                checked.url
            )));
        }
        Ok((self.name, spec))
    }
}

impl NewIndex {
    /// Checks the extraction settings; returns the batch they describe.
    pub fn batch(&self) -> Result<Batch, Refusal> {
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

impl NewEvent {
    /// Checks the body against the loaded model; returns the definition for `id`.
    pub fn validate(self, id: &str, models: &ModelSet) -> Result<RawEvent, Refusal> {
        self.compile(id, models).map(|(raw, _)| raw)
    }

    /// The definition for `id` and what it compiles to on the loaded models.
    pub fn compile(
        self,
        id: &str,
        models: &ModelSet,
    ) -> Result<(RawEvent, crate::matcher::CompiledEvent), Refusal> {
        let mut spec = self.rest;
        spec.id = Some(id.to_string());
        spec.prompt = Some(self.event_prompt);
        spec.label = Some(self.label);
        let cfg = config::check_event(&spec).map_err(problems)?;
        let compiled = compile_event(&cfg, models).map_err(Refusal::Invalid)?;
        Ok((spec, compiled))
    }
}

fn new_id(prefix: &str) -> String {
    let u = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &u[..12])
}

fn not_found(kind: &str, id: &str) -> Refusal {
    Refusal::NotFound(format!("no {kind} with id {id:?}"))
}

impl Engine {
    /// Writes one entity row, puts it in the catalog (in `table` of the
    /// database, `place` of the catalog) and applies the result.
    async fn save<T>(
        &self,
        cat: tokio::sync::MutexGuard<'_, Catalog>,
        table: Table,
        id: &str,
        row: T,
        place: fn(&mut Catalog) -> &mut std::collections::BTreeMap<String, T>,
    ) -> Result<T, Refusal>
    where
        T: serde::Serialize + Clone + Send + 'static,
    {
        let (key, r) = (id.to_string(), row.clone());
        self.persist(move |s| s.put(table, &key, &r)).await?;
        let mut next = cat.clone();
        place(&mut next).insert(id.to_string(), row.clone());
        self.commit(cat, next).await;
        Ok(row)
    }

    /// Puts `next` in force: the catalog lock is released before the
    /// applier starts or stops anything.
    async fn commit(&self, mut cat: tokio::sync::MutexGuard<'_, Catalog>, next: Catalog) {
        *cat = next;
        drop(cat);
        self.apply_latest().await;
    }

    /// Connects a new stream and starts it.
    pub async fn create_stream(&self, b: NewStream) -> Result<StreamRow, Refusal> {
        let id = new_id("rts");
        let (name, spec) = b.validate(&id, self.parts.allow_local_sources)?;
        let row = StreamRow {
            id: id.clone(),
            name,
            spec: spec.into(),
            running: true,
            origin: Origin::Api,
            created_at: self.now(),
        };
        let cat = self.catalog.lock().await;
        self.save(cat, Table::Streams, &id, row, |c| &mut c.streams)
            .await
    }

    /// Changes an API-created stream's sampling rate or keyframe mode; the
    /// running pipeline takes it from its next frame on.
    pub async fn set_sampling(&self, id: &str, b: Sampling) -> Result<StreamRow, Refusal> {
        let cat = self.catalog.lock().await;
        let mut row = cat
            .streams
            .get(id)
            .cloned()
            .ok_or_else(|| not_found("rtstream", id))?;
        if row.origin == Origin::Config {
            return Err(Refusal::Conflict(format!(
                "rtstream {id:?} is declared in the config file; change its sampling there"
            )));
        }
        if let Some(fps) = b.sample_rate {
            row.spec.fps = Some(fps);
        }
        if let Some(k) = b.keyframes_only {
            row.spec.keyframes_only = Some(k);
        }
        let mut check: RawStream = row.spec.clone().into();
        check.id = Some(id.to_string());
        config::check_stream(&check).map_err(problems)?;
        self.save(cat, Table::Streams, id, row, |c| &mut c.streams)
            .await
    }

    /// Starts or stops a stream.
    pub async fn set_stream_running(&self, id: &str, running: bool) -> Result<StreamRow, Refusal> {
        let cat = self.catalog.lock().await;
        let mut row = cat
            .streams
            .get(id)
            .cloned()
            .ok_or_else(|| not_found("rtstream", id))?;
        row.running = running;
        self.save(cat, Table::Streams, id, row, |c| &mut c.streams)
            .await
    }

    /// Deletes an API-created stream with its indexes and their alerts.
    pub async fn delete_stream(&self, id: &str) -> Result<(), Refusal> {
        let cat = self.catalog.lock().await;
        let row = cat
            .streams
            .get(id)
            .ok_or_else(|| not_found("rtstream", id))?;
        if row.origin == Origin::Config {
            return Err(Refusal::Conflict(format!(
                "rtstream {id:?} is declared in the config file; remove it there, or stop it"
            )));
        }
        let mut next = cat.clone();
        next.streams.remove(id);
        self.parts.embeddings.remove(id);
        {
            let id = id.to_string();
            self.persist(move |s| s.delete_embeddings(&id)).await?;
        }
        let indexes: Vec<String> = next
            .indexes
            .values()
            .filter(|i| i.stream_id == id)
            .map(|i| i.id.clone())
            .collect();
        let mut gone = vec![(Table::Streams, id.to_string())];
        for ix in &indexes {
            next.indexes.remove(ix);
            gone.push((Table::Indexes, ix.clone()));
        }
        let alerts: Vec<String> = next
            .alerts
            .values()
            .filter(|a| a.index_id.as_ref().is_some_and(|i| indexes.contains(i)))
            .map(|a| a.id.clone())
            .collect();
        for a in alerts {
            next.alerts.remove(&a);
            gone.push((Table::Alerts, a));
        }
        self.persist(move |s| s.delete(&gone)).await?;
        self.commit(cat, next).await;
        Ok(())
    }

    /// Creates a scene index on a stream.
    pub async fn create_index(&self, stream: &str, b: NewIndex) -> Result<IndexRow, Refusal> {
        let batch = b.batch()?;
        for (what, text) in [("name", &b.name), ("prompt", &b.prompt)] {
            if text
                .as_deref()
                .is_some_and(|t| !config::plain_text(t) || t.len() > 2000)
            {
                return Err(Refusal::Invalid(format!(
                    "{what} must be up to 2000 bytes, with no control characters"
                )));
            }
        }
        if let Some(ws) = &b.ws_connection_id {
            self.check_ws(ws)?;
        }
        let cat = self.catalog.lock().await;
        if !cat.streams.contains_key(stream) {
            return Err(not_found("rtstream", stream));
        }
        let id = new_id("idx");
        let row = IndexRow {
            id: id.clone(),
            stream_id: stream.to_string(),
            name: b.name,
            prompt: b.prompt,
            batch,
            running: true,
            ws_connection: b.ws_connection_id,
            origin: Origin::Api,
            created_at: self.now(),
        };
        self.save(cat, Table::Indexes, &id, row, |c| &mut c.indexes)
            .await
    }

    /// Looks up an index of a stream.
    pub fn index_of<'c>(
        cat: &'c Catalog,
        stream: &str,
        index: &str,
    ) -> Result<&'c IndexRow, Refusal> {
        if !cat.streams.contains_key(stream) {
            return Err(not_found("rtstream", stream));
        }
        cat.indexes
            .get(index)
            .filter(|i| i.stream_id == stream)
            .ok_or_else(|| not_found("scene index", index))
    }

    /// Starts or stops a scene index (its alerts pause with it).
    pub async fn set_index_running(
        &self,
        stream: &str,
        index: &str,
        running: bool,
    ) -> Result<IndexRow, Refusal> {
        let cat = self.catalog.lock().await;
        let mut row = Self::index_of(&cat, stream, index)?.clone();
        row.running = running;
        self.save(cat, Table::Indexes, index, row, |c| &mut c.indexes)
            .await
    }

    /// Creates an event after checking the loaded model can score its prompt.
    pub async fn create_event(&self, b: NewEvent) -> Result<EventRow, Refusal> {
        let id = new_id("ev");
        // A dual encoder runs its text encoder here: off the async threads.
        let (models, event_id) = (Arc::clone(&self.parts.models), id.clone());
        let spec = tokio::task::spawn_blocking(move || b.validate(&event_id, &models))
            .await
            .map_err(|e| Refusal::Internal(e.to_string()))??;
        let row = EventRow {
            id: id.clone(),
            spec: spec.into(),
            origin: Origin::Api,
            created_at: self.now(),
        };
        let cat = self.catalog.lock().await;
        self.save(cat, Table::Events, &id, row, |c| &mut c.events)
            .await
    }

    /// What an event would compile to (its model, and the labels or the
    /// free text it scores), without saving it.
    pub async fn preview_event(
        &self,
        b: NewEvent,
    ) -> Result<crate::matcher::CompiledEvent, Refusal> {
        let models = Arc::clone(&self.parts.models);
        tokio::task::spawn_blocking(move || b.compile("preview", &models))
            .await
            .map_err(|e| Refusal::Internal(e.to_string()))?
            .map(|(_, c)| c)
    }

    /// Deletes an API-created event no alert uses.
    pub async fn delete_event(&self, id: &str) -> Result<(), Refusal> {
        let cat = self.catalog.lock().await;
        let row = cat.events.get(id).ok_or_else(|| not_found("event", id))?;
        if row.origin == Origin::Config {
            return Err(Refusal::Conflict(format!(
                "event {id:?} is declared in the config file; remove it there"
            )));
        }
        if let Some(a) = cat
            .alerts
            .values()
            .find(|a| a.spec.event.as_deref() == Some(id))
        {
            return Err(Refusal::Conflict(format!(
                "event {id:?} is used by alert {:?}; delete that first",
                a.id
            )));
        }
        let gone = [(Table::Events, id.to_string())];
        self.persist(move |s| s.delete(&gone)).await?;
        let mut next = cat.clone();
        next.events.remove(id);
        self.commit(cat, next).await;
        Ok(())
    }

    fn check_ws(&self, id: &str) -> Result<(), Refusal> {
        if self.parts.hub.is_connected(id) {
            Ok(())
        } else {
            Err(Refusal::Invalid(format!(
                "ws_connection_id {id:?} is not an open WebSocket connection"
            )))
        }
    }

    /// Wires an event to an index's stream and to delivery targets.
    pub async fn create_alert(
        &self,
        stream: &str,
        index: &str,
        b: NewAlert,
    ) -> Result<AlertRow, Refusal> {
        if let Some(u) = &b.callback_url {
            config::check_callback_url(u).map_err(Refusal::Invalid)?;
            let url = reqwest::Url::parse(u).map_err(|e| Refusal::Invalid(e.to_string()))?;
            // Literal addresses are refused now; names are checked on every
            // delivery, on the addresses they resolve to then.
            if let Some(Err(why)) = self.parts.guard.check_url(&url) {
                return Err(Refusal::Invalid(format!("callback_url refused: {why}")));
            }
        }
        if let Some(ws) = &b.ws_connection_id {
            self.check_ws(ws)?;
        }
        let cat = self.catalog.lock().await;
        Self::index_of(&cat, stream, index)?;
        if !cat.events.contains_key(&b.event_id) {
            return Err(Refusal::Invalid(format!(
                "no event with id {:?}",
                b.event_id
            )));
        }
        let id = new_id("alr");
        let row = AlertRow {
            id: id.clone(),
            index_id: Some(index.to_string()),
            spec: AlertDef {
                id: Some(id.clone()),
                event: Some(b.event_id),
                streams: Some(vec![stream.to_string()]),
                callback_url: b.callback_url,
                webhook_secrets: b.webhook_secrets,
                mqtt: Some(b.mqtt.unwrap_or(b.mqtt_topic.is_some())),
                mqtt_topic: b.mqtt_topic,
                send_end: b.send_end,
                enabled: Some(true),
            },
            ws_connection: b.ws_connection_id,
            enabled: true,
            origin: Origin::Api,
            created_at: self.now(),
        };
        self.alert_spec(&cat, &row)?;
        self.save(cat, Table::Alerts, &id, row, |c| &mut c.alerts)
            .await
    }

    /// Looks up an alert; with `index`, it must hang under that index.
    fn alert_of<'c>(
        cat: &'c Catalog,
        index: Option<&str>,
        id: &str,
    ) -> Result<&'c AlertRow, Refusal> {
        cat.alerts
            .get(id)
            .filter(|a| index.is_none_or(|i| a.index_id.as_deref() == Some(i)))
            .ok_or_else(|| not_found("alert", id))
    }

    /// Enables or disables an alert.
    pub async fn set_alert_enabled(
        &self,
        scope: Option<(&str, &str)>,
        id: &str,
        enabled: bool,
    ) -> Result<AlertRow, Refusal> {
        let cat = self.catalog.lock().await;
        if let Some((s, i)) = scope {
            Self::index_of(&cat, s, i)?;
        }
        let mut row = Self::alert_of(&cat, scope.map(|s| s.1), id)?.clone();
        row.enabled = enabled;
        self.save(cat, Table::Alerts, id, row, |c| &mut c.alerts)
            .await
    }

    /// Deletes an API-created alert.
    pub async fn delete_alert(&self, scope: Option<(&str, &str)>, id: &str) -> Result<(), Refusal> {
        let cat = self.catalog.lock().await;
        if let Some((s, i)) = scope {
            Self::index_of(&cat, s, i)?;
        }
        let row = Self::alert_of(&cat, scope.map(|s| s.1), id)?;
        if row.origin == Origin::Config {
            return Err(Refusal::Conflict(format!(
                "alert {id:?} is declared in the config file; remove it there, or disable it"
            )));
        }
        let gone = [(Table::Alerts, id.to_string())];
        self.persist(move |s| s.delete(&gone)).await?;
        let mut next = cat.clone();
        next.alerts.remove(id);
        self.commit(cat, next).await;
        Ok(())
    }
}

impl Engine {
    /// Sends a test occurrence through one alert (enabled or not), through
    /// the same outbox and targets as a real one. Returns its payload ids.
    pub async fn test_alert(&self, id: &str) -> Result<(String, usize), Refusal> {
        let cat = self.catalog.lock().await;
        let row = Self::alert_of(&cat, None, id)?;
        let cfg = self.alert_spec(&cat, row)?;
        let event = cat.events.get(cfg.event.as_str());
        let stream = row
            .index_id
            .as_ref()
            .and_then(|i| cat.indexes.get(i))
            .map(|i| i.stream_id.clone())
            .or_else(|| cfg.streams.first().map(|s| s.to_string()))
            .unwrap_or_else(|| "test".into());
        let occ = crate::matcher::Occurrence {
            occurrence_id: format!("test-{}", uuid::Uuid::new_v4()),
            phase: crate::matcher::Phase::Start,
            event_id: cfg.event.clone(),
            label: event
                .and_then(|e| e.spec.label.clone())
                .unwrap_or_else(|| cfg.event.to_string()),
            model: self.parts.models.primary().name.clone(),
            stream_id: crate::types::StreamId::new(stream),
            start_time: 0.0,
            end_time: 0.0,
            confidence: 1.0,
            count: 0,
            explanation: "test alert sent through the API".into(),
            frame_wall: self.parts.clocks.wall(),
            frame_arrived: self.parts.clocks.now(),
            frame_time: 0.0,
            picture: None,
            boxes: Vec::new(),
            objects: Vec::new(),
            track_id: None,
            crossing: None,
            timing: Default::default(),
        };
        drop(cat);
        let d = std::sync::Arc::clone(&self.parts.dispatcher);
        let id = occ.occurrence_id.clone();
        let n = tokio::task::spawn_blocking(move || d.dispatch_to(&cfg, &occ))
            .await
            .map_err(|e| Refusal::Internal(e.to_string()))?;
        Ok((id, n))
    }

    /// Webhook messages that ran out of attempts or were refused.
    pub async fn dead_letters(&self) -> Result<Vec<crate::alert::outbox::Row>, Refusal> {
        self.persist(|s| s.dead_letters(10_000)).await
    }

    /// Puts a dead letter back in line with a fresh schedule.
    pub async fn redeliver(&self, seq: i64) -> Result<(), Refusal> {
        let now = self.parts.dispatcher.now_ms();
        let target = self
            .persist(move |s| s.redeliver(seq, now))
            .await?
            .ok_or_else(|| Refusal::NotFound(format!("no dead letter with seq {seq}")))?;
        let d = std::sync::Arc::clone(&self.parts.dispatcher);
        let _ = tokio::task::spawn_blocking(move || d.wake(&target)).await;
        Ok(())
    }
}
