//! The route table and its handlers. Paths and reply fields follow what the
//! `videodb` SDK (0.5.1) sends and reads; the extra fields are sightline's.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post, MethodRouter};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{fail, ok, socket, ApiState, Body};
use crate::alert::payload::redact;
use crate::engine::{
    BacktestQuery, Catalog, Engine, NewAlert, NewEvent, NewIndex, NewStream, Refusal, SearchQuery,
};
use crate::store::{AlertRow, EventRow, IndexRow, StreamRow};

type Handler = MethodRouter<ApiState>;

/// Every route as (method, path). The router is built from the same table.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/collection/{collection_id}"),
    ("GET", "/collection/{collection_id}/websocket"),
    ("GET", "/rtstream"),
    ("POST", "/rtstream"),
    ("GET", "/rtstream/{rtstream_id}"),
    ("DELETE", "/rtstream/{rtstream_id}"),
    ("PATCH", "/rtstream/{rtstream_id}/status"),
    ("GET", "/rtstream/event"),
    ("POST", "/rtstream/event"),
    ("DELETE", "/rtstream/event/{event_id}"),
    ("GET", "/rtstream/{rtstream_id}/index/scene"),
    ("POST", "/rtstream/{rtstream_id}/index/scene"),
    ("GET", "/rtstream/{rtstream_id}/index/scene/{index_id}"),
    (
        "PATCH",
        "/rtstream/{rtstream_id}/index/scene/{index_id}/status",
    ),
    ("POST", "/rtstream/{rtstream_id}/search"),
    ("POST", "/rtstream/{rtstream_id}/backtest"),
    ("GET", "/rtstream/{rtstream_id}/index/{index_id}"),
    ("GET", "/rtstream/{rtstream_id}/index/{index_id}/alert"),
    ("POST", "/rtstream/{rtstream_id}/index/{index_id}/alert"),
    (
        "PATCH",
        "/rtstream/{rtstream_id}/index/{index_id}/alert/{alert_id}/status",
    ),
    (
        "DELETE",
        "/rtstream/{rtstream_id}/index/{index_id}/alert/{alert_id}",
    ),
    ("GET", "/alert"),
    ("PATCH", "/alert/{alert_id}/status"),
    ("DELETE", "/alert/{alert_id}"),
    ("POST", "/alert/{alert_id}/test"),
    ("GET", "/delivery/dead"),
    ("POST", "/delivery/dead/{seq}/redeliver"),
    ("GET", "/status"),
    ("GET", "/ws/{ticket}"),
];

fn handler(method: &str, path: &str) -> Option<Handler> {
    Some(match (method, path) {
        ("GET", "/collection/{collection_id}") => get(collection),
        ("GET", "/collection/{collection_id}/websocket") => get(socket::bootstrap),
        ("GET", "/rtstream") => get(list_streams),
        ("POST", "/rtstream") => post(create_stream),
        ("GET", "/rtstream/{rtstream_id}") => get(get_stream),
        ("DELETE", "/rtstream/{rtstream_id}") => delete(delete_stream),
        ("PATCH", "/rtstream/{rtstream_id}/status") => patch(stream_status),
        ("GET", "/rtstream/event") => get(list_events),
        ("POST", "/rtstream/event") => post(create_event),
        ("DELETE", "/rtstream/event/{event_id}") => delete(delete_event),
        ("GET", "/rtstream/{rtstream_id}/index/scene") => get(list_indexes),
        ("POST", "/rtstream/{rtstream_id}/index/scene") => post(create_index),
        ("GET", "/rtstream/{rtstream_id}/index/scene/{index_id}") => get(index_records),
        ("PATCH", "/rtstream/{rtstream_id}/index/scene/{index_id}/status") => patch(index_status),
        ("POST", "/rtstream/{rtstream_id}/search") => post(search),
        ("POST", "/rtstream/{rtstream_id}/backtest") => post(backtest),
        ("GET", "/rtstream/{rtstream_id}/index/{index_id}") => get(get_index),
        ("GET", "/rtstream/{rtstream_id}/index/{index_id}/alert") => get(list_index_alerts),
        ("POST", "/rtstream/{rtstream_id}/index/{index_id}/alert") => post(create_alert),
        ("PATCH", "/rtstream/{rtstream_id}/index/{index_id}/alert/{alert_id}/status") => {
            patch(index_alert_status)
        }
        ("DELETE", "/rtstream/{rtstream_id}/index/{index_id}/alert/{alert_id}") => {
            delete(delete_index_alert)
        }
        ("GET", "/alert") => get(list_all_alerts),
        ("PATCH", "/alert/{alert_id}/status") => patch(alert_status),
        ("DELETE", "/alert/{alert_id}") => delete(delete_any_alert),
        ("POST", "/alert/{alert_id}/test") => post(test_alert),
        ("GET", "/delivery/dead") => get(dead_letters),
        ("POST", "/delivery/dead/{seq}/redeliver") => post(redeliver),
        ("GET", "/status") => get(status),
        ("GET", "/ws/{ticket}") => get(socket::connect),
        _ => return None,
    })
}

/// The router of [`ROUTES`]; unknown paths get an enveloped 404.
pub fn build(state: ApiState) -> Router {
    let mut r = Router::new();
    for (method, path) in ROUTES {
        match handler(method, path) {
            Some(h) => r = r.route(path, h),
            None => tracing::error!(method, path, "route without a handler"),
        }
    }
    r.fallback(|| async { fail(StatusCode::NOT_FOUND, "no such route".into()) })
        .method_not_allowed_fallback(|| async {
            fail(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this route".into(),
            )
        })
        .with_state(state)
}

fn status_word(on: bool) -> &'static str {
    if on {
        "connected"
    } else {
        "stopped"
    }
}

fn stream_json(e: &Engine, s: &StreamRow) -> Value {
    json!({
        "id": s.id,
        "name": s.name,
        "collection_id": "default",
        "created_at": s.created_at,
        "sample_rate": s.spec.fps.unwrap_or(2.0),
        "status": status_word(s.running),
        "url": redact(s.spec.url.as_deref().unwrap_or("")),
        "stream_url": null,
        "player_url": null,
        "keyframes_only": s.spec.keyframes_only.unwrap_or(false),
        "health": e.health(&s.id),
        "origin": s.origin,
    })
}

fn index_json(i: &IndexRow) -> Value {
    json!({
        "rtstream_index_id": i.id,
        "rtstream_id": i.stream_id,
        "extraction_type": "time",
        "extraction_config": { "time": i.batch.time, "frame_count": i.batch.frame_count },
        "prompt": i.prompt,
        "name": i.name,
        "status": status_word(i.running),
        "ws_connection_id": i.ws_connection,
        "created_at": i.created_at,
    })
}

fn event_json(e: &EventRow) -> Value {
    json!({
        "event_id": e.id,
        "event_prompt": e.spec.prompt,
        "label": e.spec.label.clone().unwrap_or_else(|| e.id.clone()),
        "classes": e.spec.classes,
        "origin": e.origin,
        "created_at": e.created_at,
    })
}

fn alert_json(cat: &Catalog, a: &AlertRow) -> Value {
    let event = a.spec.event.clone().unwrap_or_default();
    let stream = a
        .index_id
        .as_ref()
        .and_then(|i| cat.indexes.get(i))
        .map(|i| i.stream_id.clone());
    json!({
        "alert_id": a.id,
        "event_id": event,
        "label": cat.events.get(&event).and_then(|e| e.spec.label.clone()),
        "status": if a.enabled { "enabled" } else { "disabled" },
        "callback_url": a.spec.callback_url,
        "ws_connection_id": a.ws_connection,
        "rtstream_id": stream,
        "rtstream_index_id": a.index_id,
        "streams": a.spec.streams,
        "mqtt": a.spec.mqtt.unwrap_or(false),
        "mqtt_topic": a.spec.mqtt_topic,
        "send_end": a.spec.send_end.unwrap_or(true),
        "origin": a.origin,
        "created_at": a.created_at,
    })
}

async fn collection(Path(id): Path<String>) -> Response {
    if id != "default" {
        return fail(
            StatusCode::NOT_FOUND,
            format!("no collection with id {id:?} (sightline has only \"default\")"),
        );
    }
    ok(json!({
        "id": "default",
        "name": "sightline",
        "description": "the streams of this sightline daemon",
        "is_public": false,
    }))
}

async fn list_streams(State(st): State<ApiState>) -> Response {
    let cat = st.engine.catalog().await;
    let mut rows: Vec<&StreamRow> = cat.streams.values().collect();
    rows.sort_by(|a, b| a.created_at.cmp(&b.created_at));
    let results: Vec<Value> = rows.iter().map(|s| stream_json(&st.engine, s)).collect();
    ok(json!({ "results": results }))
}

async fn create_stream(State(st): State<ApiState>, Body(b): Body<NewStream>) -> Response {
    match st.engine.create_stream(b).await {
        Ok(s) => ok(stream_json(&st.engine, &s)),
        Err(e) => e.into_response(),
    }
}

async fn get_stream(State(st): State<ApiState>, Path(id): Path<String>) -> Response {
    let cat = st.engine.catalog().await;
    match cat.streams.get(&id) {
        Some(s) => ok(stream_json(&st.engine, s)),
        None => Refusal::NotFound(format!("no rtstream with id {id:?}")).into_response(),
    }
}

async fn delete_stream(State(st): State<ApiState>, Path(id): Path<String>) -> Response {
    match st.engine.delete_stream(&id).await {
        Ok(()) => ok(json!({ "id": id, "deleted": true })),
        Err(e) => e.into_response(),
    }
}

/// `{"action": …}` of the status routes.
#[derive(Deserialize)]
struct Action {
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

async fn stream_status(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    Body(b): Body<Action>,
) -> Response {
    let r = match on_off(&b.action, "start", "stop") {
        Ok(run) => st.engine.set_stream_running(&id, run).await,
        Err(e) => Err(e),
    };
    match r {
        Ok(s) => ok(stream_json(&st.engine, &s)),
        Err(e) => e.into_response(),
    }
}

async fn list_events(State(st): State<ApiState>) -> Response {
    let cat = st.engine.catalog().await;
    let mut rows: Vec<&EventRow> = cat.events.values().collect();
    rows.sort_by(|a, b| a.created_at.cmp(&b.created_at));
    let events: Vec<Value> = rows.into_iter().map(event_json).collect();
    ok(json!({ "events": events }))
}

async fn create_event(State(st): State<ApiState>, Body(b): Body<NewEvent>) -> Response {
    match st.engine.create_event(b).await {
        Ok(e) => ok(event_json(&e)),
        Err(e) => e.into_response(),
    }
}

async fn delete_event(State(st): State<ApiState>, Path(id): Path<String>) -> Response {
    match st.engine.delete_event(&id).await {
        Ok(()) => ok(json!({ "event_id": id, "deleted": true })),
        Err(e) => e.into_response(),
    }
}

async fn list_indexes(State(st): State<ApiState>, Path(stream): Path<String>) -> Response {
    let cat = st.engine.catalog().await;
    if !cat.streams.contains_key(&stream) {
        return Refusal::NotFound(format!("no rtstream with id {stream:?}")).into_response();
    }
    let mut rows: Vec<&IndexRow> = cat
        .indexes
        .values()
        .filter(|i| i.stream_id == stream)
        .collect();
    rows.sort_by(|a, b| a.created_at.cmp(&b.created_at));
    let list: Vec<Value> = rows.into_iter().map(index_json).collect();
    ok(json!({ "scene_indexes": list }))
}

async fn create_index(
    State(st): State<ApiState>,
    Path(stream): Path<String>,
    Body(b): Body<NewIndex>,
) -> Response {
    match st.engine.create_index(&stream, b).await {
        Ok(i) => ok(index_json(&i)),
        Err(e) => e.into_response(),
    }
}

async fn get_index(
    State(st): State<ApiState>,
    Path((stream, index)): Path<(String, String)>,
) -> Response {
    let cat = st.engine.catalog().await;
    match Engine::index_of(&cat, &stream, &index) {
        Ok(i) => ok(index_json(i)),
        Err(e) => e.into_response(),
    }
}

/// Query of the records route (the SDK's `get_scenes`).
#[derive(Deserialize)]
struct RecordsQuery {
    page: Option<usize>,
    page_size: Option<usize>,
    start: Option<f64>,
    end: Option<f64>,
}

async fn index_records(
    State(st): State<ApiState>,
    Path((stream, index)): Path<(String, String)>,
    q: Result<Query<RecordsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(q) = match q {
        Ok(q) => q,
        Err(r) => return fail(StatusCode::BAD_REQUEST, r.body_text()),
    };
    let cat = st.engine.catalog().await;
    if let Err(e) = Engine::index_of(&cat, &stream, &index) {
        return e.into_response();
    }
    let page = q.page.unwrap_or(1).max(1);
    let size = q.page_size.unwrap_or(100).clamp(1, 1000);
    let range = match (q.start, q.end) {
        (Some(a), Some(b)) => Some((a, b)),
        _ => None,
    };
    let store = std::sync::Arc::clone(st.engine.store());
    let r = tokio::task::spawn_blocking(move || store.records(&index, range, page, size)).await;
    match r {
        Ok(Ok((records, more))) => ok(json!({
            "scene_index_records": records,
            "next_page": more,
        })),
        Ok(Err(e)) => Refusal::from(e).into_response(),
        Err(e) => Refusal::Internal(e.to_string()).into_response(),
    }
}

async fn index_status(
    State(st): State<ApiState>,
    Path((stream, index)): Path<(String, String)>,
    Body(b): Body<Action>,
) -> Response {
    let r = match on_off(&b.action, "start", "stop") {
        Ok(run) => st.engine.set_index_running(&stream, &index, run).await,
        Err(e) => Err(e),
    };
    match r {
        Ok(i) => ok(index_json(&i)),
        Err(e) => e.into_response(),
    }
}

async fn list_index_alerts(
    State(st): State<ApiState>,
    Path((stream, index)): Path<(String, String)>,
) -> Response {
    let cat = st.engine.catalog().await;
    if let Err(e) = Engine::index_of(&cat, &stream, &index) {
        return e.into_response();
    }
    let mut rows: Vec<&AlertRow> = cat
        .alerts
        .values()
        .filter(|a| a.index_id.as_deref() == Some(index.as_str()))
        .collect();
    rows.sort_by(|a, b| a.created_at.cmp(&b.created_at));
    let alerts: Vec<Value> = rows.into_iter().map(|a| alert_json(&cat, a)).collect();
    ok(json!({ "alerts": alerts }))
}

async fn create_alert(
    State(st): State<ApiState>,
    Path((stream, index)): Path<(String, String)>,
    Body(b): Body<NewAlert>,
) -> Response {
    match st.engine.create_alert(&stream, &index, b).await {
        Ok(a) => {
            let cat = st.engine.catalog().await;
            ok(alert_json(&cat, &a))
        }
        Err(e) => e.into_response(),
    }
}

async fn set_enabled(st: &ApiState, scope: Option<(&str, &str)>, id: &str, b: &Action) -> Response {
    let r = match on_off(&b.action, "enable", "disable") {
        Ok(on) => st.engine.set_alert_enabled(scope, id, on).await,
        Err(e) => Err(e),
    };
    match r {
        Ok(a) => {
            let cat = st.engine.catalog().await;
            ok(alert_json(&cat, &a))
        }
        Err(e) => e.into_response(),
    }
}

async fn index_alert_status(
    State(st): State<ApiState>,
    Path((stream, index, alert)): Path<(String, String, String)>,
    Body(b): Body<Action>,
) -> Response {
    set_enabled(&st, Some((&stream, &index)), &alert, &b).await
}

async fn alert_status(
    State(st): State<ApiState>,
    Path(alert): Path<String>,
    Body(b): Body<Action>,
) -> Response {
    set_enabled(&st, None, &alert, &b).await
}

async fn delete_index_alert(
    State(st): State<ApiState>,
    Path((stream, index, alert)): Path<(String, String, String)>,
) -> Response {
    match st
        .engine
        .delete_alert(Some((&stream, &index)), &alert)
        .await
    {
        Ok(()) => ok(json!({ "alert_id": alert, "deleted": true })),
        Err(e) => e.into_response(),
    }
}

async fn delete_any_alert(State(st): State<ApiState>, Path(alert): Path<String>) -> Response {
    match st.engine.delete_alert(None, &alert).await {
        Ok(()) => ok(json!({ "alert_id": alert, "deleted": true })),
        Err(e) => e.into_response(),
    }
}

async fn list_all_alerts(State(st): State<ApiState>) -> Response {
    let cat = st.engine.catalog().await;
    let mut rows: Vec<&AlertRow> = cat.alerts.values().collect();
    rows.sort_by(|a, b| a.created_at.cmp(&b.created_at));
    let alerts: Vec<Value> = rows.into_iter().map(|a| alert_json(&cat, a)).collect();
    ok(json!({ "alerts": alerts }))
}

/// `rtstream.search`: ranges in the SDK's shot shape, best first.
async fn search(
    State(st): State<ApiState>,
    Path(stream): Path<String>,
    Body(q): Body<SearchQuery>,
) -> Response {
    let query = q.query.clone();
    match st.engine.search(&stream, q).await {
        Ok((hits, scanned)) => {
            let results: Vec<Value> = hits
                .iter()
                .map(|h| {
                    json!({
                        "start": h.start,
                        "end": h.end,
                        "score": h.score,
                        "text": query,
                        "scene_index_id": null,
                        "scene_index_name": null,
                        "metadata": {
                            "start_time": h.stream_start,
                            "end_time": h.stream_end,
                            "frames": h.frames,
                        },
                    })
                })
                .collect();
            ok(json!({ "rtstream_id": stream, "results": results, "scanned": scanned }))
        }
        Err(e) => e.into_response(),
    }
}

/// When an event would have fired over the stored frames.
async fn backtest(
    State(st): State<ApiState>,
    Path(stream): Path<String>,
    Body(q): Body<BacktestQuery>,
) -> Response {
    match st.engine.backtest(&stream, q).await {
        Ok((occurrences, scanned)) => ok(json!({
            "rtstream_id": stream,
            "occurrences": occurrences,
            "scanned": scanned,
        })),
        Err(e) => e.into_response(),
    }
}

async fn test_alert(State(st): State<ApiState>, Path(alert): Path<String>) -> Response {
    match st.engine.test_alert(&alert).await {
        Ok((occurrence, queued)) => ok(json!({
            "alert_id": alert,
            "occurrence_id": occurrence,
            "messages_queued": queued,
        })),
        Err(e) => e.into_response(),
    }
}

async fn dead_letters(State(st): State<ApiState>) -> Response {
    match st.engine.dead_letters().await {
        Ok(rows) => {
            let list: Vec<Value> = rows
                .iter()
                .map(|r| {
                    json!({
                        "seq": r.seq,
                        "target": redact(&r.target),
                        "message_id": r.message_id,
                        "alert_id": r.alert_id,
                        "attempts": r.attempts,
                        "last_error": r.last_error,
                        "created_at_ms": r.created_at,
                    })
                })
                .collect();
            ok(json!({ "dead_letters": list }))
        }
        Err(e) => e.into_response(),
    }
}

async fn redeliver(State(st): State<ApiState>, Path(seq): Path<String>) -> Response {
    let Ok(seq) = seq.parse::<i64>() else {
        return fail(
            StatusCode::BAD_REQUEST,
            format!("{seq:?} is not a dead-letter seq (a number)"),
        );
    };
    match st.engine.redeliver(seq).await {
        Ok(()) => ok(json!({ "seq": seq, "redelivering": true })),
        Err(e) => e.into_response(),
    }
}

async fn status(State(st): State<ApiState>) -> Response {
    let cat = st.engine.catalog().await;
    let streams: Vec<Value> = cat
        .streams
        .values()
        .map(|s| {
            json!({
                "id": s.id,
                "status": status_word(s.running),
                "health": st.engine.health(&s.id),
            })
        })
        .collect();
    ok(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "model_labels": st.engine.labels(),
        "streams": streams,
        "websocket": st.engine.hub().stats(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_route_has_a_handler() {
        for (m, p) in ROUTES {
            assert!(handler(m, p).is_some(), "{m} {p}");
        }
    }
}
