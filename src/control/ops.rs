//! Changes to the catalog: create, start/stop, enable/disable, delete. The
//! API hands over definitions whose own fields it checked; each change here
//! checks the rest (config rules, the source policy, the loaded models, the
//! catalog) before it writes, so a refused change leaves both the database
//! and the running daemon as they were.

use std::sync::Arc;

use super::compile_event;
use super::{problems, Catalog, Engine, Refusal};
use crate::config::{self, RawAlert, RawEvent, RawStream};
use crate::domain::SourceUrl;
use crate::model::ModelSet;
use crate::store::{AlertRow, Batch, EventRow, IndexRow, Origin, Outbox, StreamRow, Table};

/// A new scene index, its text fields and batch already checked.
#[derive(Debug, Clone)]
pub struct IndexRequest {
    pub name: Option<String>,
    pub prompt: Option<String>,
    pub batch: Batch,
    pub ws_connection: Option<String>,
}

/// Checks a stream definition for `id` as a config file's, then against
/// the source policy: local sources (`file://`, `test:`) pass only with
/// `allow_local`, as an API caller should not make the daemon open files.
fn check_stream(id: &str, spec: &mut RawStream, allow_local: bool) -> Result<(), Refusal> {
    spec.id = Some(id.to_string());
    let checked = config::check_stream(spec).map_err(problems)?;
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
    Ok(())
}

/// An event definition for `id`, checked, and what it compiles to on the
/// loaded models.
fn compile_definition(
    id: &str,
    mut spec: RawEvent,
    models: &ModelSet,
) -> Result<(RawEvent, crate::matcher::CompiledEvent), Refusal> {
    spec.id = Some(id.to_string());
    let cfg = config::check_event(&spec).map_err(problems)?;
    let compiled = compile_event(&cfg, models).map_err(Refusal::Invalid)?;
    Ok((spec, compiled))
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
    /// database, `place` of the catalog) and applies the result. A new row
    /// past `[state] max_objects` of its kind is refused: a client that creates and
    /// never deletes gets a clear answer instead of a growing database.
    async fn save<T>(
        &self,
        mut cat: tokio::sync::MutexGuard<'_, Catalog>,
        table: Table,
        id: &str,
        row: T,
        place: fn(&mut Catalog) -> &mut std::collections::BTreeMap<String, T>,
    ) -> Result<T, Refusal>
    where
        T: serde::Serialize + Clone + Send + 'static,
    {
        let (rows, most) = (place(&mut cat), self.parts.max_objects);
        if !rows.contains_key(id) && rows.len() >= most {
            return Err(Refusal::Conflict(format!(
                "this box already holds {most} {}, the most [state] max_objects allows: delete some first",
                table.name()
            )));
        }
        self.replicate(&[super::Change::put(table, id, &row)?])
            .await?;
        let (key, r) = (id.to_string(), row.clone());
        self.persist(move |s| s.put(table, &key, &r)).await?;
        let mut next = cat.clone();
        place(&mut next).insert(id.to_string(), row.clone());
        self.commit(cat, next).await;
        Ok(row)
    }

    /// Puts `next` in force: the catalog lock is released before the
    /// applier starts or stops anything.
    pub(super) async fn commit(
        &self,
        mut cat: tokio::sync::MutexGuard<'_, Catalog>,
        next: Catalog,
    ) {
        *cat = next;
        drop(cat);
        self.apply_latest().await;
    }

    /// Connects a new stream and starts it.
    pub async fn create_stream(
        &self,
        name: String,
        mut spec: RawStream,
    ) -> Result<StreamRow, Refusal> {
        let id = new_id("rts");
        check_stream(&id, &mut spec, self.parts.allow_local_sources)?;
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

    /// Changes an API-created stream's sampling rate (frames per second
    /// sent to the model) or keyframe mode, whichever is given; the running
    /// pipeline takes it from its next frame on.
    pub async fn set_sampling(
        &self,
        id: &str,
        fps: Option<f64>,
        keyframes_only: Option<bool>,
    ) -> Result<StreamRow, Refusal> {
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
        if let Some(fps) = fps {
            row.spec.fps = Some(fps);
        }
        if let Some(k) = keyframes_only {
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
        let site: Vec<_> = gone
            .iter()
            .map(|(t, id)| super::Change::delete(*t, id))
            .collect();
        self.replicate(&site).await?;
        self.forget_frames(id).await?;
        self.persist(move |s| s.delete(&gone)).await?;
        self.commit(cat, next).await;
        Ok(())
    }

    /// Drops a deleted stream's kept frame embeddings (search, baselines).
    pub(super) async fn forget_frames(&self, id: &str) -> Result<(), Refusal> {
        self.parts.embeddings.remove(id);
        let id = id.to_string();
        self.persist(move |s| s.delete_embeddings(&id)).await
    }

    /// Creates a scene index on a stream.
    pub async fn create_index(&self, stream: &str, b: IndexRequest) -> Result<IndexRow, Refusal> {
        if let Some(ws) = &b.ws_connection {
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
            batch: b.batch,
            running: true,
            ws_connection: b.ws_connection,
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
    pub async fn create_event(&self, spec: RawEvent) -> Result<EventRow, Refusal> {
        let id = new_id("ev");
        // A dual encoder runs its text encoder here: off the async threads.
        let (models, event_id) = (Arc::clone(&self.parts.models), id.clone());
        let (spec, _) =
            tokio::task::spawn_blocking(move || compile_definition(&event_id, spec, &models))
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
        spec: RawEvent,
    ) -> Result<crate::matcher::CompiledEvent, Refusal> {
        let models = Arc::clone(&self.parts.models);
        tokio::task::spawn_blocking(move || compile_definition("preview", spec, &models))
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
        let site: Vec<_> = gone
            .iter()
            .map(|(t, id)| super::Change::delete(*t, id))
            .collect();
        self.replicate(&site).await?;
        self.persist(move |s| s.delete(&gone)).await?;
        let mut next = cat.clone();
        next.events.remove(id);
        self.commit(cat, next).await;
        Ok(())
    }

    /// An alert's WebSocket connection must be open here; in a site it may
    /// be open on any box, so one with the hub's id format is taken.
    fn check_ws(&self, id: &str) -> Result<(), Refusal> {
        let hub_id = id
            .strip_prefix("ws-")
            .is_some_and(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()));
        if self.parts.hub.is_connected(id) || (self.site().is_some() && hub_id) {
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
        (stream, index): (&str, &str),
        spec: RawAlert,
        ws_connection: Option<String>,
    ) -> Result<AlertRow, Refusal> {
        if let Some(u) = &spec.callback_url {
            let url = reqwest::Url::parse(u).map_err(|e| Refusal::Invalid(e.to_string()))?;
            // Literal addresses are refused now; names are checked on every
            // delivery, on the addresses they resolve to then.
            if let Some(Err(why)) = self.parts.guard.check_url(&url) {
                return Err(Refusal::Invalid(format!("callback_url refused: {why}")));
            }
        }
        if let Some(ws) = &ws_connection {
            self.check_ws(ws)?;
        }
        let cat = self.catalog.lock().await;
        Self::index_of(&cat, stream, index)?;
        let event = spec.event.clone().unwrap_or_default();
        if !cat.events.contains_key(&event) {
            return Err(Refusal::Invalid(format!("no event with id {event:?}")));
        }
        let id = new_id("alr");
        let row = AlertRow {
            id: id.clone(),
            index_id: Some(index.to_string()),
            spec: RawAlert {
                id: Some(id.clone()),
                streams: Some(vec![stream.to_string()]),
                ..spec
            }
            .into(),
            ws_connection,
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
        let site: Vec<_> = gone
            .iter()
            .map(|(t, id)| super::Change::delete(*t, id))
            .collect();
        self.replicate(&site).await?;
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
            stream_id: crate::domain::StreamId::new(stream),
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
