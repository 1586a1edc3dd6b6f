//! In a site, a search or backtest of a stream another box runs is asked of
//! that box: its frame embeddings live there. The request travels over the
//! site's NATS (request/reply, [`Site::ask`]) and the owner's answer comes
//! back as it is, status included. A request that was itself forwarded is
//! answered here, whatever this box believes, so a camera moving meanwhile
//! cannot bounce it around.
//!
//! [`Site::ask`]: crate::control::Site::ask

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{fail, ApiState, MAX_BODY};

/// Marks a request forwarded by another box of the site.
pub const FORWARDED: &str = "x-sightline-forwarded";

/// The stream of a path that is answered where the stream runs.
fn owned_path(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/rtstream/")?;
    let (stream, what) = rest.split_once('/')?;
    matches!(what, "search" | "backtest").then_some(stream)
}

pub async fn to_owner(State(st): State<ApiState>, req: Request, next: Next) -> Response {
    let Some(site) = st.engine.site().cloned() else {
        return next.run(req).await;
    };
    if req.method() != Method::POST || req.headers().contains_key(FORWARDED) {
        return next.run(req).await;
    }
    let path = req.uri().path().to_string();
    let owner = owned_path(&path).and_then(|stream| site.owner(stream));
    let Some(owner) = owner.filter(|o| o != site.box_id()) else {
        return next.run(req).await;
    };
    let body = match axum::body::to_bytes(req.into_body(), MAX_BODY).await {
        Ok(b) => b,
        Err(e) => return fail(StatusCode::BAD_REQUEST, format!("reading the body: {e}")),
    };
    match site.ask(&owner, ("POST", &path), body).await {
        Ok((status, answer)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            (status, [(header::CONTENT_TYPE, "application/json")], answer).into_response()
        }
        Err(refusal) => refusal.into_response(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_search_and_backtest_go_to_the_owner() {
        assert_eq!(super::owned_path("/rtstream/rts-1/search"), Some("rts-1"));
        assert_eq!(super::owned_path("/rtstream/rts-1/backtest"), Some("rts-1"));
        assert_eq!(super::owned_path("/rtstream/rts-1/index"), None);
        assert_eq!(super::owned_path("/rtstream/event"), None);
    }
}
