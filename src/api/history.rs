//! What the console shows besides alerts as they come: past occurrences
//! (the clips table, newest first, paged) with signed links to their
//! evidence, across every box of a site, and each stream's newest scored
//! picture as a JPEG.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{fail, ok, ApiState};
use crate::control::Site;
use bytes::Bytes;

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

/// One page of a box's history: its occurrences, newest first, and
/// whether it holds older ones.
#[derive(Default)]
pub struct Rows {
    pub items: Vec<Value>,
    pub more: bool,
}

/// `GET /occurrences`: past occurrences of recorded streams, newest first.
/// In a site, every live box's history, merged (see [`site_history`]).
pub async fn occurrences(
    State(st): State<ApiState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    q: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(q) = match q {
        Ok(q) => q,
        Err(e) => return fail(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let limit = q.limit.unwrap_or(20).clamp(1, MAX_PAGE);
    // A request another box forwarded asks for this box's part only.
    let site = st
        .engine
        .site()
        .cloned()
        .filter(|_| !headers.contains_key(super::forward::FORWARDED));
    let own = match (&st.media, &site) {
        (Some(m), _) => match own_rows(m, q, limit).await {
            Ok(rows) => rows,
            Err(e) => return fail(StatusCode::INTERNAL_SERVER_ERROR, e),
        },
        (None, Some(_)) => Rows::default(),
        (None, None) => {
            return fail(
                StatusCode::NOT_FOUND,
                "recording is off on this daemon, so no occurrence history is kept".into(),
            )
        }
    };
    match site {
        Some(site) => {
            let path = format!("/occurrences?{}", raw.unwrap_or_default());
            ok(site_history(site.as_ref(), &path, own, limit).await)
        }
        None => {
            let next = own.more.then(|| own.items.last().map(start_ms)).flatten();
            ok(json!({ "occurrences": own.items, "next_before": next }))
        }
    }
}

/// This box's clips matching `q`, with signed links to their evidence.
async fn own_rows(m: &super::Media, q: Page, limit: usize) -> Result<Rows, String> {
    let store = Arc::clone(&m.store);
    let rows = tokio::task::spawn_blocking(move || {
        store.list_clips(q.stream.as_deref(), q.label.as_deref(), q.before, limit + 1)
    })
    .await;
    let mut rows = match rows {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Err(format!("{e:#}")),
        Err(e) => return Err(e.to_string()),
    };
    let more = rows.len() > limit;
    rows.truncate(limit);
    let items = rows
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
    Ok(Rows { items, more })
}

fn start_ms(v: &Value) -> i64 {
    v["start_ms"].as_i64().unwrap_or(i64::MIN)
}

/// How long the other boxes' parts of a history page are waited for.
const SITE_WAIT: Duration = Duration::from_secs(5);

/// The site's history: this box's `own` page and every other live box's
/// answer to `path`, merged newest first. Each occurrence names the box
/// that recorded it (its links point there); `boxes` lists the boxes
/// heard from, `unanswered` the live ones that did not answer in time and
/// those gone silent since this box started: a dead box's history waits
/// on its disk until it is back.
pub async fn site_history(site: &dyn Site, path: &str, own: Rows, limit: usize) -> Value {
    let me = site.box_id().to_string();
    let (live, mut unanswered) = site.site_boxes();
    let others: Vec<String> = live.into_iter().filter(|b| *b != me).collect();
    let asks = others.iter().map(|b| async move {
        let asked = tokio::time::timeout(SITE_WAIT, site.ask(b, ("GET", path), Bytes::new()));
        (b, asked.await)
    });
    let mut parts = vec![(me, own)];
    for (b, answer) in futures_util::future::join_all(asks).await {
        match answer {
            Ok(Ok((200, body))) => match serde_json::from_slice::<Value>(&body) {
                Ok(v) => {
                    let items = v["data"]["occurrences"].as_array().cloned();
                    let more = !v["data"]["next_before"].is_null();
                    parts.push((
                        b.clone(),
                        Rows {
                            items: items.unwrap_or_default(),
                            more,
                        },
                    ));
                }
                Err(_) => unanswered.push(b.clone()),
            },
            // Recording is off there: it keeps no history.
            Ok(Ok((404, _))) => parts.push((b.clone(), Rows::default())),
            _ => unanswered.push(b.clone()),
        }
    }
    let boxes: Vec<String> = parts.iter().map(|(b, _)| b.clone()).collect();
    let mut more = false;
    let mut all = Vec::new();
    for (b, rows) in parts {
        more |= rows.more;
        all.extend(rows.items.into_iter().map(|mut v| {
            if let Some(o) = v.as_object_mut() {
                o.insert("box_id".into(), Value::String(b.clone()));
            }
            v
        }));
    }
    all.sort_by_key(|v| std::cmp::Reverse(start_ms(v)));
    more |= all.len() > limit;
    all.truncate(limit);
    let next = more.then(|| all.last().map(start_ms)).flatten();
    json!({ "occurrences": all, "next_before": next, "boxes": boxes, "unanswered": unanswered })
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
