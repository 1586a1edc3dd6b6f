//! The player page of a clip: the MP4 in a `<video>` with the alert's facts
//! beside it. Self-contained (inline CSS, no scripts from elsewhere, no
//! fonts or CDNs): a camera box may be off the internet. While the
//! occurrence runs, the page plays what is recorded so far and reloads
//! itself until the clip is complete.

use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::store::ClipRow;

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn when(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

/// The page of an occurrence's clip (`c`), or of a plain span (`None`).
pub fn page(
    c: Option<&ClipRow>,
    title: &str,
    ended: bool,
    mp4: &str,
    poster: Option<&str>,
) -> Response {
    let facts = c.map_or_else(String::new, |c| {
        format!(
            "<dl><dt>Label</dt><dd id=\"label\">{}</dd><dt>Confidence</dt><dd id=\"confidence\">{:.2}</dd>\
             <dt>Explanation</dt><dd id=\"explanation\">{}</dd><dt>Camera</dt><dd>{}</dd>\
             <dt>Started</dt><dd>{} (stream {:.1} s)</dd><dt>Ended</dt><dd>{}</dd></dl>",
            esc(&c.label),
            c.confidence,
            esc(&c.explanation),
            esc(&c.stream_id),
            when(c.start_ms),
            c.start_time,
            c.end_ms.map_or_else(|| "still going".to_string(), |e| format!("{} (stream {:.1} s)", when(e), c.end_time)),
        )
    });
    let refresh = if ended {
        ""
    } else {
        "<meta http-equiv=\"refresh\" content=\"5\">"
    };
    let state = if ended {
        "clip complete"
    } else {
        "recording… this page reloads until the clip is complete"
    };
    let poster = poster.map_or_else(String::new, |p| format!(" poster=\"{}\"", esc(p)));
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">{refresh}\
         <link rel=\"icon\" href=\"data:,\">\
         <title>{t}</title><style>\
         body{{margin:0;font:16px/1.4 system-ui,sans-serif;background:#111;color:#eee}}\
         main{{max-width:1280px;margin:auto;padding:12px}}\
         @media (min-width:900px){{main{{display:grid;grid-template-columns:2fr 1fr;gap:0 24px;align-items:start}}\
         h1{{grid-column:1/3}}.facts{{grid-column:2;grid-row:2/4}}}}\
         video{{width:100%;background:#000;border-radius:6px}}\
         dl{{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px}}dt{{color:#aaa}}\
         .state{{color:#9c9}}</style></head><body><main><h1>{t}</h1>\
         <video id=\"clip\" src=\"{src}\"{poster} controls autoplay muted playsinline preload=\"auto\"></video>\
         <div class=\"facts\"><p class=\"state\">{state}</p>{facts}</div></main></body></html>",
        t = esc(title),
        src = esc(mp4),
    );
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // Nothing on this page may come from anywhere else.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; media-src 'self'; img-src 'self' data:; style-src 'unsafe-inline'",
            ),
        ],
        html,
    )
        .into_response()
}
