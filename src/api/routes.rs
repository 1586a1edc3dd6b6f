//! The route table: every route declared once, with its method, path, the
//! summary docs/openapi.json must carry for it (a test compares the two)
//! and its handler. The router is built from this table and nothing else.

use axum::http::StatusCode;
use axum::routing::{delete, get, patch, post, MethodRouter};
use axum::Router;

use super::handlers as h;
use super::{console, fail, history, media, session, socket, ApiState};

/// One route.
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    /// The operation's `summary` in docs/openapi.json.
    pub summary: &'static str,
    make: fn() -> MethodRouter<ApiState>,
}

/// Every route the API serves.
pub static ROUTES: &[Route] = &[
    Route {
        method: "GET",
        path: "/collection/{collection_id}",
        summary: "The one collection (SDK get_collection)",
        make: || get(h::collection),
    },
    Route {
        method: "GET",
        path: "/collection/{collection_id}/websocket",
        summary: "One-time WebSocket URL (SDK connect_websocket); valid 60 s",
        make: || get(socket::bootstrap),
    },
    Route {
        method: "GET",
        path: "/rtstream",
        summary: "List streams (SDK list_rtstreams)",
        make: || get(h::list_streams),
    },
    Route {
        method: "POST",
        path: "/rtstream",
        summary: "Connect and start a stream (SDK connect_rtstream)",
        make: || post(h::create_stream),
    },
    Route {
        method: "GET",
        path: "/rtstream/{rtstream_id}",
        summary: "One stream (SDK get_rtstream)",
        make: || get(h::get_stream),
    },
    Route {
        method: "DELETE",
        path: "/rtstream/{rtstream_id}",
        summary: "Delete an API-created stream with its indexes and their alerts",
        make: || delete(h::delete_stream),
    },
    Route {
        method: "PATCH",
        path: "/rtstream/{rtstream_id}",
        summary: "Change a running stream's sampling (sample_rate, keyframes_only) without rebuilding its pipeline",
        make: || patch(h::update_stream),
    },
    Route {
        method: "PATCH",
        path: "/rtstream/{rtstream_id}/status",
        summary: "Start or stop a stream (SDK RTStream.start/stop)",
        make: || patch(h::stream_status),
    },
    Route {
        method: "GET",
        path: "/rtstream/event",
        summary: "List events (SDK list_events)",
        make: || get(h::list_events),
    },
    Route {
        method: "POST",
        path: "/rtstream/event",
        summary: "Create an event; refused (422) when the model cannot score the prompt (SDK create_event)",
        make: || post(h::create_event),
    },
    Route {
        method: "DELETE",
        path: "/rtstream/event/{event_id}",
        summary: "Delete an API-created event no alert uses",
        make: || delete(h::delete_event),
    },
    Route {
        method: "GET",
        path: "/rtstream/{rtstream_id}/index/scene",
        summary: "List a stream's scene indexes (SDK list_scene_indexes)",
        make: || get(h::list_indexes),
    },
    Route {
        method: "POST",
        path: "/rtstream/{rtstream_id}/index/scene",
        summary: "Index a stream's visuals (SDK index_visuals)",
        make: || post(h::create_index),
    },
    Route {
        method: "GET",
        path: "/rtstream/{rtstream_id}/index/scene/{index_id}",
        summary: "Scene records of an index, oldest first (SDK get_scenes)",
        make: || get(h::index_records),
    },
    Route {
        method: "PATCH",
        path: "/rtstream/{rtstream_id}/index/scene/{index_id}/status",
        summary: "Start or stop an index; its alerts pause with it",
        make: || patch(h::index_status),
    },
    Route {
        method: "POST",
        path: "/rtstream/{rtstream_id}/search",
        summary: "Text search over the stream's stored frame embeddings (dual-encoder models): time ranges whose calibrated score reaches score_threshold, best first. Reply: results[{start, end (Unix s), score, text, metadata{start_time, end_time (stream s), frames}}], scanned{frames, first, last}",
        make: || post(h::search),
    },
    Route {
        method: "POST",
        path: "/rtstream/{rtstream_id}/backtest",
        summary: "Replay an event (by event_id, or a definition: event_prompt/prompt, negatives, min_confidence, min_lift, k, window, ...) over the stream's stored frame embeddings with its thresholds, baseline and hysteresis. Reply: occurrences[{start, end (Unix s), start_time, end_time (stream s), confidence, open}], scanned",
        make: || post(h::backtest),
    },
    Route {
        method: "GET",
        path: "/rtstream/{rtstream_id}/index/{index_id}",
        summary: "One scene index (SDK get_scene_index)",
        make: || get(h::get_index),
    },
    Route {
        method: "GET",
        path: "/rtstream/{rtstream_id}/index/{index_id}/alert",
        summary: "Alerts of an index with their status (SDK list_alerts)",
        make: || get(h::list_index_alerts),
    },
    Route {
        method: "POST",
        path: "/rtstream/{rtstream_id}/index/{index_id}/alert",
        summary: "Wire an event to this index and targets (SDK create_alert)",
        make: || post(h::create_alert),
    },
    Route {
        method: "PATCH",
        path: "/rtstream/{rtstream_id}/index/{index_id}/alert/{alert_id}/status",
        summary: "Enable or disable an alert (SDK enable_alert/disable_alert)",
        make: || patch(h::index_alert_status),
    },
    Route {
        method: "DELETE",
        path: "/rtstream/{rtstream_id}/index/{index_id}/alert/{alert_id}",
        summary: "Delete an alert (VideoDB documents it; the SDK has no call)",
        make: || delete(h::delete_index_alert),
    },
    Route {
        method: "GET",
        path: "/alert",
        summary: "Every alert, config-declared ones included",
        make: || get(h::list_all_alerts),
    },
    Route {
        method: "PATCH",
        path: "/alert/{alert_id}/status",
        summary: "Enable or disable any alert by id",
        make: || patch(h::alert_status),
    },
    Route {
        method: "DELETE",
        path: "/alert/{alert_id}",
        summary: "Delete any API-created alert by id",
        make: || delete(h::delete_any_alert),
    },
    Route {
        method: "POST",
        path: "/alert/{alert_id}/test",
        summary: "Send a test occurrence through one alert (enabled or not), through the same outbox and targets as a real one",
        make: || post(h::test_alert),
    },
    Route {
        method: "GET",
        path: "/delivery/dead",
        summary: "Webhook messages that used up their retry schedule, were refused (4xx) or whose receiver answered 410",
        make: || get(h::dead_letters),
    },
    Route {
        method: "POST",
        path: "/delivery/dead/{seq}/redeliver",
        summary: "Put a dead letter back in line with a fresh retry schedule (enables its URL again if a 410 had disabled it)",
        make: || post(h::redeliver),
    },
    Route {
        method: "GET",
        path: "/models",
        summary: "Loaded models: name, kind, vocabulary, input size, frames scored, mean inference time",
        make: || get(h::models),
    },
    Route {
        method: "GET",
        path: "/status",
        summary: "Version, model labels, stream health, WebSocket counters",
        make: || get(h::status),
    },
    Route {
        method: "GET",
        path: "/fleet",
        summary: "The site ([fleet]): its boxes, which box runs each camera, cameras that fit nowhere",
        make: || get(h::fleet),
    },
    Route {
        method: "POST",
        path: "/fleet/boxes/{box_id}/drain",
        summary: "Drain a box of the site: its cameras move to the other boxes (each keeps running here until another box took it) and it takes none",
        make: || post(h::drain_box),
    },
    Route {
        method: "DELETE",
        path: "/fleet/boxes/{box_id}/drain",
        summary: "Let a drained box take cameras again",
        make: || delete(h::undrain_box),
    },
    Route {
        method: "GET",
        path: "/metrics",
        summary: "Prometheus metrics (text format); no key needed with [api] metrics_public = true",
        make: || get(super::metrics::metrics),
    },
    Route {
        method: "GET",
        path: "/ws/{ticket}",
        summary: "WebSocket upgrade with a ticket from collection/{id}/websocket (no x-access-token). First message `{type: init, connection_id}`; then `{channel: alert|scene_index, data}`. At most once: a client that falls `ws_buffer` messages behind is disconnected.",
        make: || get(socket::connect),
    },
    Route {
        method: "GET",
        path: "/rtstream/{rtstream_id}/stream",
        summary: "HLS, MP4 and player URLs of a recorded span (SDK generate_stream); Unix or stream seconds",
        make: || get(h::stream_span),
    },
    Route {
        method: "GET",
        path: "/rtstream/{rtstream_id}/recordings",
        summary: "Recorded time ranges of a stream",
        make: || get(h::recordings),
    },
    Route {
        method: "GET",
        path: "/media/{stream}/{occurrence}/{what}",
        summary: "An occurrence's snapshot.jpg, clip.m3u8, clip.mp4 or player page (signed URL, no key)",
        make: || get(media::occurrence),
    },
    Route {
        method: "GET",
        path: "/media/{stream}/seg/{segment}",
        summary: "One recorded MPEG-TS segment (signed URL, no key)",
        make: || get(media::segment),
    },
    Route {
        method: "GET",
        path: "/media/{stream}/range/{span}/{what}",
        summary: "clip.m3u8, clip.mp4 or player of a recorded span from-to in Unix ms (signed URL, no key)",
        make: || get(media::span),
    },
    Route {
        method: "POST",
        path: "/rtstream/event/preview",
        summary: "What an event body would compile to (model; labels, or free text), without saving it; refused (422) as create_event would be",
        make: || post(h::preview_event),
    },
    Route {
        method: "GET",
        path: "/occurrences",
        summary: "Past occurrences of recorded streams, newest first (stream, label, before: Unix ms cursor, limit), with signed snapshot, clip and player links; in a site, every live box's, each with its box_id, and the boxes heard from (boxes) and not (unanswered)",
        make: || get(history::occurrences),
    },
    Route {
        method: "GET",
        path: "/rtstream/{rtstream_id}/snapshot.jpg",
        summary: "The stream's newest scored picture as a JPEG, its age in x-frame-age-ms; an SVG placeholder before the first",
        make: || get(history::snapshot),
    },
    Route {
        method: "POST",
        path: "/session",
        summary: "Console sign-in: the API key (api_key) for an HttpOnly SameSite=Strict session cookie and a CSRF token (send it as x-csrf-token on every POST, PATCH and DELETE)",
        make: || post(session::sign_in),
    },
    Route {
        method: "GET",
        path: "/session",
        summary: "The console session's CSRF token; 401 when not signed in",
        make: || get(session::current),
    },
    Route {
        method: "DELETE",
        path: "/session",
        summary: "Console sign-out",
        make: || delete(session::sign_out),
    },
    Route {
        method: "GET",
        path: "/",
        summary: "The web console: redirects to /live, or to /signin without a session",
        make: || get(console::root),
    },
    Route {
        method: "GET",
        path: "/signin",
        summary: "Console sign-in page",
        make: || get(console::sign_in_page),
    },
    Route {
        method: "GET",
        path: "/live",
        summary: "Console page: alerts as they arrive (redirects to /signin without a session)",
        make: || get(console::page),
    },
    Route {
        method: "GET",
        path: "/cameras",
        summary: "Console page: streams and their health (redirects to /signin without a session)",
        make: || get(console::page),
    },
    Route {
        method: "GET",
        path: "/rules",
        summary: "Console page: events and alerts (redirects to /signin without a session)",
        make: || get(console::page),
    },
    Route {
        method: "GET",
        path: "/history",
        summary: "Console page: past occurrences (redirects to /signin without a session)",
        make: || get(console::page),
    },
    Route {
        method: "GET",
        path: "/health",
        summary: "Console page: delivery and dead letters (redirects to /signin without a session)",
        make: || get(console::page),
    },
    Route {
        method: "GET",
        path: "/ui/{file}",
        summary: "Console assets (app.js, app.css, icon.svg), compiled into the binary",
        make: || get(console::asset),
    },
];

/// The router of [`ROUTES`]; unknown paths get an enveloped 404.
pub fn build(state: ApiState) -> Router {
    let mut r = Router::new();
    for route in ROUTES {
        r = r.route(route.path, (route.make)());
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
