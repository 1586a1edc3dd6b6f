//! The handlers behind [`super::routes::ROUTES`]. Each returns a typed view
//! or a [`Refusal`]; [`Reply`] wraps the view in the SDK's envelope.

use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::bodies::{
    BacktestQuery, NewAlert, NewEvent, NewIndex, NewSampling, NewStream, SearchQuery,
};
use super::views::{AlertView, DeadLetterView, EventView, IndexView, ShotView, StreamView};
use super::{ok, ApiState, Body};
use crate::control::{Catalog, Engine, Refusal};
use crate::store::SceneRecord;

/// A successful reply's data, sent as `{"success": true, "data": …}`.
pub struct Data<T>(pub T);

impl<T: Serialize> axum::response::IntoResponse for Data<T> {
    fn into_response(self) -> axum::response::Response {
        ok(self.0)
    }
}

/// What every handler returns.
pub type Reply<T> = Result<Data<T>, Refusal>;

fn by_creation<'a, T>(rows: impl Iterator<Item = &'a T>, at: impl Fn(&T) -> &str) -> Vec<&'a T>
where
    T: 'a,
{
    let mut v: Vec<&T> = rows.collect();
    v.sort_by(|a, b| at(a).cmp(at(b)));
    v
}

pub async fn collection(Path(id): Path<String>) -> Reply<Value> {
    if id != "default" {
        return Err(Refusal::NotFound(format!(
            "no collection with id {id:?} (sightline has only \"default\")"
        )));
    }
    Ok(Data(json!({
        "id": "default",
        "name": "sightline",
        "description": "the streams of this sightline daemon",
        "is_public": false,
    })))
}

#[derive(Serialize)]
pub struct StreamList {
    results: Vec<StreamView>,
}

pub async fn list_streams(State(st): State<ApiState>) -> Reply<StreamList> {
    let cat = st.engine.catalog().await;
    let rows = by_creation(cat.streams.values(), |s| &s.created_at);
    let results = rows.iter().map(|s| StreamView::of(&st.engine, s)).collect();
    Ok(Data(StreamList { results }))
}

pub async fn create_stream(
    State(st): State<ApiState>,
    Body(b): Body<NewStream>,
) -> Reply<StreamView> {
    let (name, spec) = b.check()?;
    let s = st.engine.create_stream(name, spec).await?;
    Ok(Data(StreamView::of(&st.engine, &s)))
}

pub async fn get_stream(State(st): State<ApiState>, Path(id): Path<String>) -> Reply<StreamView> {
    let cat = st.engine.catalog().await;
    let s = cat
        .streams
        .get(&id)
        .ok_or_else(|| Refusal::NotFound(format!("no rtstream with id {id:?}")))?;
    Ok(Data(StreamView::of(&st.engine, s)))
}

/// Changes a stream's sampling (`sample_rate`, `keyframes_only`) while it runs.
pub async fn update_stream(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    Body(b): Body<NewSampling>,
) -> Reply<StreamView> {
    let s = st
        .engine
        .set_sampling(&id, b.sample_rate, b.keyframes_only)
        .await?;
    Ok(Data(StreamView::of(&st.engine, &s)))
}

pub async fn delete_stream(State(st): State<ApiState>, Path(id): Path<String>) -> Reply<Value> {
    st.engine.delete_stream(&id).await?;
    Ok(Data(json!({ "id": id, "deleted": true })))
}

/// `{"action": …}` of the status routes.
#[derive(Deserialize)]
pub struct Action {
    action: String,
}

fn on_off(action: &str, on: &str, off: &str) -> Result<bool, Refusal> {
    match action {
        a if a == on => Ok(true),
        a if a == off => Ok(false),
        a => Err(Refusal::Invalid(format!(
            "action must be {on:?} or {off:?}, got {a:?}"
        ))),
    }
}

pub async fn stream_status(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    Body(b): Body<Action>,
) -> Reply<StreamView> {
    let run = on_off(&b.action, "start", "stop")?;
    let s = st.engine.set_stream_running(&id, run).await?;
    Ok(Data(StreamView::of(&st.engine, &s)))
}

#[derive(Serialize)]
pub struct EventList {
    events: Vec<EventView>,
}

pub async fn list_events(State(st): State<ApiState>) -> Reply<EventList> {
    let cat = st.engine.catalog().await;
    let rows = by_creation(cat.events.values(), |e| &e.created_at);
    Ok(Data(EventList {
        events: rows
            .into_iter()
            .map(|e| EventView::of(e, &st.engine))
            .collect(),
    }))
}

pub async fn create_event(State(st): State<ApiState>, Body(b): Body<NewEvent>) -> Reply<EventView> {
    let e = st.engine.create_event(b.definition()).await?;
    Ok(Data(EventView::of(&e, &st.engine)))
}

/// `POST rtstream/event/preview`: what the event would be, not saved.
pub async fn preview_event(State(st): State<ApiState>, Body(b): Body<NewEvent>) -> Reply<Value> {
    let c = st.engine.preview_event(b.definition()).await?;
    let rule = match &c.rule {
        crate::matcher::Rule::Labels(l) => json!({
            "resolution": "labels",
            "classes": l.classes,
            "min_confidence": l.min_confidence,
            "min_count": l.min_count,
        }),
        crate::matcher::Rule::Text(t) => json!({
            "resolution": "free_text",
            "text": t.texts.first(),
            "competing_prompts": t.texts.len().saturating_sub(1),
            "min_confidence": t.min_confidence,
            "truncated": t.truncated,
        }),
    };
    let mut v = json!({ "model": c.model_name, "label": c.label, "prompt": c.prompt });
    if let (Some(v), Value::Object(r)) = (v.as_object_mut(), rule) {
        v.extend(r);
    }
    Ok(Data(v))
}

pub async fn delete_event(State(st): State<ApiState>, Path(id): Path<String>) -> Reply<Value> {
    st.engine.delete_event(&id).await?;
    Ok(Data(json!({ "event_id": id, "deleted": true })))
}

#[derive(Serialize)]
pub struct IndexList {
    scene_indexes: Vec<IndexView>,
}

pub async fn list_indexes(
    State(st): State<ApiState>,
    Path(stream): Path<String>,
) -> Reply<IndexList> {
    let cat = st.engine.catalog().await;
    if !cat.streams.contains_key(&stream) {
        return Err(Refusal::NotFound(format!("no rtstream with id {stream:?}")));
    }
    let rows = by_creation(
        cat.indexes.values().filter(|i| i.stream_id == stream),
        |i| &i.created_at,
    );
    Ok(Data(IndexList {
        scene_indexes: rows.into_iter().map(IndexView::from).collect(),
    }))
}

pub async fn create_index(
    State(st): State<ApiState>,
    Path(stream): Path<String>,
    Body(b): Body<NewIndex>,
) -> Reply<IndexView> {
    let i = st.engine.create_index(&stream, b.check()?).await?;
    Ok(Data(IndexView::from(&i)))
}

pub async fn get_index(
    State(st): State<ApiState>,
    Path((stream, index)): Path<(String, String)>,
) -> Reply<IndexView> {
    let cat = st.engine.catalog().await;
    Ok(Data(IndexView::from(Engine::index_of(
        &cat, &stream, &index,
    )?)))
}

/// Query of the records route (the SDK's `get_scenes`).
#[derive(Deserialize)]
pub struct RecordsQuery {
    page: Option<usize>,
    page_size: Option<usize>,
    start: Option<f64>,
    end: Option<f64>,
}

#[derive(Serialize)]
pub struct RecordPage {
    scene_index_records: Vec<SceneRecord>,
    next_page: bool,
}

pub async fn index_records(
    State(st): State<ApiState>,
    Path((stream, index)): Path<(String, String)>,
    q: Result<Query<RecordsQuery>, axum::extract::rejection::QueryRejection>,
) -> Reply<RecordPage> {
    let Query(q) = q.map_err(|r| Refusal::BadRequest(r.body_text()))?;
    let page = q.page.unwrap_or(1).max(1);
    let size = q.page_size.unwrap_or(100).clamp(1, 1000);
    let range = match (q.start, q.end) {
        (Some(a), Some(b)) => Some((a, b)),
        _ => None,
    };
    let (records, more) = st
        .engine
        .records(&stream, &index, range, page, size)
        .await?;
    Ok(Data(RecordPage {
        scene_index_records: records,
        next_page: more,
    }))
}

pub async fn index_status(
    State(st): State<ApiState>,
    Path((stream, index)): Path<(String, String)>,
    Body(b): Body<Action>,
) -> Reply<IndexView> {
    let run = on_off(&b.action, "start", "stop")?;
    let i = st.engine.set_index_running(&stream, &index, run).await?;
    Ok(Data(IndexView::from(&i)))
}

#[derive(Serialize)]
pub struct AlertList {
    alerts: Vec<AlertView>,
}

fn alert_list(cat: &Catalog, keep: impl Fn(&crate::store::AlertRow) -> bool) -> AlertList {
    let rows = by_creation(cat.alerts.values().filter(|a| keep(a)), |a| &a.created_at);
    AlertList {
        alerts: rows.into_iter().map(|a| AlertView::of(cat, a)).collect(),
    }
}

pub async fn list_index_alerts(
    State(st): State<ApiState>,
    Path((stream, index)): Path<(String, String)>,
) -> Reply<AlertList> {
    let cat = st.engine.catalog().await;
    Engine::index_of(&cat, &stream, &index)?;
    Ok(Data(alert_list(&cat, |a| {
        a.index_id.as_deref() == Some(index.as_str())
    })))
}

pub async fn create_alert(
    State(st): State<ApiState>,
    Path((stream, index)): Path<(String, String)>,
    Body(b): Body<NewAlert>,
) -> Reply<AlertView> {
    let (spec, ws) = b.check()?;
    let a = st.engine.create_alert((&stream, &index), spec, ws).await?;
    let cat = st.engine.catalog().await;
    Ok(Data(AlertView::of(&cat, &a)))
}

async fn set_enabled(
    st: &ApiState,
    scope: Option<(&str, &str)>,
    id: &str,
    b: &Action,
) -> Reply<AlertView> {
    let on = on_off(&b.action, "enable", "disable")?;
    let a = st.engine.set_alert_enabled(scope, id, on).await?;
    let cat = st.engine.catalog().await;
    Ok(Data(AlertView::of(&cat, &a)))
}

pub async fn index_alert_status(
    State(st): State<ApiState>,
    Path((stream, index, alert)): Path<(String, String, String)>,
    Body(b): Body<Action>,
) -> Reply<AlertView> {
    set_enabled(&st, Some((&stream, &index)), &alert, &b).await
}

pub async fn alert_status(
    State(st): State<ApiState>,
    Path(alert): Path<String>,
    Body(b): Body<Action>,
) -> Reply<AlertView> {
    set_enabled(&st, None, &alert, &b).await
}

pub async fn delete_index_alert(
    State(st): State<ApiState>,
    Path((stream, index, alert)): Path<(String, String, String)>,
) -> Reply<Value> {
    st.engine
        .delete_alert(Some((&stream, &index)), &alert)
        .await?;
    Ok(Data(json!({ "alert_id": alert, "deleted": true })))
}

pub async fn delete_any_alert(
    State(st): State<ApiState>,
    Path(alert): Path<String>,
) -> Reply<Value> {
    st.engine.delete_alert(None, &alert).await?;
    Ok(Data(json!({ "alert_id": alert, "deleted": true })))
}

pub async fn list_all_alerts(State(st): State<ApiState>) -> Reply<AlertList> {
    let cat = st.engine.catalog().await;
    Ok(Data(alert_list(&cat, |_| true)))
}

#[derive(Serialize)]
pub struct SearchReply {
    rtstream_id: String,
    results: Vec<ShotView>,
    scanned: crate::control::Scanned,
}

/// `rtstream.search`: ranges in the SDK's shot shape, best first.
pub async fn search(
    State(st): State<ApiState>,
    Path(stream): Path<String>,
    Body(q): Body<SearchQuery>,
) -> Reply<SearchReply> {
    let query = q.query.clone();
    let (hits, scanned) = st.engine.search(&stream, q.check()?).await?;
    Ok(Data(SearchReply {
        results: hits.iter().map(|h| ShotView::of(h, &query)).collect(),
        rtstream_id: stream,
        scanned,
    }))
}

/// When an event would have fired over the stored frames.
pub async fn backtest(
    State(st): State<ApiState>,
    Path(stream): Path<String>,
    Body(q): Body<BacktestQuery>,
) -> Reply<Value> {
    let (occurrences, scanned) = st.engine.backtest(&stream, q.check()?).await?;
    Ok(Data(json!({
        "rtstream_id": stream,
        "occurrences": occurrences,
        "scanned": scanned,
    })))
}

pub async fn test_alert(State(st): State<ApiState>, Path(alert): Path<String>) -> Reply<Value> {
    let (occurrence, queued) = st.engine.test_alert(&alert).await?;
    Ok(Data(json!({
        "alert_id": alert,
        "occurrence_id": occurrence,
        "messages_queued": queued,
    })))
}

#[derive(Serialize)]
pub struct DeadLetters {
    dead_letters: Vec<DeadLetterView>,
}

pub async fn dead_letters(State(st): State<ApiState>) -> Reply<DeadLetters> {
    let rows = st.engine.dead_letters().await?;
    Ok(Data(DeadLetters {
        dead_letters: rows.iter().map(DeadLetterView::from).collect(),
    }))
}

pub async fn redeliver(State(st): State<ApiState>, Path(seq): Path<String>) -> Reply<Value> {
    let seq = seq
        .parse::<i64>()
        .map_err(|_| Refusal::BadRequest(format!("{seq:?} is not a dead-letter seq (a number)")))?;
    st.engine.redeliver(seq).await?;
    Ok(Data(json!({ "seq": seq, "redelivering": true })))
}

/// The models a stream feeds, each with the frames it scored there.
fn stream_models(st: &ApiState, stream: &str) -> Value {
    let counted = st
        .engine
        .pool()
        .stream_models(&crate::domain::StreamId::new(stream));
    let counters = |i: usize| {
        counted
            .iter()
            .find(|(m, _)| *m == i)
            .map_or_else(Default::default, |(_, c)| *c)
    };
    st.engine
        .stream_models(stream)
        .into_iter()
        .map(|(i, name)| {
            let c = counters(i);
            json!({
                "name": name,
                "frames": c.frames,
                "skipped_no_motion": c.skipped,
                "dropped": c.dropped,
            })
        })
        .collect()
}

pub async fn models(State(st): State<ApiState>) -> Reply<Value> {
    let set = st.engine.models();
    let counters = st.engine.pool().by_model(set.all().len());
    let models: Vec<Value> = set
        .all()
        .iter()
        .zip(counters)
        .map(|(m, c)| {
            let i = &m.manifest.input;
            json!({
                "name": m.name,
                "kind": m.manifest.kind,
                "labels": m.manifest.labels,
                "score_threshold": m.manifest.score_threshold,
                "input": { "width": i.width, "height": i.height, "resize": i.resize },
                "license": m.manifest.license,
                "source": m.manifest.source,
                "precision": m.manifest.precision.name(),
                "frames": c.frames,
                "skipped_no_motion": c.skipped,
                "dropped": c.dropped,
                "errors": c.errors,
                "mean_inference_ms": (c.mean_inference_ms() * 100.0).round() / 100.0,
            })
        })
        .collect();
    Ok(Data(json!({ "models": models })))
}

/// Messages held in memory while the outbox cannot commit (a full disk).
fn spill(st: &ApiState) -> Value {
    use std::sync::atomic::Ordering;
    let d = st.engine.dispatcher();
    let s = d.spill_stats();
    json!({
        "held": d.spilled(),
        "spilled": s.spilled.load(Ordering::Relaxed),
        "committed_later": s.committed_later.load(Ordering::Relaxed),
        "dropped": s.dropped.lock().map(|m| m.clone()).unwrap_or_default(),
    })
}

/// `GET fleet`: the site as this box sees it; 404 on a box of its own.
pub async fn fleet(State(st): State<ApiState>) -> Reply<Value> {
    Ok(Data(site(&st)?.report()))
}

/// The site, or 404 on a box of its own.
fn site(st: &ApiState) -> Result<std::sync::Arc<dyn crate::control::Site>, Refusal> {
    st.engine.site().cloned().ok_or_else(|| {
        Refusal::NotFound("this box is not part of a site ([fleet] is not configured)".into())
    })
}

/// `POST fleet/boxes/{box_id}/drain`.
pub async fn drain_box(State(st): State<ApiState>, Path(id): Path<String>) -> Reply<Value> {
    site(&st)?.drain(&id, true).await?;
    Ok(Data(json!({"box_id": id, "draining": true})))
}

/// `DELETE fleet/boxes/{box_id}/drain`.
pub async fn undrain_box(State(st): State<ApiState>, Path(id): Path<String>) -> Reply<Value> {
    site(&st)?.drain(&id, false).await?;
    Ok(Data(json!({"box_id": id, "draining": false})))
}

pub async fn status(
    State(st): State<ApiState>,
    conns: Option<axum::Extension<std::sync::Arc<super::conns::ConnStats>>>,
) -> Reply<Value> {
    let cat = st.engine.catalog().await;
    let streams: Vec<Value> = cat
        .streams
        .values()
        .map(|s| {
            json!({
                "id": s.id,
                "status": if s.running { "connected" } else { "stopped" },
                "health": st.engine.health(&s.id),
                "models": stream_models(&st, &s.id),
                "flow": st.engine.pool().flow_of(&crate::domain::StreamId::new(&s.id)),
                "last_frame_age_ms": st.engine.parts().latest.get(&s.id).map(|(_, age)| age.as_millis() as u64),
            })
        })
        .collect();
    let recording = st.media.as_ref().map(|m| {
        let streams: Vec<Value> = m
            .recorder
            .statuses()
            .into_iter()
            .map(|(id, s)| {
                json!({
                    "id": id,
                    "recording": s.recording,
                    "paused": s.paused,
                    "last_error": s.last_error,
                    "input": s.input,
                })
            })
            .collect();
        let paused = streams.iter().any(|s| !s["paused"].is_null());
        json!({
            "budget": m.recorder.estimate(),
            "dir": m.recorder.dir(),
            "free_bytes": crate::store::space::free_bytes(m.recorder.dir()),
            "paused": paused,
            "streams": streams,
        })
    });
    let dispatcher = std::sync::Arc::clone(st.engine.dispatcher());
    let outbox = match tokio::task::spawn_blocking(move || dispatcher.outbox_depth()).await {
        Ok(Ok(rows)) => rows
            .into_iter()
            .map(|(target, queued, dead)| json!({ "target": target, "queued": queued, "dead": dead }))
            .collect(),
        _ => Vec::new(),
    };
    Ok(Data(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "outbox": outbox,
        "model_labels": st.engine.labels(),
        "streams": streams,
        "websocket": st.engine.hub().stats(),
        "recording": recording,
        "outbox_spill": spill(&st),
        "state_disk": st.engine.space().map(|w| w.check()),
        "clock": st.engine.parts().steady.jumps(),
        "fleet": st.engine.site().map(|s| s.report()),
        "api_connections": conns.map(|axum::Extension(c)| json!({
            "accepted": c.accepted.load(std::sync::atomic::Ordering::Relaxed),
            "evicted": c.evicted.load(std::sync::atomic::Ordering::Relaxed),
            "refused": c.refused.load(std::sync::atomic::Ordering::Relaxed),
        })),
    })))
}

/// `GET rtstream/{id}/stream?start=&end=` (the SDK's `generate_stream`).
#[derive(Deserialize)]
pub struct SpanQuery {
    start: f64,
    end: f64,
}

/// Times below this are stream seconds (search shots); above, Unix seconds.
const UNIX_FLOOR: f64 = 1e9;

fn media_of(st: &ApiState) -> Result<&std::sync::Arc<super::Media>, Refusal> {
    st.media.as_ref().ok_or_else(|| {
        Refusal::NotFound("recording is off on this daemon ([recording] has no directory)".into())
    })
}

pub async fn stream_span(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    q: Result<Query<SpanQuery>, axum::extract::rejection::QueryRejection>,
) -> Reply<Value> {
    let Query(q) = q.map_err(|r| Refusal::BadRequest(r.body_text()))?;
    let m = media_of(&st)?;
    if !st.engine.catalog().await.streams.contains_key(&id) {
        return Err(Refusal::NotFound(format!("no rtstream with id {id:?}")));
    }
    let to_ms = |t: f64| -> Result<i64, Refusal> {
        if t >= UNIX_FLOOR {
            Ok((t * 1000.0) as i64)
        } else {
            m.time_bases.wall_ms(&id, t).ok_or_else(|| {
                Refusal::Invalid(format!(
                    "{t} is a stream time, and stream {id:?} has shown no frame to map it to wall time"
                ))
            })
        }
    };
    let (from, to) = (to_ms(q.start)?, to_ms(q.end)?);
    if !(from < to && to - from <= 24 * 3_600_000) {
        return Err(Refusal::Invalid(
            "start must be before end, at most 24 h apart".into(),
        ));
    }
    let [stream_url, clip_url, player_url] = super::media::span_links(m, &m.base, &id, from, to);
    Ok(Data(json!({
        "rtstream_id": id,
        "start": from as f64 / 1000.0,
        "end": to as f64 / 1000.0,
        "stream_url": stream_url,
        "clip_url": clip_url,
        "player_url": player_url,
    })))
}

/// `GET rtstream/{id}/recordings`: recorded ranges, Unix seconds.
pub async fn recordings(State(st): State<ApiState>, Path(id): Path<String>) -> Reply<Value> {
    let m = media_of(&st)?;
    if !st.engine.catalog().await.streams.contains_key(&id) {
        return Err(Refusal::NotFound(format!("no rtstream with id {id:?}")));
    }
    let ranges: Vec<Value> = m
        .recorder
        .ranges(&id)
        .into_iter()
        .map(|(a, b)| json!({ "start": a as f64 / 1000.0, "end": b as f64 / 1000.0 }))
        .collect();
    Ok(Data(json!({
        "rtstream_id": id,
        "recording": m.recorder.is_recording(&id),
        "recordings": ranges,
    })))
}
