//! The web console: a small hand-written page set (HTML, CSS, one script)
//! compiled into the binary and served from the API listener. Every page is
//! the same shell; the script renders the page its path names from the
//! API's own JSON, signed in through a session (see [`super::session`]).
//! Pages other than sign-in redirect there without a session; the assets
//! hold no data and are public. Nothing is loaded from anywhere else.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};

use super::{fail, ApiState};

/// The console's pages, by path.
pub const PAGES: &[&str] = &["/live", "/cameras", "/rules", "/history", "/health"];

const SHELL: &str = include_str!("console/index.html");
const SCRIPT: &str = include_str!("console/app.js");
const STYLE: &str = include_str!("console/app.css");
const ICON: &str = include_str!("console/icon.svg");

/// Scripts and styles from this origin only, and the WebSocket; pictures
/// and clips from this origin and `site` (the other boxes of a site, where
/// the evidence of their cameras lives).
fn policy(site: &[String]) -> String {
    let site = site.join(" ");
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; \
         img-src 'self' data: {site}; media-src 'self' {site}; connect-src 'self'; \
         form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
}

/// Paths the key check lets through: these handlers check the session.
pub fn is_public(path: &str) -> bool {
    path == "/" || path == "/signin" || path.starts_with("/ui/") || PAGES.contains(&path)
}

fn shell(st: &ApiState, page: &str) -> Response {
    let html = SHELL.replace("{{page}}", page.trim_start_matches('/'));
    let site = st.engine.site().map(|s| s.origins()).unwrap_or_default();
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, &policy(&site)),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        html,
    )
        .into_response()
}

/// `GET /`: the live page, or sign-in first.
pub async fn root(State(st): State<ApiState>, headers: HeaderMap) -> Response {
    if st.sessions.valid(&headers) {
        Redirect::to("/live").into_response()
    } else {
        Redirect::to("/signin").into_response()
    }
}

/// `GET /signin`.
pub async fn sign_in_page(State(st): State<ApiState>, headers: HeaderMap) -> Response {
    if st.sessions.valid(&headers) {
        return Redirect::to("/live").into_response();
    }
    shell(&st, "/signin")
}

/// `GET /live`, `/cameras`, …: the page, or a redirect to sign-in.
pub async fn page(State(st): State<ApiState>, headers: HeaderMap, uri: Uri) -> Response {
    let path = uri.path();
    if !st.sessions.valid(&headers) {
        return Redirect::to(&format!("/signin?next={path}")).into_response();
    }
    shell(&st, path)
}

/// `GET /ui/{file}`: the script, the style sheet and the icon.
pub async fn asset(Path(file): Path<String>) -> Response {
    let (kind, body) = match file.as_str() {
        "app.js" => ("text/javascript; charset=utf-8", SCRIPT),
        "app.css" => ("text/css; charset=utf-8", STYLE),
        "icon.svg" => ("image/svg+xml", ICON),
        _ => return fail(StatusCode::NOT_FOUND, format!("no console asset {file:?}")),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "no-cache"),
            (
                header::HeaderName::from_static("x-content-type-options"),
                "nosniff",
            ),
        ],
        body,
    )
        .into_response()
}
