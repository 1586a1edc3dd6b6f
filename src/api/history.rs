//! What the console shows besides alerts as they come: past occurrences
//! (the clips table, newest first, paged) with signed links to their
//! evidence, and each stream's newest scored picture as a JPEG.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{fail, ok, ApiState};

/// Most occurrences in one page.
const MAX_PAGE: usize = 100;

/// `GET /occurrences?stream=&label=&before=&limit=`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    stream: Option<String>,
    label: Option<String>,
    /// Unix ms: only occurrences that started before (the `next` cursor).
    before: Option<i64>,
    limit: Option<usize>,
}

/// `GET /occurrences`: past occurrences of recorded streams, newest first.
pub async fn occurrences(
    State(st): State<ApiState>,
    q: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(q) = match q {
        Ok(q) => q,
        Err(e) => return fail(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let Some(m) = st.media.clone() else {
        return fail(
            StatusCode::NOT_FOUND,
            "recording is off on this daemon, so no occurrence history is kept".into(),
        );
    };
    let limit = q.limit.unwrap_or(20).clamp(1, MAX_PAGE);
    let store = Arc::clone(&m.store);
    let rows = tokio::task::spawn_blocking(move || {
        store.list_clips(q.stream.as_deref(), q.label.as_deref(), q.before, limit + 1)
    })
    .await;
    let mut rows = match rows {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return fail(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
        Err(e) => return fail(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let more = rows.len() > limit;
    rows.truncate(limit);
    let items: Vec<Value> = rows
        .iter()
        .map(|c| {
            let links = crate::record::evidence::links(
                &m.recorder,
                &m.base,
                &c.stream_id,
                &c.occurrence_id,
            );
            let mut v = json!(c);
            if let (Some(o), Ok(Value::Object(l))) =
                (v.as_object_mut(), serde_json::to_value(links))
            {
                o.extend(l);
            }
            v
        })
        .collect();
    let next = more.then(|| rows.last().map(|c| c.start_ms)).flatten();
    ok(json!({ "occurrences": items, "next_before": next }))
}

/// Shown for a stream that has no scored picture yet.
const NO_FRAME: &str = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"320\" height=\"180\" viewBox=\"0 0 320 180\">\
<rect width=\"320\" height=\"180\" fill=\"#222\"/><text x=\"160\" y=\"95\" fill=\"#aaa\" font-family=\"sans-serif\" \
font-size=\"16\" text-anchor=\"middle\">no scored frame yet</text></svg>";

/// `GET /rtstream/{id}/snapshot.jpg`: the stream's newest scored picture
/// (as the model saw it, letterbox removed); its age in `x-frame-age-ms`.
pub async fn snapshot(State(st): State<ApiState>, Path(id): Path<String>) -> Response {
    if !st.engine.catalog().await.streams.contains_key(&id) {
        return fail(StatusCode::NOT_FOUND, format!("no rtstream with id {id:?}"));
    }
    // A stream no model scores yet has no picture: a placeholder says so
    // (an image, so that a page showing it need not special-case it).
    let Some((picture, age)) = st.engine.parts().latest.get(&id) else {
        return (
            [
                (header::CONTENT_TYPE, "image/svg+xml"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            NO_FRAME,
        )
            .into_response();
    };
    let jpeg = tokio::task::spawn_blocking(move || {
        crate::record::clips::shown(&picture).and_then(|img| crate::record::clips::clean_jpeg(&img))
    })
    .await;
    match jpeg {
        Ok(Ok(bytes)) => (
            [
                (header::CONTENT_TYPE, "image/jpeg".to_string()),
                (header::CACHE_CONTROL, "no-store".to_string()),
                (
                    header::HeaderName::from_static("x-frame-age-ms"),
                    age.as_millis().to_string(),
                ),
            ],
            bytes,
        )
            .into_response(),
        Ok(Err(e)) => fail(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(e) => fail(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
